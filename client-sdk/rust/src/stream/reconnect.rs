//! The reconnect policy, as pure functions: which failures end the stream, which
//! reconnect at once, and how long the others wait (exponential backoff with full
//! jitter, or the server's `Retry-After` when that is longer).
//!
//! It is kept apart from the socket so that every rule is unit-tested without a server,
//! and so that it can be read side by side with the TypeScript SDK's, which implements
//! the same table (the README's "Reconnecting" section is the contract both follow).
//! The random source of the jitter is a parameter ([`Backoff::delay`] takes a number in
//! `[0, 1)`), so a test pins it.

use std::time::Duration;

/// Close code: the server is going away.
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code: the client fell behind (its queue on the server overflowed).
pub const CLOSE_LAGGED: u16 = 4000;
/// Close code: the key was disabled or deleted, or the user deleted.
pub const CLOSE_UNAUTHORIZED: u16 = 4001;
/// Close code: the client broke the rules (too many refused messages, missed pings).
pub const CLOSE_POLICY: u16 = 4008;
/// Close code: the key's quota is spent.
pub const CLOSE_QUOTA: u16 = 4029;

/// Exponential backoff with full jitter: before reconnect attempt `n` (0 for the first
/// after a good connection), a random delay in `[0, min(cap, base × 2ⁿ))`.
///
/// Full jitter (rather than a fixed exponential step) spreads the clients that one
/// server restart disconnected at the same instant over the whole window, so they do
/// not come back together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
}

