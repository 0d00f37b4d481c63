//! Logins under attack (OWASP API2:2023, broken authentication).
//!
//! Two defences around `POST /v1/auth/token`:
//!
//! - **Wrong passwords are limited in sliding windows, per client, per account and per
//!   API key** ([`LoginGuard`]). A password is hashed only while three budgets have room:
//!   the failures of this account *from this client* (the API key and the client's
//!   address, [`Client`]), of this account from every client, and of this API key on
//!   every account. Past any of them the attempt gets a 429 with `Retry-After` and costs
//!   no hashing at all.
//!
//!   *Why per client first*: with one budget per account, anyone who knows an email could
//!   spend it and lock the owner out. The owner's client has a budget of its own, so the
//!   owner still logs in while an attacker's client is refused; only an attacker who
//!   spends the whole account's budget, from several clients, shuts the owner out too —
//!   and that budget is the brute-force bound that must hold whatever the attacker holds.
//!
//!   *Why outcomes only, with reservations*: a correct password costs nothing (so logins
//!   in parallel all succeed), and a wrong one costs one failure for the window. But an
//!   attempt's outcome is known only after its hash, so each attempt first *reserves* a
//!   slot in every budget; the slot is given back on success and becomes a failure on a
//!   wrong password. Failures plus reservations never exceed a budget, so a burst of
//!   parallel guesses cannot all be hashed before the first failure is counted. When the
//!   budget is full only of reservations, a new attempt waits for their outcomes (a hash
//!   takes tens of milliseconds) rather than being refused for them. A reservation whose
//!   outcome never comes (a crashed instance, a dropped request) is taken for a failure
//!   when its lease ends; nothing is ever forgiven beyond the attempt's own reservation,
//!   so no success can make room for more guesses than the bound.
//!
//!   *Why a sliding log*: fixed windows let twice the limit through across a window's
//!   edge. Each budget keeps the times of its failures in the window (at most `limit` of
//!   them), so "at most N failures in any window" holds exactly. Neither the gateway's
//!   token bucket nor a GCRA crate (`governor`) fits: giving a reservation back, and
//!   telling a lost one from a live one, needs the reservations themselves, which a
//!   bucket's single number does not keep (and `governor` cannot return a cell at all).
//!
//!   The budgets live where the limiter's do: in this process, or in Redis when instances
//!   share one (so spreading guesses over instances gains nothing), with one Lua script
//!   per decision. Accounts and clients are named by hashes (of the case-folded email, of
//!   the key and address), so no email or address is kept in memory or in Redis.
//! - **Password hashing runs with bounded concurrency** ([`Hashing`]): about one argon2
//!   computation per core at a time. Excess waits briefly, then gets a 503 with
//!   `Retry-After`, so a flood of logins cannot take every blocking thread and starve the
//!   rest of the API.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use redis::aio::ConnectionManager;
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::http::error::ApiError;
use crate::infra::redis::{REDIS_TIMEOUT, SharedRedis};

/// How many wrong passwords each budget allows in any `window`.
#[derive(Debug, Clone, Copy)]
pub struct LoginLimits {
    /// One account, from one client (API key and address).
    pub per_client: u64,
    /// One account, from every client together: the bound on guesses at one password.
    pub per_account: u64,
    /// One API key, on every account together.
    pub per_key: u64,
    pub window: Duration,
    /// How long an attempt in flight may hold its reservation before it is taken for a
    /// failure ([`IN_FLIGHT_LEASE`] outside tests).
    pub lease: Duration,
}

/// Far longer than a login takes (a database read, a wait for a hashing slot of at most
/// two seconds, one argon2 hash), so only a lost attempt outlives it.
pub const IN_FLIGHT_LEASE: Duration = Duration::from_secs(60);

/// How long an attempt waits for other attempts' outcomes when their reservations fill a
/// budget, before it is refused: several hashes' time.
const PATIENCE: Duration = Duration::from_secs(3);

/// Who is logging in: the API key, and the address the request came from when known.
///
/// The address is the connection's peer: behind a proxy every client has the proxy's, and
/// the client is then the key alone. IPv6 addresses count by their /64, which one
/// subscriber usually holds whole.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    pub key: Uuid,
    pub address: Option<IpAddr>,
}

