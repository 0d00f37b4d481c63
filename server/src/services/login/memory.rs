//! The budgets of a single instance: one sliding log per budget, in a map behind a mutex,
//! so a group of budgets is decided under one lock. Each log keeps at most `limit`
//! failure times and the reservations in flight with the end of their leases, which is
//! what "at most N failures in any window" needs, exactly, at any edge of the window.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use uuid::Uuid;

use super::LoginLimits;
use super::counters::{AttemptCounters, Budget, Outcome, Verdict};
use crate::http::error::ApiError;

/// One budget's sliding log: the failures in the window, oldest first, and the
/// reservations in flight with the end of their leases.
#[derive(Debug, Default)]
struct SlidingLog {
    failures: VecDeque<(Uuid, Instant)>,
    in_flight: Vec<(Uuid, Instant)>,
}

impl SlidingLog {
    /// Takes lost reservations for failures (from the end of their leases), and forgets
    /// failures older than the window.
    fn expire(&mut self, now: Instant, window: Duration) {
        let mut index = 0;
        while index < self.in_flight.len() {
            if self.in_flight[index].1 <= now {
                let (lost, at) = self.in_flight.swap_remove(index);
                let place = self.failures.partition_point(|(_, failed)| *failed <= at);
                self.failures.insert(place, (lost, at));
            } else {
                index += 1;
            }
        }
        while self
            .failures
            .front()
            .is_some_and(|(_, at)| *at + window <= now)
        {
            self.failures.pop_front();
        }
    }

    /// Whether one more reservation fits, after [`Self::expire`].
    fn verdict(&self, limit: u64, now: Instant, window: Duration) -> Verdict {
        let failed = self.failures.len() as u64;
        if failed >= limit {
            // The failure whose leaving brings the count below the limit.
            let index = usize::try_from(failed - limit).unwrap_or(usize::MAX);
            let retry_after = self.failures.get(index).map_or(window, |(_, at)| {
                (*at + window).saturating_duration_since(now)
            });
            Verdict::Spent { retry_after }
        } else if failed + self.in_flight.len() as u64 >= limit {
            Verdict::Busy
        } else {
            Verdict::Reserved
        }
    }

    fn settle(&mut self, id: Uuid, outcome: Outcome, now: Instant) {
        let held = self.in_flight.iter().position(|(held, _)| *held == id);
        if let Some(index) = held {
            self.in_flight.swap_remove(index);
        }
        match outcome {
            Outcome::Failed if held.is_some() => self.failures.push_back((id, now)),
            // Already a failure: its lease ended first.
            Outcome::Failed => {}
            Outcome::Released if held.is_none() => self.failures.retain(|(lost, _)| *lost != id),
            Outcome::Released => {}
        }
    }

    fn is_idle(&self, now: Instant, window: Duration) -> bool {
        self.in_flight.is_empty() && self.failures.iter().all(|(_, at)| *at + window <= now)
    }
}

/// Sliding logs in this process, for a single instance.
pub(super) struct InProcessCounters {
    window: Duration,
    lease: Duration,
    /// Counter → log. Idle logs are swept when the map grows large.
    logs: Mutex<HashMap<String, SlidingLog>>,
}

/// Past this many logs the idle ones are swept.
const SWEEP_AT: usize = 100_000;

impl InProcessCounters {
    pub(super) fn new(limits: LoginLimits) -> Self {
        Self {
            window: limits.window,
            lease: limits.lease,
            logs: Mutex::default(),
        }
    }

    fn logs(&self) -> std::sync::MutexGuard<'_, HashMap<String, SlidingLog>> {
        self.logs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn reserve_at(&self, group: &[Budget], id: Uuid, now: Instant) -> Verdict {
        let mut logs = self.logs();
        if logs.len() >= SWEEP_AT {
            logs.retain(|_, log| !log.is_idle(now, self.window));
        }
        let mut verdict = Verdict::Reserved;
        for budget in group {
            let log = logs.entry(budget.counter.clone()).or_default();
            log.expire(now, self.window);
            verdict = verdict.and(log.verdict(budget.limit, now, self.window));
        }
        if verdict == Verdict::Reserved {
            for budget in group {
                if let Some(log) = logs.get_mut(&budget.counter) {
                    log.in_flight.push((id, now + self.lease));
                }
            }
        }
        verdict
    }

    fn settle_at(&self, group: &[Budget], id: Uuid, outcome: Outcome, now: Instant) {
        let mut logs = self.logs();
        for budget in group {
            if let Some(log) = logs.get_mut(&budget.counter) {
                log.settle(id, outcome, now);
            }
        }
    }
}

