//! The response cache: whole answers of the GETs that opt in with `x-minitter-cache` in
//! `openapi.yaml` (the generated `RESPONSE_CACHE` lists them with their time to live), as
//! API Gateway's stage cache keeps them, so a hot profile or tweet costs no database
//! query, no JSON and no compression.
//!
//! **Where it sits.** The middleware runs outside compression and `ETag`, so what it keeps
//! is the answer as sent: one entry per path, query and content coding, with its `ETag`.
//! It cannot answer by itself, because before routing it knows neither the operation nor
//! whether the credentials are good; it offers its entries to the generated route
//! ([`codegen_runtime::StoredResponses`]), which asks after it has verified the
//! credentials and validated the request. A cached answer is therefore authenticated,
//! metered and throttled like any other, a request the document refuses is refused even
//! when its path is cached, and each answer carries its own rate-limit headers.
//!
//! **Key.** The generated route names the request by its parameters as the handler
//! receives them ([`RequestKey`]: decoded, parsed, serialized back; path and query only),
//! never by the URI's spelling, plus the content coding `Accept-Encoding` negotiates (so
//! `gzip, deflate` and `gzip` share an entry). Every spelling the router accepts
//! (percent-encoded or upper-case ids, `limit=020`, reordered or repeated parameters)
//! therefore shares one entry and one invalidation. Query parameters the document does not
//! declare are ignored, by the handler and so by the key, rather than refused: a client's
//! cache-buster must not turn into a 400 on a GET. The caller is not part of the key: the
//! operations that opt in answer the same to every key. An operation whose answer depends
//! on the caller must not opt in.
//!
//! **Invalidation.** Each entry is filed under the ids among its path parameters
//! (`get_user` and `list_user_tweets` under the user, `get_tweet` under the tweet), and stored
//! with their [`versions`] as read before the operation ran. A write's event changes the
//! versions of exactly the resources it changed ([`Event::changed`]) before the write
//! is answered, so an entry made before the write is never served after it, on this
//! instance or (with the versions in Redis) on any other.
//!
//! **The caches behind it.** With the versions in Redis, an instance can learn of another's
//! write from a version before that write's event reaches it, and the operation it is
//! about to run would read the record caches the event has not yet corrected. So before a
//! miss runs the operation, every id whose version is not the one this instance last saw is
//! forgotten by the record caches ([`RecordsById`]), and the answer is made from the
//! database.
//!
//! **Refresh.** `Cache-Control: max-age=0` (or `no-cache`) from a key whose plan has
//! `allow_cache_refresh` runs the operation from the database (the record caches forget the
//! ids in the path) and replaces the entry; from other keys it is ignored, not refused.
//!
//! **`X-Cache`** on each 200 of an operation that opts in: `hit`, `miss` (ran and stored)
//! or `bypass` (ran; the cache was neither read nor filled: it is off, or the versions in
//! Redis could not be read, or a write's new versions have not reached Redis yet).
//!
//! **Layout.** This module keeps the cache itself: its entries, the versions and which of
//! them this instance has seen, and the event subscriber that changes them. `lookup` is
//! one GET's dealings with it (the middleware, the decision offered to the route, the
//! storing of a miss), and `versions` is where versions live (this process or Redis).

mod lookup;
mod versions;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use poem::http::{HeaderMap, HeaderName, HeaderValue, header};
use quick_cache::Weighter;
use uuid::Uuid;

use crate::domain::events::Event;
use crate::infra::redis::SharedRedis;
use crate::services::events::{Origin, Subscriber};
use versions::{LocalVersions, RedisVersions, Versions};

pub use lookup::{allow_refresh, serve};

/// A cache of records by id behind the cached operations (users, tweets).
pub trait RecordsById: Send + Sync {
    /// Reads `ids` from the database next time: they changed on another instance.
    fn forget(&self, ids: &[Uuid]);
}

