//! The delivery worker: leases subscriptions that have deliveries due and sends them.
//!
//! Each leased subscription gets a task of its own, which sends its due deliveries one
//! after another, oldest first, so an endpoint sees one request at a time and the events
//! in order (a delivery waiting for its retry does not hold back the ones after it). The
//! tasks are bounded ([`WebhookSettings::concurrency`](super::WebhookSettings)): a dead or
//! slow endpoint ties up one task for one timeout per attempt until its breaker opens, and
//! never touches the API's requests or the other endpoints' tasks.
//!
//! A failed attempt is written (the delivery and the breaker) before the next one is sent.
//! Successes are written together, a batch of due deliveries (at most 50) or a second's
//! worth at a time: one commit, so one `fsync`, for many deliveries, which is what lets a
//! busy endpoint receive a thousand events a second on SQLite. So a crash repeats at most
//! those unwritten successes and the attempt in flight (at least once; receivers drop
//! repeats by `webhook-id`), and a delivery whose success was written is never sent
//! again. The lease is renewed while the task works and released when it is done; a
//! killed instance's leases run out and another instance takes over.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::Url;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use super::Webhooks;
use super::schedule::{Breaker, BreakerState, retry_delay};
use super::send::{Attempt, Message, Outcome};
use crate::domain::webhooks::{
    AttemptRecord, DeliveryStatus, DueDelivery, LeasedWebhook, message_id,
};
use crate::infra::store::StoreError;

/// How many due deliveries a task reads at a time: also the most successes that wait to
/// be recorded together.
pub const BATCH: u32 = 50;
/// How long a success may wait to be written with the ones after it.
const RECORD_WITHIN: Duration = Duration::from_secs(1);
/// How long the worker waits for news before it looks anyway (retries come due on their
/// own, and other instances queue deliveries too).
const IDLE: Duration = Duration::from_secs(1);

/// Runs the worker until the service is dropped.
pub(super) async fn run(webhooks: Weak<Webhooks>) {
    let Some(concurrency) = webhooks.upgrade().map(|w| w.settings.concurrency.max(1)) else {
        return;
    };
    let tasks = Arc::new(Semaphore::new(concurrency));
    loop {
        let Some(live) = webhooks.upgrade() else {
            return;
        };
        let free = u32::try_from(tasks.available_permits()).unwrap_or(u32::MAX);
        let leased = if free == 0 {
            Ok(Vec::new())
        } else {
            let now = Utc::now();
            live.store
                .lease_webhooks(now, later(now, live.settings.lease), free)
                .await
        };
        match leased {
            Ok(leased) if !leased.is_empty() => {
                for webhook in leased {
                    let Ok(permit) = Arc::clone(&tasks).try_acquire_owned() else {
                        break;
                    };
                    tokio::spawn(serve(Arc::clone(&live), webhook, permit));
                }
            }
            Ok(_) => {
                let _ = tokio::time::timeout(IDLE, live.due.notified()).await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot lease webhook subscriptions; retrying in a second");
                drop(live);
                tokio::time::sleep(IDLE).await;
            }
        }
    }
}

/// Sends a leased subscription's due deliveries until none is left, its breaker opens,
/// it is gone, or the lease is lost; then releases it.
async fn serve(webhooks: Arc<Webhooks>, webhook: LeasedWebhook, _task: OwnedSemaphorePermit) {
    let id = webhook.id;
    let lease = webhook.lease;
    if let Err(error) = send_due(&webhooks, webhook).await {
        tracing::warn!(webhook = %id, %error, "webhook deliveries interrupted; retrying later");
    }
    if let Err(error) = webhooks.store.release_webhook(id, lease).await {
        tracing::warn!(webhook = %id, %error, "webhook lease not released; it runs out on its own");
    }
}

async fn send_due(webhooks: &Webhooks, webhook: LeasedWebhook) -> Result<(), StoreError> {
    let store = &webhooks.store;
    let Ok(url) = Url::parse(&webhook.url) else {
        tracing::warn!(webhook = %webhook.id, "a stored webhook URL does not parse; skipped");
        return Ok(());
    };
    let secrets: Vec<&str> = webhook.secrets.iter().map(String::as_str).collect();
    let mut breaker = Breaker {
        consecutive_failures: webhook.consecutive_failures,
        open_until: webhook.open_until,
    };
    let mut lease_until = later(Utc::now(), webhooks.settings.lease);
    let mut unwritten = Unwritten::default();
    loop {
        let due = store.due_deliveries(webhook.id, Utc::now(), BATCH).await?;
        if due.is_empty() {
            return Ok(());
        }
        for delivery in due {
            if matches!(breaker.state(Utc::now()), BreakerState::Open { .. }) {
                return unwritten.write(webhooks, webhook.id).await;
            }
            // Renewed with half of it left, so it never runs out during an attempt.
            let now = Utc::now();
            if lease_until - now < half(webhooks.settings.lease) {
                lease_until = later(now, webhooks.settings.lease);
                if !store
                    .renew_webhook_lease(webhook.id, webhook.lease, lease_until)
                    .await?
                {
                    // Another worker carries on; what was sent is written all the same.
                    return unwritten.write(webhooks, webhook.id).await;
                }
            }
            let message_id = message_id(delivery.id);
            let sent_at = Utc::now();
            let message = Message {
                id: &message_id,
                timestamp: sent_at,
                payload: delivery.payload.as_bytes(),
            };
            let attempt = webhooks.sender.send(&url, &secrets, &message).await;
            let (record, next_breaker) = judge(webhooks, &delivery, sent_at, &attempt, breaker);
            observe(&delivery, &attempt, &breaker, &next_breaker);
            breaker = next_breaker;
            let (delivered, disable) = (record.status == DeliveryStatus::Delivered, record.disable);
            unwritten.add(delivery.id, record);
            if !delivered || unwritten.waited() >= RECORD_WITHIN {
                unwritten.write(webhooks, webhook.id).await?;
            }
            if disable {
                return Ok(());
            }
        }
        // Written before the next read, which would find them due again.
        unwritten.write(webhooks, webhook.id).await?;
    }
}

