//! Feeds in Redis, shared by every instance (when `MINITTER_REDIS_URL` is set).
//!
//! A feed is one sorted set, `feed:{<user>}` or `posts:{<user>}`, every member with score
//! 0 so that members sort by their bytes (ZRANGEBYLEX):
//!
//! - an entry is the tweet id's 16 bytes then the author id's 16: byte order is id order,
//!   so the oldest entry has rank 0 and a page is one `ZREVRANGEBYLEX`;
//! - `\xff f <followee id>` records a followee, and exactly one `\xff s …` member the
//!   state: `c` complete, `i` cut off (the floor is then the lowest entry), `b<token>`
//!   being built. They sort after every entry.
//!
//! One key per feed means a feed is evicted, expired or replaced whole, never half. Each
//! change is one Lua script on one key, so it is atomic and a fan-out to many feeds is a
//! pipeline of scripts. Feeds expire after [`FEED_TTL_SECONDS`] without a read; the set of
//! popular authors, `feeds:popular`, never expires (so with a `volatile-*` maxmemory
//! policy Redis evicts feeds, never that set).
//!
//! The scripts that make each change, one Lua script per change on one key, are in
//! `scripts`; this module calls them, batches fan-outs into pipelines and decodes replies.

mod scripts;

use async_trait::async_trait;
use redis::Script;
use uuid::Uuid;

use self::scripts::{BEGIN_BUILD, FINISH_BUILD, FOLLOW, PUSH, READ, REMOVE, UNFOLLOW, script};
use super::feed::{Built, Entry, FeedError, FeedKey, FeedRead, FeedStore};
use crate::infra::redis::{REDIS_TIMEOUT, SharedRedis};

/// A feed nobody read for this long is dropped (its owner's next read builds it again).
const FEED_TTL_SECONDS: u64 = 3 * 24 * 3600;
/// A build that did not finish in this long (its instance died) stops blocking others.
const BUILD_TTL_SECONDS: u64 = 30;
/// How many feeds one pipeline of a fan-out changes.
const FAN_OUT_BATCH: usize = 500;
/// The set of popular authors.
const POPULAR: &str = "feeds:popular";

fn redis_key(feed: FeedKey) -> String {
    match feed {
        FeedKey::Home(user) => format!("feed:{{{user}}}"),
        FeedKey::Posts(user) => format!("posts:{{{user}}}"),
    }
}

fn member(entry: Entry) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(32);
    bytes.extend_from_slice(entry.tweet_id.as_bytes());
    bytes.extend_from_slice(entry.author_id.as_bytes());
    bytes
}

fn entry(member: &[u8]) -> Option<Entry> {
    Some(Entry {
        tweet_id: Uuid::from_slice(member.get(..16)?).ok()?,
        author_id: Uuid::from_slice(member.get(16..32)?).ok()?,
    })
}

fn failed(error: impl std::fmt::Display) -> FeedError {
    FeedError(error.to_string())
}

