//! The circuit breaker on the S3 picture store (issue 21), against the test S3 server
//! (`MINITTER_TEST_S3_ENDPOINT`) behind a relay that is cut and restored. Between the
//! server and the relay sits a [`Door`] that counts the connections and bytes sent towards
//! the store, so "nothing reached S3" is a count, not a timing.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use minitter_test_support::{Backend, Relay, needs_s3};

use crate::helpers::{TestApp, assert_problem, metric_sample, spawn_app_with};
use crate::pictures::png;

/// The breaker's settings in these tests.
const FAILURES: u32 = 2;
const COOL_DOWN: Duration = Duration::from_secs(2);

/// A TCP pass-through to a port of 127.0.0.1 that counts what goes through it towards
/// the port.
struct Door {
    port: u16,
    connections: Arc<AtomicUsize>,
    bytes: Arc<AtomicUsize>,
    accept: tokio::task::JoinHandle<()>,
}

impl Door {
    async fn to(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let connections = Arc::new(AtomicUsize::new(0));
        let bytes = Arc::new(AtomicUsize::new(0));
        let (counted, sent) = (Arc::clone(&connections), Arc::clone(&bytes));
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(pass(inbound, target, Arc::clone(&sent)));
            }
        });
        Self {
            port,
            connections,
            bytes,
            accept,
        }
    }

    /// Connections opened and bytes sent towards the store so far.
    fn reached(&self) -> (usize, usize) {
        (
            self.connections.load(Ordering::SeqCst),
            self.bytes.load(Ordering::SeqCst),
        )
    }
}

impl Drop for Door {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Copies both ways until either side closes, counting the bytes towards `target`.
async fn pass(inbound: TcpStream, target: u16, sent: Arc<AtomicUsize>) {
    let Ok(outbound) = TcpStream::connect(("127.0.0.1", target)).await else {
        return;
    };
    let (mut from_client, mut to_client) = inbound.into_split();
    let (mut from_store, mut to_store) = outbound.into_split();
    let up = async {
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            let read = match from_client.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read) => read,
            };
            sent.fetch_add(read, Ordering::SeqCst);
            if to_store.write_all(&buffer[..read]).await.is_err() {
                return;
            }
        }
    };
    let down = async {
        let _ = tokio::io::copy(&mut from_store, &mut to_client).await;
    };
    tokio::select! {
        () = up => {}
        () = down => {}
    }
}

/// A server storing pictures in a fresh bucket of the test S3 server, reached through a
/// door and a relay, with a breaker that opens after [`FAILURES`] for [`COOL_DOWN`].
async fn guarded_s3_app() -> (TestApp, Relay, Door) {
    let endpoint = minitter_test_support::required_env("MINITTER_TEST_S3_ENDPOINT");
    let target = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let relay = Relay::to(target).await;
    let door = Door::to(relay.port()).await;
    let bucket = format!("minitter-{}", uuid::Uuid::now_v7());
    // Moto accepts any credentials; the bucket is made with a plain request.
    let created = reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .expect("create bucket");
    assert!(created.status().is_success(), "{}", created.status());
    let port = door.port;
    let app = spawn_app_with(Backend::Sqlite, |config| {
        config.s3_bucket = Some(bucket);
        config.s3_endpoint = Some(format!("http://127.0.0.1:{port}"));
        config.s3_access_key_id = Some("test".into());
        config.s3_secret_access_key = Some("test".to_owned().into());
        config.s3_breaker_failures = FAILURES;
        config.s3_breaker_cool_down_seconds = u32::try_from(COOL_DOWN.as_secs()).expect("seconds");
    })
    .await;
    (app, relay, door)
}

/// The breaker's metrics at one scrape.
#[derive(Debug, Clone, Copy)]
struct Breaker {
    /// The state whose gauge is 1.
    state: &'static str,
    to_open: f64,
    to_half_open: f64,
    to_closed: f64,
    rejected: f64,
    /// Failed store calls (`minitter_blob_errors_total`): refusals are not among them.
    errors: f64,
}

async fn breaker(app: &TestApp) -> Breaker {
    let text = app.scrape_metrics().await;
    let current: Vec<&'static str> = ["closed", "open", "half_open"]
        .into_iter()
        .filter(|state| {
            metric_sample(
                &text,
                &format!("minitter_blob_breaker_state{{state=\"{state}\"}}"),
            ) == Some(1.0)
        })
        .collect();
    assert_eq!(current.len(), 1, "one state at a time: {text}");
    let transitions = |to: &str| {
        metric_sample(
            &text,
            &format!("minitter_blob_breaker_transitions_total{{to=\"{to}\"}}"),
        )
        .unwrap_or(0.0)
    };
    Breaker {
        state: current[0],
        to_open: transitions("open"),
        to_half_open: transitions("half_open"),
        to_closed: transitions("closed"),
        rejected: metric_sample(&text, "minitter_blob_breaker_rejected_total").unwrap_or(0.0),
        errors: metric_sample(&text, "minitter_blob_errors_total").unwrap_or(0.0),
    }
}

struct Ada {
    id: String,
    auth: String,
}

async fn upload(app: &TestApp, ada: &Ada, bytes: Vec<u8>) -> reqwest::Response {
    app.http
        .put(app.url("/v1/me/picture"))
        .header("authorization", &ada.auth)
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .expect("request")
}

