//! API keys and usage plans on `/v1`: 403 without a valid key, throttle and quota as
//! 429s, exact counts under concurrency, counts that survive a restart.

use std::time::{Duration, Instant};

use futures::future::join_all;
use serde_json::json;

use minitter_test_support::{Backend, on_every_backend};

use crate::helpers::{TestApp, api_key, assert_problem, http_client, spawn_app};

/// A client of `app` with a fresh key in a plan with these limits.
async fn client_with(
    app: &TestApp,
    throttle: Option<(f64, i64)>,
    quota: Option<(i64, &str)>,
) -> (reqwest::Client, String) {
    let key = api_key(app.store(), throttle, quota).await;
    (http_client(&key), key)
}

fn some_user(app: &TestApp) -> String {
    app.url(&format!("/v1/users/{}", uuid::Uuid::now_v7()))
}

async fn exactly_the_quota_of_concurrent_requests_is_admitted(backend: Backend) {
    let app = spawn_app(backend).await;
    let (client, _) = client_with(&app, None, Some((10, "DAY"))).await;
    let url = some_user(&app);
    let responses = join_all((0..30).map(|_| client.get(&url).send())).await;
    let mut admitted = 0;
    for response in responses {
        let response = response.expect("request");
        if response.status() == 429 {
            assert!(response.headers().contains_key("retry-after"));
            assert_eq!(response.headers()["x-ratelimit-remaining"], "0");
            assert_problem(response, 429, "quota_exceeded").await;
        } else {
            assert_eq!(response.status(), 404);
            admitted += 1;
        }
    }
    assert_eq!(admitted, 10);
}

