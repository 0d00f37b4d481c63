//! Webhook subscriptions and their deliveries, as the store keeps them.
//!
//! A subscription belongs to the API key that made it (its partner); every read and
//! write of one through the API is scoped by that key, so another partner's
//! subscription is simply not found. A delivery is one message to one subscription: it
//! is created once per outbox event and subscription (or by a ping), keeps its id (and so
//! its `webhook-id`) across every attempt, and records only its last attempt; the
//! worker's schedule and breaker ([`crate::services::webhooks::schedule`]) decide what
//! happens next.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The events a subscription can ask for, as their wire names.
pub const EVENT_TYPES: [&str; 4] = [
    "tweet.created",
    "tweet.deleted",
    "user.followed",
    "user.unfollowed",
];

/// How many subscriptions a key may hold when its plan does not say (the migration's default).
pub const DEFAULT_WEBHOOK_LIMIT: u32 = 10;

/// The test message's type, sent to any subscription on request.
pub const PING: &str = "webhook.ping";

/// Why the server disabled a subscription: its endpoint answered 410 Gone.
pub const DISABLED_GONE: &str = "gone";

/// A subscription, without its secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRecord {
    pub id: Uuid,
    pub api_key_id: Uuid,
    pub url: String,
    /// Wire names from [`EVENT_TYPES`].
    pub event_types: Vec<String>,
    /// Only events of these users; `None` for every user.
    pub user_ids: Option<Vec<Uuid>>,
    pub description: Option<String>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub consecutive_failures: u32,
    pub open_until: Option<DateTime<Utc>>,
    /// While a rotated-out secret still signs messages, until when.
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A subscription about to be stored, with its first secret.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub id: Uuid,
    pub api_key_id: Uuid,
    pub url: String,
    pub event_types: Vec<String>,
    pub user_ids: Option<Vec<Uuid>>,
    pub description: Option<String>,
    pub enabled: bool,
    pub secret: String,
    pub created_at: DateTime<Utc>,
}

/// Changes to a subscription; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct WebhookChanges {
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    /// `Some(None)`: every user again.
    pub user_ids: Option<Option<Vec<Uuid>>>,
    pub description: Option<String>,
    /// Enabling also closes the breaker and clears `disabled_reason`.
    pub enabled: Option<bool>,
}

/// What creating a subscription came to.
#[derive(Debug)]
pub enum WebhookCreation {
    Created(WebhookRecord),
    /// The key holds as many subscriptions as its plan allows.
    LimitReached,
}

/// An enabled subscription to some event type, for matching an event against it.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub id: Uuid,
    pub user_ids: Option<Vec<Uuid>>,
}

impl Subscription {
    /// Whether an event concerning `users` is for this subscription.
    pub fn wants(&self, users: &[Uuid]) -> bool {
        self.user_ids
            .as_ref()
            .is_none_or(|wanted| users.iter().any(|user| wanted.contains(user)))
    }
}

/// A delivery's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// To be tried (again) at `next_attempt_at`.
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// The retries ran out, or the endpoint is gone.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(DeliveryStatus::Pending),
            "delivered" => Some(DeliveryStatus::Delivered),
            "failed" => Some(DeliveryStatus::Failed),
            _ => None,
        }
    }
}

/// A message to a subscription, about to be stored (due at once).
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub id: Uuid,
    pub webhook_id: Uuid,
    pub event_type: String,
    /// The JSON body, exactly as it is signed and sent.
    pub payload: String,
    /// The outbox event it announces: a second delivery of the same event to the same
    /// subscription is not stored (the outbox is read at least once). `None` for a ping.
    pub outbox_id: Option<i64>,
    pub created_at: DateTime<Utc>,
}

/// A delivery and its last attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub id: Uuid,
    pub webhook_id: Uuid,
    pub event_type: String,
    pub payload: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub last_latency_ms: Option<u64>,
    pub last_response_excerpt: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// The `webhook-id` of a delivery's message: the same on every attempt.
pub fn message_id(delivery_id: Uuid) -> String {
    format!("msg_{}", delivery_id.simple())
}

/// A subscription a worker holds the lease of, with what sending to it needs.
#[derive(Debug, Clone)]
pub struct LeasedWebhook {
    pub id: Uuid,
    pub url: String,
    /// The current secret first, then a rotated-out one still in its grace period.
    pub secrets: Vec<String>,
    pub consecutive_failures: u32,
    pub open_until: Option<DateTime<Utc>>,
    /// The lease's token: renewals and releases name it, so a worker whose lease expired
    /// (and was taken over) can no longer act on the subscription.
    pub lease: Uuid,
}

/// A delivery that is due, as the worker sends it.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub id: Uuid,
    pub payload: String,
    /// Attempts made so far.
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
}

/// What an attempt came to, as the store records it on the delivery and its subscription.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    /// When the request went out. A delivery requeued after that (a redelivery asked for
    /// while the attempt was on its way) keeps its new state: the record skips it.
    pub sent_at: DateTime<Utc>,
    /// When the answer came (or the attempt failed).
    pub at: DateTime<Utc>,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub latency_ms: u64,
    pub excerpt: String,
    /// The delivery afterwards: delivered, failed for good, or pending until a time.
    pub status: DeliveryStatus,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The subscription's breaker afterwards.
    pub consecutive_failures: u32,
    pub open_until: Option<DateTime<Utc>>,
    /// The endpoint is gone (410): disable the subscription.
    pub disable: bool,
}
