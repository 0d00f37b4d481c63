//! Tag `observability`: the operator's metrics.

use futures::TryStreamExt;

use crate::helpers::{Context, scenarios};

scenarios! {
    metrics: ["get_metrics 200 401"],
}

/// The operator's metrics: 200 with the admin token, 401 without.
async fn metrics(ctx: &Context) {
    let text = ctx
        .as_admin
        .get_metrics()
        .send()
        .await
        .expect("metrics")
        .into_inner();
    let bytes: Vec<u8> = text
        .into_inner()
        .map_ok(|chunk| chunk.to_vec())
        .try_concat()
        .await
        .expect("the body");
    assert!(String::from_utf8_lossy(&bytes).contains("minitter_http_requests_total"));
    assert_eq!(ctx.raw_status(ctx.raw.get(ctx.url("/metrics"))).await, 401);
}
