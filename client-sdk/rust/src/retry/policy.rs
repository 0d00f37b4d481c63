//! What may be retried and how long to wait: pure decisions on a status, its headers, a
//! transport error and the request's [`RetrySafety`], kept apart from the loop that acts
//! on them (`execute`) so that every rule is tested without a server.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode};

/// How many times to retry, and how long to wait in between.
///
/// ```
/// use std::time::Duration;
/// use minitter_client::RetryPolicy;
///
/// let patient = RetryPolicy::default()
///     .max_retries(5)
///     .base_delay(Duration::from_millis(250))
///     .max_delay(Duration::from_secs(4));
/// assert_eq!(patient.max_retries, 5);
/// assert_eq!(RetryPolicy::disabled().max_retries, 0);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt; 0 disables retrying. Default 2.
    pub max_retries: u32,
    /// The backoff before the first retry is at most this; it doubles with each retry.
    /// Default 0.5 s.
    pub base_delay: Duration,
    /// The cap on a backoff delay. Default 8 s.
    pub max_delay: Duration,
    /// The longest `Retry-After` to honour; a longer one ends the retries. Default 60 s.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 2,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries (and adds no `Idempotency-Key`).
    pub fn disabled() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// Sets [`RetryPolicy::max_retries`].
    #[must_use]
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// Sets [`RetryPolicy::base_delay`].
    #[must_use]
    pub fn base_delay(mut self, delay: Duration) -> Self {
        self.base_delay = delay;
        self
    }

    /// Sets [`RetryPolicy::max_delay`].
    #[must_use]
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Sets [`RetryPolicy::max_retry_after`].
    #[must_use]
    pub fn max_retry_after(mut self, delay: Duration) -> Self {
        self.max_retry_after = delay;
        self
    }

    /// The backoff before retry number `retry` (0 for the first), with full jitter: a
    /// random duration between zero and `min(max_delay, base_delay × 2^retry)`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(retry))
            .min(self.max_delay);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::random_range(0..=nanos))
    }

    /// How long to wait before retry number `retry`, or `None` to stop: the
    /// `Retry-After` of the decision when it is not too long, else the backoff.
    pub(crate) fn delay(&self, decision: Decision, retry: u32) -> Option<Duration> {
        match decision {
            Decision::Stop => None,
            Decision::RetryAfter(wait) if wait > self.max_retry_after => None,
            Decision::RetryAfter(wait) => Some(wait),
            Decision::Backoff => Some(self.backoff(retry)),
        }
    }
}

/// Whether a request may be sent again after a failure that leaves its fate unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetrySafety {
    /// `GET`, `HEAD`, `PUT`, `DELETE`, `OPTIONS`: sending it twice does what sending it
    /// once does.
    Idempotent,
    /// A request with an `Idempotency-Key`: the server replays the first response, and
    /// answers `409 request_in_flight` while the first attempt runs.
    IdempotencyKey,
    /// A `POST` or `PATCH` without a key: retried only on `429` and when the connection
    /// could not be opened.
    NotIdempotent,
}

impl RetrySafety {
    /// The safety of a request with this method, with or without an `Idempotency-Key`.
    pub fn of(method: &Method, has_idempotency_key: bool) -> Self {
        if has_idempotency_key {
            Self::IdempotencyKey
        } else if method == Method::GET
            || method == Method::HEAD
            || method == Method::PUT
            || method == Method::DELETE
            || method == Method::OPTIONS
        {
            Self::Idempotent
        } else {
            Self::NotIdempotent
        }
    }

    fn replayable(self) -> bool {
        self != Self::NotIdempotent
    }
}

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Return this attempt's outcome.
    Stop,
    /// Retry after an exponential backoff.
    Backoff,
    /// Retry after the server's `Retry-After`.
    RetryAfter(Duration),
}

/// The decision after a transport error (no response).
pub(crate) fn error_decision(error: &reqwest::Error, safety: RetrySafety) -> Decision {
    if error.is_builder() || error.is_redirect() || error.is_status() {
        Decision::Stop
    } else if error.is_connect() || safety.replayable() {
        // A connect error means the request was never sent; anything else (a reset, a
        // timeout, a closed connection) leaves its fate unknown.
        Decision::Backoff
    } else {
        Decision::Stop
    }
}

