//! Tag `admin`: the operator API under `/admin/v1`, one file per resource. Only the admin
//! token opens it: not a user's token, not nothing.

pub mod api_keys;
pub mod usage_plans;
pub mod usage_report;
pub mod users;

use minitter_client::types;

use crate::helpers::{Context, new_key, plan_input};

/// A plan made through the SDK, with a throttle of 2.5 requests a second.
pub async fn gold_plan(ctx: &Context) -> types::UsagePlan {
    ctx.as_admin
        .create_usage_plan()
        .body(plan_input("gold", 2.5))
        .send()
        .await
        .expect("create plan")
        .into_inner()
}

/// A key in `plan`, made through the SDK.
pub async fn acme_key(ctx: &Context, plan: &types::UsagePlan) -> types::CreatedApiKey {
    ctx.as_admin
        .create_api_key()
        .body(new_key("acme", &plan.id))
        .send()
        .await
        .expect("create key")
        .into_inner()
}
