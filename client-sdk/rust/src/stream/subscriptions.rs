//! The topics a stream follows and, for each, where it is: what to send as `since` when a
//! socket subscribes to it again, so that a reconnect neither misses nor repeats a tweet.
//!
//! The rule is `asyncapi.yaml`'s "Resuming": the id of the last `tweet.created` received
//! on the topic; when none came, the `newest` of the topic's last `subscribed` answer;
//! when that was absent (the topic had no tweets), the nil UUID. Before the topic's first
//! `subscribed` (and with no tweet received) it is the `since` the application gave, if
//! any: the stream knows no better position yet, and replaying from the nil UUID would
//! send an application that asked for live tweets only the topic's last hundred.
//!
//! Positions survive reconnects but not an unsubscription: a topic subscribed to again
//! later starts afresh, from the `since` given then.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::Topic;

/// Where a stream is on one topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Position {
    /// The application's `since` (a tweet id or a page token of the topic's REST list).
    initial: Option<String>,
    /// The id of the last `tweet.created` received on the topic.
    last_tweet: Option<Uuid>,
    /// Whether a `subscribed` answer came for the topic, and its `newest`.
    subscribed: Option<Option<Uuid>>,
}

impl Position {
    fn since(&self) -> Option<String> {
        if let Some(id) = self.last_tweet {
            return Some(id.to_string());
        }
        match self.subscribed {
            Some(newest) => Some(newest.unwrap_or(Uuid::nil()).to_string()),
            None => self.initial.clone(),
        }
    }
}

/// The topics of a stream, each with its position.
#[derive(Debug, Clone, Default)]
pub(crate) struct Subscriptions {
    topics: BTreeMap<Topic, Position>,
}

impl Subscriptions {
    /// Follows `topic` from `since` (the application's), unless it is followed already;
    /// whether it was added.
    pub(crate) fn insert(&mut self, topic: Topic, since: Option<String>) -> bool {
        if self.topics.contains_key(&topic) {
            return false;
        }
        let position = Position {
            initial: since,
            ..Position::default()
        };
        self.topics.insert(topic, position);
        true
    }

    /// Stops following `topic`; whether it was followed.
    pub(crate) fn remove(&mut self, topic: &Topic) -> bool {
        self.topics.remove(topic).is_some()
    }

    pub(crate) fn contains(&self, topic: &Topic) -> bool {
        self.topics.contains_key(topic)
    }

    /// The topics, in order.
    pub(crate) fn topics(&self) -> impl Iterator<Item = &Topic> {
        self.topics.keys()
    }

    /// A `tweet.created` with this id came on `topic`.
    pub(crate) fn tweet(&mut self, topic: &Topic, id: Uuid) {
        if let Some(position) = self.topics.get_mut(topic) {
            position.last_tweet = Some(id);
        }
    }

    /// A `subscribed` answer came for `topic`, with this `newest`.
    pub(crate) fn subscribed(&mut self, topic: &Topic, newest: Option<Uuid>) {
        if let Some(position) = self.topics.get_mut(topic) {
            position.subscribed = Some(newest);
        }
    }

    /// The `since` to subscribe to `topic` with now (`None`: live tweets only).
    pub(crate) fn since(&self, topic: &Topic) -> Option<String> {
        self.topics.get(topic).and_then(Position::since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn before_any_answer_the_applications_since_is_sent() {
        let mut subscriptions = Subscriptions::default();
        subscriptions.insert(Topic::home(), Some("page-token".to_owned()));
        subscriptions.insert(Topic::user(id(7)), None);
        assert_eq!(
            subscriptions.since(&Topic::home()).as_deref(),
            Some("page-token")
        );
        assert_eq!(subscriptions.since(&Topic::user(id(7))), None);
    }

    #[test]
    fn the_last_tweet_received_wins_over_everything() {
        let mut subscriptions = Subscriptions::default();
        let home = Topic::home();
        subscriptions.insert(home.clone(), Some("page-token".to_owned()));
        subscriptions.tweet(&home, id(1));
        subscriptions.tweet(&home, id(2));
        subscriptions.subscribed(&home, Some(id(1)));
        assert_eq!(subscriptions.since(&home), Some(id(2).to_string()));
    }

    #[test]
    fn without_a_tweet_the_newest_of_the_last_subscribed_answer_is_sent() {
        let mut subscriptions = Subscriptions::default();
        let home = Topic::home();
        subscriptions.insert(home.clone(), None);
        subscriptions.subscribed(&home, Some(id(5)));
        assert_eq!(subscriptions.since(&home), Some(id(5).to_string()));
        subscriptions.subscribed(&home, Some(id(6)));
        assert_eq!(subscriptions.since(&home), Some(id(6).to_string()));
    }

    #[test]
    fn a_topic_without_tweets_resumes_from_the_nil_uuid() {
        let mut subscriptions = Subscriptions::default();
        let topic = Topic::user(id(9));
        subscriptions.insert(topic.clone(), None);
        subscriptions.subscribed(&topic, None);
        assert_eq!(
            subscriptions.since(&topic).as_deref(),
            Some("00000000-0000-0000-0000-000000000000")
        );
    }

    #[test]
    fn a_topic_is_followed_once_and_forgotten_when_removed() {
        let mut subscriptions = Subscriptions::default();
        let home = Topic::home();
        assert!(subscriptions.insert(home.clone(), None));
        subscriptions.tweet(&home, id(3));
        assert!(!subscriptions.insert(home.clone(), Some("other".to_owned())));
        assert_eq!(subscriptions.since(&home), Some(id(3).to_string()));
        assert!(subscriptions.remove(&home));
        assert!(!subscriptions.remove(&home));
        // Tweets of a topic no longer followed move nothing.
        subscriptions.tweet(&home, id(4));
        assert_eq!(subscriptions.topics().count(), 0);
        assert!(subscriptions.insert(home.clone(), None));
        assert_eq!(subscriptions.since(&home), None);
    }
}
