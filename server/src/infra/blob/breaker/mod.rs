//! A circuit breaker in front of the S3 picture store (issue 21).
//!
//! After `failures` consecutive calls that failed or timed out, the breaker **opens**: every
//! picture operation fails at once with a [`BlobError`] (so a 503 with `Retry-After`)
//! without reaching the store, for a cool-down. The first call after the cool-down is let
//! through alone as a **probe** (half-open; the calls that come while it is out are refused
//! too): its success **closes** the breaker, its failure opens it for another cool-down.
//! A success while closed resets the count, so only an unbroken run of failures opens it.
//!
//! - [`Machine`] is the state machine alone. It is told the time by its caller, so its
//!   tests play any sequence of calls and clocks.
//! - [`CircuitBreaker`] is the [`BlobStore`] decorator: it asks the machine before each
//!   call, tells it each outcome, and shows the state and every transition on `/metrics`
//!   (`minitter_blob_breaker_state{state}`, `minitter_blob_breaker_transitions_total{to}`,
//!   `minitter_blob_breaker_rejected_total`).
//!
//! Outcomes are matched to the state they were admitted in (a *generation* that every
//! transition advances), so the late answer of a call admitted before the breaker opened
//! changes nothing. A probe whose caller goes away before it finishes (a client hung up)
//! frees its slot, and the next call probes; it counts neither way.
//!
//! Only S3 goes through it (see `startup.rs`): the local directory fails at once when it
//! fails, has no remote service to spare, and would only add a cool-down after an operator
//! fixed the disk.
//!
//! Why not a crate: `failsafe` (last release mid-2024) and `recloser` (maintained) both let
//! *every* call through while half-open, not one probe, and neither takes a clock from
//! outside its own tests; `recloser` also counts a failure rate over a ring buffer rather
//! than consecutive failures and shows its state only as tracing events. What is needed
//! here is small enough to own and test exhaustively.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

mod machine;

pub use self::machine::{Machine, Refusal, State, Ticket};
use super::{BlobError, BlobStore, Listed};
use crate::infra::metrics;

/// How the breaker trips and recovers.
#[derive(Debug, Clone, Copy)]
pub struct BreakerSettings {
    /// Consecutive failed calls that open the breaker (0 is taken as 1).
    pub failures: u32,
    /// How long an open breaker refuses calls before it lets one probe through.
    pub cool_down: Duration,
    /// A write, read or delete that has not finished after this long is abandoned and
    /// counts as a failure: a backstop behind the store's own timeouts (a stalled body).
    pub call_timeout: Duration,
}

/// What tells the breaker the time (tests pass a clock they move).
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// A [`BlobStore`] whose calls go through a circuit breaker.
pub struct CircuitBreaker<S> {
    inner: S,
    machine: Mutex<Machine>,
    cool_down: Duration,
    call_timeout: Duration,
    clock: Clock,
}

impl<S: BlobStore> CircuitBreaker<S> {
    pub fn new(inner: S, settings: BreakerSettings) -> Self {
        Self::with_clock(inner, settings, Arc::new(Instant::now))
    }

    pub fn with_clock(inner: S, settings: BreakerSettings, clock: Clock) -> Self {
        let machine = Machine::new(settings.failures, settings.cool_down);
        show_state(machine.state());
        Self {
            inner,
            machine: Mutex::new(machine),
            cool_down: settings.cool_down,
            call_timeout: settings.call_timeout,
            clock,
        }
    }

    pub fn state(&self) -> State {
        self.machine().state()
    }

    fn machine(&self) -> MutexGuard<'_, Machine> {
        self.machine.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `step` on the machine and records the transition it made, if any, while
    /// still holding the lock, so that the gauge follows the transitions in their order.
    fn change<T>(&self, step: impl FnOnce(&mut Machine, Instant) -> T) -> T {
        let now = (self.clock)();
        let mut machine = self.machine();
        let before = machine.state();
        let result = step(&mut machine, now);
        let after = machine.state();
        if after != before {
            metrics::blob_breaker_transition(after.name());
            show_state(after);
            match after {
                State::Open => tracing::warn!(
                    from = before.name(),
                    cool_down_s = self.cool_down.as_secs_f64(),
                    "the picture store's circuit breaker opened: picture operations get 503 until a probe succeeds"
                ),
                State::HalfOpen => {
                    tracing::info!("the picture store's circuit breaker lets a probe through")
                }
                State::Closed => tracing::info!("the picture store's circuit breaker closed"),
            }
        }
        result
    }

