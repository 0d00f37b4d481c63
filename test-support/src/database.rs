//! A database per test: SQLite in the test's data directory, or a fresh schema in the
//! PostgreSQL database `MINITTER_TEST_DATABASE_URL` names.
//!
//! A schema rather than a database per test: `CREATE SCHEMA` is a catalogue row, where
//! `CREATE DATABASE` copies a template and takes a lock that serialises parallel tests.
//! The server reaches its schema through the URL (`options[search_path]=…`), so a server
//! started as a child process gets it the same way an operator's would.

use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The variable that turns the PostgreSQL tests on.
pub const DATABASE_URL_VARIABLE: &str = "MINITTER_TEST_DATABASE_URL";

/// A database for one test, removed when it is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    /// `None` for SQLite in the data directory (the server's default).
    url: Option<String>,
    /// The PostgreSQL server and the schema made on it.
    schema: Option<(String, String)>,
}

impl TestDatabase {
    pub async fn create(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => Self {
                url: None,
                schema: None,
            },
            Backend::Postgres => {
                let server = crate::required_env(DATABASE_URL_VARIABLE);
                let schema = format!("test_{}", uuid::Uuid::now_v7().simple());
                let mut connection = PgConnection::connect(&server)
                    .await
                    .unwrap_or_else(|e| panic!("connecting to {DATABASE_URL_VARIABLE}: {e}"));
                sqlx::raw_sql(&format!("CREATE SCHEMA {schema}"))
                    .execute(&mut connection)
                    .await
                    .expect("create a schema for the test");
                let _ = connection.close().await;
                let separator = if server.contains('?') { '&' } else { '?' };
                // The schema's name is also the connections' `application_name`, so that
                // dropping it can end whatever the test left open (see `Drop`).
                Self {
                    url: Some(format!(
                        "{server}{separator}options[search_path]={schema}&application_name={schema}"
                    )),
                    schema: Some((server, schema)),
                }
            }
        }
    }

    /// The `MINITTER_DATABASE_URL` for the server under test; `None` means the default
    /// SQLite file in its data directory.
    pub fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((server, schema)) = self.schema.take() else {
            return;
        };
        // Drop may run inside the test's runtime, which cannot be blocked on: the schema
        // is dropped from a thread with a runtime of its own. That blocks the test's
        // thread, so a server still running in the test (a task mid-transaction on a
        // current-thread runtime) can never commit, and `DROP SCHEMA` would wait for its
        // locks forever: the test's own connections are ended first.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                let mut connection = PgConnection::connect(&server).await?;
                sqlx::query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE application_name = $1 AND pid <> pg_backend_pid()",
                )
                .bind(&schema)
                .execute(&mut connection)
                .await?;
                sqlx::raw_sql(&format!("DROP SCHEMA {schema} CASCADE"))
                    .execute(&mut connection)
                    .await?;
                connection.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop a test schema: {dropped:?}");
        }
    }
}

/// `url` with its host and port replaced by 127.0.0.1 and `port` (a [`crate::Relay`]'s).
pub fn with_port(url: &str, port: u16) -> String {
    let mut url = url::Url::parse(url).expect("a database URL");
    url.set_host(Some("127.0.0.1")).expect("a URL with a host");
    url.set_port(Some(port)).expect("a URL with a port");
    url.into()
}

/// The `host:port` a database URL points at.
pub fn address_of(url: &str) -> String {
    let url = url::Url::parse(url).expect("a database URL");
    format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(5432)
    )
}
