//! The realtime stream across three instances on PostgreSQL and Redis: tickets redeemed
//! and tweets pushed on another instance than the one that took them, and sockets closed
//! on every instance when an operator disables their key or deletes their user through
//! another.

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use minitter_server::config::Config;
use minitter_test_support::{Backend, needs_cluster, required_env};

use crate::helpers::{TestApp, http_client, post_tweet, spawn_app_with, user};
use crate::stream::{ask, closed, connect, next, subscribe, ticket, ws_url};

/// Three instances sharing PostgreSQL and Redis.
async fn cluster() -> [TestApp; 3] {
    let redis = required_env("MINITTER_TEST_REDIS_URL");
    let shared = move |config: &mut Config| {
        config.redis_url = Some(redis.clone().into());
    };
    let first = spawn_app_with(Backend::Postgres, shared.clone()).await;
    let second = first.sibling(shared.clone()).await;
    let third = first.sibling(shared).await;
    [first, second, third]
}

/// Three instances on PostgreSQL and Redis: a ticket taken on one opens a stream on
/// another, and a tweet posted through a third reaches it.
async fn tickets_and_tweets_cross_instances() {
    let [first, second, third] = cluster().await;
    let (bob_id, bob) = user(&first, "bob").await;
    let (_, alice) = user(&first, "alice").await;

    let issued = ticket(&first, &alice).await;
    let url = ws_url(&second, issued["url"].as_str().expect("url"));
    let (mut socket, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("a ticket from one instance opens a stream on another");
    subscribe(&mut socket, &format!("user:{bob_id}")).await;
    for (n, instance) in [&third, &first, &second].into_iter().enumerate() {
        let id = post_tweet(instance, &bob, &format!("tweet {n}")).await;
        assert_eq!(
            next(&mut socket).await["data"]["id"],
            id,
            "through instance {n}"
        );
    }
    // Redeemed on the second instance, the ticket opens nothing on the third.
    let again =
        tokio_tungstenite::connect_async(ws_url(&third, issued["url"].as_str().expect("url")))
            .await;
    assert!(again.is_err(), "a used ticket is refused everywhere");
}

needs_cluster!(tickets_and_tweets_cross_instances);

/// An operator's change through one instance closes the sockets it concerns on the
/// others: a deleted user's, then a disabled key's; the others stay open.
async fn key_and_user_changes_close_sockets_on_every_instance() {
    let [first, second, third] = cluster().await;
    let (_, alice) = user(&first, "alice").await;
    let (bob_id, bob) = user(&first, "bob").await;
    let plan = first
        .admin_post("/admin/v1/usage-plans", &json!({"name": "p"}))
        .await;
    let key = first
        .admin_post(
            "/admin/v1/api-keys",
            &json!({"name": "k", "plan_id": plan["id"]}),
        )
        .await;
    let partner = http_client(key["secret"].as_str().expect("secret"));
    let issued: Value = partner
        .post(first.url("/v1/stream/tickets"))
        .header("authorization", &alice)
        .send()
        .await
        .expect("ticket")
        .json()
        .await
        .expect("json");
    let (mut alice_socket, _) =
        tokio_tungstenite::connect_async(ws_url(&second, issued["url"].as_str().expect("url")))
            .await
            .expect("open on the second instance");
    let mut bob_socket = connect(&third, &bob).await;

    let deleted = first
        .http
        .delete(first.url(&format!("/admin/v1/users/{bob_id}")))
        .header("authorization", first.admin_authorization())
        .send()
        .await
        .expect("delete user");
    assert_eq!(deleted.status(), 204);
    assert_eq!(closed(&mut bob_socket).await.0, CloseCode::from(4001));
    assert_eq!(
        ask(&mut alice_socket, json!({"action": "ping"})).await["type"],
        "pong"
    );

    let disabled = first
        .http
        .patch(first.url(&format!(
            "/admin/v1/api-keys/{}",
            key["id"].as_str().expect("id")
        )))
        .header("authorization", first.admin_authorization())
        .json(&json!({"enabled": false}))
        .send()
        .await
        .expect("disable");
    assert_eq!(disabled.status(), 200);
    let (code, reason) = closed(&mut alice_socket).await;
    assert_eq!(code, CloseCode::from(4001));
    assert!(reason.contains("key"), "{reason}");
}

needs_cluster!(key_and_user_changes_close_sockets_on_every_instance);
