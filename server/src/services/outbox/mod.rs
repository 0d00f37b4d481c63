//! The outbox's consumers, and its upkeep ([`prune`]).
//!
//! What must not be lost (a tweet reaching its author's followers' feeds, a partner's
//! webhook) is not done from the request that made the change: the change's transaction
//! writes an outbox event, and a consumer here reads the events after its position,
//! handles them in order and then moves its position past them. A `kill -9` anywhere in
//! between leaves the position before the events, so they are handled again by whichever
//! instance runs the consumer next: at least once, which is why every handler must be
//! idempotent (a feed push of a tweet already there changes nothing).
//!
//! One instance at a time has a consumer's turn ([`OutboxStore::claim_outbox`]): on
//! PostgreSQL an advisory lock held for a batch, so the instances of a cluster share the
//! work without two of them handling an event at once, and a killed instance's turn passes
//! to another as soon as its connection is gone; on SQLite one process, whose tasks take
//! turns on their [`Reader`]. A consumer is woken when this instance publishes an event
//! (and hears of another instance's), and otherwise looks once a second, so an event is
//! handled within moments wherever it was written.

pub mod prune;

use std::sync::Weak;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Mutex, Notify};

use crate::domain::events::Event;
use crate::infra::store::{OutboxEntry, Store, StoreError};

pub use prune::{prune, prune_periodically};

/// How many events one turn reads at most.
const BATCH: u32 = 500;
/// How long a consumer waits for news before it looks anyway, and after a failure.
const IDLE: Duration = Duration::from_secs(1);

/// Something that handles every outbox event, at least once, in order.
#[async_trait]
pub trait Consumer: Send + Sync + 'static {
    /// The consumer's state: its name and its turn.
    fn reader(&self) -> &Reader;
    /// The store the consumer reads from.
    fn store(&self) -> &dyn Store;
    /// Handles a batch of events, in order, each with the entry it was read from. A
    /// failure says how many events of the batch were handled before it: the rest are
    /// handled again on the next turn, a second later. (A consumer may handle a batch as
    /// a whole, with one query for all of it, and report 0 when it fails.)
    async fn handle(&self, batch: &[(Event, &OutboxEntry)]) -> Result<(), Stopped>;
}

/// Why a batch stopped, and how many of its events were handled before.
#[derive(Debug)]
pub struct Stopped {
    pub handled: usize,
    pub error: StoreError,
}

/// A consumer's name (its position's key in the database), the turn its tasks take, and
/// how long it lets news gather before it reads: under a stream of writes a turn then
/// handles many events for the cost of one position write (one `fsync` on SQLite, which
/// has one writer for everything), at the price of that delay.
pub struct Reader {
    name: &'static str,
    gather: Duration,
    turn: Mutex<()>,
    news: Notify,
}

impl Reader {
    pub fn new(name: &'static str, gather: Duration) -> Self {
        Self {
            name,
            gather,
            turn: Mutex::new(()),
            news: Notify::new(),
        }
    }

    /// Tells the consumer that events may be waiting.
    pub fn wake(&self) {
        self.news.notify_one();
    }
}

/// What a turn came to.
#[derive(Debug, PartialEq, Eq)]
enum Pass {
    /// Fewer events than a batch: the consumer has caught up.
    CaughtUp,
    /// A whole batch: more may be waiting.
    Full,
    /// Another instance has the turn.
    Busy,
}

/// Takes one turn: reads a batch, handles it in order, records how far it got. An error
/// (the store's, or a handler's) records the events handled before it and ends the turn.
async fn pass<C: Consumer + ?Sized>(consumer: &C) -> Result<Pass, StoreError> {
    let reader = consumer.reader();
    let _turn = reader.turn.lock().await;
    let Some(turn) = consumer.store().claim_outbox(reader.name, BATCH).await? else {
        return Ok(Pass::Busy);
    };
    let read = turn.entries.len();
    let batch = known_events(reader.name, &turn.entries);
    let (through, handled, failure) = match consumer.handle(&batch).await {
        Ok(()) => (turn.entries.last().map(|entry| entry.position), read, None),
        Err(Stopped { handled, error }) => {
            let through = handled
                .checked_sub(1)
                .and_then(|last| batch.get(last))
                .map(|(_, entry)| entry.position);
            (through, handled, Some(error))
        }
    };
    turn.finish(through).await?;
    crate::infra::metrics::outbox_consumed(reader.name, handled as u64);
    match failure {
        Some(error) => Err(error),
        None if read == BATCH as usize => Ok(Pass::Full),
        None => Ok(Pass::CaughtUp),
    }
}

/// The entries' events; one this build does not know (written by a newer one during a
/// rolling release) is skipped, since no handler here could do anything with it.
fn known_events<'a>(consumer: &str, entries: &'a [OutboxEntry]) -> Vec<(Event, &'a OutboxEntry)> {
    entries
        .iter()
        .filter_map(|entry| match serde_json::from_str::<Event>(&entry.event) {
            Ok(event) => Some((event, entry)),
            Err(error) => {
                tracing::warn!(consumer, %error, "skipping an outbox event this build does not know");
                None
            }
        })
        .collect()
}

/// Handles every event committed so far, then returns: for tests and for a drain, which
/// want the consumer caught up now. On PostgreSQL a committed event may not be readable
/// yet (a transaction older than its own is still running, see
/// [`OutboxStore::outbox_after`](crate::infra::store::OutboxStore::outbox_after)), so a
/// turn that finds nothing more is not enough: it waits until the backlog is empty too.
/// Under writes that never pause it would wait for a lull.
pub async fn catch_up<C: Consumer + ?Sized>(consumer: &C) -> Result<(), StoreError> {
    loop {
        match pass(consumer).await? {
            Pass::Full => continue,
            Pass::CaughtUp if !has_backlog(consumer).await? => return Ok(()),
            Pass::CaughtUp | Pass::Busy => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Whether an event committed after `consumer`'s position is still to be handled.
async fn has_backlog<C: Consumer + ?Sized>(consumer: &C) -> Result<bool, StoreError> {
    let name = consumer.reader().name;
    let backlog = consumer.store().outbox_backlog().await?;
    Ok(backlog
        .iter()
        .any(|(of, oldest)| of == name && oldest.is_some()))
}

/// Runs `consumer` until it is dropped: a turn shortly after news or once a second has
/// passed, turn after turn while whole batches come, and a second's pause after a failure.
pub async fn run<C: Consumer>(consumer: Weak<C>) {
    loop {
        let Some(live) = consumer.upgrade() else {
            return;
        };
        match pass(live.as_ref()).await {
            Ok(Pass::Full) => {}
            Ok(Pass::CaughtUp | Pass::Busy) => {
                let news = tokio::time::timeout(IDLE, live.reader().news.notified()).await;
                if news.is_ok() {
                    tokio::time::sleep(live.reader().gather).await;
                }
            }
            Err(error) => {
                tracing::warn!(consumer = live.reader().name, %error, "an outbox consumer failed; retrying in a second");
                tokio::time::sleep(IDLE).await;
            }
        }
    }
}
