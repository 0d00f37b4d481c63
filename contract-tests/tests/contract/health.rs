//! Tag `health`: the liveness and readiness probes. (Readiness without a database is in
//! `unavailable.rs`.)

use reqwest::StatusCode;

use crate::helpers::{Context, scenarios};

scenarios! {
    probes: ["get_health 200", "get_readiness 200"],
}

async fn probes(ctx: &Context) {
    let health = ctx.anonymous.get_health().send().await.expect("healthz");
    assert_eq!(health.status(), StatusCode::OK);
    let ready = ctx.anonymous.get_readiness().send().await.expect("readyz");
    assert_eq!(ready.status(), StatusCode::OK);
}
