//! Tag `stream`: the ticket that opens the realtime stream. (The stream itself is a
//! WebSocket specified in `asyncapi.yaml`; `server/tests/api/stream.rs` drives it.)

use crate::helpers::{Context, refusal, scenarios, status};

scenarios! {
    create_stream_ticket: ["create_stream_ticket 200 401"],
}

/// A logged-in user gets a one-time ticket and the stream's URL with it; without a
/// bearer token, 401.
async fn create_stream_ticket(ctx: &Context) {
    let ticket = ctx
        .as_ada
        .create_stream_ticket()
        .send()
        .await
        .expect("ticket")
        .into_inner();
    assert!(ticket.ticket.starts_with("st_"), "{}", ticket.ticket);
    assert_eq!(ticket.url, format!("/v1/stream?ticket={}", ticket.ticket));
    let lifetime = ticket.expires_at - chrono::Utc::now();
    assert!(
        (25..=30).contains(&lifetime.num_seconds()),
        "valid for 30 s: {lifetime}"
    );
    assert_eq!(
        refusal(ctx.anonymous.create_stream_ticket().send().await),
        status(401, "unauthorized")
    );
}
