//! Prometheus metrics, served at `GET /metrics` (behind the admin token, as the document
//! says) in the text exposition format.
//!
//! Labels are bounded: requests by `operation` (the operationId the generated route
//! announces, or `none` for paths no operation serves) and status class, never by raw
//! path, user or key; gateway decisions by `plan` id (as many as the operator made plans).
//! The `metrics` facade keeps recording a few atomic operations per request; the exporter
//! renders on scrape.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Requests served, by operation and status class.
pub const REQUESTS: &str = "minitter_http_requests_total";
/// Request latency, by operation.
pub const LATENCY: &str = "minitter_http_request_duration_seconds";
/// Requests being served.
pub const IN_FLIGHT: &str = "minitter_http_requests_in_flight";
/// Gateway decisions, by plan and outcome (`admitted`, `ip_not_allowed`, `throttled`,
/// `quota_exceeded`).
pub const GATEWAY_DECISIONS: &str = "minitter_gateway_decisions_total";

/// Lookups in the in-process record caches, by `cache` (`tweets`, `users`, `followers`)
/// and `result` (`hit`, `miss`).
pub const CACHE_LOOKUPS: &str = "minitter_cache_lookups_total";
/// Home timeline pages, by `source`: `feed` (materialised) or `database`.
pub const TIMELINE_PAGES: &str = "minitter_timeline_pages_total";
/// Feeds built from the database.
pub const FEED_BUILDS: &str = "minitter_feed_builds_total";
/// Events this instance could not announce to the others (Redis did not answer).
pub const EVENTS_UNANNOUNCED: &str = "minitter_events_unannounced_total";

/// Lookups in the response cache, by `operation` and `result` (`hit`, `miss`, `bypass`;
/// a permitted refresh is a miss).
pub const RESPONSE_CACHE: &str = "minitter_response_cache_lookups_total";

/// How far each outbox consumer is behind, by `consumer`: the age in seconds of the oldest
/// event it has not handled, 0 when it has handled every one (set on every scrape).
pub const OUTBOX_LAG: &str = "minitter_outbox_lag_seconds";
/// Counter: outbox events handled, by `consumer`.
pub const OUTBOX_CONSUMED: &str = "minitter_outbox_consumed_total";
/// Counter: outbox events deleted once every consumer had them and their retention passed.
pub const OUTBOX_PRUNED: &str = "minitter_outbox_pruned_total";

/// Database connections, by `state`: `in_use` or `idle` (set on every scrape).
pub const POOL_CONNECTIONS: &str = "minitter_db_pool_connections";
/// Failures of the picture store (S3 or the data directory) answered as 503s; calls the
/// circuit breaker refused are counted apart (`minitter_blob_breaker_rejected_total`).
pub const BLOB_ERRORS: &str = "minitter_blob_errors_total";
/// The S3 picture store's circuit breaker, by `state` (`closed`, `open`, `half_open`): 1
/// for the state it is in, 0 for the others.
pub const BLOB_BREAKER_STATE: &str = "minitter_blob_breaker_state";
/// Counter: the circuit breaker's transitions, by the state entered (`to`).
pub const BLOB_BREAKER_TRANSITIONS: &str = "minitter_blob_breaker_transitions_total";
/// Counter: picture store calls the circuit breaker refused without reaching S3.
pub const BLOB_BREAKER_REJECTED: &str = "minitter_blob_breaker_rejected_total";

/// Counter: webhook delivery attempts, by `outcome` (`delivered`, `failed`, `gone`).
pub const WEBHOOK_ATTEMPTS: &str = "minitter_webhook_attempts_total";
/// Histogram: from an event's commit to its first successful delivery, in seconds (only
/// deliveries that succeeded at their first attempt: the pipeline's own latency).
pub const WEBHOOK_LATENCY: &str = "minitter_webhook_delivery_latency_seconds";
/// Subscriptions whose endpoint's circuit breaker is open now (set on every scrape).
pub const WEBHOOK_BREAKERS_OPEN: &str = "minitter_webhook_breakers_open";
/// Counter: webhook breaker transitions, by the state entered (`to`: `open`, `closed`).
pub const WEBHOOK_BREAKER_TRANSITIONS: &str = "minitter_webhook_breaker_transitions_total";

/// Realtime stream sockets open on this instance (set on every scrape).
pub const STREAM_SOCKETS: &str = "minitter_stream_sockets";
/// Counter: stream sockets closed because their client fell behind (or events from other
/// instances may have been missed).
pub const STREAM_LAGGED: &str = "minitter_stream_lagged_total";

