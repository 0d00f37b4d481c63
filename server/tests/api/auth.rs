//! Logging in, every way a bearer token can be bad (RFC 8725), and the login throttle.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::future::join_all;
use jsonwebtoken::{EncodingKey, Header, encode, get_current_timestamp};
use serde_json::{Value, json};
use uuid::Uuid;

use minitter_server::http::error::ApiError;
use minitter_server::infra::redis::SharedRedis;
use minitter_server::services::login::{Client, LoginGuard, LoginLimits};
use minitter_test_support::{Backend, on_every_backend, required_env};

use crate::helpers::{PASSWORD, TestApp, assert_problem, spawn_app, spawn_app_with};

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
);

// Login throttling (crate::services::login): budgets of wrong passwords per client, per account and
// per key, in sliding windows, counting outcomes only. Each test runs with the budgets in
// the server's process (on both databases) and in Redis (two instances sharing it), and
// uses emails of its own, since Redis outlives a test.

/// Where the servers keep the login budgets.
#[derive(Debug, Clone, Copy)]
enum Budgets {
    InProcess(Backend),
    Redis,
}

/// Turns each listed `async fn name(budgets: Budgets)` into `name::sqlite`, `name::postgres`
/// (budgets in the process) and `name::redis` (PostgreSQL and Redis).
macro_rules! on_every_budget_store {
    ($($test:ident),+ $(,)?) => {$(
        mod $test {
            use super::{Backend, Budgets};
            #[tokio::test]
            async fn sqlite() {
                super::$test(Budgets::InProcess(Backend::Sqlite)).await
            }
            minitter_test_support::postgres_test! {
                async fn postgres() {
                    super::$test(Budgets::InProcess(Backend::Postgres)).await
                }
            }
            minitter_test_support::cluster_test! {
                async fn redis() {
                    super::$test(Budgets::Redis).await
                }
            }
        }
    )+};
}

/// The servers of a test: one with budgets in its process, two sharing Redis (so that a
/// guesser gains nothing by spreading attempts over instances).
async fn servers(budgets: Budgets, per_client: u64, per_account: u64) -> Vec<TestApp> {
    let redis_url = match budgets {
        Budgets::Redis => Some(required_env("MINITTER_TEST_REDIS_URL")),
        Budgets::InProcess(_) => None,
    };
    let configure = |config: &mut minitter_server::config::Config| {
        config.login_max_failures_per_client = per_client;
        config.login_max_failures_per_account = per_account;
        config.redis_url = redis_url.clone().map(Into::into);
    };
    let backend = match budgets {
        Budgets::InProcess(backend) => backend,
        Budgets::Redis => Backend::Postgres,
    };
    let first = spawn_app_with(backend, configure).await;
    let mut servers = vec![];
    if redis_url.is_some() {
        servers.push(first.sibling(configure).await);
    }
    servers.insert(0, first);
    servers
}

/// An email no other test (or earlier run, in Redis) has used.
fn fresh_email(name: &str) -> String {
    format!("{name}-{}@example.com", Uuid::now_v7().simple())
}

/// A client with the key `app` uses, whose requests come from `source` (any 127/8
/// address is this machine): to the server, another client.
fn client_at(app: &TestApp, source: [u8; 4]) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-api-key", app.api_key.parse().expect("a header value"));
    reqwest::Client::builder()
        .default_headers(headers)
        .local_address(IpAddr::from(source))
        .build()
        .expect("http client")
}

