//! Contract tests: every operation of `openapi.yaml`, driven through the generated Rust
//! SDK against a live server, for its success status and each declared error status;
//! every response the server sent is then checked against the document.
//!
//! `uncovered.txt` lists the (operationId, status) pairs not exercised yet. It may only
//! shrink: the test fails if a listed pair is exercised, or if an unlisted one is not.
//!
//! A few statuses cannot be produced through the SDK, because its types refuse the input
//! before anything is sent (a path id that is not a UUID, an oversized body, a wrong
//! content type). Those requests are sent raw, with reqwest, and are checked the same way.

mod harness;
mod spec;

use std::collections::BTreeSet;

use minitter_client::{ProblemExt, types};
use reqwest::StatusCode;

use harness::TestServer;
use spec::Contract;

const PASSWORD: &str = "correct horse battery staple";

fn new_user(username: &str, email: &str) -> types::NewUser {
    types::NewUser {
        username: username.parse().expect("valid username"),
        email: email.parse().expect("valid email"),
        password: PASSWORD.parse().expect("valid password"),
        display_name: Some("Ada Lovelace".parse().expect("valid display name")),
    }
}

fn credentials(email: &str, password: &str) -> types::Credentials {
    types::Credentials {
        email: email.parse().expect("valid email"),
        password: password.parse().expect("valid password"),
    }
}

/// The status of an SDK error, and its problem's `code` when it has one.
fn refusal<T: std::fmt::Debug>(
    result: Result<T, minitter_client::Error<types::Problem>>,
) -> (u16, String) {
    let error = result.expect_err("the request should fail");
    let status = error.status().map(|s| s.as_u16()).unwrap_or_default();
    let code = error
        .problem()
        .map(|p| p.code.to_string())
        .unwrap_or_default();
    (status, code)
}

