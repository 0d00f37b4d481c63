//! Home timelines from materialised feeds, and tweets by id from a cache.
//!
//! Every user's recent home timeline is kept as a feed ([`feed`]) of tweet ids: a post is
//! pushed to its author's own feed before the post is acknowledged, and to its
//! followers' feeds right after, by this instance's fan-out worker (in order, off the
//! request). Authors with more than `fan_out_limit` followers are not fanned out: their
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

pub mod feed;
pub mod memory;
pub mod redis;
pub mod tweets;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use self::feed::{Built, Entry, FeedError, FeedKey, FeedRead, FeedStore};
use self::tweets::TweetCache;
use crate::domain::events::Event;
use crate::infra::metrics::{FEED_BUILDS, TIMELINE_PAGES};
use crate::infra::store::{Page, SharedStore, StoreError, TweetRecord};
use crate::services::cache::{RecordCache, Weight};
use crate::services::events::{Origin, Subscriber};

/// How many of a newly built feed's tweets go into the tweet cache: two default pages.
const PRIMED_TWEETS: usize = 40;

/// How many fan-out jobs may wait; past that, writers wait for the fan-out to catch up.
const FAN_OUT_QUEUE: usize = 10_000;

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

/// The ids of an author's followers.
struct FollowerIds(Vec<Uuid>);

impl Weight for FollowerIds {
    fn weight(&self) -> u64 {
        (self.0.len() * size_of::<Uuid>()) as u64
    }
}

/// Work for the fan-out worker, done in the order it was queued.
enum Job {
    Push(Entry),
    Remove {
        tweet_id: Uuid,
        author_id: Uuid,
    },
    /// Answered once every job queued before it is done (for tests).
    Settle(oneshot::Sender<()>),
}