async fn log_in(
    client: &reqwest::Client,
    app: &TestApp,
    email: &str,
    password: &str,
) -> reqwest::Response {
    client
        .post(app.url("/v1/auth/token"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .expect("request")
}

/// The statuses of `responses`, and checks that every 429 says when to retry.
fn statuses(responses: Vec<reqwest::Response>) -> Vec<u16> {
    responses
        .into_iter()
        .map(|response| {
            let status = response.status().as_u16();
            if status == 429 {
                let retry_after: u64 = response.headers()["retry-after"]
                    .to_str()
                    .expect("ascii")
                    .parse()
                    .expect("seconds");
                assert!(
                    (1..=900).contains(&retry_after),
                    "Retry-After {retry_after}"
                );
            }
            status
        })
        .collect()
}

async fn an_attackers_guesses_do_not_lock_the_owner_out(budgets: Budgets) {
    let servers = servers(budgets, 3, 10).await;
    let owner = fresh_email("ada");
    servers[0].sign_up("ada_l", &owner).await;
    // The attacker uses the same partner's key as the owner, from another address.
    let attacker = client_at(&servers[0], [127, 0, 0, 2]);

    let mut attempts = vec![];
    for n in 0..6 {
        let server = &servers[n % servers.len()];
        attempts.push(log_in(&attacker, server, &owner, "a wrong guess").await);
    }
    // Three guesses heard; the rest refused unheard, the right password too.
    assert_eq!(statuses(attempts), [401, 401, 401, 429, 429, 429]);
    let refused = log_in(
        &attacker,
        servers.last().expect("a server"),
        &owner,
        PASSWORD,
    )
    .await;
    assert_problem(refused, 429, "login_throttled").await;

    // The owner logs in, on every instance, and has a budget of their own for typos.
    for server in &servers {
        assert_eq!(
            log_in(&server.http, server, &owner, PASSWORD)
                .await
                .status(),
            200
        );
    }
    assert_eq!(
        log_in(
            &servers[0].http,
            &servers[0],
            &owner,
            "a typo in the password"
        )
        .await
        .status(),
        401
    );
    // The attacker's client is refused on this account only.
    let other = fresh_email("bob");
    servers[0].sign_up("bob_b", &other).await;
    assert_eq!(
        log_in(&attacker, &servers[0], &other, PASSWORD)
            .await
            .status(),
        200
    );
}

async fn an_attacker_with_many_clients_gets_no_more_hashed_guesses_than_the_account_bound(
    budgets: Budgets,
) {
    let servers = servers(budgets, 2, 5).await;
    let owner = fresh_email("ada");
    servers[0].sign_up("ada_l", &owner).await;
    // Six clients, four guesses each, all at once: no outcome is known before the burst is
    // in, so only reservations can keep it within the bounds.
    let clients: Vec<reqwest::Client> = (2..8)
        .map(|last| client_at(&servers[0], [127, 0, 0, last]))
        .collect();
    let guesses = (0..24).map(|n| {
        let (client, server) = (&clients[n % 6], &servers[n % servers.len()]);
        log_in(client, server, &owner, "a wrong guess")
    });
    let statuses = statuses(join_all(guesses).await);

    // A 401 is a hashed guess: the account's five, from no client more than two.
    let heard = statuses.iter().filter(|&&status| status == 401).count();
    assert_eq!(heard, 5, "{statuses:?}");
    assert!(
        statuses
            .iter()
            .all(|&status| status == 401 || status == 429)
    );
    for client in 0..6 {
        let by_client = (client..24)
            .step_by(6)
            .filter(|&n| statuses[n] == 401)
            .count();
        assert!(
            by_client <= 2,
            "client {client} was heard {by_client} times"
        );
    }
    // The bound is the account's: now every client is refused, the owner's too.
    let owner_response = log_in(&servers[0].http, &servers[0], &owner, PASSWORD).await;
    assert_problem(owner_response, 429, "login_throttled").await;
}

async fn concurrent_correct_logins_all_succeed(budgets: Budgets) {
    let servers = servers(budgets, 2, 4).await;
    let owner = fresh_email("ada");
    servers[0].sign_up("ada_l", &owner).await;
    // Eight at once from one client with a budget of two: each holds a slot while its
    // hash runs, the others wait for it, and a success gives its slot back.
    let logins = (0..8).map(|n| {
        let server = &servers[n % servers.len()];
        log_in(&server.http, server, &owner, PASSWORD)
    });
    assert_eq!(statuses(join_all(logins).await), [200; 8]);
    // Successes counted nothing: the client still has its two wrong guesses.
    let mut after = vec![];
    for _ in 0..3 {
        after.push(
            log_in(
                &servers[0].http,
                &servers[0],
                &owner,
                "a typo in the password",
            )
            .await,
        );
    }
    assert_eq!(statuses(after), [401, 401, 429]);
}

on_every_budget_store!(
    an_attackers_guesses_do_not_lock_the_owner_out,
    an_attacker_with_many_clients_gets_no_more_hashed_guesses_than_the_account_bound,
    concurrent_correct_logins_all_succeed,
);

// The guard itself, in the process and in Redis, with windows and leases short enough to
// watch them end.

/// Turns each listed `async fn name(redis: Option<SharedRedis>)` into `name::in_process`
/// and `name::redis`.
macro_rules! on_both_budget_stores {
    ($($test:ident),+ $(,)?) => {$(
        mod $test {
            #[tokio::test]
            async fn in_process() {
                super::$test(None).await
            }
            minitter_test_support::cluster_test! {
                async fn redis() {
                    super::$test(Some(super::shared_redis().await)).await
                }
            }
        }
    )+};
}

async fn shared_redis() -> SharedRedis {
    SharedRedis::connect(&required_env("MINITTER_TEST_REDIS_URL"))
        .await
        .expect("redis")
}

fn guard(
    redis: Option<&SharedRedis>,
    per_client: u64,
    window: Duration,
    lease: Duration,
) -> LoginGuard {
    let limits = LoginLimits {
        per_client,
        per_account: 100,
        per_key: 1000,
        window,
        lease,
    };
    LoginGuard::new(limits, redis)
}

/// Makes `n` wrong guesses at `email` from `client`; returns how many were heard.
async fn guesses(guard: &LoginGuard, email: &str, client: Client, n: usize) -> usize {
    let mut heard = 0;
    for _ in 0..n {
        match guard.begin(email, client).await {
            Ok(attempt) => {
                heard += 1;
                attempt.failed().await.expect("counted");
            }
            Err(ApiError::LoginThrottled { .. }) => {}
            Err(other) => panic!("not a throttle: {other:?}"),
        }
    }
    heard
}

fn some_client() -> Client {
    Client {
        key: Uuid::now_v7(),
        address: Some(IpAddr::from([192, 0, 2, 1])),
    }
}

/// Sleeps until `offset` after `start`.
async fn at(start: Instant, offset: Duration) {
    tokio::time::sleep_until((start + offset).into()).await;
}

async fn the_window_slides_so_no_edge_lets_twice_the_limit_through(redis: Option<SharedRedis>) {
    let window = Duration::from_secs(2);
    let guard = guard(redis.as_ref(), 3, window, Duration::from_secs(60));
    let (email, client) = (fresh_email("ada"), some_client());
    let start = Instant::now();
    assert_eq!(guesses(&guard, &email, client, 1).await, 1);
    at(start, Duration::from_millis(1200)).await;
    assert_eq!(guesses(&guard, &email, client, 5).await, 2);
    // Past the first guess's window: a fixed window would start afresh and hear three.
    at(start, Duration::from_millis(2400)).await;
    assert_eq!(guesses(&guard, &email, client, 5).await, 1);
    // Refused until the guesses at 1.2 s leave the window, then heard again.
    match guard.begin(&email, client).await {
        Err(ApiError::LoginThrottled { retry_after }) => assert!(retry_after <= 1),
        other => panic!("expected a 429, got {other:?}", other = other.map(|_| ())),
    }
    at(start, Duration::from_millis(3400)).await;
    assert_eq!(guesses(&guard, &email, client, 5).await, 2);
}

async fn a_late_success_never_makes_room_for_extra_guesses(redis: Option<SharedRedis>) {
    let (window, lease) = (Duration::from_millis(600), Duration::from_millis(300));
    let guard = guard(redis.as_ref(), 2, window, lease);
    let (email, client) = (fresh_email("ada"), some_client());
    // A login whose outcome comes after its lease ended and its window passed: in Redis,
    // every key of the budget has expired by then.
    let slow = guard.begin(&email, client).await.expect("heard");
    tokio::time::sleep(lease + window + Duration::from_millis(200)).await;
    slow.succeeded().await.expect("released");
    assert_eq!(guesses(&guard, &email, client, 5).await, 2);

    // A login whose lease ended (taken for a failure) but whose success comes in the
    // window: it gives back its own failure, and nothing more.
    tokio::time::sleep(window + Duration::from_millis(100)).await;
    let lost = guard.begin(&email, client).await.expect("heard");
    tokio::time::sleep(lease + Duration::from_millis(100)).await;
    assert_eq!(guesses(&guard, &email, client, 1).await, 1, "one slot left");
    lost.succeeded().await.expect("released");
    assert_eq!(guesses(&guard, &email, client, 5).await, 1);
}

async fn a_lost_attempt_counts_as_a_failure_once(redis: Option<SharedRedis>) {
    let lease = Duration::from_millis(300);
    let guard = guard(redis.as_ref(), 3, Duration::from_secs(60), lease);
    let (email, client) = (fresh_email("ada"), some_client());
    let lost = guard.begin(&email, client).await.expect("heard");
    tokio::time::sleep(lease + Duration::from_millis(100)).await;
    // Its lease has ended: the next attempt finds it a failure, and has one slot after it.
    assert_eq!(guesses(&guard, &email, client, 1).await, 1);
    // Its failure, reported late, is not counted twice: one slot is left.
    lost.failed().await.expect("counted");
    assert_eq!(guesses(&guard, &email, client, 5).await, 1);
}

on_both_budget_stores!(
    the_window_slides_so_no_edge_lets_twice_the_limit_through,
    a_late_success_never_makes_room_for_extra_guesses,
    a_lost_attempt_counts_as_a_failure_once,
);
