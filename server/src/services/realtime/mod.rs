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
//! **Metered like requests.** A socket takes a [`slots::Slot`] of its key's plan's
//! `stream_connection_limit` before its upgrade ([`slots`]); each client message is
//! admitted by the gateway like a request ([`Hub::admit_message`]), and the messages
//! queued to a socket are charged to its key's quota and usage report once a second, in
//! one batch per key ([`Hub::meter`]). A key whose quota runs out has its sockets closed
//! with [`CLOSE_QUOTA`].
//!
//! **Homes follow follows.** A `home` subscription holds the user's followees, read from
//! the database when it is made and kept current by `user.followed` / `user.unfollowed`;
//! a follow that commits while the list is being read is recorded and applied after it,
//! so none is lost between the read and the registration.

mod messages;
pub mod slots;
mod socket;
mod subscriptions;
pub mod tickets;

pub use self::subscriptions::Missed;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use self::messages::{created_message, deleted_message, lagged_message, quota_spent_message};
use self::slots::{Slot, Slots};
use self::socket::{Socket, close, deliver, push};
use self::tickets::Holder;
use crate::domain::events::Event;
use crate::domain::records::TweetRecord;
use crate::infra::redis::SharedRedis;
use crate::infra::store::{SharedStore, StoreError};
use crate::services::events::{Origin, Subscriber};
use crate::services::gateway::limits::{PlanLimits, Verdict};
use crate::services::gateway::{Gateway, GatewayError};

/// Close code: the server is going away (shutting down); reconnect.
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code: the client fell behind and its queue overflowed; reconnect.
pub const CLOSE_LAGGED: u16 = 4000;
/// Close code: the key or the user may no longer listen; do not reconnect with them.
pub const CLOSE_UNAUTHORIZED: u16 = 4001;
/// Close code: the client broke the rules (too many messages, missed heartbeats).
pub const CLOSE_POLICY: u16 = 4008;
/// Close code: the key's quota is spent; reconnect when it resets.
pub const CLOSE_QUOTA: u16 = 4029;

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
    gateway: Arc<Gateway>,
    /// The sockets each key holds open, against its plan's limit.
    pub slots: Arc<Slots>,
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
    /// The messages queued to sockets that have gone, not yet charged, by key.
    uncharged: HashMap<Uuid, Charge>,
}

/// Messages to charge to a key.
#[derive(Debug, Clone, Copy)]
struct Charge {
    plan_id: Uuid,
    limits: PlanLimits,
    messages: u64,
}

impl Hub {
    /// The hub of this instance; `redis` when instances share one (for the slots).
    pub fn new(store: SharedStore, gateway: Arc<Gateway>, redis: Option<SharedRedis>) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            me: me.clone(),
            store,
            gateway,
            slots: Slots::new(redis),
            registry: Mutex::default(),
            next_id: AtomicU64::new(1),
            emptied: tokio::sync::Notify::new(),
        })
    }

    /// How many sockets are open.
    pub fn connections(&self) -> usize {
        self.lock().sockets.len()
    }

    /// Registers a new socket for `holder`, holding `slot` until it disconnects;
    /// `request_id` is its upgrade's, named in the problems the hub sends it.
    pub fn connect(&self, holder: Holder, slot: Slot, request_id: &str) -> Connection {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let (close, closed) = oneshot::channel();
        let mut registry = self.lock();
        registry.sockets.insert(
            id,
            Socket {
                holder,
                _slot: slot,
                request_id: Arc::from(request_id),
                queued: 0,
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
        if socket.queued > 0 {
            add_charge(&mut registry.uncharged, &socket.holder, socket.queued);
        }
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

    /// Closes one socket (its own session decided so), sending `last_message` (past
    /// the queue) before the close frame.
    pub fn close(&self, id: u64, code: u16, reason: &'static str, last_message: Option<String>) {
        let mut registry = self.lock();
        if let Some(socket) = registry.sockets.get_mut(&id) {
            close(socket, code, reason, last_message);
        }
    }

    /// Admits one client message of `holder`'s socket through the gateway, as a request
    /// of its key: a throttle token and a quota unit, counted in the usage report.
    pub async fn admit_message(&self, holder: &Holder) -> Result<Verdict, GatewayError> {
        let decision = self
            .gateway
            .meter(holder.key_id, holder.plan_id, holder.limits, 1)
            .await?;
        Ok(decision.verdict)
    }

    /// Charges the messages queued since the last call to their keys' quotas and usage
    /// reports, one batch per key, and closes with [`CLOSE_QUOTA`] the sockets of a key
    /// whose quota is now spent. The server calls it every second and at shutdown; a
    /// batch the gateway could not take waits for the next call.
    pub async fn meter(&self) {
        let charges = {
            let mut registry = self.lock();
            let registry = &mut *registry;
            let mut charges = std::mem::take(&mut registry.uncharged);
            for socket in registry.sockets.values_mut() {
                if socket.queued > 0 {
                    add_charge(&mut charges, &socket.holder, socket.queued);
                    socket.queued = 0;
                }
            }
            charges
        };
        for (key_id, charge) in charges {
            // Sent messages take quota, not throttle tokens: they are gone already.
            let limits = PlanLimits {
                throttle: None,
                ..charge.limits
            };
            match self
                .gateway
                .meter(key_id, charge.plan_id, limits, charge.messages)
                .await
            {
                Ok(decision) => {
                    let spent = matches!(decision.verdict, Verdict::QuotaExceeded { .. })
                        || decision.quota.is_some_and(|quota| quota.remaining == 0);
                    if spent {
                        let resets_in = decision.quota.map_or(0, |quota| quota.resets_in);
                        self.close_key(key_id, resets_in);
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, %key_id, "stream messages not charged yet; retrying");
                    let mut registry = self.lock();
                    let pending = registry.uncharged.entry(key_id).or_insert(Charge {
                        messages: 0,
                        ..charge
                    });
                    pending.messages += charge.messages;
                }
            }
        }
    }

    /// Closes every socket of `key_id` as out of quota (until it resets in `resets_in`
    /// seconds), after an `error` saying so.
    fn close_key(&self, key_id: Uuid, resets_in: u64) {
        let mut registry = self.lock();
        for socket in registry.sockets.values_mut() {
            if socket.holder.key_id == key_id {
                let message = quota_spent_message(resets_in, &socket.request_id);
                close(
                    socket,
                    CLOSE_QUOTA,
                    "the key's quota is spent",
                    Some(message),
                );
            }
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

fn add_charge(charges: &mut HashMap<Uuid, Charge>, holder: &Holder, messages: u64) {
    charges
        .entry(holder.key_id)
        .or_insert(Charge {
            plan_id: holder.plan_id,
            limits: holder.limits,
            messages: 0,
        })
        .messages += messages;
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
