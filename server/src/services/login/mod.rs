//! Logins under attack (OWASP API2:2023, broken authentication).
//!
//! Two defences around `POST /v1/auth/token`:
//!
//! - **Wrong passwords are limited in sliding windows, per client, per account and per
//!   API key** ([`LoginGuard`]). A password is hashed only while three budgets have room:
//!   the failures of this account *from this client* (the API key and the client's
//!   address, [`Client`]), of this account from every client, and of this API key on
//!   every account. Past any of them the attempt gets a 429 with `Retry-After` and costs
//!   no hashing at all.
//!
//!   *Why per client first*: with one budget per account, anyone who knows an email could
//!   spend it and lock the owner out. The owner's client has a budget of its own, so the
//!   owner still logs in while an attacker's client is refused; only an attacker who
//!   spends the whole account's budget, from several clients, shuts the owner out too —
//!   and that budget is the brute-force bound that must hold whatever the attacker holds.
//!
//!   *Why outcomes only, with reservations*: a correct password costs nothing (so logins
//!   in parallel all succeed), and a wrong one costs one failure for the window. But an
//!   attempt's outcome is known only after its hash, so each attempt first *reserves* a
//!   slot in every budget; the slot is given back on success and becomes a failure on a
//!   wrong password. Failures plus reservations never exceed a budget, so a burst of
//!   parallel guesses cannot all be hashed before the first failure is counted. When the
//!   budget is full only of reservations, a new attempt waits for their outcomes (a hash
//!   takes tens of milliseconds) rather than being refused for them. A reservation whose
//!   outcome never comes (a crashed instance, a dropped request) is taken for a failure
//!   when its lease ends; nothing is ever forgiven beyond the attempt's own reservation,
//!   so no success can make room for more guesses than the bound.
//!
//!   *Why a sliding log*: fixed windows let twice the limit through across a window's
//!   edge. Each budget keeps the times of its failures in the window (at most `limit` of
//!   them), so "at most N failures in any window" holds exactly. Neither the gateway's
//!   token bucket nor a GCRA crate (`governor`) fits: giving a reservation back, and
//!   telling a lost one from a live one, needs the reservations themselves, which a
//!   bucket's single number does not keep (and `governor` cannot return a cell at all).
//!
//!   The budgets live where the limiter's do: in this process, or in Redis when instances
//!   share one (so spreading guesses over instances gains nothing), with one Lua script
//!   per decision. Accounts and clients are named by hashes (of the case-folded email, of
//!   the key and address), so no email or address is kept in memory or in Redis.
//! - **Password hashing runs with bounded concurrency** ([`Hashing`]): about one argon2
//!   computation per core at a time. Excess waits briefly, then gets a 503 with
//!   `Retry-After`, so a flood of logins cannot take every blocking thread and starve the
//!   rest of the API.
//!
//! The module is split along those seams: `guard` is the service the login handler
//! calls ([`LoginGuard`], [`Attempt`], [`Client`]); `counters` is what a place that keeps
//! budgets must do (reserve a slot in a group of budgets, settle it); `memory` and `redis`
//! are the two such places, the sliding logs in this process and the same logs as sorted
//! sets in Redis; `hashing` bounds the argon2 work.

mod counters;
mod guard;
mod hashing;
mod memory;
mod redis;

use std::time::Duration;

pub use guard::{Attempt, Client, LoginGuard};
pub use hashing::Hashing;

/// How many wrong passwords each budget allows in any `window`.
#[derive(Debug, Clone, Copy)]
pub struct LoginLimits {
    /// One account, from one client (API key and address).
    pub per_client: u64,
    /// One account, from every client together: the bound on guesses at one password.
    pub per_account: u64,
    /// One API key, on every account together.
    pub per_key: u64,
    pub window: Duration,
    /// How long an attempt in flight may hold its reservation before it is taken for a
    /// failure ([`IN_FLIGHT_LEASE`] outside tests).
    pub lease: Duration,
}

/// Far longer than a login takes (a database read, a wait for a hashing slot of at most
/// two seconds, one argon2 hash), so only a lost attempt outlives it.
pub const IN_FLIGHT_LEASE: Duration = Duration::from_secs(60);
