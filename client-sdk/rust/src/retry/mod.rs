//! Retries with backoff, honouring `Retry-After`, with automatic idempotency keys: on by
//! default for every call of the generated client.
//!
//! # Where they run
//!
//! progenitor's client sends every request through the `ClientHooks` trait, and codegen
//! generates it in the mode where the crate must implement that trait (see
//! `codegen/README.md`). This crate's implementation (`crate::hooks`) hands each request
//! to [`send`], so a builder's `send()` and every page of a `*_stream()` are retried
//! alike, and there is no second, non-retrying way to send. The policy is the client's
//! ([`crate::ClientBuilder::retry_policy`], [`crate::Client::with_retry_policy`]);
//! [`RetryPolicy::disabled`] turns retries off.
//!
//! Each attempt runs in a `tracing` span named `minitter_client.attempt` (fields
//! `operation`, `attempt`, `method`, `path`, and `status` or `error`), and each retry
//! logs an `info` event `retrying` with its `delay_ms`, so a subscriber shows them.
//!
//! # What is retried
//!
//! At most [`RetryPolicy::max_retries`] times after the first attempt (2 by default, so
//! three attempts; 0 turns retries off):
//!
//! - `429 Too Many Requests`: always (the gateway refused the request before running it);
//! - `502`, `503`, `504` and failures of the connection (reset, closed, timed out): only
//!   for requests that can be replayed safely: `GET`, `HEAD`, `PUT`, `DELETE`,
//!   `OPTIONS`, and requests carrying an `Idempotency-Key` (the server replays the first
//!   response for a repeated key). A `POST` or `PATCH` without a key is only retried when
//!   the connection could not even be opened, so the server never saw it;
//! - `409` with the code `request_in_flight` for requests carrying an `Idempotency-Key`:
//!   the first attempt is still running on the server, and the retry gets its response.
//!
//! No other response is retried: a `400`, `401`, `403`, `404`, `422`… would fail again.
//! A request whose body is a stream (not bytes) cannot be copied, and is sent once.
//!
//! Which operations take an `Idempotency-Key` is read from the OpenAPI document by
//! codegen (`operations::Operation::idempotency_key`), not listed here: a request to
//! such an operation gets a random UUIDv4 key when the caller set none, and every
//! attempt sends the same key, so a retried post creates one tweet. An operation added
//! to the document with that header is retried safely with no change to this crate.
//!
//! # How long between attempts
//!
//! The server's `Retry-After` (seconds or an HTTP date) when it sent one, else
//! exponential backoff with full jitter: a random delay between zero and
//! `min(max_delay, base_delay × 2^retry)`. A `Retry-After` longer than
//! [`RetryPolicy::max_retry_after`] (60 s by default) ends the retries at once: a spent
//! daily quota is not worth waiting for, and the error (with its `Retry-After`) is
//! returned to the caller.
//!
//! Each attempt has its own timeout ([`crate::ClientBuilder::timeout`]); for an overall
//! deadline, wrap the call in `tokio::time::timeout`.

mod execute;
mod policy;

pub use execute::{new_idempotency_key, send};
pub(crate) use policy::retry_after;
pub use policy::{RetryPolicy, RetrySafety};
