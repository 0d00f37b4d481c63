//! The arithmetic of a usage report: per day, the requests a key made and, under a quota,
//! what was left of it at the end of that day. Apart from the handler so that it reads
//! (and is tested) as the small calculation it is.

use std::collections::HashMap;

use chrono::{NaiveDate, TimeZone};

use crate::services::gateway::limits::Period;

/// One entry per day from `start` to `end`: `[used]`, or `[used, remaining]` under a
/// `quota` of `(limit, period)`, where remaining counts from the start of the day's
/// quota period. `by_day` must hold the counts from that period's start on.
pub fn daily_series(
    by_day: &HashMap<NaiveDate, u64>,
    start: NaiveDate,
    end: NaiveDate,
    quota: Option<(u64, Period)>,
) -> Vec<Vec<i64>> {
    let used_on = |day: NaiveDate| by_day.get(&day).copied().unwrap_or(0);
    start
        .iter_days()
        .take_while(|day| *day <= end)
        .map(|day| {
            let used = used_on(day);
            let entry = match quota {
                None => vec![used],
                Some((limit, period)) => {
                    let midnight = chrono::Utc
                        .from_utc_datetime(&day.and_hms_opt(0, 0, 0).unwrap_or_default());
                    let period_start = period.bounds(midnight).0.date_naive();
                    let spent: u64 = period_start
                        .iter_days()
                        .take_while(|d| *d <= day)
                        .map(used_on)
                        .sum();
                    vec![used, limit.saturating_sub(spent)]
                }
            };
            entry
                .into_iter()
                .map(|n| i64::try_from(n).unwrap_or(i64::MAX))
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> NaiveDate {
        text.parse().expect("a date")
    }

    #[test]
    fn without_a_quota_each_day_is_its_count() {
        let by_day = HashMap::from([(day("2026-12-01"), 5), (day("2026-12-03"), 2)]);
        let series = daily_series(&by_day, day("2026-12-01"), day("2026-12-03"), None);
        assert_eq!(series, [vec![5], vec![0], vec![2]]);
    }

    #[test]
    fn under_a_daily_quota_each_day_starts_full() {
        let by_day = HashMap::from([(day("2026-12-01"), 7), (day("2026-12-02"), 12)]);
        let quota = Some((10, Period::parse("DAY").expect("a period")));
        let series = daily_series(&by_day, day("2026-12-01"), day("2026-12-02"), quota);
        assert_eq!(series, [vec![7, 3], vec![12, 0]]);
    }

    #[test]
    fn under_a_monthly_quota_the_remainder_carries_across_days() {
        // Counts before the report's first day, in the same month, are spent too.
        let by_day = HashMap::from([
            (day("2026-11-30"), 50),
            (day("2026-12-01"), 10),
            (day("2026-12-02"), 20),
        ]);
        let quota = Some((100, Period::parse("MONTH").expect("a period")));
        let series = daily_series(&by_day, day("2026-12-02"), day("2026-12-03"), quota);
        assert_eq!(series, [vec![20, 70], vec![0, 70]]);
    }
}
