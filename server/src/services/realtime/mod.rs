//! The realtime stream's hub: which socket follows what, and the pushes that reach them.
//!
//! A socket (`handlers/stream/session.rs` runs each) is a [`Connection`] here: a bounded queue of
//! messages to send, and a way to be closed. It subscribes to topics (`asyncapi.yaml`):
//! `user:<id>` (one author's tweets) or `home` (the user's own tweets and their
//! followees'). The hub is a [`Subscriber`] of the event bus, so it sees every committed
//! `tweet.created` and `tweet.deleted` of this instance and, through Redis, of the others
//! (the bus's cross-instance delivery); each event is serialised once per topic and
//! queued to every socket that follows it, through two indexes by author (one for
//! `user:` topics, one for homes), so a push costs the author's audience, not the number
//! of sockets.
//!
//! **A slow socket never slows the others.** Queueing never waits: a full queue means
//! the client stopped reading, and it is closed with [`CLOSE_LAGGED`] after a `lagged`
//! message (sent ahead of the queue), so that it reconnects rather than silently missing
//! tweets. For the same reason, when the bus says events from other instances may have
//! been missed (Redis went away), every socket is closed as lagged.
//!
//! **Who may listen.** A socket acts as its ticket's user under its ticket's key: it is
//! closed with [`CLOSE_UNAUTHORIZED`] when the user is deleted, or when an operator's key
//! change leaves its key disabled or gone (each instance checks its own sockets' keys when
//! the change reaches it).
//!
//! **Replay, then live.** A subscription with `since` (a tweet id) first gets what it
//! missed, read by the REST timelines' database queries ([`Hub::missed`]: at most
//! [`REPLAY_LIMIT`] tweets, oldest first), then goes live. The topic is registered
//! *before* the query, and what is pushed to it meanwhile waits beside the socket until
//! the replay is queued ([`Hub::finish_replay`]); a tweet both replayed and pushed (its
//! event came while or after the query ran) is sent once. So nothing committed around the
//! switch is missed or repeated.
//!
//! **Homes follow follows.** A `home` subscription holds the user's followees, read from
//! the database when it is made and kept current by `user.followed` / `user.unfollowed`;
//! a follow that commits while the list is being read is recorded and applied after it,
//! so none is lost between the read and the registration.

mod messages;
mod socket;
mod subscriptions;
pub mod tickets;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use self::messages::{created_message, deleted_message, lagged_message};
use self::socket::{Socket, close, deliver, push};
use self::tickets::Holder;
use crate::domain::events::Event;
use crate::domain::records::TweetRecord;
use crate::infra::store::{SharedStore, StoreError};
use crate::services::events::{Origin, Subscriber};

/// Close code: the server is going away (shutting down); reconnect.
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code: the client fell behind and its queue overflowed; reconnect.
pub const CLOSE_LAGGED: u16 = 4000;
/// Close code: the key or the user may no longer listen; do not reconnect with them.
pub const CLOSE_UNAUTHORIZED: u16 = 4001;
/// Close code: the client broke the rules (too many messages, missed heartbeats).
pub const CLOSE_POLICY: u16 = 4008;

/// How many messages wait for a socket before it counts as lagging.
pub const QUEUE_CAPACITY: usize = 256;
/// How many topics one socket may follow.
pub const MAX_TOPICS: usize = 100;
/// The most tweets a subscription's replay sends (the most recent of those missed).
pub const REPLAY_LIMIT: usize = 100;

/// What a subscription follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    Home,
    User(Uuid),
}

impl Topic {
    /// The topic a wire name (`home`, `user:<id>`) names; the schema's pattern has
    /// already admitted it.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "home" => Some(Self::Home),
            _ => name
                .strip_prefix("user:")
                .and_then(|id| id.parse().ok())
                .map(Self::User),
        }
    }

    pub fn name(self) -> String {
        match self {
            Self::Home => "home".to_owned(),
            Self::User(id) => format!("user:{id}"),
        }
    }
}

/// How a socket is to be closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    pub code: u16,
    pub reason: &'static str,
    /// A message to send just before the close frame (`lagged`), past the queue.
    pub last_message: Option<String>,
}

