//! The state machine behind [`super::Stream`]: get a ticket, open the socket, subscribe,
//! turn server messages into [`Event`]s, and when the socket ends apply the reconnect
//! policy ([`super::reconnect`]). Opening a socket (the ticket, TLS, the upgrade) is in
//! [`connect`].
//!
//! Everything happens while the application polls the stream: there is no background
//! task, so a dropped stream closes its socket at once, and an application that stops
//! reading stops reading the socket too (the server then closes it as lagged, `4000`, and
//! the stream resumes where it was when it is read again). Reading the socket is also
//! what answers the server's pings (tungstenite replies as it reads).

mod connect;

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
#[cfg(feature = "rustls")]
use tokio_tungstenite::Connector;
use tokio_tungstenite::tungstenite::{self, Message};

use super::generated::{
    ClientMessage, CorrelationId, ServerMessage, SubscribeMessage, UnsubscribeMessage,
};
use super::reconnect::{self, Backoff, CLOSE_UNAUTHORIZED, Disconnect, Plan};
use super::subscriptions::Subscriptions;
use super::{Event, StreamError, Topic};
use crate::Client;
use crate::types::ProblemCode;
use connect::Socket;

/// How long a socket may stay silent before it counts as lost. The server pings every
/// 30 s (`asyncapi.yaml`, close code 4008), so three missed pings mean the connection is
/// gone even though no reset ever arrived (a sleeping laptop, a dropped NAT mapping).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How long to wait before sending a subscription again that the server refused as
/// `unavailable` (the documented "send it again").
const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(1);
/// The stream's own pace for its messages: under the server's per-socket limit
/// (`asyncapi.yaml`: 10 a second, in bursts of 20) with a margin for the network's
/// jitter, so that a stream of many topics is not throttled by its own subscriptions.
const PACE_BURST: f64 = 16.0;
const PACE_PER_SECOND: f64 = 8.0;
/// How long to wait, after the server's close frame, for the socket to finish closing.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// A change of the stream's topics, from [`super::Stream::subscribe`] and
/// [`super::Stream::unsubscribe`].
#[derive(Debug)]
pub(crate) enum Command {
    Subscribe { topic: Topic, since: Option<String> },
    Unsubscribe { topic: Topic },
}

/// Why a connection ended: for good, or for the policy to decide.
enum Ending {
    Fatal(StreamError),
    Disconnect(Disconnect),
}

impl From<Disconnect> for Ending {
    fn from(disconnect: Disconnect) -> Self {
        Self::Disconnect(disconnect)
    }
}

/// What woke a connected stream.
enum Wake {
    Frame(Option<Result<Message, tungstenite::Error>>),
    Silent,
    Command(Command),
    Resubscribe,
    Send,
}

/// A token bucket of [`PACE_BURST`] tokens refilled at [`PACE_PER_SECOND`]: one per
/// client message.
#[derive(Debug, Clone, Copy)]
struct Pace {
    tokens: f64,
    at: Instant,
}

impl Pace {
    fn new(now: Instant) -> Self {
        Self {
            tokens: PACE_BURST,
            at: now,
        }
    }

    /// Takes a token at `now`, or says when the next one comes.
    fn take(&mut self, now: Instant) -> Result<(), Instant> {
        let refilled = now.saturating_duration_since(self.at).as_secs_f64() * PACE_PER_SECOND;
        self.tokens = (self.tokens + refilled).min(PACE_BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(now + Duration::from_secs_f64((1.0 - self.tokens) / PACE_PER_SECOND))
        }
    }
}

/// One stream's state across its sockets.
pub(crate) struct Driver {
    /// The client whose credentials get the tickets, with its retries off: the stream's
    /// own policy decides when to ask again.
    client: Client,
    backoff: Backoff,
    subscriptions: Subscriptions,
    commands: mpsc::UnboundedReceiver<Command>,
    socket: Option<Socket>,
    /// Failed connections since the last good one (the backoff's exponent).
    attempt: u32,
    /// The wait before the next connection.
    wait: Option<Duration>,
    /// Events decided but not yet returned.
    events: VecDeque<Event>,
    finished: bool,
    /// `wss://`'s TLS configuration, made on first use.
    #[cfg(feature = "rustls")]
    connector: Option<Connector>,
    /// The topics subscribed on this socket and not yet answered.
    awaiting: BTreeSet<Topic>,
    /// The topics to subscribe to again at `resubscribe_at`.
    resubscribe: BTreeSet<Topic>,
    resubscribe_at: Option<Instant>,
    /// Messages waiting for the pace, and when the next may go.
    outbox: VecDeque<ClientMessage>,
    pace: Pace,
    send_at: Option<Instant>,
}

