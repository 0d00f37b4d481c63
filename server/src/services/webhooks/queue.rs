//! The outbox consumer `webhooks`: each event a subscription can ask for becomes one
//! delivery per enabled subscription that wants it, with the message body built once,
//! here, so that every attempt sends (and signs) the same bytes.
//!
//! A delivery names the outbox event it announces, and the store keeps one delivery per
//! event and subscription, so an event read twice (the outbox is read at least once)
//! queues nothing the second time. A subscription made after an event was written, but
//! before the queue read it, gets it too: what counts is the subscriptions at the time of
//! queuing, a moment after the commit.

use std::collections::HashMap;

use async_trait::async_trait;
use serde_json::json;
use uuid::Uuid;

use super::Webhooks;
use crate::domain::events::Event;
use crate::domain::webhooks::{NewDelivery, Subscription};
use crate::infra::store::{OutboxEntry, Store};
use crate::services::outbox::{Consumer, Reader, Stopped};

/// The consumer's name, its position's key in the database.
pub const WEBHOOKS: &str = "webhooks";

/// The wire name of an event a subscription can ask for; `None` for the others.
pub fn event_type(event: &Event) -> Option<&'static str> {
    match event {
        Event::TweetCreated { .. } => Some("tweet.created"),
        Event::TweetDeleted { .. } => Some("tweet.deleted"),
        Event::UserFollowed { .. } => Some("user.followed"),
        Event::UserUnfollowed { .. } => Some("user.unfollowed"),
        Event::UserUpdated { .. } | Event::UserDeleted { .. } | Event::KeyChanged => None,
    }
}

/// The users an event concerns, for subscriptions narrowed to some: a tweet's author,
/// both ends of a follow.
fn users_of(event: &Event) -> Vec<Uuid> {
    match event {
        Event::TweetCreated { tweet } => vec![tweet.author_id],
        Event::TweetDeleted { author_id, .. } => vec![*author_id],
        Event::UserFollowed {
            follower_id,
            followee_id,
        }
        | Event::UserUnfollowed {
            follower_id,
            followee_id,
        } => vec![*follower_id, *followee_id],
        _ => Vec::new(),
    }
}

/// The message's `data`: public fields only (a tweet as the API shows it, ids).
fn data_of(event: &Event) -> serde_json::Value {
    match event {
        Event::TweetCreated { tweet } => json!({
            "id": tweet.id,
            "author_id": tweet.author_id,
            "text": tweet.text,
            "created_at": tweet.created_at,
        }),
        Event::TweetDeleted {
            tweet_id,
            author_id,
        } => json!({"tweet_id": tweet_id, "author_id": author_id}),
        Event::UserFollowed {
            follower_id,
            followee_id,
        }
        | Event::UserUnfollowed {
            follower_id,
            followee_id,
        } => json!({"follower_id": follower_id, "followee_id": followee_id}),
        _ => serde_json::Value::Null,
    }
}

#[async_trait]
impl Consumer for Webhooks {
    fn reader(&self) -> &Reader {
        &self.outbox
    }

    fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// The whole batch at once: one query for the subscriptions to each event type in it,
    /// one transaction for every delivery (so a failure queues none, and the batch is
    /// read again).
    async fn handle(&self, batch: &[(Event, &OutboxEntry)]) -> Result<(), Stopped> {
        let stopped = |error| Stopped { handled: 0, error };
        let mut subscriptions: HashMap<&'static str, Vec<Subscription>> = HashMap::new();
        let mut deliveries = Vec::new();
        for (event, entry) in batch {
            let Some(kind) = event_type(event) else {
                continue;
            };
            if !subscriptions.contains_key(kind) {
                let found = self.store.subscriptions(kind).await.map_err(stopped)?;
                subscriptions.insert(kind, found);
            }
            let users = users_of(event);
            let mut wanted = subscriptions[kind]
                .iter()
                .filter(|s| s.wants(&users))
                .peekable();
            if wanted.peek().is_none() {
                continue;
            }
            let payload = json!({
                "type": kind,
                "timestamp": entry.written_at,
                "data": data_of(event),
            })
            .to_string();
            deliveries.extend(wanted.map(|subscription| NewDelivery {
                id: Uuid::now_v7(),
                webhook_id: subscription.id,
                event_type: kind.to_owned(),
                payload: payload.clone(),
                outbox_id: Some(entry.position.id),
                created_at: entry.written_at,
            }));
        }
        if deliveries.is_empty() {
            return Ok(());
        }
        self.store
            .add_deliveries(&deliveries)
            .await
            .map_err(stopped)?;
        self.due.notify_one();
        Ok(())
    }
}
