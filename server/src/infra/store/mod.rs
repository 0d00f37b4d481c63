//! Persistence: one repository interface, written once for SQLite and PostgreSQL.
//!
//! The interface is a handful of traits, one per area ([`UserStore`], [`FollowStore`],
//! [`TweetStore`], [`PlanStore`], [`KeyStore`], [`UsageStore`], [`OutboxStore`],
//! [`WebhookStore`]), gathered by [`Store`]; the rest of the server holds an
//! `Arc<dyn Store>` ([`SharedStore`]) and never sees SQL. Traits per area, split by what
//! they store, so that a caller imports only the area it uses. A trait object rather than
//! a generic parameter so that handlers, the gateway and the tests stay free of type
//! parameters; the cost is one boxed future per query, which is nothing beside the query.
//! The bulk loading of the benchmark data generator ([`ImportStore`]) is not part of
//! [`Store`]: the API never loads in bulk, and the generator opens a [`BulkStore`] of its
//! own.
//!
//! One implementation serves both databases ([`sql`]): the queries are written once,
//! generic over the backend, with only the statements whose dialects differ spelled per
//! backend beside them. What is left per backend is opening and migrating the database
//! (`migrations/sqlite`, `migrations/postgres`) and the bulk import:
//!
//! - [`sqlite`]: the embedded default, one file in the data directory.
//! - [`postgres`]: for several instances behind a load balancer.
//!
//! Driver errors are sorted into [`StoreError`] in one place ([`error`]).
//!
//! Migrations are additive (a new table, a nullable or defaulted column, an index; never a
//! rename, a drop or a new constraint on old data), so that during a rolling or canary
//! release the previous build and the next one run against the same schema. Each build
//! therefore accepts a database that a newer build has migrated further ([`additive`]).

mod bulk;
mod error;
mod postgres;
mod sql;
mod sqlite;
mod webhooks;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::NaiveDate;
use uuid::Uuid;

// The records every backend returns are the domain's (`crate::domain::records`); the store
// speaks them, so they are named here too.
pub use crate::domain::records::*;
pub use bulk::{BulkStore, Deferred, ImportStore};
pub use error::StoreError;
use sqlite::Purpose;
pub use webhooks::WebhookStore;

use crate::domain::events::{Event, Written};

/// This build's migrations, run so that versions applied by a newer build (unknown to
/// this one) are accepted rather than refused: the previous release keeps running, and
/// restarting, while the next one is rolled out (see the module docs for the rule that
/// makes this safe). Migrations this build knows are still checked against their
/// checksums.
fn additive(mut migrator: sqlx::migrate::Migrator) -> sqlx::migrate::Migrator {
    migrator.set_ignore_missing(true);
    migrator
}

/// The store every request shares.
pub type SharedStore = Arc<dyn Store>;

/// The whole repository interface, and the life cycle of the connection pool.
#[async_trait]
pub trait Store:
    UserStore
    + FollowStore
    + TweetStore
    + PlanStore
    + KeyStore
    + UsageStore
    + OutboxStore
    + WebhookStore
    + Send
    + Sync
    + 'static
{
    /// Whether the database answers a trivial query.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Closes every connection; later calls fail as [`StoreError::Unavailable`].
    async fn close(&self);
    /// The connection pool now: connections open, and of those idle.
    fn pool_usage(&self) -> PoolUsage;
}

/// How much of the connection pool is in use, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUsage {
    pub open: u32,
    pub idle: u32,
}

impl std::fmt::Debug for dyn Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

/// Users and their pictures.
#[async_trait]
pub trait UserStore {
    /// Inserts a user; a taken username or email (compared case-insensitively) is a
    /// [`StoreError::Conflict`] naming it.
    async fn create_user(&self, new: NewUserRecord) -> Result<UserRecord, StoreError>;
    async fn user_by_id(&self, id: Uuid) -> Result<Option<UserRecord>, StoreError>;
    /// The user with this email, compared case-insensitively.
    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError>;
    /// Points a user at a new picture; returns the key of the one it replaces.
    async fn set_picture(
        &self,
        user_id: Uuid,
        picture: &PictureRecord,
    ) -> Result<Option<String>, StoreError>;
    /// Every picture object a user points at, for the orphan sweep.
    async fn picture_keys(&self) -> Result<HashSet<String>, StoreError>;
    /// Deletes a user with their tweets, their follows both ways (moving the other users'
    /// counters) and their Idempotency-Key records, in one transaction that also adds the
    /// events of the deletion to the outbox ([`Event::of_deleted_user`]). `None` when
    /// there is no such user. The picture object is the caller's to delete, after.
    async fn delete_user(&self, id: Uuid) -> Result<Written<Option<DeletedUser>>, StoreError>;
}

