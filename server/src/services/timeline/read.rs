//! The read path: a page of a home timeline, and a tweet by id.
//!
//! A page comes from the feeds when they can answer it exactly (the reader's home feed
//! merged with the posts feeds of the popular authors they follow, every source read
//! above its floor), and otherwise from the database with the same cursor, so the two
//! sources agree at every boundary. A cold feed is built here, from the database, once
//! however many readers ask at the same moment (single flight). It is kept apart from the
//! fan-out and the subscriber because it only reads: it changes a feed only to build a
//! cold one or to drop one that lists a deleted tweet.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use uuid::Uuid;

use super::feed::{Built, Entry, FeedError, FeedKey, FeedRead, FeedStore};
use super::tweets::TweetCache;
use super::{Timelines, entry_of};
use crate::infra::metrics::{FEED_BUILDS, TIMELINE_PAGES};
use crate::infra::store::{Page, SharedStore, StoreError, TweetRecord};

/// How many of a newly built feed's tweets go into the tweet cache: two default pages.
const PRIMED_TWEETS: usize = 40;

/// A feed's build from the database, shared by every reader waiting for it.
pub(super) type Build = Shared<BoxFuture<'static, ()>>;

impl Timelines {
    /// A tweet by id.
    pub async fn tweet(&self, id: Uuid) -> Result<Option<Arc<TweetRecord>>, StoreError> {
        self.tweets.get(&self.store, id).await
    }

