//! Receiving Minitter's webhooks: checking that a delivery is genuine, then reading it.
//!
//! Minitter signs every delivery as [Standard Webhooks](https://www.standardwebhooks.com/)
//! do. A delivery is a `POST` of a JSON body (`{"type": "tweet.created", "timestamp":
//! "<RFC 3339>", "data": {…}}`) with three headers:
//!
//! - `webhook-id`: the delivery's id, the same on every retry of it: process each id once;
//! - `webhook-timestamp`: when this attempt was signed, in seconds since the Unix epoch;
//! - `webhook-signature`: `v1,<base64 of HMAC-SHA256("{id}.{timestamp}.{body}")>`, keyed
//!   with the subscription's secret (`whsec_<base64>`). While a secret is being rotated
//!   the header holds two signatures, one per secret, separated by a space
//!   (`v1,<old> v1,<new>`), so a receiver that knows either secret accepts the delivery.
//!
//! [`WebhookVerifier`] checks all of it with the maintained
//! [`standardwebhooks`](https://crates.io/crates/standardwebhooks) crate (the standard's
//! reference implementation); nothing here computes an HMAC itself. What that crate does,
//! and so what this module does:
//!
//! - a secret may be given with or without its `whsec_` prefix; the rest is decoded as
//!   standard, padded base64 into the HMAC key;
//! - the signature header is split on spaces, entries whose version is not `v1` are
//!   ignored, and the delivery is genuine when any `v1` entry equals the expected signature
//!   (compared in constant time);
//! - the timestamp must be within 5 minutes of this machine's clock, either way (a fixed
//!   tolerance, the standard's), which bounds how long a captured delivery can be replayed:
//!   keep the clock synchronised (NTP), and remember the `webhook-id`s seen in the last
//!   few minutes to refuse a replay within that window;
//! - the headers and the timestamp are checked before the signature, so a stale delivery
//!   is reported as stale whatever its signature;
//! - the body is signed as it was sent, byte for byte: verify the raw body, before any
//!   JSON parsing or re-encoding (and it must be UTF-8, which Minitter's JSON always is).
//!
//! This module adds: several secrets at once (for rotation on the receiver's side: during
//! the grace period, give both the old and the new secret), refusing an empty secret
//! (which the crate accepts, and which would make the signature worthless), one error
//! type naming what was wrong, and parsing the verified body
//! ([`WebhookVerifier::verify_event`]) into a type of the caller's choice:
//! `serde_json::Value`, or a type of your own.
//!
//! The headers are [`http::HeaderMap`] (http 1.x, which reqwest, axum, hyper 1 and poem 3
//! use too); the body is the raw bytes.
//!
//! ```
//! use minitter_client::webhooks::{VerifyError, WebhookVerifier};
//!
//! # fn handle(headers: &http::HeaderMap, body: &[u8]) -> Result<(), VerifyError> {
//! let verifier = WebhookVerifier::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
//!     .expect("a valid secret");
//! let event: serde_json::Value = verifier.verify_event(headers, body)?;
//! println!("{} at {}", event["type"], event["timestamp"]);
//! # Ok(()) }
//! ```

use std::fmt;

use http::HeaderMap;
use serde::de::DeserializeOwned;
use standardwebhooks::{Webhook, WebhookError};

/// The header holding the delivery's id, the same on every retry of one event to one
/// subscription.
pub const WEBHOOK_ID: &str = "webhook-id";
/// The header holding when the attempt was signed, in seconds since the Unix epoch.
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// The header holding one or more space-separated `v1,<base64>` signatures.
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";
/// The prefix of a signing secret, as Minitter shows it (`whsec_<base64>`).
pub const SECRET_PREFIX: &str = "whsec_";
/// How far a delivery's timestamp may be from the receiver's clock, either way (fixed by
/// the `standardwebhooks` crate, as the standard recommends).
pub const TOLERANCE: std::time::Duration = std::time::Duration::from_secs(5 * 60);

/// Checks that deliveries were signed by Minitter with one of the subscription's secrets,
/// and recent.
///
/// Made from one secret ([`new`](Self::new)) or several ([`with_secrets`](Self::with_secrets),
/// to keep accepting deliveries signed with the old secret while a rotation is under
/// way). Cheap to share: verifying needs only `&self`. Its `Debug` shows how many secrets
/// it holds, never the secrets.
pub struct WebhookVerifier {
    keys: Vec<Webhook>,
}

impl WebhookVerifier {
    /// A verifier for the subscription's secret, `whsec_<base64>` as Minitter shows it
    /// (the prefix may be left out; surrounding whitespace, such as a newline read from a
    /// file, is ignored).
    pub fn new(secret: &str) -> Result<Self, SecretError> {
        Self::with_secrets([secret])
    }

    /// A verifier that accepts a delivery signed with any of these secrets: during a
    /// rotation, the old and the new one. At least one is needed.
    pub fn with_secrets<I, S>(secrets: I) -> Result<Self, SecretError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let keys = secrets
            .into_iter()
            .enumerate()
            .map(|(index, secret)| key(index, secret.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(SecretError::NoSecret);
        }
        Ok(Self { keys })
    }

