//! Webhooks (issue 19): events pushed to partners' own HTTP endpoints.
//!
//! A partner names the URL, so every URL is a request the server would make on a
//! stranger's behalf; [`ssrf`] is the guard each one passes, at registration and again
//! when a delivery connects (to the very address that was checked, never following a
//! redirect).
//!
//! The path of an event: its change's transaction writes it to the outbox; [`queue`], an
//! outbox consumer, turns it into one delivery per matching subscription (at least once,
//! and a delivery per event and subscription at most, so a re-read adds nothing); the
//! [`worker`] leases subscriptions with due deliveries and sends them, one request at a
//! time per endpoint, in order. [`send`] makes one attempt (the Standard Webhooks request,
//! signed with the endpoint's secrets); [`schedule`] decides, without I/O, when a failed
//! delivery is tried again and when an endpoint that keeps failing is left alone for a
//! while (its circuit breaker). All of it is in the database, so a `kill -9` anywhere
//! loses nothing: the next instance (or this one, restarted) carries on where the rows say.

pub mod queue;
pub mod schedule;
pub mod send;
pub mod ssrf;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use ipnet::IpNet;
use tokio::sync::Notify;
use uuid::Uuid;

use self::schedule::BreakerSettings;
use self::send::Sender;
use self::ssrf::UrlPolicy;
use crate::domain::events::Event;
use crate::domain::webhooks::{DeliveryRecord, NewDelivery, PING};
use crate::infra::store::{SharedStore, StoreError};
use crate::services::events::{Origin, Subscriber};
use crate::services::outbox::Reader;

/// How webhooks are delivered.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Networks a webhook URL may reach although they are not public (tests, on-premise
    /// receivers).
    pub allowed_networks: Vec<IpNet>,
    /// How long one attempt may take.
    pub timeout: Duration,
    pub breaker: BreakerSettings,
    /// Endpoints served at once by this instance (one task each).
    pub concurrency: usize,
    /// How long a lease on a subscription lasts without renewal: after a crash, how long
    /// its deliveries wait for another instance.
    pub lease: Duration,
    /// How long a rotated-out secret keeps signing.
    pub secret_grace: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            allowed_networks: Vec::new(),
            timeout: send::TIMEOUT,
            breaker: BreakerSettings::default(),
            concurrency: 64,
            lease: Duration::from_secs(30),
            secret_grace: Duration::from_secs(24 * 60 * 60),
        }
    }
}

/// The webhook service: the outbox consumer that queues deliveries and the worker that
/// sends them, over the store.
pub struct Webhooks {
    store: SharedStore,
    policy: UrlPolicy,
    sender: Sender,
    settings: WebhookSettings,
    /// The queue's place in the outbox.
    outbox: Reader,
    /// Deliveries may be due.
    due: Notify,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Webhooks")
    }
}

impl Webhooks {
    /// Starts the service, with its outbox consumer and its worker.
    pub fn start(store: SharedStore, settings: WebhookSettings) -> Arc<Self> {
        let policy = UrlPolicy::new(settings.allowed_networks.clone());
        let webhooks = Arc::new(Self {
            store,
            sender: Sender::with_timeout(policy.clone(), settings.timeout),
            policy,
            settings,
            // A tenth of a second for partners; every turn that queues deliveries is a
            // commit of its own, beside the position's.
            outbox: Reader::new(queue::WEBHOOKS, Duration::from_millis(100)),
            due: Notify::new(),
        });
        tokio::spawn(crate::services::outbox::run(Arc::downgrade(&webhooks)));
        tokio::spawn(worker::run(Arc::downgrade(&webhooks)));
        tokio::spawn(worker::prune_deliveries(Arc::downgrade(&webhooks)));
        webhooks
    }

    /// The SSRF policy every URL passes at registration.
    pub fn policy(&self) -> &UrlPolicy {
        &self.policy
    }

    pub fn settings(&self) -> &WebhookSettings {
        &self.settings
    }

    /// Queues a `webhook.ping` to subscription `webhook`, due now.
    pub async fn ping(&self, webhook: Uuid) -> Result<Option<DeliveryRecord>, StoreError> {
        let now = Utc::now();
        let payload = serde_json::json!({
            "type": PING,
            "timestamp": now,
            "data": {"webhook_id": webhook},
        });
        let delivery = NewDelivery {
            id: Uuid::now_v7(),
            webhook_id: webhook,
            event_type: PING.to_owned(),
            payload: payload.to_string(),
            outbox_id: None,
            created_at: now,
        };
        self.store
            .add_deliveries(std::slice::from_ref(&delivery))
            .await?;
        self.due.notify_one();
        self.store.delivery(webhook, delivery.id).await
    }

    /// Tells the worker that deliveries may be due now (a redelivery, an enabled
    /// subscription).
    pub fn wake_worker(&self) {
        self.due.notify_one();
    }

    /// Waits until every event committed so far is queued as deliveries (for tests).
    pub async fn settle(&self) {
        if let Err(error) = crate::services::outbox::catch_up(self).await {
            tracing::warn!(%error, "the webhook queue could not catch up");
        }
    }
}

/// Every event a subscription can ask for wakes the queue, wherever it was written.
#[async_trait]
impl Subscriber for Webhooks {
    async fn on_event(&self, event: &Event, _origin: Origin) {
        if queue::event_type(event).is_some() {
            self.outbox.wake();
        }
    }

    fn set_in_sync(&self, _in_sync: bool) {}
}
