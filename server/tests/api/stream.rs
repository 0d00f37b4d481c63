//! The realtime stream end to end, with a real WebSocket client (tokio-tungstenite):
//! tickets and their misuse, routing and validation of every client message, pushes to
//! `home` and `user:<id>` topics (follows and unfollows included), sockets closed when
//! their key is disabled or their user deleted. Across instances: `stream_cluster.rs`;
//! metered by usage plans: `stream_metering.rs`.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use minitter_test_support::{Backend, on_every_backend};

use crate::helpers::{PartnerKey, TestApp, assert_problem, post_tweet, spawn_app, user};

pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How long a test waits for a message that should come.
pub(crate) const PATIENCE: Duration = Duration::from_secs(5);

pub(crate) async fn ticket(app: &TestApp, bearer: &str) -> Value {
    ticket_with(app, &app.http, bearer).await
}

/// A ticket of `client`'s key for the user of `bearer`.
pub(crate) async fn ticket_with(app: &TestApp, client: &reqwest::Client, bearer: &str) -> Value {
    let response = client
        .post(app.url("/v1/stream/tickets"))
        .header("authorization", bearer)
        .send()
        .await
        .expect("ticket");
    assert_eq!(response.status(), 200);
    response.json().await.expect("json")
}

pub(crate) fn ws_url(app: &TestApp, path: &str) -> String {
    app.url(path).replacen("http://", "ws://", 1)
}

/// Opens a stream on `app` with a new ticket.
pub(crate) async fn connect(app: &TestApp, bearer: &str) -> Socket {
    let ticket = ticket(app, bearer).await;
    let url = ws_url(app, ticket["url"].as_str().expect("url"));
    tokio_tungstenite::connect_async(url)
        .await
        .expect("the stream opens")
        .0
}

pub(crate) async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::text(message.to_string()))
        .await
        .expect("send");
}

