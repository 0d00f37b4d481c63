//! Receiving a Minitter webhook: verify the delivery, then read its event.
//!
//! Needs no server and no network: the delivery is made here, in memory, signed as
//! Minitter signs it, and handed to `receive` as a web framework would hand over a
//! request (its headers and its raw body). `examples/run-against-server.sh` runs it with
//! the others; it ignores the server it is given.

use http::{HeaderMap, HeaderValue, StatusCode};
use minitter_client::webhooks::{VerifyError, WebhookVerifier};
use serde::Deserialize;

/// The envelope of every event; `data` depends on `type`.
#[derive(Debug, Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    timestamp: chrono::DateTime<chrono::Utc>,
    data: serde_json::Value,
}

/// The receiver's handler: what an axum or poem route would call with the request's
/// `HeaderMap` and body bytes.
fn receive(verifier: &WebhookVerifier, headers: &HeaderMap, body: &[u8]) -> StatusCode {
    let event: Event = match verifier.verify_event(headers, body) {
        Ok(event) => event,
        // Not from Minitter, altered, or replayed: refuse it and act on nothing.
        Err(VerifyError::Json(error)) => {
            eprintln!("a genuine event of an unknown shape: {error}");
            return StatusCode::UNPROCESSABLE_ENTITY;
        }
        Err(error) => {
            eprintln!("refused: {error}");
            return StatusCode::BAD_REQUEST;
        }
    };
    // `webhook-id` is the same on every retry of this event: process each id once.
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    match event.kind.as_str() {
        "tweet.created" => println!(
            "{id}: new tweet {} at {}",
            event.data["text"], event.timestamp
        ),
        "webhook.ping" => println!("{id}: ping"),
        other => println!("{id}: {other}, not handled here"),
    }
    StatusCode::NO_CONTENT
}

/// A delivery as Minitter sends it, signed with each of `secrets` (two during a
/// rotation). The `standardwebhooks` crate stands in for the server here.
fn deliver(secrets: &[&str], id: &str, timestamp: i64, body: &[u8]) -> HeaderMap {
    let signatures: Vec<String> = secrets
        .iter()
        .map(|secret| {
            standardwebhooks::Webhook::new(secret)
                .expect("a valid secret")
                .sign(id, timestamp, body)
                .expect("a UTF-8 body")
        })
        .collect();
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        headers.insert(name, HeaderValue::from_str(&value).expect("a header value"));
    };
    set("webhook-id", id.to_owned());
    set("webhook-timestamp", timestamp.to_string());
    set("webhook-signature", signatures.join(" "));
    set("content-type", "application/json".to_owned());
    headers
}

fn main() {
    // The subscription's secret, as `create_webhook` returned it (keep it in your
    // secret store, not in code).
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let verifier = WebhookVerifier::new(secret).expect("a valid secret");

    let now = chrono::Utc::now();
    let body = format!(
        r#"{{"type":"tweet.created","timestamp":"{}","data":{{"id":"01936c4e-7a9b-7cc3-a2d5-4f0e8c1b2a3d","text":"Hello, Minitter!"}}}}"#,
        now.to_rfc3339()
    );
    let headers = deliver(
        &[secret],
        "msg_01JF3Q7ZK9",
        now.timestamp(),
        body.as_bytes(),
    );
    assert_eq!(
        receive(&verifier, &headers, body.as_bytes()),
        StatusCode::NO_CONTENT
    );

    // Altered on the way: refused.
    let altered = body.replace("Hello", "Goodbye");
    assert_eq!(
        receive(&verifier, &headers, altered.as_bytes()),
        StatusCode::BAD_REQUEST
    );

    // Replayed ten minutes later: refused (the tolerance is five minutes).
    let old = deliver(
        &[secret],
        "msg_01JF3Q7ZK9",
        now.timestamp() - 600,
        body.as_bytes(),
    );
    assert_eq!(
        receive(&verifier, &old, body.as_bytes()),
        StatusCode::BAD_REQUEST
    );

    // During a rotation Minitter signs with both secrets, and a receiver that knows either
    // accepts; a receiver can also hold both while it switches over.
    let rotated = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let ping = format!(
        r#"{{"type":"webhook.ping","timestamp":"{}","data":{{}}}}"#,
        now.to_rfc3339()
    );
    let both = deliver(
        &[secret, rotated],
        "msg_01JF3QA1B2",
        now.timestamp(),
        ping.as_bytes(),
    );
    assert_eq!(
        receive(&verifier, &both, ping.as_bytes()),
        StatusCode::NO_CONTENT
    );
    let switching = WebhookVerifier::with_secrets([secret, rotated]).expect("valid secrets");
    let new_only = deliver(
        &[rotated],
        "msg_01JF3QC3D4",
        now.timestamp(),
        ping.as_bytes(),
    );
    assert_eq!(
        receive(&switching, &new_only, ping.as_bytes()),
        StatusCode::NO_CONTENT
    );

    println!("done: webhooks verified");
}