impl Client {
    fn digest(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.key.as_bytes());
        match self.address.map(|address| address.to_canonical()) {
            Some(IpAddr::V4(v4)) => hasher.update(v4.octets()),
            Some(IpAddr::V6(v6)) => hasher.update(&v6.octets()[..8]),
            None => {}
        }
        hex(&hasher.finalize())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One budget: the counter it is kept in, and how many failures it allows.
#[derive(Debug, Clone)]
struct Budget {
    counter: String,
    limit: u64,
}

/// The answer to a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// A slot is held in every budget of the group.
    Reserved,
    /// Failures and reservations fill a budget: wait for the reservations' outcomes.
    Busy,
    /// Failures alone fill a budget; one leaves the window in this long.
    Spent { retry_after: Duration },
}

impl Verdict {
    /// The verdict of a group, given one budget's: spent beats busy beats reserved.
    fn and(self, other: Self) -> Self {
        match (self, other) {
            (Self::Spent { retry_after: a }, Self::Spent { retry_after: b }) => Self::Spent {
                retry_after: a.max(b),
            },
            (spent @ Self::Spent { .. }, _) | (_, spent @ Self::Spent { .. }) => spent,
            (Self::Busy, _) | (_, Self::Busy) => Self::Busy,
            _ => Self::Reserved,
        }
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// A wrong password (or an attempt that was lost): the reservation becomes a failure.
    Failed,
    /// A correct password, or nothing was hashed: the reservation is given back (and so is
    /// the failure its lost lease was taken for).
    Released,
}

/// Budgets kept as sliding logs. A group of budgets is decided in one atomic step: a
/// reservation holds a slot in each of them, or in none.
trait AttemptCounters: Send + Sync {
    fn reserve<'a>(
        &'a self,
        group: &'a [Budget],
        id: Uuid,
    ) -> BoxFuture<'a, Result<Verdict, ApiError>>;
    fn settle<'a>(
        &'a self,
        group: &'a [Budget],
        id: Uuid,
        outcome: Outcome,
    ) -> BoxFuture<'a, Result<(), ApiError>>;
}

/// The login guard every instance's `create_token` goes through.
pub struct LoginGuard {
    limits: LoginLimits,
    counters: Arc<dyn AttemptCounters>,
}

/// An attempt that was let through: report how it ended with [`Attempt::succeeded`],
/// [`Attempt::failed`] or [`Attempt::abandoned`]. Dropped without a report (the request
/// was cancelled mid-hash), it counts as a failure.
pub struct Attempt {
    id: Uuid,
    /// The account's budgets (one Redis hash tag), then the key's (another).
    groups: [Vec<Budget>; 2],
    counters: Arc<dyn AttemptCounters>,
    settled: bool,
}

impl LoginGuard {
    pub fn new(limits: LoginLimits, redis: Option<&SharedRedis>) -> Self {
        let counters: Arc<dyn AttemptCounters> = match redis {
            Some(redis) => Arc::new(RedisCounters::new(redis.connection(), limits)),
            None => Arc::new(InProcessCounters::new(limits)),
        };
        Self { limits, counters }
    }

    /// Reserves an attempt to log in to `email` from `client`, or refuses it (429) when
    /// a budget is spent by failures in the window. While in-flight attempts fill a
    /// budget, waits for their outcomes (up to a few seconds).
    pub async fn begin(&self, email: &str, client: Client) -> Result<Attempt, ApiError> {
        let account = hex(&Sha256::digest(email.to_lowercase().as_bytes()));
        let budget = |counter: String, limit| Budget { counter, limit };
        let groups = [
            vec![
                budget(
                    format!("login:{{a:{account}}}:all"),
                    self.limits.per_account,
                ),
                budget(
                    format!("login:{{a:{account}}}:c:{}", client.digest()),
                    self.limits.per_client,
                ),
            ],
            vec![budget(
                format!("login:{{k:{}}}", client.key),
                self.limits.per_key,
            )],
        ];
        let id = Uuid::now_v7();
        let deadline = Instant::now() + PATIENCE;
        let mut pause = Duration::from_millis(5);
        loop {
            match self.reserve(&groups, id).await? {
                Verdict::Reserved => {
                    return Ok(Attempt {
                        id,
                        groups,
                        counters: Arc::clone(&self.counters),
                        settled: false,
                    });
                }
                Verdict::Spent { retry_after } => {
                    return Err(ApiError::LoginThrottled {
                        retry_after: seconds(retry_after),
                    });
                }
                Verdict::Busy if Instant::now() + pause < deadline => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                Verdict::Busy => return Err(ApiError::LoginThrottled { retry_after: 1 }),
            }
        }
    }

