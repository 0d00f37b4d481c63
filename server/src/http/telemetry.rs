//! Logging, and the outermost middleware that gives every request an id.
//!
//! The request id is taken from a well-formed incoming `X-Request-Id` (so that a trace
//! can cross a proxy) or made fresh (a UUIDv7), stored in the request's extensions for
//! handlers and Problem documents, put on every response, and attached to every log
//! line of the request through a tracing span. The same middleware catches panics, so
//! that even a bug answers with a Problem that carries the id.
//!
//! It also records each request's metrics and writes its access line. A benchmark-only
//! switch (`--benchmark-without-telemetry`, refused in production) turns those two off,
//! with the span, so that `bench/run.py` can price them; ids and the panic catcher stay.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use futures::FutureExt;
use poem::http::{HeaderValue, StatusCode};
use poem::{Endpoint, IntoResponse, Request, Response};
use tracing::Instrument;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::generated::types::ProblemCode;
use crate::http::error::{problem, problem_response};
use crate::http::request_id::RequestId;

const REQUEST_ID_HEADER: &str = "x-request-id";

/// Who called, as the credentials' verifiers find out, for the access line. Kept in the
/// request rather than recorded on its span: recording a field on a span makes the JSON
/// log layer parse and rewrite the span's fields, which cost more than the rest of a
/// cached read.
#[derive(Debug, Clone, Default)]
struct Caller(Arc<CallerIds>);

#[derive(Debug, Default)]
struct CallerIds {
    key_id: OnceLock<uuid::Uuid>,
    user_id: OnceLock<uuid::Uuid>,
}

/// Says, for the access line, that the request's API key is `key_id`.
pub fn identify_key(request: &Request, key_id: uuid::Uuid) {
    if let Some(caller) = request.extensions().get::<Caller>() {
        let _ = caller.0.key_id.set(key_id);
    }
}

/// Says, for the access line, that the request's bearer token is `user_id`'s.
pub fn identify_user(request: &Request, user_id: uuid::Uuid) {
    if let Some(caller) = request.extensions().get::<Caller>() {
        let _ = caller.0.user_id.set(user_id);
    }
}

/// What [`init`] started: keep it until exit, and drop it while the Tokio runtime still
/// runs. Dropping it exports the last spans (when exporting), then flushes the queued log
/// lines (fields drop in this order).
#[derive(Debug)]
pub struct Telemetry {
    _spans: Option<crate::infra::otel::Exporter>,
    _log_writer: tracing_appender::non_blocking::WorkerGuard,
}

/// Installs the global tracing subscriber. Filter from `MINITTER_LOG` (default `info`): a
/// level, and `target=level` pairs, separated by commas (`info,sqlx=warn`). It is a
/// [`Targets`] filter rather than an `EnvFilter`, which takes a lock on every poll of
/// every request's future to track spans for span directives that we never use
/// (docs/benchmarks.md, "Telemetry").
/// With `otlp_endpoint`, spans are also exported there ([`crate::infra::otel`]); then this must
/// be called inside the Tokio runtime that will send them.
///
/// Lines are written by a background thread (`tracing_appender::non_blocking`), so a
/// request never waits on stdout; if that thread falls far behind, lines are dropped rather
/// than requests slowed. The thread writes through a buffer that it flushes whenever it has
/// written every queued line: under load many lines go out in one `write`, and a quiet
/// server's lines still go out at once.
pub fn init(
    json: bool,
    otlp_endpoint: Option<&crate::infra::otel::OtlpEndpoint>,
) -> anyhow::Result<Telemetry> {
    let wanted = std::env::var("MINITTER_LOG").unwrap_or_else(|_| "info".to_owned());
    let filter: Targets = wanted
        .parse()
        .map_err(|error| anyhow::anyhow!("MINITTER_LOG={wanted:?} is not a log filter: {error}"))?;
    let stdout = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
    let (writer, log_writer) = tracing_appender::non_blocking(stdout);
    super::access_log::install(writer.clone(), json);
    let (spans, exporter) = match otlp_endpoint {
        Some(endpoint) => {
            let (layer, exporter) = crate::infra::otel::layer(endpoint)?;
            (Some(layer), Some(exporter))
        }
        None => (None, None),
    };
    // One of the two, unboxed (every event goes through it).
    let (json_lines, text_lines) = if json {
        // The request span's fields once per line, not twice (the JSON formatter parses
        // each span's fields back for every line it writes).
        let lines = tracing_subscriber::fmt::layer()
            .json()
            .with_span_list(false)
            .with_writer(writer);
        (Some(lines), None)
    } else {
        (
            None,
            Some(tracing_subscriber::fmt::layer().with_writer(writer)),
        )
    };
    // A second init (tests start many servers in one process) keeps the first.
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(spans)
        .with(json_lines)
        .with(text_lines)
        .try_init()
        .is_ok();
    if installed && exporter.is_some() {
        crate::infra::otel::mark_exporting();
    }
    Ok(Telemetry {
        _spans: exporter,
        _log_writer: log_writer,
    })
}

