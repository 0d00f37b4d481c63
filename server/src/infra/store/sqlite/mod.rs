//! The embedded default: one SQLite file in the data directory.
//!
//! What is SQLite's own: opening the file and migrating it (`migrations/sqlite`); the
//! queries are [`super::sql`]'s.
//!
//! WAL mode with `synchronous=FULL`, so that a write the API acknowledged survives a crash
//! or a power loss. SQLite lets one transaction write at a time, so the store's writers
//! take turns in FIFO order without blocking a thread ([`SqlStore::serialised`]), rather
//! than in SQLite's busy handler, which sleeps and retries with growing pauses and so
//! turns contention into long tail latency. The turn also makes read-then-write sequences
//! safe: one process owns the file.
//!
//! Ids are 16-byte BLOBs (`0008_uuid_blobs.sql`), which compare bytewise like the UUIDv7
//! they hold, so an id range is a time range, and which sqlx reads as `Uuid` just as it
//! reads PostgreSQL's `uuid`.

use std::path::Path;
use std::str::FromStr;

use anyhow::Context;
use sqlx::Sqlite;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteQueryResult,
    SqliteSynchronous,
};

use super::sql::{Backend, Sql, SqlStore};
use super::{DATABASE_URL_VARIABLE, PoolSettings};

/// How much of the database file reads may map.
const MMAP_BYTES: u64 = 1 << 30;
/// The page cache of a bulk load, in KiB (SQLite's default is 2 MiB): the indexes of a
/// million rows stay in memory while they are built.
const BULK_CACHE_KIB: u32 = 256 * 1024;

/// What a database is opened for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The server: every acknowledged write survives a power loss.
    Serving,
    /// Filling a throwaway database (the benchmark data generator): no fsync, and a
    /// large page cache. A crash loses the load, which is simply run again.
    BulkLoad,
}

impl Backend for Sqlite {
    fn pick(sql: &Sql) -> &'static str {
        sql.sqlite
    }

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }

    fn as_postgres(_: &mut sqlx::SqliteConnection) -> Option<&mut sqlx::PgConnection> {
        None
    }
}

/// Opens (creating if needed) the database file at `path` and migrates it.
pub(super) async fn open_file(
    path: &Path,
    settings: &PoolSettings,
    purpose: Purpose,
) -> anyhow::Result<SqlStore<Sqlite>> {
    let options = SqliteConnectOptions::new().filename(path);
    open_with(options, settings, purpose)
        .await
        .with_context(|| format!("opening the database {}", path.display()))
}

/// Opens (creating if needed) the database a `sqlite://` URL names and migrates it.
pub(super) async fn open_url(
    url: &str,
    settings: &PoolSettings,
    purpose: Purpose,
) -> anyhow::Result<SqlStore<Sqlite>> {
    let options = SqliteConnectOptions::from_str(url)
        .with_context(|| format!("{DATABASE_URL_VARIABLE} is not a valid sqlite:// URL"))?;
    open_with(options, settings, purpose)
        .await
        .with_context(|| format!("opening the database {DATABASE_URL_VARIABLE} names"))
}

async fn open_with(
    options: SqliteConnectOptions,
    settings: &PoolSettings,
    purpose: Purpose,
) -> anyhow::Result<SqlStore<Sqlite>> {
    let mut options = options
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // FULL: the WAL is fsynced at every commit, so an acknowledged write survives
        // power loss, not only a process crash.
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(settings.statement_timeout)
        // Reads go through a memory map of the file instead of a read() system call
        // and a copy per page: the profile of a timeline read was mostly those.
        .pragma("mmap_size", MMAP_BYTES.to_string());
    if purpose == Purpose::BulkLoad {
        options = options
            .synchronous(SqliteSynchronous::Off)
            .pragma("cache_size", format!("-{BULK_CACHE_KIB}"));
    }
    let pool = SqlitePoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .connect_with(options)
        .await?;
    super::additive(sqlx::migrate!("./migrations/sqlite"))
        .run(&pool)
        .await
        .context("migrating the database")?;
    Ok(SqlStore::serialised(pool))
}

#[cfg(test)]
mod tests;
