//! Logging in, and every way a bearer token can be bad (RFC 8725).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{EncodingKey, Header, encode, get_current_timestamp};
use serde_json::{Value, json};

use minitter_test_support::{Backend, on_every_backend};

use crate::helpers::{PASSWORD, TestApp, assert_problem, spawn_app};

async fn app_with_user(backend: Backend) -> (TestApp, String) {
    let app = spawn_app(backend).await;
    let id = app.sign_up("ada_l", "ada@example.com").await;
    (app, id)
}

fn claims(sub: &str) -> Value {
    let now = get_current_timestamp();
    json!({"sub": sub, "iss": "minitter", "aud": "minitter-api", "iat": now, "exp": now + 600})
}

fn sign(claims: &Value, secret: &str) -> String {
    encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

async fn assert_refused(app: &TestApp, token: &str) {
    let response = app.get_me(Some(&format!("Bearer {token}"))).await;
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    assert_problem(response, 401, "unauthorized").await;
}

async fn a_logged_in_user_sees_their_private_profile(backend: Backend) {
    let (app, id) = app_with_user(backend).await;
    let token = app.log_in("ADA@example.com").await;

    let response = app.get_me(Some(&format!("Bearer {token}"))).await;

    assert_eq!(response.status(), 200);
    let me: Value = response.json().await.expect("json");
    assert_eq!(me["id"], id.as_str());
    assert_eq!(me["email"], "ada@example.com");
}

async fn the_token_says_who_for_how_long_and_by_whom(backend: Backend) {
    let (app, id) = app_with_user(backend).await;
    let token = app.log_in("ada@example.com").await;
    let payload = token.split('.').nth(1).expect("payload");
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64")).expect("json");
    assert_eq!(claims["sub"], id.as_str());
    assert_eq!(claims["iss"], "minitter");
    assert_eq!(claims["aud"], "minitter-api");
    let lifetime = claims["exp"].as_u64().expect("exp") - claims["iat"].as_u64().expect("iat");
    assert_eq!(lifetime, 3600);
}

async fn a_wrong_password_and_an_unknown_email_get_the_same_401(backend: Backend) {
    let (app, _) = app_with_user(backend).await;
    let wrong_password = json!({"email": "ada@example.com", "password": "not the password"});
    let unknown_email = json!({"email": "bob@example.com", "password": "not the password"});

    let a = assert_problem(
        app.post_json("/v1/auth/token", &wrong_password).await,
        401,
        "unauthorized",
    )
    .await;
    let b = assert_problem(
        app.post_json("/v1/auth/token", &unknown_email).await,
        401,
        "unauthorized",
    )
    .await;
    assert_eq!(a["detail"], b["detail"]);
}

async fn a_missing_or_malformed_authorization_is_401(backend: Backend) {
    let (app, _) = app_with_user(backend).await;
    for authorization in [
        None,
        Some("Bearer"),
        Some("Bearer not.a.jwt"),
        Some("Basic YWRhOnB3"),
        Some("Bearer "),
    ] {
        let response = app.get_me(authorization).await;
        assert_problem(response, 401, "unauthorized").await;
    }
}

async fn alg_none_is_refused_in_any_spelling(backend: Backend) {
    let (app, id) = app_with_user(backend).await;
    let payload = URL_SAFE_NO_PAD.encode(claims(&id).to_string());
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = URL_SAFE_NO_PAD.encode(json!({"alg": alg, "typ": "JWT"}).to_string());
        assert_refused(&app, &format!("{header}.{payload}.")).await;
    }
}

async fn a_token_signed_with_another_key_is_refused(backend: Backend) {
    let (app, id) = app_with_user(backend).await;
    assert_refused(
        &app,
        &sign(&claims(&id), "another key that is also 32 bytes long"),
    )
    .await;
}

async fn an_expired_token_is_refused(backend: Backend) {
    let (app, id) = app_with_user(backend).await;
    let mut expired = claims(&id);
    let now = get_current_timestamp();
    expired["iat"] = json!(now - 3600);
    expired["exp"] = json!(now - 120);
    assert_refused(&app, &sign(&expired, &app.jwt_secret())).await;
}

async fn a_token_for_another_issuer_or_audience_is_refused(backend: Backend) {
    let (app, id) = app_with_user(backend).await;
    let secret = app.jwt_secret();
    // The right key with the right claims works, so the refusals below are about the claims.
    let response = app
        .get_me(Some(&format!("Bearer {}", sign(&claims(&id), &secret))))
        .await;
    assert_eq!(response.status(), 200);

    let mut other_issuer = claims(&id);
    other_issuer["iss"] = json!("someone-else");
    assert_refused(&app, &sign(&other_issuer, &secret)).await;

    let mut other_audience = claims(&id);
    other_audience["aud"] = json!("another-api");
    assert_refused(&app, &sign(&other_audience, &secret)).await;

    let mut no_expiry = claims(&id);
    no_expiry.as_object_mut().expect("object").remove("exp");
    assert_refused(&app, &sign(&no_expiry, &secret)).await;
}

async fn a_tampered_payload_is_refused(backend: Backend) {
    let (app, id) = app_with_user(backend).await;
    let other = app.sign_up("bob_b", "bob@example.com").await;
    let token = app.log_in("ada@example.com").await;
    let parts: Vec<&str> = token.split('.').collect();
    let forged_payload = URL_SAFE_NO_PAD.encode(claims(&other).to_string());
    assert_ne!(id, other);
    assert_refused(
        &app,
        &format!("{}.{}.{}", parts[0], forged_payload, parts[2]),
    )
    .await;
}

async fn failed_logins_are_throttled_per_account_and_a_success_forgives_them(backend: Backend) {
    let (app, _) = app_with_user(backend).await;
    app.sign_up("bob_b", "bob@example.com").await;
    let attempt = |email: &'static str, password: &'static str| {
        let body = json!({"email": email, "password": password});
        let app = &app;
        async move { app.post_json("/v1/auth/token", &body).await }
    };
    // Four failures, then the right password: the account starts afresh.
    for _ in 0..4 {
        assert_eq!(
            attempt("ada@example.com", "wrong password").await.status(),
            401
        );
    }
    assert_eq!(attempt("ada@example.com", PASSWORD).await.status(), 200);
    // Five failures are answered; the sixth attempt is refused unheard, even with the
    // right password, until the window ends.
    for _ in 0..5 {
        assert_eq!(
            attempt("ADA@example.com", "wrong password").await.status(),
            401
        );
    }
    let refused = attempt("ada@example.com", PASSWORD).await;
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(retry_after > 0);
    assert_problem(refused, 429, "login_throttled").await;
    // Other accounts are not affected.
    assert_eq!(attempt("bob@example.com", PASSWORD).await.status(), 200);
}

on_every_backend!(
    a_logged_in_user_sees_their_private_profile,
    the_token_says_who_for_how_long_and_by_whom,
    a_wrong_password_and_an_unknown_email_get_the_same_401,
    a_missing_or_malformed_authorization_is_401,
    alg_none_is_refused_in_any_spelling,
    a_token_signed_with_another_key_is_refused,
    an_expired_token_is_refused,
    a_token_for_another_issuer_or_audience_is_refused,
    a_tampered_payload_is_refused,
    failed_logins_are_throttled_per_account_and_a_success_forgives_them,
);
