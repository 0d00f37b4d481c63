//! Deleting a user (`DELETE /admin/v1/users/{user_id}`), and the tokens of users who no
//! longer exist: every operation that acts as a user refuses such a token with 401 before
//! it writes anything, whether the user was deleted through the API (on this instance or
//! another) or their row went behind the server's back; and the deletion takes the user's
//! tweets, follows and picture with it, out of every cache and feed.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use minitter_test_support::{Backend, needs_cluster, on_every_backend, required_env};

use crate::helpers::{
    TestApp, assert_problem, metric_sample, post_tweet, spawn_app, spawn_app_with, user,
};
use crate::pictures::png;

/// Every operation that acts as a user (`security: bearerAuth` in `openapi.yaml`), with
/// a request for it; `user` is someone else to follow, `tweet` a tweet to delete.
fn acting_as_a_user(user: &str, tweet: &str) -> Vec<(&'static str, reqwest::Method, String)> {
    use reqwest::Method;
    vec![
        ("get_me", Method::GET, "/v1/me".to_owned()),
        ("create_tweet", Method::POST, "/v1/tweets".to_owned()),
        (
            "delete_tweet",
            Method::DELETE,
            format!("/v1/tweets/{tweet}"),
        ),
        ("get_timeline", Method::GET, "/v1/timeline".to_owned()),
        (
            "create_stream_ticket",
            Method::POST,
            "/v1/stream/tickets".to_owned(),
        ),
        (
            "follow_user",
            Method::PUT,
            format!("/v1/me/following/{user}"),
        ),
        (
            "unfollow_user",
            Method::DELETE,
            format!("/v1/me/following/{user}"),
        ),
        ("put_picture", Method::PUT, "/v1/me/picture".to_owned()),
    ]
}

/// The operationIds `openapi.yaml` secures with `bearerAuth`, read from its text.
fn bearer_operations_in_the_spec() -> BTreeSet<String> {
    let spec = include_str!("../../../openapi.yaml");
    let mut operations = BTreeSet::new();
    let mut current = None;
    for line in spec.lines() {
        let line = line.trim();
        if let Some(id) = line.strip_prefix("operationId:") {
            current = Some(id.trim().to_owned());
        } else if line.trim_start_matches("- ").starts_with("bearerAuth:")
            && let Some(id) = &current
        {
            operations.insert(id.clone());
        } else if line == "components:" {
            break;
        }
    }
    operations
}

/// Sends `operation` as the bearer of `authorization`, with the body it needs.
async fn act(
    app: &TestApp,
    (operation, method, path): &(&'static str, reqwest::Method, String),
    authorization: &str,
) -> reqwest::Response {
    let request = app
        .http
        .request(method.clone(), app.url(path))
        .header("authorization", authorization);
    let request = match *operation {
        "create_tweet" => request.json(&json!({"text": "from beyond"})),
        "put_picture" => request
            .header("content-type", "application/octet-stream")
            .body(png(2, 2)),
        _ => request,
    };
    request.send().await.expect("request")
}

async fn delete_user(app: &TestApp, user: &str, authorization: Option<&str>) -> reqwest::Response {
    let mut request = app.http.delete(app.url(&format!("/admin/v1/users/{user}")));
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    request.send().await.expect("request")
}

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    app.http.get(app.url(path)).send().await.expect("request")
}

/// Every object in the local picture store.
fn stored_files(app: &TestApp) -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.path().is_dir() {
                walk(&entry.path(), out);
            } else {
                out.push(entry.path());
            }
        }
    }
    let mut out = Vec::new();
    walk(&app.data_dir.join("blobs"), &mut out);
    out
}

async fn follow(app: &TestApp, authorization: &str, user: &str) {
    let response = app
        .http
        .put(app.url(&format!("/v1/me/following/{user}")))
        .header("authorization", authorization)
        .send()
        .await
        .expect("follow");
    assert_eq!(response.status(), 204);
}

fn texts(page: &Value) -> Vec<&str> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|tweet| tweet["text"].as_str().expect("text"))
        .collect()
}

