//! The pace of the stream's own messages: a token bucket, unit-tested on its own.

use std::time::Duration;

use tokio::time::Instant;

/// The stream's own pace for its messages: under the server's per-socket limit
/// (`asyncapi.yaml`: 10 a second, in bursts of 20) with a margin for the network's
/// jitter, so that a stream of many topics is not throttled by its own subscriptions.
const PACE_BURST: f64 = 16.0;
const PACE_PER_SECOND: f64 = 8.0;
/// A token bucket of [`PACE_BURST`] tokens refilled at [`PACE_PER_SECOND`]: one per
/// client message.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pace {
    tokens: f64,
    at: Instant,
}

impl Pace {
    pub(super) fn new(now: Instant) -> Self {
        Self {
            tokens: PACE_BURST,
            at: now,
        }
    }

    /// Takes a token at `now`, or says when the next one comes.
    pub(super) fn take(&mut self, now: Instant) -> Result<(), Instant> {
        let refilled = now.saturating_duration_since(self.at).as_secs_f64() * PACE_PER_SECOND;
        self.tokens = (self.tokens + refilled).min(PACE_BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(now + Duration::from_secs_f64((1.0 - self.tokens) / PACE_PER_SECOND))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pace_allows_a_burst_then_a_steady_rate() {
        let start = Instant::now();
        let mut pace = Pace::new(start);
        for _ in 0..16 {
            assert_eq!(pace.take(start), Ok(()));
        }
        let next = pace.take(start).expect_err("the burst is spent");
        assert_eq!(next - start, Duration::from_millis(125));
        assert_eq!(pace.take(next), Ok(()));
        assert!(pace.take(next).is_err());
        // A second later, eight more; never more than the burst, however long the pause.
        let later = next + Duration::from_secs(1);
        assert_eq!((0..20).filter(|_| pace.take(later).is_ok()).count(), 8);
        let much_later = later + Duration::from_secs(60);
        assert_eq!(
            (0..40).filter(|_| pace.take(much_later).is_ok()).count(),
            16
        );
    }
}
