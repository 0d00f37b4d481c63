//! What only PostgreSQL does: several servers starting at once on one database, and an
//! outage of the database server, played by cutting a relay in front of it.

use std::time::{Duration, Instant};

use serde_json::json;

use minitter_server::startup::Application;
use minitter_test_support::{
    Backend, DATABASE_URL_VARIABLE, Relay, TestDatabase, address_of, needs_postgres, required_env,
    with_port,
};

use crate::helpers::{TestApp, assert_problem, spawn_app_with, test_config};

async fn three_servers_starting_at_once_migrate_the_database_once() {
    let database = TestDatabase::create(Backend::Postgres).await;
    let dirs: Vec<_> = (0..3)
        .map(|_| tempfile::tempdir().expect("temp dir"))
        .collect();
    let built = futures::future::join_all(
        dirs.iter()
            .map(|dir| Application::build(test_config(dir.path(), &database))),
    )
    .await;
    for app in built {
        let app = app.expect("every server starts");
        assert!(app.state().store.has_plans().await.expect("a query"));
    }
}

async fn when_postgres_stops_answering_requests_get_503_and_the_server_recovers() {
    let relay = Relay::to(address_of(&required_env(DATABASE_URL_VARIABLE))).await;
    let port = relay.port();
    let app = spawn_app_with(Backend::Postgres, |config| {
        let url = config.database_url.as_ref().expect("a PostgreSQL URL");
        let url = with_port(secrecy::ExposeSecret::expose_secret(url), port);
        config.database_url = Some(url.into());
        config.database_acquire_timeout_seconds = 1;
    })
    .await;
    let ada_id = app.sign_up("ada_l", "ada@example.com").await;
    let auth = format!("Bearer {}", app.log_in("ada@example.com").await);
    assert_eq!(post(&app, &auth, "before").await.status(), 201);

    relay.cut();
    // The key cache may still answer for up to a second; then every path needs the database.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let refused = post(&app, &auth, "during").await;
    assert!(refused.headers().contains_key("retry-after"));
    assert_problem(refused, 503, "unavailable").await;
    let profile = app
        .http
        .get(app.url(&format!("/v1/users/{ada_id}")))
        .send()
        .await
        .expect("request");
    assert_eq!(profile.status(), 503);
    let ready = app
        .http
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("request");
    assert_eq!(ready.status(), 503);

    relay.restore();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ready = app
            .http
            .get(app.url("/readyz"))
            .send()
            .await
            .expect("request");
        if ready.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the server did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(post(&app, &auth, "after").await.status(), 201);

    // Nothing of the refused post was written, and the counter agrees with the rows.
    let tweets = app
        .get_json(&format!("/v1/users/{ada_id}/tweets"), None)
        .await;
    let texts: Vec<_> = tweets["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|t| t["text"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(texts, ["after", "before"]);
    let profile = app.get_json(&format!("/v1/users/{ada_id}"), None).await;
    assert_eq!(profile["tweet_count"], 2);
}

async fn post(app: &TestApp, auth: &str, text: &str) -> reqwest::Response {
    app.http
        .post(app.url("/v1/tweets"))
        .header("authorization", auth)
        .json(&json!({ "text": text }))
        .send()
        .await
        .expect("request")
}

needs_postgres!(
    three_servers_starting_at_once_migrate_the_database_once,
    when_postgres_stops_answering_requests_get_503_and_the_server_recovers,
);
