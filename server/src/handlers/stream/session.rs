//! One stream socket, from its upgrade to its close.
//!
//! Each socket is two tasks. The reader routes every client message by its `action`
//! through the generated `stream::route` (which validates it against its schema) and
//! answers through the hub's queue, so that answers and pushes keep one order; a refused
//! message gets an `error` carrying the same problem a REST 400 would, and the socket
//! stays open. The writer sends what the hub queues and pings every [`HEARTBEAT`]; it
//! closes the socket when the hub says so (lagged, unauthorised, shutdown), when two
//! pings in a row go unanswered, or when a send cannot complete within [`SEND_TIMEOUT`]
//! (a client that stopped reading must not hold a task forever). Clients may send
//! [`MESSAGES_PER_SECOND`] messages a second, in bursts of up to [`MESSAGE_BURST`]
//! (governor's GCRA); past that they get an `error` (429), and a client that keeps
//! going is closed.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use governor::{Quota, RateLimiter};
use poem::http::StatusCode;
use poem::web::websocket::{CloseCode, Message, WebSocketStream};
use uuid::Uuid;

use crate::generated::stream::{
    self, CorrelationId, ErrorMessage, ErrorMessageType, PongMessage, PongMessageType,
    SubscribedMessage, SubscribedMessageType, UnsubscribedMessage, UnsubscribedMessageType,
};
use crate::generated::types::{Problem, ProblemCode};
use crate::http::error::{problem, rejection_problem};
use crate::services::realtime::tickets::Holder;
use crate::services::realtime::{CLOSE_POLICY, Close, Connection, Hub, SubscribeError, Topic};

/// How often the server pings a socket; two unanswered pings close it.
pub const HEARTBEAT: Duration = Duration::from_secs(30);
/// The longest one frame may take to send.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Client messages a second, on average, per socket.
pub const MESSAGES_PER_SECOND: NonZeroU32 = NonZeroU32::new(10).expect("not zero");
/// Client messages a socket may send at once.
pub const MESSAGE_BURST: NonZeroU32 = NonZeroU32::new(20).expect("not zero");
/// Refused messages in a row before the socket is closed.
const REFUSALS_BEFORE_CLOSE: u32 = 20;
/// The longest client message read (a valid one is under 200 bytes).
pub(super) const MAX_MESSAGE_BYTES: usize = 4096;

/// One socket, from upgrade to close.
pub(super) async fn session(
    socket: WebSocketStream,
    hub: Arc<Hub>,
    holder: Holder,
    request_id: String,
) {
    let Connection { id, queue, closed } = hub.connect(holder);
    let (sink, mut incoming) = socket.split();
    let answered = Arc::new(AtomicBool::new(true));
    let mut writer = tokio::spawn(write(sink, queue, closed, Arc::clone(&answered)));
    let limit = Quota::per_second(MESSAGES_PER_SECOND).allow_burst(MESSAGE_BURST);
    let limiter = RateLimiter::direct(limit);
    let mut refusals = 0;
    loop {
        let frame = tokio::select! {
            frame = incoming.next() => frame,
            // The writer closed the socket (its close frame is out) or lost it: nothing
            // more is read, and the hub forgets the socket at once.
            _ = &mut writer => break,
        };
        let Some(Ok(frame)) = frame else { break };
        let text = match frame {
            Message::Text(text) => text,
            Message::Pong(_) => {
                answered.store(true, Ordering::Relaxed);
                continue;
            }
            Message::Close(_) => break,
            // Refused below like any text that is not a JSON object.
            Message::Binary(_) => String::new(),
            Message::Ping(_) => continue,
        };
        let answer = if limiter.check().is_ok() {
            answer(&hub, id, holder.user_id, &text, &request_id).await
        } else {
            Err(error_message(
                None,
                problem(
                    StatusCode::TOO_MANY_REQUESTS,
                    ProblemCode::Throttled,
                    format!("At most {MESSAGES_PER_SECOND} messages a second; slow down."),
                    &request_id,
                ),
            ))
        };
        let text = match answer {
            Ok(text) => {
                refusals = 0;
                text
            }
            Err(text) => {
                refusals += 1;
                Some(text)
            }
        };
        if let Some(text) = text {
            hub.send(id, &text);
        }
        if refusals >= REFUSALS_BEFORE_CLOSE {
            hub.close(id, CLOSE_POLICY, "too many refused messages");
        }
    }
    hub.disconnect(id);
    // The client went away or closed: the writer has nothing left to do.
    writer.abort();
}

