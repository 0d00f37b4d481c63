//! The rows the queries read, one `#[derive(sqlx::FromRow)]` struct each, which decode
//! from SQLite and PostgreSQL alike (ids are BLOB or `uuid`, times text or
//! `timestamptz`: sqlx decodes `Uuid` and `DateTime<Utc>` from either), and their
//! conversion into the domain's records. The records themselves stay free of sqlx.

use chrono::{DateTime, NaiveDate, Utc};
use ipnet::IpNet;
use uuid::Uuid;

use crate::infra::store::{
    IpPolicy, KeyRecord, PictureRecord, PlanRecord, Tally, TweetRecord, UsageDay, UserRecord,
};

/// The columns [`UserRow`] is read from, as `u.<column>` so that joins can use them (a
/// macro, so that `concat!` builds whole statements at compile time).
macro_rules! user_columns {
    () => {
        "u.id, u.username, u.email, u.display_name, u.password_hash, u.created_at, \
         u.follower_count, u.following_count, u.tweet_count, u.picture_key, u.picture_type, \
         u.picture_etag, u.picture_width, u.picture_height, u.picture_size"
    };
}
pub(super) use user_columns;

/// The columns [`PlanRow`] is read from.
macro_rules! plan_columns {
    () => {
        "id, name, description, throttle_rate, throttle_burst, quota_limit, quota_period, \
         allow_cache_refresh, ip_allow, ip_deny, webhook_limit, stream_connection_limit, created_at"
    };
}
pub(super) use plan_columns;

/// The columns [`KeyRow`] is read from.
macro_rules! key_columns {
    () => {
        "id, name, prefix, plan_id, enabled, ip_allow, ip_deny, created_at, last_used_at"
    };
}
pub(super) use key_columns;

#[derive(sqlx::FromRow)]
pub struct UserRow {
    id: Uuid,
    username: String,
    email: String,
    display_name: String,
    password_hash: String,
    created_at: DateTime<Utc>,
    follower_count: i64,
    following_count: i64,
    tweet_count: i64,
    picture_key: Option<String>,
    picture_type: Option<String>,
    picture_etag: Option<String>,
    picture_width: Option<i64>,
    picture_height: Option<i64>,
    picture_size: Option<i64>,
}

impl TryFrom<UserRow> for UserRecord {
    type Error = sqlx::Error;

    fn try_from(row: UserRow) -> Result<Self, sqlx::Error> {
        // The picture columns are all set or all NULL (the object and what the API says
        // about it are written together).
        let picture = match row.picture_key {
            None => None,
            Some(key) => Some(PictureRecord {
                key,
                content_type: row.picture_type.ok_or_else(|| missing("picture_type"))?,
                etag: row.picture_etag.ok_or_else(|| missing("picture_etag"))?,
                width: row.picture_width.ok_or_else(|| missing("picture_width"))?,
                height: row
                    .picture_height
                    .ok_or_else(|| missing("picture_height"))?,
                size: row.picture_size.ok_or_else(|| missing("picture_size"))?,
            }),
        };
        Ok(UserRecord {
            id: row.id,
            username: row.username,
            email: row.email,
            display_name: row.display_name,
            password_hash: row.password_hash,
            created_at: row.created_at,
            follower_count: row.follower_count,
            following_count: row.following_count,
            tweet_count: row.tweet_count,
            picture,
        })
    }
}

fn missing(column: &str) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: "NULL beside a picture_key".into(),
    }
}

/// A user at one end of a follow edge, with the edge's id (the cursor of their lists).
#[derive(sqlx::FromRow)]
pub struct EdgeRow {
    #[sqlx(flatten)]
    pub user: UserRow,
    pub edge: i64,
}

#[derive(sqlx::FromRow)]
pub struct TweetRow {
    id: Uuid,
    author_id: Uuid,
    text: String,
    created_at: DateTime<Utc>,
}

impl From<TweetRow> for TweetRecord {
    fn from(row: TweetRow) -> Self {
        TweetRecord {
            id: row.id,
            author_id: row.author_id,
            text: row.text,
            created_at: row.created_at,
        }
    }
}

#[derive(sqlx::FromRow)]
pub struct PlanRow {
    id: Uuid,
    name: String,
    description: Option<String>,
    throttle_rate: Option<f64>,
    throttle_burst: Option<i64>,
    quota_limit: Option<i64>,
    quota_period: Option<String>,
    allow_cache_refresh: bool,
    ip_allow: String,
    ip_deny: String,
    webhook_limit: i64,
    stream_connection_limit: i64,
    created_at: DateTime<Utc>,
}

impl TryFrom<PlanRow> for PlanRecord {
    type Error = sqlx::Error;

