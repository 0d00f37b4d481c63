//! The webhook store's interface: partners' subscriptions (always scoped by the API key
//! that owns them), the deliveries the outbox consumer queues, and the leases the
//! delivery worker takes on subscriptions.
//!
//! A worker leases a whole subscription, not a delivery: it then sends that
//! subscription's due deliveries one after another, in the order they were queued, so a
//! partner sees events in order, one request at a time per endpoint (a slow endpoint ties
//! up one worker task, never others). A lease is a time and a token in the row: it ends
//! when released, or on its own when its worker dies, after which another instance (or
//! this one after a restart) takes the subscription over; PostgreSQL instances claim with
//! `FOR UPDATE SKIP LOCKED`, so two never claim the same subscription.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Page, StoreError};
use crate::domain::webhooks::{
    AttemptRecord, DeliveryRecord, DueDelivery, LeasedWebhook, NewDelivery, NewWebhook,
    Subscription, WebhookChanges, WebhookCreation, WebhookRecord,
};

#[async_trait]
pub trait WebhookStore {
    /// Stores a subscription unless its key already holds `limit` of them (checked in the
    /// same transaction, with the key's row locked on PostgreSQL, so concurrent creations
    /// cannot pass the limit together).
    async fn create_webhook(
        &self,
        new: &NewWebhook,
        limit: u32,
    ) -> Result<WebhookCreation, StoreError>;
    /// `key`'s subscription `id`.
    async fn webhook(&self, key: Uuid, id: Uuid) -> Result<Option<WebhookRecord>, StoreError>;
    /// `key`'s subscriptions, newest first, older than `before`.
    async fn webhooks(
        &self,
        key: Uuid,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Page<WebhookRecord, Uuid>, StoreError>;
    /// Applies `changes` to `key`'s subscription `id`.
    async fn update_webhook(
        &self,
        key: Uuid,
        id: Uuid,
        changes: &WebhookChanges,
    ) -> Result<Option<WebhookRecord>, StoreError>;
    /// Deletes `key`'s subscription `id` with its deliveries; `false` when there is none.
    async fn delete_webhook(&self, key: Uuid, id: Uuid) -> Result<bool, StoreError>;
    /// Makes `secret` the signing secret of `key`'s subscription `id`; the one it
    /// replaces keeps signing until `previous_until`.
    async fn rotate_webhook_secret(
        &self,
        key: Uuid,
        id: Uuid,
        secret: &str,
        previous_until: DateTime<Utc>,
    ) -> Result<Option<WebhookRecord>, StoreError>;

    /// The enabled subscriptions to `event_type`.
    async fn subscriptions(&self, event_type: &str) -> Result<Vec<Subscription>, StoreError>;
    /// Queues deliveries; one whose subscription already has a delivery of the same
    /// outbox event is skipped, as is one whose subscription is gone.
    async fn add_deliveries(&self, deliveries: &[NewDelivery]) -> Result<(), StoreError>;
    /// Delivery `id` of subscription `webhook`.
    async fn delivery(&self, webhook: Uuid, id: Uuid)
    -> Result<Option<DeliveryRecord>, StoreError>;
    /// Subscription `webhook`'s deliveries, newest first, older than `before`.
    async fn deliveries(
        &self,
        webhook: Uuid,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Page<DeliveryRecord, Uuid>, StoreError>;
    /// Makes delivery `id` of subscription `webhook` pending again, due `now`, with its
    /// attempts counted from zero.
    async fn requeue_delivery(
        &self,
        webhook: Uuid,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<DeliveryRecord>, StoreError>;

    /// Leases, until `until`, up to `limit` enabled subscriptions that have a delivery
    /// due at `now`, are not leased, and whose breaker is not open at `now`.
    async fn lease_webhooks(
        &self,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<LeasedWebhook>, StoreError>;
    /// Extends a lease still held under `lease`; `false` when it was lost.
    async fn renew_webhook_lease(
        &self,
        id: Uuid,
        lease: Uuid,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Ends a lease still held under `lease`.
    async fn release_webhook(&self, id: Uuid, lease: Uuid) -> Result<(), StoreError>;
    /// Up to `limit` of subscription `webhook`'s deliveries due at `now`, oldest first.
    async fn due_deliveries(
        &self,
        webhook: Uuid,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DueDelivery>, StoreError>;
    /// Records attempts on deliveries of subscription `webhook` (each delivery id with its
    /// attempt, in the order they were made), and the last one's outcome on the
    /// subscription's breaker (disabling it if the endpoint is gone), in one transaction.
    /// A delivery due only after its attempt was sent (requeued meanwhile) is left as it is.
    async fn record_attempts(
        &self,
        webhook: Uuid,
        attempts: &[(Uuid, AttemptRecord)],
    ) -> Result<(), StoreError>;
    /// How many enabled subscriptions have an open breaker at `now`, for the metrics.
    async fn open_breakers(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;
    /// Deletes up to `batch` deliveries (oldest first) created before `cutoff` that are
    /// no longer pending; returns how many went.
    async fn prune_deliveries(&self, cutoff: DateTime<Utc>, batch: u32) -> Result<u64, StoreError>;
}
