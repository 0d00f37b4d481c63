//! The stream metered by usage plans, end to end with a real WebSocket client: a key holds
//! no more sockets than its plan's `stream_connection_limit` (on one instance, and
//! across instances sharing Redis), messages in both directions count against the quota
//! and in the usage report, a spent quota closes the socket with 4029; and `since` given
//! as a REST page token.

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use minitter_server::config::Config;
use minitter_test_support::{Backend, needs_cluster, on_every_backend, required_env};

use crate::helpers::{PartnerKey, TestApp, post_tweet, spawn_app, spawn_app_with, user};
use crate::stream::{PATIENCE, Socket, ask, closed, next, send, ticket_with, ws_url};

/// A ticket of `client`'s key for the user of `bearer`, as its upgrade URL on `app`.
async fn ticket_url(app: &TestApp, client: &reqwest::Client, bearer: &str) -> String {
    let ticket = ticket_with(app, client, bearer).await;
    ws_url(app, ticket["url"].as_str().expect("url"))
}

async fn open(url: &str) -> Result<Socket, tungstenite::Error> {
    tokio_tungstenite::connect_async(url)
        .await
        .map(|(socket, _)| socket)
}

/// An upgrade refused with 429 `too_many_connections` and a `Retry-After`.
fn assert_too_many(refused: Result<Socket, tungstenite::Error>) {
    let Err(tungstenite::Error::Http(response)) = refused else {
        panic!("expected the upgrade to be refused");
    };
    assert_eq!(response.status(), 429);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("5")
    );
    let problem: Value =
        serde_json::from_slice(response.body().as_deref().unwrap_or_default()).expect("problem");
    assert_eq!(problem["code"], "too_many_connections", "{problem}");
}

/// Opens a socket once a slot frees (a closed socket gives its slot back a moment later).
async fn open_when_free(app: &TestApp, client: &reqwest::Client, bearer: &str) -> Socket {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match open(&ticket_url(app, client, bearer).await).await {
            Ok(socket) => return socket,
            Err(error) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(%error, "no slot yet");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(error) => panic!("no slot freed: {error}"),
        }
    }
}

async fn a_key_holds_at_most_its_plans_sockets(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, bearer) = user(&app, "alice").await;
    let PartnerKey { client, .. } = PartnerKey::new(
        &app,
        json!({"name": "two sockets", "stream_connection_limit": 2}),
    )
    .await;
    let mut first = open(&ticket_url(&app, &client, &bearer).await)
        .await
        .expect("first");
    let _second = open(&ticket_url(&app, &client, &bearer).await)
        .await
        .expect("second");
    assert_too_many(open(&ticket_url(&app, &client, &bearer).await).await);
    // Another key's sockets are not counted against this one's.
    let _elsewhere = crate::stream::connect(&app, &bearer).await;

    first.close(None).await.expect("close");
    let mut third = open_when_free(&app, &client, &bearer).await;
    assert_eq!(
        ask(&mut third, json!({"action": "ping"})).await["type"],
        "pong"
    );
}

async fn messages_count_against_the_quota_and_in_the_usage_report(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, bearer) = user(&app, "alice").await;
    let plan = json!({"name": "six a day", "quota": {"limit": 6, "period": "DAY"}});
    let partner = PartnerKey::new(&app, plan).await;
    let (client, key_id, plan_id) = (&partner.client, partner.id(), partner.plan_id());
    // One unit for the ticket, then two for each ping (the ping and its pong).
    let mut socket = open(&ticket_url(&app, client, &bearer).await)
        .await
        .expect("open");
    for _ in 0..3 {
        send(&mut socket, json!({"action": "ping"})).await;
    }
    for _ in 0..3 {
        assert_eq!(next(&mut socket).await["type"], "pong");
    }
    // The pongs take the quota past its end: an error says so, then the socket closes.
    let spent = next(&mut socket).await;
    assert_eq!(spent["type"], "error");
    assert_eq!(spent["problem"]["code"], "quota_exceeded", "{spent}");
    let (code, _) = closed(&mut socket).await;
    assert_eq!(code, CloseCode::Library(4029));

    // The usage report counts both directions: the ticket, three pings and the pongs
    // charged before the quota ran out (all three, or two when the last came alone).
    let today = chrono::Utc::now().date_naive();
    let url = app.url(&format!(
        "/admin/v1/usage-plans/{plan_id}/usage?start_date={today}&end_date={today}"
    ));
    let report: Value = app
        .http
        .get(url)
        .header("authorization", app.admin_authorization())
        .send()
        .await
        .expect("report")
        .json()
        .await
        .expect("json");
    let used = report["items"][&key_id][0][0].as_u64().expect("used");
    assert!((6..=7).contains(&used), "{report}");
    // Tickets are refused until the quota resets.
    let refused = client
        .post(app.url("/v1/stream/tickets"))
        .header("authorization", &bearer)
        .send()
        .await
        .expect("ticket");
    crate::helpers::assert_problem(refused, 429, "quota_exceeded").await;
}

