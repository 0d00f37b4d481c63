//! Tag `auth`: logging in and the logged-in user.

use minitter_client::types;

use crate::helpers::{Context, PASSWORD, credentials, refusal, scenarios, status};

scenarios! {
    log_in: ["log_in 200 400 401 413 415"],
    get_me: ["get_me 200 401"],
}

/// Good credentials get a bearer token; a wrong password 401; a malformed email 400.
async fn log_in(ctx: &Context) {
    let sdk = &ctx.anonymous;
    let token = sdk
        .log_in()
        .body(credentials("ada@example.com", PASSWORD))
        .send()
        .await
        .expect("log in");
    assert_eq!(token.into_inner().token_type, types::TokenType::Bearer);
    let wrong = sdk
        .log_in()
        .body(credentials("ada@example.com", "wrong password"))
        .send()
        .await;
    assert_eq!(refusal(wrong), status(401, "unauthorized"));
    let invalid = sdk
        .log_in()
        .body(credentials("nobody", PASSWORD))
        .send()
        .await;
    assert_eq!(refusal(invalid), status(400, "invalid_request"));
    ctx.oversized_and_mistyped("/v1/auth/token").await;
}

/// The logged-in user sees their own profile with their email; nobody else gets one.
async fn get_me(ctx: &Context) {
    let me = ctx.as_ada.get_me().send().await.expect("me").into_inner();
    assert_eq!(
        (me.id, me.email.as_str()),
        (ctx.ada.id.clone(), "ada@example.com")
    );
    assert_eq!(
        refusal(ctx.anonymous.get_me().send().await),
        status(401, "unauthorized")
    );
}
