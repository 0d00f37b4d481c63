//! The response cache of the operations `openapi.yaml` lets be cached (`x-minitter-cache`):
//! hits and misses, no stale answer after an acknowledged write (on one instance and across
//! the cluster), refresh only for plans that allow it, compressed variants, bypass when the
//! cache cannot vouch for an entry, and the metrics of it all.

use std::io::Read;

use minitter_server::infra::store::PlanSettings;
use minitter_test_support::{Backend, Relay, needs_cluster, on_every_backend, required_env};
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, api_key, http_client, key_in_plan, metric_sample, spawn_app, spawn_app_with,
};

/// GET `path` with `client`: the status, `X-Cache` and the JSON body (if any).
async fn get(app: &TestApp, client: &reqwest::Client, path: &str) -> (u16, String, Value) {
    let response = client.get(app.url(path)).send().await.expect("request");
    let status = response.status().as_u16();
    let x_cache = header(&response, "x-cache");
    let body = response.json().await.unwrap_or(Value::Null);
    (status, x_cache, body)
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

async fn post_tweet(app: &TestApp, bearer: &str, text: &str) -> String {
    let response = app
        .http
        .post(app.url("/v1/tweets"))
        .header("authorization", bearer)
        .json(&json!({"text": text}))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 201);
    let tweet: Value = response.json().await.expect("json");
    tweet["id"].as_str().expect("id").to_owned()
}

async fn follow(app: &TestApp, bearer: &str, user: &str) {
    let response = app
        .http
        .put(app.url(&format!("/v1/me/following/{user}")))
        .header("authorization", bearer)
        .send()
        .await
        .expect("follow");
    assert_eq!(response.status(), 204);
}

async fn delete_tweet(app: &TestApp, bearer: &str, tweet: &str) {
    let response = app
        .http
        .delete(app.url(&format!("/v1/tweets/{tweet}")))
        .header("authorization", bearer)
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status(), 204);
}

/// Two users, bob (who posts) and ada (who follows); their ids and ada's and bob's tokens.
async fn bob_and_ada(app: &TestApp) -> (String, String, String) {
    let bob = app.sign_up("bob_rc", "bob_rc@example.com").await;
    app.sign_up("ada_rc", "ada_rc@example.com").await;
    let ada_token = format!("Bearer {}", app.log_in("ada_rc@example.com").await);
    let bob_token = format!("Bearer {}", app.log_in("bob_rc@example.com").await);
    (bob, ada_token, bob_token)
}

/// Each cached operation answers a miss, then hits with the same body and tag; every write
/// is seen by the very next read (a miss), never a kept copy from before it.
async fn no_read_after_an_acknowledged_write_sees_the_copy_it_replaced(backend: Backend) {
    let app = spawn_app(backend).await;
    let (bob, ada, bob_token) = bob_and_ada(&app).await;
    let profile = format!("/v1/users/{bob}");
    let tweets = format!("/v1/users/{bob}/tweets");

    let first = app.http.get(app.url(&profile)).send().await.expect("get");
    assert_eq!(header(&first, "x-cache"), "miss");
    let tag = header(&first, "etag");
    let first: Value = first.json().await.expect("json");
    let second = app.http.get(app.url(&profile)).send().await.expect("get");
    assert_eq!(header(&second, "x-cache"), "hit");
    assert_eq!(header(&second, "etag"), tag);
    assert_eq!(second.json::<Value>().await.expect("json"), first);
    assert_eq!(get(&app, &app.http, &tweets).await.1, "miss");
    assert_eq!(get(&app, &app.http, &tweets).await.1, "hit");

    follow(&app, &ada, &bob).await;
    let (_, x_cache, user) = get(&app, &app.http, &profile).await;
    assert_eq!(
        (x_cache.as_str(), &user["follower_count"]),
        ("miss", &json!(1))
    );

    let tweet = post_tweet(&app, &bob_token, "cached or not").await;
    let (_, _, user) = get(&app, &app.http, &profile).await;
    assert_eq!(user["tweet_count"], 1);
    let (_, x_cache, page) = get(&app, &app.http, &tweets).await;
    assert_eq!(x_cache, "miss");
    assert_eq!(page["items"][0]["id"], tweet);

    let tweet_path = format!("/v1/tweets/{tweet}");
    assert_eq!(get(&app, &app.http, &tweet_path).await.1, "miss");
    assert_eq!(get(&app, &app.http, &tweet_path).await.1, "hit");
    delete_tweet(&app, &bob_token, &tweet).await;
    assert_eq!(get(&app, &app.http, &tweet_path).await.0, 404);
    let (_, _, page) = get(&app, &app.http, &tweets).await;
    assert_eq!(page["items"], json!([]));
    let (_, _, user) = get(&app, &app.http, &profile).await;
    assert_eq!(user["tweet_count"], 0);
}

