//! Tag `usage`: a partner's view of their own key. (The operator's report on the same
//! numbers is in `admin/usage_report.rs`.)

use crate::helpers::{Context, refusal, scenarios, status};

scenarios! {
    get_usage: ["get_usage 200"],
    get_usage_history: ["get_usage_history 200 400 422"],
}

/// The key's plan, what it has used (the users signed up and logged in already), and no
/// quota to count down.
async fn get_usage(ctx: &Context) {
    let usage = ctx
        .anonymous
        .get_usage()
        .send()
        .await
        .expect("usage")
        .into_inner();
    assert!(usage.used > 0, "this run has made requests");
    assert_eq!(
        (usage.plan.name.as_str(), usage.remaining),
        ("contract tests", None)
    );
}

/// The key's requests per day: every day of the range, today's with this run's
/// requests. A range that ends before it starts is 422, a malformed date 400.
async fn get_usage_history(ctx: &Context) {
    let today = chrono::Utc::now().date_naive();
    let history = ctx
        .anonymous
        .get_usage_history()
        .start_date(today - chrono::Duration::days(2))
        .end_date(today)
        .send()
        .await
        .expect("history")
        .into_inner();
    let days: Vec<_> = history.days.iter().map(|day| day.date).collect();
    assert_eq!(
        days,
        [
            today - chrono::Duration::days(2),
            today - chrono::Duration::days(1),
            today
        ]
    );
    assert_eq!(history.days[0].used, 0);
    assert!(history.days[2].used > 0, "this run has made requests");

    let backwards = ctx
        .anonymous
        .get_usage_history()
        .start_date(today)
        .end_date(today - chrono::Duration::days(1));
    assert_eq!(
        refusal(backwards.send().await),
        status(422, "invalid_date_range")
    );
    let url = ctx.url("/v1/usage/history?start_date=yesterday&end_date=today");
    assert_eq!(ctx.raw_status(ctx.raw.get(url)).await, 400);
}
