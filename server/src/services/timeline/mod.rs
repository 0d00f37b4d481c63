//! Home timelines from materialised feeds, and tweets by id from a cache.
//!
//! Every user's recent home timeline is kept as a feed ([`feed`]) of tweet ids: a post is
//! pushed to its author's own feed before the post is acknowledged, and to its
//! followers' feeds right after, by the fan-out, which reads the outbox (in commit order,
//! off the request, surviving a crash between the commit and the fan-out). Authors with more than `fan_out_limit` followers are not fanned out: their
//! tweets go to their own posts feed, which their followers' reads merge in. A page is
//! served from the feeds when they can answer it exactly; otherwise (a page deeper than
//! the feed, a feed being built by another instance, a feed store that does not answer)
//! from the database, with the same cursor and page token, so a reader never sees a
//! duplicate or a gap at the boundary. A cold feed is built once however many readers
//! ask at the same moment (single flight). See `docs/timeline.md`.
//!
//! Feeds live in this process ([`memory`]) or, with Redis configured, in Redis
//! ([`redis`]), which every instance shares. Whatever the fan-out could not write (the
//! feed store or the database was down) leaves feeds that may be stale, so they are all
//! dropped once the store answers again, and built anew on demand.
//!
//! The service is split along its seams: `read.rs` serves pages and builds cold feeds,
//! `fan_out.rs` copies changes from the outbox into followers' feeds and recovers stale
//! feeds, and `subscriber.rs` turns committed events into those changes. This module keeps
//! what they share: the [`Timelines`] type, its settings and start-up, and the two feed
//! changes the parts have in common (apply a change, drop a feed), each of which marks the
//! feeds stale when it fails.

pub mod feed;
pub mod memory;
pub mod redis;
pub mod tweets;

mod fan_out;
mod members;
mod read;
mod subscriber;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use uuid::Uuid;

use self::fan_out::{FollowerIds, HOME_FEEDS, recover_stale_feeds};
use self::feed::{Entry, FeedError, FeedKey, FeedStore};
use self::read::Build;
use self::tweets::TweetCache;
use crate::infra::store::{SharedStore, TweetRecord};
use crate::services::cache::RecordCache;
use crate::services::outbox::Reader;

/// Settings of the timeline service.
#[derive(Debug, Clone)]
pub struct TimelineSettings {
    /// How many tweets a feed keeps ([`feed::FEED_CAPACITY`]).
    pub feed_capacity: usize,
    /// Authors with more followers than this are merged at read time, not fanned out.
    pub fan_out_limit: u32,
    /// The byte budget of the in-process feeds.
    pub feed_memory_bytes: u64,
    /// The byte budget of the tweet cache.
    pub tweet_cache_bytes: u64,
    /// The byte budget of the cache of followers, for the fan-out.
    pub follower_cache_bytes: u64,
}

/// Home timelines and tweets by id.
pub struct Timelines {
    store: SharedStore,
    capacity: usize,
    feeds: Arc<dyn FeedStore>,
    tweets: Arc<TweetCache>,
    /// Each author's followers (up to the fan-out limit, and one more to tell that the
    /// author is past it), so that a post's fan-out reads no database.
    followers: RecordCache<Uuid, FollowerIds>,
    fan_out_limit: u32,
    /// Feeds being built, each by a task of its own (`read.rs`).
    builds: Arc<Mutex<HashMap<FeedKey, Build>>>,
    /// The fan-out's place in the outbox.
    fan_out: Reader,
    /// Set when a change could not be applied to the feeds: drop them all.
    stale: Arc<AtomicBool>,
    /// Feeds built from the database so far.
    builds_done: Arc<AtomicU64>,
    /// Pages served from the feeds, and from the database.
    served: [AtomicU64; 2],
}

impl std::fmt::Debug for Timelines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timelines").finish_non_exhaustive()
    }
}

impl Timelines {
    /// Starts the service, with its fan-out, over `feeds`.
    pub fn start(
        store: SharedStore,
        feeds: Arc<dyn FeedStore>,
        settings: &TimelineSettings,
    ) -> Arc<Self> {
        let timelines = Arc::new(Self {
            store,
            capacity: settings.feed_capacity,
            feeds,
            tweets: Arc::new(TweetCache::new(settings.tweet_cache_bytes)),
            followers: RecordCache::new("followers", settings.follower_cache_bytes, 1600),
            fan_out_limit: settings.fan_out_limit,
            builds: Arc::default(),
            // Followers' feeds a moment after the commit (the author's own is updated
            // before the response).
            fan_out: Reader::new(HOME_FEEDS, Duration::from_millis(25)),
            stale: Arc::default(),
            builds_done: Arc::default(),
            served: Default::default(),
        });
        tokio::spawn(crate::services::outbox::run(Arc::downgrade(&timelines)));
        tokio::spawn(recover_stale_feeds(Arc::downgrade(&timelines)));
        timelines
    }

    /// How many feeds this instance has built from the database.
    pub fn builds(&self) -> u64 {
        self.builds_done.load(Ordering::Relaxed)
    }

    /// How many pages this instance served from the feeds, and from the database.
    pub fn pages_served(&self) -> (u64, u64) {
        let [feeds, database] = &self.served;
        (
            feeds.load(Ordering::Relaxed),
            database.load(Ordering::Relaxed),
        )
    }

    /// Drops a feed; if even that fails, every feed is dropped once the store answers.
    async fn forget(&self, feed: FeedKey) {
        if self.feeds.forget(feed).await.is_err() {
            self.stale.store(true, Ordering::Relaxed);
        }
    }

    /// Applies a change to the feeds; a failure marks them all stale.
    async fn apply(&self, change: impl Future<Output = Result<(), FeedError>>) {
        if let Err(error) = change.await {
            tracing::warn!(%error, "a feed change was not applied; feeds will be rebuilt");
            self.stale.store(true, Ordering::Relaxed);
        }
    }

    /// Drops every feed now; each is built again from the database when next read.
    pub async fn drop_feeds(&self) -> Result<(), FeedError> {
        self.feeds.forget_all().await
    }
}

/// A tweet as a feed lists it.
fn entry_of(tweet: &TweetRecord) -> Entry {
    Entry {
        tweet_id: tweet.id,
        author_id: tweet.author_id,
    }
}
