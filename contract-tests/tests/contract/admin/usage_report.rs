//! The operator's usage report: a series per key of a plan, a day per entry.

use crate::harness::ADMIN_TOKEN;
use crate::helpers::{Context, refusal, scenarios, status, unknown_id};

scenarios! {
    get_usage_report: ["get_usage_report 200 400 401 404 422"],
    get_plan_usage_history: ["get_plan_usage_history 200 400 401 404 422"],
}

/// The report of the plan this run's key is in: nothing yesterday, requests today. A
/// range that ends before it starts is 422, an unknown plan 404, a malformed date 400.
async fn get_usage_report(ctx: &Context) {
    let usage = ctx.own_usage().await;
    let admin = &ctx.as_admin;
    let today = chrono::Utc::now().date_naive();
    let report = admin
        .get_usage_report()
        .plan_id(usage.plan.id.clone())
        .start_date(today - chrono::Duration::days(1))
        .end_date(today)
        .send()
        .await
        .expect("report")
        .into_inner();
    let series = report
        .items
        .get(&usage.key_id.to_string())
        .expect("the key's series");
    assert_eq!(series.len(), 2);
    assert_eq!(
        series[0],
        vec![0],
        "nothing yesterday, and no quota to report"
    );
    assert!(series[1][0] > 0);

    let backwards = admin
        .get_usage_report()
        .plan_id(usage.plan.id.clone())
        .start_date(today)
        .end_date(today - chrono::Duration::days(1));
    assert_eq!(
        refusal(backwards.send().await),
        status(422, "invalid_date_range")
    );
    let unknown = admin
        .get_usage_report()
        .plan_id(unknown_id())
        .start_date(today)
        .end_date(today);
    assert_eq!(refusal(unknown.send().await), status(404, "not_found"));
    let anonymous = ctx
        .anonymous
        .get_usage_report()
        .plan_id(usage.plan.id.clone())
        .start_date(today)
        .end_date(today);
    assert_eq!(refusal(anonymous.send().await), status(401, "unauthorized"));
    let url = ctx.url(&format!(
        "/admin/v1/usage-plans/{}/usage?start_date=yesterday&end_date=today",
        *usage.plan.id
    ));
    let bad_date = ctx.raw.get(url).bearer_auth(ADMIN_TOKEN);
    assert_eq!(ctx.raw_status(bad_date).await, 400);
}

/// The history of the plan this run's key is in: every day of the range, today's with
/// this run's requests, and the key among the busiest. A range that ends before it
/// starts is 422, an unknown plan 404, no admin token 401, a malformed date 400.
async fn get_plan_usage_history(ctx: &Context) {
    let usage = ctx.own_usage().await;
    let admin = &ctx.as_admin;
    let today = chrono::Utc::now().date_naive();
    let history = admin
        .get_plan_usage_history()
        .plan_id(usage.plan.id.clone())
        .start_date(today - chrono::Duration::days(1))
        .end_date(today)
        .send()
        .await
        .expect("history")
        .into_inner();
    assert_eq!(history.days.len(), 2);
    assert_eq!(history.days[0].used, 0, "nothing yesterday");
    assert!(history.days[1].used > 0);
    assert_eq!(history.top_keys[0].key_id, usage.key_id);
    assert_eq!(history.top_keys[0].used, history.days[1].used);

    let backwards = admin
        .get_plan_usage_history()
        .plan_id(usage.plan.id.clone())
        .start_date(today)
        .end_date(today - chrono::Duration::days(1));
    assert_eq!(
        refusal(backwards.send().await),
        status(422, "invalid_date_range")
    );
    let unknown = admin
        .get_plan_usage_history()
        .plan_id(unknown_id())
        .start_date(today)
        .end_date(today);
    assert_eq!(refusal(unknown.send().await), status(404, "not_found"));
    let anonymous = ctx
        .anonymous
        .get_plan_usage_history()
        .plan_id(usage.plan.id.clone())
        .start_date(today)
        .end_date(today);
    assert_eq!(refusal(anonymous.send().await), status(401, "unauthorized"));
    let url = ctx.url(&format!(
        "/admin/v1/usage-plans/{}/history?start_date=yesterday&end_date=today",
        *usage.plan.id
    ));
    let bad_date = ctx.raw.get(url).bearer_auth(ADMIN_TOKEN);
    assert_eq!(ctx.raw_status(bad_date).await, 400);
}
