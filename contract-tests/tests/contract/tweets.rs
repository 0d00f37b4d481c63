//! Tag `tweets`: posting (with idempotency keys), reading, deleting, a user's tweets and
//! the timeline.

use futures::TryStreamExt;
use minitter_client::types;
use reqwest::StatusCode;

use crate::helpers::{Context, limit, new_tweet, refusal, scenarios, status, unknown_id};

scenarios! {
    create_tweet: ["create_tweet 201 400 401 413 415"],
    idempotency_keys: ["create_tweet 201 409 422"],
    get_tweet: ["get_tweet 200 400 404"],
    lists: [
        "get_timeline 200 400 401",
        "list_user_tweets 200 400 404",
    ],
    delete_tweet: ["delete_tweet 204 400 401 403 404", "get_tweet 404"],
}

/// Bob posts a tweet and gets it back.
async fn bob_posts(ctx: &Context, text: &str) -> types::Tweet {
    ctx.as_bob
        .create_tweet()
        .body(new_tweet(text))
        .send()
        .await
        .expect("post")
        .into_inner()
}

/// Ada follows Bob, so that his tweets are on her timeline.
async fn ada_follows_bob(ctx: &Context) {
    ctx.as_ada
        .follow_user()
        .user_id(ctx.bob.id.clone())
        .send()
        .await
        .expect("follow");
}

/// A post is 201 with its `Location`; without a token 401, empty 400, and the body
/// limits apply.
async fn create_tweet(ctx: &Context) {
    let posted = ctx
        .as_bob
        .create_tweet()
        .body(new_tweet("hello from bob"))
        .send()
        .await
        .expect("post");
    assert_eq!(posted.status(), StatusCode::CREATED);
    let location = posted
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bobs = posted.into_inner();
    assert_eq!(location, format!("/v1/tweets/{}", *bobs.id));

    assert_eq!(
        refusal(
            ctx.anonymous
                .create_tweet()
                .body(new_tweet("hi"))
                .send()
                .await
        ),
        status(401, "unauthorized")
    );
    let empty = ctx
        .raw
        .post(ctx.url("/v1/tweets"))
        .header("authorization", ctx.ada_auth())
        .json(&serde_json::json!({"text": ""}));
    assert_eq!(ctx.raw_status(empty).await, 400);
    ctx.oversized_and_mistyped("/v1/tweets").await;
}

/// Idempotency: a retry replays; another body is 422; a retry in flight is 409.
async fn idempotency_keys(ctx: &Context) {
    let first = ctx
        .as_ada
        .create_tweet()
        .idempotency_key(String::from("key-1"))
        .body(new_tweet("once"))
        .send()
        .await
        .expect("post");
    let again = ctx
        .as_ada
        .create_tweet()
        .idempotency_key(String::from("key-1"))
        .body(new_tweet("once"))
        .send()
        .await
        .expect("replay");
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.into_inner(), first.into_inner());
    let other = ctx
        .as_ada
        .create_tweet()
        .idempotency_key(String::from("key-1"))
        .body(new_tweet("twice"))
        .send()
        .await;
    assert_eq!(refusal(other), status(422, "idempotency_key_reused"));
    ctx.server
        .state
        .store
        .claim_idempotency_key(*ctx.ada.id, "key-2", "running")
        .await
        .expect("claim");
    let in_flight = ctx
        .as_ada
        .create_tweet()
        .idempotency_key(String::from("key-2"))
        .body(new_tweet("x"))
        .send()
        .await;
    assert_eq!(refusal(in_flight), status(409, "request_in_flight"));
}

/// A tweet is what its post returned; an unknown id is 404, a malformed one 400.
async fn get_tweet(ctx: &Context) {
    let bobs = bob_posts(ctx, "hello from bob").await;
    let fetched = ctx
        .anonymous
        .get_tweet()
        .tweet_id(bobs.id.clone())
        .send()
        .await
        .expect("get tweet");
    assert_eq!(fetched.into_inner(), bobs);
    assert_eq!(
        refusal(
            ctx.anonymous
                .get_tweet()
                .tweet_id(unknown_id())
                .send()
                .await
        ),
        status(404, "not_found")
    );
    assert_eq!(
        ctx.raw_status(ctx.raw.get(ctx.url("/v1/tweets/nope")))
            .await,
        400
    );
}

/// Ada follows Bob: her timeline has both, newest first, across pages; Bob's tweets are
/// his. Forged page tokens are 400, a stranger's tweets 404, a timeline without a token
/// 401.
async fn lists(ctx: &Context) {
    ada_follows_bob(ctx).await;
    let bobs = bob_posts(ctx, "hello from bob").await;
    ctx.as_ada
        .create_tweet()
        .idempotency_key(String::from("key-1"))
        .body(new_tweet("once"))
        .send()
        .await
        .expect("post");
    let timeline: Vec<types::Tweet> = ctx
        .as_ada
        .get_timeline()
        .limit(limit(1))
        .stream()
        .try_collect()
        .await
        .expect("timeline");
    let texts: Vec<&str> = timeline.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(texts, ["once", "hello from bob"]);
    let bobs_tweets: Vec<types::Tweet> = ctx
        .anonymous
        .list_user_tweets()
        .user_id(ctx.bob.id.clone())
        .limit(limit(1))
        .stream()
        .try_collect()
        .await
        .expect("tweets");
    assert_eq!(bobs_tweets, std::slice::from_ref(&bobs));
    assert_eq!(
        refusal(ctx.as_ada.get_timeline().page_token("forged").send().await),
        status(400, "invalid_request")
    );
    assert_eq!(
        refusal(ctx.anonymous.get_timeline().send().await),
        status(401, "unauthorized")
    );
    let forged = ctx
        .anonymous
        .list_user_tweets()
        .user_id(ctx.bob.id.clone())
        .page_token("x.y")
        .send()
        .await;
    assert_eq!(refusal(forged), status(400, "invalid_request"));
    assert_eq!(
        refusal(
            ctx.anonymous
                .list_user_tweets()
                .user_id(unknown_id())
                .send()
                .await
        ),
        status(404, "not_found")
    );
}

/// Only the author may delete; afterwards the tweet is gone everywhere.
async fn delete_tweet(ctx: &Context) {
    ada_follows_bob(ctx).await;
    let bobs = bob_posts(ctx, "hello from bob").await;
    for (client, refused) in [
        (&ctx.as_ada, status(403, "forbidden")),
        (&ctx.anonymous, status(401, "unauthorized")),
    ] {
        let result = client.delete_tweet().tweet_id(bobs.id.clone()).send().await;
        assert_eq!(refusal(result), refused);
    }
    let deleted = ctx
        .as_bob
        .delete_tweet()
        .tweet_id(bobs.id.clone())
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        refusal(
            ctx.as_bob
                .delete_tweet()
                .tweet_id(bobs.id.clone())
                .send()
                .await
        ),
        status(404, "not_found")
    );
    assert_eq!(
        refusal(
            ctx.anonymous
                .get_tweet()
                .tweet_id(bobs.id.clone())
                .send()
                .await
        ),
        status(404, "not_found")
    );
    let timeline = ctx
        .as_ada
        .get_timeline()
        .send()
        .await
        .expect("timeline")
        .into_inner();
    assert!(timeline.items.iter().all(|t| t.id != bobs.id));
    let bad_id = ctx
        .raw
        .delete(ctx.url("/v1/tweets/nope"))
        .header("authorization", ctx.ada_auth());
    assert_eq!(ctx.raw_status(bad_id).await, 400);
}
