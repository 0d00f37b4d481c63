//! The outbox: every tweet posted or deleted and every follow or unfollow leaves an event
//! row written in the same transaction as the change (so a failed change leaves none), and
//! a consumer reads them in order from a position kept in the database, which survives a
//! restart, and the metrics say how far behind it is.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use uuid::Uuid;

use minitter_server::infra::store::TweetRecord;
use minitter_test_support::{Backend, needs_postgres, on_every_backend};

use crate::helpers::{TestApp, metric_sample, spawn_app};

const CONSUMER: &str = "tests";

async fn send(request: reqwest::RequestBuilder, bearer: &str) -> reqwest::Response {
    request
        .header("authorization", bearer)
        .send()
        .await
        .expect("request")
}

/// The `type` of each event after the consumer's position, once `expected` are readable.
/// (On PostgreSQL an event is readable once every transaction older than its own has
/// ended, in any database of the server: other tests' transactions can hold it back a
/// moment, which is the outbox doing its job.)
async fn pending(app: &TestApp, expected: usize) -> Vec<String> {
    let started = Instant::now();
    loop {
        let entries = app
            .store()
            .outbox_after(CONSUMER, 100)
            .await
            .expect("outbox");
        if entries.len() >= expected || started.elapsed() > Duration::from_secs(10) {
            return entries
                .iter()
                .map(|entry| {
                    let event: Value = serde_json::from_str(&entry.event).expect("JSON");
                    event["type"].as_str().expect("a type").to_owned()
                })
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn changes_and_their_events_commit_together(backend: Backend) {
    let app = spawn_app(backend).await;
    let ada: Uuid = app
        .sign_up("ada_o", "ada_o@example.com")
        .await
        .parse()
        .expect("id");
    let bob: Uuid = app
        .sign_up("bob_o", "bob_o@example.com")
        .await
        .parse()
        .expect("id");
    let as_ada = format!("Bearer {}", app.log_in("ada_o@example.com").await);
    let as_bob = format!("Bearer {}", app.log_in("bob_o@example.com").await);
    let following = app.url(&format!("/v1/me/following/{bob}"));

    let followed = send(app.http.put(&following), &as_ada).await;
    assert_eq!(followed.status(), 204);
    let posted = send(
        app.http
            .post(app.url("/v1/tweets"))
            .json(&json!({"text": "hello"})),
        &as_bob,
    )
    .await;
    assert_eq!(posted.status(), 201);
    let tweet: Value = posted.json().await.expect("json");
    let tweet_url = app.url(&format!("/v1/tweets/{}", tweet["id"].as_str().expect("id")));

    // Refused changes write nothing.
    let unknown = app.url(&format!("/v1/me/following/{}", Uuid::now_v7()));
    assert_eq!(send(app.http.put(&unknown), &as_ada).await.status(), 404);
    assert_eq!(
        send(app.http.delete(&tweet_url), &as_ada).await.status(),
        403
    );
    let again = send(app.http.put(&following), &as_ada).await;
    assert_eq!(again.status(), 204, "following again changes nothing");
    // A transaction that fails (the same tweet id twice) leaves no event.
    let duplicate = TweetRecord::new(ada, "once".into());
    let _unpublished = app
        .store()
        .insert_tweet(&duplicate, None)
        .await
        .expect("first insert");
    assert!(app.store().insert_tweet(&duplicate, None).await.is_err());

    assert_eq!(
        send(app.http.delete(&following), &as_ada).await.status(),
        204
    );
    assert_eq!(
        send(app.http.delete(&tweet_url), &as_bob).await.status(),
        204
    );
    assert_eq!(
        pending(&app, 5).await,
        [
            "user.followed",
            "tweet.created",
            "tweet.created",
            "user.unfollowed",
            "tweet.deleted"
        ]
    );
    let entries = app
        .store()
        .outbox_after(CONSUMER, 100)
        .await
        .expect("outbox");
    assert_eq!(entries.len(), 5);
    let first: Value = serde_json::from_str(&entries[0].event).expect("JSON");
    assert_eq!(first["follower_id"], json!(ada));
    assert_eq!(first["followee_id"], json!(bob));

    // A consumer moves its position; it holds across a restart.
    app.store()
        .advance_outbox(CONSUMER, entries[2].position)
        .await
        .expect("advance");
    assert_eq!(pending(&app, 2).await, ["user.unfollowed", "tweet.deleted"]);
    let restarted = app.restart().await;
    assert_eq!(
        pending(&restarted, 2).await,
        ["user.unfollowed", "tweet.deleted"]
    );
    // Positions never move back.
    restarted
        .store()
        .advance_outbox(CONSUMER, entries[0].position)
        .await
        .expect("advance");
    assert_eq!(
        pending(&restarted, 2).await,
        ["user.unfollowed", "tweet.deleted"]
    );

    // The metrics say how far behind the consumer is: the age of its oldest unhandled
    // event, then 0 once it has handled them all.
    let behind = outbox_lag(&restarted).await;
    assert!(behind > 0.0 && behind < 600.0, "lag {behind}");
    restarted
        .store()
        .advance_outbox(CONSUMER, entries[4].position)
        .await
        .expect("advance");
    assert_eq!(outbox_lag(&restarted).await, 0.0);
}

/// `minitter_outbox_lag_seconds` of the test's consumer, from `GET /metrics`.
async fn outbox_lag(app: &TestApp) -> f64 {
    let name = format!("minitter_outbox_lag_seconds{{consumer=\"{CONSUMER}\"}}");
    metric_sample(&app.scrape_metrics().await, &name).expect("the consumer's lag")
}

/// Pruning deletes the events every consumer has handled once they are past the
/// retention window, and keeps the rest: what a consumer still needs, and what is recent.
async fn pruning_keeps_what_a_consumer_needs_and_what_is_recent(backend: Backend) {
    let app = spawn_app(backend).await;
    app.sign_up("ada_p", "ada_p@example.com").await;
    let as_ada = format!("Bearer {}", app.log_in("ada_p@example.com").await);
    for text in ["one", "two", "three"] {
        let posted = send(
            app.http
                .post(app.url("/v1/tweets"))
                .json(&json!({"text": text})),
            &as_ada,
        )
        .await;
        assert_eq!(posted.status(), 201);
    }
    assert_eq!(pending(&app, 3).await.len(), 3);
    // The server's own consumers hold events back from pruning too, until they handle them.
    let state = app.state.as_ref().expect("a server in this process");
    state.timelines.settle().await;
    state.webhooks.settle().await;
    let entries = app
        .store()
        .outbox_after(CONSUMER, 100)
        .await
        .expect("outbox");
    app.store()
        .advance_outbox(CONSUMER, entries[1].position)
        .await
        .expect("advance");
    let store = app.store();
    let prune =
        |days| minitter_server::services::outbox::prune(store, chrono::Duration::days(days));

    // Within the retention window nothing goes, handled or not.
    assert_eq!(prune(7).await.expect("prune"), 0);
    // Past it, what the consumer handled goes; the event it has not handled stays.
    assert_eq!(prune(0).await.expect("prune"), 2);
    let left = app
        .store()
        .outbox_after(CONSUMER, 100)
        .await
        .expect("outbox");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].position, entries[2].position);
    assert_eq!(
        prune(0).await.expect("prune"),
        0,
        "a consumer still needs it"
    );

    // Handled, it goes too; a new consumer then finds an empty outbox.
    app.store()
        .advance_outbox(CONSUMER, entries[2].position)
        .await
        .expect("advance");
    assert_eq!(prune(0).await.expect("prune"), 1);
    let fresh = app
        .store()
        .outbox_after("a new consumer", 100)
        .await
        .expect("outbox");
    assert!(fresh.is_empty(), "{} events left", fresh.len());
}

/// A turn that ends without recording anything (an instance killed mid-batch) hands the
/// same events to the next turn; a finished one moves the position past them.
async fn a_turn_records_only_what_it_finished(backend: Backend) {
    let app = spawn_app(backend).await;
    let ada = app.sign_up("ada_t", "ada_t@example.com").await;
    let bob = app.sign_up("bob_t", "bob_t@example.com").await;
    let bearer = format!("Bearer {}", app.log_in("ada_t@example.com").await);
    let path = app.url(&format!("/v1/me/following/{bob}"));
    assert_eq!(send(app.http.put(&path), &bearer).await.status(), 204);
    assert_eq!(pending(&app, 1).await.len(), 1, "{ada} follows bob");
    let claim = || async {
        app.store()
            .claim_outbox(CONSUMER, 100)
            .await
            .expect("claim")
            .expect("the turn")
    };

    let dropped = claim().await;
    assert_eq!(dropped.entries.len(), 1);
    drop(dropped);
    // A dropped transaction rolls back (and lets go of the turn) on its connection's next
    // use, which may be a moment away: ask until the turn is free again.
    let started = Instant::now();
    let finished = loop {
        let turn = app
            .store()
            .claim_outbox(CONSUMER, 100)
            .await
            .expect("claim");
        match turn {
            Some(turn) => break turn,
            None if started.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            None => panic!("the dropped turn was never let go of"),
        }
    };
    assert_eq!(finished.entries.len(), 1, "a dropped turn recorded nothing");
    let through = finished.entries[0].position;
    finished.finish(Some(through)).await.expect("finish");
    assert!(claim().await.entries.is_empty(), "a finished turn moved on");
}

/// On PostgreSQL one transaction at a time has a consumer's turn, whichever instance asks;
/// it passes on when the turn ends.
async fn one_instance_at_a_time_has_a_consumers_turn() {
    let app = spawn_app(Backend::Postgres).await;
    let other = app.sibling(|_| {}).await;
    let held = app
        .store()
        .claim_outbox(CONSUMER, 100)
        .await
        .expect("claim");
    assert!(held.is_some(), "the first claim gets the turn");
    let refused = other.store().claim_outbox(CONSUMER, 100).await;
    assert!(refused.expect("claim").is_none(), "a second instance waits");
    let other_consumer = other.store().claim_outbox("another", 100).await;
    assert!(
        other_consumer.expect("claim").is_some(),
        "turns are per consumer"
    );
    held.expect("turn").finish(None).await.expect("finish");
    let next = other.store().claim_outbox(CONSUMER, 100).await;
    assert!(next.expect("claim").is_some(), "the turn passed on");
}

on_every_backend!(changes_and_their_events_commit_together);
on_every_backend!(a_turn_records_only_what_it_finished);
needs_postgres!(one_instance_at_a_time_has_a_consumers_turn);
on_every_backend!(pruning_keeps_what_a_consumer_needs_and_what_is_recent);
