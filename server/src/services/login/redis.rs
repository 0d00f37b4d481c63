//! The budgets shared by every instance, in Redis: the same sliding logs as in
//! [`super::memory`], as sorted sets, each group decided by one Lua script so that
//! spreading guesses over instances gains an attacker nothing.

use std::time::Duration;

use futures::future::BoxFuture;
use redis::aio::ConnectionManager;
use uuid::Uuid;

use super::LoginLimits;
use super::counters::{AttemptCounters, Budget, Outcome, Verdict};
use crate::http::error::ApiError;
use crate::infra::redis::REDIS_TIMEOUT;

/// Sliding logs in Redis, shared by every instance: each budget is two sorted sets,
/// `<counter>:f` (failures, scored by when) and `<counter>:i` (reservations, scored by
/// the end of their leases). A group's counters share one hash tag (`{a:<account>}` or
/// `{k:<key id>}`), so one Redis Cluster slot decides each group. Times are Redis' own
/// (`TIME`), so instances' clocks need not agree. A Redis that does not answer refuses
/// the login with a 503, as the gateway does.
pub(super) struct RedisCounters {
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
    pub(super) fn new(connection: ConnectionManager, limits: LoginLimits) -> Self {
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