/// Latency buckets, in seconds: a primary-key read is well under a millisecond, a login
/// (argon2) tens of milliseconds, a timeout seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process's Prometheus recorder. The `metrics` facade has one recorder per process,
/// so every server built in a process (tests start several) shares it.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(LATENCY.to_owned()), LATENCY_BUCKETS)
            .and_then(|builder| {
                builder.set_buckets_for_metric(
                    Matcher::Full(WEBHOOK_LATENCY.to_owned()),
                    LATENCY_BUCKETS,
                )
            })
            .expect("BUG: the latency buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may be installed already (a test harness); then this one only
        // renders what it was given, which is nothing.
        let _ = metrics::set_global_recorder(recorder);
        keep_up(handle.clone());
        handle
    })
}

/// How often histogram samples are folded into their buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Folds the recorded histogram samples into their buckets every [`UPKEEP_EVERY`], on a
/// thread of its own (the recorder outlives any one Tokio runtime). The recorder keeps
/// every sample until then: without it, a server nobody scraped grew by 8 bytes a
/// request for as long as it ran (about 1 GiB an hour at 40k requests a second).
fn keep_up(handle: PrometheusHandle) {
    let started = std::thread::Builder::new()
        .name("metrics-upkeep".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                handle.run_upkeep();
            }
        });
    if let Err(error) = started {
        tracing::error!(%error, "no thread for metrics upkeep: samples are folded only on scrapes");
    }
}

/// Metric handles by label values, each registered once: building a labelled key and
/// finding it in the recorder's registry on every request cost more than the counting
/// itself (docs/benchmarks.md, "Telemetry"). Label values are bounded (operations, plans,
/// outcomes), so the map is too.
struct Registered<K, V>(LazyLock<RwLock<HashMap<K, V>>>);

impl<K: std::hash::Hash + Eq, V: Clone> Registered<K, V> {
    const fn new() -> Self {
        Self(LazyLock::new(RwLock::default))
    }

    /// The handle for `labels`, registered by `register` the first time.
    fn get(&self, labels: K, register: impl FnOnce(&K) -> V) -> V {
        if let Some(found) = self
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&labels)
        {
            return found.clone();
        }
        let mut registered = self.0.write().unwrap_or_else(PoisonError::into_inner);
        let handle = register(&labels);
        registered.entry(labels).or_insert(handle).clone()
    }
}

/// One operation's request counters (by status class) and latency histogram.
struct OperationMetrics {
    /// `1xx` to `5xx`.
    by_class: [metrics::Counter; 5],
    latency: metrics::Histogram,
}

impl OperationMetrics {
    fn of(operation: &'static str) -> Arc<Self> {
        static REGISTERED: Registered<&'static str, Arc<OperationMetrics>> = Registered::new();
        REGISTERED.get(operation, |&operation| {
            Arc::new(Self {
                by_class: ["1xx", "2xx", "3xx", "4xx", "5xx"].map(|class| {
                    metrics::counter!(REQUESTS, "operation" => operation, "status" => class)
                }),
                latency: metrics::histogram!(LATENCY, "operation" => operation),
            })
        })
    }
}

/// Records one served request.
pub fn request_served(operation: &'static str, status: u16, elapsed: Duration) {
    let class = usize::from((status / 100).clamp(1, 5) - 1);
    let metrics = OperationMetrics::of(operation);
    metrics.by_class[class].increment(1);
    metrics.latency.record(elapsed.as_secs_f64());
}

/// Counts a request in flight until the guard is dropped.
pub fn in_flight() -> InFlight {
    in_flight_gauge().increment(1.0);
    InFlight
}

fn in_flight_gauge() -> &'static metrics::Gauge {
    static GAUGE: LazyLock<metrics::Gauge> = LazyLock::new(|| metrics::gauge!(IN_FLIGHT));
    &GAUGE
}

/// See [`in_flight`].
#[derive(Debug)]
pub struct InFlight;

impl Drop for InFlight {
    fn drop(&mut self) {
        in_flight_gauge().decrement(1.0);
    }
}

/// The hit and miss counters of the record cache `cache`, registered once: a page of the
/// timeline looks up dozens of records, and a registry lookup per record would cost more
/// than the lookup itself.
pub fn cache_lookups(cache: &'static str) -> [metrics::Counter; 2] {
    ["hit", "miss"]
        .map(|result| metrics::counter!(CACHE_LOOKUPS, "cache" => cache, "result" => result))
}

