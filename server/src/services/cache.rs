//! Bounded in-process caches of stored records by id, kept right by the domain events.
//!
//! The danger with such a cache is the late writer: a reader fetches a record, the record
//! changes and its event invalidates the cache, and only then does the reader put what it
//! fetched into the cache, where it would stay stale. So a reader never writes over
//! anything: it fills an empty slot through quick_cache's placeholder, and any write to
//! the slot meanwhile (the invalidation) makes that fill fail. An invalidation leaves a
//! mark ([`Slot::Stale`] or [`Slot::Gone`]), never an empty slot, for the same reason. (A
//! mark the cache evicted for room is forgotten like any entry; a fill racing that exact
//! moment could cache a record the mark stood against, until evicted in turn.)
//!
//! A cache is only as good as the events that correct it: while this instance may be
//! missing other instances' events (Redis away), it keeps nothing ([`RecordCache::keep`]),
//! and every read goes to the database.

use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use quick_cache::Weighter;
use quick_cache::sync::{Cache, GuardResult};

/// What the cache knows of one id.
#[derive(Debug)]
pub enum Slot<T> {
    Fresh(Arc<T>),
    /// Changed since it was cached: read it again.
    Stale,
    /// Known not to exist (deleted): no need to ask the database.
    Gone,
}

impl<T> Clone for Slot<T> {
    fn clone(&self) -> Self {
        match self {
            Self::Fresh(record) => Self::Fresh(Arc::clone(record)),
            Self::Stale => Self::Stale,
            Self::Gone => Self::Gone,
        }
    }
}

/// The size of a record in bytes, roughly, for the cache's budget.
pub trait Weight {
    fn weight(&self) -> u64;
}

#[derive(Clone)]
struct Bytes;

impl<K, T: Weight> Weighter<K, Slot<T>> for Bytes {
    fn weight(&self, _key: &K, slot: &Slot<T>) -> u64 {
        // The cache's own bookkeeping, plus the record.
        64 + match slot {
            Slot::Fresh(record) => record.weight(),
            Slot::Stale | Slot::Gone => 0,
        }
    }
}

/// Records by id, within a byte budget.
pub struct RecordCache<K, T> {
    /// Lookups that found the record, and those that did not.
    hits: metrics::Counter,
    misses: metrics::Counter,
    cache: Cache<K, Slot<T>, Bytes>,
    /// False while the events that keep the cache right may be missed: nothing is kept.
    keeping: AtomicBool,
}

impl<K, T> RecordCache<K, T>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    T: Weight + Send + Sync + 'static,
{
    /// A cache named `name` (in its metrics) of at most about `budget_bytes`, for records
    /// of about `typical_bytes`.
    pub fn new(name: &'static str, budget_bytes: u64, typical_bytes: u64) -> Self {
        let estimated = (budget_bytes / typical_bytes.max(1)).max(16) as usize;
        let [hits, misses] = crate::infra::metrics::cache_lookups(name);
        Self {
            hits,
            misses,
            cache: Cache::with_weighter(estimated, budget_bytes, Bytes),
            keeping: AtomicBool::new(true),
        }
    }

    fn keeping(&self) -> bool {
        self.keeping.load(Ordering::Acquire)
    }

    /// `false`: forget everything and keep nothing (every read loads); `true`: start
    /// afresh and keep again. Either way what was kept before is dropped.
    pub fn keep(&self, keep: bool) {
        self.keeping.store(keep, Ordering::Release);
        self.cache.clear();
    }

    /// The record `id`, from the cache or else from `load` (one caller loads; others
    /// asking meanwhile wait for it). `None`: no such record.
    pub async fn get<E, F>(&self, id: &K, load: impl Fn() -> F) -> Result<Option<Arc<T>>, E>
    where
        F: Future<Output = Result<Option<T>, E>>,
    {
        if !self.keeping() {
            self.misses.increment(1);
            return Ok(load().await?.map(Arc::new));
        }
        // Twice at most: a stale mark is cleared once, then the slot is filled.
        for _ in 0..2 {
            match self.cache.get_value_or_guard_async(id).await {
                Ok(Slot::Fresh(record)) => {
                    self.hits.increment(1);
                    return Ok(Some(record));
                }
                Ok(Slot::Gone) => {
                    self.hits.increment(1);
                    return Ok(None);
                }
                Ok(Slot::Stale) => {
                    self.cache.remove(id);
                }
                Err(guard) => {
                    self.misses.increment(1);
                    let record = load().await?.map(Arc::new);
                    // Err: an invalidation replaced the placeholder; do not cache.
                    let _ = guard.insert(match &record {
                        Some(record) => Slot::Fresh(Arc::clone(record)),
                        None => Slot::Gone,
                    });
                    return Ok(record);
                }
            }
        }
        Ok(load().await?.map(Arc::new))
    }