/// `call`'s answer, or a [`FeedError`] when it fails or takes longer than `patience`.
async fn within<T>(
    patience: std::time::Duration,
    call: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, FeedError> {
    tokio::time::timeout(patience, call)
        .await
        .map_err(failed)?
        .map_err(failed)
}

/// Feeds in Redis.
pub struct RedisFeeds {
    redis: SharedRedis,
    capacity: usize,
    read: Script,
    begin_build: Script,
    finish_build: Script,
    push: Script,
    follow: Script,
    unfollow: Script,
    remove: Script,
}

impl RedisFeeds {
    /// Feeds of at most `capacity` entries.
    pub fn new(redis: SharedRedis, capacity: usize) -> Self {
        Self {
            redis,
            capacity,
            read: script(READ),
            begin_build: script(BEGIN_BUILD),
            finish_build: script(FINISH_BUILD),
            push: script(PUSH),
            follow: script(FOLLOW),
            unfollow: script(UNFOLLOW),
            remove: script(REMOVE),
        }
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, FeedError> {
        let mut connection = self.redis.connection();
        within(REDIS_TIMEOUT, invocation.invoke_async(&mut connection)).await
    }

    async fn command<T: redis::FromRedisValue>(
        &self,
        command: &redis::Cmd,
    ) -> Result<T, FeedError> {
        let mut connection = self.redis.connection();
        within(REDIS_TIMEOUT, command.query_async(&mut connection)).await
    }

    /// Runs `script` on each feed, a pipeline per batch. Scripts are loaded first, so the
    /// pipeline can use EVALSHA.
    async fn each(
        &self,
        script: &Script,
        feeds: &[FeedKey],
        args: &[&[u8]],
    ) -> Result<(), FeedError> {
        let mut connection = self.redis.connection();
        let invocation = script.prepare_invoke();
        within(REDIS_TIMEOUT, invocation.load_async(&mut connection)).await?;
        for batch in feeds.chunks(FAN_OUT_BATCH) {
            let mut pipe = redis::pipe();
            for feed in batch {
                pipe.cmd("EVALSHA")
                    .arg(script.get_hash())
                    .arg(1)
                    .arg(redis_key(*feed))
                    .arg(feed.owner().as_bytes().as_slice());
                for arg in args {
                    pipe.arg(*arg);
                }
                pipe.ignore();
            }
            // A pipeline of up to FAN_OUT_BATCH scripts gets more patience than one call.
            within(REDIS_TIMEOUT * 4, pipe.exec_async(&mut connection)).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl FeedStore for RedisFeeds {
    async fn read(
        &self,
        feed: FeedKey,
        before: Option<Uuid>,
        count: usize,
    ) -> Result<Option<FeedRead>, FeedError> {
        let upper: Vec<u8> = match before {
            Some(before) => [b"(".as_slice(), before.as_bytes()].concat(),
            None => b"(\xff".to_vec(),
        };
        let mut invocation = self.read.key(redis_key(feed));
        invocation
            .key(POPULAR)
            .arg(upper)
            .arg(count)
            .arg(FEED_TTL_SECONDS);
        let reply: Option<(Vec<Vec<u8>>, Vec<u8>, Vec<Vec<u8>>)> = self.run(&invocation).await?;
        let Some((entries, floor, popular)) = reply else {
            return Ok(None);
        };
        Ok(Some(FeedRead {
            entries: entries.iter().filter_map(|m| entry(m)).collect(),
            floor: entry(&floor).map(|floor| floor.tweet_id),
            popular: popular
                .iter()
                .filter_map(|id| Uuid::from_slice(id).ok())
                .collect(),
        }))
    }

    async fn begin_build(&self, feed: FeedKey, token: u64) -> Result<bool, FeedError> {
        let mut invocation = self.begin_build.key(redis_key(feed));
        invocation.arg(token).arg(BUILD_TTL_SECONDS);
        let began: i64 = self.run(&invocation).await?;
        Ok(began == 1)
    }

    async fn finish_build(
        &self,
        feed: FeedKey,
        token: u64,
        built: Built,
    ) -> Result<bool, FeedError> {
        let mut invocation = self.finish_build.key(redis_key(feed));
        invocation
            .arg(token)
            .arg(feed.owner().as_bytes().as_slice())
            .arg(if built.complete { 1 } else { 0 })
            .arg(self.capacity)
            .arg(FEED_TTL_SECONDS)
            .arg(built.following.len());
        for followee in &built.following {
            invocation.arg(followee.as_bytes().as_slice());
        }
        for entry in &built.entries {
            invocation.arg(member(*entry));
        }
        let finished: i64 = self.run(&invocation).await?;
        Ok(finished == 1)
    }

    async fn push(&self, feeds: &[FeedKey], entry: Entry) -> Result<(), FeedError> {
        let member = member(entry);
        let cap = self.capacity.to_string();
        self.each(&self.push, feeds, &[&member, cap.as_bytes()])
            .await
    }

    async fn follow(
        &self,
        feed: FeedKey,
        followee: Uuid,
        recent: &[Entry],
        recent_complete: bool,
    ) -> Result<(), FeedError> {
        let mut invocation = self.follow.key(redis_key(feed));
        invocation
            .arg(followee.as_bytes().as_slice())
            .arg(if recent_complete { 1 } else { 0 })
            .arg(self.capacity);
        for entry in recent {
            invocation.arg(member(*entry));
        }
        let _: i64 = self.run(&invocation).await?;
        Ok(())
    }

    async fn unfollow(&self, feed: FeedKey, followee: Uuid) -> Result<(), FeedError> {
        let mut invocation = self.unfollow.key(redis_key(feed));
        invocation.arg(followee.as_bytes().as_slice());
        let _: i64 = self.run(&invocation).await?;
        Ok(())
    }

    async fn remove(&self, feeds: &[FeedKey], tweet_id: Uuid) -> Result<(), FeedError> {
        let upper = [tweet_id.as_bytes().as_slice(), &[0xff; 16]].concat();
        // The owner argument each() passes first is not used by this script.
        self.each(&self.remove, feeds, &[tweet_id.as_bytes(), &upper])
            .await
    }

    async fn mark_popular(&self, author: Uuid) -> Result<(), FeedError> {
        let mut add = redis::cmd("SADD");
        add.arg(POPULAR).arg(author.as_bytes().as_slice());
        self.command::<i64>(&add).await.map(drop)
    }

    async fn forget_all(&self) -> Result<(), FeedError> {
        for pattern in ["feed:{*", "posts:{*"] {
            let mut cursor: u64 = 0;
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(1000);
                let (next, keys): (u64, Vec<String>) = self.command(&scan).await?;
                if !keys.is_empty() {
                    let mut unlink = redis::cmd("UNLINK");
                    unlink.arg(&keys);
                    self.command::<i64>(&unlink).await?;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(())
    }

    async fn forget(&self, feed: FeedKey) -> Result<(), FeedError> {
        let mut delete = redis::cmd("DEL");
        delete.arg(redis_key(feed));
        self.command::<i64>(&delete).await.map(drop)
    }
}