/// A socket's end of the hub.
#[derive(Debug)]
pub struct Connection {
    pub id: u64,
    /// The messages to send, in order.
    pub queue: mpsc::Receiver<Arc<str>>,
    /// Fires when the hub closes the socket.
    pub closed: oneshot::Receiver<Close>,
}

/// Why a subscription was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error("The user does not exist.")]
    NoSuchUser,
    #[error("A socket may follow at most {MAX_TOPICS} topics.")]
    TooManyTopics,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The sockets of this instance and what they follow.
pub struct Hub {
    /// This hub, for the tasks it spawns.
    me: Weak<Hub>,
    store: SharedStore,
    registry: Mutex<Registry>,
    next_id: AtomicU64,
    /// Notified when the last socket disconnects.
    emptied: tokio::sync::Notify,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("connections", &self.connections())
            .finish()
    }
}

#[derive(Default)]
struct Registry {
    sockets: HashMap<u64, Socket>,
    /// Author → the sockets following `user:<author>`.
    by_author: HashMap<Uuid, HashSet<u64>>,
    /// Author → the sockets whose `home` shows the author's tweets.
    homes_by_author: HashMap<Uuid, HashSet<u64>>,
    /// User → that user's sockets.
    by_user: HashMap<Uuid, HashSet<u64>>,
}