/// A hit is still authenticated and metered: a bad key is refused, and hits count against
/// the quota like any request.
async fn a_hit_needs_a_good_key_and_counts_against_its_quota(backend: Backend) {
    let app = spawn_app(backend).await;
    let bob = app.sign_up("bob_q", "bob_q@example.com").await;
    let profile = format!("/v1/users/{bob}");
    let partner = http_client(&api_key(app.store(), None, Some((3, "DAY"))).await);
    assert_eq!(get(&app, &partner, &profile).await.1, "miss");
    assert_eq!(get(&app, &partner, &profile).await.1, "hit");
    assert_eq!(get(&app, &partner, &profile).await.1, "hit");
    let (status, x_cache, problem) = get(&app, &partner, &profile).await;
    assert_eq!((status, x_cache.as_str()), (429, ""));
    assert_eq!(problem["code"], "quota_exceeded");
    let stranger = http_client("mk_not_a_key");
    assert_eq!(get(&app, &stranger, &profile).await.0, 403);
}

/// A request the document refuses is refused even when its path is cached.
async fn a_cached_path_still_refuses_a_bad_request(backend: Backend) {
    let app = spawn_app(backend).await;
    let bob = app.sign_up("bob_v", "bob_v@example.com").await;
    let profile = app.url(&format!("/v1/users/{bob}"));
    for expected in ["miss", "hit"] {
        let response = app.http.get(&profile).send().await.expect("get");
        assert_eq!(header(&response, "x-cache"), expected);
    }
    let too_long = app
        .http
        .get(&profile)
        .header("if-none-match", "0".repeat(1001))
        .send()
        .await
        .expect("get");
    assert_eq!(too_long.status(), 400);
}

/// `Cache-Control: max-age=0` refreshes the entry for a key whose plan allows it, and is
/// ignored for other keys. (The follow is written to the store directly, without its event,
/// so that only a refresh can reveal it.)
async fn only_plans_that_allow_it_refresh_a_kept_answer(backend: Backend) {
    let app = spawn_app(backend).await;
    let bob = app.sign_up("bob_r", "bob_r@example.com").await;
    let ada = app.sign_up("ada_r", "ada_r@example.com").await;
    let profile = format!("/v1/users/{bob}");
    assert_eq!(get(&app, &app.http, &profile).await.1, "miss");
    let ids = |id: &str| id.parse::<uuid::Uuid>().expect("uuid");
    let _unpublished = app
        .store()
        .follow(ids(&ada), ids(&bob))
        .await
        .expect("follow");

    let refresh = |key: &str| {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("cache-control", "max-age=0".parse().expect("header"));
        headers.insert("x-api-key", key.parse().expect("header"));
        reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .expect("client")
    };
    let ignored = refresh(&app.api_key);
    let (_, x_cache, user) = get(&app, &ignored, &profile).await;
    assert_eq!(
        (x_cache.as_str(), &user["follower_count"]),
        ("hit", &json!(0))
    );

    let allowed = key_in_plan(
        app.store(),
        PlanSettings {
            allow_cache_refresh: true,
            ..PlanSettings::named("refreshing")
        },
    )
    .await;
    let (_, x_cache, user) = get(&app, &refresh(&allowed), &profile).await;
    assert_eq!(
        (x_cache.as_str(), &user["follower_count"]),
        ("miss", &json!(1))
    );
    let (_, x_cache, user) = get(&app, &app.http, &profile).await;
    assert_eq!(
        (x_cache.as_str(), &user["follower_count"]),
        ("hit", &json!(1))
    );
}

/// Each content coding has its own entry, kept compressed: a gzip hit is the gzip bytes of
/// the same JSON an identity answer sends.
async fn compressed_answers_are_kept_compressed(backend: Backend) {
    let app = spawn_app(backend).await;
    let (bob, _, bob_token) = bob_and_ada(&app).await;
    for n in 0..12 {
        let text = format!("tweet {n}: {}", "long enough to compress ".repeat(4));
        post_tweet(&app, &bob_token, &text).await;
    }
    let tweets = app.url(&format!("/v1/users/{bob}/tweets"));
    let gzip = || app.http.get(&tweets).header("accept-encoding", "gzip");
    assert_eq!(
        header(&gzip().send().await.expect("get"), "x-cache"),
        "miss"
    );
    let hit = gzip().send().await.expect("get");
    assert_eq!(header(&hit, "x-cache"), "hit");
    assert_eq!(header(&hit, "content-encoding"), "gzip");
    let compressed = hit.bytes().await.expect("body");
    let mut json = String::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_string(&mut json)
        .expect("gzip");

    let plain = app.http.get(&tweets).send().await.expect("get");
    assert_eq!(header(&plain, "x-cache"), "miss");
    assert_eq!(header(&plain, "content-encoding"), "");
    assert_eq!(plain.text().await.expect("body"), json);
}

