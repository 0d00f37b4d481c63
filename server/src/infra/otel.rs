//! Optional OpenTelemetry trace export (OTLP over HTTP/protobuf), on when
//! `MINITTER_OTLP_ENDPOINT` is set.
//!
//! Logs and metrics say what happened in aggregate; operators who run a collector (Jaeger,
//! Tempo, an OpenTelemetry Collector, …) also want to look one request up. Each request's
//! span ([`crate::http::telemetry::request_context`]) is exported with `request_id`, the method
//! and the response status, named after its operationId, with the access line as its event
//! (`operation_id`, `status`, `elapsed_ms`, `key_id`, `user_id`), so the `request_id` of a
//! Problem document a client reports finds its trace. Nothing else changes: the same span
//! already carries the access log line.
//!
//! Why it is shaped so:
//! - **HTTP/protobuf with the async reqwest client**, not gRPC (no tonic/prost-build stack)
//!   nor the blocking client (a second HTTP client with its own runtime thread). The SDK's
//!   default batch processor exports from its own thread by blocking on the export, which
//!   the async client cannot do outside Tokio; so batches are sent by a task on the
//!   server's runtime (the SDK's Tokio batch processor), and [`layer`] must be called
//!   inside that runtime (`main` enters it before `telemetry::init`).
//! - **Plain `http://` only**: the exporter's client carries no TLS, which keeps a second
//!   TLS stack out of the build; a collector or agent beside the server is the usual shape.
//!   An `https://` endpoint is refused at startup rather than failing on every batch.
//! - **Our setting turns export on**, not `OTEL_EXPORTER_OTLP_ENDPOINT`: a variable left in
//!   an environment does not start sending spans. The standard variables still tune it:
//!   `OTEL_BSP_*` (batching: every 5 s or 512 spans by default), `OTEL_EXPORTER_OTLP_HEADERS`
//!   (a collector's credentials, never part of the URL) and `OTEL_EXPORTER_OTLP_TIMEOUT`.
//! - **Only when exporting** does the request span get the OpenTelemetry-only fields
//!   (`otel.name`, `http.response.status_code`, `otel.status_code`), recorded after the
//!   access line, so that the log lines and their cost are the same with export off.
//! - **Shutdown is bounded**: [`Exporter`] flushes what is queued when dropped, but gives
//!   up after a few seconds so that an unreachable collector cannot hold up an exit.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::runtime::Tokio;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::registry::LookupSpan;

/// The `service.name` of every exported span.
pub const SERVICE_NAME: &str = "minitter";

/// The longest an exit waits for the last spans to reach the collector.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

const NOT_HTTP: &str =
    "must start with http:// (the exporter has no TLS; run a collector or agent beside the server)";

/// An OTLP/HTTP collector's base URL (`http://collector:4318`): plain `http`, a host, no
/// credentials, query or fragment; spans go to `<base>/v1/traces`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpEndpoint(String);

impl FromStr for OtlpEndpoint {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let uri: http::Uri = text
            .parse()
            .map_err(|error| format!("not a URL ({error})"))?;
        if uri.scheme_str() != Some("http") {
            return Err(NOT_HTTP.into());
        }
        let authority = uri.authority().ok_or("must name a host")?;
        if authority.as_str().contains('@') {
            return Err("must not hold credentials; send them with \
                        OTEL_EXPORTER_OTLP_HEADERS"
                .into());
        }
        if authority.host().is_empty() {
            return Err("must name a host".into());
        }
        if uri.query().is_some() || text.contains('#') {
            return Err("must not have a query or fragment".into());
        }
        let path = uri.path().trim_end_matches('/');
        Ok(Self(format!("http://{authority}{path}")))
    }
}

impl OtlpEndpoint {
    /// Where spans are sent: the OTLP/HTTP traces path under the base URL.
    pub fn traces_url(&self) -> String {
        format!("{}/v1/traces", self.0)
    }
}

static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether spans are being exported (the OpenTelemetry-only span fields are then
/// recorded).
pub fn is_exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Says that the layer from [`layer`] is installed.
pub(crate) fn mark_exporting() {
    EXPORTING.store(true, Ordering::Relaxed);
}

/// Keeps the tracer provider; dropping it exports what is queued (for at most a few
/// seconds) and stops the export task. Drop it while the Tokio runtime still runs.
#[derive(Debug)]
pub struct Exporter {
    provider: SdkTracerProvider,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        // `shutdown` blocks until the runtime's export task has sent the last batch, which
        // with an unreachable collector is the whole export timeout (30 s by default): it
        // runs on a thread of its own, which the process may leave behind.
        let provider = self.provider.clone();
        let (done, finished) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("otel-shutdown".into())
            .spawn(move || {
                let _ = done.send(provider.shutdown());
            });
        if spawned.is_err() {
            return;
        }
        match finished.recv_timeout(SHUTDOWN_WAIT) {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "the last spans were not exported"),
            Err(_) => tracing::warn!("the last spans were not exported in time"),
        }
    }
}

/// The tracing layer that exports spans to `endpoint`, and the [`Exporter`] to keep until
/// exit. Must be called inside the Tokio runtime that will send the batches.
///
/// The export's own HTTP client is kept out of the exported spans (its crates' spans would
/// otherwise be exported by the export, forever).
pub fn layer<S>(
    endpoint: &OtlpEndpoint,
) -> anyhow::Result<(impl Layer<S> + Send + Sync + use<S>, Exporter)>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span> + Send + Sync,
{
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint.traces_url())
        .build()
        .context("building the OTLP span exporter")?;
    let processor = BatchSpanProcessor::builder(exporter, Tokio).build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(Resource::builder().with_service_name(SERVICE_NAME).build())
        .build();
    let tracer = provider.tracer(SERVICE_NAME);
    // Targets match by prefix: `hyper` covers `hyper_util`, `opentelemetry` the SDK,
    // exporter and HTTP crates.
    let not_the_exporter = Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_target("hyper", LevelFilter::OFF)
        .with_target("h2", LevelFilter::OFF)
        .with_target("reqwest", LevelFilter::OFF)
        .with_target("tower", LevelFilter::OFF)
        .with_target("opentelemetry", LevelFilter::OFF);
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_threads(false)
        .with_filter(not_the_exporter);
    Ok((layer, Exporter { provider }))
}

#[cfg(test)]
mod tests {
    use super::OtlpEndpoint;

    fn traces_url(text: &str) -> Result<String, String> {
        text.parse::<OtlpEndpoint>().map(|e| e.traces_url())
    }

    #[test]
    fn a_collector_base_url_gets_the_traces_path() {
        assert_eq!(
            traces_url("http://collector:4318"),
            Ok("http://collector:4318/v1/traces".into())
        );
        assert_eq!(
            traces_url("http://127.0.0.1:4318/"),
            Ok("http://127.0.0.1:4318/v1/traces".into())
        );
        assert_eq!(
            traces_url("http://gateway/otlp/"),
            Ok("http://gateway/otlp/v1/traces".into())
        );
    }

    #[test]
    fn endpoints_the_exporter_cannot_use_are_refused() {
        for text in [
            "",
            "collector:4318",
            "https://collector:4318",
            "grpc://collector:4317",
            "http://user:secret@collector:4318",
            "http://collector:4318/?token=x",
            "http://collector:4318/#x",
            "not a url",
        ] {
            assert!(traces_url(text).is_err(), "{text:?} was accepted");
        }
    }
}