    /// The cached records `ids`, where fresh, in that order.
    pub fn peek_many(&self, ids: &[K]) -> Vec<Option<Arc<T>>> {
        if !self.keeping() {
            self.misses.increment(ids.len() as u64);
            return vec![None; ids.len()];
        }
        let found: Vec<_> = ids
            .iter()
            .map(|id| match self.cache.get(id) {
                Some(Slot::Fresh(record)) => Some(record),
                _ => None,
            })
            .collect();
        let hits = found.iter().filter(|record| record.is_some()).count();
        self.hits.increment(hits as u64);
        self.misses.increment((found.len() - hits) as u64);
        found
    }

    /// Caches a record read elsewhere, unless the slot holds anything (an invalidation
    /// mark wins).
    pub fn fill(&self, id: K, record: Arc<T>) {
        if !self.keeping() {
            return;
        }
        if let GuardResult::Guard(guard) = self.cache.get_value_or_guard(&id, Some(Duration::ZERO))
        {
            let _ = guard.insert(Slot::Fresh(record));
        }
    }

    /// Caches a record just written (the writer knows it is current).
    pub fn put(&self, id: K, record: T) {
        if !self.keeping() {
            return;
        }
        self.cache.insert(id, Slot::Fresh(Arc::new(record)));
    }

    /// The record changed: the next reader reads it again.
    pub fn invalidate(&self, id: K) {
        self.cache.insert(id, Slot::Stale);
    }

    /// The record no longer exists.
    pub fn gone(&self, id: K) {
        self.cache.insert(id, Slot::Gone);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Weight for String {
        fn weight(&self) -> u64 {
            self.len() as u64
        }
    }

    type Result = std::result::Result<Option<String>, ()>;

    #[tokio::test]
    async fn an_invalidation_during_a_load_keeps_the_loaded_value_out() {
        let cache = Arc::new(RecordCache::<u32, String>::new("test", 1 << 20, 64));
        let (loading, loaded) = tokio::sync::oneshot::channel::<()>();
        let (proceed, go) = tokio::sync::oneshot::channel::<()>();
        let go = std::sync::Mutex::new(Some((loading, go)));
        let reader = {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move {
                cache
                    .get(&1, || {
                        let pair = go.lock().expect("not poisoned").take();
                        async move {
                            if let Some((loading, go)) = pair {
                                let _ = loading.send(());
                                let _ = go.await;
                            }
                            Result::Ok(Some("old".to_owned()))
                        }
                    })
                    .await
            })
        };
        loaded.await.expect("the load started");
        cache.invalidate(1);
        proceed.send(()).expect("the load waits");
        let old = reader.await.expect("the reader ran").expect("loaded");
        assert_eq!(old.as_deref().map(String::as_str), Some("old"));
        // The late load was not cached: the next reader loads again.
        let new = cache
            .get(&1, || async { Result::Ok(Some("new".to_owned())) })
            .await
            .expect("loaded");
        assert_eq!(new.as_deref().map(String::as_str), Some("new"));
        let cached = cache
            .get(&1, || async { Result::Ok(Some("not asked".to_owned())) })
            .await
            .expect("cached");
        assert_eq!(cached.as_deref().map(String::as_str), Some("new"));
    }

    #[tokio::test]
    async fn while_not_keeping_every_read_loads_and_nothing_is_kept() {
        let cache = RecordCache::<u32, String>::new("test", 1 << 20, 64);
        let load = |text: &'static str| move || async move { Result::Ok(Some(text.to_owned())) };
        cache.get(&1, load("kept")).await.expect("loaded");
        cache.keep(false);
        let read = cache
            .get(&1, load("from the database"))
            .await
            .expect("loaded");
        assert_eq!(
            read.as_deref().map(String::as_str),
            Some("from the database")
        );
        cache.put(2, "written".to_owned());
        cache.fill(3, Arc::new("filled".to_owned()));
        let read = cache.get(&1, load("again")).await.expect("loaded");
        assert_eq!(read.as_deref().map(String::as_str), Some("again"));
        cache.keep(true);
        assert!(cache.peek_many(&[1, 2, 3]).iter().all(Option::is_none));
        cache.get(&1, load("kept again")).await.expect("loaded");
        let read = cache.get(&1, load("not asked")).await.expect("cached");
        assert_eq!(read.as_deref().map(String::as_str), Some("kept again"));
    }

    #[tokio::test]
    async fn gone_is_remembered_and_fill_never_overwrites_a_mark() {
        let cache = RecordCache::<u32, String>::new("test", 1 << 20, 64);
        cache.gone(7);
        let missing = cache
            .get(&7, || async { Result::Ok(Some("resurrected".to_owned())) })
            .await
            .expect("cached");
        assert_eq!(missing, None);
        cache.fill(7, Arc::new("late".to_owned()));
        cache.fill(8, Arc::new("fresh".to_owned()));
        let found = cache.peek_many(&[7, 8]);
        assert!(found[0].is_none(), "a fill never overwrites a mark");
        assert_eq!(found[1].as_deref().map(String::as_str), Some("fresh"));
    }
}
