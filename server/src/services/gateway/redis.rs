//! What instances share through Redis (`MINITTER_REDIS_URL`): admission decisions, and
//! word that an operator changed keys or plans.
//!
//! **Admission** is one Lua script per request, run with EVALSHA ([`redis::Script`] loads
//! it on the first NOSCRIPT): it refills the key's token bucket from Redis' own clock
//! (instances' clocks need not agree), checks the bucket and the quota counter, and takes
//! a token and a unit only when both are there — check and count in one atomic step and
//! one round trip, so N instances together admit exactly what one would. A key's Redis
//! keys share the hash tag `{<key id>}` (`rl:{id}:bucket`, `rl:{id}:q:<period start>`), so
//! in a Redis Cluster one slot serves every decision about a key. A quota counter that
//! does not exist yet (a new period, or a Redis that lost its data) is seeded from the
//! usage ledger; the script asks for the seed instead of guessing.
//!
//! **Failure**: when Redis does not answer within [`REDIS_TIMEOUT`], the request is
//! refused with a 503 and `Retry-After` (fail closed): a partner's quota is a promise to
//! the operator as much as to the partner, and a local fallback would over-admit by up to
//! the whole plan once per instance. The connection manager reconnects in the background,
//! so admission recovers by itself when Redis returns. Plans without throttle or quota
//! never touch Redis.
//!
//! **Key changes** reach every instance as a `key.changed` event ([`crate::services::events`]), on
//! which each drops its cached keys, so a disabled, rotated or moved key is refused
//! everywhere at once (the key cache's one-second lifetime is the fallback while the
//! subscription is down).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use uuid::Uuid;

use super::GatewayError;
use super::admission::Admission;
use super::ledger::UsageLedger;
use super::limits::{Decision, PlanLimits, Verdict, quota_retry_after, throttle_retry_after};
use crate::infra::redis::{REDIS_TIMEOUT, SharedRedis};

/// The admission script. `KEYS[1]` the bucket, `KEYS[2]` the quota counter; `ARGV`:
/// rate per second and burst (0 and 0: no throttle), quota limit (0: none), seconds the
/// counter lives, the seed for a missing counter (-1: not read yet), and the quota units
/// the request takes. Returns
/// `{verdict, tokens left, used in the period}`, verdict `seed` when it needs the seed.
const ADMIT_LUA: &str = r"
local rate, burst, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local used = 0
if limit > 0 then
  local stored = redis.call('GET', KEYS[2])
  if stored then
    used = tonumber(stored)
  else
    local seed = tonumber(ARGV[5])
    if seed < 0 then return {'seed', '0', 0} end
    used = seed
    redis.call('SET', KEYS[2], seed, 'EX', ARGV[4])
  end
end
local tokens = burst
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
if rate > 0 then
  local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'at')
  if bucket[1] then
    tokens = math.min(burst, tonumber(bucket[1]) + math.max(0, t - tonumber(bucket[2])) * rate)
  end
end
local verdict = 'admitted'
if rate > 0 and tokens < 1 then
  verdict = 'throttled'
elseif limit > 0 and used >= limit then
  verdict = 'quota'
else
  if rate > 0 then tokens = tokens - 1 end
  if limit > 0 then used = redis.call('INCRBY', KEYS[2], ARGV[6]) end
end
if rate > 0 then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(t))
  redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
end
return {verdict, tostring(tokens), used}
";

/// Admission decided in Redis, exact across every instance that shares it.
pub struct RedisAdmission {
    redis: SharedRedis,
    script: redis::Script,
    ledger: Arc<UsageLedger>,
}

impl RedisAdmission {
    pub fn new(redis: SharedRedis, ledger: Arc<UsageLedger>) -> Self {
        Self {
            redis,
            script: redis::Script::new(ADMIT_LUA),
            ledger,
        }
    }

    async fn run(
        &self,
        key_id: Uuid,
        limits: PlanLimits,
        units: u64,
        now: DateTime<Utc>,
        seed: i64,
    ) -> Result<(String, String, u64), GatewayError> {
        let (rate, burst) = limits.throttle.unwrap_or((0.0, 0.0));
        let (limit, start, lives) = match limits.quota {
            Some((limit, period)) => {
                let (start, end) = period.bounds(now);
                // A day past the period's end, so a clock a little behind still finds it.
                let lives = (end - now).num_seconds().max(0) + 86_400;
                (limit, start.date_naive().to_string(), lives)
            }
            None => (0, String::new(), 1),
        };
        let mut connection = self.redis.connection();
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(format!("rl:{{{key_id}}}:bucket"))
            .key(format!("rl:{{{key_id}}}:q:{start}"))
            .arg(rate)
            .arg(burst)
            .arg(limit)
            .arg(lives)
            .arg(seed)
            .arg(units);
        let invocation = invocation.invoke_async(&mut connection);
        match tokio::time::timeout(REDIS_TIMEOUT, invocation).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(error)) => Err(GatewayError::LimiterUnavailable(error.into())),
            Err(elapsed) => Err(GatewayError::LimiterUnavailable(elapsed.into())),
        }
    }
}

impl Admission for RedisAdmission {
    fn admit(
        &self,
        key_id: Uuid,
        limits: PlanLimits,
        units: u64,
        now: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<Decision, GatewayError>> {
        Box::pin(async move {
            if limits.throttle.is_none() && limits.quota.is_none() {
                return Ok(Decision::new(Verdict::Admitted, limits, now, 0, 0.0));
            }
            let mut reply = self.run(key_id, limits, units, now, -1).await?;
            if reply.0 == "seed" {
                let start = limits.quota.map(|(_, period)| period.bounds(now).0);
                let since = start.unwrap_or(now).date_naive();
                let used = self.ledger.used_since(key_id, since).await?;
                let seed = i64::try_from(used).unwrap_or(i64::MAX);
                reply = self.run(key_id, limits, units, now, seed).await?;
            }
            let (verdict, tokens, used) = reply;
            let tokens: f64 = tokens.parse().unwrap_or(0.0);
            let verdict = match verdict.as_str() {
                "admitted" => Verdict::Admitted,
                "throttled" => Verdict::Throttled {
                    retry_after: limits
                        .throttle
                        .map_or(1, |(rate, _)| throttle_retry_after(tokens, rate)),
                },
                "quota" => Verdict::QuotaExceeded {
                    retry_after: limits
                        .quota
                        .map_or(1, |(_, period)| quota_retry_after(period, now)),
                },
                other => {
                    return Err(GatewayError::LimiterUnavailable(anyhow::anyhow!(
                        "the admission script answered {other:?}"
                    )));
                }
            };
            Ok(Decision::new(verdict, limits, now, used, tokens))
        })
    }
}
