//! The store, written once for both databases.
//!
//! SQLite and PostgreSQL differ far less than two copies of the store suggested: with ids
//! stored as 16-byte BLOBs in SQLite (`migrations/sqlite/0008_uuid_blobs.sql`) and native
//! `uuid` in PostgreSQL, and times as sqlx's `DateTime<Utc>` on both, one
//! `#[derive(sqlx::FromRow)]` struct per row ([`rows`]) reads either, and both accept
//! `$1`-style parameters. So each query is written once, generic over `DB: `[`Backend`],
//! and where the dialects really differ only that statement is spelled twice, side by
//! side ([`Sql`]), beside the function that runs it. Lists (of ids, of usage counts)
//! travel as one JSON parameter, which both unpack (`json_each`, `json_array_elements`).
//!
//! How writes are kept safe differs, and is data on [`SqlStore`] rather than code: SQLite
//! lets one transaction write at a time, so its writers queue in FIFO order on an
//! in-process turn ([`SqlStore::turn`]) instead of in SQLite's busy handler; PostgreSQL
//! is shared with other instances, so its guarantees rest on constraints and row locks
//! (the `FOR UPDATE` statements in the PostgreSQL spellings), and a transaction that lost a race is re-run
//! ([`SqlStore::write`]). [`SqlStore::write`] does both, each a no-op where it does not apply.
//!
//! What stays per backend is opening and migrating the database (`sqlite/`, `postgres/`).

mod exec;
mod follows;
mod import;
mod keys;
mod outbox;
mod plans;
mod posts;
mod rows;
mod tweets;
mod usage;
mod users;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use rand::Rng;
use sqlx::pool::PoolConnection;
use sqlx::{Database, Pool, Transaction};
use uuid::Uuid;

pub(super) use exec::QueryExt;
use exec::{Param, Rows, Run};
pub(super) use posts::Post;
use rows::{ClaimRow, DayRow, EdgeRow, KeyPlanRow, KeyRow, OutboxRow, PlanRow, TweetRow, UserRow};

use super::error::is_lost_race;
use super::{PoolUsage, Store, StoreError};

/// A database the store runs on: what the shared queries need of it (the supertraits,
/// see [`exec`]) and the little that differs between SQLite and PostgreSQL.
pub trait Backend:
    Database
    + Run
    + for<'q> Param<'q, Uuid>
    + for<'q> Param<'q, Option<Uuid>>
    + for<'q> Param<'q, &'q str>
    + for<'q> Param<'q, Option<&'q str>>
    + for<'q> Param<'q, String>
    + for<'q> Param<'q, i64>
    + for<'q> Param<'q, Option<i64>>
    + for<'q> Param<'q, Option<f64>>
    + for<'q> Param<'q, bool>
    + for<'q> Param<'q, Option<bool>>
    + for<'q> Param<'q, DateTime<Utc>>
    + for<'q> Param<'q, NaiveDate>
    + Rows<UserRow>
    + Rows<EdgeRow>
    + Rows<TweetRow>
    + Rows<PlanRow>
    + Rows<KeyRow>
    + Rows<KeyPlanRow>
    + Rows<ClaimRow>
    + Rows<OutboxRow>
    + webhooks::WebhookRows
    + Rows<(Uuid,)>
    + Rows<(i64,)>
    + Rows<(bool,)>
    + Rows<(String,)>
    + Rows<(String, String)>
    + Rows<(Option<String>,)>
    + Rows<(NaiveDate, i64)>
    + Rows<(Uuid, i64)>
    + Rows<DayRow>
    + Rows<(String, Option<DateTime<Utc>>)>
{
    /// This backend's spelling of a statement whose dialects differ.
    fn pick(sql: &Sql) -> &'static str;
    /// How many rows a statement changed (sqlx has no trait for it).
    fn rows_affected(result: &Self::QueryResult) -> u64;
    /// The connection as PostgreSQL's, for the one thing only it has that the store uses:
    /// `COPY … FROM STDIN`, bulk loading's fast path (`import.rs`). `None` on SQLite.
    fn as_postgres(conn: &mut Self::Connection) -> Option<&mut sqlx::PgConnection>;
}