    fn try_from(row: PlanRow) -> Result<Self, sqlx::Error> {
        // The tables' checks keep a throttle's (and a quota's) two columns both set or
        // both NULL.
        Ok(PlanRecord {
            id: row.id,
            name: row.name,
            description: row.description,
            throttle: row.throttle_rate.zip(row.throttle_burst),
            quota: row.quota_limit.zip(row.quota_period),
            allow_cache_refresh: row.allow_cache_refresh,
            ip_policy: ip_policy(&row.ip_allow, &row.ip_deny)?,
            webhook_limit: limit(row.webhook_limit)?,
            stream_connection_limit: limit(row.stream_connection_limit)?,
            created_at: row.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct KeyRow {
    id: Uuid,
    name: String,
    prefix: String,
    plan_id: Uuid,
    enabled: bool,
    ip_allow: String,
    ip_deny: String,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
}

impl TryFrom<KeyRow> for KeyRecord {
    type Error = sqlx::Error;

    fn try_from(row: KeyRow) -> Result<Self, sqlx::Error> {
        Ok(KeyRecord {
            id: row.id,
            name: row.name,
            prefix: row.prefix,
            plan_id: row.plan_id,
            enabled: row.enabled,
            ip_policy: ip_policy(&row.ip_allow, &row.ip_deny)?,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
        })
    }
}

/// An IP list as its column keeps it: the networks comma-separated (no network contains
/// a comma), empty for none. Text rather than PostgreSQL's `cidr[]`, so that both
/// databases keep it alike and the queries stay written once.
pub fn networks_column(networks: &[IpNet]) -> String {
    networks
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The policy kept in an `ip_allow` and an `ip_deny` column.
/// A plan's webhook or stream connection limit (the table's checks keep them small and
/// positive).
fn limit(column: i64) -> Result<u32, sqlx::Error> {
    u32::try_from(column).map_err(|error| sqlx::Error::Decode(error.into()))
}

fn ip_policy(allow: &str, deny: &str) -> Result<IpPolicy, sqlx::Error> {
    let entries = |column: &str| -> Vec<String> {
        column
            .split(',')
            .filter(|entry| !entry.is_empty())
            .map(str::to_owned)
            .collect()
    };
    IpPolicy::parse(&entries(allow), &entries(deny))
        .map_err(|error| sqlx::Error::Decode(error.into()))
}

/// A key joined with its plan, whose clashing columns are renamed `plan_…`, and the
/// key's stored secret hash.
#[derive(sqlx::FromRow)]
pub struct KeyPlanRow {
    #[sqlx(flatten)]
    key: KeyRow,
    secret_hash: String,
    plan_name: String,
    plan_description: Option<String>,
    throttle_rate: Option<f64>,
    throttle_burst: Option<i64>,
    quota_limit: Option<i64>,
    quota_period: Option<String>,
    allow_cache_refresh: bool,
    plan_ip_allow: String,
    plan_ip_deny: String,
    webhook_limit: i64,
    stream_connection_limit: i64,
    plan_created_at: DateTime<Utc>,
}

impl TryFrom<KeyPlanRow> for (KeyRecord, PlanRecord, String) {
    type Error = sqlx::Error;

    fn try_from(row: KeyPlanRow) -> Result<Self, sqlx::Error> {
        let plan = PlanRow {
            id: row.key.plan_id,
            name: row.plan_name,
            description: row.plan_description,
            throttle_rate: row.throttle_rate,
            throttle_burst: row.throttle_burst,
            quota_limit: row.quota_limit,
            quota_period: row.quota_period,
            allow_cache_refresh: row.allow_cache_refresh,
            ip_allow: row.plan_ip_allow,
            ip_deny: row.plan_ip_deny,
            webhook_limit: row.webhook_limit,
            stream_connection_limit: row.stream_connection_limit,
            created_at: row.plan_created_at,
        };
        Ok((row.key.try_into()?, plan.try_into()?, row.secret_hash))
    }
}

/// An Idempotency-Key record: the request's hash, and the response once there is one.
#[derive(sqlx::FromRow)]
pub struct ClaimRow {
    pub request_hash: String,
    pub response_status: Option<i32>,
    pub response_location: Option<String>,
    pub response_body: Option<String>,
}

/// An outbox event and its position (`tx` is 0 on SQLite, which commits in id order).
#[derive(sqlx::FromRow)]
pub struct OutboxRow {
    pub id: i64,
    pub tx: i64,
    pub event: String,
    pub written_at: DateTime<Utc>,
}

/// A day of counts as the history queries read it (sums are cast back to bigint:
/// PostgreSQL's SUM(bigint) is numeric).
#[derive(sqlx::FromRow)]
pub struct DayRow {
    day: NaiveDate,
    used: i64,
    client_errors: i64,
    throttled: i64,
}

impl From<DayRow> for UsageDay {
    fn from(row: DayRow) -> Self {
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Self {
            day: row.day,
            tally: Tally {
                used: count(row.used),
                client_errors: count(row.client_errors),
                throttled: count(row.throttled),
            },
        }
    }
}