    /// Reserves in the account's group, then the key's; gives the first back when the
    /// second is not reserved, so that a waiting attempt holds nothing.
    async fn reserve(&self, groups: &[Vec<Budget>; 2], id: Uuid) -> Result<Verdict, ApiError> {
        let [account, key] = groups;
        let verdict = self.counters.reserve(account, id).await?;
        if verdict != Verdict::Reserved {
            return Ok(verdict);
        }
        let verdict = self.counters.reserve(key, id).await;
        if verdict.as_ref().ok() != Some(&Verdict::Reserved) {
            self.counters.settle(account, id, Outcome::Released).await?;
        }
        verdict
    }
}

/// Whole seconds, rounded up, at least one: what `Retry-After` says.
fn seconds(duration: Duration) -> u64 {
    (duration.as_secs() + u64::from(duration.subsec_nanos() > 0)).max(1)
}

impl Attempt {
    /// A correct password: the attempt costs nothing.
    pub async fn succeeded(self) -> Result<(), ApiError> {
        self.settle(Outcome::Released).await
    }

    /// A wrong password (or an unknown email): one failure in every budget.
    pub async fn failed(self) -> Result<(), ApiError> {
        self.settle(Outcome::Failed).await
    }

    /// No password was checked (the database or the hashing slots did not answer): the
    /// reservation is given back.
    pub async fn abandoned(self) -> Result<(), ApiError> {
        self.settle(Outcome::Released).await
    }

    async fn settle(mut self, outcome: Outcome) -> Result<(), ApiError> {
        self.settled = true;
        for group in &self.groups {
            self.counters.settle(group, self.id, outcome).await?;
        }
        Ok(())
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        // The request was dropped after its reservation, maybe mid-hash: a failure. Without
        // a runtime (or if this fails), the lease turns it into one later.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (id, groups, counters) = (self.id, self.groups.clone(), Arc::clone(&self.counters));
            runtime.spawn(async move {
                for group in &groups {
                    let _ = counters.settle(group, id, Outcome::Failed).await;
                }
            });
        }
    }
}

/// One budget's sliding log: the failures in the window, oldest first, and the
/// reservations in flight with the end of their leases.
#[derive(Debug, Default)]
struct SlidingLog {
    failures: VecDeque<(Uuid, Instant)>,
    in_flight: Vec<(Uuid, Instant)>,
}

impl SlidingLog {
    /// Takes lost reservations for failures (from the end of their leases), and forgets
    /// failures older than the window.
    fn expire(&mut self, now: Instant, window: Duration) {
        let mut index = 0;
        while index < self.in_flight.len() {
            if self.in_flight[index].1 <= now {
                let (lost, at) = self.in_flight.swap_remove(index);
                let place = self.failures.partition_point(|(_, failed)| *failed <= at);
                self.failures.insert(place, (lost, at));
            } else {
                index += 1;
            }
        }
        while self
            .failures
            .front()
            .is_some_and(|(_, at)| *at + window <= now)
        {
            self.failures.pop_front();
        }
    }

    /// Whether one more reservation fits, after [`Self::expire`].
    fn verdict(&self, limit: u64, now: Instant, window: Duration) -> Verdict {
        let failed = self.failures.len() as u64;
        if failed >= limit {
            // The failure whose leaving brings the count below the limit.
            let index = usize::try_from(failed - limit).unwrap_or(usize::MAX);
            let retry_after = self.failures.get(index).map_or(window, |(_, at)| {
                (*at + window).saturating_duration_since(now)
            });
            Verdict::Spent { retry_after }
        } else if failed + self.in_flight.len() as u64 >= limit {
            Verdict::Busy
        } else {
            Verdict::Reserved
        }
    }

