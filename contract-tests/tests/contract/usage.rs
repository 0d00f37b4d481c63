//! Tag `usage`: a partner's view of their own key. (The operator's report on the same
//! numbers is in `admin/usage_report.rs`.)

use crate::helpers::{Context, refusal, scenarios, status};

scenarios! {
    get_usage: ["get_usage 200"],
    get_usage_history: ["get_usage_history 200 400 422"],
    rotate_own_api_key: ["rotate_own_api_key 200"],
}

/// The key's plan, what it has used (the users signed up and logged in already), and no
/// quota to count down.
async fn get_usage(ctx: &Context) {
    let usage = ctx.own_usage().await;
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

/// The key rotates itself: the answer holds the same key with a new secret, which the
/// SDK then calls with; the old secret is refused at once.
async fn rotate_own_api_key(ctx: &Context) {
    let usage = ctx.own_usage().await;
    let rotated = ctx
        .anonymous
        .rotate_own_api_key()
        .send()
        .await
        .expect("rotate")
        .into_inner();
    assert_eq!(rotated.id, usage.key_id);
    assert_eq!(
        refusal(ctx.anonymous.get_usage().send().await),
        status(403, "forbidden")
    );
    let renewed = minitter_client::ClientBuilder::new(&ctx.server.base_url)
        .api_key(rotated.secret.to_string())
        .retry_policy(minitter_client::RetryPolicy::disabled())
        .build()
        .expect("a client with the new secret");
    let usage = renewed
        .get_usage()
        .send()
        .await
        .expect("usage")
        .into_inner();
    assert_eq!(usage.key_id, rotated.id);
}
