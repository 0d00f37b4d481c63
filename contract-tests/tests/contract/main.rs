//! Contract tests: every operation of `openapi.yaml`, driven through the generated Rust
//! SDK against a live server, for its success status and each declared error status;
//! every response the server sent is then checked against the document.
//!
//! `uncovered.txt` lists the (operationId, status) pairs not exercised yet. It may only
//! shrink: the test fails if a listed pair is exercised, or if an unlisted one is not.
//!
//! A few statuses cannot be produced through the SDK, because its types refuse the input
//! before anything is sent (a path id that is not a UUID, an empty tweet, an oversized
//! body, a wrong content type). Those requests are sent raw, with reqwest, and are
//! checked the same way.

mod harness;
mod scenarios;
mod spec;

use std::collections::BTreeSet;

use harness::TestServer;
use minitter_test_support::{Backend, on_every_backend};
use spec::Contract;

/// The whole contract, once per database backend.
async fn every_operation_answers_as_the_spec_declares(backend: Backend) {
    let server = TestServer::start(backend).await;

    let ctx = scenarios::Context::new(&server).await;
    scenarios::health(&ctx).await;
    scenarios::users(&ctx).await;
    scenarios::auth(&ctx).await;
    scenarios::follows(&ctx).await;
    scenarios::tweets(&ctx).await;
    scenarios::pictures(&ctx).await;
    scenarios::admin(&ctx).await;
    scenarios::gateway(&ctx).await;
    scenarios::usage(&ctx).await;
    scenarios::conditional_gets(&ctx).await;
    scenarios::metrics(&ctx).await;
    // Last: it closes the database.
    scenarios::unavailable(&ctx).await;

    check_against_spec(&server);
}

on_every_backend!(every_operation_answers_as_the_spec_declares);

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
