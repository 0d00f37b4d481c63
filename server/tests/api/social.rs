//! Follows, tweets and timelines under concurrency, pagination and durability.

use std::collections::HashSet;

use futures::future::join_all;
use serde_json::{Value, json};

use minitter_test_support::{Backend, on_every_backend};

use crate::helpers::{TestApp, assert_problem, spawn_app};

/// Signs up and logs in `name`; returns (id, bearer header value).
async fn user(app: &TestApp, name: &str) -> (String, String) {
    let id = app.sign_up(name, &format!("{name}@example.com")).await;
    let token = app.log_in(&format!("{name}@example.com")).await;
    (id, format!("Bearer {token}"))
}

async fn post_tweet(app: &TestApp, auth: &str, text: &str) -> reqwest::Response {
    app.http
        .post(app.url("/v1/tweets"))
        .header("authorization", auth)
        .json(&json!({"text": text}))
        .send()
        .await
        .expect("request")
}

async fn follow(app: &TestApp, auth: &str, user_id: &str) -> u16 {
    let url = app.url(&format!("/v1/me/following/{user_id}"));
    app.http
        .put(url)
        .header("authorization", auth)
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

async fn unfollow(app: &TestApp, auth: &str, user_id: &str) -> u16 {
    let url = app.url(&format!("/v1/me/following/{user_id}"));
    app.http
        .delete(url)
        .header("authorization", auth)
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

async fn profile(app: &TestApp, id: &str) -> Value {
    app.get_json(&format!("/v1/users/{id}"), None).await
}

async fn paging_while_tweets_are_posted_yields_no_duplicate_and_skips_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, reader) = user(&app, "reader").await;
    let (writer_id, writer) = user(&app, "writer").await;
    assert_eq!(follow(&app, &reader, &writer_id).await, 204);
    let mut existing = HashSet::new();
    for i in 0..40 {
        let tweet: Value = post_tweet(&app, &writer, &format!("before {i}"))
            .await
            .json()
            .await
            .expect("json");
        existing.insert(tweet["id"].as_str().expect("id").to_owned());
    }

    // Page through the timeline, 7 at a time, while the writer keeps posting.
    let (mut seen, mut order) = (HashSet::new(), Vec::new());
    let mut token: Option<String> = None;
    loop {
        let posting = post_tweet(&app, &writer, "during");
        let path = match &token {
            Some(token) => format!("/v1/timeline?limit=7&page_token={token}"),
            None => "/v1/timeline?limit=7".to_owned(),
        };
        let (page, posted) = tokio::join!(app.get_json(&path, Some(&reader)), posting);
        assert_eq!(posted.status(), 201);
        for item in page["items"].as_array().expect("items") {
            let id = item["id"].as_str().expect("id").to_owned();
            assert!(seen.insert(id.clone()), "tweet {id} appeared twice");
            order.push(id);
        }
        match page["next_page"].as_str() {
            Some(next) => token = Some(next.to_owned()),
            None => break,
        }
    }
    assert!(
        existing.is_subset(&seen),
        "tweets that existed when paging began were skipped"
    );
    let mut sorted = order.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(order, sorted, "newest first");
}

async fn counts_stay_exact_under_concurrent_follows_and_unfollows(backend: Backend) {
    let app = spawn_app(backend).await;
    let (star, _) = user(&app, "star").await;
    let mut fans = Vec::new();
    for i in 0..12 {
        fans.push(user(&app, &format!("fan{i}")).await);
    }

    // Every fan follows twice, all at once.
    let follows = fans
        .iter()
        .flat_map(|(_, auth)| [follow(&app, auth, &star), follow(&app, auth, &star)]);
    assert!(join_all(follows).await.iter().all(|s| *s == 204));
    assert_eq!(profile(&app, &star).await["follower_count"], 12);

    // Half of them unfollow twice, all at once.
    let unfollows = fans[..6]
        .iter()
        .flat_map(|(_, auth)| [unfollow(&app, auth, &star), unfollow(&app, auth, &star)]);
    assert!(join_all(unfollows).await.iter().all(|s| *s == 204));
    assert_eq!(profile(&app, &star).await["follower_count"], 6);
    for (i, (fan, _)) in fans.iter().enumerate() {
        let expected = if i < 6 { 0 } else { 1 };
        assert_eq!(profile(&app, fan).await["following_count"], expected);
    }
    let followers = app
        .get_json(&format!("/v1/users/{star}/followers?limit=100"), None)
        .await;
    assert_eq!(followers["items"].as_array().expect("items").len(), 6);
}

