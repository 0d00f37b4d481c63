//! The materialised home feeds against the database they stand in for.
//!
//! The property: for random follow graphs and interleaved posts, follows, unfollows and
//! deletes, every timeline page read through the feeds equals the page the database query
//! gives for the same cursor, down to the last page. Feeds are made tiny (a few entries)
//! and the fan-out limit low, so that cut-off feeds, pages deeper than the feed, and
//! popular authors merged at read time all occur in every run. It runs on both feed
//! stores: in this process (on each database) and in Redis.

use std::sync::Arc;

use minitter_server::infra::redis::SharedRedis;
use minitter_server::infra::store::{NewUserRecord, SharedStore, TweetRecord};
use minitter_server::services::events::{Events, Subscriber};
use minitter_server::services::timeline::feed::FeedStore;
use minitter_server::services::timeline::memory::MemoryFeeds;
use minitter_server::services::timeline::redis::RedisFeeds;
use minitter_server::services::timeline::{TimelineSettings, Timelines};
use minitter_test_support::{Backend, TestDatabase, needs_cluster, on_every_backend, required_env};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

const CAPACITY: usize = 5;
const FAN_OUT_LIMIT: u32 = 2;

fn settings() -> TimelineSettings {
    TimelineSettings {
        feed_capacity: CAPACITY,
        fan_out_limit: FAN_OUT_LIMIT,
        feed_memory_bytes: 1 << 20,
        tweet_cache_bytes: 1 << 20,
        follower_cache_bytes: 1 << 20,
    }
}

/// A store, the timelines over it, and the events that keep them up to date, as the
/// server wires them.
struct World {
    store: SharedStore,
    timelines: Arc<Timelines>,
    events: Events,
    _database: TestDatabase,
    _dir: tempfile::TempDir,
}

impl World {
    async fn new(backend: Backend, feeds: Arc<dyn FeedStore>) -> Self {
        let dir = tempfile::tempdir().expect("a data directory");
        let database = TestDatabase::create(backend).await;
        let store =
            minitter_server::infra::store::open(database.url(), dir.path(), &Default::default())
                .await
                .expect("open the store");
        let timelines = Timelines::start(Arc::clone(&store), feeds, &settings());
        let events = Events::new(vec![Arc::clone(&timelines) as Arc<dyn Subscriber>], None);
        Self {
            store,
            timelines,
            events,
            _database: database,
            _dir: dir,
        }
    }

    async fn users(&self, count: usize) -> Vec<Uuid> {
        let mut users = Vec::new();
        for n in 0..count {
            let name = format!("u{n}_{}", &Uuid::now_v7().simple().to_string()[20..]);
            let user = self
                .store
                .create_user(NewUserRecord {
                    username: name.clone(),
                    email: format!("{name}@example.com"),
                    display_name: name,
                    password_hash: "not-a-hash".into(),
                })
                .await
                .expect("create a user");
            users.push(user.id);
        }
        users
    }

    async fn post(&self, author: Uuid, text: &str) -> TweetRecord {
        let tweet = TweetRecord::new(author, text.to_owned());
        let written = self.store.insert_tweet(&tweet, None).await.expect("post");
        self.events.publish_all(written.events).await;
        tweet
    }

    async fn follow(&self, follower: Uuid, followee: Uuid) {
        let written = self.store.follow(follower, followee).await.expect("follow");
        self.events.publish_all(written.events).await;
    }

    async fn unfollow(&self, follower: Uuid, followee: Uuid) {
        let written = self.store.unfollow(follower, followee).await;
        self.events
            .publish_all(written.expect("unfollow").events)
            .await;
    }

    async fn delete(&self, tweet: &TweetRecord) {
        let written = self.store.delete_tweet(tweet.id, tweet.author_id).await;
        self.events
            .publish_all(written.expect("delete").events)
            .await;
    }

