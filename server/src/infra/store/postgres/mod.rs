//! PostgreSQL, for several server instances sharing one database.
//!
//! What is PostgreSQL's own: connecting, migrating (`migrations/postgres`) and the
//! statement timeout; the queries are [`super::sql`]'s.
//!
//! Unlike SQLite there is no process-wide writer turn ([`SqlStore::concurrent`]): other
//! processes write the same rows, so every guarantee rests on the database alone.
//! Uniqueness and references are constraints whose violations the store maps to outcomes
//! (a taken username, an unknown user, a plan in use) instead of checks before a write;
//! counters move in the transaction that changes what they count; rows are locked in a
//! fixed order where two transactions can meet; and the transactions that can still
//! deadlock or fail to serialise are re-run whole. Transactions run at PostgreSQL's
//! default READ COMMITTED level, under which a conflicting insert waits for the other
//! transaction and then sees its outcome, which is what idempotent writes want.

use std::str::FromStr;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgQueryResult};
use sqlx::{Connection, PgConnection, Postgres};

use super::sql::{Backend, Sql, SqlStore};
use super::{DATABASE_URL_VARIABLE, PoolSettings};

impl Backend for Postgres {
    fn pick(sql: &Sql) -> &'static str {
        sql.postgres
    }

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }

    fn as_postgres(conn: &mut PgConnection) -> Option<&mut PgConnection> {
        Some(conn)
    }
}

/// Connects to the database `url` names and migrates it.
pub(super) async fn open(url: &str, settings: &PoolSettings) -> anyhow::Result<SqlStore<Postgres>> {
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
    let connecting =
        || format!("connecting to the PostgreSQL database {DATABASE_URL_VARIABLE} names");
    let mut conn = PgConnection::connect_with(&options)
        .await
        .with_context(connecting)?;
    super::additive(sqlx::migrate!("./migrations/postgres"))
        .run(&mut conn)
        .await
        .context("migrating the PostgreSQL database")?;
    conn.close()
        .await
        .context("closing the migration connection")?;
    // statement_timeout is set at connection start-up, so it holds for every statement
    // on every pooled connection: a runaway query ends as a 503 (SQLSTATE 57014, see
    // `super::error`) instead of holding a connection that other requests wait for.
    // (A zero duration is PostgreSQL's "no limit".)
    let timeout_ms = settings.statement_timeout.as_millis();
    let options = options.options([("statement_timeout", timeout_ms)]);
    let pool = PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .connect_with(options)
        .await
        .with_context(connecting)?;
    Ok(SqlStore::concurrent(pool))
}
