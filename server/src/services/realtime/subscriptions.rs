//! What a socket follows: subscribing (with the followees of a home, and a replay when
//! asked), unsubscribing, and keeping homes current as follows change. An `impl Hub` of its
//! own beside the hub's pushes and closes (`mod.rs`).

use std::collections::HashSet;
use std::sync::Arc;

use uuid::Uuid;

use super::messages::created_message;
use super::socket::{Home, push, topics};
use super::{Hub, MAX_TOPICS, REPLAY_LIMIT, SubscribeError, Topic, remove};
use crate::domain::records::TweetRecord;
use crate::infra::store::StoreError;

/// What a subscription missed, and where its topic stands.
#[derive(Debug)]
pub struct Missed {
    /// Oldest first, at most [`REPLAY_LIMIT`] (the most recent ones).
    pub tweets: Vec<TweetRecord>,
    /// More were missed than `tweets` holds.
    pub truncated: bool,
    /// The id of the topic's newest tweet, if it has any.
    pub newest: Option<Uuid>,
}

impl Hub {
    /// Makes socket `id` follow `topic`. Idempotent. With `replay`, what is pushed to the
    /// topic waits until [`Hub::finish_replay`] (or [`Hub::unsubscribe`]).
    pub async fn subscribe(
        &self,
        id: u64,
        topic: Topic,
        replay: bool,
    ) -> Result<(), SubscribeError> {
        match topic {
            Topic::User(author) => {
                if self.store.user_by_id(author).await?.is_none() {
                    return Err(SubscribeError::NoSuchUser);
                }
                let mut registry = self.lock();
                let Some(socket) = registry.sockets.get_mut(&id) else {
                    return Ok(());
                };
                if !socket.authors.contains(&author) && topics(socket) >= MAX_TOPICS {
                    return Err(SubscribeError::TooManyTopics);
                }
                if replay {
                    socket.replaying.insert(topic, Vec::new());
                }
                socket.authors.insert(author);
                registry.by_author.entry(author).or_default().insert(id);
                Ok(())
            }
            Topic::Home => {
                let user = {
                    let mut registry = self.lock();
                    let Some(socket) = registry.sockets.get_mut(&id) else {
                        return Ok(());
                    };
                    if replay {
                        socket.replaying.insert(topic, Vec::new());
                    }
                    if socket.home.is_some() {
                        return Ok(());
                    }
                    if topics(socket) >= MAX_TOPICS {
                        socket.replaying.remove(&topic);
                        return Err(SubscribeError::TooManyTopics);
                    }
                    socket.home = Some(Home {
                        shown: HashSet::new(),
                        pending: Some(Vec::new()),
                    });
                    socket.holder.user_id
                };
                let followees = match self.store.followee_ids(user).await {
                    Ok(followees) => followees,
                    Err(error) => {
                        if let Some(socket) = self.lock().sockets.get_mut(&id) {
                            socket.home = None;
                            socket.replaying.remove(&topic);
                        }
                        return Err(error.into());
                    }
                };
                let mut registry = self.lock();
                let Some(socket) = registry.sockets.get_mut(&id) else {
                    return Ok(());
                };
                let Some(home) = socket.home.as_mut() else {
                    return Ok(());
                };
                home.shown = followees.into_iter().chain([user]).collect();
                for (followee, follows) in home.pending.take().unwrap_or_default() {
                    if follows {
                        home.shown.insert(followee);
                    } else if followee != user {
                        home.shown.remove(&followee);
                    }
                }
                let shown: Vec<Uuid> = home.shown.iter().copied().collect();
                for author in shown {
                    registry
                        .homes_by_author
                        .entry(author)
                        .or_default()
                        .insert(id);
                }
                Ok(())
            }
        }
    }

    /// Makes socket `id` stop following `topic` (a replay under way included).
    /// Idempotent.
    pub fn unsubscribe(&self, id: u64, topic: Topic) {
        let mut registry = self.lock();
        let Some(socket) = registry.sockets.get_mut(&id) else {
            return;
        };
        socket.replaying.remove(&topic);
        socket.replayed.remove(&topic);
        match topic {
            Topic::User(author) => {
                if socket.authors.remove(&author) {
                    remove(&mut registry.by_author, author, id);
                }
            }
            Topic::Home => {
                if let Some(home) = socket.home.take() {
                    for author in home.shown {
                        remove(&mut registry.homes_by_author, author, id);
                    }
                }
            }
        }
    }

    /// The tweets of `topic`, as `user` sees them, posted after the tweet `since` (none
    /// without it), and the topic's newest tweet. Read by the REST timelines' database
    /// queries, not from the home feeds: the fan-out fills a follower's feed a moment
    /// after the commit (and after the tweet's event), and a replay read from a feed not
    /// yet filled would leave a gap.
    pub async fn missed(
        &self,
        user: Uuid,
        topic: Topic,
        since: Option<Uuid>,
    ) -> Result<Missed, StoreError> {
        let wanted = if since.is_some() { REPLAY_LIMIT + 1 } else { 1 };
        let limit = u32::try_from(wanted).unwrap_or(u32::MAX);
        let page = match topic {
            Topic::Home => self.store.timeline(user, None, limit).await?,
            Topic::User(author) => self.store.tweets_by(author, None, limit).await?,
        };
        let newest = page.items.first().map(|tweet| tweet.id);
        let mut tweets: Vec<TweetRecord> = match since {
            Some(since) => page
                .items
                .into_iter()
                .take_while(|tweet| tweet.id > since)
                .collect(),
            None => Vec::new(),
        };
        let truncated = tweets.len() > REPLAY_LIMIT;
        tweets.truncate(REPLAY_LIMIT);
        tweets.reverse();
        Ok(Missed {
            tweets,
            truncated,
            newest,
        })
    }

    /// Ends the replay of socket `id`'s `topic`: queues the `replayed` tweets (oldest
    /// first), then `answer` (the `subscribed` message), then what was pushed to the topic
    /// meanwhile, without the tweets the replay sent. From then on the topic is live.
    pub fn finish_replay(&self, id: u64, topic: Topic, replayed: &[TweetRecord], answer: &str) {
        let mut registry = self.lock();
        let Some(socket) = registry.sockets.get_mut(&id) else {
            return;
        };
        let Some(waiting) = socket.replaying.remove(&topic) else {
            return;
        };
        let sent: HashSet<Uuid> = replayed.iter().map(|tweet| tweet.id).collect();
        for tweet in replayed {
            push(socket, &created_message(tweet, topic), Some(tweet.id));
        }
        push(socket, &Arc::from(answer), None);
        for (tweet_id, created, text) in waiting {
            if !(created && sent.contains(&tweet_id)) {
                push(socket, &text, created.then_some(tweet_id));
            }
        }
        socket.replayed.insert(topic, sent);
    }

    pub(super) fn follow_changed(&self, follower: Uuid, followee: Uuid, follows: bool) {
        let mut registry = self.lock();
        let registry = &mut *registry;
        let Some(ids) = registry.by_user.get(&follower) else {
            return;
        };
        for id in ids {
            let Some(home) = registry.sockets.get_mut(id).and_then(|s| s.home.as_mut()) else {
                continue;
            };
            if let Some(pending) = home.pending.as_mut() {
                pending.push((followee, follows));
            } else if follows {
                if home.shown.insert(followee) {
                    registry
                        .homes_by_author
                        .entry(followee)
                        .or_default()
                        .insert(*id);
                }
            } else if followee != follower && home.shown.remove(&followee) {
                remove(&mut registry.homes_by_author, followee, *id);
            }
        }
    }
}