impl Driver {
    pub(crate) fn new(
        client: Client,
        backoff: Backoff,
        subscriptions: Subscriptions,
        commands: mpsc::UnboundedReceiver<Command>,
    ) -> Self {
        Self {
            client: client.with_retry_policy(crate::RetryPolicy::disabled()),
            backoff,
            subscriptions,
            commands,
            socket: None,
            attempt: 0,
            wait: None,
            events: VecDeque::new(),
            finished: false,
            #[cfg(feature = "rustls")]
            connector: None,
            awaiting: BTreeSet::new(),
            resubscribe: BTreeSet::new(),
            resubscribe_at: None,
            outbox: VecDeque::new(),
            pace: Pace::new(Instant::now()),
            send_at: None,
        }
    }

    /// The next event; `Some(Err(_))` once, then `None`, when the stream ends.
    pub(crate) async fn next(&mut self) -> Option<Result<Event, StreamError>> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Some(Ok(event));
            }
            if self.finished {
                return None;
            }
            let step = if self.socket.is_some() {
                self.read().await
            } else {
                self.open().await
            };
            match step {
                Ok(()) => {}
                Err(Ending::Fatal(error)) => return Some(Err(self.finish(error))),
                Err(Ending::Disconnect(disconnect)) => {
                    if let Some(mut socket) = self.socket.take() {
                        // A close frame where the socket still works (after a refusal);
                        // on a broken or closed one this fails at once.
                        let _ = tokio::time::timeout(CLOSE_GRACE, socket.close(None)).await;
                    }
                    if let Some(error) = self.schedule(disconnect) {
                        return Some(Err(self.finish(error)));
                    }
                }
            }
        }
    }

    fn finish(&mut self, error: StreamError) -> StreamError {
        self.finished = true;
        self.socket = None;
        error
    }

    /// Applies the policy to `disconnect`: the error that ends the stream, or `None`
    /// with the next connection scheduled and announced.
    fn schedule(&mut self, disconnect: Disconnect) -> Option<StreamError> {
        let plan = reconnect::plan(&disconnect);
        let Some(delay) = reconnect::delay(plan, self.attempt, &self.backoff, rand::random())
        else {
            return Some(match disconnect {
                Disconnect::Closed { code, reason } if code == CLOSE_UNAUTHORIZED => {
                    StreamError::Unauthorized { reason }
                }
                other => StreamError::Refused(other),
            });
        };
        debug_assert!(plan != Plan::Stop);
        tracing::info!(
            attempt = self.attempt,
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            cause = ?disconnect,
            "minitter stream reconnecting"
        );
        self.events.push_back(Event::Reconnecting {
            attempt: self.attempt,
            delay,
            cause: disconnect,
        });
        self.attempt = self.attempt.saturating_add(1);
        self.wait = Some(delay);
        None
    }

    /// Applies the commands sent while no socket was open.
    fn apply_pending_commands(&mut self) {
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::Subscribe { topic, since } => {
                    self.subscriptions.insert(topic, since);
                }
                Command::Unsubscribe { topic } => {
                    self.subscriptions.remove(&topic);
                }
            }
        }
    }

    /// Waits as scheduled, gets a ticket, opens the socket and subscribes to every topic.
    async fn open(&mut self) -> Result<(), Ending> {
        if let Some(wait) = self.wait.take() {
            tokio::time::sleep(wait).await;
        }
        self.apply_pending_commands();
        let socket = self.connect().await?;
        self.socket = Some(socket);
        self.events.push_back(Event::Connected);
        self.awaiting.clear();
        self.resubscribe.clear();
        self.resubscribe_at = None;
        self.outbox.clear();
        self.pace = Pace::new(Instant::now());
        self.send_at = None;
        let topics: Vec<Topic> = self.subscriptions.topics().cloned().collect();
        for topic in topics {
            self.subscribe(topic);
        }
        self.settle();
        self.flush().await
    }

    /// Waits for the socket, a command or a resubscription, and handles it.
    async fn read(&mut self) -> Result<(), Ending> {
        let Some(socket) = self.socket.as_mut() else {
            return Ok(());
        };
        let resubscribe_at = self.resubscribe_at;
        let send_at = self.send_at.filter(|_| !self.outbox.is_empty());
        let wake = tokio::select! {
            frame = tokio::time::timeout(IDLE_TIMEOUT, socket.next()) => match frame {
                Ok(frame) => Wake::Frame(frame),
                Err(_) => Wake::Silent,
            },
            Some(command) = self.commands.recv() => Wake::Command(command),
            () = sleep_until(resubscribe_at), if resubscribe_at.is_some() => Wake::Resubscribe,
            () = sleep_until(send_at), if send_at.is_some() => Wake::Send,
        };
        self.wake(wake).await?;
        self.flush().await
    }

    async fn wake(&mut self, wake: Wake) -> Result<(), Ending> {
        match wake {
            Wake::Frame(Some(Ok(message))) => self.message(message).await,
            Wake::Frame(Some(Err(error))) => Err(Disconnect::Lost {
                error: error.to_string(),
            }
            .into()),
            Wake::Frame(None) => Err(Disconnect::Lost {
                error: "the connection ended without a close frame".to_owned(),
            }
            .into()),
            Wake::Silent => Err(Disconnect::Lost {
                error: format!("nothing received for {IDLE_TIMEOUT:?}, not even a ping"),
            }
            .into()),
            Wake::Command(command) => {
                self.command(command);
                Ok(())
            }
            Wake::Resubscribe => {
                self.resubscribe_at = None;
                for topic in std::mem::take(&mut self.resubscribe) {
                    if self.subscriptions.contains(&topic) {
                        self.subscribe(topic);
                    }
                }
                Ok(())
            }
            Wake::Send => Ok(()),
        }
    }

    async fn message(&mut self, message: Message) -> Result<(), Ending> {
        match message {
            Message::Text(text) => match serde_json::from_str::<ServerMessage>(text.as_str()) {
                Ok(message) => self.server_message(message),
                // A server that breaks its own contract: the message is skipped, the
                // socket kept (closing would only replay the same message).
                Err(error) => {
                    tracing::warn!(%error, "minitter stream: a message could not be decoded");
                    Ok(())
                }
            },
            Message::Close(frame) => {
                // tungstenite answers the close as the socket is read to its end.
                if let Some(socket) = self.socket.as_mut() {
                    let drain = async { while let Some(Ok(_)) = socket.next().await {} };
                    let _ = tokio::time::timeout(CLOSE_GRACE, drain).await;
                }
                let (code, reason) = match frame {
                    Some(frame) => (u16::from(frame.code), frame.reason.as_str().to_owned()),
                    // 1005: no status code was present.
                    None => (1005, String::new()),
                };
                Err(Disconnect::Closed { code, reason }.into())
            }
            // Pings are answered by tungstenite; nothing else is sent by the server.
            Message::Binary(_) | Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Ok(()),
        }
    }

    fn server_message(&mut self, message: ServerMessage) -> Result<(), Ending> {
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

    /// Once every subscription of this socket is answered, the connection counts as good
    /// and the backoff starts over.
    fn settle(&mut self) {
        if self.awaiting.is_empty() && self.resubscribe.is_empty() {
            self.attempt = 0;
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Subscribe { topic, since } => {
                if self.subscriptions.insert(topic.clone(), since) {
                    self.subscribe(topic);
                }
            }
            Command::Unsubscribe { topic } => {
                if self.subscriptions.remove(&topic) {
                    self.awaiting.remove(&topic);
                    self.resubscribe.remove(&topic);
                    self.outbox.retain(|message| {
                        !matches!(message, ClientMessage::Subscribe(queued) if queued.topic == topic)
                    });
                    self.outbox
                        .push_back(ClientMessage::Unsubscribe(UnsubscribeMessage {
                            id: Some(CorrelationId(topic.0.clone())),
                            topic,
                        }));
                    self.settle();
                }
            }
        }
    }

    /// Queues a subscription to `topic` from its position, its name as the correlation
    /// id.
    fn subscribe(&mut self, topic: Topic) {
        self.outbox
            .push_back(ClientMessage::Subscribe(SubscribeMessage {
                id: Some(CorrelationId(topic.0.clone())),
                since: self.subscriptions.since(&topic),
                topic: topic.clone(),
            }));
        self.awaiting.insert(topic);
    }

    /// Sends the queued messages the pace allows now; the rest wait for `send_at`.
    async fn flush(&mut self) -> Result<(), Ending> {
        self.send_at = None;
        while !self.outbox.is_empty() {
            if let Err(at) = self.pace.take(Instant::now()) {
                self.send_at = Some(at);
                break;
            }
            if let Some(message) = self.outbox.pop_front() {
                self.send(&message).await?;
            }
        }
        Ok(())
    }

    async fn send(&mut self, message: &ClientMessage) -> Result<(), Ending> {
        let Some(socket) = self.socket.as_mut() else {
            return Ok(());
        };
        let text = serde_json::to_string(message).map_err(|error| Disconnect::Lost {
            error: format!("a message could not be encoded: {error}"),
        })?;
        socket
            .send(Message::text(text))
            .await
            .map_err(|error| Disconnect::Lost {
                error: error.to_string(),
            })?;
        Ok(())
    }
}

/// Sleeps until `at`; forever without one (the caller's branch is disabled then).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pace_allows_a_burst_then_a_steady_rate() {
        let start = Instant::now();
        let mut pace = Pace::new(start);
        for _ in 0..16 {
            assert_eq!(pace.take(start), Ok(()));
        }
        let next = pace.take(start).expect_err("the burst is spent");
        assert_eq!(next - start, Duration::from_millis(125));
        assert_eq!(pace.take(next), Ok(()));
        assert!(pace.take(next).is_err());
        // A second later, eight more; never more than the burst, however long the pause.
        let later = next + Duration::from_secs(1);
        assert_eq!((0..20).filter(|_| pace.take(later).is_ok()).count(), 8);
        let much_later = later + Duration::from_secs(60);
        assert_eq!(
            (0..40).filter(|_| pace.take(much_later).is_ok()).count(),
            16
        );
    }
}