/// Records how the response cache took part in a request to `operation`.
pub fn response_cache(operation: &'static str, result: &'static str) {
    static REGISTERED: Registered<(&'static str, &'static str), metrics::Counter> =
        Registered::new();
    REGISTERED
        .get((operation, result), |&(operation, result)| {
            metrics::counter!(RESPONSE_CACHE, "operation" => operation, "result" => result)
        })
        .increment(1);
}

/// Records how far behind each outbox consumer is, just before a scrape renders it.
pub fn outbox_backlog(backlog: &[(String, Option<chrono::DateTime<chrono::Utc>>)]) {
    let now = chrono::Utc::now();
    for (consumer, oldest) in backlog {
        let lag = oldest.map_or(0.0, |at| {
            now.signed_duration_since(at).as_seconds_f64().max(0.0)
        });
        metrics::gauge!(OUTBOX_LAG, "consumer" => consumer.clone()).set(lag);
    }
}

/// Counts outbox events `consumer` handled.
pub fn outbox_consumed(consumer: &'static str, events: u64) {
    metrics::counter!(OUTBOX_CONSUMED, "consumer" => consumer).increment(events);
}

/// Counts outbox events pruned.
pub fn outbox_pruned(events: u64) {
    metrics::counter!(OUTBOX_PRUNED).increment(events);
}

/// Records the connection pool's state, just before a scrape renders it.
pub fn pool_usage(usage: crate::infra::store::PoolUsage) {
    let in_use = usage.open.saturating_sub(usage.idle);
    metrics::gauge!(POOL_CONNECTIONS, "state" => "in_use").set(f64::from(in_use));
    metrics::gauge!(POOL_CONNECTIONS, "state" => "idle").set(f64::from(usage.idle));
}

/// Records a gateway decision for a key of `plan`.
pub fn gateway_decision(plan: uuid::Uuid, outcome: &'static str) {
    static REGISTERED: Registered<(uuid::Uuid, &'static str), metrics::Counter> = Registered::new();
    REGISTERED
        .get((plan, outcome), |&(plan, outcome)| {
            metrics::counter!(GATEWAY_DECISIONS, "plan" => plan.to_string(), "outcome" => outcome)
        })
        .increment(1);
}

/// Shows whether the picture store's circuit breaker is in `state` (each state is its own
/// series, 1 for the current one).
pub fn blob_breaker_state(state: &'static str, current: bool) {
    metrics::gauge!(BLOB_BREAKER_STATE, "state" => state).set(if current { 1.0 } else { 0.0 });
}

/// Counts a transition of the picture store's circuit breaker into `to`.
pub fn blob_breaker_transition(to: &'static str) {
    metrics::counter!(BLOB_BREAKER_TRANSITIONS, "to" => to).increment(1);
}

/// Counts a picture store call the circuit breaker refused.
pub fn blob_breaker_rejected() {
    metrics::counter!(BLOB_BREAKER_REJECTED).increment(1);
}

/// Counts a webhook delivery attempt that came to `outcome`.
pub fn webhook_attempt(outcome: &'static str) {
    metrics::counter!(WEBHOOK_ATTEMPTS, "outcome" => outcome).increment(1);
}

/// Records the commit-to-receipt latency of a delivery that succeeded at once.
pub fn webhook_latency(elapsed: Duration) {
    metrics::histogram!(WEBHOOK_LATENCY).record(elapsed.as_secs_f64());
}

/// Records how many webhook endpoints' breakers are open, just before a scrape renders it.
pub fn webhook_breakers_open(open: u64) {
    metrics::gauge!(WEBHOOK_BREAKERS_OPEN).set(open as f64);
}

/// Counts a webhook breaker's transition into `to`.
pub fn webhook_breaker_transition(to: &'static str) {
    metrics::counter!(WEBHOOK_BREAKER_TRANSITIONS, "to" => to).increment(1);
}

/// Records how many stream sockets are open, just before a scrape renders it.
pub fn stream_sockets(open: usize) {
    metrics::gauge!(STREAM_SOCKETS).set(open as f64);
}

/// Counts a stream socket closed as lagged.
pub fn stream_lagged() {
    metrics::counter!(STREAM_LAGGED).increment(1);
}
