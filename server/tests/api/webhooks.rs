//! Webhooks end to end, against a real HTTP receiver on loopback (admitted by the
//! operator's allow list): partners' subscriptions through the API, deliveries signed as
//! Standard Webhooks (checked with the `standardwebhooks` crate, as a partner would),
//! retries that keep their `webhook-id` and respect `Retry-After`, 410 disabling, the
//! breaker, secret rotation, ping and redelivery, the SSRF refusals, and ownership.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::HeaderMap;
use poem::listener::TcpAcceptor;
use serde_json::{Value, json};
use standardwebhooks::Webhook;
use tokio::net::TcpListener;

use minitter_server::config::Config;
use minitter_test_support::{Backend, needs_cluster, on_every_backend, required_env};

use crate::helpers::{
    TestApp, api_key, assert_problem, http_client, post_tweet, spawn_app_with, user,
};

/// One request the receiver got.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    at: Instant,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Received {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    pub(crate) fn header(&self, name: &str) -> String {
        self.headers[name].to_str().expect("ascii").to_owned()
    }
}

/// A receiver on 127.0.0.1 that records every request and answers from a script (then
/// 204 once the script is spent).
pub(crate) struct Receiver {
    pub(crate) url: String,
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<poem::Response>>>,
}

impl Receiver {
    pub(crate) async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let port = listener.local_addr().expect("bound").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::new()));
        let (log, answers) = (Arc::clone(&received), Arc::clone(&script));
        let endpoint = poem::endpoint::make(move |mut request: poem::Request| {
            let (log, answers) = (Arc::clone(&log), Arc::clone(&answers));
            async move {
                let body = request.take_body().into_vec().await.unwrap_or_default();
                log.lock().expect("lock").push(Received {
                    at: Instant::now(),
                    headers: request.headers().clone(),
                    body,
                });
                let next = answers.lock().expect("lock").pop_front();
                next.unwrap_or_else(|| answer(204))
            }
        });
        let acceptor = TcpAcceptor::from_tokio(listener).expect("acceptor");
        tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(endpoint));
        Self {
            url: format!("http://127.0.0.1:{port}/hooks"),
            received,
            script,
        }
    }

    /// Answers the next requests with these responses, in order.
    fn then(&self, responses: impl IntoIterator<Item = poem::Response>) {
        self.script.lock().expect("lock").extend(responses);
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    /// The requests so far, once there are at least `count` (or after 30 s).
    async fn wait_for(&self, count: usize) -> Vec<Received> {
        let started = Instant::now();
        loop {
            let received = self.received();
            if received.len() >= count || started.elapsed() > Duration::from_secs(30) {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn answer(status: u16) -> poem::Response {
    poem::Response::builder()
        .status(http::StatusCode::from_u16(status).expect("a status"))
        .body(format!("answer {status}"))
}

/// Loopback receivers are allowed; attempts time out after 2 s; an open breaker waits 2 s.
fn with_loopback(config: &mut Config) {
    config.webhook_allowed_networks = vec!["127.0.0.1/32".parse().expect("a network")];
    config.webhook_timeout_seconds = 2;
    config.webhook_breaker_cool_down_seconds = 2;
}

async fn app_on(backend: Backend) -> TestApp {
    spawn_app_with(backend, with_loopback).await
}

/// Subscribes `url` to `body`'s events with the app's key; the created subscription.
pub(crate) async fn subscribe(app: &TestApp, body: Value) -> Value {
    let response = app
        .http
        .post(app.url("/v1/webhooks"))
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
    response.json().await.expect("json")
}

fn all_events(url: &str) -> Value {
    json!({
        "url": url,
        "event_types": ["tweet.created", "tweet.deleted", "user.followed", "user.unfollowed"],
    })
}

fn verifies(secret: &str, request: &Received) -> bool {
    Webhook::new(secret)
        .expect("a secret")
        .verify(&request.body, &request.headers)
        .is_ok()
}

/// The subscription as GET shows it.
async fn webhook(app: &TestApp, id: &str) -> Value {
    app.get_json(&format!("/v1/webhooks/{id}"), None).await
}

/// Subscription `id`'s deliveries once none is pending (or 10 s have passed): the worker
/// records successes a moment after it sends them, several at a time.
async fn deliveries(app: &TestApp, id: &str) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let page = app
            .get_json(&format!("/v1/webhooks/{id}/deliveries"), None)
            .await;
        let items = page["items"].as_array().expect("items").clone();
        let pending = items.iter().any(|d| d["status"] == "pending");
        if !pending || started.elapsed() > Duration::from_secs(10) {
            return items;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn every_event_arrives_signed_once(backend: Backend) {
    let app = app_on(backend).await;
    let receiver = Receiver::start().await;
    let created = subscribe(&app, all_events(&receiver.url)).await;
    let secret = created["secret"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("whsec_"));
    let listed = app.get_json("/v1/webhooks", None).await;
    assert_eq!(listed["items"][0]["id"], created["id"]);
    assert!(
        listed["items"][0].get("secret").is_none(),
        "secrets are never listed"
    );

    let (bob, as_bob) = user(&app, "bob_w").await;
    let (_ada, as_ada) = user(&app, "ada_w").await;
    let tweet = post_tweet(&app, &as_bob, "hello hooks").await;
    let follow = app.url(&format!("/v1/me/following/{bob}"));
    let followed = app
        .http
        .put(&follow)
        .header("authorization", &as_ada)
        .send()
        .await;
    assert_eq!(followed.expect("follow").status(), 204);
    let deleted = app
        .http
        .delete(app.url(&format!("/v1/tweets/{tweet}")))
        .header("authorization", &as_bob)
        .send()
        .await;
    assert_eq!(deleted.expect("delete").status(), 204);

    let received = receiver.wait_for(3).await;
    assert_eq!(received.len(), 3, "one request per event");
    let types: Vec<String> = received
        .iter()
        .map(|r| r.json()["type"].as_str().expect("type").to_owned())
        .collect();
    assert_eq!(
        types,
        ["tweet.created", "user.followed", "tweet.deleted"],
        "in order"
    );
    for request in &received {
        assert!(
            verifies(&secret, request),
            "signed with the subscription's secret"
        );
        assert!(request.header("webhook-id").starts_with("msg_"));
        assert!(
            !String::from_utf8_lossy(&request.body).contains("@example.com"),
            "no email"
        );
    }
    let stranger = minitter_server::services::webhooks::send::new_secret();
    assert!(
        !verifies(&stranger, &received[0]),
        "another secret does not verify"
    );
    let first = received[0].json();
    assert_eq!(first["data"]["id"], tweet.as_str());
    assert_eq!(first["data"]["author_id"], bob.as_str());
    assert_eq!(first["data"]["text"], "hello hooks");

    // The log says each was delivered at its first attempt, with the answer's start.
    let id = created["id"].as_str().expect("id");
    let log = deliveries(&app, id).await;
    assert_eq!(log.len(), 3);
    for delivery in &log {
        assert_eq!(delivery["status"], "delivered");
        assert_eq!(delivery["attempts"], 1);
        assert_eq!(delivery["last_status_code"], 204);
    }
    let ids: Vec<String> = received.iter().map(|r| r.header("webhook-id")).collect();
    assert!(
        log.iter()
            .all(|d| ids.contains(&d["message_id"].as_str().expect("id").to_owned()))
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 3, "nothing is sent twice");
}

async fn a_failed_delivery_is_retried_with_its_id_after_retry_after(backend: Backend) {
    let app = app_on(backend).await;
    let receiver = Receiver::start().await;
    let created = subscribe(&app, all_events(&receiver.url)).await;
    let mut busy = answer(503);
    busy.headers_mut()
        .insert("retry-after", "2".parse().expect("value"));
    receiver.then([busy]);
    let (_bob, as_bob) = user(&app, "bob_r").await;
    post_tweet(&app, &as_bob, "try again").await;

    // One failure only: the retries after it are drawn from up to a minute, too long to
    // wait for here (the schedule's own tests cover them).
    let received = receiver.wait_for(2).await;
    assert_eq!(received.len(), 2, "the failure, then the success");
    let id = received[0].header("webhook-id");
    assert_eq!(
        received[1].header("webhook-id"),
        id,
        "the same id on every attempt"
    );
    let gap = received[1].at - received[0].at;
    assert!(
        gap >= Duration::from_millis(1900),
        "Retry-After: 2 is honoured: {gap:?}"
    );
    let log = deliveries(&app, created["id"].as_str().expect("id")).await;
    assert_eq!(log[0]["status"], "delivered");
    assert_eq!(log[0]["attempts"], 2);
    let metrics = app.scrape_metrics().await;
    assert!(
        metrics.contains("minitter_webhook_attempts_total{outcome=\"failed\"} 1"),
        "{metrics}"
    );
}

async fn a_gone_endpoint_is_disabled(backend: Backend) {
    let app = app_on(backend).await;
    let receiver = Receiver::start().await;
    let created = subscribe(&app, all_events(&receiver.url)).await;
    receiver.then([answer(410)]);
    let (_bob, as_bob) = user(&app, "bob_g").await;
    post_tweet(&app, &as_bob, "anyone there?").await;
    receiver.wait_for(1).await;
    let id = created["id"].as_str().expect("id");
    let started = Instant::now();
    while webhook(&app, id).await["enabled"] == true && started.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let shown = webhook(&app, id).await;
    assert_eq!(shown["enabled"], false);
    assert_eq!(shown["disabled_reason"], "gone");
    assert_eq!(deliveries(&app, id).await[0]["status"], "failed");
    post_tweet(&app, &as_bob, "still there?").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        receiver.received().len(),
        1,
        "a disabled subscription gets nothing"
    );
}

async fn the_breaker_opens_after_five_failures_and_closes_on_a_probe(backend: Backend) {
    let app = app_on(backend).await;
    let receiver = Receiver::start().await;
    let created = subscribe(&app, all_events(&receiver.url)).await;
    let id = created["id"].as_str().expect("id");
    receiver.then((0..5).map(|_| answer(500)));
    let (_bob, as_bob) = user(&app, "bob_b").await;
    for n in 0..5 {
        post_tweet(&app, &as_bob, &format!("tweet {n}")).await;
    }
    receiver.wait_for(5).await;
    let started = Instant::now();
    let mut shown = webhook(&app, id).await;
    while shown["breaker"]["state"] != "open" && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        shown = webhook(&app, id).await;
    }
    assert_eq!(shown["breaker"]["state"], "open", "{shown}");
    assert_eq!(shown["breaker"]["consecutive_failures"], 5);
    let metrics = app.scrape_metrics().await;
    assert!(
        metrics.contains("minitter_webhook_breakers_open 1"),
        "{metrics}"
    );
    // While open, nothing is sent; after the cool-down one probe goes and closes it, and
    // every queued event follows.
    let opened = Instant::now();
    let received = receiver.wait_for(10).await;
    assert_eq!(received.len(), 10, "5 failures, then all 5 delivered");
    assert!(
        received[5].at - opened >= Duration::from_millis(500),
        "nothing while open"
    );
    let shown = webhook(&app, id).await;
    assert_eq!(shown["breaker"]["state"], "closed");
    assert_eq!(shown["breaker"]["consecutive_failures"], 0);
}

async fn a_rotated_secret_signs_beside_the_old_one(backend: Backend) {
    let app = app_on(backend).await;
    let receiver = Receiver::start().await;
    let created = subscribe(&app, all_events(&receiver.url)).await;
    let id = created["id"].as_str().expect("id");
    let old = created["secret"].as_str().expect("secret");
    let rotated: Value = app
        .http
        .post(app.url(&format!("/v1/webhooks/{id}/rotate-secret")))
        .send()
        .await
        .expect("rotate")
        .json()
        .await
        .expect("json");
    let new = rotated["secret"].as_str().expect("secret");
    assert_ne!(old, new);
    assert!(rotated["previous_secret_expires_at"].is_string());
    let (_bob, as_bob) = user(&app, "bob_s").await;
    post_tweet(&app, &as_bob, "rolled").await;
    let received = receiver.wait_for(1).await;
    let signatures = received[0].header("webhook-signature");
    assert_eq!(signatures.split(' ').count(), 2, "{signatures}");
    assert!(verifies(old, &received[0]), "the old secret still verifies");
    assert!(verifies(new, &received[0]), "the new one verifies");
}

async fn ping_and_redeliver(backend: Backend) {
    let app = app_on(backend).await;
    let receiver = Receiver::start().await;
    // A ping reaches a subscription whatever its event types.
    let created = subscribe(
        &app,
        json!({"url": receiver.url, "event_types": ["user.followed"]}),
    )
    .await;
    let id = created["id"].as_str().expect("id");
    let ping = app
        .http
        .post(app.url(&format!("/v1/webhooks/{id}/test")))
        .send()
        .await
        .expect("test");
    assert_eq!(ping.status(), 202);
    let ping: Value = ping.json().await.expect("json");
    assert_eq!(ping["event_type"], "webhook.ping");
    let received = receiver.wait_for(1).await;
    assert_eq!(received[0].json()["type"], "webhook.ping");
    assert_eq!(received[0].json()["data"]["webhook_id"], id);
    assert_eq!(
        received[0].header("webhook-id"),
        ping["message_id"].as_str().expect("id")
    );

    let delivery = ping["id"].as_str().expect("id");
    let again = app
        .http
        .post(app.url(&format!(
            "/v1/webhooks/{id}/deliveries/{delivery}/redeliver"
        )))
        .send()
        .await
        .expect("redeliver");
    assert_eq!(again.status(), 202);
    let received = receiver.wait_for(2).await;
    assert_eq!(received.len(), 2);
    assert_eq!(
        received[1].header("webhook-id"),
        received[0].header("webhook-id")
    );
    let unknown = app
        .http
        .post(app.url(&format!(
            "/v1/webhooks/{id}/deliveries/{}/redeliver",
            uuid::Uuid::now_v7()
        )))
        .send()
        .await
        .expect("redeliver");
    assert_problem(unknown, 404, "not_found").await;
}

async fn a_narrowed_subscription_gets_its_users_events_only(backend: Backend) {
    let app = app_on(backend).await;
    let receiver = Receiver::start().await;
    let (bob, as_bob) = user(&app, "bob_n").await;
    let (_ada, as_ada) = user(&app, "ada_n").await;
    subscribe(
        &app,
        json!({"url": receiver.url, "event_types": ["tweet.created"], "user_ids": [bob]}),
    )
    .await;
    post_tweet(&app, &as_ada, "not for them").await;
    post_tweet(&app, &as_bob, "for them").await;
    let received = receiver.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received_now = receiver.received();
    assert_eq!(received_now.len(), 1, "only bob's tweet");
    assert_eq!(received[0].json()["data"]["text"], "for them");
}

async fn subscriptions_belong_to_their_key(backend: Backend) {
    let app = app_on(backend).await;
    let created = subscribe(&app, all_events("http://127.0.0.1:9/hooks")).await;
    let id = created["id"].as_str().expect("id");
    let other = http_client(&api_key(app.store(), None, None).await);
    for request in [
        other.get(app.url(&format!("/v1/webhooks/{id}"))),
        other
            .patch(app.url(&format!("/v1/webhooks/{id}")))
            .json(&json!({"enabled": false})),
        other.delete(app.url(&format!("/v1/webhooks/{id}"))),
        other.post(app.url(&format!("/v1/webhooks/{id}/test"))),
        other.post(app.url(&format!("/v1/webhooks/{id}/rotate-secret"))),
        other.get(app.url(&format!("/v1/webhooks/{id}/deliveries"))),
    ] {
        assert_problem(request.send().await.expect("send"), 404, "not_found").await;
    }
    let listed: Value = other
        .get(app.url("/v1/webhooks"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(listed["items"], json!([]));
    assert_eq!(
        webhook(&app, id).await["enabled"],
        true,
        "unchanged by the other key"
    );

    // The plan caps how many a key holds.
    let plan = app
        .admin_post(
            "/admin/v1/usage-plans",
            &json!({"name": "one hook", "webhook_limit": 1}),
        )
        .await;
    assert_eq!(plan["webhook_limit"], 1);
    let key = app
        .admin_post(
            "/admin/v1/api-keys",
            &json!({"name": "k", "plan_id": plan["id"]}),
        )
        .await;
    let limited = http_client(key["secret"].as_str().expect("secret"));
    let body = all_events("http://127.0.0.1:9/hooks");
    let first = limited
        .post(app.url("/v1/webhooks"))
        .json(&body)
        .send()
        .await;
    assert_eq!(first.expect("create").status(), 201);
    let second = limited
        .post(app.url("/v1/webhooks"))
        .json(&body)
        .send()
        .await;
    assert_problem(second.expect("create"), 409, "too_many_webhooks").await;

    // Update and delete.
    let patched: Value = app
        .http
        .patch(app.url(&format!("/v1/webhooks/{id}")))
        .json(
            &json!({"description": "renamed", "event_types": ["tweet.created"], "enabled": false}),
        )
        .send()
        .await
        .expect("patch")
        .json()
        .await
        .expect("json");
    assert_eq!(patched["description"], "renamed");
    assert_eq!(patched["event_types"], json!(["tweet.created"]));
    assert_eq!(patched["enabled"], false);
    let gone = app
        .http
        .delete(app.url(&format!("/v1/webhooks/{id}")))
        .send()
        .await;
    assert_eq!(gone.expect("delete").status(), 204);
    let again = app
        .http
        .get(app.url(&format!("/v1/webhooks/{id}")))
        .send()
        .await;
    assert_problem(again.expect("get"), 404, "not_found").await;
}

/// Every form of a non-public target the guard knows is refused at registration, with
/// no allow list.
async fn non_public_urls_are_refused(backend: Backend) {
    let app = spawn_app_with(backend, |_| {}).await;
    for url in [
        "http://127.0.0.1/x",
        "http://localhost/x",
        "http://10.0.0.1/x",
        "http://172.16.0.1/x",
        "http://192.168.1.1/x",
        "http://169.254.169.254/latest/meta-data",
        "http://100.64.0.1/x",
        "http://224.0.0.1/x",
        "http://0.0.0.0/x",
        "http://[::1]/x",
        "http://[fd00::1]/x",
        "http://[fe80::1]/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://2130706433/x",
        "http://0177.0.0.1/x",
        "http://0x7f000001/x",
        "http://user:secret@example.com/x",
        "ftp://example.com/x",
    ] {
        let response = app
            .http
            .post(app.url("/v1/webhooks"))
            .json(&json!({"url": url, "event_types": ["tweet.created"]}))
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        assert!(status == 422 || status == 400, "{url}: {status}");
        if status == 422 {
            assert_problem(response, 422, "webhook_url_refused").await;
        }
    }
    let listed = app.get_json("/v1/webhooks", None).await;
    assert_eq!(listed["items"], json!([]), "nothing was stored");
}

on_every_backend!(
    every_event_arrives_signed_once,
    a_failed_delivery_is_retried_with_its_id_after_retry_after,
    a_gone_endpoint_is_disabled,
    the_breaker_opens_after_five_failures_and_closes_on_a_probe,
    a_rotated_secret_signs_beside_the_old_one,
    ping_and_redeliver,
    a_narrowed_subscription_gets_its_users_events_only,
    subscriptions_belong_to_their_key,
    non_public_urls_are_refused,
);

/// Three instances on PostgreSQL and Redis: events posted through each reach the
/// receiver once each, whichever instance delivers them.
async fn three_instances_deliver_each_event_once() {
    let redis = required_env("MINITTER_TEST_REDIS_URL");
    let shared = move |config: &mut Config| {
        with_loopback(config);
        config.redis_url = Some(redis.clone().into());
    };
    let first = spawn_app_with(Backend::Postgres, shared.clone()).await;
    let second = first.sibling(shared.clone()).await;
    let third = first.sibling(shared).await;
    let receiver = Receiver::start().await;
    let created = subscribe(
        &first,
        json!({"url": receiver.url, "event_types": ["tweet.created"]}),
    )
    .await;
    let secret = created["secret"].as_str().expect("secret");
    let (_bob, as_bob) = user(&first, "bob_c").await;
    for (n, instance) in [&first, &second, &third]
        .into_iter()
        .cycle()
        .take(30)
        .enumerate()
    {
        post_tweet(instance, &as_bob, &format!("tweet {n}")).await;
    }
    let received = receiver.wait_for(30).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let received_now = receiver.received();
    assert_eq!(received_now.len(), 30, "each event once");
    let mut ids: Vec<String> = received.iter().map(|r| r.header("webhook-id")).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 30);
    assert!(received.iter().all(|r| verifies(secret, r)));
}

needs_cluster!(three_instances_deliver_each_event_once);
