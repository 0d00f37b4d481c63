//! OpenTelemetry export (`MINITTER_OTLP_ENDPOINT`): a request's span reaches a collector
//! with the request id on it, and nothing is sent without the setting.
//!
//! The global tracing subscriber is installed once per process, so these tests run the
//! server binary as a child process, next to a fake collector that keeps what it is sent.
//! OTLP/protobuf carries strings as plain UTF-8, so a byte search finds the attributes.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use minitter_test_support::Backend;
use poem::listener::{Acceptor, Listener, TcpListener};

use crate::helpers::spawn_app;

/// An OTLP/HTTP collector that answers 200 to everything and keeps each request's path
/// and body.
struct Collector {
    address: String,
    received: Arc<Mutex<Vec<Received>>>,
}

/// One request the collector was sent.
type Received = (String, Vec<u8>);

impl Collector {
    async fn start() -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&received);
        let endpoint = poem::endpoint::make(move |request: poem::Request| {
            let kept = Arc::clone(&kept);
            async move {
                let path = request.uri().path().to_owned();
                let body = request.into_body().into_vec().await.unwrap_or_default();
                kept.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((path, body));
                poem::http::StatusCode::OK
            }
        });
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .expect("bind the collector");
        let port = acceptor
            .local_addr()
            .first()
            .and_then(|addr| addr.as_socket_addr().map(|a| a.port()))
            .expect("a TCP port");
        tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(endpoint));
        Self {
            address: format!("http://127.0.0.1:{port}"),
            received,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The first request whose body holds `needle`, waiting up to ten seconds.
    async fn wait_for(&self, needle: &[u8]) -> Option<Received> {
        for _ in 0..100 {
            let found = self
                .received()
                .into_iter()
                .find(|(_, body)| contains(body, needle));
            if found.is_some() {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Batches go out every 100 ms rather than every 5 s.
const SOON: (&str, &str) = ("OTEL_BSP_SCHEDULE_DELAY", "100");

#[tokio::test]
async fn a_requests_span_reaches_the_collector_with_its_request_id() {
    let collector = Collector::start().await;
    let app = spawn_app(Backend::Sqlite).await;
    let server = app.start_child_with_env(
        "info",
        &[("MINITTER_OTLP_ENDPOINT", collector.address.as_str()), SOON],
    );
    let request_id = format!("otlp-{}", uuid::Uuid::now_v7());
    let nobody = uuid::Uuid::now_v7();

    let response = server
        .app
        .http
        .get(server.app.url(&format!("/v1/users/{nobody}")))
        .header("x-request-id", &request_id)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 404);
    let exported = collector.wait_for(request_id.as_bytes()).await;
    let logs = server.kill();

    let (path, body) = exported.unwrap_or_else(|| {
        panic!(
            "no span with the request id reached the collector ({} requests); the server \
             said: {logs}",
            collector.received().len()
        )
    });
    assert_eq!(path, "/v1/traces");
    for attribute in [
        "request_id",
        "operation_id",
        "get_user",
        "key_id",
        "http.response.status_code",
        "minitter",
    ] {
        assert!(
            contains(&body, attribute.as_bytes()),
            "the exported span lacks {attribute:?}"
        );
    }
}

#[tokio::test]
async fn without_the_setting_nothing_is_exported() {
    let collector = Collector::start().await;
    let app = spawn_app(Backend::Sqlite).await;
    let nobody = uuid::Uuid::now_v7();
    // The standard variable alone does not turn export on.
    let server = app.start_child_with_env(
        "info",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.address.as_str()),
            SOON,
        ],
    );

    let response = server
        .app
        .http
        .get(server.app.url(&format!("/v1/users/{nobody}")))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 404);
    // Ten export intervals.
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.kill();

    assert!(collector.received().is_empty(), "something was exported");
}
