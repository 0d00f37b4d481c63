//! Feeds in this process: the embedded default, for one instance.
//!
//! Each feed is a sorted `VecDeque` behind its own mutex, held in a [`quick_cache`] whose
//! weight is the feed's size in bytes, so the whole stays under a byte budget and the
//! feeds of users who stopped reading are the ones evicted (quick_cache's CLOCK-Pro policy
//! keeps what is read often and drops what is not). An evicted feed is simply cold: its
//! owner's next read builds it again from the database.
//!
//! Inside, a user is a 4-byte [`Member`] number ([`super::members`]) rather than a 16-byte id: an entry is
//! 20 bytes instead of 32 and a followee 4 instead of 16, so a full feed takes about
//! 4.6 KB instead of 8 KB, and the same budget keeps nearly twice as many feeds warm
//! (docs/benchmarks.md, "Memory").

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use async_trait::async_trait;
use quick_cache::Weighter;
use quick_cache::sync::Cache;
use uuid::Uuid;

use super::feed::{Built, Entry, FEED_CAPACITY, FeedError, FeedKey, FeedRead, FeedStore};
use super::members::{Member, Numbering};

/// An [`Entry`] as a feed holds it. Ordered by tweet id (unique), as entries are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Held {
    tweet_id: Uuid,
    author: Member,
}

impl Held {
    /// `entry`, its author numbered (now, if they had no number).
    fn of(entry: &Entry, members: &Numbering) -> Self {
        Self {
            tweet_id: entry.tweet_id,
            author: members.number(entry.author_id),
        }
    }
}

/// One feed, oldest entry first: new tweets go near the back, trimming pops the front,
/// neither moves the rest.
#[derive(Debug, Default)]
struct Feed {
    entries: VecDeque<Held>,
    complete: bool,
    owner: Member,
    /// Sorted, for binary search.
    following: Vec<Member>,
    /// `Some(token)` while being built.
    build: Option<u64>,
}

impl Feed {
    fn accepts(&self, author: Member) -> bool {
        author == self.owner || self.following.binary_search(&author).is_ok()
    }

    /// Merges `list` (any order), which holds every tweet of its authors that are at or
    /// above its oldest entry, and all of them when `list_complete`; keeps at most
    /// `capacity` entries.
    fn merge(&mut self, list: &[Held], list_complete: bool, capacity: usize) {
        let old_floor = if self.complete {
            None
        } else {
            self.entries.front().copied()
        };
        for entry in list {
            if let Err(at) = self.entries.binary_search(entry) {
                self.entries.insert(at, *entry);
            }
        }
        if let Some(floor) = old_floor {
            self.cut_below(floor);
        }
        if !list_complete && let Some(oldest) = list.iter().min() {
            self.cut_below(*oldest);
            self.complete = false;
        }
        if self.entries.len() > capacity {
            self.entries.drain(..self.entries.len() - capacity);
            self.complete = false;
        }
    }

    /// Adds one new tweet (a post reaches a hundred feeds on average, so this is the
    /// fan-out's inner loop). A new tweet is the newest or nearly so (concurrent posts
    /// commit a little out of id order), so its place is looked for from the back, and
    /// usually found at once. Below an incomplete feed's oldest entry the feed says
    /// nothing, so the tweet is not kept there (as [`Feed::merge`] would not).
    fn push(&mut self, entry: Held, capacity: usize) {
        if !self.complete && self.entries.front().is_some_and(|oldest| entry < *oldest) {
            return;
        }
        let newer = self
            .entries
            .iter()
            .rev()
            .take_while(|held| **held >= entry)
            .count();
        let at = self.entries.len() - newer;
        if newer > 0 && self.entries[at] == entry {
            return;
        }
        self.entries.insert(at, entry);
        if self.entries.len() > capacity {
            self.entries.pop_front();
            self.complete = false;
        }
    }

    fn cut_below(&mut self, floor: Held) {
        let below = self.entries.partition_point(|entry| *entry < floor);
        self.entries.drain(..below);
    }

    /// A feed that says nothing about anything is as good as cold.
    fn is_useless(&self) -> bool {
        !self.complete && self.entries.is_empty()
    }
}

/// A cached feed.
struct Cell {
    feed: Mutex<Feed>,
}

impl Cell {
    fn lock(&self) -> MutexGuard<'_, Feed> {
        // A panic while holding the lock leaves a feed that still keeps its promise
        // between steps; keep serving it.
        self.feed.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Clone)]