#[test]
fn the_list_below_is_every_operation_that_acts_as_a_user() {
    let listed: BTreeSet<String> = acting_as_a_user("u", "t")
        .iter()
        .map(|(operation, _, _)| (*operation).to_owned())
        .collect();
    assert_eq!(listed, bearer_operations_in_the_spec());
}

async fn every_operation_acting_as_a_deleted_user_answers_401_and_writes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let (ada, ada_auth) = user(&app, "ada_gone").await;
    let (bob, _) = user(&app, "bob_here").await;
    // Ada has acted, so every cache on the way knows her as a live user.
    let tweet = post_tweet(&app, &ada_auth, "last words").await;
    assert_eq!(app.get_me(Some(&ada_auth)).await.status(), 200);

    let admin = app.admin_authorization();
    assert_eq!(delete_user(&app, &ada, Some(&admin)).await.status(), 204);

    for operation in acting_as_a_user(&bob, &tweet) {
        let response = act(&app, &operation, &ada_auth).await;
        assert_eq!(response.status(), 401, "{}", operation.0);
        assert_problem(response, 401, "unauthorized").await;
    }
    assert!(
        stored_files(&app).is_empty(),
        "a picture was written for a deleted user"
    );
    let bob_now = app.get_json(&format!("/v1/users/{bob}"), None).await;
    assert_eq!(bob_now["follower_count"], 0, "the follow was refused");
    let ada_id = ada.parse().expect("a uuid");
    let left = app
        .store()
        .tweets_by(ada_id, None, 10)
        .await
        .expect("tweets");
    assert!(left.items.is_empty(), "no tweet was written");
    assert!(
        app.store()
            .user_by_id(ada_id)
            .await
            .expect("read")
            .is_none()
    );
}

async fn deleting_a_user_takes_their_tweets_follows_and_picture_with_them(backend: Backend) {
    let app = spawn_app(backend).await;
    let (ada, ada_auth) = user(&app, "ada_del").await;
    let (bob, bob_auth) = user(&app, "bob_del").await;
    let (cy, cy_auth) = user(&app, "cy_del").await;
    follow(&app, &ada_auth, &bob).await;
    follow(&app, &bob_auth, &ada).await;
    follow(&app, &cy_auth, &ada).await;
    let tweet = post_tweet(&app, &ada_auth, "ada's").await;
    post_tweet(&app, &bob_auth, "bob's").await;
    let uploaded = app
        .http
        .put(app.url("/v1/me/picture"))
        .header("authorization", &ada_auth)
        .header("content-type", "application/octet-stream")
        .body(png(3, 3))
        .send()
        .await
        .expect("upload");
    assert_eq!(uploaded.status(), 200);
    assert_eq!(stored_files(&app).len(), 1);
    // Everything that keeps a copy has one: the profiles and the tweet (cached answers
    // and records), and bob's and cy's home feeds.
    let profile = format!("/v1/users/{ada}");
    let tweet_path = format!("/v1/tweets/{tweet}");
    for _ in 0..2 {
        app.get_json(&profile, None).await;
        app.get_json(&tweet_path, None).await;
        app.get_json(&format!("/v1/users/{ada}/tweets"), None).await;
        let bob_profile = app.get_json(&format!("/v1/users/{bob}"), None).await;
        assert_eq!(
            (
                bob_profile["follower_count"].clone(),
                bob_profile["following_count"].clone()
            ),
            (json!(1), json!(1))
        );
        let home = app.get_json("/v1/timeline", Some(&bob_auth)).await;
        assert_eq!(texts(&home), ["bob's", "ada's"]);
        let home = app.get_json("/v1/timeline", Some(&cy_auth)).await;
        assert_eq!(texts(&home), ["ada's"]);
    }

    let admin = app.admin_authorization();
    assert_problem(delete_user(&app, &ada, None).await, 401, "unauthorized").await;
    assert_eq!(delete_user(&app, &ada, Some(&admin)).await.status(), 204);

    for path in [
        profile.clone(),
        tweet_path,
        format!("/v1/users/{ada}/tweets"),
        format!("/v1/users/{ada}/picture"),
        format!("/v1/users/{ada}/followers"),
    ] {
        assert_problem(get(&app, &path).await, 404, "not_found").await;
    }
    let bob_profile = app.get_json(&format!("/v1/users/{bob}"), None).await;
    assert_eq!(bob_profile["follower_count"], 0);
    assert_eq!(bob_profile["following_count"], 0);
    let cy_profile = app.get_json(&format!("/v1/users/{cy}"), None).await;
    assert_eq!(cy_profile["following_count"], 0);
    let followers = app
        .get_json(&format!("/v1/users/{bob}/followers"), None)
        .await;
    assert_eq!(followers["items"], json!([]));
    let home = app.get_json("/v1/timeline", Some(&bob_auth)).await;
    assert_eq!(texts(&home), ["bob's"]);
    let home = app.get_json("/v1/timeline", Some(&cy_auth)).await;
    assert_eq!(texts(&home), Vec::<&str>::new());
    assert!(stored_files(&app).is_empty(), "the picture object is gone");
    // The outbox says what went (ada's two followers, her one followee, her tweet), then
    // that she went.
    let events = outbox_types(&app).await;
    assert_eq!(
        events[events.len().saturating_sub(5)..],
        [
            "user.unfollowed",
            "user.unfollowed",
            "user.unfollowed",
            "tweet.deleted",
            "user.deleted"
        ]
    );
    // The others carry on.
    post_tweet(&app, &bob_auth, "still here").await;

    assert_problem(
        delete_user(&app, &ada, Some(&admin)).await,
        404,
        "not_found",
    )
    .await;
    let malformed = delete_user(&app, "not-a-uuid", Some(&admin)).await;
    assert_eq!(malformed.status(), 400);
}

