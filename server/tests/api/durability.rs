//! No acknowledged write is lost when the server is killed: on each backend, the server
//! binary runs under concurrent posts and gets `kill -9` at a random moment, round after
//! round; afterwards every tweet that was answered 201 is there, and (with feeds in Redis,
//! which outlive the process) in every follower's home feed too: the fan-out reads the
//! outbox, so a kill between a post's commit and its fan-out loses nothing; and at a
//! partner's webhook receiver, whichever instance was delivering when it died.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};

use minitter_test_support::{Backend, needs_cluster, on_every_backend, required_env};

use crate::helpers::{TestApp, spawn_app, spawn_app_with};
use crate::webhooks::{Receiver, subscribe};

/// Rounds of load-then-kill.
const ROUNDS: usize = 10;
/// Clients posting at once.
const WRITERS: usize = 8;

async fn every_acknowledged_tweet_survives_repeated_kills(backend: Backend) {
    let app = spawn_app(backend).await;
    let ada_id = app.sign_up("ada_l", "ada@example.com").await;
    let auth = format!("Bearer {}", app.log_in("ada@example.com").await);

    let mut acknowledged = HashSet::new();
    for round in 0..ROUNDS {
        let server = app.start_child("info");
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                tokio::spawn(post_until_refused(
                    server.app.http.clone(),
                    server.app.url("/v1/tweets"),
                    auth.clone(),
                    format!("round {round} writer {writer}"),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(rand::random_range(150..600))).await;
        server.kill();
        for writer in writers {
            acknowledged.extend(writer.await.expect("writer"));
        }
    }
    assert!(
        acknowledged.len() >= ROUNDS,
        "the load made too few posts to prove anything: {}",
        acknowledged.len()
    );

    let stored = all_tweet_ids(&app, &ada_id).await;
    let lost: Vec<_> = acknowledged.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged tweets were lost: {lost:?}",
        lost.len(),
        acknowledged.len()
    );
}

/// Posts until the server stops answering; returns the ids of the posts answered 201 with
/// a whole body (a response cut off by the kill is no acknowledgement).
async fn post_until_refused(
    http: reqwest::Client,
    url: String,
    auth: String,
    text: String,
) -> Vec<String> {
    let mut acknowledged = Vec::new();
    loop {
        let sent = http
            .post(&url)
            .header("authorization", &auth)
            .json(&json!({ "text": text }))
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        let Ok(response) = sent else { break };
        if response.status() != 201 {
            continue;
        }
        let Ok(tweet) = response.json::<Value>().await else {
            break;
        };
        if let Some(id) = tweet["id"].as_str() {
            acknowledged.push(id.to_owned());
        }
    }
    acknowledged
}

async fn all_tweet_ids(app: &TestApp, user_id: &str) -> HashSet<String> {
    let mut ids = HashSet::new();
    let mut path = format!("/v1/users/{user_id}/tweets?limit=100");
    loop {
        let page = app.get_json(&path, None).await;
        for tweet in page["items"].as_array().expect("items") {
            ids.insert(tweet["id"].as_str().expect("id").to_owned());
        }
        match page["next_page"].as_str() {
            Some(next) => path = format!("/v1/users/{user_id}/tweets?limit=100&page_token={next}"),
            None => return ids,
        }
    }
}

