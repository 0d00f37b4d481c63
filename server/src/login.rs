//! Logins under attack (OWASP API2:2023, broken authentication).
//!
//! Two defences around `POST /v1/auth/token`:
//!
//! - **Failed logins are counted per account and per API key** in fixed windows. An
//!   attempt is counted *before* its password is hashed, so a burst of concurrent guesses
//!   cannot slip past the limit; past it, attempts get a 429 with `Retry-After` (the
//!   window's end) and cost no hashing at all. A successful login forgives the account's
//!   count (and its own attempt on the key's). The counters live where the limiter's do:
//!   in this process, or in Redis when instances share one (so a guesser gains nothing by
//!   spreading attempts over instances). Accounts are counted by a hash of the
//!   case-folded email, so no email is kept in memory or in Redis.
//! - **Password hashing runs with bounded concurrency** ([`Hashing`]): about one argon2
//!   computation per core at a time. Excess waits briefly, then gets a 503 with
//!   `Retry-After`, so a flood of logins cannot take every blocking thread and starve the
//!   rest of the API.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use redis::aio::ConnectionManager;
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::ApiError;
use crate::gateway::redis::{REDIS_TIMEOUT, SharedRedis};

/// How many failures an account and a key may have in a window, and the window.
#[derive(Debug, Clone, Copy)]
pub struct LoginLimits {
    pub per_account: u64,
    pub per_key: u64,
    pub window: Duration,
}

/// Counters of login attempts in fixed windows: `count` adds one and returns the count
/// and the seconds left in the window; `forgive` takes one back (or all, for an account).
pub trait AttemptCounters: Send + Sync {
    fn count(
        &self,
        counter: String,
        window: Duration,
    ) -> BoxFuture<'_, Result<(u64, u64), ApiError>>;
    fn forgive(&self, counter: String, all: bool) -> BoxFuture<'_, Result<(), ApiError>>;
}

/// The login guard every instance's `create_token` goes through.
pub struct LoginGuard {
    limits: LoginLimits,
    counters: Box<dyn AttemptCounters>,
}

/// An attempt that was let through: report how it ended.
#[derive(Debug)]
pub struct Attempt {
    account: String,
    key: String,
}

impl LoginGuard {
    pub fn new(limits: LoginLimits, redis: Option<&SharedRedis>) -> Self {
        let counters: Box<dyn AttemptCounters> = match redis {
            Some(redis) => Box::new(RedisCounters(redis.connection())),
            None => Box::new(InProcessCounters::default()),
        };
        Self { limits, counters }
    }

    /// Counts an attempt to log in to `email` with `key`, or refuses it (429) when the
    /// account or the key has failed too often in the current window.
    pub async fn begin(&self, email: &str, key: Uuid) -> Result<Attempt, ApiError> {
        let digest = Sha256::digest(email.to_lowercase().as_bytes());
        let account: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        let attempt = Attempt {
            account: format!("login:{{account:{account}}}"),
            key: format!("login:{{key:{key}}}"),
        };
        let window = self.limits.window;
        let (by_account, account_left) =
            self.counters.count(attempt.account.clone(), window).await?;
        let (by_key, key_left) = self.counters.count(attempt.key.clone(), window).await?;
        // The first attempt past a limit is refused too: `count` includes this one.
        if by_account > self.limits.per_account || by_key > self.limits.per_key {
            let retry_after = match (
                by_account > self.limits.per_account,
                by_key > self.limits.per_key,
            ) {
                (true, true) => account_left.max(key_left),
                (true, false) => account_left,
                _ => key_left,
            };
            return Err(ApiError::LoginThrottled {
                retry_after: retry_after.max(1),
            });
        }
        Ok(attempt)
    }

    /// A correct password: the account starts afresh, and the attempt does not count
    /// against the key.
    pub async fn succeeded(&self, attempt: Attempt) -> Result<(), ApiError> {
        self.counters.forgive(attempt.account, true).await?;
        self.counters.forgive(attempt.key, false).await
    }
}

/// Counters in this process, for a single instance.
#[derive(Default)]
struct InProcessCounters {
    /// Counter → (count, window end). Expired entries are dropped as they are met, and all
    /// of them when the map grows large.
    counts: Mutex<HashMap<String, (u64, Instant)>>,
}

/// Past this many counters the expired ones are swept.
const SWEEP_AT: usize = 100_000;