    fn settle(&mut self, id: Uuid, outcome: Outcome, now: Instant) {
        let held = self.in_flight.iter().position(|(held, _)| *held == id);
        if let Some(index) = held {
            self.in_flight.swap_remove(index);
        }
        match outcome {
            Outcome::Failed if held.is_some() => self.failures.push_back((id, now)),
            // Already a failure: its lease ended first.
            Outcome::Failed => {}
            Outcome::Released if held.is_none() => self.failures.retain(|(lost, _)| *lost != id),
            Outcome::Released => {}
        }
    }

    fn is_idle(&self, now: Instant, window: Duration) -> bool {
        self.in_flight.is_empty() && self.failures.iter().all(|(_, at)| *at + window <= now)
    }
}

/// Sliding logs in this process, for a single instance.
struct InProcessCounters {
    window: Duration,
    lease: Duration,
    /// Counter → log. Idle logs are swept when the map grows large.
    logs: Mutex<HashMap<String, SlidingLog>>,
}

/// Past this many logs the idle ones are swept.
const SWEEP_AT: usize = 100_000;

impl InProcessCounters {
    fn new(limits: LoginLimits) -> Self {
        Self {
            window: limits.window,
            lease: limits.lease,
            logs: Mutex::default(),
        }
    }

    fn logs(&self) -> std::sync::MutexGuard<'_, HashMap<String, SlidingLog>> {
        self.logs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn reserve_at(&self, group: &[Budget], id: Uuid, now: Instant) -> Verdict {
        let mut logs = self.logs();
        if logs.len() >= SWEEP_AT {
            logs.retain(|_, log| !log.is_idle(now, self.window));
        }
        let mut verdict = Verdict::Reserved;
        for budget in group {
            let log = logs.entry(budget.counter.clone()).or_default();
            log.expire(now, self.window);
            verdict = verdict.and(log.verdict(budget.limit, now, self.window));
        }
        if verdict == Verdict::Reserved {
            for budget in group {
                if let Some(log) = logs.get_mut(&budget.counter) {
                    log.in_flight.push((id, now + self.lease));
                }
            }
        }
        verdict
    }

    fn settle_at(&self, group: &[Budget], id: Uuid, outcome: Outcome, now: Instant) {
        let mut logs = self.logs();
        for budget in group {
            if let Some(log) = logs.get_mut(&budget.counter) {
                log.settle(id, outcome, now);
            }
        }
    }
}

impl AttemptCounters for InProcessCounters {
    fn reserve<'a>(
        &'a self,
        group: &'a [Budget],
        id: Uuid,
    ) -> BoxFuture<'a, Result<Verdict, ApiError>> {
        let verdict = self.reserve_at(group, id, Instant::now());
        Box::pin(std::future::ready(Ok(verdict)))
    }

    fn settle<'a>(
        &'a self,
        group: &'a [Budget],
        id: Uuid,
        outcome: Outcome,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        self.settle_at(group, id, outcome, Instant::now());
        Box::pin(std::future::ready(Ok(())))
    }
}

/// Sliding logs in Redis, shared by every instance: each budget is two sorted sets,
/// `<counter>:f` (failures, scored by when) and `<counter>:i` (reservations, scored by
/// the end of their leases). A group's counters share one hash tag (`{a:<account>}` or
/// `{k:<key id>}`), so one Redis Cluster slot decides each group. Times are Redis' own
/// (`TIME`), so instances' clocks need not agree. A Redis that does not answer refuses
/// the login with a 503, as the gateway does.
struct RedisCounters {
    connection: ConnectionManager,
    reserve: redis::Script,
    settle: redis::Script,
    window_ms: u64,
    lease_ms: u64,
}

