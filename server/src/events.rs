//! Domain events: word, after a change has committed, that it happened.
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
//! subscriber that is away). When a subscription is made, or made again after Redis was
//! unreachable, every subscriber is told to [`Subscriber::resync`]: to drop what it may
//! have missed an event about.

use std::sync::Weak;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::gateway::redis::{REDIS_TIMEOUT, SharedRedis};
use crate::store::TweetRecord;

/// The Redis channel on which instances announce their events to each other.
pub const EVENTS_CHANNEL: &str = "minitter:events";

/// Something that changed, after it committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    #[serde(rename = "tweet.created")]
    TweetCreated { tweet: TweetRecord },
    #[serde(rename = "tweet.deleted")]
    TweetDeleted { tweet_id: Uuid, author_id: Uuid },
    #[serde(rename = "user.followed")]
    UserFollowed {
        follower_id: Uuid,
        followee_id: Uuid,
    },
    #[serde(rename = "user.unfollowed")]
    UserUnfollowed {
        follower_id: Uuid,
        followee_id: Uuid,
    },
    /// A user's profile changed (their picture).
    #[serde(rename = "user.updated")]
    UserUpdated { user_id: Uuid },
    /// An operator changed API keys or usage plans.
    #[serde(rename = "key.changed")]
    KeyChanged,
}

impl Event {
    /// The users and tweets whose stored state the event changed: a user's counts and
    /// tweets on a post or delete, both users' counts on a follow or unfollow, the tweet
    /// itself on a delete, the profile on a picture change. Key changes touch neither.
    pub fn changed(&self) -> Vec<Uuid> {
        match self {
            Event::TweetCreated { tweet } => vec![tweet.author_id],
            Event::TweetDeleted {
                tweet_id,
                author_id,
            } => vec![*tweet_id, *author_id],
            Event::UserFollowed {
                follower_id,
                followee_id,
            }
            | Event::UserUnfollowed {
                follower_id,
                followee_id,
            } => vec![*follower_id, *followee_id],
            Event::UserUpdated { user_id } => vec![*user_id],
            Event::KeyChanged => Vec::new(),
        }
    }
}

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
    /// Events from other instances may have been missed: drop whatever they could have
    /// changed.
    fn resync(&self);
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
            metrics::counter!(crate::metrics::EVENTS_UNANNOUNCED).increment(1);
            tracing::warn!("could not announce an event to the other instances through Redis");
        }
    }

    /// Delivers the other instances' events to this one's subscribers, until `events` is
    /// dropped. A lost subscription is made again every second, with a resync.
    pub async fn relay_from_redis(events: Weak<Self>) {
        loop {
            let Some(redis) = events.upgrade().and_then(|live| live.redis.clone()) else {
                return;
            };
            match redis.client().get_async_pubsub().await {
                Ok(mut pubsub) => {
                    if pubsub.subscribe(EVENTS_CHANNEL).await.is_ok() {
                        if let Some(live) = events.upgrade() {
                            live.resync();
                        }
                        let mut messages = pubsub.on_message();
                        while let Some(message) = messages.next().await {
                            let Some(live) = events.upgrade() else { return };
                            live.deliver(message.get_payload_bytes()).await;
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot subscribe to other instances' events"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
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

    fn resync(&self) {
        for subscriber in &self.subscribers {
            subscriber.resync();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_names_exactly_what_it_changed() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let followed = Event::UserFollowed {
            follower_id: a,
            followee_id: b,
        };
        assert_eq!(followed.changed(), vec![a, b]);
        let deleted = Event::TweetDeleted {
            tweet_id: a,
            author_id: b,
        };
        assert_eq!(deleted.changed(), vec![a, b]);
        assert_eq!(Event::UserUpdated { user_id: a }.changed(), vec![a]);
        assert!(Event::KeyChanged.changed().is_empty());
    }
}
