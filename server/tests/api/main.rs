//! HTTP-level tests of the server, one module per area; all share `helpers::spawn_app`.

mod admin;
mod auth;
mod docs_and_encoding;
mod errors;
mod gateway;
mod helpers;
mod pictures;
mod social;
mod startup;
mod users;
