//! The breaker's state machine alone: closed, open, half-open with one probe. It is told
//! the time by its caller, so its tests play any sequence of calls and clocks; the
//! decorator in the parent module asks it before each call and tells it each outcome.

use std::time::{Duration, Instant};

use super::super::BlobError;

/// Where the breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Calls go to the store.
    Closed,
    /// Calls fail at once.
    Open,
    /// The cool-down has passed and one probe is (or may be) out.
    HalfOpen,
}

impl State {
    pub const ALL: [State; 3] = [State::Closed, State::Open, State::HalfOpen];

    /// The state's name on `/metrics`.
    pub fn name(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
}

/// Leave to make one call; hand it back with the call's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    generation: u64,
    probe: bool,
}

impl Ticket {
    /// Whether this call is the half-open breaker's probe.
    pub fn is_probe(self) -> bool {
        self.probe
    }
}

/// Why a call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Open: a probe may go in `left`.
    #[error(
        "the circuit breaker is open after consecutive failures; S3 is tried again in {:.1} s",
        left.as_secs_f64()
    )]
    CoolingDown { left: Duration },
    /// Half-open, and the one probe is out.
    #[error("the circuit breaker is half-open and its one probe of S3 is under way")]
    Probing,
}

impl Refusal {
    /// How long a client should wait before asking again: until the probe may go, or a
    /// second while the probe is out. Whole seconds, at least one (`Retry-After`).
    pub fn retry_after_seconds(self) -> u64 {
        match self {
            Refusal::CoolingDown { left } => left.as_secs() + u64::from(left.subsec_nanos() > 0),
            Refusal::Probing => 1,
        }
        .max(1)
    }
}

impl From<Refusal> for BlobError {
    fn from(refusal: Refusal) -> Self {
        BlobError(anyhow::Error::new(refusal))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// `probing`: the probe is out. Without it (it was abandoned) the next call probes.
    HalfOpen {
        probing: bool,
    },
}

/// The breaker's state machine; every method is told the time.
#[derive(Debug)]
pub struct Machine {
    threshold: u32,
    cool_down: Duration,
    phase: Phase,
    /// Advanced by every transition: outcomes of another generation are stale.
    generation: u64,
}

impl Machine {
    /// A closed breaker that opens after `threshold` consecutive failures.
    pub fn new(threshold: u32, cool_down: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cool_down,
            phase: Phase::Closed { failures: 0 },
            generation: 0,
        }
    }

    pub fn state(&self) -> State {
        match self.phase {
            Phase::Closed { .. } => State::Closed,
            Phase::Open { .. } => State::Open,
            Phase::HalfOpen { .. } => State::HalfOpen,
        }
    }

    fn enter(&mut self, phase: Phase) {
        self.phase = phase;
        self.generation += 1;
    }

    /// Why a call at `now` would be refused, without taking the probe: for what does not
    /// reach the store itself (presigning a URL).
    pub fn refusal(&self, now: Instant) -> Option<Refusal> {
        match self.phase {
            Phase::Closed { .. } | Phase::HalfOpen { probing: false } => None,
            Phase::Open { until } if now >= until => None,
            Phase::Open { until } => Some(Refusal::CoolingDown { left: until - now }),
            Phase::HalfOpen { probing: true } => Some(Refusal::Probing),
        }
    }

    /// Asks to make a call at `now`. The first call after the cool-down moves the breaker
    /// to half-open and is its probe.
    pub fn admit(&mut self, now: Instant) -> Result<Ticket, Refusal> {
        if let Some(refusal) = self.refusal(now) {
            return Err(refusal);
        }
        let probe = match self.phase {
            Phase::Closed { .. } => false,
            Phase::Open { .. } => {
                self.enter(Phase::HalfOpen { probing: true });
                true
            }
            Phase::HalfOpen { .. } => {
                self.phase = Phase::HalfOpen { probing: true };
                true
            }
        };
        Ok(Ticket {
            generation: self.generation,
            probe,
        })
    }

    /// The call of `ticket` succeeded.
    pub fn succeeded(&mut self, ticket: Ticket) {
        if ticket.generation != self.generation {
            return;
        }
        match self.phase {
            Phase::Closed { .. } => self.phase = Phase::Closed { failures: 0 },
            Phase::HalfOpen { probing: true } if ticket.probe => {
                self.enter(Phase::Closed { failures: 0 });
            }
            _ => {}
        }
    }

    /// The call of `ticket` failed or timed out; it ended at `now`.
    pub fn failed(&mut self, ticket: Ticket, now: Instant) {
        if ticket.generation != self.generation {
            return;
        }
        let open = Phase::Open {
            until: now + self.cool_down,
        };
        match self.phase {
            Phase::Closed { failures } if failures + 1 >= self.threshold => self.enter(open),
            Phase::Closed { failures } => {
                self.phase = Phase::Closed {
                    failures: failures + 1,
                };
            }
            Phase::HalfOpen { probing: true } if ticket.probe => self.enter(open),
            _ => {}
        }
    }