/// The type of every event in the outbox so far, once the last is `user.deleted` (on
/// PostgreSQL other tests' transactions can hold the newest back a moment).
async fn outbox_types(app: &TestApp) -> Vec<String> {
    let started = Instant::now();
    loop {
        let entries = app
            .store()
            .outbox_after("deleted_users_test", 1000)
            .await
            .expect("outbox");
        let types: Vec<String> = entries
            .iter()
            .map(|entry| {
                let event: Value = serde_json::from_str(&entry.event).expect("JSON");
                event["type"].as_str().expect("a type").to_owned()
            })
            .collect();
        if types.last().is_some_and(|t| t == "user.deleted")
            || started.elapsed() > Duration::from_secs(10)
        {
            return types;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Deletes the user row with SQL, as an operator with a database shell would.
async fn delete_row_behind_the_servers_back(app: &TestApp, backend: Backend, id: &str) {
    use sqlx::Connection;
    match backend {
        Backend::Sqlite => {
            let path = app.data_dir.join("minitter.db");
            let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                .await
                .expect("open the database");
            // Ids are 16-byte BLOBs (migrations/sqlite/0008_uuid_blobs.sql).
            sqlx::query("DELETE FROM users WHERE id = ?")
                .bind(id.parse::<uuid::Uuid>().expect("a uuid"))
                .execute(&mut conn)
                .await
                .expect("delete");
            conn.close().await.expect("close");
        }
        Backend::Postgres => {
            let url = app.database.url().expect("a PostgreSQL URL");
            let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
            let deleted = sqlx::query("DELETE FROM users WHERE id = $1::uuid")
                .bind(id)
                .execute(&mut conn)
                .await
                .expect("delete");
            assert_eq!(deleted.rows_affected(), 1);
            conn.close().await.expect("close");
        }
    }
}

async fn a_token_whose_user_row_was_deleted_in_the_database_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let (ada, ada_auth) = user(&app, "ada_sql").await;
    let (bob, _) = user(&app, "bob_sql").await;
    delete_row_behind_the_servers_back(&app, backend, &ada).await;
    assert!(
        app.store()
            .user_by_id(ada.parse().expect("uuid"))
            .await
            .expect("read")
            .is_none()
    );

    // Nothing announced the deletion: the first look at the id reads the database.
    for operation in acting_as_a_user(&bob, &uuid::Uuid::now_v7().to_string()) {
        let response = act(&app, &operation, &ada_auth).await;
        assert_problem(response, 401, "unauthorized").await;
    }
    assert!(stored_files(&app).is_empty());
}

/// The check is a cache hit once the user is known, not a database read per request.
async fn a_known_user_is_checked_from_the_cache(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, ada_auth) = user(&app, "ada_hot").await;
    let hits = |metrics: &str| {
        metric_sample(
            metrics,
            "minitter_cache_lookups_total{cache=\"user_ids\",result=\"hit\"}",
        )
        .unwrap_or(0.0)
    };
    assert_eq!(app.get_me(Some(&ada_auth)).await.status(), 200);
    let before = hits(&app.scrape_metrics().await);
    for _ in 0..3 {
        let home = app.get_json("/v1/timeline", Some(&ada_auth)).await;
        assert_eq!(home["items"], json!([]));
    }
    let after = hits(&app.scrape_metrics().await);
    assert!(after - before >= 3.0, "hits went from {before} to {after}");
}

on_every_backend!(
    every_operation_acting_as_a_deleted_user_answers_401_and_writes_nothing,
    deleting_a_user_takes_their_tweets_follows_and_picture_with_them,
    a_token_whose_user_row_was_deleted_in_the_database_is_refused,
    a_known_user_is_checked_from_the_cache,
);

/// A user deleted through one instance is refused by another that had them cached, as
/// soon as the event reaches it through Redis.
async fn a_user_deleted_through_one_instance_is_refused_by_the_others() {
    let redis_url = required_env("MINITTER_TEST_REDIS_URL");
    let shared = |config: &mut minitter_server::config::Config| {
        config.redis_url = Some(redis_url.clone().into());
    };
    let deleter = spawn_app_with(Backend::Postgres, shared).await;
    let other = deleter.sibling(shared).await;
    let (ada, ada_auth) = user(&deleter, "ada_far").await;
    let (bob, bob_auth) = user(&deleter, "bob_far").await;
    follow(&other, &bob_auth, &ada).await;
    // The other instance hears the events (its caches answer) and knows ada as live.
    let profile = format!("/v1/users/{ada}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let response = get(&other, &profile).await;
        let hit = response
            .headers()
            .get("x-cache")
            .is_some_and(|value| value == "hit");
        assert_eq!(response.status(), 200);
        if hit {
            break;
        }
        assert!(Instant::now() < deadline, "the other instance never cached");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    post_tweet(&other, &ada_auth, "seen elsewhere").await;
    assert_eq!(other.get_me(Some(&ada_auth)).await.status(), 200);

    let admin = deleter.admin_authorization();
    assert_eq!(
        delete_user(&deleter, &ada, Some(&admin)).await.status(),
        204
    );

    // The cached answer is gone at once (versions in Redis); the token a moment later.
    assert_problem(get(&other, &profile).await, 404, "not_found").await;
    let started = Instant::now();
    loop {
        let response = other
            .http
            .get(other.url("/v1/timeline"))
            .header("authorization", &ada_auth)
            .send()
            .await
            .expect("request");
        if response.status() == 401 {
            break;
        }
        assert_eq!(response.status(), 200);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the other instance still accepts a deleted user's token"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for operation in acting_as_a_user(&bob, &uuid::Uuid::now_v7().to_string()) {
        let response = act(&other, &operation, &ada_auth).await;
        assert_problem(response, 401, "unauthorized").await;
    }
    let bob_profile = other.get_json(&format!("/v1/users/{bob}"), None).await;
    assert_eq!(bob_profile["following_count"], 0);
    let home = other.get_json("/v1/timeline", Some(&bob_auth)).await;
    assert_eq!(home["items"], json!([]));
}

needs_cluster!(a_user_deleted_through_one_instance_is_refused_by_the_others);
