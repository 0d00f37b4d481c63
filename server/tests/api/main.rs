//! HTTP-level tests of the server, one module per area; all share `helpers::spawn_app`,
//! and most run once per database backend (`minitter_test_support::on_every_backend!`).

mod admin;
mod auth;
mod cluster;
mod deleted_users;
mod docs_and_encoding;
mod durability;
mod errors;
mod feeds;
mod gateway;
mod helpers;
mod ip_policies;
mod metrics;
mod otlp;
mod outbox;
mod pages;
mod picture_breaker;
mod pictures;
mod postgres;
mod response_cache;
mod social;
mod startup;
mod stopping;
mod stream;
mod stream_cluster;
mod stream_metering;
mod usage;
mod users;
mod version_header;
mod webhook_store;
mod webhooks;