async fn the_throttle_admits_at_most_burst_plus_rate_times_time(backend: Backend) {
    let app = spawn_app(backend).await;
    let (rate, burst): (f64, i32) = (5.0, 3);
    let (client, _) = client_with(&app, Some((rate, i64::from(burst))), None).await;
    let url = some_user(&app);
    let started = Instant::now();
    let mut admitted = 0;
    let mut throttled = 0;
    while started.elapsed() < Duration::from_millis(1500) {
        let response = client.get(&url).send().await.expect("request");
        if response.status() == 429 {
            let retry_after: u64 = response.headers()["retry-after"]
                .to_str()
                .expect("ascii")
                .parse()
                .expect("seconds");
            assert!(retry_after >= 1);
            assert_problem(response, 429, "throttled").await;
            throttled += 1;
        } else {
            admitted += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let bound = f64::from(burst) + rate * started.elapsed().as_secs_f64();
    assert!(
        f64::from(admitted) <= bound,
        "{admitted} admitted, bound {bound}"
    );
    assert!(
        admitted >= burst && throttled > 0,
        "{admitted} admitted, {throttled} throttled"
    );
}

async fn refused_requests_consume_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let (client, key) = client_with(&app, None, Some((2, "DAY"))).await;
    let url = some_user(&app);
    let bare = reqwest::Client::new();
    for bad in [None, Some("mk_unknown"), Some(&key[..key.len() - 1])] {
        let mut request = bare.get(&url);
        if let Some(bad) = bad {
            request = request.header("x-api-key", bad);
        }
        assert_problem(request.send().await.expect("request"), 403, "forbidden").await;
    }
    assert_eq!(
        client.get(&url).send().await.expect("request").status(),
        404
    );
    assert_eq!(
        client.get(&url).send().await.expect("request").status(),
        404
    );
    assert_eq!(
        client.get(&url).send().await.expect("request").status(),
        429
    );
    // Health, docs and the spec stay open.
    assert_eq!(
        bare.get(app.url("/healthz"))
            .send()
            .await
            .expect("request")
            .status(),
        200
    );
    assert_eq!(
        bare.get(app.url("/openapi.yaml"))
            .send()
            .await
            .expect("request")
            .status(),
        200
    );
}

async fn keyed_responses_say_where_the_key_stands(backend: Backend) {
    let app = spawn_app(backend).await;
    let (client, _) = client_with(&app, Some((10.0, 20)), Some((100, "DAY"))).await;
    let response = client.get(some_user(&app)).send().await.expect("request");
    let headers = response.headers();
    assert_eq!(headers["x-ratelimit-limit"], "100");
    assert_eq!(headers["x-ratelimit-remaining"], "99");
    let reset: u64 = headers["x-ratelimit-reset"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(reset <= 86_400);
    assert_eq!(headers["ratelimit-policy"], "\"quota\";q=100;w=86400");
    assert_eq!(
        headers["ratelimit"].to_str().expect("ascii"),
        format!("\"quota\";r=99;t={reset}")
    );
}

async fn counts_survive_a_restart(backend: Backend) {
    let app = spawn_app(backend).await;
    let (client, _) = client_with(&app, None, Some((3, "DAY"))).await;
    let url = some_user(&app);
    for _ in 0..2 {
        assert_eq!(
            client.get(&url).send().await.expect("request").status(),
            404
        );
    }
    // The counts reach the database within about a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let again = app.restart().await;
    let url = again.url(&format!("/v1/users/{}", uuid::Uuid::now_v7()));
    assert_eq!(
        client.get(&url).send().await.expect("request").status(),
        404
    );
    assert_eq!(
        client.get(&url).send().await.expect("request").status(),
        429
    );
}

async fn disabling_and_rotating_a_key_take_effect_at_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin_authorization();
    let plan = app
        .admin_post("/admin/v1/usage-plans", &json!({"name": "p"}))
        .await;
    let key = app
        .admin_post(
            "/admin/v1/api-keys",
            &json!({"name": "k", "plan_id": plan["id"]}),
        )
        .await;
    let secret = key["secret"].as_str().expect("secret").to_owned();
    let key_url = app.url(&format!(
        "/admin/v1/api-keys/{}",
        key["id"].as_str().expect("id")
    ));
    let url = some_user(&app);
    let call = |secret: String| {
        reqwest::Client::new()
            .get(&url)
            .header("x-api-key", secret)
            .send()
    };
    assert_eq!(call(secret.clone()).await.expect("request").status(), 404);

    let disable = app
        .http
        .patch(&key_url)
        .header("authorization", &admin)
        .json(&json!({"enabled": false}));
    assert_eq!(disable.send().await.expect("request").status(), 200);
    assert_eq!(call(secret.clone()).await.expect("request").status(), 403);
    let enable = app
        .http
        .patch(&key_url)
        .header("authorization", &admin)
        .json(&json!({"enabled": true}));
    assert_eq!(enable.send().await.expect("request").status(), 200);
    assert_eq!(call(secret.clone()).await.expect("request").status(), 404);

    let rotated: serde_json::Value = app
        .http
        .post(format!("{key_url}/rotate"))
        .header("authorization", &admin)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(call(secret).await.expect("request").status(), 403);
    let new_secret = rotated["secret"].as_str().expect("secret").to_owned();
    assert_eq!(call(new_secret).await.expect("request").status(), 404);
}

async fn a_key_sees_its_usage_and_the_operator_sees_it_per_day(backend: Backend) {
    let app = spawn_app(backend).await;
    let (client, _) = client_with(&app, None, Some((5, "DAY"))).await;
    for _ in 0..2 {
        client.get(some_user(&app)).send().await.expect("request");
    }
    let usage: serde_json::Value = client
        .get(app.url("/v1/usage"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(
        (usage["used"].as_u64(), usage["remaining"].as_u64()),
        (Some(3), Some(2))
    );

    let admin = app.admin_authorization();
    let today = chrono::Utc::now().date_naive();
    let url = app.url(&format!(
        "/admin/v1/usage-plans/{}/usage?start_date={}&end_date={today}",
        usage["plan"]["id"].as_str().expect("plan id"),
        today - chrono::Duration::days(2)
    ));
    let report: serde_json::Value = app
        .http
        .get(url)
        .header("authorization", &admin)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let key_id = usage["key_id"].as_str().expect("key id");
    assert_eq!(report["items"][key_id], json!([[0, 5], [0, 5], [3, 2]]));
}

async fn no_key_secret_reaches_the_logs(backend: Backend) {
    let app = spawn_app(backend).await;
    let secret = app.api_key.clone();
    let server = app.start_child("trace");
    for path in [
        "/v1/users/01936c4e-7a9b-7cc3-a2d5-4f0e8c1b2a3d",
        "/v1/usage",
        "/v1/nope",
    ] {
        server
            .app
            .http
            .get(server.app.url(path))
            .send()
            .await
            .expect("request");
    }
    // Stopped, not killed: a kill can come before the log writer has written the last
    // lines (CI lost them once), and a stopped server writes every line it queued.
    let logs = server.stop().await;
    assert!(logs.contains("served"), "the requests were logged");
    let served: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .filter(|line: &serde_json::Value| line["fields"]["message"] == "served")
        .collect();
    assert!(
        served
            .iter()
            .any(|line| line["fields"]["operation_id"] == "get_user"
                && line["fields"]["key_id"].is_string()
                && line["fields"]["status"] == 404),
        "one structured line per request, with its operation and key: {served:?}"
    );
    assert!(!logs.contains(&secret), "a key secret is in the logs");
}

on_every_backend!(
    exactly_the_quota_of_concurrent_requests_is_admitted,
    the_throttle_admits_at_most_burst_plus_rate_times_time,
    refused_requests_consume_nothing,
    keyed_responses_say_where_the_key_stands,
    counts_survive_a_restart,
    disabling_and_rotating_a_key_take_effect_at_once,
    a_key_sees_its_usage_and_the_operator_sees_it_per_day,
    no_key_secret_reaches_the_logs,
);
