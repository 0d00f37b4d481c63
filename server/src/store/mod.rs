//! Persistence, behind repository functions that know nothing of HTTP.
//!
//! SQLite is the embedded default: one file in the data directory, in WAL mode with
//! `synchronous=FULL`, so that a write the API acknowledged survives a crash or a power
//! loss. Migrations run on start. Errors are sorted here into what the caller can act on:
//! a taken unique value ([`StoreError::Conflict`]), a database that is not answering
//! ([`StoreError::Unavailable`], which becomes a 503), and everything else.

mod follows;
mod gateway;
mod idempotency;
mod import;
mod tweets;
mod usage;
mod users;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub use follows::EdgeChange;
pub use gateway::{KeyChanges, KeyRecord, KeyWrite, PlanDeletion, PlanRecord, PlanSettings};
pub use idempotency::Claim;
pub use tweets::{Deletion, StoredResponse, TweetRecord};
pub use users::{NewUserRecord, PictureRecord, UserRecord};

/// One page of a keyset-paginated list: the items, and the cursor of the last one when
/// more follow.
#[derive(Debug)]
pub struct Page<T, C> {
    pub items: Vec<T>,
    pub next: Option<C>,
}

impl<T, C> Page<T, C> {
    /// Builds a page from `limit + 1` fetched rows: the extra row only says that more follow.
    fn from_overfetch(mut rows: Vec<(T, C)>, limit: u32) -> Self {
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let mut items = Vec::with_capacity(rows.len());
        let mut last = None;
        for (item, cursor) in rows {
            items.push(item);
            last = Some(cursor);
        }
        Self {
            items,
            next: if more { last } else { None },
        }
    }
}

/// A failed store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint refused the write; `field` names the column.
    #[error("{field} is already taken")]
    Conflict { field: &'static str },
    /// The database did not answer (closed pool, timeout, I/O).
    #[error("the database is unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// Anything else: a bug or corrupt data.
    #[error("database error")]
    Other(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                Self::Unavailable(error)
            }
            sqlx::Error::Database(db) => {
                // SQLITE_BUSY (5) and SQLITE_LOCKED (6) after the busy timeout: retryable.
                let code = db.code().unwrap_or_default();
                if code == "5" || code == "6" || code == "517" {
                    Self::Unavailable(error)
                } else {
                    Self::Other(error)
                }
            }
            _ => Self::Other(error),
        }
    }
}

/// How much of the database file reads may map.
const MMAP_BYTES: u64 = 1 << 30;

/// The database, shared by every request.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    /// SQLite lets one transaction write at a time. Writers queue here, in FIFO order and
    /// without blocking a thread, rather than in SQLite's busy handler, which sleeps and
    /// retries with growing pauses and so turns contention into long tail latency.
    writer: Arc<tokio::sync::Mutex<()>>,
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and migrates it.
    pub async fn open_sqlite(path: &Path) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str("sqlite://")
            .context("sqlite options")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: the WAL is fsynced at every commit, so an acknowledged write survives
            // power loss, not only a process crash.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            // Reads go through a memory map of the file instead of a read() system call
            // and a copy per page: the profile of a timeline read was mostly those.
            .pragma("mmap_size", MMAP_BYTES.to_string());
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .with_context(|| format!("opening the database {}", path.display()))?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .context("migrating the database")?;
        Ok(Self {
            pool,
            writer: Arc::default(),
        })
    }

    /// Whether the database answers a trivial query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Waits for this store's turn to write; hold the guard until the write commits.
    async fn write_turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writer.lock().await
    }

    /// Closes every connection; later calls fail as [`StoreError::Unavailable`].
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