async fn following_yourself_is_refused_and_unknown_users_are_404(backend: Backend) {
    let app = spawn_app(backend).await;
    let (me, auth) = user(&app, "ada").await;
    let response = app
        .http
        .put(app.url(&format!("/v1/me/following/{me}")))
        .header("authorization", &auth)
        .send()
        .await;
    assert_problem(response.expect("request"), 422, "cannot_follow_self").await;
    assert_eq!(
        follow(&app, &auth, &uuid::Uuid::now_v7().to_string()).await,
        404
    );
    assert_eq!(profile(&app, &me).await["following_count"], 0);
}

async fn a_timeline_has_own_and_followed_tweets_only(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, ada) = user(&app, "ada").await;
    let (bob_id, bob) = user(&app, "bob").await;
    let (_, eve) = user(&app, "eve").await;
    follow(&app, &ada, &bob_id).await;
    post_tweet(&app, &ada, "ada 1").await;
    post_tweet(&app, &bob, "bob 1").await;
    post_tweet(&app, &eve, "eve 1").await;
    post_tweet(&app, &ada, "ada 2").await;

    let page = app.get_json("/v1/timeline", Some(&ada)).await;
    let texts: Vec<&str> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|t| t["text"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(texts, ["ada 2", "bob 1", "ada 1"]);
    assert_eq!(page["next_page"], Value::Null);
}

async fn tweets_are_280_characters_not_bytes(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, auth) = user(&app, "ada").await;
    let longest = "🦀".repeat(280);
    let tweet: Value = post_tweet(&app, &auth, &longest)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(tweet["text"], longest.as_str());
    let problem = assert_problem(
        post_tweet(&app, &auth, &"🦀".repeat(281)).await,
        400,
        "invalid_request",
    )
    .await;
    assert_eq!(problem["errors"][0]["pointer"], "/text");
    assert_problem(post_tweet(&app, &auth, "").await, 400, "invalid_request").await;
}

async fn only_the_author_deletes_and_a_deleted_tweet_is_gone_everywhere(backend: Backend) {
    let app = spawn_app(backend).await;
    let (ada_id, ada) = user(&app, "ada").await;
    let (_, bob) = user(&app, "bob").await;
    let tweet: Value = post_tweet(&app, &ada, "mine")
        .await
        .json()
        .await
        .expect("json");
    let path = format!("/v1/tweets/{}", tweet["id"].as_str().expect("id"));

    let by_bob = app
        .http
        .delete(app.url(&path))
        .header("authorization", &bob)
        .send()
        .await
        .expect("request");
    assert_problem(by_bob, 403, "forbidden").await;
    let by_ada = app
        .http
        .delete(app.url(&path))
        .header("authorization", &ada)
        .send()
        .await
        .expect("request");
    assert_eq!(by_ada.status(), 204);

    assert_problem(
        app.http.get(app.url(&path)).send().await.expect("request"),
        404,
        "not_found",
    )
    .await;
    let again = app
        .http
        .delete(app.url(&path))
        .header("authorization", &ada)
        .send()
        .await
        .expect("request");
    assert_problem(again, 404, "not_found").await;
    let own = app
        .get_json(&format!("/v1/users/{ada_id}/tweets"), None)
        .await;
    assert_eq!(own["items"], json!([]));
    assert_eq!(
        app.get_json("/v1/timeline", Some(&ada)).await["items"],
        json!([])
    );
    assert_eq!(profile(&app, &ada_id).await["tweet_count"], 0);
}

