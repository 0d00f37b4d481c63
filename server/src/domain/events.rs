//! Domain events: what changed, once it has committed. The store writes them to the outbox
//! in the change's own transaction, and the event bus ([`crate::services::events`]) hands
//! them to this instance's caches and, through Redis, to the others'. A type every layer
//! speaks, so it lives here, depending on nothing but the records it carries.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::records::{DeletedUser, TweetRecord};

/// What a write did, with the events it added to the outbox in the same transaction.
///
/// The store builds each event once, where it makes the change; the caller publishes
/// exactly these after the commit ([`crate::services::events::Events::publish_all`]),
/// so the outbox and the bus can never tell two versions of one change.
#[derive(Debug)]
#[must_use = "a committed write's events must be published"]
pub struct Written<T> {
    pub outcome: T,
    pub events: Vec<Event>,
}

impl<T> Written<T> {
    /// A write that changed nothing (and so has no event).
    pub fn unchanged(outcome: T) -> Self {
        Self {
            outcome,
            events: Vec::new(),
        }
    }

    /// A write and its one event.
    pub fn with(outcome: T, event: Event) -> Self {
        Self {
            outcome,
            events: vec![event],
        }
    }
}

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
    /// An operator deleted a user: the user no longer exists, and their tokens are
    /// refused. It comes last among the events of the deletion
    /// ([`Event::of_deleted_user`]), which first announce what went with the user.
    #[serde(rename = "user.deleted")]
    UserDeleted { user_id: Uuid },
    /// An operator changed API keys or usage plans.
    #[serde(rename = "key.changed")]
    KeyChanged,
}

impl Event {
    /// The users and tweets whose stored state the event changed: a user's counts and
    /// tweets on a post or delete, both users' counts on a follow or unfollow, the tweet
    /// itself on a delete, the profile on a picture change or a deletion (whose tweets and
    /// edges have events of their own). Key changes touch neither.
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
            Event::UserUpdated { user_id } | Event::UserDeleted { user_id } => vec![*user_id],
            Event::KeyChanged => Vec::new(),
        }
    }

    /// The events of a user's deletion, in the order they are written to the outbox and
    /// published: an unfollow for each follow edge that went (the user's followers first,
    /// whose home feeds lose the user's tweets, then the users they followed), a
    /// `tweet.deleted` for each of their tweets, and last `user.deleted`.
    ///
    /// A deletion is announced as the changes it is made of, rather than as one event each
    /// subscriber would have to expand, so that everything that already follows unfollows
    /// and deletes (the home feeds, the tweet and user caches, the response cache, an
    /// outbox consumer mirroring tweets) stays right without knowing of user deletion. The
    /// price is one event per tweet and per edge, which an operator's rare deletion affords.
    pub fn of_deleted_user(deleted: &DeletedUser) -> Vec<Event> {
        let user = deleted.id;
        let lost_followers =
            deleted
                .follower_ids
                .iter()
                .map(|&follower_id| Event::UserUnfollowed {
                    follower_id,
                    followee_id: user,
                });
        let dropped_follows =
            deleted
                .followee_ids
                .iter()
                .map(|&followee_id| Event::UserUnfollowed {
                    follower_id: user,
                    followee_id,
                });
        let tweets = deleted
            .tweet_ids
            .iter()
            .map(|&tweet_id| Event::TweetDeleted {
                tweet_id,
                author_id: user,
            });
        lost_followers
            .chain(dropped_follows)
            .chain(tweets)
            .chain(std::iter::once(Event::UserDeleted { user_id: user }))
            .collect()
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
        assert_eq!(Event::UserDeleted { user_id: a }.changed(), vec![a]);
        assert!(Event::KeyChanged.changed().is_empty());
    }

    #[test]
    fn a_deletion_is_announced_as_what_went_with_the_user_then_the_user() {
        let [user, fan, idol, tweet] = [(); 4].map(|()| Uuid::now_v7());
        let deleted = DeletedUser {
            id: user,
            tweet_ids: vec![tweet],
            follower_ids: vec![fan],
            followee_ids: vec![idol],
            picture_key: None,
        };
        assert_eq!(
            Event::of_deleted_user(&deleted),
            vec![
                Event::UserUnfollowed {
                    follower_id: fan,
                    followee_id: user
                },
                Event::UserUnfollowed {
                    follower_id: user,
                    followee_id: idol
                },
                Event::TweetDeleted {
                    tweet_id: tweet,
                    author_id: user
                },
                Event::UserDeleted { user_id: user },
            ]
        );
        let json = serde_json::to_value(Event::UserDeleted { user_id: user }).expect("json");
        assert_eq!(json["type"], "user.deleted");
    }
}
