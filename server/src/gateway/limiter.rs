//! Throttle (token bucket) and quota (per UTC day, ISO week or calendar month) per key.
//!
//! [`Limiter`] is a trait so that several instances can share counters in Redis; this
//! file's [`InProcessLimiter`] keeps them in this process. A request is admitted only if
//! a token *and* a quota unit are both available, and then takes both under one lock:
//! rejected requests consume nothing, and N concurrent requests against a quota of N
//! admit exactly N. Admitted requests are also counted per key per UTC day for the
//! `usage` table, flushed about once a second, so a crash loses about a second of counts.

use std::collections::HashMap;
use std::time::Instant;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use futures::future::BoxFuture;

use uuid::Uuid;

use crate::store::{SharedStore, StoreError, UsageCount};

/// A quota period, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Week,
    Month,
}

impl Period {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "DAY" => Some(Self::Day),
            "WEEK" => Some(Self::Week),
            "MONTH" => Some(Self::Month),
            _ => None,
        }
    }

    /// The start and the end of the period that holds `now`.
    pub fn bounds(self, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let today = now.date_naive();
        let (start, end) = match self {
            Self::Day => (today, today + Duration::days(1)),
            Self::Week => {
                let monday =
                    today - Duration::days(i64::from(today.weekday().num_days_from_monday()));
                (monday, monday + Duration::days(7))
            }
            Self::Month => {
                let first = today.with_day(1).unwrap_or(today);
                let next = if first.month() == 12 {
                    NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
                } else {
                    NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
                };
                (first, next.unwrap_or(first + Duration::days(31)))
            }
        };
        let midnight =
            |day: NaiveDate| Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).unwrap_or_default());
        (midnight(start), midnight(end))
    }
}

/// What a usage plan allows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlanLimits {
    /// Requests per second, and the bucket size.
    pub throttle: Option<(f64, f64)>,
    /// Requests per period.
    pub quota: Option<(u64, Period)>,
}

/// Where a key stands against its quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaState {
    pub limit: u64,
    pub remaining: u64,
    /// Seconds until the period ends.
    pub resets_in: u64,
    /// The period's length in seconds.
    pub window: u64,
}

/// Where a key stands against its throttle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BurstState {
    pub burst: u64,
    pub remaining: u64,
    /// Seconds until the bucket is full again.
    pub full_in: u64,
}

/// The limiter's answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub quota: Option<QuotaState>,
    pub burst: Option<BurstState>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Admitted,
    /// Over the rate: retry after this many seconds.
    Throttled {
        retry_after: u64,
    },
    /// The quota is spent until the period ends, in this many seconds.
    QuotaExceeded {
        retry_after: u64,
    },
}

/// Decides whether a key may make a request now, and counts it if so.
pub trait Limiter: Send + Sync {
    fn acquire<'a>(
        &'a self,
        key_id: Uuid,
        limits: PlanLimits,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Decision, StoreError>>;

    /// Writes the counts admitted since the last flush to the `usage` table.
    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Requests admitted for a key on UTC days `since..`, written or not.
    fn used_since(&self, key_id: Uuid, since: NaiveDate) -> BoxFuture<'_, Result<u64, StoreError>>;
}

struct KeyState {
    tokens: f64,
    refilled: Instant,
    period_start: Option<DateTime<Utc>>,
    used: u64,
}

/// Admitted requests not yet written: key id → UTC day → count.
type Pending = HashMap<Uuid, HashMap<NaiveDate, u64>>;

/// Counters in this process, for a single instance.
///
/// The hot path takes two short synchronous locks and allocates nothing once a key has
/// been seen; only the first request of a key in a quota period awaits the database (to
/// count what earlier runs admitted), and it does so holding no lock.
pub struct InProcessLimiter {
    store: SharedStore,
    keys: std::sync::Mutex<HashMap<Uuid, KeyState>>,
    pending: std::sync::Mutex<Pending>,
}