struct Bytes;

impl Weighter<FeedKey, Arc<Cell>> for Bytes {
    fn weight(&self, _key: &FeedKey, _cell: &Arc<Cell>) -> u64 {
        FEED_BYTES
    }
}

/// Bytes a full feed takes, roughly, with a typical hundred followees. A weight is fixed
/// while an entry is cached, and a feed is changed in place, so every feed counts as
/// full: the budget is an upper bound.
const FEED_BYTES: u64 =
    ((FEED_CAPACITY + 1) * size_of::<Held>() + 100 * size_of::<Member>() + 160) as u64;

/// Feeds in this process, within a byte budget.
pub struct MemoryFeeds {
    capacity: usize,
    feeds: Cache<FeedKey, Arc<Cell>, Bytes>,
    members: Numbering,
    popular: RwLock<HashSet<Member>>,
}

impl MemoryFeeds {
    /// Feeds of at most `capacity` entries, within `budget_bytes` in all.
    pub fn new(capacity: usize, budget_bytes: u64) -> Self {
        let estimated = (budget_bytes / FEED_BYTES).max(16) as usize;
        Self {
            capacity,
            feeds: Cache::with_weighter(estimated, budget_bytes, Bytes),
            members: Numbering::default(),
            popular: RwLock::default(),
        }
    }

    fn each(&self, feeds: &[FeedKey], mut apply: impl FnMut(&mut Feed)) {
        for key in feeds {
            if let Some(cell) = self.feeds.get(key) {
                apply(&mut cell.lock());
            }
        }
    }

    /// Applies `change` to a warm feed; a feed being built is abandoned instead, and a
    /// feed left saying nothing is dropped.
    fn change_warm(&self, key: FeedKey, change: impl FnOnce(&mut Feed)) {
        let Some(cell) = self.feeds.get(&key) else {
            return;
        };
        let mut feed = cell.lock();
        if feed.build.is_some() {
            drop(feed);
            self.feeds.remove(&key);
            return;
        }
        change(&mut feed);
        if feed.is_useless() {
            drop(feed);
            self.feeds.remove(&key);
        }
    }
}

#[async_trait]
impl FeedStore for MemoryFeeds {
    async fn read(
        &self,
        key: FeedKey,
        before: Option<Uuid>,
        count: usize,
    ) -> Result<Option<FeedRead>, FeedError> {
        let Some(cell) = self.feeds.get(&key) else {
            return Ok(None);
        };
        let feed = cell.lock();
        if feed.build.is_some() {
            return Ok(None);
        }
        let end = before.map_or(feed.entries.len(), |before| {
            feed.entries
                .partition_point(|entry| entry.tweet_id < before)
        });
        let members = self.members.read();
        let entries = feed
            .entries
            .range(..end)
            .rev()
            .take(count)
            .map(|held| Entry {
                tweet_id: held.tweet_id,
                author_id: members.id(held.author),
            })
            .collect();
        let floor = if feed.complete {
            None
        } else {
            feed.entries.front().map(|entry| entry.tweet_id)
        };
        let popular = {
            let popular = self.popular.read().unwrap_or_else(PoisonError::into_inner);
            feed.following
                .iter()
                .filter(|member| popular.contains(member))
                .map(|member| members.id(*member))
                .collect()
        };
        Ok(Some(FeedRead {
            entries,
            floor,
            popular,
        }))
    }

    async fn begin_build(&self, key: FeedKey, token: u64) -> Result<bool, FeedError> {
        if self.feeds.get(&key).is_some() {
            return Ok(false);
        }
        let cell = Arc::new(Cell {
            feed: Mutex::new(Feed {
                build: Some(token),
                complete: true,
                owner: self.members.number(key.owner()),
                ..Feed::default()
            }),
        });
        self.feeds.insert(key, cell);
        Ok(true)
    }

