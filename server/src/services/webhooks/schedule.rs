//! When to try a webhook delivery again, and when to stop trying an endpoint for a while
//! (issue 19). Pure functions over plain data: the store persists the numbers, the worker
//! asks these functions what they mean, and tests need no clock and no database.
//!
//! Two mechanisms, for two different failures:
//! - The **retry schedule** is per message. A receiver that is down for a deploy should
//!   get the event minutes later; one that is down for a weekend should still get it on
//!   Monday; one that is gone for good should not be hammered forever. So the gaps grow
//!   (the Standard Webhooks / Svix schedule, [`RETRY_SCHEDULE`]: 5 s up to 24 h, about
//!   three days at most) and then the delivery is given up. Each gap is drawn with *full
//!   jitter* (uniform in (0, gap], AWS Architecture Blog, "Exponential Backoff And
//!   Jitter"), so the thousand deliveries that failed together during a receiver's outage
//!   do not all come back in the same second and knock it over again.
//! - The **circuit breaker** is per endpoint. When an endpoint fails
//!   [`BreakerSettings::threshold`] times in a row, it is *open* for a cool-down: the worker
//!   sends nothing there, so a dead receiver costs one timeout per cool-down instead of one
//!   per queued message. After the cool-down it is *half-open*: one delivery goes through as
//!   a probe; success closes the breaker, failure opens it again.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;

/// The base delay before the next attempt, after the 1st, 2nd, ... failed attempt. After
/// the last entry's retry fails too, the delivery is given up: 1 + 8 attempts over at most
/// about 2.8 days (the sum of the entries; full jitter makes the typical span about half).
pub const RETRY_SCHEDULE: &[Duration] = &[
    Duration::from_secs(5),
    Duration::from_secs(60),
    Duration::from_secs(10 * 60),
    Duration::from_secs(60 * 60),
    Duration::from_secs(6 * 60 * 60),
    Duration::from_secs(12 * 60 * 60),
    Duration::from_secs(24 * 60 * 60),
    Duration::from_secs(24 * 60 * 60),
];

/// The shortest delay ever scheduled: full jitter can draw values near zero, and a retry
/// in the same instant as the failure helps nobody.
pub const MIN_DELAY: Duration = Duration::from_secs(1);

/// The most a receiver's `Retry-After` can push a retry out. A receiver asks for a pause
/// (rate limiting, maintenance) and gets it, up to this bound; beyond it, the schedule
/// decides. Without the bound, one `Retry-After: 999999999` would park a delivery past its
/// whole retry window, and a misconfigured receiver could hold every message for days
/// while the schedule believes it is still retrying.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60 * 60);

/// How long to wait before the next attempt of a delivery whose attempts have failed
/// `failed_attempts` times (counting the one that just failed), or `None` when the
/// delivery must be given up.
///
/// The delay is drawn uniformly from (0, base] at millisecond resolution, where base is
/// the schedule's entry for this failure, and is never below [`MIN_DELAY`]. A receiver's
/// `retry_after` raises it: the result is at least `min(retry_after, MAX_RETRY_AFTER)`,
/// and never less than the drawn delay. `retry_after` never revives a delivery the
/// schedule has given up. `failed_attempts == 0` is read as 1.
pub fn retry_delay(
    failed_attempts: u32,
    retry_after: Option<Duration>,
    rng: &mut impl Rng,
) -> Option<Duration> {
    let index = usize::try_from(failed_attempts.max(1) - 1).ok()?;
    let base = *RETRY_SCHEDULE.get(index)?;
    let base_millis = u64::try_from(base.as_millis()).unwrap_or(u64::MAX).max(1);
    let jittered = Duration::from_millis(rng.random_range(1..=base_millis)).max(MIN_DELAY);
    let asked = retry_after.map_or(Duration::ZERO, |asked| asked.min(MAX_RETRY_AFTER));
    Some(jittered.max(asked))
}

/// What the circuit breaker of an endpoint says about sending to it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Deliveries go through.
    Closed,
    /// Nothing is sent to the endpoint until `until`.
    Open { until: DateTime<Utc> },
    /// The cool-down is over: one delivery may go through as a probe, and its outcome
    /// closes the breaker or opens it again. (Letting only one through at a time is the
    /// worker's business; this type only keeps the counts.)
    HalfOpen,
}

impl BreakerState {
    /// The state's name in the API and in metrics: `closed`, `open` or `half_open`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open { .. } => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When a breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive failures that open the breaker.
    pub threshold: u32,
    /// How long an opened breaker stays open before a probe is let through.
    pub cool_down: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            threshold: 5,
            cool_down: Duration::from_secs(60),
        }
    }
}

/// The circuit breaker of one endpoint, as the store persists it. The default is closed,
/// with no failures.
///
/// `open_until` is set when the breaker opens and cleared only by a success, so it also
/// records that the breaker *has* opened: once the time has passed the breaker is
/// half-open, not closed. That keeps [`Breaker::state`] free of the settings (a breaker
/// only ever opens on reaching the threshold, so it needs no threshold to tell).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Breaker {
    /// Failed deliveries to the endpoint since its last success.
    pub consecutive_failures: u32,
    /// Set while the breaker is open, and after, until the next success.
    pub open_until: Option<DateTime<Utc>>,
}

impl Breaker {
    /// The breaker's state at `now`: open while `now < open_until`, half-open once that
    /// has passed, closed when it never opened since the last success.
    pub fn state(&self, now: DateTime<Utc>) -> BreakerState {
        match self.open_until {
            Some(until) if now < until => BreakerState::Open { until },
            Some(_) => BreakerState::HalfOpen,
            None => BreakerState::Closed,
        }
    }

    /// The breaker after a successful delivery: closed, with no failures.
    pub fn after_success(self) -> Breaker {
        Breaker::default()
    }

    /// The breaker after a failed delivery at `now`. The failure is counted; the breaker
    /// opens for the cool-down when the count reaches the threshold while closed, and
    /// again when a half-open probe fails. A failure while open (a delivery that was
    /// already in flight when it opened) is counted but does not extend the cool-down.
    pub fn after_failure(self, now: DateTime<Utc>, settings: &BreakerSettings) -> Breaker {
        let consecutive_failures = self.consecutive_failures.saturating_add(1);
        let open_until = match self.state(now) {
            BreakerState::Open { until } => Some(until),
            BreakerState::HalfOpen => Some(reopen(now, settings)),
            BreakerState::Closed if consecutive_failures >= settings.threshold => {
                Some(reopen(now, settings))
            }
            BreakerState::Closed => None,
        };
        Breaker {
            consecutive_failures,
            open_until,
        }
    }
}

/// The end of a cool-down starting at `now`; a cool-down too long for the calendar ends
/// at the end of time rather than wrapping.
fn reopen(now: DateTime<Utc>, settings: &BreakerSettings) -> DateTime<Utc> {
    chrono::Duration::from_std(settings.cool_down)
        .ok()
        .and_then(|cool_down| now.checked_add_signed(cool_down))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests;
