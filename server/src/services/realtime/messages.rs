//! The messages the hub sends, built from the types generated from `asyncapi.yaml`, each
//! serialised once and shared by every socket it goes to.

use std::sync::Arc;

use uuid::Uuid;

use super::Topic;
use crate::domain::records::TweetRecord;
use crate::generated::stream::{
    ErrorMessage, ErrorMessageType, LaggedMessage, LaggedMessageType, Topic as TopicName,
    TweetCreatedMessage, TweetCreatedMessageType, TweetDeletedMessage, TweetDeletedMessageType,
};
use crate::generated::types::{self, ProblemCode};
use crate::http::error::problem;

pub(super) fn created_message(tweet: &TweetRecord, topic: Topic) -> Arc<str> {
    json(&TweetCreatedMessage {
        type_: TweetCreatedMessageType::TweetCreated,
        topic: TopicName(topic.name()),
        data: types::Tweet {
            id: types::Id(tweet.id),
            author_id: types::Id(tweet.author_id),
            text: types::TweetText(tweet.text.clone()),
            created_at: tweet.created_at,
        },
    })
}

pub(super) fn deleted_message(tweet_id: Uuid, author_id: Uuid, topic: Topic) -> Arc<str> {
    json(&TweetDeletedMessage {
        type_: TweetDeletedMessageType::TweetDeleted,
        topic: TopicName(topic.name()),
        data: types::TweetDeletedData {
            tweet_id: types::Id(tweet_id),
            author_id: types::Id(author_id),
        },
    })
}

pub(super) fn lagged_message(last_tweet_id: Option<Uuid>) -> String {
    json(&LaggedMessage {
        type_: LaggedMessageType::Lagged,
        last_tweet_id,
    })
    .to_string()
}

/// The `error` that ends a socket whose key's quota is spent (it resets in `resets_in`
/// seconds); `request_id` is the upgrade's.
pub(super) fn quota_spent_message(resets_in: u64, request_id: &str) -> String {
    json(&ErrorMessage {
        type_: ErrorMessageType::Error,
        id: None,
        problem: problem(
            poem::http::StatusCode::TOO_MANY_REQUESTS,
            ProblemCode::QuotaExceeded,
            format!("This API key's quota is spent; it resets in {resets_in} s."),
            request_id,
        ),
    })
    .to_string()
}

fn json(message: &impl serde::Serialize) -> Arc<str> {
    // A message of generated types always serialises.
    Arc::from(serde_json::to_string(message).unwrap_or_default())
}