/// Kept answers, and the versions of the resources they show.
pub struct ResponseCache {
    /// `None` when the cache is off (a budget of 0).
    entries: Option<quick_cache::sync::Cache<String, Arc<Entry>, EntryBytes>>,
    versions: Box<dyn Versions>,
    /// The record caches behind the cached operations, told to forget what another
    /// instance changed and what a refresh asks for afresh.
    records: Vec<Arc<dyn RecordsById>>,
    /// With shared versions: the version of each id this instance last saw.
    seen: Option<quick_cache::sync::Cache<Uuid, u64>>,
    /// Resources whose new versions could not be written (Redis did not answer): until
    /// they are, this instance neither reads nor fills the cache.
    unwritten: Mutex<HashSet<Uuid>>,
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache").finish_non_exhaustive()
    }
}

/// The representation headers an entry keeps, in the order of [`Entry::headers`].
const KEPT_HEADERS: [HeaderName; 3] =
    [header::CONTENT_TYPE, header::CONTENT_ENCODING, header::ETAG];

/// One kept answer. It holds exactly its own bytes, so that the budget counts what the
/// entries really take: a body straight from the response kept its whole write buffer
/// (1 KiB or more for a 300-byte profile) and a `HeaderMap` of three headers takes about
/// 600 bytes, which together made the cache hold about 3.5 times its budget at 100,000
/// users (docs/benchmarks.md, "Memory at 100,000 users").
struct Entry {
    body: Bytes,
    /// The values of [`KEPT_HEADERS`] the answer had.
    headers: [Option<HeaderValue>; 3],
    /// The versions of the ids in the path, read before the operation ran.
    versions: Vec<u64>,
    expires: Instant,
}

impl Entry {
    /// `body` and the kept headers of `headers`, copied to allocations of their own size.
    fn new(body: &[u8], headers: &HeaderMap, versions: Vec<u64>, expires: Instant) -> Self {
        Self {
            body: Bytes::copy_from_slice(body),
            headers: KEPT_HEADERS.map(|name| headers.get(&name).cloned()),
            versions,
            expires,
        }
    }

    /// The kept headers, by name.
    fn headers(&self) -> impl Iterator<Item = (HeaderName, HeaderValue)> + '_ {
        KEPT_HEADERS
            .into_iter()
            .zip(&self.headers)
            .filter_map(|(name, value)| Some((name, value.clone()?)))
    }
}

#[derive(Clone)]
struct EntryBytes;

impl Weighter<String, Arc<Entry>> for EntryBytes {
    fn weight(&self, key: &String, entry: &Arc<Entry>) -> u64 {
        // The cache's own slot for it (key, pointer, CLOCK state: about 64 bytes), the
        // `Arc`'s counts, the entry, and what it points to.
        let headers: usize = entry.headers.iter().flatten().map(HeaderValue::len).sum();
        (64 + 16
            + size_of::<Entry>()
            + key.capacity()
            + entry.body.len()
            + headers
            + entry.versions.capacity() * size_of::<u64>()) as u64
    }
}

impl ResponseCache {
    /// A cache of `budget_bytes` (0: off), with its versions in Redis when there is one,
    /// in front of `records`.
    pub fn new(
        budget_bytes: u64,
        redis: Option<SharedRedis>,
        records: Vec<Arc<dyn RecordsById>>,
    ) -> Self {
        // An answer of a few hundred bytes is typical (a profile, a tweet).
        let typical = 1024;
        let entries = (budget_bytes > 0).then(|| {
            quick_cache::sync::Cache::with_weighter(
                usize::try_from(budget_bytes / typical)
                    .unwrap_or(usize::MAX)
                    .max(1),
                budget_bytes,
                EntryBytes,
            )
        });
        let ids = usize::try_from(budget_bytes / 256).unwrap_or(usize::MAX);
        let (versions, seen): (Box<dyn Versions>, _) = match redis {
            Some(redis) => (
                Box::new(RedisVersions::new(redis)),
                Some(quick_cache::sync::Cache::new(ids.max(1))),
            ),
            None => (Box::new(LocalVersions::new(ids)), None),
        };
        Self {
            entries,
            versions,
            records,
            seen,
            unwritten: Mutex::new(HashSet::new()),
        }
    }

