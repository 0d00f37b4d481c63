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
//! going is closed. A message within that rate is then admitted by the key's usage plan
//! like a request ([`Hub::admit_message`]); one past the quota gets its `error` and the
//! socket closes with [`CLOSE_QUOTA`].

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
use crate::generated::types::{Problem, ProblemCode, Violation, ViolationIn};
use crate::http::error::{ApiError, problem, rejection_problem};
use crate::http::pagination::PageTokens;
use crate::services::gateway::limits::Verdict;
use crate::services::realtime::slots::Slot;
use crate::services::realtime::tickets::Holder;
use crate::services::realtime::{
    CLOSE_POLICY, CLOSE_QUOTA, Close, Connection, Hub, SubscribeError, Topic,
};

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

/// What a socket was opened with: its ticket's holder, its slot among its key's
/// sockets, and the upgrade's request id.
pub(super) struct Opened {
    pub(super) holder: Holder,
    pub(super) slot: Slot,
    pub(super) request_id: String,
}

/// One socket, from upgrade to close.
pub(super) async fn session(
    socket: WebSocketStream,
    hub: Arc<Hub>,
    page_tokens: PageTokens,
    opened: Opened,
) {
    let Opened {
        holder,
        slot,
        request_id,
    } = opened;
    let context = Context {
        hub: &hub,
        page_tokens: &page_tokens,
        user: holder.user_id,
        request_id: &request_id,
    };
    let Connection { id, queue, closed } = hub.connect(holder, slot, &request_id);
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
        let refusal = |status, code, detail: String| {
            Err(error_message(
                None,
                problem(status, code, detail, &request_id),
            ))
        };
        let answer = if limiter.check().is_err() {
            refusal(
                StatusCode::TOO_MANY_REQUESTS,
                ProblemCode::Throttled,
                format!("At most {MESSAGES_PER_SECOND} messages a second; slow down."),
            )
        } else {
            match hub.admit_message(&holder).await {
                Ok(Verdict::Admitted) => answer(&context, id, &text).await,
                Ok(Verdict::Throttled { retry_after }) => refusal(
                    StatusCode::TOO_MANY_REQUESTS,
                    ProblemCode::Throttled,
                    ApiError::Throttled { retry_after }.to_string(),
                ),
                Ok(Verdict::QuotaExceeded { retry_after }) => {
                    let spent = error_message(
                        None,
                        problem(
                            StatusCode::TOO_MANY_REQUESTS,
                            ProblemCode::QuotaExceeded,
                            ApiError::QuotaExceeded { retry_after }.to_string(),
                            &request_id,
                        ),
                    );
                    hub.close(id, CLOSE_QUOTA, "the key's quota is spent", Some(spent));
                    continue;
                }
                Err(error) => {
                    tracing::warn!(%error, "a stream message could not be metered");
                    refusal(
                        StatusCode::SERVICE_UNAVAILABLE,
                        ProblemCode::Unavailable,
                        "The usage limiter did not answer; send the message again.".to_owned(),
                    )
                }
            }
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
            hub.close(id, CLOSE_POLICY, "too many refused messages", None);
        }
    }
    hub.disconnect(id);
    // The client went away or closed: the writer has nothing left to do.
    writer.abort();
}

/// What answering a socket's messages needs.
struct Context<'a> {
    hub: &'a Hub,
    page_tokens: &'a PageTokens,
    user: Uuid,
    request_id: &'a str,
}

/// The answer to one client message of socket `id`: `Ok` for a routed one (`None` when
/// the hub has queued it already, behind a replay), `Err` for an `error`.
async fn answer(context: &Context<'_>, id: u64, text: &str) -> Result<Option<String>, String> {
    let Context {
        hub,
        user,
        request_id,
        ..
    } = *context;
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
            let since =
                match &subscribe.since {
                    Some(since) => Some(position(context, topic, since).ok_or_else(|| {
                        error_message(subscribe.id.clone(), bad_since(request_id))
                    })?),
                    None => None,
                };
            hub.subscribe(id, topic, since.is_some())
                .await
                .map_err(refused)?;
            let missed = match hub.missed(user, topic, since).await {
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
                replayed: since.map(|_| i32::try_from(missed.tweets.len()).unwrap_or(i32::MAX)),
                truncated: since.map(|_| missed.truncated),
                newest: missed.newest,
            });
            if since.is_none() {
                return Ok(Some(subscribed));
            }
            // The replay, this answer and what came meanwhile, in that order.
            hub.finish_replay(id, topic, &missed.tweets, &subscribed);
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

/// The tweet id a subscription's `since` stands for: a tweet id, or a page token of the
/// topic's REST list (`timeline:<user>` for `home`, `tweets:<author>` for `user:`),
/// whose cursor is the id of its page's last tweet. `None` for anything else.
fn position(context: &Context<'_>, topic: Topic, since: &str) -> Option<Uuid> {
    if let Ok(id) = since.parse() {
        return Some(id);
    }
    let list = match topic {
        Topic::Home => format!("timeline:{}", context.user),
        Topic::User(author) => format!("tweets:{author}"),
    };
    context.page_tokens.verify(&list, since)?.parse().ok()
}

/// The problem of a `since` that is neither a tweet id nor the topic's page token.
fn bad_since(request_id: &str) -> Problem {
    let mut problem = problem(
        StatusCode::BAD_REQUEST,
        ProblemCode::InvalidRequest,
        "The request has 1 invalid field.".to_owned(),
        request_id,
    );
    problem.errors = vec![Violation {
        in_: ViolationIn::Body,
        pointer: "/since".to_owned(),
        message: "neither a tweet id nor a page token of this topic's REST list".to_owned(),
    }];
    problem
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