/// Ada's posts go through child servers killed at random moments, while an instance in
/// this process keeps running; a follower's warm home feed (in Redis, shared by all) must
/// end up with every tweet that committed. The in-process instance hears of the children's
/// posts only as remote events, which never fan out: only the outbox gets the ones a
/// killed child did not copy into the feeds.
async fn followers_feeds_keep_every_committed_tweet_across_kills() {
    let redis_url = required_env("MINITTER_TEST_REDIS_URL");
    let shared = redis_url.clone();
    let app = spawn_app_with(Backend::Postgres, move |config| {
        config.redis_url = Some(shared.into());
        config.webhook_allowed_networks = vec!["127.0.0.1/32".parse().expect("a network")];
        config.webhook_timeout_seconds = 2;
        config.webhook_lease_seconds = 5;
    })
    .await;
    // A partner's receiver of every tweet: whichever instance was delivering when it was
    // killed, every committed tweet reaches it.
    let receiver = Receiver::start().await;
    subscribe(
        &app,
        json!({"url": receiver.url, "event_types": ["tweet.created"]}),
    )
    .await;
    let ada_id = app.sign_up("ada_l", "ada@example.com").await;
    app.sign_up("bob_b", "bob@example.com").await;
    let ada = format!("Bearer {}", app.log_in("ada@example.com").await);
    let bob = format!("Bearer {}", app.log_in("bob@example.com").await);
    let followed = app
        .http
        .put(app.url(&format!("/v1/me/following/{ada_id}")))
        .header("authorization", &bob)
        .send()
        .await
        .expect("follow");
    assert_eq!(followed.status(), 204);
    // Bob's feed is built now, so that later reads are served from it.
    app.get_json("/v1/timeline", Some(&bob)).await;

    let mut acknowledged = HashSet::new();
    for round in 0..ROUNDS {
        let server = app.start_child_with_env(
            "info",
            &[
                ("MINITTER_REDIS_URL", &redis_url),
                ("MINITTER_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.1/32"),
                ("MINITTER_WEBHOOK_TIMEOUT_SECONDS", "2"),
                ("MINITTER_WEBHOOK_LEASE_SECONDS", "5"),
            ],
        );
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                tokio::spawn(post_until_refused(
                    server.app.http.clone(),
                    server.app.url("/v1/tweets"),
                    ada.clone(),
                    format!("round {round} writer {writer}"),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(rand::random_range(150..600))).await;
        server.kill();
        for writer in writers {
            acknowledged.extend(writer.await.expect("writer"));
        }
    }
    assert!(
        acknowledged.len() >= ROUNDS,
        "too few posts to prove anything"
    );

    let stored = all_tweet_ids(&app, &ada_id).await;
    assert!(
        acknowledged.is_subset(&stored),
        "acknowledged tweets were lost"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (timeline, from_feeds) = home_timeline(&app, &bob).await;
        assert!(
            from_feeds > 0.0,
            "bob's timeline was not served from his feed"
        );
        let missing: Vec<_> = stored.difference(&timeline).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {} committed tweets never reached bob's feed, such as {:?}",
            missing.len(),
            stored.len(),
            missing.iter().take(5).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The webhooks: every committed tweet, and nothing else (no rolled-back post), once
    // the killed instances' leases have run out. A kill may repeat the delivery in flight
    // and the successes not yet recorded (at most a batch of them).
    let most_repeats = ROUNDS * (minitter_server::services::webhooks::worker::BATCH as usize + 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let delivered: Vec<String> = receiver
            .received()
            .iter()
            .map(|request| {
                request.json()["data"]["id"]
                    .as_str()
                    .expect("id")
                    .to_owned()
            })
            .collect();
        let unique: HashSet<String> = delivered.iter().cloned().collect();
        assert!(
            unique.is_subset(&stored),
            "a webhook announced a tweet that is not stored"
        );
        if unique == stored {
            let repeats = delivered.len() - unique.len();
            assert!(
                repeats <= most_repeats,
                "{repeats} repeated deliveries over {ROUNDS} kills"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {} committed tweets never reached the webhook receiver",
            stored.difference(&unique).count(),
            stored.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every tweet id of `authorization`'s home timeline, and how many of this instance's
/// timeline pages so far came from the feeds.
async fn home_timeline(app: &TestApp, authorization: &str) -> (HashSet<String>, f64) {
    let mut ids = HashSet::new();
    let mut path = "/v1/timeline?limit=100".to_owned();
    loop {
        let page = app.get_json(&path, Some(authorization)).await;
        for tweet in page["items"].as_array().expect("items") {
            ids.insert(tweet["id"].as_str().expect("id").to_owned());
        }
        match page["next_page"].as_str() {
            Some(next) => path = format!("/v1/timeline?limit=100&page_token={next}"),
            None => break,
        }
    }
    let metrics = app.scrape_metrics().await;
    let from_feeds =
        crate::helpers::metric_sample(&metrics, "minitter_timeline_pages_total{source=\"feed\"}")
            .unwrap_or(0.0);
    (ids, from_feeds)
}

on_every_backend!(every_acknowledged_tweet_survives_repeated_kills);
needs_cluster!(followers_feeds_keep_every_committed_tweet_across_kills);
