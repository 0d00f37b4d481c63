//! No acknowledged write is lost when the server is killed: on each backend, the server
//! binary runs under concurrent posts and gets `kill -9` at a random moment, round after
//! round; afterwards every tweet that was answered 201 is there.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};

use minitter_test_support::{Backend, on_every_backend};

use crate::helpers::{TestApp, spawn_app};

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

on_every_backend!(every_acknowledged_tweet_survives_repeated_kills);
