//! The event subscriber: how the feeds and the caches hear of committed changes.
//!
//! Nothing calls the timeline service to tell it of a change; it subscribes to the bus
//! (`services::events`) like every other copy of stored data, and the response cache tells
//! it which tweets changed on another instance
//! ([`RecordsById`](crate::services::response_cache::RecordsById)). Each event is handled
//! here in one place, so what a post, delete, follow or unfollow does to the feeds reads
//! as one table: the writer's own feed and the tweet cache change before the request is
//! answered, the fan-out is woken to copy posts and deletes into followers' feeds (from
//! the outbox, wherever they were written), and events from other instances otherwise only
//! refresh the caches (their own instance changed the shared feeds already).

use async_trait::async_trait;
use uuid::Uuid;

use super::feed::{Entry, FeedKey};
use super::{Timelines, entry_of};
use crate::domain::events::Event;
use crate::services::events::{Origin, Subscriber};

impl crate::services::response_cache::RecordsById for Timelines {
    fn forget(&self, ids: &[Uuid]) {
        for id in ids {
            self.tweets.forget(*id);
        }
    }
}

/// The feeds and the tweet cache follow every committed change. The writer's own feed
/// changes before its request is answered (a user sees their own post, follow or delete
/// at once); followers' feeds change in the fan-out, a moment later.
#[async_trait]
impl Subscriber for Timelines {
    async fn on_event(&self, event: &Event, origin: Origin) {
        if let Event::UserFollowed { followee_id, .. } | Event::UserUnfollowed { followee_id, .. } =
            event
        {
            self.followers.invalidate(*followee_id);
        }
        match (event, origin) {
            (Event::TweetCreated { tweet }, Origin::Local) => {
                self.tweets.posted(tweet.clone());
                let entry = entry_of(tweet);
                self.apply(self.feeds.push(&[FeedKey::Home(tweet.author_id)], entry))
                    .await;
                self.fan_out.wake();
            }
            (Event::TweetCreated { tweet }, Origin::Remote) => {
                self.tweets.posted(tweet.clone());
                self.fan_out.wake();
            }
            (
                Event::TweetDeleted {
                    tweet_id,
                    author_id,
                },
                origin,
            ) => {
                self.tweets.deleted(*tweet_id);
                if origin == Origin::Local {
                    let own = [FeedKey::Home(*author_id)];
                    self.apply(self.feeds.remove(&own, *tweet_id)).await;
                }
                self.fan_out.wake();
            }
            (
                Event::UserFollowed {
                    follower_id,
                    followee_id,
                },
                Origin::Local,
            ) => {
                let feed = FeedKey::Home(*follower_id);
                match self
                    .store
                    .tweets_by(*followee_id, None, self.capacity as u32)
                    .await
                {
                    Ok(recent) => {
                        let entries: Vec<Entry> = recent.items.iter().map(entry_of).collect();
                        let complete = recent.next.is_none();
                        self.apply(self.feeds.follow(feed, *followee_id, &entries, complete))
                            .await;
                    }
                    Err(_) => self.forget(feed).await,
                }
            }
            (
                Event::UserUnfollowed {
                    follower_id,
                    followee_id,
                },
                Origin::Local,
            ) => {
                let feed = FeedKey::Home(*follower_id);
                self.apply(self.feeds.unfollow(feed, *followee_id)).await;
            }
            _ => {}
        }
    }

    fn set_in_sync(&self, in_sync: bool) {
        self.tweets.keep(in_sync);
        self.followers.keep(in_sync);
    }
}
