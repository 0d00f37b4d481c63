//! Admission: may this key make a request now? A token bucket (the plan's throttle) and a
//! counter per quota period (UTC day, ISO week or calendar month), decided together: a
//! request is admitted only if a token *and* a quota unit are both available, and then
//! takes both in the same step, so refused requests consume nothing and N concurrent
//! requests against a quota of N admit exactly N.
//!
//! [`Admission`] has two implementations, chosen at startup: [`InProcessAdmission`] here
//! (one instance; the default) and [`super::redis::RedisAdmission`] (several instances
//! sharing one Redis). Counting admitted requests for reports is the
//! [`super::ledger::UsageLedger`]'s business, not admission's.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use uuid::Uuid;

use super::GatewayError;
use super::ledger::UsageLedger;
use super::limits::{Decision, PlanLimits, Verdict, quota_retry_after, throttle_retry_after};

/// Decides whether a key may make a request now, and if so takes its token (when the
/// plan throttles) and `units` of its quota (one for a request; the stream charges the
/// messages it sent in batches). A key whose quota is spent is refused; one that has
/// units left is admitted even when `units` takes it past the limit.
pub trait Admission: Send + Sync {
    fn admit(
        &self,
        key_id: Uuid,
        limits: PlanLimits,
        units: u64,
        now: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<Decision, GatewayError>>;
}

struct KeyState {
    tokens: f64,
    refilled: Instant,
    period_start: Option<DateTime<Utc>>,
    used: u64,
}

/// Buckets and quota counters in this process, for a single instance.
///
/// The hot path takes one short synchronous lock and allocates nothing once a key has
/// been seen; only the first request of a key in a quota period awaits the ledger (to
/// count what earlier runs admitted), and it does so holding no lock.
pub struct InProcessAdmission {
    ledger: Arc<UsageLedger>,
    keys: std::sync::Mutex<HashMap<Uuid, KeyState>>,
}

impl InProcessAdmission {
    pub fn new(ledger: Arc<UsageLedger>) -> Self {
        Self {
            ledger,
            keys: Default::default(),
        }
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, KeyState>> {
        self.keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Admission for InProcessAdmission {
    fn admit(
        &self,
        key_id: Uuid,
        limits: PlanLimits,
        units: u64,
        now: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<Decision, GatewayError>> {
        Box::pin(async move {
            let period = limits
                .quota
                .map(|(limit, period)| (limit, period, period.bounds(now).0));
            let fresh = |clock| KeyState {
                tokens: limits.throttle.map_or(0.0, |(_, burst)| burst),
                refilled: clock,
                period_start: None,
                used: 0,
            };

            // The first request of a period counts what earlier runs of the server
            // admitted in it, without holding the lock across the database read.
            if let Some((_, _, start)) = period {
                let loaded = self
                    .keys()
                    .get(&key_id)
                    .is_some_and(|state| state.period_start == Some(start));
                if !loaded {
                    let used = self.ledger.used_since(key_id, start.date_naive()).await?;
                    let mut keys = self.keys();
                    let state = keys.entry(key_id).or_insert_with(|| fresh(Instant::now()));
                    if state.period_start != Some(start) {
                        state.used = used;
                        state.period_start = Some(start);
                    }
                }
            }

            let mut keys = self.keys();
            let clock = Instant::now();
            let state = keys.entry(key_id).or_insert_with(|| fresh(clock));
            if let Some((rate, burst)) = limits.throttle {
                let elapsed = clock
                    .saturating_duration_since(state.refilled)
                    .as_secs_f64();
                state.tokens = (state.tokens + elapsed * rate).min(burst);
                state.refilled = clock;
            }
            let verdict = if let Some((rate, _)) = limits.throttle
                && state.tokens < 1.0
            {
                Verdict::Throttled {
                    retry_after: throttle_retry_after(state.tokens, rate),
                }
            } else if let Some((limit, period, _)) = period
                && state.used >= limit
            {
                Verdict::QuotaExceeded {
                    retry_after: quota_retry_after(period, now),
                }
            } else {
                if limits.throttle.is_some() {
                    state.tokens -= 1.0;
                }
                state.used += units;
                Verdict::Admitted
            };
            Ok(Decision::new(
                verdict,
                limits,
                now,
                state.used,
                state.tokens,
            ))
        })
    }
}