impl InProcessLimiter {
    pub fn new(store: SharedStore) -> Self {
        Self {
            store,
            keys: Default::default(),
            pending: Default::default(),
        }
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, KeyState>> {
        self.keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Admitted requests of a key on days `since..` not yet written.
    fn unflushed_since(&self, key_id: Uuid, since: NaiveDate) -> u64 {
        self.pending().get(&key_id).map_or(0, |days| {
            days.iter()
                .filter(|(day, _)| **day >= since)
                .map(|(_, n)| n)
                .sum()
        })
    }

    fn count(&self, key_id: Uuid, day: NaiveDate) {
        *self
            .pending()
            .entry(key_id)
            .or_default()
            .entry(day)
            .or_default() += 1;
    }
}

impl Limiter for InProcessLimiter {
    fn acquire<'a>(
        &'a self,
        key_id: Uuid,
        limits: PlanLimits,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Decision, StoreError>> {
        Box::pin(async move {
            let period = limits
                .quota
                .map(|(limit, period)| (limit, period.bounds(now)));

            // The first request of a period counts what earlier runs of the server
            // admitted in it, without holding a lock across the database read.
            if let Some((_, (start, _))) = period {
                let loaded = self
                    .keys()
                    .get(&key_id)
                    .is_some_and(|state| state.period_start == Some(start));
                if !loaded {
                    let since = start.date_naive();
                    let stored = self.store.usage_since(key_id, since).await?;
                    let used = stored + self.unflushed_since(key_id, since);
                    let mut keys = self.keys();
                    let state = keys.entry(key_id).or_insert_with(|| KeyState {
                        tokens: limits.throttle.map_or(0.0, |(_, burst)| burst),
                        refilled: Instant::now(),
                        period_start: None,
                        used: 0,
                    });
                    if state.period_start != Some(start) {
                        state.used = used;
                        state.period_start = Some(start);
                    }
                }
            }

            let mut keys = self.keys();
            let clock = Instant::now();
            let state = keys.entry(key_id).or_insert_with(|| KeyState {
                tokens: limits.throttle.map_or(0.0, |(_, burst)| burst),
                refilled: clock,
                period_start: None,
                used: 0,
            });

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
                    retry_after: ((1.0 - state.tokens) / rate).ceil().max(1.0) as u64,
                }
            } else if let Some((limit, (_, end))) = period
                && state.used >= limit
            {
                Verdict::QuotaExceeded {
                    retry_after: u64::try_from((end - now).num_seconds()).unwrap_or(0).max(1),
                }
            } else {
                if limits.throttle.is_some() {
                    state.tokens -= 1.0;
                }
                state.used += 1;
                Verdict::Admitted
            };
            let (used, tokens) = (state.used, state.tokens);
            drop(keys);
            if verdict == Verdict::Admitted {
                self.count(key_id, now.date_naive());
            }

            let quota = period.map(|(limit, (start, end))| QuotaState {
                limit,
                remaining: limit.saturating_sub(used),
                resets_in: u64::try_from((end - now).num_seconds()).unwrap_or(0),
                window: u64::try_from((end - start).num_seconds()).unwrap_or(0),
            });
            let burst = limits.throttle.map(|(rate, burst)| BurstState {
                burst: burst as u64,
                remaining: tokens.max(0.0).floor() as u64,
                full_in: ((burst - tokens).max(0.0) / rate).ceil() as u64,
            });
            Ok(Decision {
                verdict,
                quota,
                burst,
            })
        })
    }

    fn used_since(&self, key_id: Uuid, since: NaiveDate) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            Ok(self.store.usage_since(key_id, since).await? + self.unflushed_since(key_id, since))
        })
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let batch: Vec<UsageCount> = std::mem::take(&mut *self.pending())
                .into_iter()
                .flat_map(|(key_id, days)| {
                    days.into_iter()
                        .map(move |(day, used)| UsageCount { key_id, day, used })
                })
                .collect();
            if batch.is_empty() {
                return Ok(());
            }
            if let Err(error) = self.store.add_usage(&batch).await {
                // Keep the counts for the next flush: nothing admitted is lost.
                let mut pending = self.pending();
                for count in batch {
                    *pending
                        .entry(count.key_id)
                        .or_default()
                        .entry(count.day)
                        .or_default() += count.used;
                }
                return Err(error);
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn periods_are_utc_days_iso_weeks_and_calendar_months() {
        let now = at("2026-11-21T15:30:00Z"); // a Saturday
        assert_eq!(
            Period::Day.bounds(now),
            (at("2026-11-21T00:00:00Z"), at("2026-11-22T00:00:00Z"))
        );
        assert_eq!(
            Period::Week.bounds(now),
            (at("2026-11-16T00:00:00Z"), at("2026-11-23T00:00:00Z"))
        );
        assert_eq!(
            Period::Month.bounds(now),
            (at("2026-11-01T00:00:00Z"), at("2026-12-01T00:00:00Z"))
        );
        let december = at("2026-12-31T23:59:59Z");
        assert_eq!(Period::Month.bounds(december).1, at("2027-01-01T00:00:00Z"));
    }
}