async fn forged_and_foreign_page_tokens_are_400_never_500(backend: Backend) {
    let app = spawn_app(backend).await;
    let (ada_id, ada) = user(&app, "ada").await;
    let (bob_id, _) = user(&app, "bob").await;
    for i in 0..3 {
        post_tweet(&app, &ada, &format!("t{i}")).await;
    }
    let page = app
        .get_json(&format!("/v1/users/{ada_id}/tweets?limit=1"), None)
        .await;
    let token = page["next_page"].as_str().expect("a next page").to_owned();
    let mut tampered = token.clone().into_bytes();
    tampered[2] = if tampered[2] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");

    let attempts = [
        format!("/v1/users/{ada_id}/tweets?page_token={tampered}"),
        format!("/v1/users/{ada_id}/tweets?page_token=garbage"),
        // A real token, for another list.
        format!("/v1/users/{bob_id}/tweets?page_token={token}"),
        format!("/v1/timeline?page_token={token}"),
        format!("/v1/users/{ada_id}/followers?page_token={token}"),
    ];
    for path in attempts {
        let response = app
            .http
            .get(app.url(&path))
            .header("authorization", &ada)
            .send()
            .await
            .expect("request");
        let problem = assert_problem(response, 400, "invalid_request").await;
        assert_eq!(problem["errors"][0]["pointer"], "/page_token", "{path}");
    }
}