/// A statement in each dialect, for the few that differ; each says why beside it.
pub struct Sql {
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

/// The store, on a pool of `DB` connections.
#[derive(Debug)]
pub struct SqlStore<DB: Database> {
    pool: Pool<DB>,
    /// SQLite's turn to write: writers take it in FIFO order, one at a time. `None` on
    /// PostgreSQL, where other instances write too and only the database can arbitrate.
    writer: Option<Arc<tokio::sync::Mutex<()>>>,
    /// Posts queue here for a group commit ([`posts`]); `None` where posts commit one
    /// transaction each (PostgreSQL, and the committer's own copy of the store).
    posts: Option<tokio::sync::mpsc::Sender<posts::Queued>>,
}

impl<DB: Backend> SqlStore<DB> {
    /// A store on `pool` whose writes run one at a time, their posts grouped (SQLite).
    pub(super) fn serialised(pool: Pool<DB>) -> Self {
        let (posts, queue) = tokio::sync::mpsc::channel(4 * 1024);
        let store = Self {
            pool,
            writer: Some(Arc::default()),
            posts: Some(posts),
        };
        posts::GroupCommit::start(store.without_posts(), queue);
        store
    }

    /// A store on `pool` whose writes run concurrently (PostgreSQL).
    pub(super) fn concurrent(pool: Pool<DB>) -> Self {
        Self {
            pool,
            writer: None,
            posts: None,
        }
    }

    /// A copy that does not keep the post queue open (the committer's, so that the queue
    /// closes when the last user of the store is gone).
    fn without_posts(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            writer: self.writer.clone(),
            posts: None,
        }
    }

    /// Whether this process is the database's only writer (SQLite), so that what the
    /// instances of a cluster must settle in the database can be settled in the process.
    fn is_serialised(&self) -> bool {
        self.writer.is_some()
    }

    /// Waits for this store's turn to write, where writers take turns; hold the guard
    /// until the write commits.
    async fn turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.writer {
            Some(writer) => Some(writer.lock().await),
            None => None,
        }
    }

    /// A connection from the pool, for reads and single-statement writes.
    async fn conn(&self) -> Result<PoolConnection<DB>, sqlx::Error> {
        self.pool.acquire().await
    }

    /// Runs a write transaction in this store's turn, and runs it again (from `BEGIN`)
    /// when the database rolled it back for a deadlock or a serialisation failure (only
    /// PostgreSQL reports those): neither is the caller's fault, and the other
    /// transaction has usually finished by the time this one is re-run. After
    /// [`ATTEMPTS`] tries the error is [`StoreError::Unavailable`], a 503.
    ///
    /// `attempt` makes one complete try: given the begun transaction, it commits it or
    /// returns (dropping the transaction rolls it back). It may be called again from
    /// scratch, so it must not depend on what an earlier try did.
    async fn write<'a, T, F, Fut>(&'a self, mut attempt: F) -> Result<T, StoreError>
    where
        F: FnMut(Transaction<'static, DB>) -> Fut + Send + 'a,
        Fut: Future<Output = Result<T, sqlx::Error>> + Send + 'a,
        T: Send,
    {
        let _turn = self.turn().await;
        let mut tries = 1;
        loop {
            let error = match attempt(self.pool.begin().await?).await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            if !is_lost_race(&error) {
                return Err(error.into());
            }
            if tries >= ATTEMPTS {
                return Err(StoreError::Unavailable(error));
            }
            // A short random pause, so that two transactions that collided do not
            // collide again in lockstep.
            let pause_ms = rand::rng().random_range(1..=5 * u64::from(tries));
            tokio::time::sleep(Duration::from_millis(pause_ms)).await;
            tries += 1;
        }
    }

    /// A statement for this backend.
    fn query(sql: &str) -> exec::Q<'_, DB> {
        sqlx::query(sql)
    }

    /// This backend's spelling of a statement whose dialects differ.
    fn dialect<'q>(sql: &Sql) -> exec::Q<'q, DB> {
        sqlx::query(DB::pick(sql))
    }
}
#[async_trait]
impl<DB: Backend> Store for SqlStore<DB> {
    async fn ping(&self) -> Result<(), StoreError> {
        Self::query("SELECT 1")
            .execute_on(&mut *self.conn().await?)
            .await?;
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

/// How many times [`SqlStore::write`] runs a transaction that keeps losing races.
const ATTEMPTS: u32 = 4;

/// The row count a page asks for: one more than the page, to learn whether more follow
/// ([`super::Page::from_overfetch`]).
fn overfetch(limit: u32) -> i64 {
    i64::from(limit) + 1
}

/// A list as the one JSON parameter both backends unpack.
fn json_list<T: serde::Serialize>(items: &[T]) -> Result<String, sqlx::Error> {
    serde_json::to_string(items).map_err(|e| sqlx::Error::Encode(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_fetches_one_more_row() {
        assert_eq!(overfetch(0), 1);
        assert_eq!(overfetch(u32::MAX), i64::from(u32::MAX) + 1);
    }
}