/// A hit keeps the tag the answer had when it was kept, and a matching `If-None-Match` on
/// a hit is a 304.
async fn a_hit_answers_conditional_requests(backend: Backend) {
    let app = spawn_app(backend).await;
    let bob = app.sign_up("bob_t", "bob_t@example.com").await;
    let profile = app.url(&format!("/v1/users/{bob}"));
    let miss = app.http.get(&profile).send().await.expect("get");
    let tag = header(&miss, "etag");
    assert!(tag.starts_with("W/"), "{tag}");
    let unchanged = app
        .http
        .get(&profile)
        .header("if-none-match", &tag)
        .send()
        .await
        .expect("get");
    assert_eq!(unchanged.status(), 304);
    let hit = app.http.get(&profile).send().await.expect("get");
    assert_eq!(
        (header(&hit, "x-cache"), header(&hit, "etag")),
        ("hit".to_owned(), tag)
    );
}

/// With the cache off every answer says `bypass`, and the metrics count each outcome per
/// operation.
async fn a_cache_turned_off_is_bypassed_and_outcomes_are_counted(backend: Backend) {
    let off = spawn_app_with(backend, |config| config.response_cache_mib = 0).await;
    let bob = off.sign_up("bob_off", "bob_off@example.com").await;
    for _ in 0..2 {
        assert_eq!(
            get(&off, &off.http, &format!("/v1/users/{bob}")).await.1,
            "bypass"
        );
    }
    let on = spawn_app(backend).await;
    let bob = on.sign_up("bob_on", "bob_on@example.com").await;
    let before = on.scrape_metrics().await;
    for _ in 0..3 {
        get(&on, &on.http, &format!("/v1/users/{bob}")).await;
    }
    let after = on.scrape_metrics().await;
    let counted = |result: &str| {
        let name = format!(
            "minitter_response_cache_lookups_total{{operation=\"get_user\",result=\"{result}\"}}"
        );
        let value = |text: &str| metric_sample(text, &name).unwrap_or(0.0);
        value(&after) - value(&before)
    };
    assert_eq!((counted("miss"), counted("hit")), (1.0, 2.0));
}

/// `id` with every character percent-encoded: a spelling the router decodes to `id`.
fn percent_encoded(id: &str) -> String {
    id.bytes().map(|byte| format!("%{byte:02X}")).collect()
}

/// The spellings of a path with one id that reach the same handler call: as is,
/// percent-encoded in full or in part, and in upper case.
fn spellings(path: impl Fn(&str) -> String, id: &str) -> Vec<String> {
    vec![
        path(id),
        path(&percent_encoded(id)),
        path(&format!("{}{}", percent_encoded(&id[..2]), &id[2..])),
        path(&id.to_uppercase()),
    ]
}

/// The cache names an answer by the parameters the handler saw, so every spelling of a
/// request the router accepts (encoded or upper-case ids; extra, repeated, reordered or
/// zero-padded query parameters) shares one entry, and a write invalidates it whichever
/// spelling filled it.
async fn every_spelling_of_a_cached_request_is_one_entry_that_writes_invalidate(backend: Backend) {
    let app = spawn_app(backend).await;
    let (bob, ada, bob_token) = bob_and_ada(&app).await;
    let tweet = post_tweet(&app, &bob_token, "spelled many ways").await;
    let tweet_paths = spellings(|id| format!("/v1/tweets/{id}"), &tweet);
    let profiles = spellings(|id| format!("/v1/users/{id}"), &bob);
    let mut lists = spellings(|id| format!("/v1/users/{id}/tweets?limit=20"), &bob);
    for query in [
        "limit=020",
        "limit=20&limit=5",
        "unknown=1&limit=20",
        "limit=20&unknown=2",
    ] {
        lists.push(format!("/v1/users/{bob}/tweets?{query}"));
    }
    for paths in [&tweet_paths, &profiles, &lists] {
        let (status, x_cache, first) = get(&app, &app.http, &paths[0]).await;
        assert_eq!((status, x_cache.as_str()), (200, "miss"), "{}", paths[0]);
        for path in &paths[1..] {
            let (status, x_cache, body) = get(&app, &app.http, path).await;
            assert_eq!((status, x_cache.as_str()), (200, "hit"), "{path}");
            assert_eq!(body, first, "{path}");
        }
    }

    follow(&app, &ada, &bob).await;
    for path in &profiles {
        let (_, _, user) = get(&app, &app.http, path).await;
        assert_eq!(user["follower_count"], 1, "{path} after the follow");
    }
    delete_tweet(&app, &bob_token, &tweet).await;
    for path in &tweet_paths {
        assert_eq!(
            get(&app, &app.http, path).await.0,
            404,
            "{path} after the delete"
        );
    }
    for path in &lists {
        let (_, _, page) = get(&app, &app.http, path).await;
        assert_eq!(page["items"], json!([]), "{path} after the delete");
    }
}