type Build = Shared<BoxFuture<'static, ()>>;

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
    builds: Mutex<HashMap<FeedKey, Build>>,
    jobs: mpsc::Sender<Job>,
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
    /// Starts the service, with its fan-out worker, over `feeds`.
    pub fn start(
        store: SharedStore,
        feeds: Arc<dyn FeedStore>,
        settings: &TimelineSettings,
    ) -> Arc<Self> {
        let (jobs, queue) = mpsc::channel(FAN_OUT_QUEUE);
        let timelines = Arc::new(Self {
            store,
            capacity: settings.feed_capacity,
            feeds,
            tweets: Arc::new(TweetCache::new(settings.tweet_cache_bytes)),
            followers: RecordCache::new("followers", settings.follower_cache_bytes, 1600),
            fan_out_limit: settings.fan_out_limit,
            builds: Mutex::default(),
            jobs,
            stale: Arc::default(),
            builds_done: Arc::default(),
            served: Default::default(),
        });
        tokio::spawn(fan_out_worker(Arc::downgrade(&timelines), queue));
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
    async fn build(&self, feed: FeedKey) {
        let build = {
            let mut builds = self.builds.lock().unwrap_or_else(PoisonError::into_inner);
            builds
                .entry(feed)
                .or_insert_with(|| {
                    build_feed(
                        Arc::clone(&self.store),
                        Arc::clone(&self.feeds),
                        Arc::clone(&self.tweets),
                        feed,
                        self.capacity,
                        Arc::clone(&self.builds_done),
                    )
                    .boxed()
                    .shared()
                })
                .clone()
        };
        build.clone().await;
        let mut builds = self.builds.lock().unwrap_or_else(PoisonError::into_inner);
        if builds
            .get(&feed)
            .is_some_and(|current| current.ptr_eq(&build))
        {
            builds.remove(&feed);
        }
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

    /// Queues fan-out work. A full queue holds the writer back (the post is durable
    /// already; its answer waits) rather than lose the change.
    async fn queue(&self, job: Job) {
        if self.jobs.send(job).await.is_err() {
            self.stale.store(true, Ordering::Relaxed);
        }
    }

    /// Drops every feed now; each is built again from the database when next read.
    pub async fn drop_feeds(&self) -> Result<(), FeedError> {
        self.feeds.forget_all().await
    }

    /// Waits until the fan-out of every change published so far is done (for tests).
    pub async fn settle(&self) {
        let (done, settled) = oneshot::channel();
        if self.jobs.send(Job::Settle(done)).await.is_ok() {
            let _ = settled.await;
        }
    }

    async fn fan_out(&self, job: Job) {
        match job {
            Job::Push(entry) => {
                let author = entry.author_id;
                let Some(targets) = self.fan_out_targets(author).await else {
                    return;
                };
                self.apply(self.feeds.push(&targets, entry)).await;
            }
            Job::Remove {
                tweet_id,
                author_id,
            } => {
                let Some(targets) = self.fan_out_targets(author_id).await else {
                    return;
                };
                self.apply(self.feeds.remove(&targets, tweet_id)).await;
            }
            Job::Settle(done) => {
                let _ = done.send(());
            }
        }
    }

    /// The feeds a change of `author`'s tweets reaches beyond their own home feed: their
    /// posts feed, and their followers' home feeds unless they are popular.
    async fn fan_out_targets(&self, author: Uuid) -> Option<Vec<FeedKey>> {
        let limit = self.fan_out_limit + 1;
        let load = || async {
            let ids = self.store.follower_ids(author, limit).await?;
            Ok::<_, StoreError>(Some(FollowerIds(ids)))
        };
        let followers = match self.followers.get(&author, load).await {
            Ok(Some(followers)) => followers,
            Ok(None) => return None,
            Err(error) => {
                tracing::warn!(%error, "cannot read followers for a fan-out; feeds will be rebuilt");
                self.stale.store(true, Ordering::Relaxed);
                return None;
            }
        };
        let mut targets = vec![FeedKey::Posts(author)];
        if followers.0.len() > self.fan_out_limit as usize {
            self.apply(self.feeds.mark_popular(author)).await;
        } else {
            targets.extend(followers.0.iter().copied().map(FeedKey::Home));
        }
        Some(targets)
    }

    /// Drops every feed if changes were lost. Jobs meanwhile are skipped (the feeds they
    /// would change are to be dropped anyway); the drop is tried again a second later.
    async fn drop_stale_feeds(&self, last_try: &mut Option<tokio::time::Instant>) {
        if !self.stale.load(Ordering::Relaxed)
            || last_try.is_some_and(|at| at.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        *last_try = Some(tokio::time::Instant::now());
        self.stale.store(false, Ordering::Relaxed);
        match self.feeds.forget_all().await {
            Ok(()) => {
                tracing::info!("dropped every feed after changes were lost; they rebuild on demand")
            }
            Err(error) => {
                tracing::warn!(%error, "cannot drop stale feeds yet; retrying");
                self.stale.store(true, Ordering::Relaxed);
            }
        }
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

fn entry_of(tweet: &TweetRecord) -> Entry {
    Entry {
        tweet_id: tweet.id,
        author_id: tweet.author_id,
    }
}

/// Runs fan-out jobs in order, and drops stale feeds (checked at least once a second,
/// so that feeds recover after an outage even when nobody posts).
async fn fan_out_worker(timelines: std::sync::Weak<Timelines>, mut queue: mpsc::Receiver<Job>) {
    let mut last_try = None;
    loop {
        let job = match tokio::time::timeout(Duration::from_secs(1), queue.recv()).await {
            Ok(Some(job)) => Some(job),
            Ok(None) => return,
            Err(_) => None,
        };
        let Some(timelines) = timelines.upgrade() else {
            return;
        };
        // While the feeds are stale the changes they would get are skipped (the feeds are
        // to be dropped); a Settle is always answered.
        if let Some(job) = job
            && (matches!(job, Job::Settle(_)) || !timelines.stale.load(Ordering::Relaxed))
        {
            timelines.fan_out(job).await;
        }
        timelines.drop_stale_feeds(&mut last_try).await;
    }
}

impl crate::services::response_cache::RecordsById for Timelines {
    fn forget(&self, ids: &[Uuid]) {
        for id in ids {
            self.tweets.forget(*id);
        }
    }
}

/// The feeds and the tweet cache follow every committed change. The writer's own feed
/// changes before its request is answered (a user sees their own post, follow or delete
/// at once); followers' feeds change in the fan-out worker, a moment later.
#[async_trait]
impl Subscriber for Timelines {
    async fn on_event(&self, event: &Event, origin: Origin) {
        if let Event::UserFollowed { followee_id, .. } | Event::UserUnfollowed { followee_id, .. } =
            event
        {
            self.followers.invalidate(*followee_id);
        }
        match (event, origin) {
            (Event::TweetCreated { tweet }, Origin::Local) => {
                self.tweets.posted(tweet.clone());
                let entry = entry_of(tweet);
                self.apply(self.feeds.push(&[FeedKey::Home(tweet.author_id)], entry))
                    .await;
                self.queue(Job::Push(entry)).await;
            }
            (Event::TweetCreated { tweet }, Origin::Remote) => self.tweets.posted(tweet.clone()),
            (
                Event::TweetDeleted {
                    tweet_id,
                    author_id,
                },
                origin,
            ) => {
                self.tweets.deleted(*tweet_id);
                if origin == Origin::Local {
                    let own = [FeedKey::Home(*author_id)];
                    self.apply(self.feeds.remove(&own, *tweet_id)).await;
                    self.queue(Job::Remove {
                        tweet_id: *tweet_id,
                        author_id: *author_id,
                    })
                    .await;
                }
            }
            (
                Event::UserFollowed {
                    follower_id,
                    followee_id,
                },
                Origin::Local,
            ) => {
                let feed = FeedKey::Home(*follower_id);
                match self
                    .store
                    .tweets_by(*followee_id, None, self.capacity as u32)
                    .await
                {
                    Ok(recent) => {
                        let entries: Vec<Entry> = recent.items.iter().map(entry_of).collect();
                        let complete = recent.next.is_none();
                        self.apply(self.feeds.follow(feed, *followee_id, &entries, complete))
                            .await;
                    }
                    Err(_) => self.forget(feed).await,
                }
            }
            (
                Event::UserUnfollowed {
                    follower_id,
                    followee_id,
                },
                Origin::Local,
            ) => {
                let feed = FeedKey::Home(*follower_id);
                self.apply(self.feeds.unfollow(feed, *followee_id)).await;
            }
            _ => {}
        }
    }

    fn set_in_sync(&self, in_sync: bool) {
        self.tweets.keep(in_sync);
        self.followers.keep(in_sync);
    }
}