/// Attempts made and not yet written, and when the first of them was made.
#[derive(Default)]
struct Unwritten {
    attempts: Vec<(Uuid, AttemptRecord)>,
    since: Option<Instant>,
}

impl Unwritten {
    fn add(&mut self, delivery: Uuid, record: AttemptRecord) {
        self.since.get_or_insert_with(Instant::now);
        self.attempts.push((delivery, record));
    }

    fn waited(&self) -> Duration {
        self.since.map_or(Duration::ZERO, |since| since.elapsed())
    }

    async fn write(&mut self, webhooks: &Webhooks, webhook: Uuid) -> Result<(), StoreError> {
        if self.attempts.is_empty() {
            return Ok(());
        }
        webhooks
            .store
            .record_attempts(webhook, &self.attempts)
            .await?;
        self.attempts.clear();
        self.since = None;
        Ok(())
    }
}

/// What an attempt means for the delivery and for the endpoint's breaker.
fn judge(
    webhooks: &Webhooks,
    delivery: &DueDelivery,
    sent_at: DateTime<Utc>,
    attempt: &Attempt,
    breaker: Breaker,
) -> (AttemptRecord, Breaker) {
    let at = Utc::now();
    let failures = delivery.attempts.saturating_add(1);
    let (status, next_attempt_at, breaker, disable) = match attempt.outcome {
        Outcome::Delivered => (
            DeliveryStatus::Delivered,
            None,
            breaker.after_success(),
            false,
        ),
        Outcome::Gone => (DeliveryStatus::Failed, None, breaker, true),
        Outcome::Failed => {
            let breaker = breaker.after_failure(at, &webhooks.settings.breaker);
            match retry_delay(failures, attempt.retry_after, &mut rand::rng()) {
                Some(delay) => (
                    DeliveryStatus::Pending,
                    Some(later(at, delay)),
                    breaker,
                    false,
                ),
                None => (DeliveryStatus::Failed, None, breaker, false),
            }
        }
    };
    let record = AttemptRecord {
        sent_at,
        at,
        status_code: attempt.status,
        error: attempt.error.clone(),
        latency_ms: u64::try_from(attempt.latency.as_millis()).unwrap_or(u64::MAX),
        excerpt: attempt.excerpt.clone(),
        status,
        next_attempt_at,
        consecutive_failures: breaker.consecutive_failures,
        open_until: breaker.open_until,
        disable,
    };
    (record, breaker)
}

/// The metrics of an attempt: its outcome, the pipeline's latency when it succeeded at
/// once, and the breaker's transitions.
fn observe(delivery: &DueDelivery, attempt: &Attempt, before: &Breaker, after: &Breaker) {
    crate::infra::metrics::webhook_attempt(attempt.outcome.as_str());
    if attempt.outcome == Outcome::Delivered && delivery.attempts == 0 {
        let elapsed = Utc::now() - delivery.created_at;
        crate::infra::metrics::webhook_latency(elapsed.to_std().unwrap_or_default());
    }
    if after.open_until.is_some() && after.open_until != before.open_until {
        crate::infra::metrics::webhook_breaker_transition("open");
    } else if before.open_until.is_some() && after.open_until.is_none() {
        crate::infra::metrics::webhook_breaker_transition("closed");
    }
}

/// `at` plus `delay`, saturating.
fn later(at: DateTime<Utc>, delay: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(delay)
        .ok()
        .and_then(|delay| at.checked_add_signed(delay))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn half(lease: Duration) -> chrono::Duration {
    chrono::Duration::from_std(lease / 2).unwrap_or(chrono::Duration::MAX)
}

/// How long finished deliveries are kept (the deliveries log shows them until then).
pub const DELIVERY_RETENTION_DAYS: i64 = 7;

/// Deletes finished deliveries older than [`DELIVERY_RETENTION_DAYS`], at start and then
/// as often as the outbox is pruned, until the service is dropped. Pending ones are kept
/// however old: they are still to be sent.
pub(super) async fn prune_deliveries(webhooks: Weak<Webhooks>) {
    let mut ticks = tokio::time::interval(crate::services::outbox::prune::EVERY);
    loop {
        ticks.tick().await;
        let Some(live) = webhooks.upgrade() else {
            return;
        };
        let cutoff = Utc::now() - chrono::Duration::days(DELIVERY_RETENTION_DAYS);
        let store = &live.store;
        match crate::services::outbox::prune::in_batches(|batch| {
            store.prune_deliveries(cutoff, batch)
        })
        .await
        {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "pruned old webhook deliveries"),
            Err(error) => {
                tracing::warn!(%error, "cannot prune webhook deliveries now; retrying later")
            }
        }
    }
}
