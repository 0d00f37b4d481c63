//! What the store hands out and takes in: plain records with `Uuid` ids and chrono
//! times, the same for every backend, and the [`Page`] of a keyset-paginated list.

use chrono::{DateTime, NaiveDate, Utc};
use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use super::ip_policy::IpPolicy;

/// A user as stored.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub id: Uuid,
    pub username: String,
    pub email: String,
    pub display_name: String,
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
    pub follower_count: i64,
    pub following_count: i64,
    pub tweet_count: i64,
    pub picture: Option<PictureRecord>,
}

/// A stored profile picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PictureRecord {
    /// The object key in the picture store.
    pub key: String,
    pub content_type: String,
    /// A strong ETag, quotes included.
    pub etag: String,
    pub width: i64,
    pub height: i64,
    pub size: i64,
}

/// What sign-up stores.
#[derive(Debug)]
pub struct NewUserRecord {
    pub username: String,
    pub email: String,
    pub display_name: String,
    pub password_hash: String,
}

/// What deleting a user took with them: whom the events of the deletion name, and the
/// picture object to delete once the rows are gone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeletedUser {
    pub id: Uuid,
    /// Their tweets, deleted with them.
    pub tweet_ids: Vec<Uuid>,
    /// The users who followed them (each now follows one user fewer).
    pub follower_ids: Vec<Uuid>,
    /// The users they followed (each now has one follower fewer).
    pub followee_ids: Vec<Uuid>,
    /// The key of their picture object, if they had one.
    pub picture_key: Option<String>,
}

/// What a follow or unfollow did.
#[derive(Debug, PartialEq, Eq)]
pub enum EdgeChange {
    Changed,
    Unchanged,
    /// The user to follow does not exist.
    UnknownUser,
}

/// A tweet as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TweetRecord {
    pub id: Uuid,
    pub author_id: Uuid,
    pub text: String,
    pub created_at: DateTime<Utc>,
}

impl TweetRecord {
    /// A new tweet, not yet stored: the caller needs its id for the response it may
    /// store with it.
    pub fn new(author_id: Uuid, text: String) -> Self {
        Self {
            id: Uuid::now_v7(),
            author_id,
            text,
            created_at: now_millis(),
        }
    }
}

/// What a delete did.
#[derive(Debug, PartialEq, Eq)]
pub enum Deletion {
    Deleted,
    NotTheAuthor,
    NotFound,
}

/// The response to replay for an idempotent create, stored with the tweet.
#[derive(Debug)]
pub struct StoredResponse<'a> {
    pub user_id: Uuid,
    pub key: &'a str,
    pub location: &'a str,
    pub body: &'a str,
}

/// How long an Idempotency-Key is remembered, in seconds.
pub const IDEMPOTENCY_KEPT_FOR_SECONDS: i64 = 24 * 3600;
/// After this many seconds an incomplete Idempotency-Key claim is assumed abandoned (the
/// process died mid-request) and may be taken over.
pub const IDEMPOTENCY_ABANDONED_AFTER_SECONDS: i64 = 60;

/// The outcome of claiming an Idempotency-Key.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// The key is new: run the request, then complete or release it.
    Claimed,
    /// The key was used with another request body.
    Mismatch,
    /// The first request with this key is still running.
    InFlight,
    /// The first request finished: replay its response.
    Replay {
        status: u16,
        location: Option<String>,
        body: Option<String>,
    },
}

/// A usage plan as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanRecord {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    /// Requests per second and bucket size.
    pub throttle: Option<(f64, i64)>,
    /// Requests per period (`DAY`, `WEEK`, `MONTH`).
    pub quota: Option<(i64, String)>,
    /// Whether the plan's keys may refresh the response cache (`Cache-Control: max-age=0`).
    pub allow_cache_refresh: bool,
    /// The client addresses the plan's keys may be used from.
    pub ip_policy: IpPolicy,
    /// How many webhook subscriptions each of the plan's keys may hold.
    pub webhook_limit: u32,
    /// How many stream sockets each of the plan's keys may hold open at once.
    pub stream_connection_limit: u32,
    pub created_at: DateTime<Utc>,
}

impl PlanRecord {
    /// A new plan with these settings, not yet stored.
    pub fn new(settings: PlanSettings) -> Self {
        Self {
            id: Uuid::now_v7(),
            name: settings.name,
            description: settings.description,
            throttle: settings.throttle,
            quota: settings.quota,
            allow_cache_refresh: settings.allow_cache_refresh,
            ip_policy: settings.ip_policy,
            webhook_limit: settings.webhook_limit,
            stream_connection_limit: settings.stream_connection_limit,
            created_at: now_millis(),
        }
    }
}