/// The next JSON message (pings and pongs aside).
pub(crate) async fn next(socket: &mut Socket) -> Value {
    loop {
        let frame = tokio::time::timeout(PATIENCE, socket.next())
            .await
            .expect("a message in time")
            .expect("the socket is open")
            .expect("a frame");
        match frame {
            Message::Text(text) => return serde_json::from_str(&text).expect("JSON"),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// Sends `message` and returns the answer.
pub(crate) async fn ask(socket: &mut Socket, message: Value) -> Value {
    send(socket, message).await;
    next(socket).await
}

pub(crate) async fn subscribe(socket: &mut Socket, topic: &str) {
    let answer = ask(socket, json!({"action": "subscribe", "topic": topic})).await;
    assert_eq!(
        (&answer["type"], &answer["topic"]),
        (&json!("subscribed"), &json!(topic)),
        "{answer}"
    );
}

/// Waits for the close frame; returns its code and reason.
pub(crate) async fn closed(socket: &mut Socket) -> (CloseCode, String) {
    loop {
        let frame = tokio::time::timeout(PATIENCE, socket.next())
            .await
            .expect("closed in time");
        match frame {
            Some(Ok(Message::Close(Some(close)))) => {
                return (close.code, close.reason.to_string());
            }
            Some(Ok(Message::Text(text))) => {
                assert!(
                    !text.contains("tweet."),
                    "no push after the close began: {text}"
                );
            }
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// Nothing arrives for a moment.
async fn quiet(socket: &mut Socket) {
    if let Ok(Some(Ok(Message::Text(text)))) =
        tokio::time::timeout(Duration::from_millis(300), socket.next()).await
    {
        panic!("expected nothing, got {text}");
    }
}

async fn follow(app: &TestApp, bearer: &str, user: &str, follows: bool) {
    let url = app.url(&format!("/v1/me/following/{user}"));
    let request = if follows {
        app.http.put(url)
    } else {
        app.http.delete(url)
    };
    let response = request
        .header("authorization", bearer)
        .send()
        .await
        .expect("follow");
    assert!(response.status().is_success(), "{}", response.status());
}

async fn a_ticket_opens_one_stream(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, bearer) = user(&app, "alice").await;
    let issued = ticket(&app, &bearer).await;
    let secret = issued["ticket"].as_str().expect("ticket");
    assert!(secret.starts_with("st_"), "{secret}");
    assert_eq!(issued["url"], format!("/v1/stream?ticket={secret}"));

    let url = ws_url(&app, issued["url"].as_str().expect("url"));
    let (mut socket, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("the first use opens");
    assert_eq!(
        ask(&mut socket, json!({"action": "ping", "id": "1"})).await,
        json!({"type": "pong", "id": "1"})
    );

    // Used, forged and missing tickets are refused before the upgrade, as the REST API
    // refuses: 401 and a problem document.
    for path in [
        format!("/v1/stream?ticket={secret}"),
        format!("/v1/stream?ticket={}A", &secret[..secret.len() - 1]),
        "/v1/stream".to_owned(),
    ] {
        let response = app
            .http
            .get(app.url(&path))
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .send()
            .await
            .expect("upgrade");
        assert_problem(response, 401, "unauthorized").await;
    }
    // A ticket needs the key and the user's token, like any call.
    let response = app
        .http
        .post(app.url("/v1/stream/tickets"))
        .send()
        .await
        .expect("ticket");
    assert_problem(response, 401, "unauthorized").await;
}

async fn every_message_is_routed_or_refused_with_its_violations(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, bearer) = user(&app, "alice").await;
    let mut socket = connect(&app, &bearer).await;

    let unknown = ask(&mut socket, json!({"action": "dance", "id": "7"})).await;
    assert_eq!(unknown["type"], "error");
    assert_eq!(unknown["problem"]["status"], 400);
    assert_eq!(unknown["problem"]["code"], "invalid_request");
    assert_eq!(unknown["problem"]["errors"][0]["pointer"], "/action");
    let listed = unknown["problem"]["errors"][0]["message"]
        .as_str()
        .expect("message");
    assert!(listed.contains("ping, subscribe, unsubscribe"), "{listed}");

    let invalid = ask(
        &mut socket,
        json!({"action": "subscribe", "topic": "user:nobody", "colour": "red"}),
    )
    .await;
    let pointers: Vec<&str> = invalid["problem"]["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["pointer"].as_str().expect("pointer"))
        .collect();
    assert_eq!(pointers, ["/colour", "/topic"]);
    assert_eq!(
        invalid["problem"]["detail"],
        "The request has 2 invalid fields."
    );

    for text in ["not json", "[1, 2]", "{}"] {
        socket.send(Message::text(text)).await.expect("send");
        let refused = next(&mut socket).await;
        assert_eq!(refused["problem"]["code"], "invalid_request", "{text}");
    }
    socket
        .send(Message::binary(vec![1, 2, 3]))
        .await
        .expect("send");
    assert_eq!(next(&mut socket).await["problem"]["status"], 400);

    let missing = format!("user:{}", uuid::Uuid::now_v7());
    let not_found = ask(
        &mut socket,
        json!({"action": "subscribe", "topic": missing, "id": "s1"}),
    )
    .await;
    assert_eq!(not_found["id"], "s1");
    assert_eq!(not_found["problem"]["code"], "not_found");

    // After every refusal the socket is still open and routed.
    subscribe(&mut socket, "home").await;
    assert_eq!(
        ask(
            &mut socket,
            json!({"action": "unsubscribe", "topic": "home", "id": "u"})
        )
        .await,
        json!({"type": "unsubscribed", "topic": "home", "id": "u"})
    );
    assert_eq!(
        ask(&mut socket, json!({"action": "ping"})).await,
        json!({"type": "pong"})
    );
}

async fn tweets_reach_the_homes_and_user_topics_that_follow_them(backend: Backend) {
    let app = spawn_app(backend).await;
    let (alice_id, alice) = user(&app, "alice").await;
    let (bob_id, bob) = user(&app, "bob").await;
    let (_, carol) = user(&app, "carol").await;
    let (dave_id, dave) = user(&app, "dave").await;
    follow(&app, &alice, &bob_id, true).await;

    let mut alice_home = connect(&app, &alice).await;
    subscribe(&mut alice_home, "home").await;
    let mut carol_on_bob = connect(&app, &carol).await;
    subscribe(&mut carol_on_bob, &format!("user:{bob_id}")).await;

    let tweet = post_tweet(&app, &bob, "hello").await;
    for (socket, topic) in [
        (&mut alice_home, "home".to_owned()),
        (&mut carol_on_bob, format!("user:{bob_id}")),
    ] {
        let pushed = next(socket).await;
        assert_eq!(pushed["type"], "tweet.created");
        assert_eq!(pushed["topic"], topic);
        assert_eq!(pushed["data"]["id"], tweet);
        assert_eq!(pushed["data"]["author_id"], bob_id);
        assert_eq!(pushed["data"]["text"], "hello");
    }

    // The user's own tweets are in their home; strangers' are not.
    let own = post_tweet(&app, &alice, "mine").await;
    assert_eq!(next(&mut alice_home).await["data"]["id"], own);
    post_tweet(&app, &dave, "a stranger").await;
    quiet(&mut alice_home).await;

    // A follow made while the socket is open widens the home; an unfollow narrows it.
    follow(&app, &alice, &dave_id, true).await;
    let from_dave = post_tweet(&app, &dave, "now followed").await;
    assert_eq!(next(&mut alice_home).await["data"]["id"], from_dave);
    follow(&app, &alice, &bob_id, false).await;
    post_tweet(&app, &bob, "unfollowed").await;
    quiet(&mut alice_home).await;
    assert_eq!(next(&mut carol_on_bob).await["data"]["text"], "unfollowed");

    let response = app
        .http
        .delete(app.url(&format!("/v1/tweets/{tweet}")))
        .header("authorization", &bob)
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status(), 204);
    let deleted = next(&mut carol_on_bob).await;
    assert_eq!(
        deleted,
        json!({"type": "tweet.deleted", "topic": format!("user:{bob_id}"),
               "data": {"tweet_id": tweet, "author_id": bob_id}})
    );

    // Unsubscribed, nothing more arrives.
    let answer = ask(
        &mut carol_on_bob,
        json!({"action": "unsubscribe", "topic": format!("user:{bob_id}")}),
    )
    .await;
    assert_eq!(answer["type"], "unsubscribed");
    post_tweet(&app, &bob, "after").await;
    quiet(&mut carol_on_bob).await;
    let _ = alice_id;
}

async fn a_disabled_key_or_a_deleted_user_closes_the_socket(backend: Backend) {
    let app = spawn_app(backend).await;
    changes_close_sockets(&app, &app, &app).await;
}

/// Alice's socket (under a key of her own) on `alice_on` and Bob's on `bob_on`; the
/// operator deletes Bob through `admin`, and Bob's socket closes with 4001 while Alice's
/// stays open; then disables Alice's key, and hers closes too.
pub(crate) async fn changes_close_sockets(admin: &TestApp, alice_on: &TestApp, bob_on: &TestApp) {
    let (_, alice) = user(admin, "alice").await;
    let (bob_id, bob) = user(admin, "bob").await;
    let partner = PartnerKey::new(admin, json!({"name": "p"})).await;
    let issued = ticket_with(admin, &partner.client, &alice).await;
    let (mut alice_socket, _) =
        tokio_tungstenite::connect_async(ws_url(alice_on, issued["url"].as_str().expect("url")))
            .await
            .expect("open");
    let mut bob_socket = connect(bob_on, &bob).await;

    let deleted = admin
        .http
        .delete(admin.url(&format!("/admin/v1/users/{bob_id}")))
        .header("authorization", admin.admin_authorization())
        .send()
        .await
        .expect("delete user");
    assert_eq!(deleted.status(), 204);
    assert_eq!(closed(&mut bob_socket).await.0, CloseCode::from(4001));
    // Another key's socket stays open.
    assert_eq!(
        ask(&mut alice_socket, json!({"action": "ping"})).await["type"],
        "pong"
    );

    let disabled = admin
        .http
        .patch(admin.url(&format!("/admin/v1/api-keys/{}", partner.id())))
        .header("authorization", admin.admin_authorization())
        .json(&json!({"enabled": false}))
        .send()
        .await
        .expect("disable");
    assert_eq!(disabled.status(), 200);
    let (code, reason) = closed(&mut alice_socket).await;
    assert_eq!(code, CloseCode::from(4001));
    assert!(reason.contains("key"), "{reason}");
}

async fn a_client_past_its_rate_gets_throttled_errors(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, bearer) = user(&app, "alice").await;
    let mut socket = connect(&app, &bearer).await;
    // A burst of 20 is allowed; the rest of 30 sent at once is refused with 429s (a token
    // comes back every 100 ms, so a slow moment in between may let one or two through).
    for n in 0..30 {
        send(&mut socket, json!({"action": "ping", "id": n.to_string()})).await;
    }
    let mut answers = Vec::new();
    for _ in 0..30 {
        answers.push(next(&mut socket).await);
    }
    assert!(
        answers[..20].iter().all(|answer| answer["type"] == "pong"),
        "the burst is answered: {answers:?}"
    );
    let throttled: Vec<&Value> = answers[20..]
        .iter()
        .filter(|answer| answer["type"] == "error")
        .collect();
    assert!(
        throttled.len() >= 7,
        "{} of the last 10 throttled",
        throttled.len()
    );
    for refused in throttled {
        assert_eq!(refused["problem"]["status"], 429);
        assert_eq!(refused["problem"]["code"], "throttled");
    }
    // Tokens come back: after a pause the socket is answered again.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        ask(&mut socket, json!({"action": "ping"})).await["type"],
        "pong"
    );
}

/// Every message until none comes for a moment.
async fn drain(socket: &mut Socket) -> Vec<Value> {
    let mut messages = Vec::new();
    while let Ok(Some(Ok(frame))) =
        tokio::time::timeout(Duration::from_millis(700), socket.next()).await
    {
        match frame {
            Message::Text(text) => messages.push(serde_json::from_str(&text).expect("JSON")),
            Message::Close(close) => panic!("closed: {close:?} after {messages:?}"),
            _ => {}
        }
    }
    messages
}

/// Subscribing with `since` while the author keeps posting: each topic gets every tweet
/// after `since` exactly once, in order, the replay before `subscribed` and the live ones
/// after it, whatever the timing of the switch.
async fn replay_then_live_misses_and_repeats_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let (bob_id, bob) = user(&app, "bob").await;
    let (_, alice) = user(&app, "alice").await;
    follow(&app, &alice, &bob_id, true).await;
    let since = post_tweet(&app, &bob, "seen already").await;
    for n in 0..5 {
        post_tweet(&app, &bob, &format!("missed {n}")).await;
    }
    // Two sockets for each topic, subscribing at different moments of the posting.
    let topics = ["home".to_owned(), format!("user:{bob_id}")];
    let mut sockets = Vec::new();
    for _ in 0..2 {
        for _ in &topics {
            sockets.push(connect(&app, &alice).await);
        }
    }

    let (http, url, bearer) = (app.http.clone(), app.url("/v1/tweets"), bob.clone());
    let poster = tokio::spawn(async move {
        for n in 0..40 {
            let response = http
                .post(&url)
                .header("authorization", &bearer)
                .json(&json!({"text": format!("live {n}")}))
                .send()
                .await
                .expect("post");
            assert_eq!(response.status(), 201);
        }
    });
    for (round, pair) in sockets.chunks_mut(2).enumerate() {
        tokio::time::sleep(Duration::from_millis(if round == 0 { 20 } else { 150 })).await;
        for (socket, topic) in pair.iter_mut().zip(&topics) {
            send(
                socket,
                json!({"action": "subscribe", "topic": topic, "since": since}),
            )
            .await;
        }
    }
    poster.await.expect("posted");

    let listed = app
        .get_json(&format!("/v1/users/{bob_id}/tweets?limit=100"), None)
        .await;
    let mut expected: Vec<String> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|tweet| tweet["id"].as_str().expect("id").to_owned())
        .take_while(|id| *id != since)
        .collect();
    expected.reverse();
    assert_eq!(expected.len(), 45);
    for (n, socket) in sockets.iter_mut().enumerate() {
        let messages = drain(socket).await;
        let received: Vec<String> = messages
            .iter()
            .filter(|m| m["type"] == "tweet.created")
            .map(|m| m["data"]["id"].as_str().expect("id").to_owned())
            .collect();
        assert_eq!(
            received, expected,
            "socket {n}: every tweet after `since`, once, in order: {messages:?}"
        );
        let subscribed = messages
            .iter()
            .position(|m| m["type"] == "subscribed")
            .expect("subscribed");
        let replayed = &messages[subscribed]["replayed"];
        assert_eq!(
            replayed,
            &json!(subscribed),
            "the replay comes before `subscribed`"
        );
        assert!(
            subscribed >= 5,
            "at least the five missed ones were replayed"
        );
        assert_eq!(messages[subscribed]["truncated"], false);
    }
}

on_every_backend!(
    replay_then_live_misses_and_repeats_nothing,
    a_client_past_its_rate_gets_throttled_errors,
    a_ticket_opens_one_stream,
    every_message_is_routed_or_refused_with_its_violations,
    tweets_reach_the_homes_and_user_topics_that_follow_them,
    a_disabled_key_or_a_deleted_user_closes_the_socket,
);

/// On SIGTERM, once the drain period is over, every socket is closed with 1001 (going
/// away) and the process still exits at once.
#[tokio::test]
async fn stopping_closes_every_socket_with_going_away() {
    let app = spawn_app(Backend::Sqlite).await;
    let (_, bearer) = user(&app, "alice").await;
    let server = app.start_child_with_env("info", &[("MINITTER_DRAIN_SECONDS", "1")]);
    let mut socket = connect(&server.app, &bearer).await;
    subscribe(&mut socket, "home").await;

    let signalled = std::time::Instant::now();
    server.signal(nix::sys::signal::Signal::SIGTERM);
    let (code, reason) = closed(&mut socket).await;
    assert_eq!(code, CloseCode::Away);
    assert!(reason.contains("reconnect"), "{reason}");
    let (status, _, logs) = server.exit(signalled, Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}: {logs}");
}

/// The spec of the stream is served as written.
#[tokio::test]
async fn the_asyncapi_document_is_served() {
    let app = spawn_app(Backend::Sqlite).await;
    let response = app
        .http
        .get(app.url("/asyncapi.yaml"))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("text");
    assert_eq!(text, include_str!("../../../asyncapi.yaml"));
}
