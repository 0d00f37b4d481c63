//! One socket as the hub keeps it: what it follows, its queue, and how a push reaches it
//! (held back during a replay, dropped when the replay sent it, queued, or closing the
//! socket as lagged when its queue is full).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::messages::lagged_message;
use super::slots::Slot;
use super::tickets::Holder;
use super::{CLOSE_LAGGED, Close, QUEUE_CAPACITY, Topic};

pub(super) struct Socket {
    pub(super) holder: Holder,
    /// Its place in its key's count of open sockets, given back with the socket.
    pub(super) _slot: Slot,
    /// The upgrade's request id.
    pub(super) request_id: Arc<str>,
    /// Messages queued since they were last charged to the key's quota.
    pub(super) queued: u64,
    pub(super) queue: mpsc::Sender<Arc<str>>,
    pub(super) close: Option<oneshot::Sender<Close>>,
    pub(super) authors: HashSet<Uuid>,
    pub(super) home: Option<Home>,
    /// The last tweet pushed, named in `lagged` so that the client knows where it was.
    pub(super) last_tweet_id: Option<Uuid>,
    /// The topics whose replay is being read: what is pushed to them meanwhile waits
    /// here (the tweet it is about, whether it was created, and the message), to follow
    /// the replay.
    pub(super) replaying: HashMap<Topic, Vec<(Uuid, bool, Arc<str>)>>,
    /// The tweets each topic's replay sent: pushed again by an event that arrives late
    /// (another instance's, through Redis), they are not sent twice.
    pub(super) replayed: HashMap<Topic, HashSet<Uuid>>,
}

/// A `home` subscription: whose tweets it shows.
pub(super) struct Home {
    /// The user and their followees, once read.
    pub(super) shown: HashSet<Uuid>,
    /// While the followees are being read: the follow changes seen meanwhile, in order.
    pub(super) pending: Option<Vec<(Uuid, bool)>>,
}

pub(super) fn topics(socket: &Socket) -> usize {
    socket.authors.len() + usize::from(socket.home.is_some())
}

/// Hands a push for `topic` to a socket: held back while the topic's replay is read,
/// dropped if the replay sent it already, else queued.
pub(super) fn deliver(
    socket: &mut Socket,
    topic: Topic,
    tweet_id: Uuid,
    created: bool,
    text: &Arc<str>,
) {
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

/// Queues `message`; a full queue closes the socket as lagged.
pub(super) fn push(socket: &mut Socket, message: &Arc<str>, tweet_id: Option<Uuid>) {
    match socket.queue.try_send(Arc::clone(message)) {
        Ok(()) => {
            socket.queued += 1;
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

pub(super) fn close(
    socket: &mut Socket,
    code: u16,
    reason: &'static str,
    last_message: Option<String>,
) {
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