/// `KEYS`: each budget's failures and reservations; `ARGV`: the attempt id, the window and
/// the lease in milliseconds, then each budget's limit. Returns `{verdict, retry after ms}`.
/// Every key it touches lives for a window and a lease past the last change.
const RESERVE_LUA: &str = r"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local id, window, lease = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local spent, busy, retry = false, false, 0
for b = 1, #KEYS / 2 do
  local failures, in_flight, limit = KEYS[2 * b - 1], KEYS[2 * b], tonumber(ARGV[3 + b])
  local lost = redis.call('ZRANGEBYSCORE', in_flight, '-inf', now, 'WITHSCORES')
  for i = 1, #lost, 2 do
    redis.call('ZADD', failures, lost[i + 1], lost[i])
  end
  redis.call('ZREMRANGEBYSCORE', in_flight, '-inf', now)
  redis.call('ZREMRANGEBYSCORE', failures, '-inf', now - window)
  local failed = redis.call('ZCARD', failures)
  if failed >= limit then
    spent = true
    local leaving = redis.call('ZRANGE', failures, failed - limit, failed - limit, 'WITHSCORES')
    retry = math.max(retry, tonumber(leaving[2]) + window - now)
  elseif failed + redis.call('ZCARD', in_flight) >= limit then
    busy = true
  end
end
local verdict = 'reserved'
if spent then verdict = 'spent' elseif busy then verdict = 'busy' end
for b = 1, #KEYS / 2 do
  if verdict == 'reserved' then redis.call('ZADD', KEYS[2 * b], now + lease, id) end
  redis.call('PEXPIRE', KEYS[2 * b - 1], window + lease)
  redis.call('PEXPIRE', KEYS[2 * b], window + lease)
end
return {verdict, retry}
";

/// `KEYS` as for [`RESERVE_LUA`]; `ARGV`: the attempt id, `failed` or `released`, the
/// window and the lease. A failure is recorded only for a reservation still held (a lost
/// one is one already); a release removes only this attempt's own entries, so nothing
/// goes below what other attempts left.
const SETTLE_LUA: &str = r"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local id, outcome = ARGV[1], ARGV[2]
local lives = tonumber(ARGV[3]) + tonumber(ARGV[4])
for b = 1, #KEYS / 2 do
  local failures, in_flight = KEYS[2 * b - 1], KEYS[2 * b]
  local held = redis.call('ZREM', in_flight, id)
  if outcome == 'failed' then
    if held == 1 then redis.call('ZADD', failures, now, id) end
  elseif held == 0 then
    redis.call('ZREM', failures, id)
  end
  redis.call('PEXPIRE', failures, lives)
  redis.call('PEXPIRE', in_flight, lives)
end
return 1
";

impl RedisCounters {
    fn new(connection: ConnectionManager, limits: LoginLimits) -> Self {
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1);
        Self {
            connection,
            reserve: redis::Script::new(RESERVE_LUA),
            settle: redis::Script::new(SETTLE_LUA),
            window_ms: millis(limits.window),
            lease_ms: millis(limits.lease),
        }
    }

    fn invocation<'a>(script: &'a redis::Script, group: &[Budget]) -> redis::ScriptInvocation<'a> {
        let mut invocation = script.prepare_invoke();
        for budget in group {
            invocation
                .key(format!("{}:f", budget.counter))
                .key(format!("{}:i", budget.counter));
        }
        invocation
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<T, ApiError> {
        let mut connection = self.connection.clone();
        match tokio::time::timeout(REDIS_TIMEOUT, invocation.invoke_async(&mut connection)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(ApiError::Unavailable(error.into())),
            Err(elapsed) => Err(ApiError::Unavailable(elapsed.into())),
        }
    }
}