async fn download(app: &TestApp, ada: &Ada) -> reqwest::Response {
    app.http
        .get(app.url(&format!("/v1/users/{}/picture", ada.id)))
        .send()
        .await
        .expect("request")
}

/// A 503 `unavailable`; returns its `Retry-After` in seconds.
async fn assert_unavailable(response: reqwest::Response, what: &str) -> u64 {
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok()?.parse().ok())
        .unwrap_or_else(|| panic!("{what}: no Retry-After in seconds: {response:?}"));
    assert_problem(response, 503, "unavailable").await;
    retry_after
}

/// A 503 of the open breaker: `Retry-After` says when the probe may go, in whole seconds.
async fn assert_refused(response: reqwest::Response, what: &str) {
    let retry_after = assert_unavailable(response, what).await;
    assert!(
        (1..=COOL_DOWN.as_secs()).contains(&retry_after),
        "{what}: Retry-After {retry_after} s, the cool-down is {COOL_DOWN:?}"
    );
}

/// Sleeps until `COOL_DOWN` (and a margin) has passed since `since`.
async fn after_the_cool_down(since: Instant) {
    tokio::time::sleep_until((since + COOL_DOWN + Duration::from_millis(200)).into()).await;
}

async fn the_breaker_opens_answers_at_once_probes_after_the_cool_down_and_closes() {
    let (app, relay, door) = guarded_s3_app().await;
    let id = app.sign_up("ada_l", "ada@example.com").await;
    let token = app.log_in("ada@example.com").await;
    let ada = Ada {
        id,
        auth: format!("Bearer {token}"),
    };
    let first = png(20, 20);
    assert_eq!(upload(&app, &ada, first.clone()).await.status(), 200);
    let start = breaker(&app).await;
    assert_eq!(start.state, "closed");

    // S3 goes away: two failures in a row (an upload, a download) open the breaker.
    relay.cut();
    let before = door.reached();
    assert_unavailable(upload(&app, &ada, png(30, 30)).await, "failed upload").await;
    assert_unavailable(download(&app, &ada).await, "failed download").await;
    let opened_at = Instant::now();
    assert!(
        door.reached().0 > before.0,
        "the failed calls reached for the store"
    );
    let opened = breaker(&app).await;
    assert_eq!(opened.state, "open");
    assert_eq!(opened.to_open - start.to_open, 1.0);
    assert_eq!(opened.rejected, start.rejected);

    // Open: every picture operation is a 503 at once, and nothing goes towards S3, even
    // after S3 is back, until the cool-down has passed.
    let quiet = door.reached();
    let timer = Instant::now();
    assert_refused(upload(&app, &ada, png(31, 31)).await, "refused upload").await;
    assert_refused(download(&app, &ada).await, "refused download").await;
    relay.restore();
    assert_refused(upload(&app, &ada, png(32, 32)).await, "refused upload").await;
    let refused_in = timer.elapsed();
    assert_eq!(door.reached(), quiet, "no connection, no byte towards S3");
    let refusing = breaker(&app).await;
    assert_eq!(refusing.state, "open");
    assert_eq!(refusing.rejected - opened.rejected, 3.0);
    assert_eq!(
        refusing.errors, opened.errors,
        "refusals are not store failures"
    );
    assert!(
        opened_at.elapsed() < COOL_DOWN,
        "the cool-down ran out before the refusals were checked (a slow machine): inconclusive"
    );
    eprintln!("three refused picture requests took {refused_in:?} in all");

    // After the cool-down, with S3 down again, the one probe fails: open again.
    relay.cut();
    after_the_cool_down(opened_at).await;
    let before = door.reached();
    assert_unavailable(upload(&app, &ada, png(33, 33)).await, "failed probe").await;
    let reopened_at = Instant::now();
    assert!(
        door.reached().0 > before.0,
        "the probe reached for the store"
    );
    let reopened = breaker(&app).await;
    assert_eq!(reopened.state, "open");
    assert_eq!(reopened.to_half_open - refusing.to_half_open, 1.0);
    assert_eq!(reopened.to_open - refusing.to_open, 1.0);
    let quiet = door.reached();
    assert_refused(download(&app, &ada).await, "refused download").await;
    assert_eq!(door.reached(), quiet, "refused again at once");

    // S3 is back; after the cool-down one probe (an upload) goes through and closes the
    // breaker, and pictures work again.
    relay.restore();
    after_the_cool_down(reopened_at).await;
    let second = png(40, 40);
    let before = door.reached();
    assert_eq!(upload(&app, &ada, second.clone()).await.status(), 200);
    assert!(door.reached().1 > before.1, "the probe went to S3");
    let closed = breaker(&app).await;
    assert_eq!(closed.state, "closed");
    assert_eq!(closed.to_half_open - reopened.to_half_open, 1.0);
    assert_eq!(closed.to_closed - reopened.to_closed, 1.0);
    assert_eq!(closed.to_open, reopened.to_open);
    let back = download(&app, &ada).await;
    assert_eq!(back.status(), 200);
    assert_eq!(back.bytes().await.expect("body").to_vec(), second);
    assert_eq!(
        upload(&app, &ada, png(41, 41)).await.status(),
        200,
        "closed: uploads work again"
    );
}

needs_s3!(the_breaker_opens_answers_at_once_probes_after_the_cool_down_and_closes);
