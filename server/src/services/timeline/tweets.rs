//! Tweets by id, from a bounded cache in this process ([`crate::services::cache`]).
//!
//! Tweets never change after they are posted; they only disappear. So the cache needs no
//! expiry: a post caches the new tweet, and a delete leaves a [`Slot::Gone`] mark that no
//! late reader can overwrite.
//!
//! [`Slot::Gone`]: crate::services::cache::Slot::Gone

use std::sync::Arc;

use uuid::Uuid;

use crate::infra::store::{SharedStore, StoreError, TweetRecord};
use crate::services::cache::{RecordCache, Weight};

impl Weight for TweetRecord {
    fn weight(&self) -> u64 {
        64 + self.text.len() as u64
    }
}

/// Tweets by id.
pub struct TweetCache {
    cache: RecordCache<Uuid, TweetRecord>,
}

impl TweetCache {
    pub fn new(budget_bytes: u64) -> Self {
        Self {
            cache: RecordCache::new("tweets", budget_bytes, 200),
        }
    }

    /// The tweet `id`, from the cache or else the database.
    pub async fn get(
        &self,
        store: &SharedStore,
        id: Uuid,
    ) -> Result<Option<Arc<TweetRecord>>, StoreError> {
        self.cache.get(&id, || store.tweet(id)).await
    }

    /// The tweets `ids`, in that order, the missing ones in one query; `None` when any of
    /// them no longer exists.
    pub async fn get_many(
        &self,
        store: &SharedStore,
        ids: &[Uuid],
    ) -> Result<Option<Vec<Arc<TweetRecord>>>, StoreError> {
        let mut found = self.cache.peek_many(ids);
        let missing: Vec<Uuid> = ids
            .iter()
            .zip(&found)
            .filter(|(_, tweet)| tweet.is_none())
            .map(|(id, _)| *id)
            .collect();
        if !missing.is_empty() {
            for tweet in store.tweets_by_ids(&missing).await? {
                let tweet = Arc::new(tweet);
                self.cache.fill(tweet.id, Arc::clone(&tweet));
                if let Some(at) = ids.iter().position(|id| *id == tweet.id) {
                    found[at] = Some(tweet);
                }
            }
        }
        Ok(found.into_iter().collect())
    }

    /// Caches a tweet read from the database, unless its slot holds anything.
    pub fn fill(&self, tweet: &TweetRecord) {
        self.cache.fill(tweet.id, Arc::new(tweet.clone()));
    }

    /// A tweet just posted.
    pub fn posted(&self, tweet: TweetRecord) {
        self.cache.put(tweet.id, tweet);
    }

    /// A tweet just deleted.
    pub fn deleted(&self, id: Uuid) {
        self.cache.gone(id);
    }

    /// Reads `id` from the database next time (it may have changed elsewhere).
    pub fn forget(&self, id: Uuid) {
        self.cache.invalidate(id);
    }

    /// Whether to keep tweets at all ([`RecordCache::keep`]): not while deletes may be
    /// missed.
    pub fn keep(&self, keep: bool) {
        self.cache.keep(keep);
    }
}
