//! The realtime stream across three instances on PostgreSQL and Redis: tickets redeemed
//! and tweets pushed on another instance than the one that took them, and sockets closed
//! on every instance when an operator disables their key or deletes their user through
//! another.

use minitter_server::config::Config;
use minitter_test_support::{Backend, needs_cluster, required_env};

use crate::helpers::{TestApp, post_tweet, spawn_app_with, user};
use crate::stream::{next, subscribe, ticket, ws_url};

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
    crate::stream::changes_close_sockets(&first, &second, &third).await;
}

needs_cluster!(key_and_user_changes_close_sockets_on_every_instance);