impl Default for Backoff {
    /// 0.5 s doubling up to 30 s, as the TypeScript SDK.
    fn default() -> Self {
        Self {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// A backoff starting at `base` and never above `cap`.
    #[must_use]
    pub const fn new(base: Duration, cap: Duration) -> Self {
        Self { base, cap }
    }

    /// `min(cap, base × 2^attempt)`: the longest delay before attempt `attempt`.
    #[must_use]
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 2u32.checked_pow(attempt).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The delay before attempt `attempt`, given `unit`, a random number in `[0, 1)`:
    /// `unit × ceiling(attempt)`. A `unit` outside `[0, 1]` (or NaN) is clamped into it.
    #[must_use]
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let unit = if unit.is_nan() {
            0.0
        } else {
            unit.clamp(0.0, 1.0)
        };
        self.ceiling(attempt).mul_f64(unit)
    }
}

/// Why a socket ended, or could not be opened; carried by
/// [`Event::Reconnecting`](super::Event::Reconnecting).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Disconnect {
    /// The server closed the socket with this code and reason.
    Closed { code: u16, reason: String },
    /// The socket ended without a close code (a reset connection, a close frame without
    /// a code, or no frame at all, not even the server's pings, for too long).
    Lost { error: String },
    /// `POST /v1/stream/tickets` was answered with this status.
    TicketRefused {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// `POST /v1/stream/tickets` got no answer (connection refused or reset, time-out).
    TicketUnreachable { error: String },
    /// The WebSocket upgrade was answered with this status instead of `101`.
    UpgradeRefused {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// The WebSocket could not be opened (no connection, failed TLS handshake, time-out).
    Unreachable { error: String },
    /// The server refused a message of the stream's as `throttled` or `unavailable`
    /// (`code`) without naming the message (its `error` carried no `id`) while
    /// subscriptions were unanswered: the stream cannot tell which subscription was not
    /// made, so it opens another socket, where each topic is subscribed to once.
    Throttled { code: String },
}

/// What to do after a [`Disconnect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// End the stream with an error: trying again with these credentials cannot help.
    Stop,
    /// Reconnect without waiting if this is the first attempt since a good connection,
    /// else after the backoff.
    AtOnce,
    /// Reconnect after the backoff, or after `at_least` when that is longer.
    Backoff { at_least: Option<Duration> },
}

/// The policy's table (the README's "Reconnecting").
pub(crate) fn plan(disconnect: &Disconnect) -> Plan {
    let backoff = Plan::Backoff { at_least: None };
    match disconnect {
        Disconnect::Closed { code, .. } => match *code {
            CLOSE_UNAUTHORIZED => Plan::Stop,
            CLOSE_LAGGED => Plan::AtOnce,
            // 1001, 4008, 4029, and anything else the server or a proxy closes with.
            _ => backoff,
        },
        Disconnect::Lost { .. }
        | Disconnect::TicketUnreachable { .. }
        | Disconnect::Unreachable { .. }
        | Disconnect::Throttled { .. } => backoff,
        Disconnect::TicketRefused {
            status,
            retry_after,
        } => match *status {
            // The key or the user's token is refused: a new ticket will not be issued.
            401 | 403 => Plan::Stop,
            429 => Plan::Backoff {
                at_least: *retry_after,
            },
            500..=599 => backoff,
            _ => Plan::Stop,
        },
        Disconnect::UpgradeRefused {
            status,
            retry_after,
        } => match *status {
            // The ticket expired or was used between its issue and the upgrade: another
            // ticket is all it takes.
            401 => Plan::AtOnce,
            429 => Plan::Backoff {
                at_least: *retry_after,
            },
            500..=599 => backoff,
            _ => Plan::Stop,
        },
    }
}

/// The wait before reconnect attempt `attempt` under `plan` (`None` for [`Plan::Stop`]),
/// with `unit` the jitter's random number in `[0, 1)`.
pub(crate) fn delay(plan: Plan, attempt: u32, backoff: &Backoff, unit: f64) -> Option<Duration> {
    match plan {
        Plan::Stop => None,
        Plan::AtOnce if attempt == 0 => Some(Duration::ZERO),
        Plan::AtOnce => Some(backoff.delay(attempt, unit)),
        Plan::Backoff { at_least } => Some(
            backoff
                .delay(attempt, unit)
                .max(at_least.unwrap_or_default()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed(code: u16) -> Disconnect {
        Disconnect::Closed {
            code,
            reason: String::new(),
        }
    }

    fn ticket(status: u16) -> Disconnect {
        Disconnect::TicketRefused {
            status,
            retry_after: None,
        }
    }

    fn upgrade(status: u16) -> Disconnect {
        Disconnect::UpgradeRefused {
            status,
            retry_after: None,
        }
    }

    #[test]
    fn the_ceiling_doubles_from_half_a_second_up_to_thirty_seconds() {
        let backoff = Backoff::default();
        let ceilings: Vec<u64> = (0..9)
            .map(|attempt| {
                u64::try_from(backoff.ceiling(attempt).as_millis()).expect("a small number")
            })
            .collect();
        assert_eq!(
            ceilings,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        // However many attempts: no overflow, still the cap.
        assert_eq!(backoff.ceiling(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn the_delay_is_the_random_fraction_of_the_ceiling() {
        let backoff = Backoff::default();
        assert_eq!(backoff.delay(0, 0.0), Duration::ZERO);
        assert_eq!(backoff.delay(0, 0.5), Duration::from_millis(250));
        assert_eq!(backoff.delay(3, 0.25), Duration::from_secs(1));
        assert_eq!(backoff.delay(20, 0.5), Duration::from_secs(15));
        // Just below 1: just below the ceiling, never above it.
        let almost = backoff.delay(2, 0.999_999);
        assert!(almost < Duration::from_secs(2) && almost > Duration::from_millis(1999));
        // A broken random source cannot make the wait unbounded or negative.
        assert_eq!(backoff.delay(1, 7.0), Duration::from_secs(1));
        assert_eq!(backoff.delay(1, -1.0), Duration::ZERO);
        assert_eq!(backoff.delay(1, f64::NAN), Duration::ZERO);
    }

    #[test]
    fn every_delay_drawn_stays_within_its_bounds() {
        let backoff = Backoff::default();
        for attempt in 0..12 {
            let ceiling = backoff.ceiling(attempt);
            for _ in 0..200 {
                let wait = backoff.delay(attempt, rand::random::<f64>());
                assert!(wait <= ceiling, "{wait:?} above {ceiling:?}");
            }
        }
    }

    #[test]
    fn revoked_credentials_end_the_stream() {
        assert_eq!(plan(&closed(4001)), Plan::Stop);
        assert_eq!(plan(&ticket(401)), Plan::Stop);
        assert_eq!(plan(&ticket(403)), Plan::Stop);
        // A request the server will never accept (a wrong base URL, say) is not retried.
        assert_eq!(plan(&ticket(404)), Plan::Stop);
        assert_eq!(plan(&upgrade(404)), Plan::Stop);
    }

    #[test]
    fn a_lagged_socket_and_an_expired_ticket_reconnect_at_once_the_first_time() {
        let backoff = Backoff::default();
        for disconnect in [closed(4000), upgrade(401)] {
            let plan = plan(&disconnect);
            assert_eq!(plan, Plan::AtOnce);
            assert_eq!(delay(plan, 0, &backoff, 0.9), Some(Duration::ZERO));
            // Not a loop without pause: a second failure in a row backs off.
            assert_eq!(
                delay(plan, 1, &backoff, 0.5),
                Some(Duration::from_millis(500))
            );
        }
    }

    #[test]
    fn other_failures_back_off() {
        let backoff = Backoff::default();
        let failures = [
            closed(1001),
            closed(4008),
            closed(4029),
            closed(1006),
            closed(1011),
            Disconnect::Lost {
                error: "reset".into(),
            },
            Disconnect::Unreachable {
                error: "refused".into(),
            },
            Disconnect::TicketUnreachable {
                error: "refused".into(),
            },
            Disconnect::Throttled {
                code: "throttled".into(),
            },
            ticket(500),
            ticket(503),
            upgrade(502),
            upgrade(503),
            ticket(429),
            upgrade(429),
        ];
        for disconnect in failures {
            let plan = plan(&disconnect);
            assert_eq!(plan, Plan::Backoff { at_least: None }, "{disconnect:?}");
            assert_eq!(
                delay(plan, 0, &backoff, 0.5),
                Some(Duration::from_millis(250))
            );
            assert_eq!(delay(plan, 4, &backoff, 0.5), Some(Duration::from_secs(4)));
        }
    }

    #[test]
    fn a_429_waits_its_retry_after_when_that_is_longer() {
        let backoff = Backoff::default();
        for disconnect in [
            Disconnect::TicketRefused {
                status: 429,
                retry_after: Some(Duration::from_secs(5)),
            },
            Disconnect::UpgradeRefused {
                status: 429,
                retry_after: Some(Duration::from_secs(5)),
            },
        ] {
            let plan = plan(&disconnect);
            assert_eq!(delay(plan, 0, &backoff, 0.9), Some(Duration::from_secs(5)));
            // The backoff wins when it is the longer wait.
            assert_eq!(delay(plan, 6, &backoff, 0.5), Some(Duration::from_secs(15)));
        }
    }

    #[test]
    fn stop_has_no_delay() {
        assert_eq!(delay(Plan::Stop, 0, &Backoff::default(), 0.5), None);
    }
}
