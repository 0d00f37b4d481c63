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

pub mod tickets;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use self::tickets::Holder;
use crate::domain::events::Event;
use crate::domain::records::TweetRecord;
use crate::generated::stream::{
    LaggedMessage, LaggedMessageType, Topic as TopicName, TweetCreatedMessage,
    TweetCreatedMessageType, TweetDeletedMessage, TweetDeletedMessageType,
};
use crate::generated::types;
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

struct Socket {
    holder: Holder,
    queue: mpsc::Sender<Arc<str>>,
    close: Option<oneshot::Sender<Close>>,
    authors: HashSet<Uuid>,
    home: Option<Home>,
    /// The last tweet pushed, named in `lagged` so that the client knows where it was.
    last_tweet_id: Option<Uuid>,
    /// The topics whose replay is being read: what is pushed to them meanwhile waits
    /// here (the tweet it is about, whether it was created, and the message), to follow
    /// the replay.
    replaying: HashMap<Topic, Vec<(Uuid, bool, Arc<str>)>>,
    /// The tweets each topic's replay sent: pushed again by an event that arrives late
    /// (another instance's, through Redis), they are not sent twice.
    replayed: HashMap<Topic, HashSet<Uuid>>,
}

/// A `home` subscription: whose tweets it shows.
struct Home {
    /// The user and their followees, once read.
    shown: HashSet<Uuid>,
    /// While the followees are being read: the follow changes seen meanwhile, in order.
    pending: Option<Vec<(Uuid, bool)>>,
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

    /// Makes socket `id` follow `topic`. Idempotent. With `replay`, what is pushed to the
    /// topic waits until [`Hub::finish_replay`] (or [`Hub::unsubscribe`]).
    pub async fn subscribe(
        &self,
        id: u64,
        topic: Topic,
        replay: bool,
    ) -> Result<(), SubscribeError> {
        match topic {
            Topic::User(author) => {
                if self.store.user_by_id(author).await?.is_none() {
                    return Err(SubscribeError::NoSuchUser);
                }
                let mut registry = self.lock();
                let Some(socket) = registry.sockets.get_mut(&id) else {
                    return Ok(());
                };
                if !socket.authors.contains(&author) && topics(socket) >= MAX_TOPICS {
                    return Err(SubscribeError::TooManyTopics);
                }
                if replay {
                    socket.replaying.insert(topic, Vec::new());
                }
                socket.authors.insert(author);
                registry.by_author.entry(author).or_default().insert(id);
                Ok(())
            }
            Topic::Home => {
                let user = {
                    let mut registry = self.lock();
                    let Some(socket) = registry.sockets.get_mut(&id) else {
                        return Ok(());
                    };
                    if replay {
                        socket.replaying.insert(topic, Vec::new());
                    }
                    if socket.home.is_some() {
                        return Ok(());
                    }
                    if topics(socket) >= MAX_TOPICS {
                        socket.replaying.remove(&topic);
                        return Err(SubscribeError::TooManyTopics);
                    }
                    socket.home = Some(Home {
                        shown: HashSet::new(),
                        pending: Some(Vec::new()),
                    });
                    socket.holder.user_id
                };
                let followees = match self.store.followee_ids(user).await {
                    Ok(followees) => followees,
                    Err(error) => {
                        if let Some(socket) = self.lock().sockets.get_mut(&id) {
                            socket.home = None;
                            socket.replaying.remove(&topic);
                        }
                        return Err(error.into());
                    }
                };
                let mut registry = self.lock();
                let Some(socket) = registry.sockets.get_mut(&id) else {
                    return Ok(());
                };
                let Some(home) = socket.home.as_mut() else {
                    return Ok(());
                };
                home.shown = followees.into_iter().chain([user]).collect();
                for (followee, follows) in home.pending.take().unwrap_or_default() {
                    if follows {
                        home.shown.insert(followee);
                    } else if followee != user {
                        home.shown.remove(&followee);
                    }
                }
                let shown: Vec<Uuid> = home.shown.iter().copied().collect();
                for author in shown {
                    registry
                        .homes_by_author
                        .entry(author)
                        .or_default()
                        .insert(id);
                }
                Ok(())
            }
        }
    }

