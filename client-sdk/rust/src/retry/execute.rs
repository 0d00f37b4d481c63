//! The retry loop: sends one request as many times as [`super::policy`] allows, with a
//! `tracing` span per attempt, and readies a request for it (an `Idempotency-Key` for the
//! operations whose document entry takes one).
//!
//! It runs inside the generated client's `exec` hook (see `crate::hooks`), where it sees
//! the finished `reqwest::Request` of every call: a builder's `send()` and each page of
//! a `*_stream()`. Working on the request rather than the builder means nothing here
//! depends on which operation is sent, beyond the facts the document gives
//! ([`Operation`]).

use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{Request, Response, StatusCode};
use tracing::Instrument;

use super::policy::{
    Decision, RetryPolicy, RetrySafety, error_decision, response_decision, retryable_status,
};
use crate::operations::Operation;

/// A fresh `Idempotency-Key`: a random UUIDv4.
pub fn new_idempotency_key() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Sends `request` with `http`, retrying as `policy` allows (see [`crate::retry`]):
/// what the generated client does for every call. `operation` is what the document says
/// about the request's operation; when it takes an `Idempotency-Key` and the request has
/// none, a fresh key is added (unless retries are off) and sent by every attempt.
///
/// Use it for a request made without the generated client:
///
/// ```no_run
/// # async fn demo(http: reqwest::Client, url: &str) -> reqwest::Result<()> {
/// use minitter_client::{RetryPolicy, operations, retry};
///
/// let request = http.get(format!("{url}/healthz")).build()?;
/// let response =
///     retry::send(&http, request, Some(&operations::GET_HEALTH), &RetryPolicy::default()).await?;
/// # Ok(()) }
/// ```
pub async fn send(
    http: &reqwest::Client,
    mut request: Request,
    operation: Option<&Operation>,
    policy: &RetryPolicy,
) -> reqwest::Result<Response> {
    let key_header = operation
        .and_then(|operation| operation.idempotency_key)
        .and_then(|name| HeaderName::from_bytes(name.as_bytes()).ok());
    if policy.max_retries > 0
        && let Some(name) = &key_header
        && !request.headers().contains_key(name)
    {
        let key = HeaderValue::from_str(&new_idempotency_key())
            .expect("BUG: a UUID is a valid header value");
        request.headers_mut().insert(name.clone(), key);
    }
    let keyed = key_header
        .as_ref()
        .is_some_and(|name| request.headers().contains_key(name));
    let safety = RetrySafety::of(request.method(), keyed);
    let operation_id = operation.map_or("", |operation| operation.id);

    let mut retry = 0;
    loop {
        // A request whose body is a stream cannot be copied: it is sent once.
        let replay = (retry < policy.max_retries)
            .then(|| request.try_clone())
            .flatten();
        let span = tracing::info_span!(
            "minitter_client.attempt",
            operation = operation_id,
            attempt = retry + 1,
            method = %request.method(),
            path = request.url().path(),
            status = tracing::field::Empty,
            error = tracing::field::Empty,
        );
        let (outcome, decision) = attempt(http, request, safety)
            .instrument(span.clone())
            .await;
        let delay = replay.as_ref().and_then(|_| policy.delay(decision, retry));
        let (Some(next), Some(delay)) = (replay, delay) else {
            return outcome;
        };
        span.in_scope(|| {
            let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
            tracing::info!(delay_ms, retry = retry + 1, "retrying");
        });
        drop(outcome);
        tokio::time::sleep(delay).await;
        request = next;
        retry += 1;
    }
}

/// One attempt, its outcome recorded on the current span, and what to do next.
async fn attempt(
    http: &reqwest::Client,
    request: Request,
    safety: RetrySafety,
) -> (reqwest::Result<Response>, Decision) {
    let span = tracing::Span::current();
    let response = match http.execute(request).await {
        Ok(response) => response,
        Err(error) => {
            span.record("error", tracing::field::display(&error));
            let decision = error_decision(&error, safety);
            return (Err(error), decision);
        }
    };
    let status = response.status();
    span.record("status", status.as_u16());
    if !retryable_status(status, safety) {
        return (Ok(response), Decision::Stop);
    }
    if status == StatusCode::CONFLICT {
        return match in_flight(response).await {
            Ok((response, true)) => {
                let decision = response_decision(response.headers());
                (Ok(response), decision)
            }
            Ok((response, false)) => (Ok(response), Decision::Stop),
            Err(error) => (Err(error), Decision::Stop),
        };
    }
    let decision = response_decision(response.headers());
    (Ok(response), decision)
}

/// Whether a `409` says `request_in_flight` (the first attempt with this
/// `Idempotency-Key` is still running), and the response, rebuilt from its read body.
async fn in_flight(response: Response) -> reqwest::Result<(Response, bool)> {
    #[derive(serde::Deserialize)]
    struct Code {
        code: Option<crate::types::ProblemCode>,
    }
    let mut rebuilt = http::Response::builder()
        .status(response.status())
        .version(response.version());
    if let Some(headers) = rebuilt.headers_mut() {
        *headers = response.headers().clone();
    }
    let body = response.bytes().await?;
    let in_flight = serde_json::from_slice::<Code>(&body)
        .is_ok_and(|problem| problem.code == Some(crate::types::ProblemCode::RequestInFlight));
    let rebuilt = rebuilt
        .body(body)
        .expect("BUG: the status and headers come from a response");
    Ok((Response::from(rebuilt), in_flight))
}
