//! The state machine behind [`super::Stream`]: get a ticket, open the socket, subscribe,
//! turn server messages into [`Event`]s, and when the socket ends apply the reconnect
//! policy ([`super::reconnect`]). Opening a socket (the ticket, TLS, the upgrade) is in
//! [`connect`], what each server message does in [`server_messages`], and the pace of
//! the stream's own messages in [`pace`].
//!
//! Everything happens while the application polls the stream: there is no background
//! task, so a dropped stream closes its socket at once, and an application that stops
//! reading stops reading the socket too (the server then closes it as lagged, `4000`, and
//! the stream resumes where it was when it is read again). Reading the socket is also
//! what answers the server's pings (tungstenite replies as it reads).

mod connect;
mod pace;
mod server_messages;

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
use connect::Socket;
use pace::Pace;

/// How long a socket may stay silent before it counts as lost. The server pings every
/// 30 s (`asyncapi.yaml`, close code 4008), so three missed pings mean the connection is
/// gone even though no reset ever arrived (a sleeping laptop, a dropped NAT mapping).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How long to wait before sending a subscription again that the server refused as
/// `unavailable` (the documented "send it again").
const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(1);
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