/// Follow edges, and the follower/following counters they keep exact.
#[async_trait]
pub trait FollowStore {
    /// Makes `follower` follow `followee`. Idempotent; counters move only on a change,
    /// in the same transaction as the edge.
    async fn follow(
        &self,
        follower: Uuid,
        followee: Uuid,
    ) -> Result<Written<EdgeChange>, StoreError>;
    /// Makes `follower` stop following `followee`. Idempotent.
    async fn unfollow(
        &self,
        follower: Uuid,
        followee: Uuid,
    ) -> Result<Written<EdgeChange>, StoreError>;
    /// The users who follow `user`, most recent follow first, after the edge `before`.
    async fn followers(
        &self,
        user: Uuid,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Page<UserRecord, i64>, StoreError>;
    /// The users `user` follows, most recent follow first, after the edge `before`.
    async fn following(
        &self,
        user: Uuid,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Page<UserRecord, i64>, StoreError>;
    /// The ids of at most `limit` users who follow `user`, in no particular order (the
    /// fan-out of a post; a full `limit` tells the caller the author is popular).
    async fn follower_ids(&self, user: Uuid, limit: u32) -> Result<Vec<Uuid>, StoreError>;
    /// The ids of every user `user` follows (a home feed's filter).
    async fn followee_ids(&self, user: Uuid) -> Result<Vec<Uuid>, StoreError>;
}

/// Tweets, timelines and Idempotency-Key records
/// (draft-ietf-httpapi-idempotency-key-header).
///
/// A key is claimed before the request runs and completed in the same transaction as the
/// tweet it protects ([`StoredResponse`]). A claim left incomplete is taken over after
/// [`IDEMPOTENCY_ABANDONED_AFTER_SECONDS`]; a key is kept for
/// [`IDEMPOTENCY_KEPT_FOR_SECONDS`], or until its tweet is deleted.
#[async_trait]
pub trait TweetStore {
    /// Stores a tweet and counts it; with `replay`, also completes its idempotency record
    /// in the same transaction, so the two are durable together or not at all.
    async fn insert_tweet(
        &self,
        tweet: &TweetRecord,
        replay: Option<StoredResponse<'_>>,
    ) -> Result<Written<()>, StoreError>;
    async fn tweet(&self, id: Uuid) -> Result<Option<TweetRecord>, StoreError>;
    /// Those of the tweets `ids` that exist, in no particular order.
    async fn tweets_by_ids(&self, ids: &[Uuid]) -> Result<Vec<TweetRecord>, StoreError>;
    /// Deletes a tweet if `author_id` wrote it, and forgets its idempotency key.
    async fn delete_tweet(
        &self,
        id: Uuid,
        author_id: Uuid,
    ) -> Result<Written<Deletion>, StoreError>;
    /// A user's tweets, newest first, older than the tweet `before`.
    async fn tweets_by(
        &self,
        author_id: Uuid,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Page<TweetRecord, Uuid>, StoreError>;
    /// The tweets of `reader` and of everyone they follow, newest first, older than the
    /// tweet `before`.
    async fn timeline(
        &self,
        reader: Uuid,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Page<TweetRecord, Uuid>, StoreError>;
    /// Claims `key` for a request whose body hashes to `request_hash`.
    async fn claim_idempotency_key(
        &self,
        user_id: Uuid,
        key: &str,
        request_hash: &str,
    ) -> Result<Claim, StoreError>;
    /// Forgets an incomplete claim, so that a retry of a failed request can run.
    async fn release_idempotency_key(&self, user_id: Uuid, key: &str) -> Result<(), StoreError>;
}

/// Usage plans, for the operator API and the gateway.
#[async_trait]
pub trait PlanStore {
    async fn create_plan(&self, settings: PlanSettings) -> Result<PlanRecord, StoreError>;
    async fn plan(&self, id: Uuid) -> Result<Option<PlanRecord>, StoreError>;
    /// Plans, newest first, older than the plan `before`.
    async fn plans(
        &self,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Page<PlanRecord, Uuid>, StoreError>;
    /// Replaces a plan's settings; `None` when there is no such plan.
    async fn update_plan(
        &self,
        id: Uuid,
        settings: PlanSettings,
    ) -> Result<Option<PlanRecord>, StoreError>;
    /// Deletes a plan that no key uses.
    async fn delete_plan(&self, id: Uuid) -> Result<PlanDeletion, StoreError>;
    /// Whether any plan exists (a fresh database gets a default plan in development).
    async fn has_plans(&self) -> Result<bool, StoreError>;
}

/// API keys, for the operator API and the gateway's lookup of a request's key.
#[async_trait]
pub trait KeyStore {
    /// Creates a key in its plan; returns it with its secret, which is stored only hashed.
    async fn create_key(&self, settings: KeySettings) -> Result<KeyWrite<NewKey>, StoreError>;
    async fn key(&self, id: Uuid) -> Result<Option<KeyRecord>, StoreError>;
    /// Keys, newest first, older than the key `before`.
    async fn keys(
        &self,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Page<KeyRecord, Uuid>, StoreError>;
    /// The ids of the keys now in a plan.
    async fn keys_in_plan(&self, plan_id: Uuid) -> Result<Vec<Uuid>, StoreError>;
    /// Applies `changes` to a key.
    async fn update_key(
        &self,
        id: Uuid,
        changes: KeyChanges,
    ) -> Result<KeyWrite<KeyRecord>, StoreError>;
    /// Gives a key a new secret; the old one stops matching at once.
    async fn rotate_key(&self, id: Uuid) -> Result<Option<NewKey>, StoreError>;
    /// Deletes a key; `false` when there is none.
    async fn delete_key(&self, id: Uuid) -> Result<bool, StoreError>;
    /// The key whose secret hashes to `secret_hash` ([`secret_hash`]), with its plan and
    /// the stored hash (for a constant-time comparison by the caller).
    async fn key_by_secret_hash(
        &self,
        secret_hash: &str,
    ) -> Result<Option<(KeyRecord, PlanRecord, String)>, StoreError>;
}

/// Requests admitted per key and UTC day, which quotas and usage reports read.
#[async_trait]
pub trait UsageStore {
    /// Requests a key made on UTC days `from..`.
    async fn usage_since(&self, key_id: Uuid, from: NaiveDate) -> Result<u64, StoreError>;
    /// Adds counts of admitted requests, and marks the keys used, in one transaction.
    async fn add_usage(&self, counts: &[UsageCount]) -> Result<(), StoreError>;
    /// A key's admitted requests per UTC day, for days `from..=to` that have any.
    async fn usage_by_day(
        &self,
        key_id: Uuid,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<(NaiveDate, u64)>, StoreError>;
    /// A key's requests by outcome per UTC day, for days `from..=to` that have any,
    /// oldest first.
    async fn key_history(
        &self,
        key_id: Uuid,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<UsageDay>, StoreError>;
    /// The requests by outcome per UTC day of the keys now in a plan, for days
    /// `from..=to` that have any, oldest first; and the `top` keys that used the most
    /// over those days, most first.
    async fn plan_history(
        &self,
        plan_id: Uuid,
        from: NaiveDate,
        to: NaiveDate,
        top: u32,
    ) -> Result<(Vec<UsageDay>, Vec<(Uuid, u64)>), StoreError>;
}

/// The outbox: the events that must never be lost, which the writes of tweets and follows
/// add in their own transaction ([`OutboxEvent`]), read by consumers from a position each
/// keeps in the database.
#[async_trait]
pub trait OutboxStore {
    /// Up to `limit` events after `consumer`'s position, oldest first (none it could skip
    /// past: only those of transactions older than any still running).
    async fn outbox_after(
        &self,
        consumer: &str,
        limit: u32,
    ) -> Result<Vec<OutboxEntry>, StoreError>;
    /// Records that `consumer` handled everything up to `position`.
    async fn advance_outbox(
        &self,
        consumer: &str,
        position: OutboxPosition,
    ) -> Result<(), StoreError>;
    /// `consumer`'s turn at the outbox: up to `limit` events after its position, and the
    /// right to record how far it got ([`OutboxTurn::finish`]). `None` while another
    /// instance has the turn. On PostgreSQL the turn is an advisory lock of a transaction
    /// that lasts until the turn is finished or dropped, or its connection dies (a killed
    /// instance's turn ends with its connections, at once). SQLite serves one process, so
    /// there the turn is always granted and the caller takes turns within the process.
    async fn claim_outbox(
        &self,
        consumer: &str,
        limit: u32,
    ) -> Result<Option<OutboxTurn>, StoreError>;
    /// Every consumer with a position, and when the oldest event it has not handled was
    /// written (`None` when it has handled them all): how far behind it is.
    async fn outbox_backlog(
        &self,
    ) -> Result<Vec<(String, Option<chrono::DateTime<chrono::Utc>>)>, StoreError>;
    /// Deletes, oldest first, up to `batch` of the events written before `cutoff` that
    /// every consumer has handled; returns how many went. Only the oldest `batch` events
    /// are looked at, so a call costs the same however large the outbox is: when those
    /// are still needed, nothing younger can be deleted either.
    async fn prune_outbox(
        &self,
        cutoff: chrono::DateTime<chrono::Utc>,
        batch: u32,
    ) -> Result<u64, StoreError>;
}

/// A consumer's turn at the outbox ([`OutboxStore::claim_outbox`]): the events to handle
/// next, oldest first. Dropping it records nothing, so the events are read again.
pub struct OutboxTurn {
    pub entries: Vec<OutboxEntry>,
    end: Box<dyn EndTurn>,
}

impl OutboxTurn {
    pub(crate) fn new(entries: Vec<OutboxEntry>, end: Box<dyn EndTurn>) -> Self {
        Self { entries, end }
    }

    /// Ends the turn, recording that everything up to `through` was handled (`None`:
    /// nothing was).
    pub async fn finish(self, through: Option<OutboxPosition>) -> Result<(), StoreError> {
        self.end.end(through).await
    }
}

/// How a backend ends an outbox turn.
#[async_trait]
pub(crate) trait EndTurn: Send {
    async fn end(self: Box<Self>, through: Option<OutboxPosition>) -> Result<(), StoreError>;
}

/// The event a write adds to the outbox, as JSON with its `type`: the same shape as the
/// `crate::domain::events::Event` published after the commit.
pub fn outbox_event(event: &Event) -> String {
    // Serialising plain records to JSON cannot fail.
    serde_json::to_string(event).unwrap_or_default()
}

/// Connection pool settings, the same for both backends.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// The most connections the pool opens.
    pub max_connections: u32,
    /// How long a request waits for a free connection before it gets a 503.
    pub acquire_timeout: Duration,
    /// The longest a statement may run (PostgreSQL's `statement_timeout`; SQLite has
    /// none, and waits at most this long for a lock).
    pub statement_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
        }
    }
}

/// The variable that chooses the database; named in every error about it.
pub const DATABASE_URL_VARIABLE: &str = "MINITTER_DATABASE_URL";

/// Opens and migrates the database `url` names: unset means `minitter.db` in the data
/// directory, `sqlite://…` another SQLite file, `postgres://…` (or `postgresql://…`) a
/// PostgreSQL database. A malformed URL or another scheme is an error naming the variable.
pub async fn open(
    url: Option<&str>,
    data_dir: &Path,
    settings: &PoolSettings,
) -> anyhow::Result<SharedStore> {
    Ok(open_for(url, data_dir, settings, Purpose::Serving).await?)
}

/// [`open`], with the bulk loading of [`ImportStore`] too, for the benchmark data
/// generator: on SQLite without fsync and with a large page cache (a crash loses a
/// throwaway load, which is run again).
pub async fn open_bulk(
    url: Option<&str>,
    data_dir: &Path,
    settings: &PoolSettings,
) -> anyhow::Result<Arc<dyn BulkStore>> {
    open_for(url, data_dir, settings, Purpose::BulkLoad).await
}

async fn open_for(
    url: Option<&str>,
    data_dir: &Path,
    settings: &PoolSettings,
    purpose: Purpose,
) -> anyhow::Result<Arc<dyn BulkStore>> {
    let Some(url) = url else {
        return Ok(Arc::new(
            sqlite::open_file(&data_dir.join("minitter.db"), settings, purpose).await?,
        ));
    };
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    match scheme {
        Some("sqlite") => Ok(Arc::new(sqlite::open_url(url, settings, purpose).await?)),
        Some("postgres" | "postgresql") => Ok(Arc::new(postgres::open(url, settings).await?)),
        _ => anyhow::bail!(
            "{DATABASE_URL_VARIABLE} must start with sqlite:// or postgres:// \
             (it is {})",
            scheme.map_or_else(|| "not a URL".to_owned(), |s| format!("a {s}:// URL"))
        ),
    }
}