/// Whether a response with this status might be retried for a request of this safety.
/// A `409` only when its problem says `request_in_flight`, which the caller checks.
pub(crate) fn retryable_status(status: StatusCode, safety: RetrySafety) -> bool {
    match status {
        StatusCode::TOO_MANY_REQUESTS => true,
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT => {
            safety.replayable()
        }
        StatusCode::CONFLICT => safety == RetrySafety::IdempotencyKey,
        _ => false,
    }
}

/// The decision after a response whose status [`retryable_status`] accepted.
pub(crate) fn response_decision(headers: &HeaderMap) -> Decision {
    match retry_after(headers) {
        Some(wait) => Decision::RetryAfter(wait),
        None => Decision::Backoff,
    }
}

/// The wait a `Retry-After` header asks for: delay-seconds or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = date.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(retry_after: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_str(retry_after).expect("a header value"),
        );
        headers
    }

    #[test]
    fn safety_follows_the_method_and_key() {
        use RetrySafety::*;
        assert_eq!(RetrySafety::of(&Method::GET, false), Idempotent);
        assert_eq!(RetrySafety::of(&Method::DELETE, false), Idempotent);
        assert_eq!(RetrySafety::of(&Method::PUT, false), Idempotent);
        assert_eq!(RetrySafety::of(&Method::POST, false), NotIdempotent);
        assert_eq!(RetrySafety::of(&Method::PATCH, false), NotIdempotent);
        assert_eq!(RetrySafety::of(&Method::POST, true), IdempotencyKey);
    }

    #[test]
    fn statuses_are_retried_only_when_safe() {
        use RetrySafety::*;
        let cases = [
            (429, NotIdempotent, true),
            (503, Idempotent, true),
            (502, IdempotencyKey, true),
            (504, Idempotent, true),
            (503, NotIdempotent, false),
            (409, IdempotencyKey, true),
            (409, Idempotent, false),
            (400, Idempotent, false),
            (404, Idempotent, false),
            (422, IdempotencyKey, false),
            (500, Idempotent, false),
        ];
        for (status, safety, expected) in cases {
            let status = StatusCode::from_u16(status).expect("a status");
            assert_eq!(
                retryable_status(status, safety),
                expected,
                "{status} {safety:?}"
            );
        }
        assert_eq!(response_decision(&HeaderMap::new()), Decision::Backoff);
        assert_eq!(
            response_decision(&headers("3")),
            Decision::RetryAfter(Duration::from_secs(3))
        );
    }

    #[test]
    fn a_retry_after_beyond_the_policy_stops_the_retries() {
        let policy = RetryPolicy::default().max_retry_after(Duration::from_secs(5));
        let wait = |seconds| Decision::RetryAfter(Duration::from_secs(seconds));
        assert_eq!(policy.delay(wait(5), 0), Some(Duration::from_secs(5)));
        assert_eq!(policy.delay(wait(3600), 0), None);
        assert_eq!(policy.delay(Decision::Stop, 0), None);
        let backoff = policy.delay(Decision::Backoff, 1).expect("a backoff");
        assert!(backoff <= Duration::from_secs(1), "{backoff:?}");
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(retry_after(&headers("7")), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after(&headers("Sun, 06 Nov 1994 08:49:37 GMT")),
            Some(Duration::ZERO)
        );
        let soon = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        let wait = retry_after(&headers(&soon)).expect("a date");
        assert!(
            wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert_eq!(retry_after(&headers("soon")), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn backoff_is_jittered_below_an_exponential_ceiling() {
        let policy = RetryPolicy::default();
        for retry in 0..10 {
            let ceiling = Duration::from_millis(500 * 2u64.pow(retry)).min(Duration::from_secs(8));
            for _ in 0..50 {
                assert!(policy.backoff(retry) <= ceiling);
            }
        }
        assert!((0..50).any(|_| policy.backoff(3) > Duration::from_secs(1)));
        assert_eq!(RetryPolicy::default().max_retries, 2);
    }
}