    /// A page of `reader`'s home timeline: the tweets of `reader` and everyone they follow,
    /// newest first, older than `before`.
    pub async fn page(
        &self,
        reader: Uuid,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Page<TweetRecord, Uuid>, StoreError> {
        match self.page_from_feeds(reader, before, limit).await {
            Ok(Some(page)) => {
                metrics::counter!(TIMELINE_PAGES, "source" => "feed").increment(1);
                self.served[0].fetch_add(1, Ordering::Relaxed);
                return Ok(page);
            }
            Ok(None) => {}
            Err(Unanswered::Feeds(error)) => {
                tracing::warn!(%error, "reading the timeline from the database instead");
            }
            Err(Unanswered::Store(error)) => return Err(error),
        }
        metrics::counter!(TIMELINE_PAGES, "source" => "database").increment(1);
        self.served[1].fetch_add(1, Ordering::Relaxed);
        let page = self.store.timeline(reader, before, limit).await?;
        Ok(page)
    }

    /// The page from the feeds, or `None` when they cannot answer it exactly.
    async fn page_from_feeds(
        &self,
        reader: Uuid,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Option<Page<TweetRecord, Uuid>>, Unanswered> {
        // Feeds that missed a change are not read until they have been dropped.
        if self.stale.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let wanted = limit as usize + 1;
        let Some(home) = self
            .read_warm(FeedKey::Home(reader), before, wanted)
            .await?
        else {
            return Ok(None);
        };
        let mut floor = home.floor;
        let mut sources = vec![home.entries];
        for author in home.popular {
            let Some(posts) = self
                .read_warm(FeedKey::Posts(author), before, wanted)
                .await?
            else {
                return Ok(None);
            };
            sources.push(posts.entries);
            floor = floor.max(posts.floor);
        }
        let candidates = newest(sources, wanted);
        // Exact only if everything the page needs is at or above every source's floor.
        let exact = match (floor, candidates.len() == wanted) {
            (None, _) => true,
            (Some(floor), true) => candidates[wanted - 1].tweet_id >= floor,
            (Some(_), false) => false,
        };
        if !exact {
            return Ok(None);
        }
        let ids: Vec<Uuid> = candidates.iter().map(|entry| entry.tweet_id).collect();
        let Some(tweets) = self.tweets.get_many(&self.store, &ids).await? else {
            // A tweet was deleted and some feed still lists it: tidy up, and let the
            // database answer this once.
            self.forget(FeedKey::Home(reader)).await;
            return Ok(None);
        };
        let tweets = tweets.iter().map(|tweet| (**tweet).clone()).collect();
        Ok(Some(Page::by_id(tweets, limit, |tweet| tweet.id)))
    }

    /// Reads a feed, building it first when it is cold; `None` when it could not be built
    /// (another instance is building it, or a change abandoned the build).
    async fn read_warm(
        &self,
        feed: FeedKey,
        before: Option<Uuid>,
        count: usize,
    ) -> Result<Option<FeedRead>, Unanswered> {
        if let Some(read) = self.feeds.read(feed, before, count).await? {
            return Ok(Some(read));
        }
        self.build(feed).await;
        Ok(self.feeds.read(feed, before, count).await?)
    }

    /// Builds a cold feed from the database; concurrent callers share one build.
    ///
    /// The build is a task of its own, which takes itself off the list of builds when it
    /// ends: it runs to the end even when every reader waiting for it has gone. (A build
    /// polled only by its readers stopped mid-query when they were cancelled, and its
    /// query held a pooled connection for good: at 100,000 users the end of a benchmark
    /// run left the whole pool held so, and every request after it timed out.)
    async fn build(&self, feed: FeedKey) {
        let build = {
            let mut builds = self.builds.lock().unwrap_or_else(PoisonError::into_inner);
            builds
                .entry(feed)
                .or_insert_with(|| {
                    let task = tokio::spawn(build_feed(
                        Arc::clone(&self.store),
                        Arc::clone(&self.feeds),
                        Arc::clone(&self.tweets),
                        feed,
                        self.capacity,
                        Arc::clone(&self.builds_done),
                        Listed {
                            builds: Arc::clone(&self.builds),
                            feed,
                        },
                    ));
                    async move {
                        // A build that panicked is a cold feed still: the database answers.
                        let _ = task.await;
                    }
                    .boxed()
                    .shared()
                })
                .clone()
        };
        build.await;
    }
}

/// A build's entry in the list of builds, removed when the build ends however it ends.
struct Listed {
    builds: Arc<std::sync::Mutex<std::collections::HashMap<FeedKey, Build>>>,
    feed: FeedKey,
}

impl Drop for Listed {
    fn drop(&mut self) {
        self.builds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.feed);
    }
}

/// The newest `count` distinct entries of `sources`, each newest first: a k-way merge, so
/// that a reader of thirty popular accounts costs thirty list heads, not a sort of
/// hundreds of entries. (A popular author's tweet may be in both the home feed and their
/// posts feed; equal entries come out together and are kept once.)
fn newest(sources: Vec<Vec<Entry>>, count: usize) -> Vec<Entry> {
    let mut sources: Vec<_> = sources.into_iter().map(Vec::into_iter).collect();
    let mut heads = std::collections::BinaryHeap::with_capacity(sources.len());
    for (source, entries) in sources.iter_mut().enumerate() {
        if let Some(entry) = entries.next() {
            heads.push((entry, source));
        }
    }
    let mut newest: Vec<Entry> = Vec::with_capacity(count);
    while newest.len() < count {
        let Some((entry, source)) = heads.pop() else {
            break;
        };
        if newest.last() != Some(&entry) {
            newest.push(entry);
        }
        if let Some(next) = sources[source].next() {
            heads.push((next, source));
        }
    }
    newest
}

/// Why the feeds did not answer a page.
enum Unanswered {
    Feeds(FeedError),
    Store(StoreError),
}

impl From<FeedError> for Unanswered {
    fn from(error: FeedError) -> Self {
        Self::Feeds(error)
    }
}

impl From<StoreError> for Unanswered {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

/// Builds `feed` from the database, unless it is warm or being built elsewhere.
async fn build_feed(
    store: SharedStore,
    feeds: Arc<dyn FeedStore>,
    tweets: Arc<TweetCache>,
    feed: FeedKey,
    capacity: usize,
    builds_done: Arc<AtomicU64>,
    _listed: Listed,
) {
    let token = rand::random::<u64>();
    match feeds.begin_build(feed, token).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(error) => {
            tracing::warn!(%error, "cannot build a feed");
            return;
        }
    }
    let built = match read_feed(&store, &tweets, feed, capacity).await {
        Ok(built) => built,
        Err(error) => {
            tracing::warn!(%error, "cannot read a feed from the database");
            let _ = feeds.forget(feed).await;
            return;
        }
    };
    metrics::counter!(FEED_BUILDS).increment(1);
    builds_done.fetch_add(1, Ordering::Relaxed);
    if let Err(error) = feeds.finish_build(feed, token, built).await {
        tracing::warn!(%error, "cannot finish building a feed");
    }
}

/// What the database holds for a feed.
async fn read_feed(
    store: &SharedStore,
    tweets: &TweetCache,
    feed: FeedKey,
    capacity: usize,
) -> Result<Built, StoreError> {
    let limit = u32::try_from(capacity).unwrap_or(u32::MAX);
    let (page, following) = match feed {
        FeedKey::Home(owner) => {
            // Followees first: a follow committed between the two reads then shows up in
            // both or only in the following, never only in the tweets.
            let following = store.followee_ids(owner).await?;
            (store.timeline(owner, None, limit).await?, following)
        }
        FeedKey::Posts(author) => (store.tweets_by(author, None, limit).await?, Vec::new()),
    };
    // The first pages' tweets are about to be read: cache them now rather than fetch
    // them again.
    for tweet in page.items.iter().take(PRIMED_TWEETS) {
        tweets.fill(tweet);
    }
    Ok(Built {
        complete: page.next.is_none(),
        entries: page.items.iter().map(entry_of).collect(),
        following,
    })
}
