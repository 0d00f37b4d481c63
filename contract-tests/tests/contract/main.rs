//! Contract tests: every operation of `openapi.yaml`, driven through the generated Rust
//! SDK against a live server, for its success status and each declared error status;
//! every response the server sent is then checked against the document.
//!
//! The scenarios are grouped in one file per tag of the document (`admin/` has one file
//! per resource), plus three that cut across tags: the gateway's refusals
//! (`gateway.rs`), conditional GETs (`conditional.rs`) and the database going away
//! (`unavailable.rs`). Each scenario is a test of its own, once per database backend
//! (`users::sign_up::sqlite`, `users::sign_up::postgres`), with a server and a database
//! of its own, so one failure hides no other and they run in parallel. `helpers.rs` has
//! what they share; `harness.rs` the recording server; `spec.rs` the check of an exchange
//! against the document.
//!
//! Every (operationId, status) pair the document declares must be exercised by some
//! scenario, or listed in `uncovered.txt` (which may only shrink). How that is checked
//! when every scenario runs alone is in [`coverage`].
//!
//! A few statuses cannot be produced through the SDK, because its types refuse the input
//! before anything is sent (a path id that is not a UUID, an empty tweet, an oversized
//! body, a wrong content type). Those requests are sent raw, with reqwest, and are
//! checked the same way.

mod coverage;
mod harness;
mod helpers;
mod spec;

mod admin;
mod auth;
mod conditional;
mod follows;
mod gateway;
mod health;
mod observability;
mod pictures;
mod stream;
mod tweets;
mod unavailable;
mod usage;
mod users;
mod webhooks;

/// Every scenario, with what it claims to exercise.
pub const ALL: &[&[coverage::Scenario]] = &[
    health::SCENARIOS,
    observability::SCENARIOS,
    users::SCENARIOS,
    auth::SCENARIOS,
    follows::SCENARIOS,
    tweets::SCENARIOS,
    pictures::SCENARIOS,
    usage::SCENARIOS,
    webhooks::SCENARIOS,
    stream::SCENARIOS,
    admin::usage_plans::SCENARIOS,
    admin::api_keys::SCENARIOS,
    admin::users::SCENARIOS,
    admin::usage_report::SCENARIOS,
    gateway::SCENARIOS,
    conditional::SCENARIOS,
    unavailable::SCENARIOS,
];
