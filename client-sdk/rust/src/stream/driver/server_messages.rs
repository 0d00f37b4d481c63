//! What each message from the server does to the stream: the events it yields, the
//! subscriptions it settles, and the refusals it retries or reports.

use super::{Driver, Ending, RESUBSCRIBE_DELAY};
use crate::stream::generated::ServerMessage;
use crate::stream::reconnect::Disconnect;
use crate::stream::{Event, Topic};
use crate::types::ProblemCode;
use tokio::time::Instant;

impl Driver {
    pub(super) fn server_message(&mut self, message: ServerMessage) -> Result<(), Ending> {
        match message {
            ServerMessage::TweetCreated(created) => {
                if self.subscriptions.contains(&created.topic) {
                    self.subscriptions.tweet(&created.topic, created.data.id.0);
                    self.events.push_back(Event::TweetCreated {
                        topic: created.topic,
                        tweet: created.data,
                    });
                }
            }
            ServerMessage::TweetDeleted(deleted) => {
                if self.subscriptions.contains(&deleted.topic) {
                    self.events.push_back(Event::TweetDeleted {
                        topic: deleted.topic,
                        deleted: deleted.data,
                    });
                }
            }
            ServerMessage::Subscribed(subscribed) => {
                let topic = subscribed.topic;
                self.awaiting.remove(&topic);
                if !self.subscriptions.contains(&topic) {
                    // Unsubscribed meanwhile; the `unsubscribed` answer follows.
                    return Ok(());
                }
                self.subscriptions.subscribed(&topic, subscribed.newest);
                if subscribed.truncated == Some(true) {
                    self.events.push_back(Event::Gap {
                        topic: topic.clone(),
                    });
                }
                self.events.push_back(Event::Subscribed {
                    topic,
                    replayed: subscribed
                        .replayed
                        .and_then(|count| u32::try_from(count).ok()),
                    newest: subscribed.newest,
                });
                self.settle();
            }
            ServerMessage::Unsubscribed(unsubscribed) => {
                self.events.push_back(Event::Unsubscribed {
                    topic: unsubscribed.topic,
                });
            }
            ServerMessage::Error(refusal) => {
                // A subscription's refusal carries its correlation id, the topic's name.
                let topic = refusal
                    .id
                    .map(|id| Topic::from(id.0))
                    .filter(|topic| self.awaiting.contains(topic));
                let problem = refusal.problem;
                let again = matches!(
                    problem.code,
                    ProblemCode::Throttled | ProblemCode::Unavailable
                );
                match topic {
                    Some(topic) if again => {
                        self.resubscribe.insert(topic);
                        self.resubscribe_at
                            .get_or_insert_with(|| Instant::now() + RESUBSCRIBE_DELAY);
                    }
                    // Refused before it was read (the rate limits answer without the
                    // message's id): which subscription was not made is unknown, and
                    // sending one twice would replay its tweets twice.
                    None if again && !self.awaiting.is_empty() => {
                        return Err(Disconnect::Throttled {
                            code: problem.code.to_string(),
                        }
                        .into());
                    }
                    Some(topic) => {
                        self.awaiting.remove(&topic);
                        self.subscriptions.remove(&topic);
                        self.events.push_back(Event::Refused {
                            topic: Some(topic),
                            problem,
                        });
                        self.settle();
                    }
                    None => self.events.push_back(Event::Refused {
                        topic: None,
                        problem,
                    }),
                }
            }
            ServerMessage::Lagged(lagged) => {
                // The close (4000) follows; the positions already say where to resume.
                tracing::info!(
                    last_tweet_id = ?lagged.last_tweet_id,
                    "minitter stream: the server says this client lagged"
                );
            }
            ServerMessage::Pong(_) | ServerMessage::Other => {}
        }
        Ok(())
    }
}
