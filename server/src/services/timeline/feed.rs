//! What a feed is, and the interface of the two places feeds are kept
//! ([`super::memory`], [`super::redis`]).
//!
//! A feed is a capped list of [`Entry`]s, newest first, with a *floor*: it holds exactly
//! the eligible tweets whose id is at or above the floor, and says nothing below it. A
//! feed that has never been trimmed is *complete* (no floor). Every change keeps that
//! promise:
//!
//! - a new tweet is added only when the owner follows (or is) its author, and only above
//!   the floor; adding past [`FEED_CAPACITY`] drops the oldest entries and raises the
//!   floor;
//! - merging a list of someone's tweets that is itself cut off (a followee's newest
//!   [`FEED_CAPACITY`]) raises the floor to the list's oldest entry;
//! - a feed being built accepts new tweets from anyone, and keeps only those of the
//!   followees it learns when the build finishes; a follow, unfollow or delete meanwhile
//!   abandons the build (the next reader builds again).
//!
//! Two kinds of feed share this shape: a user's home feed ([`FeedKey::Home`]: own and
//! followed tweets), and a popular author's own tweets ([`FeedKey::Posts`]), merged into
//! their followers' pages at read time instead of being copied into every follower's feed.

use async_trait::async_trait;
use uuid::Uuid;

/// How many tweets a feed keeps: ten pages of the default 20, which covers what nearly
/// every reader scrolls in a session (deeper pages are read from the database), while
/// 10,000 warm feeds in this process stay near 80 MiB.
pub const FEED_CAPACITY: usize = 200;

/// Which feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FeedKey {
    /// A user's home timeline.
    Home(Uuid),
    /// A popular author's own tweets.
    Posts(Uuid),
}

impl FeedKey {
    /// The user whose feed it is: a home feed always takes its owner's tweets, a posts
    /// feed takes only its owner's.
    pub fn owner(self) -> Uuid {
        match self {
            Self::Home(owner) | Self::Posts(owner) => owner,
        }
    }
}

/// One tweet in a feed. Ordered by tweet id, which is time-ordered (UUIDv7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Entry {
    pub tweet_id: Uuid,
    pub author_id: Uuid,
}

/// A slice of a warm feed.
#[derive(Debug, Default)]
pub struct FeedRead {
    /// Newest first, older than the cursor, at most the count asked for.
    pub entries: Vec<Entry>,
    /// `None`: the feed is complete. `Some(id)`: it is exact only for tweet ids `>= id`.
    pub floor: Option<Uuid>,
    /// The owner's followees that are popular: their tweets are in their own posts feed.
    pub popular: Vec<Uuid>,
}

/// What a build read from the database, after the build began.
#[derive(Debug, Default)]
pub struct Built {
    /// The newest eligible tweets, newest first, at most [`FEED_CAPACITY`].
    pub entries: Vec<Entry>,
    /// Whether `entries` is every eligible tweet.
    pub complete: bool,
    /// For a home feed: everyone the owner follows.
    pub following: Vec<Uuid>,
}

/// A feed store that did not answer; the caller reads the database instead.
#[derive(Debug, thiserror::Error)]
#[error("the feed store is unavailable: {0}")]
pub struct FeedError(pub String);

/// Where feeds are kept. Every method is one atomic step on one feed (or, for the batch
/// methods, on each feed in turn).
#[async_trait]
pub trait FeedStore: Send + Sync + 'static {
    /// Up to `count` entries older than `before`, with the floor and popular followees;
    /// `None` when the feed is cold (missing, or being built).
    async fn read(
        &self,
        feed: FeedKey,
        before: Option<Uuid>,
        count: usize,
    ) -> Result<Option<FeedRead>, FeedError>;
    /// Marks a cold feed as being built by `token`; `false` when it exists already.
    async fn begin_build(&self, feed: FeedKey, token: u64) -> Result<bool, FeedError>;
    /// Finishes build `token`; `false` when the build was abandoned meanwhile.
    async fn finish_build(
        &self,
        feed: FeedKey,
        token: u64,
        built: Built,
    ) -> Result<bool, FeedError>;
    /// Adds a new tweet to each of `feeds` that is warm (or being built) and follows its
    /// author. Cold feeds stay cold.
    async fn push(&self, feeds: &[FeedKey], entry: Entry) -> Result<(), FeedError>;
    /// The owner of `feed` now follows `followee`, whose newest tweets are `recent`
    /// (newest first; `recent_complete` when that is all of them).
    async fn follow(
        &self,
        feed: FeedKey,
        followee: Uuid,
        recent: &[Entry],
        recent_complete: bool,
    ) -> Result<(), FeedError>;
    /// The owner of `feed` no longer follows `followee`: their tweets leave the feed.
    async fn unfollow(&self, feed: FeedKey, followee: Uuid) -> Result<(), FeedError>;
    /// Removes a deleted tweet from each of `feeds`.
    async fn remove(&self, feeds: &[FeedKey], tweet_id: Uuid) -> Result<(), FeedError>;
    /// Records that `author` is popular: followers' reads merge their posts feed from now on.
    async fn mark_popular(&self, author: Uuid) -> Result<(), FeedError>;
    /// Drops every feed (they are built again on demand): after an outage of the store
    /// during which changes could not be applied.
    async fn forget_all(&self) -> Result<(), FeedError>;
    /// Drops one feed.
    async fn forget(&self, feed: FeedKey) -> Result<(), FeedError>;
}