impl AttemptCounters for InProcessCounters {
    fn count(
        &self,
        counter: String,
        window: Duration,
    ) -> BoxFuture<'_, Result<(u64, u64), ApiError>> {
        let now = Instant::now();
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if counts.len() >= SWEEP_AT {
            counts.retain(|_, (_, end)| *end > now);
        }
        let entry = counts.entry(counter).or_insert((0, now + window));
        if entry.1 <= now {
            *entry = (0, now + window);
        }
        entry.0 += 1;
        let left = entry.1.saturating_duration_since(now).as_secs();
        let count = entry.0;
        Box::pin(std::future::ready(Ok((count, left))))
    }

    fn forgive(&self, counter: String, all: bool) -> BoxFuture<'_, Result<(), ApiError>> {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if all {
            counts.remove(&counter);
        } else if let Some(entry) = counts.get_mut(&counter) {
            entry.0 = entry.0.saturating_sub(1);
        }
        Box::pin(std::future::ready(Ok(())))
    }
}

/// Counters in Redis, shared by every instance. Each counter is one key (hash-tagged by
/// itself, so any Redis Cluster slot will do); a Redis that does not answer refuses the
/// login with a 503, as the gateway does.
struct RedisCounters(ConnectionManager);

/// `INCR`, and start the window on the first count; returns the count and the seconds left.
const COUNT_LUA: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return {n, redis.call('TTL', KEYS[1])}
";

impl RedisCounters {
    async fn run<T: redis::FromRedisValue>(&self, command: redis::Cmd) -> Result<T, ApiError> {
        let mut connection = self.0.clone();
        match tokio::time::timeout(REDIS_TIMEOUT, command.query_async(&mut connection)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(ApiError::Unavailable(error.into())),
            Err(elapsed) => Err(ApiError::Unavailable(elapsed.into())),
        }
    }
}

impl AttemptCounters for RedisCounters {
    fn count(
        &self,
        counter: String,
        window: Duration,
    ) -> BoxFuture<'_, Result<(u64, u64), ApiError>> {
        Box::pin(async move {
            let mut command = redis::cmd("EVAL");
            command
                .arg(COUNT_LUA)
                .arg(1)
                .arg(counter)
                .arg(window.as_secs().max(1));
            let (count, left): (u64, i64) = self.run(command).await?;
            Ok((count, u64::try_from(left).unwrap_or(0)))
        })
    }

    fn forgive(&self, counter: String, all: bool) -> BoxFuture<'_, Result<(), ApiError>> {
        Box::pin(async move {
            let mut command = redis::cmd(if all { "DEL" } else { "DECR" });
            command.arg(counter);
            let _: i64 = self.run(command).await?;
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

    /// [`crate::auth::hash_password`], when a slot is free.
    pub async fn hash(&self, password: SecretString) -> Result<String, ApiError> {
        let _permit = self.permit().await?;
        crate::auth::hash_password(password)
            .await
            .map_err(ApiError::Internal)
    }

    /// [`crate::auth::verify_password`], when a slot is free.
    pub async fn verify(
        &self,
        password: SecretString,
        hash: Option<String>,
    ) -> Result<bool, ApiError> {
        let _permit = self.permit().await?;
        crate::auth::verify_password(password, hash)
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

    fn guard(per_account: u64, per_key: u64) -> LoginGuard {
        LoginGuard::new(
            LoginLimits {
                per_account,
                per_key,
                window: Duration::from_secs(60),
            },
            None,
        )
    }

    #[tokio::test]
    async fn an_account_is_refused_past_its_failures_and_forgiven_by_a_success() {
        let guard = guard(2, 100);
        let key = Uuid::now_v7();
        for _ in 0..2 {
            guard.begin("Ada@example.com", key).await.expect("allowed");
        }
        let refused = guard.begin("ada@EXAMPLE.com", key).await;
        assert!(
            matches!(refused, Err(ApiError::LoginThrottled { retry_after }) if retry_after > 0)
        );
        // Another account is unaffected, and a success there resets nothing here.
        let other = guard.begin("bob@example.com", key).await.expect("allowed");
        guard.succeeded(other).await.expect("forgiven");
        assert!(guard.begin("ada@example.com", key).await.is_err());
    }

    #[tokio::test]
    async fn a_key_is_refused_past_its_failures_whatever_the_account() {
        let guard = guard(100, 3);
        let key = Uuid::now_v7();
        for n in 0..3 {
            guard
                .begin(&format!("user{n}@example.com"), key)
                .await
                .expect("allowed");
        }
        assert!(guard.begin("user9@example.com", key).await.is_err());
        assert!(
            guard
                .begin("user9@example.com", Uuid::now_v7())
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn successes_do_not_count_against_the_key() {
        let guard = guard(100, 2);
        let key = Uuid::now_v7();
        for n in 0..5 {
            let attempt = guard
                .begin(&format!("u{n}@example.com"), key)
                .await
                .expect("allowed");
            guard.succeeded(attempt).await.expect("forgiven");
        }
        assert!(guard.begin("last@example.com", key).await.is_ok());
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
