//! `minitter-server`: the Minitter API, implemented from the generated contract.
//!
//! `openapi.yaml` is the source of truth. `generated/` is produced from it by `codegen`
//! (never edited); `handlers/` implements its `Api` trait; `startup` assembles the app.
//!
//! The folders are the layers, and dependencies point down them only (checked by a test,
//! `layers.rs`; drawn in `docs/architecture.md`):
//! the composition root (`startup`, `config`, `bootstrap`, `admin_cli`) → `handlers` →
//! `state` → `services` → `http` → `infra` → `domain`.

pub mod admin_cli;
pub mod bootstrap;
pub mod config;
pub mod domain;
#[rustfmt::skip]
pub mod generated;
pub mod handlers;
pub mod http;
pub mod infra;
pub mod services;
pub mod startup;
pub mod state;
pub mod stopping;

#[cfg(test)]
mod layers;
