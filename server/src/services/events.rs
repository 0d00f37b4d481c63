//! The event bus: word, after a change has committed, that it happened.
//!
//! Whatever keeps a copy of stored data (the home feeds, the tweet cache, the gateway's
//! key cache) subscribes here instead of being called by hand from each handler: a handler
//! commits its change, then [`Events::publish`]es one typed [`Event`]. Every
//! [`Subscriber`] of this instance sees it before `publish` returns, so the instance that
//! acknowledged a write never serves what it replaced. With Redis configured the event is
//! also published on [`EVENTS_CHANNEL`], and the other instances deliver it to their
//! subscribers as [`Origin::Remote`] a moment later.
//!
//! Delivery to other instances is at most once (Redis pub/sub keeps nothing for a
//! subscriber that is away). So whenever this instance may be missing other instances'
//! events (before its first subscription, and from the moment a subscription breaks or
//! stops answering its once-a-second ping) every subscriber is told it is out of sync
//! ([`Subscriber::set_in_sync`]`(false)`): it drops its copies and keeps none, reading
//! through to the database, until a new subscription is made and it is told `true`. A
//! Redis outage therefore costs this instance its caches, never their correctness.

use std::sync::Weak;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::events::Event;
use crate::infra::redis::{REDIS_TIMEOUT, SharedRedis};

/// The Redis channel on which instances announce their events to each other.
pub const EVENTS_CHANNEL: &str = "minitter:events";

/// Where an event happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// On this instance: its shared state (Redis, the database) already reflects it.
    Local,
    /// On another instance, relayed through Redis.
    Remote,
}

/// Something that keeps a copy of stored data up to date.
#[async_trait]
pub trait Subscriber: Send + Sync {
    /// Applies `event`. Called in publishing order for this instance's events; must not
    /// wait long (slow work belongs in a task of the subscriber's own).
    async fn on_event(&self, event: &Event, origin: Origin);
    /// `false`: events from other instances may be missed from now on, so drop every copy
    /// they could change and keep none until told `true`. `true`: they are heard again;
    /// start afresh (drop whatever was kept around the break).
    fn set_in_sync(&self, in_sync: bool);
}

/// The message between instances: the event and the instance that published it.
#[derive(Serialize, Deserialize)]
struct Envelope {
    origin: Uuid,
    event: Event,
}

/// Publishes events to this instance's subscribers, and through Redis to the others.
pub struct Events {
    instance: Uuid,
    subscribers: Vec<std::sync::Arc<dyn Subscriber>>,
    redis: Option<SharedRedis>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("subscribers", &self.subscribers.len())
            .field("shared", &self.redis.is_some())
            .finish()
    }
}

impl Events {
    pub fn new(
        subscribers: Vec<std::sync::Arc<dyn Subscriber>>,
        redis: Option<SharedRedis>,
    ) -> Self {
        Self {
            instance: Uuid::now_v7(),
            subscribers,
            redis,
        }
    }

    /// Announces the events of a committed write
    /// ([`Written`](crate::domain::events::Written)), in order.
    pub async fn publish_all(&self, events: Vec<Event>) {
        for event in events {
            self.publish(event).await;
        }
    }

    /// Announces a committed change: to this instance's subscribers, in order, then to the
    /// other instances. A failure to reach Redis is logged; the others resync when their
    /// subscription breaks, and their caches' lifetimes bound what they miss meanwhile.
    pub async fn publish(&self, event: Event) {
        for subscriber in &self.subscribers {
            subscriber.on_event(&event, Origin::Local).await;
        }
        let Some(redis) = &self.redis else { return };
        let envelope = Envelope {
            origin: self.instance,
            event,
        };
        let Ok(message) = serde_json::to_string(&envelope) else {
            return;
        };
        let mut connection = redis.connection();
        let published = tokio::time::timeout(
            REDIS_TIMEOUT,
            redis::cmd("PUBLISH")
                .arg(EVENTS_CHANNEL)
                .arg(message)
                .exec_async(&mut connection),
        )
        .await;
        if !matches!(published, Ok(Ok(()))) {
            metrics::counter!(crate::infra::metrics::EVENTS_UNANNOUNCED).increment(1);
            tracing::warn!("could not announce an event to the other instances through Redis");
        }
    }

    /// Delivers the other instances' events to this one's subscribers, until `events` is
    /// dropped. The subscription is pinged every second; a lost or silent one puts the
    /// subscribers out of sync, and is made again a second later.
    pub async fn relay_from_redis(events: Weak<Self>) {
        let mut in_sync = true;
        loop {
            let Some(redis) = events.upgrade().and_then(|live| live.redis.clone()) else {
                return;
            };
            if in_sync {
                in_sync = false;
                if let Some(live) = events.upgrade() {
                    live.set_in_sync(false);
                }
            }
            let subscribed = tokio::time::timeout(REDIS_TIMEOUT, async {
                let mut pubsub = redis.client().get_async_pubsub().await?;
                pubsub.subscribe(EVENTS_CHANNEL).await?;
                Ok::<_, redis::RedisError>(pubsub)
            })
            .await;
            match subscribed {
                Ok(Ok(pubsub)) => {
                    let Some(live) = events.upgrade() else { return };
                    live.set_in_sync(true);
                    in_sync = true;
                    drop(live);
                    Self::deliver_until_lost(&events, pubsub).await;
                    tracing::warn!("lost the subscription to other instances' events");
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, "cannot subscribe to other instances' events");
                }
                Err(_) => tracing::warn!("cannot subscribe to other instances' events: timed out"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Delivers messages until the subscription ends or a ping goes unanswered.
    async fn deliver_until_lost(events: &Weak<Self>, pubsub: redis::aio::PubSub) {
        let (mut sink, mut messages) = pubsub.split();
        let mut ping = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                message = messages.next() => {
                    let Some(message) = message else { return };
                    let Some(live) = events.upgrade() else { return };
                    live.deliver(message.get_payload_bytes()).await;
                }
                _ = ping.tick() => {
                    // Subscribed, Redis answers a PING with a `pong` message rather than
                    // `PONG`: any answer will do.
                    let pong = tokio::time::timeout(REDIS_TIMEOUT, sink.ping::<redis::Value>()).await;
                    if !matches!(pong, Ok(Ok(_))) {
                        return;
                    }
                }
            }
        }
    }

    async fn deliver(&self, payload: &[u8]) {
        let envelope: Envelope = match serde_json::from_slice(payload) {
            Ok(envelope) => envelope,
            Err(error) => {
                tracing::warn!(%error, "ignoring an event this version does not understand");
                return;
            }
        };
        if envelope.origin == self.instance {
            return;
        }
        for subscriber in &self.subscribers {
            subscriber.on_event(&envelope.event, Origin::Remote).await;
        }
    }

    fn set_in_sync(&self, in_sync: bool) {
        for subscriber in &self.subscribers {
            subscriber.set_in_sync(in_sync);
        }
    }
}
