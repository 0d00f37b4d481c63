//! Across tags: conditional GETs. (A picture's 304 is in `pictures.rs`.)

use crate::harness::ADMIN_TOKEN;
use crate::helpers::{Context, new_tweet, scenarios};

scenarios! {
    conditional_gets: [
        "get_user 200 304",
        "get_tweet 200 304",
        "get_usage_report 200 304",
        "get_usage_plan 200 304",
        "get_api_key 200 304",
    ],
}

/// Every resource GET the document declares an `ETag` for answers 200 with one, and 304
/// with no body when that tag comes back as `If-None-Match`.
async fn conditional_gets(ctx: &Context) {
    let admin = format!("Bearer {ADMIN_TOKEN}");
    let plan: serde_json::Value = ctx
        .raw
        .post(ctx.url("/admin/v1/usage-plans"))
        .header("authorization", &admin)
        .json(&serde_json::json!({"name": "conditional"}))
        .send()
        .await
        .expect("create plan")
        .json()
        .await
        .expect("plan");
    let key: serde_json::Value = ctx
        .raw
        .post(ctx.url("/admin/v1/api-keys"))
        .header("authorization", &admin)
        .json(&serde_json::json!({"name": "conditional", "plan_id": plan["id"]}))
        .send()
        .await
        .expect("create key")
        .json()
        .await
        .expect("key");
    let tweet = ctx
        .as_ada
        .create_tweet()
        .body(new_tweet("worth caching"))
        .send()
        .await
        .expect("tweet")
        .into_inner();
    let as_admin = Some(admin.as_str());
    for (path, authorization) in [
        (format!("/v1/users/{}", *ctx.ada.id), None),
        (format!("/v1/tweets/{}", *tweet.id), None),
        (
            format!(
                "/admin/v1/usage-plans/{}/usage?start_date=2026-01-01&end_date=2026-01-02",
                plan["id"].as_str().expect("id")
            ),
            as_admin,
        ),
        (
            format!("/admin/v1/usage-plans/{}", plan["id"].as_str().expect("id")),
            as_admin,
        ),
        (
            format!("/admin/v1/api-keys/{}", key["id"].as_str().expect("id")),
            as_admin,
        ),
    ] {
        let get = |if_none_match: Option<&str>| {
            let mut request = ctx.raw.get(ctx.url(&path));
            if let Some(authorization) = authorization {
                request = request.header("authorization", authorization);
            }
            if let Some(tag) = if_none_match {
                request = request.header("if-none-match", tag);
            }
            request.send()
        };
        let first = get(None).await.expect("get");
        assert_eq!(first.status(), 200, "{path}");
        let tag = first.headers()["etag"].to_str().expect("ascii").to_owned();
        let again = get(Some(&tag)).await.expect("conditional get");
        assert_eq!(again.status(), 304, "{path}");
        assert_eq!(again.headers()["etag"].to_str().expect("ascii"), tag);
        assert!(
            again.bytes().await.expect("body").is_empty(),
            "{path}: a 304 has no body"
        );
        let other = get(Some("W/\"something else\"")).await.expect("get");
        assert_eq!(other.status(), 200, "{path}: another tag gets the resource");
    }
}