    /// The call of `ticket` was dropped before it had an outcome: a probe's slot is free
    /// again; any other call counts for nothing.
    pub fn abandoned(&mut self, ticket: Ticket) {
        if ticket.generation == self.generation
            && ticket.probe
            && self.phase == (Phase::HalfOpen { probing: true })
        {
            self.phase = Phase::HalfOpen { probing: false };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOL_DOWN: Duration = Duration::from_secs(30);

    fn seconds(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn it_opens_after_the_threshold_of_consecutive_failures_only() {
        let t0 = Instant::now();
        let mut machine = Machine::new(3, COOL_DOWN);
        for _ in 0..2 {
            let ticket = machine.admit(t0).expect("closed");
            assert!(!ticket.is_probe());
            machine.failed(ticket, t0);
        }
        // A success breaks the run: two more failures are not enough.
        let ticket = machine.admit(t0).expect("closed");
        machine.succeeded(ticket);
        for _ in 0..2 {
            let ticket = machine.admit(t0).expect("closed");
            machine.failed(ticket, t0);
        }
        assert_eq!(machine.state(), State::Closed);
        let ticket = machine.admit(t0).expect("closed");
        machine.failed(ticket, t0 + seconds(1));
        assert_eq!(machine.state(), State::Open);
    }

    #[test]
    fn a_threshold_of_zero_is_one() {
        let t0 = Instant::now();
        let mut machine = Machine::new(0, COOL_DOWN);
        let ticket = machine.admit(t0).expect("closed");
        machine.failed(ticket, t0);
        assert_eq!(machine.state(), State::Open);
    }

    fn opened(at: Instant) -> Machine {
        let mut machine = Machine::new(1, COOL_DOWN);
        let ticket = machine.admit(at).expect("closed");
        machine.failed(ticket, at);
        assert_eq!(machine.state(), State::Open);
        machine
    }

    #[test]
    fn an_open_breaker_refuses_every_call_until_the_cool_down_has_passed() {
        let t0 = Instant::now();
        let mut machine = opened(t0);
        assert_eq!(
            machine.admit(t0 + seconds(1)),
            Err(Refusal::CoolingDown { left: seconds(29) })
        );
        assert_eq!(
            machine.refusal(t0 + seconds(29)),
            Some(Refusal::CoolingDown { left: seconds(1) })
        );
        assert_eq!(machine.state(), State::Open, "refusals change nothing");
        // The cool-down is counted from the failure, not from the refusals.
        let probe = machine.admit(t0 + COOL_DOWN).expect("the probe");
        assert!(probe.is_probe());
        assert_eq!(machine.state(), State::HalfOpen);
    }

    #[test]
    fn once_half_open_exactly_one_probe_goes_through() {
        let t0 = Instant::now();
        let mut machine = opened(t0);
        let later = t0 + seconds(31);
        assert_eq!(machine.refusal(later), None, "a probe may go");
        let probe = machine.admit(later).expect("the probe");
        assert!(probe.is_probe());
        for at in [later, later + seconds(60)] {
            assert_eq!(machine.admit(at), Err(Refusal::Probing));
            assert_eq!(machine.refusal(at), Some(Refusal::Probing));
        }
        assert_eq!(machine.state(), State::HalfOpen);
    }

    #[test]
    fn a_successful_probe_closes_the_breaker_and_the_count_starts_again() {
        let t0 = Instant::now();
        let mut machine = Machine::new(2, COOL_DOWN);
        for _ in 0..2 {
            let ticket = machine.admit(t0).expect("closed");
            machine.failed(ticket, t0);
        }
        let probe = machine.admit(t0 + COOL_DOWN).expect("the probe");
        machine.succeeded(probe);
        assert_eq!(machine.state(), State::Closed);
        let ticket = machine.admit(t0 + COOL_DOWN).expect("closed");
        assert!(!ticket.is_probe());
        machine.failed(ticket, t0 + COOL_DOWN);
        assert_eq!(machine.state(), State::Closed, "one failure of two");
    }

    #[test]
    fn a_failed_probe_opens_the_breaker_for_a_fresh_cool_down() {
        let t0 = Instant::now();
        let mut machine = opened(t0);
        let probe = machine.admit(t0 + seconds(40)).expect("the probe");
        machine.failed(probe, t0 + seconds(45));
        assert_eq!(machine.state(), State::Open);
        assert_eq!(
            machine.admit(t0 + seconds(46)),
            Err(Refusal::CoolingDown { left: seconds(29) })
        );
        assert!(
            machine
                .admit(t0 + seconds(75))
                .expect("the next probe")
                .is_probe()
        );
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_call_probe() {
        let t0 = Instant::now();
        let mut machine = opened(t0);
        let probe = machine.admit(t0 + COOL_DOWN).expect("the probe");
        machine.abandoned(probe);
        assert_eq!(machine.state(), State::HalfOpen);
        let next = machine.admit(t0 + COOL_DOWN).expect("a new probe");
        assert!(next.is_probe());
        machine.succeeded(next);
        assert_eq!(machine.state(), State::Closed);
    }

    #[test]
    fn late_outcomes_of_calls_admitted_in_an_earlier_state_change_nothing() {
        let t0 = Instant::now();
        let mut machine = Machine::new(2, COOL_DOWN);
        let slow_success = machine.admit(t0).expect("closed");
        let slow_failure = machine.admit(t0).expect("closed");
        for _ in 0..2 {
            let ticket = machine.admit(t0).expect("closed");
            machine.failed(ticket, t0);
        }
        assert_eq!(machine.state(), State::Open);
        // A success that began before the breaker opened does not close it.
        machine.succeeded(slow_success);
        assert_eq!(machine.state(), State::Open);
        let probe = machine.admit(t0 + COOL_DOWN).expect("the probe");
        machine.succeeded(slow_success);
        machine.abandoned(slow_success);
        assert_eq!(machine.state(), State::HalfOpen, "only the probe decides");
        machine.succeeded(probe);
        // Nor does a failure from before count in the new closed state.
        machine.failed(slow_failure, t0 + COOL_DOWN);
        let ticket = machine.admit(t0 + COOL_DOWN).expect("closed");
        machine.failed(ticket, t0 + COOL_DOWN);
        assert_eq!(machine.state(), State::Closed, "one failure of two");
    }
}
