//! The PostgreSQL backend, for several server instances sharing one database.
//!
//! It owns the connection pool, the migrations (`migrations/postgres`), the sorting of
//! PostgreSQL errors into "try again later" ([`is_transient`]) and the retry of write
//! transactions that lost a race ([`retry`]); each area's SQL sits in its own file
//! (`users.rs`, `follows.rs`, `tweets.rs`, `gateway.rs`, `import.rs`).
//!
//! Unlike the SQLite backend there is no process-wide writer lock: other processes write
//! the same rows, so every guarantee rests on the database alone. Uniqueness and
//! references are constraints whose violations the store maps to outcomes (a taken
//! username, an unknown user, a plan in use) instead of checks before a write; counters
//! move in the transaction that changes what they count; rows are locked in a fixed order
//! where two transactions can meet; and the transactions that can still deadlock or fail
//! to serialise are re-run whole by [`retry`]. Transactions run at PostgreSQL's default
//! READ COMMITTED level, under which a conflicting insert waits for the other transaction
//! and then sees its outcome, which is what idempotent writes want.

mod follows;
mod gateway;
mod import;
mod outbox;
mod tweets;
mod users;

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use rand::Rng;
use sqlx::postgres::{PgConnectOptions, PgDatabaseError, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

use super::{DATABASE_URL_VARIABLE, PoolSettings, PoolUsage, StoreError};

/// A PostgreSQL database, shared by every request of this instance (and by the other
/// instances, through the database).
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to the database `url` names and migrates it.
    pub async fn open(url: &str, settings: &PoolSettings) -> anyhow::Result<Self> {
        // The URL may hold a password, so no error here repeats it: the parse error only
        // says what is wrong with it (sqlx's messages do not quote the URL).
        let options = PgConnectOptions::from_str(url)
            .with_context(|| format!("{DATABASE_URL_VARIABLE} is not a valid PostgreSQL URL"))?;
        // Several instances may start at once against one database. sqlx's Migrator
        // (sqlx-core 0.8.6, migrate/migrator.rs, `run_direct`) takes `conn.lock()` before
        // it reads the applied versions and releases it after the last migration, and
        // PostgreSQL's lock (sqlx-postgres 0.8.6, migrate.rs) is `pg_advisory_lock` keyed
        // by the database's name, which blocks until granted. So the instances migrate one
        // after the other, and the later ones find everything applied.
        //
        // The migrations run on a connection of their own, without the statement timeout
        // below: waiting for that lock while another instance migrates, or building an
        // index on a large table, may rightly take longer than any request should.
        let mut conn = PgConnection::connect_with(&options)
            .await
            .with_context(|| {
                format!("connecting to the PostgreSQL database {DATABASE_URL_VARIABLE} names")
            })?;
        sqlx::migrate!("./migrations/postgres")
            .run(&mut conn)
            .await
            .context("migrating the PostgreSQL database")?;
        conn.close()
            .await
            .context("closing the migration connection")?;
        // statement_timeout is set at connection start-up, so it holds for every statement
        // on every pooled connection: a runaway query ends as a 503 (SQLSTATE 57014, see
        // `is_transient`) instead of holding a connection that other requests wait for.
        // (A zero duration is PostgreSQL's "no limit".)
        let timeout_ms = settings.statement_timeout.as_millis();
        let options = options.options([("statement_timeout", timeout_ms)]);
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options)
            .await
            .with_context(|| {
                format!("connecting to the PostgreSQL database {DATABASE_URL_VARIABLE} names")
            })?;
        Ok(Self { pool })
    }
}

#[async_trait]
impl super::Store for PgStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    fn pool_usage(&self) -> PoolUsage {
        PoolUsage {
            open: self.pool.size(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
        }
    }
}

/// Whether a database error means "try again later" rather than a bug: the server is
/// unreachable, overloaded, shutting down or starting, the statement timed out, or the
/// transaction lost a race. `false` for anything that is not a PostgreSQL error, so that
/// the SQLite backend's errors are left to its own check.
pub(super) fn is_transient(error: &dyn sqlx::error::DatabaseError) -> bool {
    let Some(error) = error.try_downcast_ref::<PgDatabaseError>() else {
        return false;
    };
    let code = error.code();
    // Class 08: connection exception. Class 53: insufficient resources (too many
    // connections, out of memory or disk).
    code.starts_with("08")
        || code.starts_with("53")
        // admin_shutdown, crash_shutdown, cannot_connect_now (starting up or in recovery),
        // and query_canceled, which is what statement_timeout raises.
        || matches!(code, "57P01" | "57P02" | "57P03" | "57014")
        || is_lost_race(code)
}

/// serialization_failure and deadlock_detected: the transaction was rolled back because
/// of another one, and running it again will most likely succeed.
fn is_lost_race(code: &str) -> bool {
    matches!(code, "40001" | "40P01")
}

/// How many times [`retry`] runs a transaction that keeps losing races.
const ATTEMPTS: u32 = 4;

/// Runs a write transaction, and runs it again (from `BEGIN`) when PostgreSQL rolled it
/// back for a deadlock or a serialisation failure: neither is the caller's fault, and
/// the other transaction has usually finished by the time this one is re-run. After
/// [`ATTEMPTS`] tries the error is [`StoreError::Unavailable`], a 503.
///
/// `attempt` makes one complete try: it begins the transaction, and commits it or returns
/// an error (dropping the transaction rolls it back). It is called again from scratch, so
/// it must not depend on what an earlier try did.
async fn retry<T, F, Fut>(mut attempt: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    let mut tries = 1;
    loop {
        let error = match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let lost_race = match &error {
            sqlx::Error::Database(db) => db
                .try_downcast_ref::<PgDatabaseError>()
                .is_some_and(|pg| is_lost_race(pg.code())),
            _ => false,
        };
        if !lost_race {
            return Err(error.into());
        }
        if tries >= ATTEMPTS {
            return Err(StoreError::Unavailable(error));
        }
        // A short random pause, so that two transactions that collided do not collide
        // again in lockstep.
        let pause_ms = rand::rng().random_range(1..=5 * u64::from(tries));
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        tries += 1;
    }
}

/// The row count a page asks for: one more than the page, to learn whether more follow
/// ([`super::Page::from_overfetch`]).
fn overfetch(limit: u32) -> i64 {
    i64::from(limit) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_retry_later_codes_are_lost_races() {
        assert!(is_lost_race("40001") && is_lost_race("40P01"));
        assert!(!is_lost_race("23505") && !is_lost_race("57014"));
    }

    #[test]
    fn a_page_fetches_one_more_row() {
        assert_eq!(overfetch(0), 1);
        assert_eq!(overfetch(u32::MAX), i64::from(u32::MAX) + 1);
    }
}