/// What a plan is created or replaced with.
#[derive(Debug, Clone)]
pub struct PlanSettings {
    pub name: String,
    pub description: Option<String>,
    pub throttle: Option<(f64, i64)>,
    pub quota: Option<(i64, String)>,
    pub allow_cache_refresh: bool,
    pub ip_policy: IpPolicy,
    pub webhook_limit: u32,
    pub stream_connection_limit: u32,
}

/// How many stream sockets a plan's key may hold open when the operator sets nothing.
pub const DEFAULT_STREAM_CONNECTION_LIMIT: u32 = 100;

impl PlanSettings {
    /// A plan named `name` with the defaults of the operator API: no throttle, no quota,
    /// no cache refresh, any address, the default webhook and stream connection limits.
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            description: None,
            throttle: None,
            quota: None,
            allow_cache_refresh: false,
            ip_policy: IpPolicy::default(),
            webhook_limit: crate::domain::webhooks::DEFAULT_WEBHOOK_LIMIT,
            stream_connection_limit: DEFAULT_STREAM_CONNECTION_LIMIT,
        }
    }
}

/// An API key as stored, without its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    pub plan_id: Uuid,
    pub enabled: bool,
    /// The client addresses the key may be used from, within its plan's.
    pub ip_policy: IpPolicy,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// What a key is created with.
#[derive(Debug, Clone)]
pub struct KeySettings {
    pub name: String,
    pub plan_id: Uuid,
    pub enabled: bool,
    pub ip_policy: IpPolicy,
}

impl KeySettings {
    /// An enabled key in `plan_id`, usable from any address its plan admits.
    pub fn new(name: &str, plan_id: Uuid) -> Self {
        Self {
            name: name.to_owned(),
            plan_id,
            enabled: true,
            ip_policy: IpPolicy::default(),
        }
    }
}

/// A new key and its secret, not yet stored (the store keeps only the secret's hash).
#[derive(Debug)]
pub struct NewKey {
    pub record: KeyRecord,
    pub secret: String,
}

impl NewKey {
    pub fn new(settings: KeySettings) -> Self {
        let secret = new_secret();
        Self {
            record: KeyRecord {
                id: Uuid::now_v7(),
                name: settings.name,
                prefix: secret_prefix(&secret).to_owned(),
                plan_id: settings.plan_id,
                enabled: settings.enabled,
                ip_policy: settings.ip_policy,
                created_at: now_millis(),
                last_used_at: None,
            },
            secret,
        }
    }
}

/// The changes of a key update; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct KeyChanges {
    pub name: Option<String>,
    pub plan_id: Option<Uuid>,
    pub enabled: Option<bool>,
    /// Replaces both lists.
    pub ip_policy: Option<IpPolicy>,
}

/// What deleting a plan did.
#[derive(Debug, PartialEq, Eq)]
pub enum PlanDeletion {
    Deleted,
    NotFound,
    InUse,
}

/// Why a key could not be written.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyWrite<T> {
    Done(T),
    NotFound,
    UnknownPlan,
}

/// Requests of one key on one UTC day, by outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageCount {
    pub key_id: Uuid,
    pub day: NaiveDate,
    pub tally: Tally,
}

/// Requests by outcome: admitted (`used`, what quotas count), of those answered with a
/// 4xx, and refused with 429 by the throttle or the quota.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub used: u64,
    pub client_errors: u64,
    pub throttled: u64,
}

impl Tally {
    pub fn add(&mut self, other: Self) {
        self.used = self.used.saturating_add(other.used);
        self.client_errors = self.client_errors.saturating_add(other.client_errors);
        self.throttled = self.throttled.saturating_add(other.throttled);
    }
}

/// A day of a key's (or a plan's) requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageDay {
    pub day: NaiveDate,
    pub tally: Tally,
}

/// One page of a keyset-paginated list: the items, and the cursor of the last one when
/// more follow.
#[derive(Debug)]
pub struct Page<T, C> {
    pub items: Vec<T>,
    pub next: Option<C>,
}

impl<T, C> Page<T, C> {
    /// Builds a page from `limit + 1` fetched rows: the extra row only says that more follow.
    pub(crate) fn from_overfetch(mut rows: Vec<(T, C)>, limit: u32) -> Self {
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let mut items = Vec::with_capacity(rows.len());
        let mut last = None;
        for (item, cursor) in rows {
            items.push(item);
            last = Some(cursor);
        }
        Self {
            items,
            next: if more { last } else { None },
        }
    }