#[tokio::test]
async fn every_operation_answers_as_the_spec_declares() {
    let server = TestServer::start().await;
    let raw = reqwest::Client::new();
    let sdk = server.client();

    // health
    let health = sdk.get_health().send().await.expect("healthz");
    assert_eq!(health.status(), StatusCode::OK);
    let ready = sdk.get_readiness().send().await.expect("readyz");
    assert_eq!(ready.status(), StatusCode::OK);

    // sign_up
    let created = sdk
        .sign_up()
        .body(new_user("ada_l", "ada@example.com"))
        .send()
        .await
        .expect("sign up");
    assert_eq!(created.status(), StatusCode::CREATED);
    let location = created
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert_eq!(location, format!("/v1/users/{}", *created.id));
    let ada = created.into_inner();
    assert_eq!(ada.username.as_str(), "ada_l");
    assert_eq!(ada.display_name.as_str(), "Ada Lovelace");

    let duplicate = sdk
        .sign_up()
        .body(new_user("ada_2", "ADA@example.com"))
        .send()
        .await;
    assert_eq!(refusal(duplicate), (409, "conflict".to_owned()));
    let bad_email = sdk
        .sign_up()
        .body(new_user("bob_b", "not-an-email"))
        .send()
        .await;
    assert_eq!(refusal(bad_email), (400, "invalid_request".to_owned()));
    let url = format!("{}/v1/users", server.base_url);
    let too_large = raw
        .post(&url)
        .header("content-type", "application/json")
        .body(vec![b' '; 70_000]);
    assert_eq!(too_large.send().await.expect("send").status(), 413);
    let wrong_type = raw
        .post(&url)
        .header("content-type", "text/plain")
        .body("{}");
    assert_eq!(wrong_type.send().await.expect("send").status(), 415);

    // get_user
    let fetched = sdk
        .get_user()
        .user_id(ada.id.clone())
        .send()
        .await
        .expect("get user");
    assert_eq!(fetched.into_inner(), ada);
    let unknown = types::Id(uuid::Uuid::now_v7());
    assert_eq!(
        refusal(sdk.get_user().user_id(unknown).send().await),
        (404, "not_found".to_owned())
    );
    let not_a_uuid = raw
        .get(format!("{}/v1/users/not-a-uuid", server.base_url))
        .send()
        .await;
    assert_eq!(not_a_uuid.expect("send").status(), 400);

    // create_token
    let token = sdk
        .create_token()
        .body(credentials("ada@example.com", PASSWORD))
        .send()
        .await
        .expect("log in")
        .into_inner();
    assert_eq!(token.token_type, types::AccessTokenTokenType::Bearer);
    let wrong = sdk
        .create_token()
        .body(credentials("ada@example.com", "wrong password"))
        .send()
        .await;
    assert_eq!(refusal(wrong), (401, "unauthorized".to_owned()));
    let invalid = sdk
        .create_token()
        .body(credentials("nobody", PASSWORD))
        .send()
        .await;
    assert_eq!(refusal(invalid), (400, "invalid_request".to_owned()));
    let url = format!("{}/v1/auth/token", server.base_url);
    let too_large = raw
        .post(&url)
        .header("content-type", "application/json")
        .body(vec![b' '; 70_000]);
    assert_eq!(too_large.send().await.expect("send").status(), 413);
    let wrong_type = raw
        .post(&url)
        .header("content-type", "application/xml")
        .body("<a/>");
    assert_eq!(wrong_type.send().await.expect("send").status(), 415);

    // get_me
    let me = server
        .client_with_token(&token.access_token)
        .get_me()
        .send()
        .await
        .expect("me")
        .into_inner();
    assert_eq!(
        (me.id, me.email.as_str()),
        (ada.id.clone(), "ada@example.com")
    );
    assert_eq!(
        refusal(sdk.get_me().send().await),
        (401, "unauthorized".to_owned())
    );

    // Every operation that needs the database answers 503 once it is gone.
    server.state.store.close().await;
    let unavailable = (503, "unavailable".to_owned());
    assert_eq!(refusal(sdk.get_readiness().send().await), unavailable);
    assert_eq!(
        refusal(
            sdk.sign_up()
                .body(new_user("cy_c", "cy@example.com"))
                .send()
                .await
        ),
        unavailable
    );
    assert_eq!(
        refusal(sdk.get_user().user_id(ada.id.clone()).send().await),
        unavailable
    );
    let login = sdk
        .create_token()
        .body(credentials("ada@example.com", PASSWORD))
        .send()
        .await;
    assert_eq!(refusal(login), unavailable);
    let me = server
        .client_with_token(&token.access_token)
        .get_me()
        .send()
        .await;
    assert_eq!(refusal(me), unavailable);

    check_against_spec(&server);
}

fn check_against_spec(server: &TestServer) {
    let contract = Contract::load();
    let mut exercised = BTreeSet::new();
    let mut failures = Vec::new();
    for exchange in server.exchanges() {
        match contract.check(&exchange) {
            Ok(Some(pair)) => {
                exercised.insert(pair);
            }
            Ok(None) => {}
            Err(problems) => failures.extend(problems),
        }
    }
    assert!(
        failures.is_empty(),
        "responses break the spec:\n{}",
        failures.join("\n")
    );

    let not_exercised: BTreeSet<String> = contract
        .declared()
        .difference(&exercised)
        .map(|(op, status)| format!("{op} {status}"))
        .collect();
    let listed_text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/uncovered.txt"))
            .expect("contract-tests/uncovered.txt");
    let listed: BTreeSet<String> = listed_text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect();
    let newly_covered: Vec<&String> = listed.difference(&not_exercised).collect();
    let not_listed: Vec<&String> = not_exercised.difference(&listed).collect();
    assert!(
        newly_covered.is_empty() && not_listed.is_empty(),
        "contract-tests/uncovered.txt is wrong.\nExercised now, remove them: {newly_covered:?}\n\
         Not exercised, cover them (or list them): {not_listed:?}"
    );
}