async fn concurrent_retries_with_one_idempotency_key_create_one_tweet(backend: Backend) {
    let app = spawn_app(backend).await;
    let (ada_id, ada) = user(&app, "ada").await;
    let attempt = || {
        app.http
            .post(app.url("/v1/tweets"))
            .header("authorization", &ada)
            .header("idempotency-key", "retry-1")
            .json(&json!({"text": "exactly once"}))
            .send()
    };
    let responses = join_all((0..8).map(|_| attempt())).await;
    let mut created = HashSet::new();
    for response in responses {
        let response = response.expect("request");
        match response.status().as_u16() {
            201 => {
                let tweet: Value = response.json().await.expect("json");
                created.insert(tweet["id"].as_str().expect("id").to_owned());
            }
            409 => {
                assert_problem(response, 409, "request_in_flight").await;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(created.len(), 1, "every 201 is the same tweet");
    assert_eq!(profile(&app, &ada_id).await["tweet_count"], 1);

    let replay: Value = attempt()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert!(created.contains(replay["id"].as_str().expect("id")));
    let other_body = app
        .http
        .post(app.url("/v1/tweets"))
        .header("authorization", &ada)
        .header("idempotency-key", "retry-1")
        .json(&json!({"text": "something else"}))
        .send()
        .await
        .expect("request");
    assert_problem(other_body, 422, "idempotency_key_reused").await;
}

async fn the_timeline_reaches_tweets_far_older_than_its_first_window(backend: Backend) {
    use minitter_server::infra::store::TweetRecord;

    let app = spawn_app(backend).await;
    let (_, ada) = user(&app, "ada").await;
    let (bob_id, _) = user(&app, "bob").await;
    follow(&app, &ada, &bob_id).await;

    // Bob tweeted 3 days and 90 days ago; Ada tweets now.
    let old = |days: i64, text: &str| {
        let at = chrono::Utc::now() - chrono::Duration::days(days);
        let millis = u64::try_from(at.timestamp_millis()).expect("after 1970");
        let ts = uuid::Timestamp::from_unix(uuid::NoContext, millis / 1000, 0);
        TweetRecord {
            id: uuid::Uuid::new_v7(ts),
            author_id: bob_id.parse().expect("a uuid"),
            text: text.to_owned(),
            created_at: at,
        }
    };
    let bulk = bulk_store(&app).await;
    bulk.import_tweets(&[old(90, "ancient"), old(3, "older")])
        .await
        .expect("import");
    bulk.close().await;
    post_tweet(&app, &ada, "now").await;

    let mut texts = Vec::new();
    let mut path = "/v1/timeline?limit=1".to_owned();
    loop {
        let page = app.get_json(&path, Some(&ada)).await;
        texts.extend(
            page["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|t| t["text"].as_str().unwrap_or_default().to_owned()),
        );
        match page["next_page"].as_str() {
            Some(next) => path = format!("/v1/timeline?limit=1&page_token={next}"),
            None => break,
        }
    }
    assert_eq!(texts, ["now", "older", "ancient"]);
}

/// Every tweet in a reader's whole timeline, newest first, paging 100 at a time.
async fn whole_timeline(app: &TestApp, reader: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut path = "/v1/timeline?limit=100".to_owned();
    loop {
        let page = app.get_json(&path, Some(reader)).await;
        for item in page["items"].as_array().expect("items") {
            ids.push(item["id"].as_str().expect("id").to_owned());
        }
        match page["next_page"].as_str() {
            Some(next) => path = format!("/v1/timeline?limit=100&page_token={next}"),
            None => return ids,
        }
    }
}

/// Many authors post at once, each post acknowledged while the others' commit and fan
/// out: every acknowledged post reaches the warm home feed of every follower, once, and
/// nothing else does. The fan-out runs after the acknowledgement (from the outbox), so a
/// reader is given a few seconds to see the last of them; what must hold is that none is
/// ever missing for good and none appears twice.
async fn every_acknowledged_post_reaches_every_follower_under_concurrent_posting(backend: Backend) {
    const AUTHORS: usize = 8;
    const READERS: usize = 6;
    const POSTS_EACH: usize = 25;
    let app = spawn_app(backend).await;
    let mut authors = Vec::new();
    for a in 0..AUTHORS {
        authors.push(user(&app, &format!("author{a}")).await);
    }
    // Reader r follows every author whose number is not r modulo 4, so that followers
    // differ from author to author.
    let mut readers = Vec::new();
    for r in 0..READERS {
        let (_, reader) = user(&app, &format!("reader{r}")).await;
        let mut followed = HashSet::new();
        for (a, (author_id, _)) in authors.iter().enumerate() {
            if a % 4 != r % 4 {
                assert_eq!(follow(&app, &reader, author_id).await, 204);
                followed.insert(a);
            }
        }
        // Read once, so that the feed is built and the posts below are pushed into it.
        assert!(whole_timeline(&app, &reader).await.is_empty());
        readers.push((reader, followed));
    }

    let posting = authors.iter().enumerate().flat_map(|(a, (_, author))| {
        let app = &app;
        (0..POSTS_EACH).map(move |n| async move {
            let response = post_tweet(app, author, &format!("author {a}, post {n}")).await;
            assert_eq!(response.status(), 201);
            let tweet: Value = response.json().await.expect("json");
            (a, tweet["id"].as_str().expect("id").to_owned())
        })
    });
    let acknowledged = join_all(posting).await;
    assert_eq!(acknowledged.len(), AUTHORS * POSTS_EACH);

    for (reader, followed) in &readers {
        let expected: HashSet<&String> = acknowledged
            .iter()
            .filter(|(a, _)| followed.contains(a))
            .map(|(_, id)| id)
            .collect();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let timeline = whole_timeline(&app, reader).await;
            let seen: HashSet<&String> = timeline.iter().collect();
            assert_eq!(seen.len(), timeline.len(), "a tweet appeared twice");
            assert!(
                seen.is_subset(&expected),
                "a tweet of an author not followed"
            );
            let mut sorted = timeline.clone();
            sorted.sort_by(|a, b| b.cmp(a));
            assert_eq!(timeline, sorted, "newest first");
            if seen == expected {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} of {} acknowledged posts are missing from a follower's timeline",
                expected.len() - seen.len(),
                expected.len()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// The benchmarks' bulk-loading store, opened beside the app's on its database (bulk
/// loading is not part of the API's store).
async fn bulk_store(app: &TestApp) -> std::sync::Arc<dyn minitter_server::infra::store::BulkStore> {
    minitter_server::infra::store::open_bulk(app.database.url(), &app.data_dir, &Default::default())
        .await
        .expect("open the store for bulk loading")
}

/// Posts with keys of their own, sent at once (so that on SQLite they share group
/// commits, whose Idempotency-Key records are written by one statement): a retry of each
/// replays that post's own tweet, Location included, and creates nothing.
async fn concurrent_posts_each_replay_their_own_tweet(backend: Backend) {
    const POSTS: usize = 40;
    let app = spawn_app(backend).await;
    let (ada_id, ada) = user(&app, "ada").await;
    let (bob_id, bob) = user(&app, "bob").await;
    let send = |n: usize| {
        let author = if n.is_multiple_of(2) { &ada } else { &bob };
        app.http
            .post(app.url("/v1/tweets"))
            .header("authorization", author)
            .header("idempotency-key", format!("key-{}", n / 2))
            .json(&json!({"text": format!("post {n}")}))
            .send()
    };
    let answer = |response: reqwest::Response| async move {
        assert_eq!(response.status(), 201);
        let location = response.headers()["location"]
            .to_str()
            .expect("ascii")
            .to_owned();
        let tweet: Value = response.json().await.expect("json");
        (
            tweet["id"].as_str().expect("id").to_owned(),
            tweet["text"].clone(),
            location,
        )
    };
    let first = join_all((0..POSTS).map(send)).await;
    let mut created = Vec::new();
    for response in first {
        created.push(answer(response.expect("request")).await);
    }
    let again = join_all((0..POSTS).map(send)).await;
    for (n, response) in again.into_iter().enumerate() {
        let replayed = answer(response.expect("request")).await;
        assert_eq!(replayed, created[n], "post {n} replayed another response");
        assert_eq!(replayed.1, format!("post {n}"));
        assert!(replayed.2.ends_with(&replayed.0), "{replayed:?}");
    }
    for id in [&ada_id, &bob_id] {
        assert_eq!(profile(&app, id).await["tweet_count"], POSTS / 2);
    }
}

/// The benchmarks' bulk load (COPY on PostgreSQL, one JSON statement on SQLite) stores
/// what it is given to the letter, quotes, commas and line breaks included, and the
/// counters it recomputes are the API's.
async fn a_bulk_load_is_read_back_to_the_letter(backend: Backend) {
    use minitter_server::infra::store::{NewUserRecord, TweetRecord};

    let app = spawn_app(backend).await;
    let (reader_id, reader) = user(&app, "reader").await;
    let awkward = "She said \"hi, there\"\nthen left;\t\\N \"\" ,";
    let (ann, bo) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let person = |name: &str, display_name: &str| NewUserRecord {
        username: name.to_owned(),
        email: format!("{name}@example.com"),
        display_name: display_name.to_owned(),
        password_hash: "not a hash".to_owned(),
    };
    let tweet = |text: &str| TweetRecord {
        id: uuid::Uuid::now_v7(),
        author_id: ann,
        text: text.to_owned(),
        created_at: chrono::Utc::now(),
    };
    let bulk = bulk_store(&app).await;
    let deferred = bulk.begin().await.expect("begin");
    let deferred_names: Vec<String> = deferred.names().into_iter().map(str::to_owned).collect();
    if matches!(backend, Backend::Postgres) {
        // follows' two foreign keys and tweets' one, beside the three indexes.
        assert_eq!(deferred_names.len(), 6, "{deferred_names:?}");
    }
    bulk.import_users(&[(ann, person("ann", awkward)), (bo, person("bo", ""))])
        .await
        .expect("users");
    let reader_uuid: uuid::Uuid = reader_id.parse().expect("a uuid");
    bulk.import_follows(&[(reader_uuid, ann), (bo, ann)])
        .await
        .expect("follows");
    bulk.import_tweets(&[tweet(awkward), tweet("plain")])
        .await
        .expect("tweets");
    bulk.finish(deferred).await.expect("finish");
    // What was dropped for the load was built again: a second load finds it all.
    let again = bulk.begin().await.expect("begin again");
    assert_eq!(again.names(), deferred_names);
    for index in [
        "follows_by_followee",
        "follows_by_follower",
        "tweets_by_author",
    ] {
        assert!(again.names().contains(&index), "{index}");
    }
    bulk.finish(again).await.expect("finish again");
    bulk.close().await;

    let ann_profile = profile(&app, &ann.to_string()).await;
    assert_eq!(ann_profile["display_name"], awkward);
    assert_eq!(ann_profile["follower_count"], 2);
    assert_eq!(ann_profile["tweet_count"], 2);
    assert_eq!(profile(&app, &bo.to_string()).await["display_name"], "");
    let timeline = app.get_json("/v1/timeline", Some(&reader)).await;
    let texts: Vec<&str> = timeline["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|t| t["text"].as_str())
        .collect();
    assert_eq!(texts, ["plain", awkward]);
}

on_every_backend!(
    paging_while_tweets_are_posted_yields_no_duplicate_and_skips_nothing,
    counts_stay_exact_under_concurrent_follows_and_unfollows,
    following_yourself_is_refused_and_unknown_users_are_404,
    a_timeline_has_own_and_followed_tweets_only,
    tweets_are_280_characters_not_bytes,
    only_the_author_deletes_and_a_deleted_tweet_is_gone_everywhere,
    forged_and_foreign_page_tokens_are_400_never_500,
    concurrent_retries_with_one_idempotency_key_create_one_tweet,
    the_timeline_reaches_tweets_far_older_than_its_first_window,
    every_acknowledged_post_reaches_every_follower_under_concurrent_posting,
    concurrent_posts_each_replay_their_own_tweet,
    a_bulk_load_is_read_back_to_the_letter,
);