impl Hub {
    pub fn new(store: SharedStore) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            me: me.clone(),
            store,
            registry: Mutex::default(),
            next_id: AtomicU64::new(1),
            emptied: tokio::sync::Notify::new(),
        })
    }

    /// How many sockets are open.
    pub fn connections(&self) -> usize {
        self.lock().sockets.len()
    }

    /// Registers a new socket for `holder`.
    pub fn connect(&self, holder: Holder) -> Connection {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let (close, closed) = oneshot::channel();
        let mut registry = self.lock();
        registry.sockets.insert(
            id,
            Socket {
                holder,
                queue,
                close: Some(close),
                authors: HashSet::new(),
                home: None,
                last_tweet_id: None,
                replaying: HashMap::new(),
                replayed: HashMap::new(),
            },
        );
        registry
            .by_user
            .entry(holder.user_id)
            .or_default()
            .insert(id);
        Connection {
            id,
            queue: receiver,
            closed,
        }
    }

    /// Forgets a socket that has closed.
    pub fn disconnect(&self, id: u64) {
        let mut registry = self.lock();
        let Some(socket) = registry.sockets.remove(&id) else {
            return;
        };
        for author in &socket.authors {
            remove(&mut registry.by_author, *author, id);
        }
        if let Some(home) = &socket.home {
            for author in &home.shown {
                remove(&mut registry.homes_by_author, *author, id);
            }
        }
        remove(&mut registry.by_user, socket.holder.user_id, id);
        if registry.sockets.is_empty() {
            self.emptied.notify_waiters();
        }
    }

    /// Waits until every socket has disconnected, for at most `patience`.
    pub async fn closed(&self, patience: std::time::Duration) {
        let emptied = self.emptied.notified();
        if self.connections() == 0 {
            return;
        }
        let _ = tokio::time::timeout(patience, emptied).await;
    }

    /// Queues a message for one socket (an answer to its client); a full queue closes it
    /// as lagged.
    pub fn send(&self, id: u64, message: &str) {
        let message: Arc<str> = Arc::from(message);
        let mut registry = self.lock();
        if let Some(socket) = registry.sockets.get_mut(&id) {
            push(socket, &message, None);
        }
    }

    /// Closes one socket (its own session decided so).
    pub fn close(&self, id: u64, code: u16, reason: &'static str) {
        let mut registry = self.lock();
        if let Some(socket) = registry.sockets.get_mut(&id) {
            close(socket, code, reason, None);
        }
    }

    /// Closes every socket, with `code` (shutdown: [`CLOSE_GOING_AWAY`]).
    pub fn close_all(&self, code: u16, reason: &'static str) {
        let mut registry = self.lock();
        for socket in registry.sockets.values_mut() {
            close(socket, code, reason, None);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn tweet_created(&self, tweet: &TweetRecord) {
        self.push_to_audience(tweet.author_id, tweet.id, true, |topic| {
            created_message(tweet, topic)
        });
    }

    fn tweet_deleted(&self, tweet_id: Uuid, author_id: Uuid) {
        self.push_to_audience(author_id, tweet_id, false, |topic| {
            deleted_message(tweet_id, author_id, topic)
        });
    }

    /// Queues a message about `author`'s tweet `tweet_id` (`created`, or deleted) to the
    /// sockets following the author and to those whose home shows the author, each
    /// message serialised once per topic.
    fn push_to_audience(
        &self,
        author: Uuid,
        tweet_id: Uuid,
        created: bool,
        message: impl Fn(Topic) -> Arc<str>,
    ) {
        let mut registry = self.lock();
        let registry = &mut *registry;
        for (index, topic) in [
            (&registry.by_author, Topic::User(author)),
            (&registry.homes_by_author, Topic::Home),
        ] {
            let Some(ids) = index.get(&author).filter(|ids| !ids.is_empty()) else {
                continue;
            };
            let text = message(topic);
            for id in ids {
                if let Some(socket) = registry.sockets.get_mut(id) {
                    deliver(socket, topic, tweet_id, created, &text);
                }
            }
        }
    }

    fn user_deleted(&self, user: Uuid) {
        let mut registry = self.lock();
        let registry = &mut *registry;
        for id in registry.by_user.get(&user).into_iter().flatten() {
            if let Some(socket) = registry.sockets.get_mut(id) {
                close(socket, CLOSE_UNAUTHORIZED, "the user was deleted", None);
            }
        }
    }

    /// Closes the sockets whose key an operator's change disabled or deleted.
    async fn check_keys(self: Arc<Self>) {
        let keys: HashSet<Uuid> = self
            .lock()
            .sockets
            .values()
            .map(|socket| socket.holder.key_id)
            .collect();
        for key in keys {
            let usable = match self.store.key(key).await {
                Ok(found) => found.is_some_and(|key| key.enabled),
                Err(error) => {
                    // The next key change checks again; a socket is not closed on a guess.
                    tracing::warn!(%error, "stream sockets' keys not checked");
                    return;
                }
            };
            if usable {
                continue;
            }
            let mut registry = self.lock();
            for socket in registry.sockets.values_mut() {
                if socket.holder.key_id == key {
                    close(socket, CLOSE_UNAUTHORIZED, "the key was disabled", None);
                }
            }
        }
    }
}

#[async_trait]
impl Subscriber for Hub {
    async fn on_event(&self, event: &Event, _origin: Origin) {
        match event {
            Event::TweetCreated { tweet } => self.tweet_created(tweet),
            Event::TweetDeleted {
                tweet_id,
                author_id,
            } => self.tweet_deleted(*tweet_id, *author_id),
            Event::UserFollowed {
                follower_id,
                followee_id,
            } => self.follow_changed(*follower_id, *followee_id, true),
            Event::UserUnfollowed {
                follower_id,
                followee_id,
            } => self.follow_changed(*follower_id, *followee_id, false),
            Event::UserDeleted { user_id } => self.user_deleted(*user_id),
            Event::KeyChanged => {
                if let Some(hub) = self.me.upgrade() {
                    tokio::spawn(hub.check_keys());
                }
            }
            Event::UserUpdated { .. } => {}
        }
    }

    fn set_in_sync(&self, in_sync: bool) {
        if !in_sync {
            // Other instances' tweets may be missed from now on: a socket that stayed
            // open would miss them silently.
            let mut registry = self.lock();
            for socket in registry.sockets.values_mut() {
                let lagged = lagged_message(socket.last_tweet_id);
                close(
                    socket,
                    CLOSE_LAGGED,
                    "events may have been missed",
                    Some(lagged),
                );
            }
        }
    }
}

fn remove(index: &mut HashMap<Uuid, HashSet<u64>>, key: Uuid, id: u64) {
    if let Some(ids) = index.get_mut(&key) {
        ids.remove(&id);
        if ids.is_empty() {
            index.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests;
