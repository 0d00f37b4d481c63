//! How many stream sockets each key holds open, against its plan's
//! `stream_connection_limit`: a socket takes a [`Slot`] before its upgrade and gives it
//! back when it goes (the slot is dropped with the hub's record of the socket, or with
//! the upgrade that never happened).
//!
//! One instance counts in memory. Several count in Redis, since a partner's sockets may
//! be spread over every instance: each key has a sorted set (`stream-sockets:{<key id>}`)
//! of its sockets, scored by when their lease ends. Taking a slot is one Lua script
//! (drop the expired leases, count, add when under the limit: atomic, so racing upgrades
//! on several instances never pass the limit together), and every instance renews its
//! sockets' leases every [`RENEW_EVERY`]. An instance that dies without giving its slots
//! back holds them no longer than [`LEASE`]; Redis' clock scores the leases, so
//! instances' clocks need not agree.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use uuid::Uuid;

use crate::infra::redis::{REDIS_TIMEOUT, SharedRedis};

/// How long a socket's slot lasts in Redis without being renewed.
pub const LEASE: Duration = Duration::from_secs(60);
/// How often an instance renews its sockets' leases.
pub const RENEW_EVERY: Duration = Duration::from_secs(20);
/// What a refused upgrade is told to wait: a slot frees when a socket closes, which no
/// one can predict, so a short, fixed pause.
pub const RETRY_AFTER_SECONDS: u64 = 5;

/// Takes a slot: `KEYS[1]` the key's set; `ARGV` the limit, the socket's member name and
/// the lease in seconds. Returns 1 when taken, 0 at the limit.
const TAKE_LUA: &str = r"
local now = tonumber(redis.call('TIME')[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
";

/// Renews leases: `KEYS[1]` the key's set; `ARGV[1]` the lease in seconds, then the
/// members.
const RENEW_LUA: &str = r"
local lease_end = tonumber(redis.call('TIME')[1]) + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], lease_end, ARGV[i]) end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return 0
";

/// The slots of every key.
pub struct Slots {
    me: std::sync::Weak<Slots>,
    counts: Counts,
}

enum Counts {
    /// Open sockets by key.
    InProcess(Mutex<HashMap<Uuid, u32>>),
    Shared(Box<Shared>),
}

/// The slots of a cluster, in Redis.
struct Shared {
    redis: SharedRedis,
    /// This process's name among the instances, the prefix of its members.
    instance: Uuid,
    next: AtomicU64,
    /// The members this instance holds, by key, for renewal.
    held: Mutex<HashMap<Uuid, HashSet<String>>>,
    take: redis::Script,
    renew: redis::Script,
}

/// One open socket's place in its key's count; dropping it gives the place back.
pub struct Slot {
    slots: Arc<Slots>,
    key_id: Uuid,
    /// Its name in Redis, when the slots are shared.
    member: Option<String>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("key_id", &self.key_id)
            .finish()
    }
}

impl Slots {
    pub fn new(redis: Option<SharedRedis>) -> Arc<Self> {
        let counts = match redis {
            None => Counts::InProcess(Mutex::default()),
            Some(redis) => Counts::Shared(Box::new(Shared {
                redis,
                instance: Uuid::now_v7(),
                next: AtomicU64::new(1),
                held: Mutex::default(),
                take: redis::Script::new(TAKE_LUA),
                renew: redis::Script::new(RENEW_LUA),
            })),
        };
        Arc::new_cyclic(|me| Self {
            me: me.clone(),
            counts,
        })
    }

