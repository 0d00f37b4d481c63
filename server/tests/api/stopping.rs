//! Stopping an instance (issue 21): the server binary, as a child process, gets SIGTERM or
//! SIGINT. `/readyz` turns 503 at once, the instance serves on (new connections included)
//! for the drain period, then stops accepting, finishes what is in flight, writes the
//! usage counts and exits 0 within the bound; requests that outlast the bound are cut; a
//! second signal ends it at once.

use std::time::{Duration, Instant};

use futures::StreamExt;
use nix::sys::signal::Signal;
use serde_json::Value;
use tokio::sync::oneshot;

use minitter_server::http::version::VERSION;
use minitter_server::startup::Application;
use minitter_test_support::{Backend, TestDatabase, on_every_backend};

use crate::helpers::{ChildServer, PASSWORD, api_key, http_client, spawn_app, test_config};

/// A GET on a connection of its own, as a load balancer's next request to the instance.
async fn fresh_get(url: &str, key: Option<&str>) -> reqwest::Result<reqwest::Response> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let mut request = client.get(url);
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    request.send().await
}

/// Asks `/readyz` until it answers 503 (a signal takes a moment to arrive), for at most
/// 1.5 s (well within every drain period here); returns that answer.
async fn not_ready(server: &ChildServer) -> reqwest::Response {
    let asked = Instant::now();
    loop {
        let response = fresh_get(&server.url("/readyz"), None)
            .await
            .expect("readyz answers");
        if response.status() == 503 {
            return response;
        }
        assert_eq!(response.status(), 200);
        assert!(
            asked.elapsed() < Duration::from_millis(1500),
            "/readyz still 200 1.5 s after the signal"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A sign-up whose body is sent in two parts, the second once `release` fires: a request
/// that is in flight for as long as the test likes.
fn slow_sign_up(
    client: &reqwest::Client,
    url: String,
    release: oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
    let first = r#"{"username": "slow_sam", "#.to_owned();
    let rest = format!(r#""email": "sam@example.com", "password": "{PASSWORD}"}}"#);
    let body = futures::stream::iter([Ok::<_, std::io::Error>(first)]).chain(
        futures::stream::once(async move {
            let _ = release.await;
            Ok(rest)
        }),
    );
    let request = client
        .post(url)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(body));
    tokio::spawn(request.send())
}

/// The JSON log lines whose message is `message`.
fn logged<'a>(logs: &'a str, message: &'a str) -> impl Iterator<Item = Value> + 'a {
    logs.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(move |line| {
            line["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(message))
        })
}

async fn sigterm_drains_finishes_in_flight_requests_counts_all_and_exits_0(backend: Backend) {
    const DRAIN: Duration = Duration::from_secs(3);
    const BOUND: Duration = Duration::from_secs(20);
    let app = spawn_app(backend).await;
    let ada = app.sign_up("ada_l", "ada@example.com").await;
    let key = api_key(app.store(), None, Some((1_000_000, "DAY"))).await;
    let client = http_client(&key);
    let server = app.start_child_with_env(
        "info",
        &[
            ("MINITTER_DRAIN_SECONDS", "3"),
            ("MINITTER_SHUTDOWN_TIMEOUT_SECONDS", "20"),
        ],
    );
    let profile = server.url(&format!("/v1/users/{ada}"));
    let ready = fresh_get(&server.url("/readyz"), None)
        .await
        .expect("answered");
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.headers()["x-minitter-version"], VERSION);

    let (release, released) = oneshot::channel();
    let slow = slow_sign_up(&client, server.url("/v1/users"), released);
    // Its head and first part reach the server (which accepts for the drain period
    // anyway).
    tokio::time::sleep(Duration::from_millis(300)).await;

    let signalled = Instant::now();
    server.signal(Signal::SIGTERM);
    let refusal = not_ready(&server).await;
    assert!(refusal.headers().contains_key("retry-after"));
    assert_eq!(
        refusal.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(refusal.headers()["connection"], "close");
    let problem: Value = refusal.json().await.expect("a Problem");
    assert_eq!(problem["code"], "unavailable");
    assert_eq!(problem["detail"], "This instance is shutting down.");

    // The drain period: served, new connections included, each then closed.
    let mut admitted = 0;
    let stopped_accepting = loop {
        let Ok(response) = fresh_get(&profile, Some(&key)).await else {
            break signalled.elapsed();
        };
        assert_eq!(response.status(), 200, "served while draining");
        assert_eq!(response.headers()["connection"], "close");
        admitted += 1;
        let health = fresh_get(&server.url("/healthz"), None).await;
        if let Ok(health) = health {
            assert_eq!(health.status(), 200, "alive while draining");
        }
        assert!(
            signalled.elapsed() < BOUND,
            "still accepting long after the drain period"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        stopped_accepting >= DRAIN,
        "stopped accepting {stopped_accepting:?} after the signal, before the drain period ended"
    );
    assert!(
        admitted >= 3,
        "too few requests during the drain: {admitted}"
    );

    // The request begun before the stop is still in flight: it is finished, not cut.
    release.send(()).expect("the body is still being sent");
    let signed_up = slow.await.expect("joined").expect("answered");
    assert_eq!(
        signed_up.status(),
        201,
        "the request in flight was finished"
    );
    admitted += 1;

    let (status, elapsed, logs) = server.exit(signalled, BOUND).await;
    assert!(status.success(), "{status:?}: {logs}");
    assert!(elapsed < BOUND);
    for message in [
        "stopping: /readyz answers 503",
        "drain period over",
        "usage counts written",
        "stopped",
    ] {
        assert_eq!(logged(&logs, message).count(), 1, "{message}: {logs}");
    }
    assert_eq!(
        logged(&logs, "served")
            .filter(|line| line["fields"]["operation_id"] == "sign_up")
            .count(),
        1,
        "the slow sign-up's access line was written before the exit"
    );

    // Every admitted request is counted, the last ones only by the write at the stop;
    // asking counts one more.
    let usage: Value = client
        .get(app.url("/v1/usage"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(usage["used"], admitted + 1, "{usage}");
}

#[tokio::test]
async fn sigint_stops_the_same_way_and_a_second_signal_ends_it_at_once() {
    let app = spawn_app(Backend::Sqlite).await;
    let server = app.start_child_with_env(
        "info",
        &[
            ("MINITTER_DRAIN_SECONDS", "30"),
            ("MINITTER_SHUTDOWN_TIMEOUT_SECONDS", "60"),
        ],
    );
    server.signal(Signal::SIGINT);
    not_ready(&server).await;
    let health = fresh_get(&server.url("/healthz"), None)
        .await
        .expect("still serving");
    assert_eq!(health.status(), 200);

    let again = Instant::now();
    server.signal(Signal::SIGTERM);
    let (status, _, logs) = server.exit(again, Duration::from_secs(3)).await;
    assert_eq!(status.code(), Some(1), "a stop cut short: {logs}");
    let cut = logged(&logs, "stopping at once").next().expect(&logs);
    assert_eq!(cut["fields"]["cause"], "a second signal");
}

#[tokio::test]
async fn a_request_that_outlasts_the_bound_is_cut_and_the_counts_are_still_written() {
    let app = spawn_app(Backend::Sqlite).await;
    let key = api_key(app.store(), None, None).await;
    let server = app.start_child_with_env(
        "info",
        &[
            ("MINITTER_DRAIN_SECONDS", "1"),
            ("MINITTER_SHUTDOWN_TIMEOUT_SECONDS", "5"),
        ],
    );
    // Its body never ends.
    let (_never, released) = oneshot::channel();
    let stuck = slow_sign_up(&http_client(&key), server.url("/v1/users"), released);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let signalled = Instant::now();
    server.signal(Signal::SIGTERM);
    let (status, elapsed, logs) = server.exit(signalled, Duration::from_secs(7)).await;
    assert!(status.success(), "{status:?}: {logs}");
    // The drain (1 s), then the requests in flight until 2 s before the bound (5 s).
    assert!(
        elapsed >= Duration::from_secs(3) && elapsed < Duration::from_secs(5),
        "stopped {elapsed:?} after the signal"
    );
    assert_eq!(
        logged(
            &logs,
            "connections still busy after the grace period are dropped"
        )
        .count(),
        1,
        "{logs}"
    );
    assert_eq!(logged(&logs, "usage counts written").count(), 1, "{logs}");
    assert!(
        stuck.await.expect("joined").is_err(),
        "the stuck request's connection was closed"
    );
}

#[tokio::test]
async fn a_bound_that_leaves_no_time_after_the_drain_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let database = TestDatabase::create(Backend::Sqlite).await;
    let mut config = test_config(dir.path(), &database);
    config.drain_seconds = 5;
    config.shutdown_timeout_seconds = 5;
    let error = Application::build(config).await.err().expect("refused");
    assert_eq!(
        error.to_string(),
        "MINITTER_SHUTDOWN_TIMEOUT_SECONDS (5) must exceed MINITTER_DRAIN_SECONDS (5)"
    );
}

on_every_backend!(sigterm_drains_finishes_in_flight_requests_counts_all_and_exits_0);
