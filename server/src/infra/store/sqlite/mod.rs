//! The embedded default: one SQLite file in the data directory.
//!
//! WAL mode with `synchronous=FULL`, so that a write the API acknowledged survives a crash
//! or a power loss. SQLite lets one transaction write at a time, so writers queue on
//! [`SqliteStore::write_turn`] in FIFO order without blocking a thread, rather than in
//! SQLite's busy handler, which sleeps and retries with growing pauses and so turns
//! contention into long tail latency. That queue also makes check-then-write sequences
//! (deleting a plan no key uses) safe: one process owns the file.
//!
//! Ids are stored as hyphenated UUID text (`uuid::fmt::Hyphenated`), which sorts like the
//! UUIDv7 it spells, so an id range is a time range.

mod follows;
mod gateway;
mod import;
mod outbox;
mod tweets;
mod users;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use sqlx::SqlitePool;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteError, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, error::DatabaseError};
use uuid::Uuid;
use uuid::fmt::Hyphenated;

use super::{DATABASE_URL_VARIABLE, PoolSettings, PoolUsage, Store, StoreError};

/// How much of the database file reads may map.
const MMAP_BYTES: u64 = 1 << 30;

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    writer: Arc<tokio::sync::Mutex<()>>,
    /// Posts queue here for the group commit ([`tweets::GroupCommit`]); `None` only in the
    /// committer's own copy of the store.
    posts: Option<tokio::sync::mpsc::Sender<tweets::Post>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and migrates it.
    pub async fn open_file(path: &Path, settings: &PoolSettings) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::new().filename(path);
        Self::open_with(options, settings)
            .await
            .with_context(|| format!("opening the database {}", path.display()))
    }

    /// Opens (creating if needed) the database a `sqlite://` URL names and migrates it.
    pub async fn open_url(url: &str, settings: &PoolSettings) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .with_context(|| format!("{DATABASE_URL_VARIABLE} is not a valid sqlite:// URL"))?;
        Self::open_with(options, settings)
            .await
            .with_context(|| format!("opening the database {DATABASE_URL_VARIABLE} names"))
    }

    async fn open_with(
        options: SqliteConnectOptions,
        settings: &PoolSettings,
    ) -> anyhow::Result<Self> {
        let options = options
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
        let pool = SqlitePoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .context("migrating the database")?;
        let (posts, queue) = tokio::sync::mpsc::channel(4 * 1024);
        let store = Self {
            pool,
            writer: Arc::default(),
            posts: Some(posts),
        };
        tweets::GroupCommit::start(&store, queue);
        Ok(store)
    }

    /// A copy that does not keep the post queue open (the committer's, so that the queue
    /// closes when the last user of the store is gone).
    fn clone_without_posts(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            writer: Arc::clone(&self.writer),
            posts: None,
        }
    }

    /// Waits for this store's turn to write; hold the guard until the write commits.
    async fn write_turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writer.lock().await
    }
}

#[async_trait]
impl Store for SqliteStore {
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

/// Whether a database error is SQLite saying "busy, try later": `SQLITE_BUSY` (5),
/// `SQLITE_LOCKED` (6) or `SQLITE_BUSY_RECOVERY` (261), `SQLITE_BUSY_SNAPSHOT` (517)
/// after the busy timeout.
pub(super) fn is_transient(error: &(dyn DatabaseError + 'static)) -> bool {
    error.try_downcast_ref::<SqliteError>().is_some()
        && matches!(error.code().as_deref(), Some("5" | "6" | "261" | "517"))
}

/// A UUID as this backend stores it.
fn text(id: Uuid) -> Hyphenated {
    id.hyphenated()
}

/// The UUID stored as text in `column`.
fn uuid(row: &SqliteRow, column: &str) -> Result<Uuid, sqlx::Error> {
    row.try_get::<Hyphenated, _>(column)
        .map(Hyphenated::into_uuid)
}
