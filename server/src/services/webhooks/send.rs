//! One signed delivery attempt of a webhook message to a partner's endpoint (issue 19).
//!
//! The worker decides *what* to send and *when* (see [`super::schedule`]); this module only
//! makes the HTTP request and reports what happened, as plain data the store can keep. It
//! never panics and never returns an error: everything that can go wrong on the way (a URL
//! the policy now refuses, a secret that does not parse, a receiver that hangs or resets)
//! is a failed [`Attempt`] with a reason, because to the worker it is all the same thing: a
//! delivery to retry later.
//!
//! The request follows [Standard Webhooks](https://www.standardwebhooks.com/), which is
//! what the partners' libraries verify: a JSON body, `webhook-id` (stable across retries,
//! so the receiver can drop duplicates), `webhook-timestamp` and `webhook-signature`. The
//! signatures are made by the `standardwebhooks` crate, the same code partners verify with,
//! rather than our own HMAC: a signature that differs by one byte of framing is a
//! signature nobody can check. During a secret rotation two secrets sign each message, and
//! the receiver accepts either.
//!
//! The request goes through [`UrlPolicy::http_client`], which connects only to addresses the
//! SSRF policy admits and follows no redirect, after [`UrlPolicy::recheck`]. Two things
//! bound what a receiver can cost us: [`TIMEOUT`] for the whole exchange, and
//! [`EXCERPT_BYTES`] of its answer kept for the delivery log (the rest is never read).
//! Errors never include the URL: a partner's URL may carry a token in its path or query,
//! and error texts end up in logs and in the API.

use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use rand::Rng;
use reqwest::Url;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use standardwebhooks::{
    HEADER_WEBHOOK_ID, HEADER_WEBHOOK_SIGNATURE, HEADER_WEBHOOK_TIMESTAMP, Webhook, WebhookError,
};

use super::ssrf::UrlPolicy;

/// How long one attempt may take, from connecting to the end of reading the excerpt. Svix
/// and Stripe give receivers a few seconds to tens of seconds; a receiver that needs longer
/// should answer first and work afterwards.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// How much of a receiver's answer is read and kept, in bytes: enough for an error message
/// in the delivery log, and a receiver answering with gigabytes costs us a kilobyte.
pub const EXCERPT_BYTES: usize = 1024;

/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// The length of a new secret's key, in bytes: the size of the HMAC-SHA256 output, and
/// inside the 24 to 64 bytes Standard Webhooks asks for.
pub const SECRET_BYTES: usize = 32;

/// A new signing secret for an endpoint: `whsec_` and the standard base64 of
/// [`SECRET_BYTES`] random bytes from the thread's CSPRNG.
pub fn new_secret() -> String {
    let key: [u8; SECRET_BYTES] = rand::rng().random();
    format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
}

/// A message to deliver.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The message's id, `msg_<uuid>`: the same on every attempt, so a receiver can tell a
    /// retry from a new event.
    pub id: &'a str,
    /// The signed `webhook-timestamp`. Receivers reject signatures more than five minutes
    /// from their clock (the `standardwebhooks` libraries do), so this must be the time of
    /// *this attempt*, not of the event: a retry a day later is signed afresh.
    pub timestamp: DateTime<Utc>,
    /// The JSON body, sent as is. Standard Webhooks signs it as text, so it must be UTF-8.
    pub payload: &'a [u8],
}

/// What an attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver answered 2xx: the message is delivered.
    Delivered,
    /// No 2xx answer (another status, no answer, or no request at all): retry on the
    /// schedule.
    Failed,
    /// The receiver answered 410 Gone: it wants no more messages, and the subscription must
    /// be disabled rather than retried.
    Gone,
}

impl Outcome {
    /// The outcome's name in the store and the API: `delivered`, `failed` or `gone`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Gone => "gone",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The record of one attempt, as the delivery log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub outcome: Outcome,
    /// The receiver's status code; `None` when no answer came (or no request was made).
    pub status: Option<u16>,
    /// Why there was no answer, or why the request was not made; or, next to a status,
    /// that reading the answer's body failed (the status still decides the outcome). Never
    /// contains the URL.
    pub error: Option<String>,
    /// From just before the request was sent to the end of reading the excerpt; zero when
    /// no request was made.
    pub latency: Duration,
    /// The start of the answer's body: at most [`EXCERPT_BYTES`] bytes of it, as UTF-8 with
    /// invalid sequences replaced, and cut to at most [`EXCERPT_BYTES`] bytes of text.
    pub excerpt: String,
    /// The receiver's `Retry-After` on a failed answer (delta-seconds or an HTTP-date, the
    /// time until that date from our clock; zero for a date in the past). It is a wish, not
    /// an order: [`super::schedule::retry_delay`] bounds it.
    pub retry_after: Option<Duration>,
}

impl Attempt {
    /// A failed attempt for which no request was made.
    fn not_sent(error: String) -> Self {
        Self {
            outcome: Outcome::Failed,
            status: None,
            error: Some(error),
            latency: Duration::ZERO,
            excerpt: String::new(),
            retry_after: None,
        }
    }
}

/// Sends webhook attempts; one per process, shared by the workers (it is cheap to clone,
/// and its connection pool is shared).
#[derive(Debug, Clone)]
pub struct Sender {
    policy: UrlPolicy,
    client: reqwest::Client,
    timeout: Duration,
}

impl Sender {
    /// A sender bound by `policy`, giving each attempt [`TIMEOUT`].
    pub fn new(policy: UrlPolicy) -> Self {
        Self::with_timeout(policy, TIMEOUT)
    }

    /// A sender bound by `policy`, giving each attempt `timeout` (tests use a short one).
    pub fn with_timeout(policy: UrlPolicy, timeout: Duration) -> Self {
        let client = policy.http_client(timeout);
        Self {
            policy,
            client,
            timeout,
        }
    }

