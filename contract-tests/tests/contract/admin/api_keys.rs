//! API keys: the secret appears once, at creation and at rotation.

use futures::TryStreamExt;
use minitter_client::types;
use reqwest::StatusCode;

use super::{acme_key, gold_plan};
use crate::harness::ADMIN_TOKEN;
use crate::helpers::{Context, limit, new_key, refusal, scenarios, status, unknown_id};

scenarios! {
    create_and_list: [
        "create_api_key 201 400 401 413 415 422",
        "list_api_keys 200 400 401",
    ],
    get_api_key: ["get_api_key 200 400 401 404"],
    update_api_key: ["update_api_key 200 400 401 404 413 415 422"],
    rotate_api_key: ["rotate_api_key 200 400 401 404"],
    delete_api_key: ["delete_api_key 204 400 401 404"],
}

/// A key is created in a plan that exists (or 422), with its secret, and listed by its
/// prefix page by page.
async fn create_and_list(ctx: &Context) {
    let admin = &ctx.as_admin;
    let plan = gold_plan(ctx).await;
    let created = admin
        .create_api_key()
        .body(new_key("acme", &plan.id))
        .send()
        .await
        .expect("create key");
    assert_eq!(created.status(), StatusCode::CREATED);
    let key = created.into_inner();
    assert!(key.secret.starts_with(key.prefix.as_str()) && key.secret.len() > 40);
    assert_eq!(
        refusal(
            admin
                .create_api_key()
                .body(new_key("x", &unknown_id()))
                .send()
                .await
        ),
        status(422, "unknown_plan")
    );
    assert_eq!(
        refusal(
            ctx.anonymous
                .create_api_key()
                .body(new_key("x", &plan.id))
                .send()
                .await
        ),
        status(401, "unauthorized")
    );
    let empty_name = ctx
        .raw
        .post(ctx.url("/admin/v1/api-keys"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"name": "", "plan_id": plan.id.to_string()}));
    assert_eq!(ctx.raw_status(empty_name).await, 400);
    ctx.oversized_and_mistyped("/admin/v1/api-keys").await;

    let keys: Vec<types::ApiKey> = admin
        .list_api_keys()
        .limit(limit(1))
        .stream()
        .try_collect()
        .await
        .expect("keys");
    let listed = keys
        .iter()
        .find(|k| k.id == key.id)
        .expect("the key is listed");
    assert_eq!(listed.prefix.as_str(), key.prefix.as_str());
    assert_eq!(
        refusal(admin.list_api_keys().page_token("forged").send().await),
        status(400, "invalid_request")
    );
    assert_eq!(
        refusal(ctx.anonymous.list_api_keys().send().await),
        status(401, "unauthorized")
    );
}

/// A key reads back without its secret; an unknown one is 404, a malformed id 400.
async fn get_api_key(ctx: &Context) {
    let admin = &ctx.as_admin;
    let key = acme_key(ctx, &gold_plan(ctx).await).await;
    let fetched = admin
        .get_api_key()
        .key_id(key.id.clone())
        .send()
        .await
        .expect("get key")
        .into_inner();
    assert_eq!((fetched.name.as_str(), fetched.enabled), ("acme", true));
    assert_eq!(
        refusal(admin.get_api_key().key_id(unknown_id()).send().await),
        status(404, "not_found")
    );
    assert_eq!(
        refusal(
            ctx.anonymous
                .get_api_key()
                .key_id(key.id.clone())
                .send()
                .await
        ),
        status(401, "unauthorized")
    );
    assert_eq!(
        ctx.raw_status(
            ctx.raw
                .get(ctx.url("/admin/v1/api-keys/nope"))
                .bearer_auth(ADMIN_TOKEN)
        )
        .await,
        400
    );
}

/// A key is disabled by a patch; moving it to a plan that does not exist is 422.
async fn update_api_key(ctx: &Context) {
    let admin = &ctx.as_admin;
    let key = acme_key(ctx, &gold_plan(ctx).await).await;
    let disable = types::ApiKeyUpdate {
        enabled: Some(false),
        name: None,
        plan_id: None,
        ip_policy: None,
    };
    let disabled = admin
        .update_api_key()
        .key_id(key.id.clone())
        .body(disable.clone())
        .send()
        .await
        .expect("disable");
    assert!(!disabled.into_inner().enabled);
    let to_nowhere = types::ApiKeyUpdate {
        enabled: None,
        name: None,
        plan_id: Some(unknown_id()),
        ip_policy: None,
    };
    assert_eq!(
        refusal(
            admin
                .update_api_key()
                .key_id(key.id.clone())
                .body(to_nowhere)
                .send()
                .await
        ),
        status(422, "unknown_plan")
    );
    assert_eq!(
        refusal(
            admin
                .update_api_key()
                .key_id(unknown_id())
                .body(disable.clone())
                .send()
                .await
        ),
        status(404, "not_found")
    );
    assert_eq!(
        refusal(
            ctx.anonymous
                .update_api_key()
                .key_id(key.id.clone())
                .body(disable)
                .send()
                .await
        ),
        status(401, "unauthorized")
    );
    let rename = ctx
        .raw
        .patch(ctx.url(&format!("/admin/v1/api-keys/{}", *key.id)))
        .bearer_auth(ADMIN_TOKEN);
    assert_eq!(
        ctx.raw_status(rename.json(&serde_json::json!({"name": ""})))
            .await,
        400
    );
    ctx.oversized_and_mistyped_with("PATCH", &format!("/admin/v1/api-keys/{}", *key.id))
        .await;
}

/// A rotation gives a new secret.
async fn rotate_api_key(ctx: &Context) {
    let admin = &ctx.as_admin;
    let key = acme_key(ctx, &gold_plan(ctx).await).await;
    let rotated = admin
        .rotate_api_key()
        .key_id(key.id.clone())
        .send()
        .await
        .expect("rotate")
        .into_inner();
    assert_ne!(rotated.secret, key.secret);
    assert_eq!(
        refusal(admin.rotate_api_key().key_id(unknown_id()).send().await),
        status(404, "not_found")
    );
    assert_eq!(
        refusal(
            ctx.anonymous
                .rotate_api_key()
                .key_id(key.id.clone())
                .send()
                .await
        ),
        status(401, "unauthorized")
    );
    let bad = ctx
        .raw
        .post(ctx.url("/admin/v1/api-keys/nope/rotate"))
        .bearer_auth(ADMIN_TOKEN);
    assert_eq!(ctx.raw_status(bad).await, 400);
}

/// A deleted key is gone: deleting it again is 404.
async fn delete_api_key(ctx: &Context) {
    let admin = &ctx.as_admin;
    let key = acme_key(ctx, &gold_plan(ctx).await).await;
    assert_eq!(
        refusal(
            ctx.anonymous
                .delete_api_key()
                .key_id(key.id.clone())
                .send()
                .await
        ),
        status(401, "unauthorized")
    );
    let deleted = admin
        .delete_api_key()
        .key_id(key.id.clone())
        .send()
        .await
        .expect("delete key");
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        refusal(admin.delete_api_key().key_id(key.id.clone()).send().await),
        status(404, "not_found")
    );
    assert_eq!(
        ctx.raw_status(
            ctx.raw
                .delete(ctx.url("/admin/v1/api-keys/nope"))
                .bearer_auth(ADMIN_TOKEN)
        )
        .await,
        400
    );
}