impl AttemptCounters for InProcessCounters {
    fn reserve<'a>(
        &'a self,
        group: &'a [Budget],
        id: Uuid,
    ) -> BoxFuture<'a, Result<Verdict, ApiError>> {
        let verdict = self.reserve_at(group, id, Instant::now());
        Box::pin(std::future::ready(Ok(verdict)))
    }

    fn settle<'a>(
        &'a self,
        group: &'a [Budget],
        id: Uuid,
        outcome: Outcome,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        self.settle_at(group, id, outcome, Instant::now());
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(60);
    const LEASE: Duration = Duration::from_secs(5);

    fn counters() -> InProcessCounters {
        InProcessCounters {
            window: WINDOW,
            lease: LEASE,
            logs: Mutex::default(),
        }
    }

    fn group(limits: &[u64]) -> Vec<Budget> {
        limits
            .iter()
            .enumerate()
            .map(|(n, &limit)| Budget {
                counter: format!("budget {n}"),
                limit,
            })
            .collect()
    }

    /// Reserves then fails `n` attempts at `at`; returns how many were heard.
    fn fail(counters: &InProcessCounters, group: &[Budget], n: usize, at: Instant) -> usize {
        (0..n)
            .filter(|_| {
                let id = Uuid::now_v7();
                let heard = counters.reserve_at(group, id, at) == Verdict::Reserved;
                counters.settle_at(group, id, Outcome::Failed, at);
                heard
            })
            .count()
    }

    #[test]
    fn reservations_in_flight_bound_a_burst_before_any_outcome_is_known() {
        let (counters, group, now) = (counters(), group(&[3]), Instant::now());
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        for id in &ids {
            assert_eq!(counters.reserve_at(&group, *id, now), Verdict::Reserved);
        }
        // A fourth guess waits: the three may all turn out wrong.
        assert_eq!(
            counters.reserve_at(&group, Uuid::now_v7(), now),
            Verdict::Busy
        );
        for id in &ids {
            counters.settle_at(&group, *id, Outcome::Failed, now);
        }
        assert!(matches!(
            counters.reserve_at(&group, Uuid::now_v7(), now),
            Verdict::Spent { retry_after } if retry_after == WINDOW
        ));
    }

    #[test]
    fn successes_give_their_slot_back_and_forgive_nothing_else() {
        let (counters, group, now) = (counters(), group(&[2]), Instant::now());
        assert_eq!(fail(&counters, &group, 1, now), 1);
        // Any number of correct passwords, one after another or two at a time.
        for _ in 0..10 {
            let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
            assert_eq!(counters.reserve_at(&group, a, now), Verdict::Reserved);
            assert_eq!(counters.reserve_at(&group, b, now), Verdict::Busy);
            counters.settle_at(&group, a, Outcome::Released, now);
        }
        // The earlier failure is still counted: one more wrong guess, then none.
        assert_eq!(fail(&counters, &group, 5, now), 1);
    }

    #[test]
    fn the_window_slides_so_no_edge_lets_twice_the_limit_through() {
        let (counters, group, start) = (counters(), group(&[3]), Instant::now());
        assert_eq!(fail(&counters, &group, 1, start), 1);
        let before_edge = start + WINDOW - Duration::from_secs(1);
        assert_eq!(fail(&counters, &group, 5, before_edge), 2);
        // A fixed window would start afresh here and hear three more.
        let after_edge = start + WINDOW + Duration::from_secs(1);
        assert_eq!(fail(&counters, &group, 5, after_edge), 1);
        // Refused until the failure from before the edge leaves the window.
        match counters.reserve_at(&group, Uuid::now_v7(), after_edge) {
            Verdict::Spent { retry_after } => {
                assert_eq!(retry_after, WINDOW - Duration::from_secs(2));
            }
            other => panic!("expected spent, got {other:?}"),
        }
        assert_eq!(fail(&counters, &group, 5, before_edge + WINDOW), 2);
    }

    #[test]
    fn a_lost_reservation_is_a_failure_until_its_outcome_says_otherwise() {
        let (counters, group, now) = (counters(), group(&[1]), Instant::now());
        let lost = Uuid::now_v7();
        assert_eq!(counters.reserve_at(&group, lost, now), Verdict::Reserved);
        let later = now + LEASE;
        assert!(matches!(
            counters.reserve_at(&group, Uuid::now_v7(), later),
            Verdict::Spent { .. }
        ));
        // Its late failure is not counted twice; its late success takes it back.
        counters.settle_at(&group, lost, Outcome::Failed, later);
        assert_eq!(
            counters.logs()["budget 0"].failures.len(),
            1,
            "one failure, not two"
        );
        counters.settle_at(&group, lost, Outcome::Released, later);
        assert_eq!(fail(&counters, &group, 3, later), 1);
    }

    #[test]
    fn a_success_after_its_window_ended_forgives_nothing_it_did_not_take() {
        let (counters, group, now) = (counters(), group(&[2]), Instant::now());
        let slow = Uuid::now_v7();
        assert_eq!(counters.reserve_at(&group, slow, now), Verdict::Reserved);
        let much_later = now + LEASE + WINDOW + Duration::from_secs(1);
        // Its lease ran out and the failure it was taken for left the window before the
        // success came: the success takes nothing back from anyone else.
        let other = Uuid::now_v7();
        assert_eq!(
            counters.reserve_at(&group, other, much_later),
            Verdict::Reserved
        );
        counters.settle_at(&group, slow, Outcome::Released, much_later);
        counters.settle_at(&group, other, Outcome::Released, much_later);
        assert_eq!(fail(&counters, &group, 5, much_later), 2);
    }

    #[test]
    fn a_group_reserves_in_every_budget_or_in_none() {
        let (counters, now) = (counters(), Instant::now());
        let wide = group(&[10, 1]);
        assert_eq!(fail(&counters, &wide, 3, now), 1);
        let logs = counters.logs();
        assert_eq!(logs["budget 0"].failures.len(), 1);
        assert!(logs["budget 0"].in_flight.is_empty());
    }
}