    /// Runs `call` if the breaker admits it, within `timeout` if one is given, and reports
    /// its outcome.
    async fn guard<'a, T: Send>(
        &'a self,
        timeout: Option<Duration>,
        call: impl FnOnce() -> BoxFuture<'a, Result<T, BlobError>>,
    ) -> Result<T, BlobError> {
        let ticket = match self.change(|machine, now| machine.admit(now)) {
            Ok(ticket) => ticket,
            Err(refusal) => {
                metrics::blob_breaker_rejected();
                return Err(refusal.into());
            }
        };
        let permit = Permit {
            breaker: self,
            ticket,
            settled: false,
        };
        let outcome = match timeout {
            None => call().await,
            Some(limit) => tokio::time::timeout(limit, call())
                .await
                .unwrap_or_else(|_| {
                    Err(BlobError(anyhow::anyhow!(
                        "the picture store did not answer within {limit:?}"
                    )))
                }),
        };
        permit.settle(outcome.is_ok());
        outcome
    }
}

/// A call the breaker admitted; dropped unsettled (the caller went away), it is abandoned.
struct Permit<'a, S: BlobStore> {
    breaker: &'a CircuitBreaker<S>,
    ticket: Ticket,
    settled: bool,
}

impl<S: BlobStore> Permit<'_, S> {
    fn settle(mut self, ok: bool) {
        self.settled = true;
        let ticket = self.ticket;
        self.breaker.change(|machine, now| {
            if ok {
                machine.succeeded(ticket);
            } else {
                machine.failed(ticket, now);
            }
        });
    }
}

impl<S: BlobStore> Drop for Permit<'_, S> {
    fn drop(&mut self) {
        if !self.settled {
            let ticket = self.ticket;
            self.breaker.change(|machine, _| machine.abandoned(ticket));
        }
    }
}

fn show_state(current: State) {
    for state in State::ALL {
        metrics::blob_breaker_state(state.name(), state == current);
    }
}