on_every_backend!(
    every_spelling_of_a_cached_request_is_one_entry_that_writes_invalidate,
    no_read_after_an_acknowledged_write_sees_the_copy_it_replaced,
    a_hit_needs_a_good_key_and_counts_against_its_quota,
    a_cached_path_still_refuses_a_bad_request,
    only_plans_that_allow_it_refresh_a_kept_answer,
    compressed_answers_are_kept_compressed,
    a_hit_answers_conditional_requests,
    a_cache_turned_off_is_bypassed_and_outcomes_are_counted,
);

/// Three instances on PostgreSQL sharing the Redis at `redis_url`.
async fn cluster_on(redis_url: &str) -> Vec<TestApp> {
    let shared = |config: &mut minitter_server::config::Config| {
        config.redis_url = Some(redis_url.to_owned().into());
    };
    let first = spawn_app_with(Backend::Postgres, shared).await;
    let second = first.sibling(shared).await;
    let third = first.sibling(shared).await;
    vec![first, second, third]
}

/// A write acknowledged by one instance is seen by the very next read on every other,
/// though each had the old answer cached: no waiting for the event to travel.
async fn no_instance_serves_a_copy_replaced_by_a_write_through_another() {
    let instances = cluster_on(&required_env("MINITTER_TEST_REDIS_URL")).await;
    let (bob, ada, bob_token) = bob_and_ada(&instances[0]).await;
    let profile = format!("/v1/users/{bob}");
    let tweets = format!("/v1/users/{bob}/tweets");
    for reader in &instances[1..] {
        assert_eq!(get(reader, &reader.http, &profile).await.1, "miss");
        assert_eq!(get(reader, &reader.http, &profile).await.1, "hit");
        get(reader, &reader.http, &tweets).await;
    }
    for (round, writer) in instances.iter().enumerate() {
        follow_or_post(writer, round, &ada, &bob, &bob_token).await;
        for reader in &instances {
            let (_, _, user) = get(reader, &reader.http, &profile).await;
            assert_eq!(user["follower_count"], 1, "round {round}");
            assert_eq!(user["tweet_count"], round, "round {round}");
            let (_, _, page) = get(reader, &reader.http, &tweets).await;
            assert_eq!(page["items"].as_array().map(Vec::len), Some(round));
        }
    }
    let tweet = post_tweet(&instances[0], &bob_token, "to be deleted").await;
    let tweet_path = format!("/v1/tweets/{tweet}");
    for reader in &instances[1..] {
        get(reader, &reader.http, &tweet_path).await;
        assert_eq!(get(reader, &reader.http, &tweet_path).await.1, "hit");
    }
    delete_tweet(&instances[0], &bob_token, &tweet).await;
    for reader in &instances {
        assert_eq!(get(reader, &reader.http, &tweet_path).await.0, 404);
    }
}

/// The first round follows, later rounds post.
async fn follow_or_post(app: &TestApp, round: usize, ada: &str, bob: &str, bob_token: &str) {
    if round == 0 {
        follow(app, ada, bob).await;
    } else {
        post_tweet(app, bob_token, &format!("round {round}")).await;
    }
}

/// When Redis (where the versions live) does not answer, the cache is bypassed rather than
/// trusted, reads still succeed, and a write made meanwhile is not hidden by an old entry
/// once Redis answers again.
async fn the_cache_is_bypassed_while_redis_is_away() {
    let redis_url = required_env("MINITTER_TEST_REDIS_URL");
    let relay = Relay::to(minitter_test_support::address_of(&redis_url)).await;
    let through_relay = minitter_test_support::with_port(&redis_url, relay.port());
    let instances = cluster_on(&through_relay).await;
    let (app, other) = (&instances[0], &instances[1]);
    let (bob, ada, _) = bob_and_ada(app).await;
    let profile = format!("/v1/users/{bob}");
    get(other, &other.http, &profile).await;
    assert_eq!(get(other, &other.http, &profile).await.1, "hit");

    relay.cut();
    let (status, x_cache, _) = get(other, &other.http, &profile).await;
    assert_eq!((status, x_cache.as_str()), (200, "bypass"));
    follow(app, &ada, &bob).await;
    relay.restore();

    let started = std::time::Instant::now();
    loop {
        let (_, x_cache, user) = get(other, &other.http, &profile).await;
        if x_cache != "bypass" {
            assert_eq!(
                user["follower_count"], 1,
                "a stale copy was served ({x_cache})"
            );
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "still bypassing"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

needs_cluster!(
    no_instance_serves_a_copy_replaced_by_a_write_through_another,
    the_cache_is_bypassed_while_redis_is_away,
);