    /// A page of records whose own id is their cursor.
    pub fn by_id(rows: Vec<T>, limit: u32, id: fn(&T) -> C) -> Self {
        let rows = rows
            .into_iter()
            .map(|row| {
                let cursor = id(&row);
                (row, cursor)
            })
            .collect();
        Self::from_overfetch(rows, limit)
    }
}

/// The first timeline window: an hour holds a page for anyone who follows active accounts.
const FIRST_WINDOW_MS: u64 = 3_600_000;
/// How much each further window widens the last.
const WIDENING: u64 = 16;

/// The lower bounds (inclusive) of the widening time windows a timeline page looks in,
/// newest first, below the page cursor `before`: an hour, then sixteen times wider each
/// time, ending with `None` (unbounded: everything older). Tweet ids are UUIDv7, so a time
/// bound is an id bound: the smallest id made at that millisecond.
pub(crate) fn timeline_windows(before: Option<Uuid>) -> impl Iterator<Item = Option<Uuid>> {
    let upper_ms = before.map_or_else(
        || u64::try_from(now_millis().timestamp_millis()).unwrap_or(0),
        |id| u64::try_from(id.as_u128() >> 80).unwrap_or(0),
    );
    let mut window_ms = Some(FIRST_WINDOW_MS);
    std::iter::from_fn(move || {
        let width = window_ms?;
        let lower = upper_ms.checked_sub(width).map(first_id_at);
        window_ms = lower.map(|_| width.saturating_mul(WIDENING));
        Some(lower)
    })
}

/// The smallest UUIDv7 made at `ms` or later: the 48-bit timestamp, then zeros.
fn first_id_at(ms: u64) -> Uuid {
    Uuid::from_u128(u128::from(ms.min((1 << 48) - 1)) << 80)
}

const SECRET_CHARS: usize = 43;
const PREFIX_CHARS: usize = 8;

/// A new key secret: `mk_` and 43 base62 characters, 256 bits from the OS generator.
pub fn new_secret() -> String {
    let body: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(SECRET_CHARS)
        .map(char::from)
        .collect();
    format!("mk_{body}")
}

/// The first characters of a secret, shown so that operators can tell keys apart.
pub fn secret_prefix(secret: &str) -> &str {
    secret.get(..PREFIX_CHARS).unwrap_or(secret)
}

/// How a secret is stored and looked up: lowercase hex SHA-256. Secrets are 256 random
/// bits, so a fast hash is enough: there is nothing to brute-force.
pub fn secret_hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Now, to the millisecond, so that what is returned equals what is read back from
/// either backend.
pub fn now_millis() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap_or_else(Utc::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_random_and_hash_to_hex() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert_eq!(a.len(), 3 + SECRET_CHARS);
        assert!(a.starts_with("mk_") && a[3..].chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(secret_prefix(&a), &a[..PREFIX_CHARS]);
        assert_eq!(secret_hash(&a).len(), 64);
        assert_ne!(secret_hash(&a), secret_hash(&b));
    }

    #[test]
    fn timeline_windows_widen_sixteenfold_and_end_unbounded() {
        let before = Uuid::now_v7();
        let ms = u64::try_from(before.as_u128() >> 80).expect("48 bits");
        let windows: Vec<_> = timeline_windows(Some(before)).collect();
        assert_eq!(windows[0], Some(first_id_at(ms - FIRST_WINDOW_MS)));
        assert_eq!(windows[1], Some(first_id_at(ms - 16 * FIRST_WINDOW_MS)));
        assert_eq!(windows.last(), Some(&None), "the last window is unbounded");
        assert!(windows.len() < 12);
        // Every id of a millisecond sorts at or above that millisecond's first id.
        assert!(first_id_at(ms) <= before && first_id_at(ms + 1) > before);
    }

    #[test]
    fn an_overfetched_page_has_a_cursor_only_when_more_follow() {
        let full = Page::from_overfetch(vec![(1, 'a'), (2, 'b'), (3, 'c')], 2);
        assert_eq!((full.items, full.next), (vec![1, 2], Some('b')));
        let last = Page::from_overfetch(vec![(1, 'a'), (2, 'b')], 2);
        assert_eq!((last.items, last.next), (vec![1, 2], None));
    }
}

/// Where a consumer of the outbox stands: the transaction (PostgreSQL's; 0 on SQLite) and
/// id of the last event it handled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct OutboxPosition {
    pub tx: i64,
    pub id: i64,
}

/// One event read from the outbox.
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    pub position: OutboxPosition,
    /// The event as JSON, with its `type`.
    pub event: String,
    /// When its transaction wrote it (the database's clock on PostgreSQL).
    pub written_at: DateTime<Utc>,
}