/// `since` may be a `next_page` token of the topic's REST list: it stands for its page's
/// last tweet. A token of another list, or no token at all, is refused at `/since`.
async fn since_takes_a_page_token_of_the_topics_list(backend: Backend) {
    let app = spawn_app(backend).await;
    let (bob_id, bob) = user(&app, "bob").await;
    let (_, alice) = user(&app, "alice").await;
    let mut tweets = Vec::new();
    for n in 0..3 {
        tweets.push(post_tweet(&app, &bob, &format!("tweet {n}")).await);
    }
    let page = app
        .get_json(&format!("/v1/users/{bob_id}/tweets?limit=2"), Some(&alice))
        .await;
    let token = page["next_page"].as_str().expect("a next page");
    let mut socket = crate::stream::connect(&app, &alice).await;
    let topic = format!("user:{bob_id}");
    send(
        &mut socket,
        json!({"action": "subscribe", "topic": topic, "since": token}),
    )
    .await;
    // The token stands for the second newest tweet: the newest is replayed.
    let replayed = next(&mut socket).await;
    assert_eq!(replayed["data"]["id"], tweets[2]);
    let subscribed = next(&mut socket).await;
    assert_eq!(subscribed["type"], "subscribed");
    assert_eq!(subscribed["replayed"], 1);
    assert_eq!(subscribed["newest"], tweets[2]);

    let timeline = app.get_json("/v1/timeline?limit=1", Some(&alice)).await;
    for since in [json!("not-a-token"), timeline["next_page"].clone()] {
        if since.is_null() {
            continue;
        }
        let refused = ask(
            &mut socket,
            json!({"action": "subscribe", "topic": topic, "since": since, "id": "s"}),
        )
        .await;
        assert_eq!(refused["id"], "s");
        assert_eq!(refused["problem"]["code"], "invalid_request", "{refused}");
        assert_eq!(refused["problem"]["errors"][0]["pointer"], "/since");
    }
}

on_every_backend!(
    a_key_holds_at_most_its_plans_sockets,
    messages_count_against_the_quota_and_in_the_usage_report,
    since_takes_a_page_token_of_the_topics_list,
);

/// Two instances on PostgreSQL and Redis count a key's sockets together.
async fn the_socket_limit_holds_across_instances() {
    let redis = required_env("MINITTER_TEST_REDIS_URL");
    let shared = move |config: &mut Config| {
        config.redis_url = Some(redis.clone().into());
    };
    let first = spawn_app_with(Backend::Postgres, shared.clone()).await;
    let second = first.sibling(shared).await;
    let (_, bearer) = user(&first, "alice").await;
    let PartnerKey { client, .. } = PartnerKey::new(
        &first,
        json!({"name": "one socket", "stream_connection_limit": 1}),
    )
    .await;
    let mut held = open(&ticket_url(&first, &client, &bearer).await)
        .await
        .expect("the first socket");
    assert_too_many(open(&ticket_url(&second, &client, &bearer).await).await);

    held.close(None).await.expect("close");
    let mut moved = open_when_free(&second, &client, &bearer).await;
    assert_eq!(
        ask(&mut moved, json!({"action": "ping"})).await["type"],
        "pong"
    );
}

needs_cluster!(the_socket_limit_holds_across_instances);
