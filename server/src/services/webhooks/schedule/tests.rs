use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;

const SAMPLES: usize = 2_000;

fn seeded() -> StdRng {
    StdRng::seed_from_u64(0x5eed_0019)
}

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + seconds, 0).expect("a valid timestamp")
}

fn seconds(value: u64) -> Duration {
    Duration::from_secs(value)
}

#[test]
fn the_schedule_is_the_standard_webhooks_one() {
    let minutes = |m: u64| seconds(m * 60);
    let hours = |h: u64| seconds(h * 60 * 60);
    assert_eq!(
        RETRY_SCHEDULE,
        [
            seconds(5),
            minutes(1),
            minutes(10),
            hours(1),
            hours(6),
            hours(12),
            hours(24),
            hours(24),
        ]
    );
    let total: Duration = RETRY_SCHEDULE.iter().sum();
    assert!(total > hours(66) && total < hours(72), "{total:?}");
}

#[test]
fn every_delay_is_within_zero_and_its_base_and_at_least_one_second() {
    let mut rng = seeded();
    for (index, &base) in RETRY_SCHEDULE.iter().enumerate() {
        let failed = u32::try_from(index + 1).expect("a small index");
        for _ in 0..SAMPLES {
            let delay = retry_delay(failed, None, &mut rng).expect("still retrying");
            assert!(delay <= base, "attempt {failed}: {delay:?} > {base:?}");
            assert!(delay >= MIN_DELAY, "attempt {failed}: {delay:?}");
        }
    }
}

#[test]
fn delays_are_jittered_across_the_whole_range() {
    let mut rng = seeded();
    let base = RETRY_SCHEDULE[3];
    let delays: Vec<Duration> = (0..SAMPLES)
        .map(|_| retry_delay(4, None, &mut rng).expect("still retrying"))
        .collect();
    // Full jitter: draws land in every quarter of (0, base], not only near the base.
    for quarter in 0..4u32 {
        let low = base * quarter / 4;
        let high = base * (quarter + 1) / 4;
        let count = delays.iter().filter(|&&d| d > low && d <= high).count();
        assert!(
            count > SAMPLES / 8,
            "quarter {quarter}: {count} of {SAMPLES}"
        );
    }
}

#[test]
fn the_first_delay_never_goes_below_one_second() {
    let mut rng = seeded();
    let delays: Vec<Duration> = (0..SAMPLES)
        .map(|_| retry_delay(1, None, &mut rng).expect("still retrying"))
        .collect();
    assert!(delays.iter().all(|&d| d >= MIN_DELAY && d <= seconds(5)));
    // Draws below one second (a fifth of (0, 5 s]) are raised to exactly one second.
    assert!(delays.contains(&MIN_DELAY));
}

#[test]
fn zero_failed_attempts_is_read_as_one() {
    let mut rng = seeded();
    for _ in 0..SAMPLES {
        let delay = retry_delay(0, None, &mut rng).expect("still retrying");
        assert!(delay >= MIN_DELAY && delay <= RETRY_SCHEDULE[0]);
    }
}

#[test]
fn the_delivery_is_given_up_after_the_last_retry_fails() {
    let mut rng = seeded();
    let last = u32::try_from(RETRY_SCHEDULE.len()).expect("a short schedule");
    assert!(retry_delay(last, None, &mut rng).is_some());
    assert_eq!(retry_delay(last + 1, None, &mut rng), None);
    assert_eq!(retry_delay(u32::MAX, None, &mut rng), None);
}

#[test]
fn retry_after_is_honoured_when_longer_than_the_drawn_delay() {
    let mut rng = seeded();
    for _ in 0..SAMPLES {
        let delay = retry_delay(1, Some(seconds(30)), &mut rng).expect("still retrying");
        assert_eq!(delay, seconds(30));
    }
}

#[test]
fn retry_after_never_shortens_the_drawn_delay() {
    let mut rng = seeded();
    let base = RETRY_SCHEDULE[4];
    for _ in 0..SAMPLES {
        let delay = retry_delay(5, Some(seconds(2)), &mut rng).expect("still retrying");
        assert!(delay >= seconds(2) && delay >= MIN_DELAY && delay <= base);
    }
    // With the same draws, the receiver's short value changes nothing.
    let (mut with, mut without) = (seeded(), seeded());
    for _ in 0..SAMPLES {
        let asked = retry_delay(6, Some(seconds(1)), &mut with);
        let drawn = retry_delay(6, None, &mut without);
        assert_eq!(asked, drawn);
    }
}

#[test]
fn retry_after_is_clamped_to_an_hour() {
    let mut rng = seeded();
    for asked in [seconds(2 * 60 * 60), seconds(999_999_999), Duration::MAX] {
        for _ in 0..SAMPLES {
            let delay = retry_delay(1, Some(asked), &mut rng).expect("still retrying");
            assert_eq!(delay, MAX_RETRY_AFTER);
        }
    }
    // A long scheduled gap is not cut short by the clamp either.
    for _ in 0..SAMPLES {
        let delay = retry_delay(7, Some(Duration::MAX), &mut rng).expect("still retrying");
        assert!(delay >= MAX_RETRY_AFTER && delay <= RETRY_SCHEDULE[6]);
    }
}