impl AttemptCounters for RedisCounters {
    fn reserve<'a>(
        &'a self,
        group: &'a [Budget],
        id: Uuid,
    ) -> BoxFuture<'a, Result<Verdict, ApiError>> {
        Box::pin(async move {
            let mut invocation = Self::invocation(&self.reserve, group);
            invocation
                .arg(id.to_string())
                .arg(self.window_ms)
                .arg(self.lease_ms);
            for budget in group {
                invocation.arg(budget.limit);
            }
            let (verdict, retry_ms): (String, i64) = self.run(invocation).await?;
            match verdict.as_str() {
                "reserved" => Ok(Verdict::Reserved),
                "busy" => Ok(Verdict::Busy),
                "spent" => Ok(Verdict::Spent {
                    retry_after: Duration::from_millis(u64::try_from(retry_ms).unwrap_or(0)),
                }),
                other => Err(ApiError::Unavailable(anyhow::anyhow!(
                    "the login reservation script answered {other:?}"
                ))),
            }
        })
    }

    fn settle<'a>(
        &'a self,
        group: &'a [Budget],
        id: Uuid,
        outcome: Outcome,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let mut invocation = Self::invocation(&self.settle, group);
            invocation
                .arg(id.to_string())
                .arg(match outcome {
                    Outcome::Failed => "failed",
                    Outcome::Released => "released",
                })
                .arg(self.window_ms)
                .arg(self.lease_ms);
            let _: i64 = self.run(invocation).await?;
            Ok(())
        })
    }
}

/// Argon2 with bounded concurrency: at most `permits` hashes at once.
pub struct Hashing {
    permits: tokio::sync::Semaphore,
    /// How long an excess request waits for a permit before it gets a 503.
    patience: Duration,
}

impl Hashing {
    /// One permit per core: argon2 is CPU-bound, so more at once only queue in the kernel.
    pub fn per_core() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        Self {
            permits: tokio::sync::Semaphore::new(cores),
            patience: Duration::from_secs(2),
        }
    }

    async fn permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, ApiError> {
        match tokio::time::timeout(self.patience, self.permits.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(ApiError::Unavailable(anyhow::anyhow!(
                "every password-hashing slot is busy"
            ))),
        }
    }

    /// [`crate::services::auth::hash_password`], when a slot is free.
    pub async fn hash(&self, password: SecretString) -> Result<String, ApiError> {
        let _permit = self.permit().await?;
        crate::services::auth::hash_password(password)
            .await
            .map_err(ApiError::Internal)
    }

    /// [`crate::services::auth::verify_password`], when a slot is free.
    pub async fn verify(
        &self,
        password: SecretString,
        hash: Option<String>,
    ) -> Result<bool, ApiError> {
        let _permit = self.permit().await?;
        crate::services::auth::verify_password(password, hash)
            .await
            .map_err(ApiError::Internal)
    }
}

