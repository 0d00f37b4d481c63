//! What a usage plan allows ([`PlanLimits`]), its quota periods in UTC ([`Period`]), and
//! the answer an [`super::admission::Admission`] gives for one request ([`Decision`]),
//! from which the gateway writes the rate-limit headers.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};

/// A quota period, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

/// What a usage plan allows (kept in stream tickets, which may be in Redis).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
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

impl Decision {
    /// The decision `verdict` for a key with these limits, after which `used` requests of
    /// the quota period holding `now` are spent and `tokens` are left in the bucket.
    pub fn new(
        verdict: Verdict,
        limits: PlanLimits,
        now: DateTime<Utc>,
        used: u64,
        tokens: f64,
    ) -> Self {
        let quota = limits.quota.map(|(limit, period)| {
            let (start, end) = period.bounds(now);
            QuotaState {
                limit,
                remaining: limit.saturating_sub(used),
                resets_in: u64::try_from((end - now).num_seconds()).unwrap_or(0),
                window: u64::try_from((end - start).num_seconds()).unwrap_or(0),
            }
        });
        let burst = limits.throttle.map(|(rate, burst)| BurstState {
            burst: burst as u64,
            remaining: tokens.max(0.0).floor() as u64,
            full_in: ((burst - tokens).max(0.0) / rate).ceil() as u64,
        });
        Self {
            verdict,
            quota,
            burst,
        }
    }
}

/// Seconds until a bucket holding `tokens` has one whole token again, at least one.
pub fn throttle_retry_after(tokens: f64, rate: f64) -> u64 {
    ((1.0 - tokens) / rate).ceil().max(1.0) as u64
}

/// Seconds until the quota period holding `now` ends, at least one.
pub fn quota_retry_after(period: Period, now: DateTime<Utc>) -> u64 {
    u64::try_from((period.bounds(now).1 - now).num_seconds())
        .unwrap_or(0)
        .max(1)
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
