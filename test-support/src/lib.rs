//! What the server's integration tests and the contract tests share.
//!
//! - [`on_every_backend!`]: each listed `async fn(Backend)` becomes one test per database
//!   backend, `<name>::sqlite` and `<name>::postgres`, so a new test covers both without
//!   anyone remembering to. The PostgreSQL one runs when `MINITTER_TEST_DATABASE_URL` is
//!   set (or `CI=true`, where a missing database fails it) and is otherwise reported as
//!   skipped: `build.rs` decides at compile time, because test runners cannot skip at
//!   run time.
//! - [`needs_postgres!`], [`needs_cluster!`] (PostgreSQL and Redis) and [`needs_s3!`]:
//!   the same for tests that need those services (`MINITTER_TEST_DATABASE_URL`,
//!   `MINITTER_TEST_REDIS_URL`, `MINITTER_TEST_S3_ENDPOINT`).
//! - [`TestDatabase`]: a fresh PostgreSQL schema per test, dropped afterwards, so tests
//!   run in parallel without seeing each other's rows.
//! - [`Relay`]: a TCP relay in front of a service, which a test cuts to play an outage
//!   without touching the machine's own service.

mod database;
mod relay;

pub use database::{Backend, DATABASE_URL_VARIABLE, TestDatabase, address_of, with_port};
pub use relay::Relay;

/// Turns each listed `async fn name(backend: Backend)` into the tests `name::sqlite` and
/// `name::postgres`.
#[macro_export]
macro_rules! on_every_backend {
    ($($test:ident),+ $(,)?) => {$(
        mod $test {
            #[tokio::test]
            async fn sqlite() {
                super::$test($crate::Backend::Sqlite).await
            }
            $crate::postgres_test! {
                async fn postgres() {
                    super::$test($crate::Backend::Postgres).await
                }
            }
        }
    )+};
}

/// Turns each listed `async fn name()` into the test `name::postgres`, for what only
/// PostgreSQL does (several servers on one database, an outage of the database server).
#[macro_export]
macro_rules! needs_postgres {
    ($($test:ident),+ $(,)?) => {$(
        mod $test {
            $crate::postgres_test! {
                async fn postgres() {
                    super::$test().await
                }
            }
        }
    )+};
}

/// Turns each listed `async fn name()` into the test `name::cluster`, for several
/// instances sharing PostgreSQL and Redis (`MINITTER_TEST_DATABASE_URL` and
/// `MINITTER_TEST_REDIS_URL`), reported as skipped unless both are configured.
#[macro_export]
macro_rules! needs_cluster {
    ($($test:ident),+ $(,)?) => {$(
        mod $test {
            $crate::cluster_test! {
                async fn cluster() {
                    super::$test().await
                }
            }
        }
    )+};
}

#[doc(hidden)]
#[cfg(minitter_cluster)]
#[macro_export]
macro_rules! cluster_test {
    ($item:item) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $item
    };
}

#[doc(hidden)]
#[cfg(not(minitter_cluster))]
#[macro_export]
macro_rules! cluster_test {
    ($item:item) => {
        #[tokio::test]
        #[ignore = "needs PostgreSQL and Redis: set MINITTER_TEST_DATABASE_URL and MINITTER_TEST_REDIS_URL"]
        $item
    };
}

/// Turns each listed `async fn name()` into the test `name::s3`, reported as skipped
/// unless an S3-compatible server is configured.
#[macro_export]
macro_rules! needs_s3 {
    ($($test:ident),+ $(,)?) => {$(
        mod $test {
            $crate::s3_test! {
                async fn s3() {
                    super::$test().await
                }
            }
        }
    )+};
}

#[doc(hidden)]
#[cfg(minitter_postgres)]
#[macro_export]
macro_rules! postgres_test {
    ($item:item) => {
        #[tokio::test]
        $item
    };
}

#[doc(hidden)]
#[cfg(not(minitter_postgres))]
#[macro_export]
macro_rules! postgres_test {
    ($item:item) => {
        #[tokio::test]
        #[ignore = "needs PostgreSQL: set MINITTER_TEST_DATABASE_URL"]
        $item
    };
}

#[doc(hidden)]
#[cfg(minitter_s3)]
#[macro_export]
macro_rules! s3_test {
    ($item:item) => {
        #[tokio::test]
        $item
    };
}

#[doc(hidden)]
#[cfg(not(minitter_s3))]
#[macro_export]
macro_rules! s3_test {
    ($item:item) => {
        #[tokio::test]
        #[ignore = "needs an S3-compatible server: set MINITTER_TEST_S3_ENDPOINT"]
        $item
    };
}

/// The value of a service's variable; a test only asks when it was compiled to run, so a
/// missing one is a failure (with `CI=true`), never a silent pass.
pub fn required_env(variable: &str) -> String {
    match std::env::var(variable) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!("{variable} is not set, and this test needs it (CI=true runs every test)"),
    }
}