#[test]
fn retry_after_does_not_revive_a_given_up_delivery() {
    let mut rng = seeded();
    let after_last = u32::try_from(RETRY_SCHEDULE.len() + 1).expect("a short schedule");
    assert_eq!(retry_delay(after_last, Some(seconds(10)), &mut rng), None);
}

#[test]
fn the_same_seed_draws_the_same_delays() {
    let (mut a, mut b) = (seeded(), seeded());
    for failed in 1..=8 {
        assert_eq!(
            retry_delay(failed, None, &mut a),
            retry_delay(failed, None, &mut b)
        );
    }
}

#[test]
fn a_new_breaker_is_closed() {
    let breaker = Breaker::default();
    assert_eq!(breaker.consecutive_failures, 0);
    assert_eq!(breaker.state(at(0)), BreakerState::Closed);
}

#[test]
fn failures_below_the_threshold_keep_the_breaker_closed() {
    let settings = BreakerSettings::default();
    let mut breaker = Breaker::default();
    for n in 1..settings.threshold {
        breaker = breaker.after_failure(at(i64::from(n)), &settings);
        assert_eq!(breaker.consecutive_failures, n);
        assert_eq!(breaker.state(at(i64::from(n))), BreakerState::Closed);
    }
}

#[test]
fn reaching_the_threshold_opens_the_breaker_for_the_cool_down() {
    let settings = BreakerSettings::default();
    assert_eq!(settings.threshold, 5);
    assert_eq!(settings.cool_down, seconds(60));
    let mut breaker = Breaker::default();
    for _ in 0..5 {
        breaker = breaker.after_failure(at(100), &settings);
    }
    assert_eq!(breaker.consecutive_failures, 5);
    assert_eq!(breaker.open_until, Some(at(160)));
    assert_eq!(
        breaker.state(at(100)),
        BreakerState::Open { until: at(160) }
    );
    assert_eq!(
        breaker.state(at(159)),
        BreakerState::Open { until: at(160) }
    );
}

#[test]
fn the_breaker_is_half_open_once_the_cool_down_has_passed() {
    let breaker = Breaker {
        consecutive_failures: 5,
        open_until: Some(at(160)),
    };
    assert_eq!(breaker.state(at(160)), BreakerState::HalfOpen);
    assert_eq!(breaker.state(at(10_000)), BreakerState::HalfOpen);
}

#[test]
fn a_failed_half_open_probe_opens_the_breaker_again() {
    let settings = BreakerSettings {
        threshold: 3,
        cool_down: seconds(30),
    };
    let breaker = Breaker {
        consecutive_failures: 3,
        open_until: Some(at(100)),
    };
    let after = breaker.after_failure(at(200), &settings);
    assert_eq!(after.consecutive_failures, 4);
    assert_eq!(after.state(at(200)), BreakerState::Open { until: at(230) });
    assert_eq!(after.state(at(230)), BreakerState::HalfOpen);
}

#[test]
fn a_successful_probe_closes_the_breaker() {
    let breaker = Breaker {
        consecutive_failures: 7,
        open_until: Some(at(100)),
    };
    assert_eq!(breaker.state(at(100)), BreakerState::HalfOpen);
    let after = breaker.after_success();
    assert_eq!(after, Breaker::default());
    assert_eq!(after.state(at(100)), BreakerState::Closed);
}

#[test]
fn a_success_resets_the_failure_count_of_a_closed_breaker() {
    let settings = BreakerSettings::default();
    let mut breaker = Breaker::default();
    for _ in 0..4 {
        breaker = breaker.after_failure(at(0), &settings);
    }
    breaker = breaker.after_success();
    // Four more failures after the success do not reach the threshold of five.
    for _ in 0..4 {
        breaker = breaker.after_failure(at(1), &settings);
    }
    assert_eq!(breaker.consecutive_failures, 4);
    assert_eq!(breaker.state(at(1)), BreakerState::Closed);
}

#[test]
fn a_failure_while_open_is_counted_but_does_not_extend_the_cool_down() {
    let settings = BreakerSettings::default();
    let breaker = Breaker {
        consecutive_failures: 5,
        open_until: Some(at(160)),
    };
    let after = breaker.after_failure(at(150), &settings);
    assert_eq!(after.consecutive_failures, 6);
    assert_eq!(after.open_until, Some(at(160)));
}

#[test]
fn a_cool_down_past_the_calendar_saturates() {
    let settings = BreakerSettings {
        threshold: 1,
        cool_down: Duration::MAX,
    };
    let after = Breaker::default().after_failure(at(0), &settings);
    assert_eq!(after.open_until, Some(DateTime::<Utc>::MAX_UTC));
    assert!(matches!(after.state(at(0)), BreakerState::Open { .. }));
}

#[test]
fn the_failure_count_saturates() {
    let breaker = Breaker {
        consecutive_failures: u32::MAX,
        open_until: Some(at(0)),
    };
    let after = breaker.after_failure(at(10), &BreakerSettings::default());
    assert_eq!(after.consecutive_failures, u32::MAX);
}

#[test]
fn breaker_states_have_their_api_names() {
    let open = BreakerState::Open { until: at(0) };
    assert_eq!(BreakerState::Closed.as_str(), "closed");
    assert_eq!(open.as_str(), "open");
    assert_eq!(BreakerState::HalfOpen.as_str(), "half_open");
    assert_eq!(BreakerState::HalfOpen.to_string(), "half_open");
    assert_eq!(open.to_string(), "open");
}
