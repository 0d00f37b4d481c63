//! `minitter-server`: the Minitter API, implemented from the generated contract.
//!
//! `openapi.yaml` is the source of truth. `generated/` is produced from it by `codegen`
//! (never edited); `handlers/` implements its `Api` trait; `startup` assembles the app.

pub mod admin_cli;
pub mod auth;
pub mod blob;
pub mod bootstrap;
pub mod cache;
pub mod compression;
pub mod config;
pub mod docs;
pub mod error;
pub mod etag;
pub mod events;
pub mod gateway;
#[rustfmt::skip]
pub mod generated;
pub mod handlers;
pub mod login;
pub mod metrics;
pub mod otel;
pub mod pagination;
pub mod profiles;
pub mod request_limits;
pub mod response_cache;
pub mod security_headers;
pub mod serve;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod timeline;