    /// Writes the versions that could not be written when their change committed, about
    /// once a second, until the cache is dropped.
    pub async fn write_versions_every_second(cache: Weak<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let Some(cache) = cache.upgrade() else { return };
            let ids: Vec<Uuid> = cache.unwritten().iter().copied().collect();
            if ids.is_empty() {
                continue;
            }
            if cache.versions.change(&ids).await.is_ok() {
                let mut unwritten = cache.unwritten();
                for id in &ids {
                    unwritten.remove(id);
                }
            }
        }
    }

    fn unwritten(&self) -> std::sync::MutexGuard<'_, HashSet<Uuid>> {
        self.unwritten
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Has the record caches forget the ids whose version is not the one last seen here.
    fn saw(&self, ids: &[Uuid], versions: &[u64]) {
        let Some(seen) = &self.seen else { return };
        let changed: Vec<Uuid> = ids
            .iter()
            .zip(versions)
            .filter(|&(id, version)| seen.get(id) != Some(*version))
            .map(|(id, _)| *id)
            .collect();
        if changed.is_empty() {
            return;
        }
        self.forget_records(&changed);
        for (id, version) in ids.iter().zip(versions) {
            seen.insert(*id, *version);
        }
    }

    fn forget_records(&self, ids: &[Uuid]) {
        for cache in &self.records {
            cache.forget(ids);
        }
    }

    /// Forgets every kept answer and every version seen.
    fn forget_all(&self) {
        if let Some(entries) = &self.entries {
            entries.clear();
        }
        if let Some(seen) = &self.seen {
            seen.clear();
        }
    }

    /// Gives `ids` new versions.
    async fn change(&self, ids: &[Uuid]) {
        if let Err(error) = self.versions.change(ids).await {
            tracing::warn!(%error, "response cache: new versions not written yet; bypassing the cache until they are");
            self.unwritten().extend(ids);
        }
    }
}

#[async_trait]
impl Subscriber for ResponseCache {
    async fn on_event(&self, event: &Event, origin: Origin) {
        // The instance that made the change has written the versions where every
        // instance reads them before it answered; another instance has nothing to do.
        if origin == Origin::Remote {
            return;
        }
        let ids = event.changed();
        if !ids.is_empty() {
            self.change(&ids).await;
        }
    }

    fn set_in_sync(&self, _in_sync: bool) {
        // Events may have been missed (or Redis came back, perhaps without its data):
        // nothing kept or seen before can be trusted. While out of sync, the versions in
        // Redis still guard every entry (or, unreadable, bypass the cache).
        self.forget_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry keeps a copy of its body, not the response's buffer (whose capacity can be
    /// many times the body), keeps only the representation headers, and weighs at least
    /// the bytes it holds.
    #[test]
    fn an_entry_holds_and_weighs_only_its_own_bytes() {
        let mut buffer = Vec::with_capacity(4096);
        buffer.extend_from_slice(br#"{"id":"0190a1b2"}"#);
        let body = Bytes::from(buffer);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::ETAG, HeaderValue::from_static("\"a1b2\""));
        headers.insert("x-ratelimit-remaining", HeaderValue::from_static("9"));

        let entry = Arc::new(Entry::new(&body, &headers, vec![7], Instant::now()));

        assert_eq!(entry.body, body);
        assert_ne!(
            entry.body.as_ptr(),
            body.as_ptr(),
            "the entry shares the response's buffer"
        );
        let kept: Vec<_> = entry.headers().collect();
        assert_eq!(
            kept,
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json")
                ),
                (header::ETAG, HeaderValue::from_static("\"a1b2\"")),
            ]
        );
        let key = "/v1/users/0190a1b2\nidentity".to_owned();
        let held = size_of::<Entry>() + key.len() + body.len() + "application/json\"a1b2\"".len();
        assert!(EntryBytes.weight(&key, &entry) >= held as u64);
    }
}
