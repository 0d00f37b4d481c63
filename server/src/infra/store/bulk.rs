//! The bulk loading of the benchmark data generator: not part of [`Store`], since the API
//! never loads in bulk; the generator opens a [`BulkStore`] ([`super::open_bulk`]). The
//! statements are in `sql/import.rs`.

use async_trait::async_trait;
use uuid::Uuid;

use super::{NewUserRecord, Store, StoreError, TweetRecord};

/// Bulk loading, for the benchmark data generator: many rows per transaction, counters
/// recomputed once at the end. Not used by the API, and not part of [`Store`].
///
/// A load is [`ImportStore::begin`], the imports, then [`ImportStore::finish`]; imports
/// outside of one are valid too, only slower.
#[async_trait]
pub trait ImportStore {
    /// Drops the bulk tables' secondary indexes (and on PostgreSQL their foreign keys), to
    /// be built once at the end.
    async fn begin(&self) -> Result<Deferred, StoreError>;
    async fn import_users(&self, users: &[(Uuid, NewUserRecord)]) -> Result<(), StoreError>;
    /// Inserts follow edges `(follower, followee)`; a batch must not repeat a pair.
    async fn import_follows(&self, edges: &[(Uuid, Uuid)]) -> Result<(), StoreError>;
    async fn import_tweets(&self, tweets: &[TweetRecord]) -> Result<(), StoreError>;
    /// Builds what [`ImportStore::begin`] dropped, recomputes every user's counters from
    /// the rows, and refreshes planner statistics.
    async fn finish(&self, deferred: Deferred) -> Result<(), StoreError>;
}

/// The indexes and constraints a bulk load dropped: each one's name and the statement
/// that builds it again.
#[derive(Debug)]
pub struct Deferred(pub(crate) Vec<(String, String)>);

impl Deferred {
    /// The names of what was dropped.
    pub fn names(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_str()).collect()
    }
}

/// A store that also loads in bulk: what the benchmark data generator opens.
pub trait BulkStore: Store + ImportStore {}

impl<T: Store + ImportStore> BulkStore for T {}