    /// Makes socket `id` stop following `topic` (a replay under way included).
    /// Idempotent.
    pub fn unsubscribe(&self, id: u64, topic: Topic) {
        let mut registry = self.lock();
        let Some(socket) = registry.sockets.get_mut(&id) else {
            return;
        };
        socket.replaying.remove(&topic);
        socket.replayed.remove(&topic);
        match topic {
            Topic::User(author) => {
                if socket.authors.remove(&author) {
                    remove(&mut registry.by_author, author, id);
                }
            }
            Topic::Home => {
                if let Some(home) = socket.home.take() {
                    for author in home.shown {
                        remove(&mut registry.homes_by_author, author, id);
                    }
                }
            }
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
        let message = |topic: Topic| {
            json(&TweetDeletedMessage {
                type_: TweetDeletedMessageType::TweetDeleted,
                topic: TopicName(topic.name()),
                data: types::TweetDeletedData {
                    tweet_id: types::Id(tweet_id),
                    author_id: types::Id(author_id),
                },
            })
        };
        self.push_to_audience(author_id, tweet_id, false, message);
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

    /// The tweets of `topic`, as `user` sees them, posted after the tweet `since`: oldest
    /// first, at most [`REPLAY_LIMIT`] (the most recent ones); and whether more were
    /// missed than that. Read by the REST timelines' database queries, not from the home
    /// feeds: the fan-out fills a follower's feed a moment after the commit (and after
    /// the tweet's event), and a replay read from a feed not yet filled would leave a gap.
    pub async fn missed(
        &self,
        user: Uuid,
        topic: Topic,
        since: Uuid,
    ) -> Result<(Vec<TweetRecord>, bool), StoreError> {
        let limit = u32::try_from(REPLAY_LIMIT + 1).unwrap_or(u32::MAX);
        let newest = match topic {
            Topic::Home => self.store.timeline(user, None, limit).await?,
            Topic::User(author) => self.store.tweets_by(author, None, limit).await?,
        };
        let mut missed: Vec<TweetRecord> = newest
            .items
            .into_iter()
            .take_while(|tweet| tweet.id > since)
            .collect();
        let truncated = missed.len() > REPLAY_LIMIT;
        missed.truncate(REPLAY_LIMIT);
        missed.reverse();
        Ok((missed, truncated))
    }

    /// Ends the replay of socket `id`'s `topic`: queues the `replayed` tweets (oldest
    /// first), then `answer` (the `subscribed` message), then what was pushed to the topic
    /// meanwhile, without the tweets the replay sent. From then on the topic is live.
    pub fn finish_replay(&self, id: u64, topic: Topic, replayed: &[TweetRecord], answer: &str) {
        let mut registry = self.lock();
        let Some(socket) = registry.sockets.get_mut(&id) else {
            return;
        };
        let Some(waiting) = socket.replaying.remove(&topic) else {
            return;
        };
        let sent: HashSet<Uuid> = replayed.iter().map(|tweet| tweet.id).collect();
        for tweet in replayed {
            push(socket, &created_message(tweet, topic), Some(tweet.id));
        }
        push(socket, &Arc::from(answer), None);
        for (tweet_id, created, text) in waiting {
            if !(created && sent.contains(&tweet_id)) {
                push(socket, &text, created.then_some(tweet_id));
            }
        }
        socket.replayed.insert(topic, sent);
    }

    fn follow_changed(&self, follower: Uuid, followee: Uuid, follows: bool) {
        let mut registry = self.lock();
        let registry = &mut *registry;
        let Some(ids) = registry.by_user.get(&follower) else {
            return;
        };
        for id in ids {
            let Some(home) = registry.sockets.get_mut(id).and_then(|s| s.home.as_mut()) else {
                continue;
            };
            if let Some(pending) = home.pending.as_mut() {
                pending.push((followee, follows));
            } else if follows {
                if home.shown.insert(followee) {
                    registry
                        .homes_by_author
                        .entry(followee)
                        .or_default()
                        .insert(*id);
                }
            } else if followee != follower && home.shown.remove(&followee) {
                remove(&mut registry.homes_by_author, followee, *id);
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

fn topics(socket: &Socket) -> usize {
    socket.authors.len() + usize::from(socket.home.is_some())
}

fn remove(index: &mut HashMap<Uuid, HashSet<u64>>, key: Uuid, id: u64) {
    if let Some(ids) = index.get_mut(&key) {
        ids.remove(&id);
        if ids.is_empty() {
            index.remove(&key);
        }
    }
}

/// Hands a push for `topic` to a socket: held back while the topic's replay is read,
/// dropped if the replay sent it already, else queued.
fn deliver(socket: &mut Socket, topic: Topic, tweet_id: Uuid, created: bool, text: &Arc<str>) {
    if let Some(waiting) = socket.replaying.get_mut(&topic) {
        if waiting.len() < QUEUE_CAPACITY {
            waiting.push((tweet_id, created, Arc::clone(text)));
        } else {
            let lagged = lagged_message(socket.last_tweet_id);
            close(socket, CLOSE_LAGGED, "the client fell behind", Some(lagged));
        }
        return;
    }
    let sent = socket.replayed.get(&topic);
    if created && sent.is_some_and(|sent| sent.contains(&tweet_id)) {
        return;
    }
    push(socket, text, created.then_some(tweet_id));
}

fn created_message(tweet: &TweetRecord, topic: Topic) -> Arc<str> {
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

/// Queues `message`; a full queue closes the socket as lagged.
fn push(socket: &mut Socket, message: &Arc<str>, tweet_id: Option<Uuid>) {
    match socket.queue.try_send(Arc::clone(message)) {
        Ok(()) => {
            if tweet_id.is_some() {
                socket.last_tweet_id = tweet_id;
            }
        }
        Err(mpsc::error::TrySendError::Full(_)) => {
            let lagged = lagged_message(socket.last_tweet_id);
            close(socket, CLOSE_LAGGED, "the client fell behind", Some(lagged));
        }
        // The session has ended; it disconnects in a moment.
        Err(mpsc::error::TrySendError::Closed(_)) => {}
    }
}

fn close(socket: &mut Socket, code: u16, reason: &'static str, last_message: Option<String>) {
    if let Some(close) = socket.close.take() {
        if code == CLOSE_LAGGED {
            crate::infra::metrics::stream_lagged();
        }
        let _ = close.send(Close {
            code,
            reason,
            last_message,
        });
    }
}

fn lagged_message(last_tweet_id: Option<Uuid>) -> String {
    json(&LaggedMessage {
        type_: LaggedMessageType::Lagged,
        last_tweet_id,
    })
    .to_string()
}

fn json(message: &impl serde::Serialize) -> Arc<str> {
    // A message of generated types always serialises.
    Arc::from(serde_json::to_string(message).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn hub() -> (Arc<Hub>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = crate::infra::store::open(None, dir.path(), &Default::default())
            .await
            .expect("store");
        (Hub::new(store), dir)
    }

    fn holder(user_id: Uuid) -> Holder {
        Holder {
            user_id,
            key_id: Uuid::now_v7(),
        }
    }

    fn tweet(author_id: Uuid, n: usize) -> Event {
        Event::TweetCreated {
            tweet: TweetRecord {
                id: Uuid::now_v7(),
                author_id,
                text: format!("tweet {n}"),
                created_at: chrono::Utc::now(),
            },
        }
    }

    #[tokio::test]
    async fn a_full_queue_closes_the_socket_as_lagged() {
        let (hub, _dir) = hub().await;
        let mut connection = hub.connect(holder(Uuid::now_v7()));
        for _ in 0..QUEUE_CAPACITY {
            hub.send(connection.id, "{}");
        }
        assert!(connection.closed.try_recv().is_err(), "full, not over");
        hub.send(connection.id, "{}");
        let close = connection.closed.await.expect("closed");
        assert_eq!(close.code, CLOSE_LAGGED);
        assert_eq!(close.last_message.as_deref(), Some(r#"{"type":"lagged"}"#));
    }

    #[tokio::test]
    async fn a_socket_that_stops_reading_does_not_hold_up_the_others() {
        let (hub, _dir) = hub().await;
        let author = Uuid::now_v7();
        let stuck = hub.connect(holder(author));
        let mut reading = hub.connect(holder(author));
        hub.subscribe(stuck.id, Topic::Home, false)
            .await
            .expect("home");
        hub.subscribe(reading.id, Topic::Home, false)
            .await
            .expect("home");
        let total = QUEUE_CAPACITY * 2;
        let mut received = 0;
        for n in 0..total {
            hub.on_event(&tweet(author, n), Origin::Local).await;
            while reading.queue.try_recv().is_ok() {
                received += 1;
            }
        }
        assert_eq!(received, total, "the reading socket got every tweet");
        let close = stuck.closed.await.expect("the stuck socket is closed");
        assert_eq!(close.code, CLOSE_LAGGED);
        let lagged: serde_json::Value =
            serde_json::from_str(&close.last_message.expect("lagged")).expect("JSON");
        assert_eq!(lagged["type"], "lagged");
        assert!(lagged["last_tweet_id"].is_string(), "{lagged}");
        assert!(reading.closed.try_recv().is_err(), "still open");
    }

    #[tokio::test]
    async fn missing_other_instances_events_closes_every_socket_as_lagged() {
        let (hub, _dir) = hub().await;
        let first = hub.connect(holder(Uuid::now_v7()));
        let second = hub.connect(holder(Uuid::now_v7()));
        hub.set_in_sync(false);
        for connection in [first, second] {
            assert_eq!(connection.closed.await.expect("closed").code, CLOSE_LAGGED);
        }
    }

    #[tokio::test]
    async fn disconnecting_forgets_the_socket_everywhere() {
        let (hub, _dir) = hub().await;
        let author = Uuid::now_v7();
        let connection = hub.connect(holder(author));
        hub.subscribe(connection.id, Topic::Home, false)
            .await
            .expect("home");
        hub.disconnect(connection.id);
        assert_eq!(hub.connections(), 0);
        let registry = hub.lock();
        assert!(registry.homes_by_author.is_empty());
        assert!(registry.by_user.is_empty());
    }

    #[test]
    fn topics_parse_from_their_wire_names() {
        let id = Uuid::now_v7();
        assert_eq!(Topic::parse("home"), Some(Topic::Home));
        assert_eq!(Topic::parse(&format!("user:{id}")), Some(Topic::User(id)));
        assert_eq!(Topic::parse("user:x"), None);
        assert_eq!(Topic::User(id).name(), format!("user:{id}"));
    }
}