    async fn finish_build(
        &self,
        key: FeedKey,
        token: u64,
        built: Built,
    ) -> Result<bool, FeedError> {
        let Some(cell) = self.feeds.get(&key) else {
            return Ok(false);
        };
        // Numbered before the feed is locked (see [`Numbering`]).
        let mut following: Vec<Member> = built
            .following
            .iter()
            .map(|id| self.members.number(*id))
            .collect();
        following.sort_unstable();
        following.dedup();
        let entries: Vec<Held> = built
            .entries
            .iter()
            .map(|e| Held::of(e, &self.members))
            .collect();
        let mut feed = cell.lock();
        if feed.build != Some(token) {
            return Ok(false);
        }
        feed.following = following;
        feed.build = None;
        // Of the tweets pushed while building, those of authors the owner follows.
        let pushed = std::mem::take(&mut feed.entries);
        feed.entries = pushed
            .into_iter()
            .filter(|entry| feed.accepts(entry.author))
            .collect();
        feed.merge(&entries, built.complete, self.capacity);
        // Room for one push before the trim, so that the buffer never grows again.
        feed.entries.shrink_to(self.capacity + 1);
        let room = (self.capacity + 1).saturating_sub(feed.entries.len());
        feed.entries.reserve_exact(room);
        Ok(true)
    }

    async fn push(&self, feeds: &[FeedKey], entry: Entry) -> Result<(), FeedError> {
        let capacity = self.capacity;
        let entry = Held::of(&entry, &self.members);
        self.each(feeds, |feed| {
            if feed.build.is_some() {
                if let Err(at) = feed.entries.binary_search(&entry) {
                    feed.entries.insert(at, entry);
                }
            } else if feed.accepts(entry.author) {
                feed.push(entry, capacity);
            }
        });
        Ok(())
    }

    async fn follow(
        &self,
        key: FeedKey,
        followee: Uuid,
        recent: &[Entry],
        recent_complete: bool,
    ) -> Result<(), FeedError> {
        let capacity = self.capacity;
        let followee = self.members.number(followee);
        let recent: Vec<Held> = recent.iter().map(|e| Held::of(e, &self.members)).collect();
        self.change_warm(key, |feed| {
            if let Err(at) = feed.following.binary_search(&followee) {
                feed.following.insert(at, followee);
            }
            feed.merge(&recent, recent_complete, capacity);
        });
        Ok(())
    }

    async fn unfollow(&self, key: FeedKey, followee: Uuid) -> Result<(), FeedError> {
        // A user never numbered is in no feed.
        let Some(followee) = self.members.known(followee) else {
            return Ok(());
        };
        self.change_warm(key, |feed| {
            if let Ok(at) = feed.following.binary_search(&followee) {
                feed.following.remove(at);
            }
            feed.entries.retain(|entry| entry.author != followee);
        });
        Ok(())
    }

    async fn remove(&self, feeds: &[FeedKey], tweet_id: Uuid) -> Result<(), FeedError> {
        for key in feeds {
            self.change_warm(*key, |feed| {
                feed.entries.retain(|entry| entry.tweet_id != tweet_id);
            });
        }
        Ok(())
    }

    async fn mark_popular(&self, author: Uuid) -> Result<(), FeedError> {
        let author = self.members.number(author);
        self.popular
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(author);
        Ok(())
    }

    async fn forget_all(&self) -> Result<(), FeedError> {
        self.feeds.clear();
        Ok(())
    }

    async fn forget(&self, key: FeedKey) -> Result<(), FeedError> {
        self.feeds.remove(&key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{Entry, Feed, Held, Numbering};
    use uuid::Uuid;

    fn entry(n: u128) -> Held {
        let entry = Entry {
            tweet_id: Uuid::from_u128(n),
            author_id: Uuid::from_u128(1),
        };
        Held::of(&entry, &Numbering::default())
    }

    fn ids(feed: &Feed) -> Vec<u128> {
        feed.entries.iter().map(|e| e.tweet_id.as_u128()).collect()
    }

    #[test]
    fn a_push_lands_in_order_once_and_trims_the_oldest() {
        let mut feed = Feed {
            complete: true,
            ..Feed::default()
        };
        for n in [10, 30, 20, 40, 30, 5] {
            feed.push(entry(n), 4);
        }
        assert_eq!(ids(&feed), [10, 20, 30, 40]);
        assert!(!feed.complete, "a trimmed feed no longer holds everything");
        feed.push(entry(35), 4);
        assert_eq!(ids(&feed), [20, 30, 35, 40]);
    }

    #[test]
    fn an_incomplete_feed_keeps_nothing_below_its_oldest_entry() {
        let mut feed = Feed::default();
        feed.push(entry(20), 4);
        feed.push(entry(10), 4);
        assert_eq!(ids(&feed), [20]);
        let mut complete = Feed {
            complete: true,
            ..Feed::default()
        };
        complete.push(entry(20), 4);
        complete.push(entry(10), 4);
        assert_eq!(ids(&complete), [10, 20]);
    }
}