/// The answer to one client message from `user`: `Ok` for a routed one (`None` when the
/// hub has queued it already, behind a replay), `Err` for an `error`.
async fn answer(
    hub: &Hub,
    id: u64,
    user: Uuid,
    text: &str,
    request_id: &str,
) -> Result<Option<String>, String> {
    let route = stream::route(text)
        .map_err(|rejected| error_message(None, rejection_problem(&rejected, request_id)))?;
    match route {
        stream::Route::Ping(ping) => Ok(Some(json(&PongMessage {
            type_: PongMessageType::Pong,
            id: ping.id,
        }))),
        stream::Route::Subscribe(subscribe) => {
            let topic = topic(&subscribe.topic, subscribe.id.as_ref(), request_id)?;
            let refused = |error: SubscribeError| {
                let (status, code) = match &error {
                    SubscribeError::NoSuchUser => (StatusCode::NOT_FOUND, ProblemCode::NotFound),
                    SubscribeError::TooManyTopics => {
                        (StatusCode::UNPROCESSABLE_ENTITY, ProblemCode::TooManyTopics)
                    }
                    SubscribeError::Store(_) => {
                        (StatusCode::SERVICE_UNAVAILABLE, ProblemCode::Unavailable)
                    }
                };
                error_message(
                    subscribe.id.clone(),
                    problem(status, code, error.to_string(), request_id),
                )
            };
            let replay = subscribe.since.is_some();
            hub.subscribe(id, topic, replay).await.map_err(refused)?;
            let Some(since) = subscribe.since else {
                return Ok(Some(json(&SubscribedMessage {
                    type_: SubscribedMessageType::Subscribed,
                    topic: subscribe.topic,
                    id: subscribe.id,
                    replayed: None,
                    truncated: None,
                })));
            };
            let (missed, truncated) = match hub.missed(user, topic, since).await {
                Ok(missed) => missed,
                Err(error) => {
                    hub.unsubscribe(id, topic);
                    return Err(refused(error.into()));
                }
            };
            let subscribed = json(&SubscribedMessage {
                type_: SubscribedMessageType::Subscribed,
                topic: subscribe.topic,
                id: subscribe.id,
                replayed: Some(i32::try_from(missed.len()).unwrap_or(i32::MAX)),
                truncated: Some(truncated),
            });
            // The replay, this answer and what came meanwhile, in that order.
            hub.finish_replay(id, topic, &missed, &subscribed);
            Ok(None)
        }
        stream::Route::Unsubscribe(unsubscribe) => {
            let topic = topic(&unsubscribe.topic, unsubscribe.id.as_ref(), request_id)?;
            hub.unsubscribe(id, topic);
            Ok(Some(json(&UnsubscribedMessage {
                type_: UnsubscribedMessageType::Unsubscribed,
                topic: unsubscribe.topic,
                id: unsubscribe.id,
            })))
        }
    }
}

fn topic(
    name: &stream::Topic,
    id: Option<&CorrelationId>,
    request_id: &str,
) -> Result<Topic, String> {
    // The schema's pattern admitted it; this only turns it into a value.
    Topic::parse(name).ok_or_else(|| {
        error_message(
            id.cloned(),
            problem(
                StatusCode::BAD_REQUEST,
                ProblemCode::InvalidRequest,
                "The topic is neither `home` nor `user:<id>`.".to_owned(),
                request_id,
            ),
        )
    })
}

fn error_message(id: Option<CorrelationId>, problem: Problem) -> String {
    json(&ErrorMessage {
        type_: ErrorMessageType::Error,
        id,
        problem,
    })
}

fn json(message: &impl serde::Serialize) -> String {
    // Messages of generated types always serialise.
    serde_json::to_string(message).unwrap_or_default()
}

/// Sends what the hub queues, pings, and closes.
async fn write(
    mut sink: futures::stream::SplitSink<WebSocketStream, Message>,
    mut queue: tokio::sync::mpsc::Receiver<Arc<str>>,
    mut closed: tokio::sync::oneshot::Receiver<Close>,
    answered: Arc<AtomicBool>,
) {
    let mut heartbeat =
        tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
    let close = loop {
        let frame = tokio::select! {
            biased;
            close = &mut closed => match close {
                Ok(close) => break close,
                // The hub forgot the socket: the session is ending.
                Err(_) => return,
            },
            message = queue.recv() => match message {
                Some(message) => Message::Text(message.to_string()),
                None => return,
            },
            _ = heartbeat.tick() => {
                if !answered.swap(false, Ordering::Relaxed) {
                    break Close {
                        code: CLOSE_POLICY,
                        reason: "missed heartbeats",
                        last_message: None,
                    };
                }
                Message::Ping(Vec::new())
            }
        };
        if !send(&mut sink, frame).await {
            return;
        }
    };
    if let Some(last) = close.last_message
        && !send(&mut sink, Message::Text(last)).await
    {
        return;
    }
    let frame = Message::Close(Some((CloseCode::from(close.code), close.reason.to_owned())));
    let _ = send(&mut sink, frame).await;
}

async fn send(
    sink: &mut futures::stream::SplitSink<WebSocketStream, Message>,
    frame: Message,
) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, sink.send(frame)).await,
        Ok(Ok(()))
    )
}