    /// One attempt to deliver `message` to `url`, signed with each of `secrets` (one
    /// normally, two during a rotation). See [`Attempt`] for what is reported.
    pub async fn send(&self, url: &Url, secrets: &[&str], message: &Message<'_>) -> Attempt {
        if let Err(refusal) = self.policy.recheck(url) {
            return Attempt::not_sent(format!("not sent: {refusal}"));
        }
        let headers = match signed_headers(secrets, message) {
            Ok(headers) => headers,
            Err(error) => return Attempt::not_sent(format!("not sent: {error}")),
        };

        let started = Instant::now();
        let sent = self
            .client
            .post(url.clone())
            .headers(headers)
            .body(message.payload.to_vec())
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(error) => {
                return Attempt {
                    outcome: Outcome::Failed,
                    status: None,
                    error: Some(self.describe(error)),
                    latency: started.elapsed(),
                    excerpt: String::new(),
                    retry_after: None,
                };
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, SystemTime::now()));
        let (excerpt, read_error) = read_excerpt(&mut response).await;
        let latency = started.elapsed();

        let outcome = if status.is_success() {
            Outcome::Delivered
        } else if status == reqwest::StatusCode::GONE {
            Outcome::Gone
        } else {
            Outcome::Failed
        };
        Attempt {
            outcome,
            status: Some(status.as_u16()),
            error: read_error.map(|error| format!("reading the answer: {}", self.describe(error))),
            latency,
            excerpt,
            retry_after: retry_after.filter(|_| outcome == Outcome::Failed),
        }
    }

    /// A short text for a transport error, without the URL: the timeout as such, anything
    /// else as the chain of causes ("error sending request: client error (Connect): tcp
    /// connect error: Connection refused (os error 111)").
    fn describe(&self, error: reqwest::Error) -> String {
        if error.is_timeout() {
            return format!("timed out after {:?}", self.timeout);
        }
        let error = error.without_url();
        let mut text = error.to_string();
        let mut last = text.clone();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            // Wrappers often repeat their cause's text; say it once.
            if cause_text != last {
                text.push_str(": ");
                text.push_str(&cause_text);
                last = cause_text;
            }
            source = cause.source();
        }
        text
    }
}

/// The request's headers: content type, id, timestamp and one `v1,<base64>` signature per
/// secret, space-separated.
fn signed_headers(secrets: &[&str], message: &Message<'_>) -> Result<HeaderMap, String> {
    if secrets.is_empty() {
        return Err("no signing secret (a webhook is never sent unsigned)".to_owned());
    }
    let timestamp = message.timestamp.timestamp();
    let mut signatures = Vec::with_capacity(secrets.len());
    for (index, secret) in secrets.iter().enumerate() {
        let number = index + 1;
        if secret
            .strip_prefix(SECRET_PREFIX)
            .unwrap_or(secret)
            .is_empty()
        {
            return Err(format!("signing secret {number} is empty"));
        }
        // The crate's error texts never quote the secret.
        let signature = Webhook::new(secret)
            .and_then(|signer| signer.sign(message.id, timestamp, message.payload))
            .map_err(|error| match error {
                WebhookError::InvalidSecret(_) => {
                    format!("signing secret {number} is not a valid Standard Webhooks secret")
                }
                WebhookError::InvalidPayload => {
                    "the payload is not UTF-8, which Standard Webhooks signatures require"
                        .to_owned()
                }
                other => format!("signing with secret {number} failed: {other}"),
            })?;
        signatures.push(signature);
    }

    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let id = HeaderValue::from_str(message.id)
        .map_err(|_| "the message id is not a valid header value".to_owned())?;
    headers.insert(HEADER_WEBHOOK_ID, id);
    headers.insert(HEADER_WEBHOOK_TIMESTAMP, HeaderValue::from(timestamp));
    // `v1,` and standard base64: always a valid header value.
    let mut signature = HeaderValue::from_str(&signatures.join(" "))
        .map_err(|_| "a signature is not a valid header value".to_owned())?;
    signature.set_sensitive(true);
    headers.insert(HEADER_WEBHOOK_SIGNATURE, signature);
    Ok(headers)
}

/// Reads the start of the answer's body, at most [`EXCERPT_BYTES`], chunk by chunk, and
/// stops there: the rest is never read (the connection is dropped with the response).
/// Returns the excerpt and the error that ended the reading early, if any.
async fn read_excerpt(response: &mut reqwest::Response) -> (String, Option<reqwest::Error>) {
    let mut body = Vec::with_capacity(EXCERPT_BYTES);
    let mut error = None;
    while body.len() < EXCERPT_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = EXCERPT_BYTES - body.len();
                body.extend_from_slice(chunk.get(..room).unwrap_or(&chunk));
            }
            Ok(None) => break,
            Err(failure) => {
                error = Some(failure);
                break;
            }
        }
    }
    (excerpt_text(&body), error)
}

/// `bytes` as text: invalid UTF-8 (including a character cut at the end) replaced, then
/// cut at a character boundary to at most [`EXCERPT_BYTES`] bytes, since each replacement
/// character takes three bytes where the invalid byte took one.
fn excerpt_text(bytes: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(bytes).into_owned();
    if text.len() > EXCERPT_BYTES {
        let mut end = EXCERPT_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// A `Retry-After` value (RFC 9110 section 10.2.3) as a duration from `now`: delta-seconds
/// (1*DIGIT, saturating when too large), or an HTTP-date in any of its three forms, where a
/// date in the past means zero. `None` when it is neither.
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_digit()) {
        // Only digits, so the only possible error is overflow.
        let seconds = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests;