    /// Checks a delivery: its headers, that its timestamp is within [`TOLERANCE`] of now,
    /// and that one of its signatures matches `body` under one of the secrets. `body` is
    /// the request's body exactly as received.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), VerifyError> {
        for key in &self.keys {
            match key.verify(body, headers) {
                Ok(()) => return Ok(()),
                // Only the signature depends on the secret: try the next one.
                Err(WebhookError::InvalidSignature) => continue,
                Err(other) => return Err(VerifyError::from_crate(other)),
            }
        }
        Err(VerifyError::InvalidSignature)
    }

    /// [`verify`](Self::verify), then the body parsed as JSON into `T`: a
    /// `serde_json::Value`, a type of your own, or one of the spec's event types.
    pub fn verify_event<T: DeserializeOwned>(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<T, VerifyError> {
        self.verify(headers, body)?;
        serde_json::from_slice(body).map_err(VerifyError::Json)
    }
}

impl fmt::Debug for WebhookVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookVerifier")
            .field("secrets", &self.keys.len())
            .finish_non_exhaustive()
    }
}

fn key(index: usize, secret: &str) -> Result<Webhook, SecretError> {
    let secret = secret.trim();
    let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    if encoded.is_empty() {
        return Err(SecretError::Empty { index });
    }
    // `Webhook::new` strips the prefix itself; it is given the secret whole.
    Webhook::new(secret).map_err(|_| SecretError::NotBase64 { index })
}

/// Why a [`WebhookVerifier`] could not be made. `index` is the secret's position in the
/// list (0 for [`WebhookVerifier::new`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretError {
    /// No secret was given.
    NoSecret,
    /// A secret is empty (or only `whsec_`).
    Empty {
        /// Which secret.
        index: usize,
    },
    /// A secret is not `whsec_` followed by standard, padded base64.
    NotBase64 {
        /// Which secret.
        index: usize,
    },
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSecret => f.write_str("no webhook secret given"),
            Self::Empty { index } => write!(f, "webhook secret #{index} is empty"),
            Self::NotBase64 { index } => {
                write!(f, "webhook secret #{index} is not `whsec_` and base64")
            }
        }
    }
}

impl std::error::Error for SecretError {}

/// Why a delivery was refused. Answer any of them with a `4xx` (Minitter retries
/// deliveries that are not answered `2xx`), and do not act on the body.
#[derive(Debug)]
#[non_exhaustive]
pub enum VerifyError {
    /// A `webhook-*` header is absent (its name is given): not a Standard Webhooks
    /// delivery.
    MissingHeader(&'static str),
    /// A `webhook-*` header cannot be read: not visible ASCII, or a timestamp that is not
    /// an integer.
    InvalidHeader(&'static str),
    /// The timestamp is more than [`TOLERANCE`] in the past: a replay, a delivery held up
    /// on the way, or a clock that is wrong (on either side).
    TimestampTooOld,
    /// The timestamp is more than [`TOLERANCE`] in the future: most likely a clock that is
    /// wrong.
    TimestampInFuture,
    /// No signature matches under any of the secrets: a body changed on the way, the
    /// wrong secret (another subscription's, or one rotated away), or a forgery. These
    /// cannot be told apart, by design.
    InvalidSignature,
    /// The body is not UTF-8, so not one Minitter signed.
    BodyNotUtf8,
    /// The delivery is genuine but its body is not JSON of the type asked for
    /// ([`WebhookVerifier::verify_event`] only).
    Json(serde_json::Error),
}

impl VerifyError {
    fn from_crate(error: WebhookError) -> Self {
        match error {
            WebhookError::MissingHeader(name) => Self::MissingHeader(header_name(name)),
            WebhookError::InvalidHeader(name) => Self::InvalidHeader(header_name(name)),
            WebhookError::InvalidTimestamp => Self::InvalidHeader(WEBHOOK_TIMESTAMP),
            WebhookError::TimestampTooOldError => Self::TimestampTooOld,
            WebhookError::FutureTimestampError => Self::TimestampInFuture,
            WebhookError::InvalidPayload => Self::BodyNotUtf8,
            // A key was decoded when the verifier was made; verifying never decodes one.
            WebhookError::InvalidSignature | WebhookError::InvalidSecret(_) => {
                Self::InvalidSignature
            }
        }
    }
}

/// The header the crate means by its short names (`id`, `signature`, `timestamp`).
fn header_name(short: &'static str) -> &'static str {
    match short {
        "id" => WEBHOOK_ID,
        "timestamp" => WEBHOOK_TIMESTAMP,
        "signature" => WEBHOOK_SIGNATURE,
        other => other,
    }
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingHeader(name) => write!(f, "webhook header `{name}` is missing"),
            Self::InvalidHeader(name) => write!(f, "webhook header `{name}` is invalid"),
            Self::TimestampTooOld => f.write_str("webhook timestamp is too old"),
            Self::TimestampInFuture => f.write_str("webhook timestamp is in the future"),
            Self::InvalidSignature => f.write_str("no webhook signature matches"),
            Self::BodyNotUtf8 => f.write_str("webhook body is not UTF-8"),
            Self::Json(e) => write!(f, "webhook body is not the expected JSON: {e}"),
        }
    }
}

impl std::error::Error for VerifyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Json(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
