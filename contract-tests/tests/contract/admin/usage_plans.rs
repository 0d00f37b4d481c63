//! Usage plans: creating, listing, reading, replacing and deleting them.

use futures::TryStreamExt;
use minitter_client::types;
use reqwest::StatusCode;

use super::{acme_key, gold_plan};
use crate::harness::ADMIN_TOKEN;
use crate::helpers::{Context, limit, plan_input, refusal, scenarios, status, unknown_id};

scenarios! {
    create_and_list: [
        "create_usage_plan 201 400 401 413 415",
        "list_usage_plans 200 400 401",
    ],
    get_usage_plan: ["get_usage_plan 200 400 401 404"],
    update_usage_plan: ["update_usage_plan 200 400 401 404 413 415"],
    delete_usage_plan: ["delete_usage_plan 204 400 401 404 409"],
}

/// A plan is created with its settings (a zero rate is 400) and listed page by page.
async fn create_and_list(ctx: &Context) {
    let admin = &ctx.as_admin;
    let created = admin
        .create_usage_plan()
        .body(plan_input("gold", 2.5))
        .send()
        .await
        .expect("create plan");
    assert_eq!(created.status(), StatusCode::CREATED);
    let plan = created.into_inner();
    assert_eq!(plan.throttle.as_ref().map(|t| t.rate_limit), Some(2.5));
    assert_eq!(
        refusal(
            admin
                .create_usage_plan()
                .body(plan_input("bad", 0.0))
                .send()
                .await
        ),
        status(400, "invalid_request")
    );
    assert_eq!(
        refusal(
            ctx.as_ada
                .create_usage_plan()
                .body(plan_input("x", 1.0))
                .send()
                .await
        ),
        status(401, "unauthorized")
    );
    assert_eq!(
        refusal(ctx.anonymous.list_usage_plans().send().await),
        status(401, "unauthorized")
    );
    ctx.oversized_and_mistyped("/admin/v1/usage-plans").await;

    let plans: Vec<types::UsagePlan> = admin
        .list_usage_plans()
        .limit(limit(1))
        .stream()
        .try_collect()
        .await
        .expect("plans");
    assert!(plans.iter().any(|p| p.id == plan.id));
    assert_eq!(
        refusal(admin.list_usage_plans().page_token("forged").send().await),
        status(400, "invalid_request")
    );
}

/// A plan reads back as created; an unknown one is 404, a malformed id 400.
async fn get_usage_plan(ctx: &Context) {
    let admin = &ctx.as_admin;
    let plan = gold_plan(ctx).await;
    let fetched = admin
        .get_usage_plan()
        .plan_id(plan.id.clone())
        .send()
        .await
        .expect("get plan");
    assert_eq!(fetched.into_inner(), plan);
    assert_eq!(
        refusal(admin.get_usage_plan().plan_id(unknown_id()).send().await),
        status(404, "not_found")
    );
    assert_eq!(
        refusal(
            ctx.anonymous
                .get_usage_plan()
                .plan_id(plan.id.clone())
                .send()
                .await
        ),
        status(401, "unauthorized")
    );
    assert_eq!(
        ctx.raw_status(
            ctx.raw
                .get(ctx.url("/admin/v1/usage-plans/nope"))
                .bearer_auth(ADMIN_TOKEN)
        )
        .await,
        400
    );
}

/// A plan's settings are replaced whole; the same checks as creating apply.
async fn update_usage_plan(ctx: &Context) {
    let admin = &ctx.as_admin;
    let plan = gold_plan(ctx).await;
    let updated = admin
        .update_usage_plan()
        .plan_id(plan.id.clone())
        .body(plan_input("platinum", 50.0))
        .send()
        .await;
    assert_eq!(
        updated.expect("update plan").into_inner().name.as_str(),
        "platinum"
    );
    assert_eq!(
        refusal(
            admin
                .update_usage_plan()
                .plan_id(unknown_id())
                .body(plan_input("x", 1.0))
                .send()
                .await
        ),
        status(404, "not_found")
    );
    assert_eq!(
        refusal(
            admin
                .update_usage_plan()
                .plan_id(plan.id.clone())
                .body(plan_input("x", 0.0))
                .send()
                .await
        ),
        status(400, "invalid_request")
    );
    assert_eq!(
        refusal(
            ctx.anonymous
                .update_usage_plan()
                .plan_id(plan.id.clone())
                .body(plan_input("x", 1.0))
                .send()
                .await
        ),
        status(401, "unauthorized")
    );
    ctx.oversized_and_mistyped_with("PUT", &format!("/admin/v1/usage-plans/{}", *plan.id))
        .await;
}

/// A plan in use cannot be deleted; once its key is gone it can.
async fn delete_usage_plan(ctx: &Context) {
    let admin = &ctx.as_admin;
    let plan = gold_plan(ctx).await;
    let key = acme_key(ctx, &plan).await;
    assert_eq!(
        refusal(
            admin
                .delete_usage_plan()
                .plan_id(plan.id.clone())
                .send()
                .await
        ),
        status(409, "in_use")
    );
    admin
        .delete_api_key()
        .key_id(key.id.clone())
        .send()
        .await
        .expect("delete key");
    assert_eq!(
        refusal(
            ctx.anonymous
                .delete_usage_plan()
                .plan_id(plan.id.clone())
                .send()
                .await
        ),
        status(401, "unauthorized")
    );
    let deleted = admin
        .delete_usage_plan()
        .plan_id(plan.id.clone())
        .send()
        .await
        .expect("delete plan");
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        refusal(
            admin
                .delete_usage_plan()
                .plan_id(plan.id.clone())
                .send()
                .await
        ),
        status(404, "not_found")
    );
    assert_eq!(
        ctx.raw_status(
            ctx.raw
                .delete(ctx.url("/admin/v1/usage-plans/nope"))
                .bearer_auth(ADMIN_TOKEN)
        )
        .await,
        400
    );
}