impl std::fmt::Debug for LoginGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginGuard")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Hashing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hashing").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(60);
    const LEASE: Duration = Duration::from_secs(5);

    fn limits(per_client: u64, per_account: u64, per_key: u64) -> LoginLimits {
        LoginLimits {
            per_client,
            per_account,
            per_key,
            window: WINDOW,
            lease: LEASE,
        }
    }

    fn counters() -> InProcessCounters {
        InProcessCounters::new(limits(0, 0, 0))
    }

    fn group(limits: &[u64]) -> Vec<Budget> {
        limits
            .iter()
            .enumerate()
            .map(|(n, &limit)| Budget {
                counter: format!("budget {n}"),
                limit,
            })
            .collect()
    }

    fn client(key: Uuid, address: &str) -> Client {
        Client {
            key,
            address: Some(address.parse().expect("an address")),
        }
    }

    /// Reserves then fails `n` attempts at `at`; returns how many were heard.
    fn fail(counters: &InProcessCounters, group: &[Budget], n: usize, at: Instant) -> usize {
        (0..n)
            .filter(|_| {
                let id = Uuid::now_v7();
                let heard = counters.reserve_at(group, id, at) == Verdict::Reserved;
                counters.settle_at(group, id, Outcome::Failed, at);
                heard
            })
            .count()
    }

    #[test]
    fn reservations_in_flight_bound_a_burst_before_any_outcome_is_known() {
        let (counters, group, now) = (counters(), group(&[3]), Instant::now());
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        for id in &ids {
            assert_eq!(counters.reserve_at(&group, *id, now), Verdict::Reserved);
        }
        // A fourth guess waits: the three may all turn out wrong.
        assert_eq!(
            counters.reserve_at(&group, Uuid::now_v7(), now),
            Verdict::Busy
        );
        for id in &ids {
            counters.settle_at(&group, *id, Outcome::Failed, now);
        }
        assert!(matches!(
            counters.reserve_at(&group, Uuid::now_v7(), now),
            Verdict::Spent { retry_after } if retry_after == WINDOW
        ));
    }

    #[test]
    fn successes_give_their_slot_back_and_forgive_nothing_else() {
        let (counters, group, now) = (counters(), group(&[2]), Instant::now());
        assert_eq!(fail(&counters, &group, 1, now), 1);
        // Any number of correct passwords, one after another or two at a time.
        for _ in 0..10 {
            let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
            assert_eq!(counters.reserve_at(&group, a, now), Verdict::Reserved);
            assert_eq!(counters.reserve_at(&group, b, now), Verdict::Busy);
            counters.settle_at(&group, a, Outcome::Released, now);
        }
        // The earlier failure is still counted: one more wrong guess, then none.
        assert_eq!(fail(&counters, &group, 5, now), 1);
    }

    #[test]
    fn the_window_slides_so_no_edge_lets_twice_the_limit_through() {
        let (counters, group, start) = (counters(), group(&[3]), Instant::now());
        assert_eq!(fail(&counters, &group, 1, start), 1);
        let before_edge = start + WINDOW - Duration::from_secs(1);
        assert_eq!(fail(&counters, &group, 5, before_edge), 2);
        // A fixed window would start afresh here and hear three more.
        let after_edge = start + WINDOW + Duration::from_secs(1);
        assert_eq!(fail(&counters, &group, 5, after_edge), 1);
        // Refused until the failure from before the edge leaves the window.
        match counters.reserve_at(&group, Uuid::now_v7(), after_edge) {
            Verdict::Spent { retry_after } => {
                assert_eq!(retry_after, WINDOW - Duration::from_secs(2));
            }
            other => panic!("expected spent, got {other:?}"),
        }
        assert_eq!(fail(&counters, &group, 5, before_edge + WINDOW), 2);
    }

    #[test]
    fn a_lost_reservation_is_a_failure_until_its_outcome_says_otherwise() {
        let (counters, group, now) = (counters(), group(&[1]), Instant::now());
        let lost = Uuid::now_v7();
        assert_eq!(counters.reserve_at(&group, lost, now), Verdict::Reserved);
        let later = now + LEASE;
        assert!(matches!(
            counters.reserve_at(&group, Uuid::now_v7(), later),
            Verdict::Spent { .. }
        ));
        // Its late failure is not counted twice; its late success takes it back.
        counters.settle_at(&group, lost, Outcome::Failed, later);
        assert_eq!(
            counters.logs()["budget 0"].failures.len(),
            1,
            "one failure, not two"
        );
        counters.settle_at(&group, lost, Outcome::Released, later);
        assert_eq!(fail(&counters, &group, 3, later), 1);
    }

    #[test]
    fn a_success_after_its_window_ended_forgives_nothing_it_did_not_take() {
        let (counters, group, now) = (counters(), group(&[2]), Instant::now());
        let slow = Uuid::now_v7();
        assert_eq!(counters.reserve_at(&group, slow, now), Verdict::Reserved);
        let much_later = now + LEASE + WINDOW + Duration::from_secs(1);
        // Its lease ran out and the failure it was taken for left the window before the
        // success came: the success takes nothing back from anyone else.
        let other = Uuid::now_v7();
        assert_eq!(
            counters.reserve_at(&group, other, much_later),
            Verdict::Reserved
        );
        counters.settle_at(&group, slow, Outcome::Released, much_later);
        counters.settle_at(&group, other, Outcome::Released, much_later);
        assert_eq!(fail(&counters, &group, 5, much_later), 2);
    }

    #[test]
    fn a_group_reserves_in_every_budget_or_in_none() {
        let (counters, now) = (counters(), Instant::now());
        let wide = group(&[10, 1]);
        assert_eq!(fail(&counters, &wide, 3, now), 1);
        let logs = counters.logs();
        assert_eq!(logs["budget 0"].failures.len(), 1);
        assert!(logs["budget 0"].in_flight.is_empty());
    }

    #[test]
    fn clients_are_a_key_and_an_address_and_ipv6_counts_by_its_64() {
        let key = Uuid::now_v7();
        let digest = |address| client(key, address).digest();
        assert_eq!(digest("2001:db8:1:2::1"), digest("2001:db8:1:2:ffff::9"));
        assert_ne!(digest("2001:db8:1:2::1"), digest("2001:db8:1:3::1"));
        assert_eq!(digest("192.0.2.7"), digest("::ffff:192.0.2.7"));
        assert_ne!(digest("192.0.2.7"), digest("192.0.2.8"));
        assert_ne!(
            digest("192.0.2.7"),
            client(Uuid::now_v7(), "192.0.2.7").digest()
        );
    }

    #[tokio::test]
    async fn an_attackers_failures_leave_the_owners_client_its_own_budget() {
        let guard = LoginGuard::new(limits(2, 5, 100), None);
        let (attacker, owner) = (
            client(Uuid::now_v7(), "192.0.2.1"),
            client(Uuid::now_v7(), "198.51.100.1"),
        );
        for _ in 0..2 {
            let attempt = guard.begin("Ada@example.com", attacker).await;
            attempt.expect("heard").failed().await.expect("counted");
        }
        let refused = guard.begin("ada@EXAMPLE.com", attacker).await;
        assert!(matches!(
            refused,
            Err(ApiError::LoginThrottled { retry_after }) if retry_after > 0
        ));
        let owner = guard.begin("ada@example.com", owner).await;
        owner.expect("heard").succeeded().await.expect("released");
    }

    #[tokio::test]
    async fn the_account_bound_holds_whatever_the_number_of_clients() {
        let guard = LoginGuard::new(limits(2, 5, 100), None);
        let mut heard = 0;
        for n in 0..20 {
            let attacker = client(Uuid::now_v7(), &format!("192.0.2.{n}"));
            if let Ok(attempt) = guard.begin("ada@example.com", attacker).await {
                heard += 1;
                attempt.failed().await.expect("counted");
            }
        }
        assert_eq!(heard, 5);
        let owner = client(Uuid::now_v7(), "198.51.100.1");
        assert!(guard.begin("ada@example.com", owner).await.is_err());
    }

    #[tokio::test]
    async fn a_key_is_bounded_across_accounts() {
        let guard = LoginGuard::new(limits(5, 20, 3), None);
        let sprayer = client(Uuid::now_v7(), "192.0.2.1");
        for n in 0..3 {
            let attempt = guard.begin(&format!("user{n}@example.com"), sprayer).await;
            attempt.expect("heard").failed().await.expect("counted");
        }
        assert!(guard.begin("user9@example.com", sprayer).await.is_err());
        let other = client(Uuid::now_v7(), "192.0.2.1");
        assert!(guard.begin("user9@example.com", other).await.is_ok());
    }

    #[tokio::test]
    async fn an_attempt_waits_for_reservations_in_flight_instead_of_being_refused() {
        let guard = LoginGuard::new(limits(1, 5, 100), None);
        let owner = client(Uuid::now_v7(), "198.51.100.1");
        let first = guard.begin("ada@example.com", owner).await.expect("heard");
        let release = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            first.succeeded().await
        };
        let (second, released) = tokio::join!(guard.begin("ada@example.com", owner), release);
        released.expect("released");
        second
            .expect("heard once the first succeeded")
            .succeeded()
            .await
            .expect("released");
    }

    #[tokio::test]
    async fn a_dropped_attempt_counts_as_a_failure() {
        let guard = LoginGuard::new(limits(1, 5, 100), None);
        let owner = client(Uuid::now_v7(), "198.51.100.1");
        drop(guard.begin("ada@example.com", owner).await.expect("heard"));
        tokio::task::yield_now().await;
        assert!(matches!(
            guard.begin("ada@example.com", owner).await,
            Err(ApiError::LoginThrottled { .. })
        ));
    }

    #[tokio::test]
    async fn hashing_past_its_slots_is_a_503_after_a_short_wait() {
        let hashing = Hashing {
            permits: tokio::sync::Semaphore::new(1),
            patience: Duration::from_millis(20),
        };
        let _busy = hashing.permit().await.expect("the one slot");
        let refused = hashing
            .verify(SecretString::from("guess".to_owned()), None)
            .await;
        assert!(matches!(refused, Err(ApiError::Unavailable(_))));
    }
}