    /// A slot for a socket of `key_id`, or `None` when the key holds `limit` sockets
    /// already. `Err` only when Redis does not answer.
    pub async fn take(&self, key_id: Uuid, limit: u32) -> anyhow::Result<Option<Slot>> {
        let Some(slots) = self.me.upgrade() else {
            anyhow::bail!("the slots are gone");
        };
        let member = match &self.counts {
            Counts::InProcess(counts) => {
                let mut counts = lock(counts);
                let count = counts.entry(key_id).or_default();
                if *count >= limit {
                    return Ok(None);
                }
                *count += 1;
                None
            }
            Counts::Shared(shared) => {
                let Shared {
                    redis,
                    instance,
                    next,
                    held,
                    take,
                    ..
                } = &**shared;
                let member = format!("{instance}:{}", next.fetch_add(1, Ordering::Relaxed));
                let mut connection = redis.connection();
                let mut invocation = take.prepare_invoke();
                invocation
                    .key(redis_key(key_id))
                    .arg(limit)
                    .arg(&member)
                    .arg(LEASE.as_secs());
                let taken: i64 =
                    tokio::time::timeout(REDIS_TIMEOUT, invocation.invoke_async(&mut connection))
                        .await
                        .context("Redis did not answer")??;
                if taken == 0 {
                    return Ok(None);
                }
                lock(held).entry(key_id).or_default().insert(member.clone());
                Some(member)
            }
        };
        Ok(Some(Slot {
            slots,
            key_id,
            member,
        }))
    }

    /// Renews the leases of this instance's sockets (with Redis; nothing to do alone).
    /// A failure is logged: the next renewal comes well before the leases end.
    pub async fn renew(&self) {
        let Counts::Shared(shared) = &self.counts else {
            return;
        };
        let Shared {
            redis, held, renew, ..
        } = &**shared;
        let held: Vec<(Uuid, Vec<String>)> = lock(held)
            .iter()
            .map(|(key, members)| (*key, members.iter().cloned().collect()))
            .collect();
        for (key_id, members) in held {
            let mut connection = redis.connection();
            let mut invocation = renew.prepare_invoke();
            invocation.key(redis_key(key_id)).arg(LEASE.as_secs());
            for member in members {
                invocation.arg(member);
            }
            let renewed = tokio::time::timeout(
                REDIS_TIMEOUT,
                invocation.invoke_async::<i64>(&mut connection),
            )
            .await;
            if !matches!(renewed, Ok(Ok(_))) {
                tracing::warn!(%key_id, "stream socket leases not renewed; retrying later");
                return;
            }
        }
    }

    fn give_back(&self, key_id: Uuid, member: Option<String>) {
        match (&self.counts, member) {
            (Counts::InProcess(counts), _) => {
                let mut counts = lock(counts);
                if let Some(count) = counts.get_mut(&key_id) {
                    *count = count.saturating_sub(1);
                    if *count == 0 {
                        counts.remove(&key_id);
                    }
                }
            }
            (Counts::Shared(shared), Some(member)) => {
                let Shared { redis, held, .. } = &**shared;
                {
                    let mut held = lock(held);
                    if let Some(members) = held.get_mut(&key_id) {
                        members.remove(&member);
                        if members.is_empty() {
                            held.remove(&key_id);
                        }
                    }
                }
                // Not awaited by the socket that goes: if Redis misses it, the lease ends
                // the slot anyway.
                let redis = redis.clone();
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move {
                        let mut connection = redis.connection();
                        let command = redis::cmd("ZREM")
                            .arg(redis_key(key_id))
                            .arg(member)
                            .to_owned();
                        let _ = tokio::time::timeout(
                            REDIS_TIMEOUT,
                            command.exec_async(&mut connection),
                        )
                        .await;
                    });
                }
            }
            (Counts::Shared(_), None) => {}
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.give_back(self.key_id, self.member.take());
    }
}

fn redis_key(key_id: Uuid) -> String {
    format!("stream-sockets:{{{key_id}}}")
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_holds_at_most_its_limit_and_a_dropped_slot_frees_one() {
        let slots = Slots::new(None);
        let key = Uuid::now_v7();
        let first = slots.take(key, 2).await.expect("take").expect("first");
        let _second = slots.take(key, 2).await.expect("take").expect("second");
        assert!(slots.take(key, 2).await.expect("take").is_none(), "third");
        assert!(
            slots.take(Uuid::now_v7(), 2).await.expect("take").is_some(),
            "another key has its own"
        );
        drop(first);
        assert!(slots.take(key, 2).await.expect("take").is_some(), "freed");
        assert!(slots.take(key, 0).await.expect("take").is_none(), "none");
    }
}
