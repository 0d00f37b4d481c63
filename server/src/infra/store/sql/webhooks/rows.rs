//! The rows of the webhook tables as sqlx reads them, and their conversion into the
//! domain's records: a value that does not convert (a time out of range, an unknown
//! status) is a decode error, never a panic.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::webhooks::{
    DeliveryRecord, DeliveryStatus, DueDelivery, LeasedWebhook, Subscription, WebhookRecord,
};

/// Ids as their column keeps them: hyphenated, joined by ','.
pub(super) fn ids_column(ids: &[Uuid]) -> String {
    ids.iter()
        .map(Uuid::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The ids an [`ids_column`] holds.
fn parse_ids(column: &str, ids: &str) -> Result<Vec<Uuid>, sqlx::Error> {
    ids.split(',')
        .filter(|id| !id.is_empty())
        .map(|id| Uuid::parse_str(id).map_err(|error| undecodable(column, error)))
        .collect()
}

/// The names a comma-joined text column holds.
fn names(column: &str) -> Vec<String> {
    column
        .split(',')
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A time kept as milliseconds since the Unix epoch.
fn time(column: &str, millis: i64) -> Result<DateTime<Utc>, sqlx::Error> {
    DateTime::from_timestamp_millis(millis)
        .ok_or_else(|| undecodable(column, format!("{millis} ms is out of range")))
}

fn optional_time(column: &str, millis: Option<i64>) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    millis.map(|millis| time(column, millis)).transpose()
}

/// A count the table's checks keep non-negative.
fn count(column: &str, value: i64) -> Result<u32, sqlx::Error> {
    u32::try_from(value).map_err(|error| undecodable(column, error))
}

fn undecodable(
    column: &str,
    source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: source.into(),
    }
}

#[derive(sqlx::FromRow)]
pub struct WebhookRow {
    id: Uuid,
    api_key_id: Uuid,
    url: String,
    event_types: String,
    user_ids: Option<String>,
    description: Option<String>,
    enabled: bool,
    disabled_reason: Option<String>,
    consecutive_failures: i64,
    open_until: Option<i64>,
    previous_secret_expires_at: Option<i64>,
    created_at: DateTime<Utc>,
}

impl TryFrom<WebhookRow> for WebhookRecord {
    type Error = sqlx::Error;

    fn try_from(row: WebhookRow) -> Result<Self, sqlx::Error> {
        Ok(WebhookRecord {
            id: row.id,
            api_key_id: row.api_key_id,
            url: row.url,
            event_types: names(&row.event_types),
            user_ids: row
                .user_ids
                .as_deref()
                .map(|ids| parse_ids("user_ids", ids))
                .transpose()?,
            description: row.description,
            enabled: row.enabled,
            disabled_reason: row.disabled_reason,
            consecutive_failures: count("consecutive_failures", row.consecutive_failures)?,
            open_until: optional_time("open_until", row.open_until)?,
            previous_secret_expires_at: optional_time(
                "previous_secret_expires_at",
                row.previous_secret_expires_at,
            )?,
            created_at: row.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct DeliveryRow {
    id: Uuid,
    webhook_id: Uuid,
    event_type: String,
    payload: String,
    status: String,
    attempts: i64,
    next_attempt_at: Option<i64>,
    last_attempt_at: Option<i64>,
    last_status_code: Option<i64>,
    last_error: Option<String>,
    last_latency_ms: Option<i64>,
    last_response_excerpt: Option<String>,
    created_at: i64,
    delivered_at: Option<i64>,
}

impl TryFrom<DeliveryRow> for DeliveryRecord {
    type Error = sqlx::Error;

    fn try_from(row: DeliveryRow) -> Result<Self, sqlx::Error> {
        let status = DeliveryStatus::parse(&row.status)
            .ok_or_else(|| undecodable("status", format!("unknown status {:?}", row.status)))?;
        Ok(DeliveryRecord {
            id: row.id,
            webhook_id: row.webhook_id,
            event_type: row.event_type,
            payload: row.payload,
            status,
            attempts: count("attempts", row.attempts)?,
            next_attempt_at: optional_time("next_attempt_at", row.next_attempt_at)?,
            last_attempt_at: optional_time("last_attempt_at", row.last_attempt_at)?,
            last_status_code: row
                .last_status_code
                .map(|code| u16::try_from(code).map_err(|e| undecodable("last_status_code", e)))
                .transpose()?,
            last_error: row.last_error,
            last_latency_ms: row
                .last_latency_ms
                .map(|ms| u64::try_from(ms).map_err(|e| undecodable("last_latency_ms", e)))
                .transpose()?,
            last_response_excerpt: row.last_response_excerpt,
            created_at: time("created_at", row.created_at)?,
            delivered_at: optional_time("delivered_at", row.delivered_at)?,
        })
    }
}

/// An enabled subscription's id and user filter.
#[derive(sqlx::FromRow)]
pub struct SubscriptionRow {
    id: Uuid,
    user_ids: Option<String>,
}

impl TryFrom<SubscriptionRow> for Subscription {
    type Error = sqlx::Error;

    fn try_from(row: SubscriptionRow) -> Result<Self, Self::Error> {
        Ok(Self {
            id: row.id,
            user_ids: row
                .user_ids
                .as_deref()
                .map(|ids| parse_ids("user_ids", ids))
                .transpose()?,
        })
    }
}

/// A subscription just leased, with its secrets.
#[derive(sqlx::FromRow)]
pub struct LeaseRow {
    id: Uuid,
    url: String,
    secret: String,
    previous_secret: Option<String>,
    previous_secret_expires_at: Option<i64>,
    consecutive_failures: i64,
    open_until: Option<i64>,
}

impl LeaseRow {
    /// The subscription as leased under `lease` at `now` (ms): the previous secret signs
    /// too while its grace period lasts.
    pub(super) fn leased(self, lease: Uuid, now: i64) -> Result<LeasedWebhook, sqlx::Error> {
        let mut secrets = vec![self.secret];
        if let (Some(previous), Some(expires)) =
            (self.previous_secret, self.previous_secret_expires_at)
            && expires > now
        {
            secrets.push(previous);
        }
        Ok(LeasedWebhook {
            id: self.id,
            url: self.url,
            secrets,
            consecutive_failures: count("consecutive_failures", self.consecutive_failures)?,
            open_until: optional_time("open_until", self.open_until)?,
            lease,
        })
    }
}

/// A due delivery, as the worker sends it.
#[derive(sqlx::FromRow)]
pub struct DueRow {
    id: Uuid,
    payload: String,
    attempts: i64,
    created_at: i64,
}

impl TryFrom<DueRow> for DueDelivery {
    type Error = sqlx::Error;

    fn try_from(row: DueRow) -> Result<Self, sqlx::Error> {
        Ok(DueDelivery {
            id: row.id,
            payload: row.payload,
            attempts: count("attempts", row.attempts)?,
            created_at: time("created_at", row.created_at)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_survive_their_column() {
        let ids = vec![Uuid::now_v7(), Uuid::now_v7()];
        assert_eq!(parse_ids("user_ids", &ids_column(&ids)).ok(), Some(ids));
        assert_eq!(parse_ids("user_ids", "").ok(), Some(vec![]));
        assert!(parse_ids("user_ids", "not-a-uuid").is_err());
    }

    #[test]
    fn a_time_out_of_range_is_a_decode_error() {
        assert!(time("open_until", i64::MAX).is_err());
        assert_eq!(
            time("open_until", 1_700_000_000_123)
                .map(|t| t.timestamp_millis())
                .ok(),
            Some(1_700_000_000_123)
        );
    }
}