/// Middleware: request id, span, metrics, access log line, panic catcher. `telemetry` is
/// false only when benchmarking: no span, metrics or access line.
pub async fn request_context<E: Endpoint>(
    next: E,
    mut request: Request,
    telemetry: bool,
) -> poem::Result<Response> {
    let id = request
        .header(REQUEST_ID_HEADER)
        .filter(|id| is_safe_id(id))
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned);
    request.extensions_mut().insert(RequestId(id.clone()));
    // The generated route says which operation serves the request (logs and metrics
    // label by operationId, never by a path full of ids).
    let operation = codegen_runtime::OperationSlot::default();
    request.extensions_mut().insert(operation.clone());
    // The verifiers of the generated routes fill in who called (`key_id`, `user_id`), so
    // the access line says it; never a secret or a token.
    let caller = Caller::default();
    request.extensions_mut().insert(caller.clone());
    let method = request.method().clone();
    let client = super::client_address::ClientAddress::of(&request);
    // Every line logged while serving the request carries its id. The span's fields are
    // set once, here: the operation and the caller go on the access line.
    let span = if telemetry {
        tracing::info_span!(
            "request",
            request_id = %id,
            %method,
            // Recorded only when exporting spans (`crate::infra::otel`), after the access
            // line: the exported span says what the access line says.
            otel.name = tracing::field::Empty,
            operation_id = tracing::field::Empty,
            key_id = tracing::field::Empty,
            user_id = tracing::field::Empty,
            http.response.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty
        )
    } else {
        tracing::Span::none()
    };
    let started = Instant::now();
    let in_flight = telemetry.then(crate::infra::metrics::in_flight);

    let outcome = AssertUnwindSafe(next.call(request).instrument(span.clone()))
        .catch_unwind()
        .await;
    let mut response = match outcome {
        Ok(Ok(response)) => response.into_response(),
        Ok(Err(error)) => error.into_response(),
        Err(_panic) => {
            if telemetry {
                span.in_scope(|| tracing::error!("handler panicked"));
            } else {
                tracing::error!(request_id = %id, "handler panicked");
            }
            let status = StatusCode::INTERNAL_SERVER_ERROR;
            problem_response(&problem(
                status,
                ProblemCode::Internal,
                "An internal error occurred.".into(),
                &id,
            ))
        }
    };
    drop(in_flight);
    if telemetry {
        let operation_id = operation.get().unwrap_or("none");
        let status = response.status().as_u16();
        crate::infra::metrics::request_served(operation_id, status, started.elapsed());
        super::access_log::Served {
            method: method.as_str(),
            request_id: &id,
            operation_id,
            status,
            elapsed: started.elapsed(),
            client,
            key_id: caller.0.key_id.get().copied(),
            user_id: caller.0.user_id.get().copied(),
        }
        .log();
        if crate::infra::otel::is_exporting() {
            if let Some(name) = operation.get() {
                span.record("otel.name", name);
                span.record("operation_id", name);
            }
            if let Some(key_id) = caller.0.key_id.get() {
                span.record("key_id", tracing::field::display(key_id));
            }
            if let Some(user_id) = caller.0.user_id.get() {
                span.record("user_id", tracing::field::display(user_id));
            }
            span.record("http.response.status_code", i64::from(status));
            if status >= 500 {
                span.record("otel.status_code", "error");
            }
        }
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    Ok(response)
}

/// An incoming id is reused only if it is short and plain, so that it cannot inject
/// anything into logs or headers.
fn is_safe_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::is_safe_id;

    #[test]
    fn plain_ids_are_reused_and_others_are_not() {
        assert!(is_safe_id("0193-abc_DEF.1"));
        assert!(!is_safe_id(""));
        assert!(!is_safe_id("a b"));
        assert!(!is_safe_id("x\r\nSet-Cookie: y"));
        assert!(!is_safe_id(&"a".repeat(65)));
    }
}