    /// Pages through `reader`'s timeline both ways, asserting every page is the same.
    async fn assert_agrees(&self, reader: Uuid, limit: u32, context: &str) {
        self.timelines.settle().await;
        let mut cursor = None;
        let mut pages = 0;
        loop {
            let from_feeds = self
                .timelines
                .page(reader, cursor, limit)
                .await
                .expect("feed page");
            let from_database = self
                .store
                .timeline(reader, cursor, limit)
                .await
                .expect("page");
            let ids = |page: &minitter_server::infra::store::Page<TweetRecord, Uuid>| {
                page.items.iter().map(|tweet| tweet.id).collect::<Vec<_>>()
            };
            assert_eq!(
                (ids(&from_feeds), from_feeds.next),
                (ids(&from_database), from_database.next),
                "page {pages} of {reader}'s timeline (limit {limit}) after {context}"
            );
            assert_eq!(from_feeds.items, from_database.items);

            pages += 1;
            match from_database.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
    }
}

/// Random operations on a small graph, checking a random reader after each one.
async fn random_histories(world: &World, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let users = world.users(6).await;
    let mut tweets: Vec<TweetRecord> = Vec::new();
    for step in 0..120 {
        let a = users[rng.random_range(0..users.len())];
        let b = users[rng.random_range(0..users.len())];
        let operation = rng.random_range(0..100);
        let context = match operation {
            0..45 => {
                tweets.push(world.post(a, &format!("step {step}")).await);
                format!("step {step}: {a} posted")
            }
            45..70 if a != b => {
                world.follow(a, b).await;
                format!("step {step}: {a} followed {b}")
            }
            70..82 => {
                world.unfollow(a, b).await;
                format!("step {step}: {a} unfollowed {b}")
            }
            82..92 if !tweets.is_empty() => {
                let tweet = tweets.swap_remove(rng.random_range(0..tweets.len()));
                world.delete(&tweet).await;
                format!("step {step}: deleted {}", tweet.id)
            }
            _ => format!("step {step}: nothing"),
        };
        let reader = users[rng.random_range(0..users.len())];
        world
            .assert_agrees(
                reader,
                rng.random_range(1..=4),
                &format!("seed {seed}, {context}"),
            )
            .await;
    }
    for reader in users {
        world
            .assert_agrees(reader, 3, &format!("seed {seed}, the end"))
            .await;
    }
    let (from_feeds, from_database) = world.timelines.pages_served();
    // Both paths were compared: first pages from the feeds, deep ones from the database.
    assert!(from_feeds > 0, "no page came from the feeds");
    assert!(from_database > 0, "no page was deeper than the feeds");
}

async fn memory_feeds_agree_with_the_database(backend: Backend) {
    for seed in 0..8 {
        let feeds = Arc::new(MemoryFeeds::new(CAPACITY, 1 << 20));
        let world = World::new(backend, feeds).await;
        random_histories(&world, seed).await;
    }
}

async fn redis_feeds() -> Arc<dyn FeedStore> {
    let redis = SharedRedis::connect(&required_env("MINITTER_TEST_REDIS_URL"))
        .await
        .expect("connect to Redis");
    Arc::new(RedisFeeds::new(redis, CAPACITY))
}

async fn redis_feeds_agree_with_the_database() {
    for seed in 100..108 {
        let world = World::new(Backend::Postgres, redis_feeds().await).await;
        random_histories(&world, seed).await;
    }
}

/// Paging down across the end of the feed while new tweets arrive: newest first, no
/// duplicate, no gap.
async fn paging_across_the_feed_boundary(world: &World) {
    let users = world.users(3).await;
    let (reader, friend, other) = (users[0], users[1], users[2]);
    world.follow(reader, friend).await;
    world.follow(reader, other).await;
    let mut expected = Vec::new();
    for n in 0..(CAPACITY * 4) {
        let author = users[n % 3];
        expected.push(world.post(author, &format!("before {n}")).await.id);
    }
    world.timelines.settle().await;
    expected.reverse();
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut n = 0;
    loop {
        let page = world.timelines.page(reader, cursor, 2).await.expect("page");
        seen.extend(page.items.iter().map(|tweet| tweet.id));
        // Tweets posted while the reader scrolls are newer than every cursor: they
        // must not appear further down.
        world.post(friend, &format!("while paging {n}")).await;
        n += 1;
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, expected, "every tweet once, newest first");
    let (from_feeds, from_database) = world.timelines.pages_served();
    assert!(
        from_feeds > 0 && from_database > 0,
        "the pages crossed from feed to database"
    );
}

async fn paging_across_the_feed_boundary_in_memory(backend: Backend) {
    let world = World::new(backend, Arc::new(MemoryFeeds::new(CAPACITY, 1 << 20))).await;
    paging_across_the_feed_boundary(&world).await;
}

async fn paging_across_the_feed_boundary_in_redis() {
    let world = World::new(Backend::Postgres, redis_feeds().await).await;
    paging_across_the_feed_boundary(&world).await;
}

/// A hundred readers of one cold feed cause one build.
async fn a_cold_feed_is_built_once(backend: Backend) {
    let world = World::new(backend, Arc::new(MemoryFeeds::new(CAPACITY, 1 << 20))).await;
    let users = world.users(2).await;
    world.follow(users[0], users[1]).await;
    world.post(users[1], "hello").await;
    let readers = (0..100).map(|_| world.timelines.page(users[0], None, 20));
    let pages = futures::future::join_all(readers).await;
    for page in pages {
        assert_eq!(page.expect("page").items.len(), 1);
    }
    assert_eq!(world.timelines.builds(), 1);
    assert_eq!(world.timelines.pages_served(), (100, 0));
}

/// A reader that gives up while its feed is being built (a cancelled request) does not
/// stop the build: it ends, its database connection goes back to the pool, and the next
/// read is answered from the feed.
async fn an_abandoned_build_still_ends(backend: Backend) {
    let world = World::new(backend, Arc::new(MemoryFeeds::new(CAPACITY, 1 << 20))).await;
    let users = world.users(2).await;
    world.follow(users[0], users[1]).await;
    world.post(users[1], "hello").await;
    // Polled once, so the build has begun and waits for the database; then dropped.
    let page = world.timelines.page(users[0], None, 20);
    assert!(
        futures::FutureExt::now_or_never(page).is_none(),
        "a build waits for the database"
    );
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while world.timelines.builds() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the abandoned build never ended"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let page = world
        .timelines
        .page(users[0], None, 20)
        .await
        .expect("page");
    assert_eq!(page.items.len(), 1);
    assert_eq!(world.timelines.pages_served(), (1, 0));
}

on_every_backend!(
    memory_feeds_agree_with_the_database,
    paging_across_the_feed_boundary_in_memory,
    a_cold_feed_is_built_once,
    an_abandoned_build_still_ends,
);
needs_cluster!(
    redis_feeds_agree_with_the_database,
    paging_across_the_feed_boundary_in_redis,
);