impl<S: BlobStore> BlobStore for CircuitBreaker<S> {
    fn put<'a>(
        &'a self,
        key: &'a str,
        bytes: Vec<u8>,
        content_type: &'a str,
    ) -> BoxFuture<'a, Result<(), BlobError>> {
        Box::pin(self.guard(Some(self.call_timeout), move || {
            self.inner.put(key, bytes, content_type)
        }))
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, BlobError>> {
        Box::pin(self.guard(Some(self.call_timeout), move || self.inner.get(key)))
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), BlobError>> {
        Box::pin(self.guard(Some(self.call_timeout), move || self.inner.delete(key)))
    }

    /// No overall timeout: a listing is many pages, each bounded by the store's own.
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<Listed>, BlobError>> {
        Box::pin(self.guard(None, move || self.inner.list(prefix)))
    }

    /// Presigning reaches no store, so it neither probes nor counts; but while the breaker
    /// refuses calls, a download is refused too rather than sent to a store that is down.
    fn presigned_get<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, BlobError>> {
        Box::pin(async move {
            let now = (self.clock)();
            let refusal = self.machine().refusal(now);
            if let Some(refusal) = refusal {
                metrics::blob_breaker_rejected();
                return Err(refusal.into());
            }
            self.inner.presigned_get(key).await
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    const COOL_DOWN: Duration = Duration::from_secs(30);

    fn seconds(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// A store that counts its calls and answers as told.
    #[derive(Default)]
    struct Fake {
        calls: AtomicUsize,
        /// 0: succeed, 1: fail, 2: never answer.
        mode: AtomicUsize,
    }

    impl Fake {
        fn set(&self, mode: usize) {
            self.mode.store(mode, Ordering::SeqCst);
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }

        fn answer<'a, T: Send + 'a>(&'a self, value: T) -> BoxFuture<'a, Result<T, BlobError>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let mode = self.mode.load(Ordering::SeqCst);
            Box::pin(async move {
                match mode {
                    0 => Ok(value),
                    1 => Err(BlobError(anyhow::anyhow!("the fake store fails"))),
                    _ => futures::future::pending().await,
                }
            })
        }
    }

    impl BlobStore for Arc<Fake> {
        fn put<'a>(
            &'a self,
            _key: &'a str,
            _bytes: Vec<u8>,
            _content_type: &'a str,
        ) -> BoxFuture<'a, Result<(), BlobError>> {
            self.answer(())
        }

        fn get<'a>(&'a self, _key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, BlobError>> {
            self.answer(Some(b"bytes".to_vec()))
        }

        fn delete<'a>(&'a self, _key: &'a str) -> BoxFuture<'a, Result<(), BlobError>> {
            self.answer(())
        }

        fn list<'a>(&'a self, _prefix: &'a str) -> BoxFuture<'a, Result<Vec<Listed>, BlobError>> {
            self.answer(Vec::new())
        }

        fn presigned_get<'a>(
            &'a self,
            _key: &'a str,
        ) -> BoxFuture<'a, Result<Option<String>, BlobError>> {
            self.answer(Some("https://store/signed".to_owned()))
        }
    }

    /// A breaker (2 failures, 30 s) around a fake store, with a clock the test moves.
    fn guarded(
        call_timeout: Duration,
    ) -> (CircuitBreaker<Arc<Fake>>, Arc<Fake>, Arc<Mutex<Instant>>) {
        let fake = Arc::new(Fake::default());
        let now = Arc::new(Mutex::new(Instant::now()));
        let clock = Arc::clone(&now);
        let breaker = CircuitBreaker::with_clock(
            Arc::clone(&fake),
            BreakerSettings {
                failures: 2,
                cool_down: COOL_DOWN,
                call_timeout,
            },
            Arc::new(move || *clock.lock().expect("clock")),
        );
        (breaker, fake, now)
    }

    fn advance(now: &Mutex<Instant>, by: Duration) {
        *now.lock().expect("clock") += by;
    }

    #[tokio::test]
    async fn an_open_breaker_answers_at_once_without_calling_the_store() {
        let (breaker, fake, now) = guarded(seconds(10));
        assert!(breaker.put("k", b"x".to_vec(), "image/png").await.is_ok());
        fake.set(1);
        assert!(breaker.get("k").await.is_err());
        assert!(breaker.delete("k").await.is_err());
        assert_eq!(breaker.state(), State::Open);
        assert_eq!(fake.calls(), 3);

        fake.set(0); // back, but the breaker does not know yet
        assert!(breaker.put("k", b"x".to_vec(), "image/png").await.is_err());
        assert!(breaker.get("k").await.is_err());
        assert!(breaker.delete("k").await.is_err());
        assert!(breaker.list("pictures/").await.is_err());
        let refused = breaker.presigned_get("k").await.expect_err("refused");
        assert!(
            format!("{refused}").contains("circuit breaker is open"),
            "{refused}"
        );
        assert_eq!(fake.calls(), 3, "no call reached the store");

        advance(&now, COOL_DOWN);
        assert_eq!(
            breaker.presigned_get("k").await.expect("signed").as_deref(),
            Some("https://store/signed"),
            "after the cool-down, presigning is allowed and probes nothing"
        );
        assert_eq!(breaker.state(), State::Open);
        assert_eq!(
            breaker.get("k").await.expect("the probe"),
            Some(b"bytes".to_vec())
        );
        assert_eq!(breaker.state(), State::Closed);
        assert_eq!(fake.calls(), 5);
    }

    #[tokio::test]
    async fn a_call_that_times_out_counts_as_a_failure() {
        let (breaker, fake, _now) = guarded(Duration::from_millis(20));
        fake.set(2);
        for _ in 0..2 {
            let error = breaker.get("k").await.expect_err("timed out");
            assert!(format!("{error}").contains("did not answer"), "{error}");
        }
        assert_eq!(breaker.state(), State::Open);
    }

    #[tokio::test]
    async fn a_probe_whose_caller_went_away_does_not_wedge_the_breaker() {
        let (breaker, fake, now) = guarded(seconds(10));
        fake.set(1);
        for _ in 0..2 {
            assert!(breaker.delete("k").await.is_err());
        }
        advance(&now, COOL_DOWN);
        fake.set(2);
        // The probe hangs, and its caller gives up.
        let gave_up = tokio::time::timeout(Duration::from_millis(20), breaker.get("k")).await;
        assert!(gave_up.is_err());
        assert_eq!(breaker.state(), State::HalfOpen);
        fake.set(0);
        assert!(
            breaker.put("k", b"x".to_vec(), "image/png").await.is_ok(),
            "the next call probes"
        );
        assert_eq!(breaker.state(), State::Closed);
    }

    #[tokio::test]
    async fn while_the_probe_is_out_other_calls_are_refused() {
        let (breaker, fake, now) = guarded(seconds(10));
        fake.set(1);
        for _ in 0..2 {
            assert!(breaker.get("k").await.is_err());
        }
        advance(&now, COOL_DOWN);
        fake.set(2);
        let calls = fake.calls();
        let probe = breaker.get("probe");
        let other = async {
            tokio::task::yield_now().await;
            let refused = breaker.get("other").await.expect_err("refused");
            assert!(format!("{refused}").contains("probe"), "{refused}");
        };
        tokio::select! {
            _ = probe => panic!("the probe never answers"),
            () = other => {}
        }
        assert_eq!(fake.calls(), calls + 1, "only the probe reached the store");
    }
}
