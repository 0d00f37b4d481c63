//! Tweets by id, from a bounded cache in this process.
//!
//! Tweets never change after they are posted; they only disappear. So the cache needs
//! no expiry, only the `tweet.deleted` event ([`crate::events`]), which leaves a
//! tombstone: a read that fetched the tweet from the database just before the delete
//! committed cannot put it back, because an entry is only ever filled into an empty slot
//! (quick_cache's placeholder, which a concurrent insert invalidates).

use std::sync::Arc;
use std::time::Duration;

use quick_cache::Weighter;
use quick_cache::sync::{Cache, GuardResult};
use uuid::Uuid;

use crate::store::{SharedStore, StoreError, TweetRecord};

/// A cached tweet, or `None`: deleted (or never posted).
type Slot = Option<Arc<TweetRecord>>;

#[derive(Clone)]
struct Bytes;

impl Weighter<Uuid, Slot> for Bytes {
    fn weight(&self, _id: &Uuid, slot: &Slot) -> u64 {
        // The record, its text and the cache's own bookkeeping, roughly.
        96 + slot.as_ref().map_or(0, |tweet| tweet.text.len() as u64)
    }
}

/// Tweets by id.
pub struct TweetCache {
    cache: Cache<Uuid, Slot, Bytes>,
}

impl TweetCache {
    pub fn new(budget_bytes: u64) -> Self {
        let estimated = (budget_bytes / 200).max(16) as usize;
        Self {
            cache: Cache::with_weighter(estimated, budget_bytes, Bytes),
        }
    }

    /// The tweet `id`, from the cache or else the database (one reader fetches it; others
    /// asking meanwhile wait for that).
    pub async fn get(&self, store: &SharedStore, id: Uuid) -> Result<Slot, StoreError> {
        match self.cache.get_value_or_guard_async(&id).await {
            Ok(slot) => Ok(slot),
            Err(guard) => {
                let slot = store.tweet(id).await?.map(Arc::new);
                // Err: a delete (or a post) replaced the placeholder; its word wins.
                let _ = guard.insert(slot.clone());
                Ok(slot)
            }
        }
    }

    /// The tweets `ids`, in that order; `None` when any of them no longer exists.
    pub async fn get_many(
        &self,
        store: &SharedStore,
        ids: &[Uuid],
    ) -> Result<Option<Vec<Arc<TweetRecord>>>, StoreError> {
        let mut found: Vec<Slot> = ids.iter().map(|id| self.cache.get(id).flatten()).collect();
        let missing: Vec<Uuid> = ids
            .iter()
            .zip(&found)
            .filter(|(_, slot)| slot.is_none())
            .map(|(id, _)| *id)
            .collect();
        if !missing.is_empty() {
            let fetched = store.tweets_by_ids(&missing).await?;
            for tweet in fetched {
                let tweet = Arc::new(tweet);
                self.fill(&tweet);
                if let Some(at) = ids.iter().position(|id| *id == tweet.id) {
                    found[at] = Some(tweet);
                }
            }
        }
        Ok(found.into_iter().collect())
    }

    /// Caches a tweet read from the database, unless its slot is taken (a tombstone wins).
    pub fn fill(&self, tweet: &Arc<TweetRecord>) {
        if let GuardResult::Guard(guard) = self
            .cache
            .get_value_or_guard(&tweet.id, Some(Duration::ZERO))
        {
            let _ = guard.insert(Some(Arc::clone(tweet)));
        }
    }

    /// A tweet just posted.
    pub fn posted(&self, tweet: TweetRecord) {
        self.cache.insert(tweet.id, Some(Arc::new(tweet)));
    }

    /// A tweet just deleted: a tombstone, so that no late reader caches it again.
    pub fn deleted(&self, id: Uuid) {
        self.cache.insert(id, None);
    }

    /// Forgets everything (deletes may have been missed).
    pub fn clear(&self) {
        self.cache.clear();
    }
}
