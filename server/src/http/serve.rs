//! The connection loop: what poem's `Server::run_with_graceful_shutdown` does, with
//! hyper's parse limits set by us.
//!
//! Why not poem's `Server`: it builds each hyper connection with hyper's HTTP/1 defaults
//! and exposes none of them. hyper answers a request over its parse limits itself — 431
//! for more than 100 header fields or a head over its read buffer, 414 for a request
//! target over 65 534 bytes — with an empty body: no Problem document, no request id, no
//! access line. Here hyper gets limits far above the documented ones of
//! [`crate::http::request_limits`], so that every request a real client could send reaches the
//! middleware, which refuses what is over the documented limits with a Problem. Only a
//! request beyond hyper's hard limits still gets hyper's bare answer: those limits bound
//! the memory one connection can hold before anything of ours runs, and hyper's parser
//! has no hook to answer them otherwise. They are, for HTTP/1, more than
//! [`HARD_MAX_HEADER_FIELDS`] fields, a head over hyper's ~408 KiB read buffer (its
//! default, kept) or a target over 65 534 bytes (a constant of hyper); for HTTP/2 a header
//! list over [`HARD_MAX_HEADER_LIST_BYTES`] (h2 answers 431 to those).
//!
//! The rest is as poem does it: HTTP/1.1 and HTTP/2 (prior knowledge) on each connection,
//! with upgrades (WebSocket); on the shutdown signal, stop accepting, let each connection
//! finish what it is serving (HTTP/1 keep-alive ends, HTTP/2 sends GOAWAY), and drop the
//! connections still busy when the grace period ends. Three differences: HTTP/2 keeps
//! hyper's default of 200 concurrent streams per connection (poem lifts the limit), a
//! failing `accept` (out of file descriptors, say) is logged and retried after a pause
//! instead of in a busy loop, and while the instance is [`Draining`] (told to stop, still
//! serving for the drain period before the shutdown signal), every HTTP/1 answer says
//! `Connection: close`.
//!
//! Why `Connection: close` while draining: a client or load balancer that keeps its
//! connections open would otherwise go on sending on them until the instance stops
//! accepting, and then one of its requests may cross the instance closing the idle
//! connection, which fails that request (and a proxy only retries the idempotent ones).
//! Closed after each answer, its next request opens a new connection, which the balancer
//! sends to an instance that is ready. HTTP/2 has no such header; its connections get
//! GOAWAY at the shutdown signal, which tells the client which streams were served.

use std::convert::Infallible;
use std::future::Future;
use std::io::ErrorKind;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use poem::endpoint::BoxEndpoint;
use poem::http::header::CONNECTION;
use poem::http::uri::Scheme;
use poem::http::{HeaderValue, StatusCode, Version};
use poem::listener::Acceptor;
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Endpoint, Response};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::http::request_limits;

/// hyper refuses an HTTP/1 request with more header fields than this itself (bare 431).
/// Its default is 100, the documented limit: at that, every request over the limit would
/// get the bare answer. Raising it costs one heap allocation per request head (hyper
/// keeps the default's slots on the stack), of 64 bytes a slot.
pub const HARD_MAX_HEADER_FIELDS: usize = 1024;
/// h2 refuses an HTTP/2 header list larger than this itself (bare 431), counted as
/// RFC 9113 §6.5.2 does. poem sets 16 KiB, the documented limit itself.
pub const HARD_MAX_HEADER_LIST_BYTES: u32 = 64 * 1024;
/// How long to wait before accepting again after `accept` failed for a reason that
/// concerns the listener, not one connection (such as running out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

// hyper's limits must sit above the documented ones, or the middleware never sees what
// it should refuse. HTTP/2 counts 32 bytes more per field, and the pseudo-header fields
// (`:path` is the request target).
const _: () = assert!(HARD_MAX_HEADER_FIELDS > request_limits::MAX_HEADER_FIELDS);
const _: () = assert!(
    HARD_MAX_HEADER_LIST_BYTES as usize
        > request_limits::MAX_HEADER_BYTES
            + request_limits::MAX_TARGET_BYTES
            + 32 * (request_limits::MAX_HEADER_FIELDS + 4)
);

/// Whether the instance has been told to stop: it still serves and accepts, but says so
/// (`/readyz` reads it, and HTTP/1 answers close their connection). Set once, never
/// cleared.
#[derive(Debug, Default)]
pub struct Draining(AtomicBool);

impl Draining {
    /// From now on the instance is draining.
    pub fn start(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether [`Self::start`] was called.
    pub fn is_started(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Where the server is in its life; each connection watches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    /// Finish what is in flight, take nothing new.
    Finishing,
    /// The grace period is over: drop the connection.
    Closing,
}

/// Serves `endpoint` on the connections `acceptor` yields until `shutdown` completes,
/// then lets them finish for at most `grace`. Once `draining` is started, HTTP/1 answers
/// close their connection.
pub async fn serve<A: Acceptor>(
    mut acceptor: A,
    endpoint: BoxEndpoint<'static, Response>,
    draining: Arc<Draining>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let endpoint = Arc::new(endpoint);
    let builder = Arc::new(connection_builder());
    // Every connection holds a receiver; `closed()` on the sender says when all are gone.
    let (phase, watcher) = watch::channel(Phase::Serving);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = acceptor.accept() => match accepted {
                Ok((io, local_addr, remote_addr, scheme)) => {
                    let connection = Connection {
                        local_addr,
                        remote_addr,
                        scheme,
                        endpoint: Arc::clone(&endpoint),
                        draining: Arc::clone(&draining),
                        builder: Arc::clone(&builder),
                        phase: watcher.clone(),
                    };
                    tokio::spawn(connection.serve(io));
                }
                Err(error) if is_about_one_connection(&error) => {
                    tracing::debug!(%error, "a connection failed while being accepted");
                }
                Err(error) => {
                    tracing::warn!(%error, "accepting connections failed; retrying");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    drop(acceptor);
    drop(watcher);
    phase.send_replace(Phase::Finishing);
    if tokio::time::timeout(grace, phase.closed()).await.is_err() {
        tracing::warn!(
            grace_seconds = grace.as_secs_f64(),
            connections = phase.receiver_count(),
            "connections still busy after the grace period are dropped"
        );
        phase.send_replace(Phase::Closing);
        phase.closed().await;
    }
}

/// hyper's builder for every connection, with the hard limits above.
fn connection_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().max_headers(HARD_MAX_HEADER_FIELDS);
    builder
        .http2()
        .max_header_list_size(HARD_MAX_HEADER_LIST_BYTES);
    builder
}

/// One accepted connection and what serving it needs.
struct Connection {
    local_addr: LocalAddr,
    remote_addr: RemoteAddr,
    scheme: Scheme,
    endpoint: Arc<BoxEndpoint<'static, Response>>,
    draining: Arc<Draining>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    phase: watch::Receiver<Phase>,
}

impl Connection {
    /// Serves requests on `io` until the client closes it, or until the server's phase
    /// says to stop.
    async fn serve<Io>(self, io: Io)
    where
        Io: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let Self {
            local_addr,
            remote_addr,
            scheme,
            endpoint,
            draining,
            builder,
            mut phase,
        } = self;
        let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
            let endpoint = Arc::clone(&endpoint);
            let draining = Arc::clone(&draining);
            let version = request.version();
            let request = poem::Request::from((
                request,
                local_addr.clone(),
                remote_addr.clone(),
                scheme.clone(),
            ));
            async move {
                let mut response = http::Response::from(endpoint.get_response(request).await);
                // Read when the answer is ready: a request that began before the drain
                // and ends after it closes its connection too. Not an upgrade's answer,
                // whose `Connection: upgrade` hands the connection over.
                if draining.is_started()
                    && version < Version::HTTP_2
                    && response.status() != StatusCode::SWITCHING_PROTOCOLS
                {
                    response
                        .headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("close"));
                }
                Ok::<_, Infallible>(response)
            }
        });
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
        tokio::pin!(connection);
        loop {
            tokio::select! {
                _ = connection.as_mut() => return,
                changed = phase.changed() => {
                    // The sender is gone only if the server itself was dropped.
                    let now = changed.map_or(Phase::Closing, |()| *phase.borrow_and_update());
                    match now {
                        Phase::Serving => {}
                        Phase::Finishing => connection.as_mut().graceful_shutdown(),
                        Phase::Closing => return,
                    }
                }
            }
        }
    }
}

/// Errors of `accept` that concern one incoming connection (it was reset before it was
/// accepted), after which accepting again at once is right.
fn is_about_one_connection(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::Interrupted
    )
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use poem::listener::{Listener, TcpListener};
    use poem::{EndpointExt, IntoEndpoint};
    use tokio::sync::oneshot;

    use super::*;

    /// A server on a free port, answering with `endpoint`, stopped by the sender.
    async fn start(
        endpoint: BoxEndpoint<'static, Response>,
        grace: Duration,
    ) -> (String, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        start_draining_with(endpoint, grace, Arc::default()).await
    }

    /// Like [`start`], with the draining flag in the test's hands.
    async fn start_draining_with(
        endpoint: BoxEndpoint<'static, Response>,
        grace: Duration,
        draining: Arc<Draining>,
    ) -> (String, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .expect("bind");
        let port = acceptor.local_addr()[0]
            .as_socket_addr()
            .expect("tcp")
            .port();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let server = tokio::spawn(serve(acceptor, endpoint, draining, shutdown, grace));
        (format!("http://127.0.0.1:{port}/"), stop, server)
    }

    /// An endpoint that says when a request arrived, then answers after `delay`.
    fn slow(
        delay: Duration,
    ) -> (
        BoxEndpoint<'static, Response>,
        tokio::sync::mpsc::Receiver<()>,
    ) {
        let (arrived, arrivals) = tokio::sync::mpsc::channel(8);
        let endpoint = poem::endpoint::make(move |_request| {
            let arrived = arrived.clone();
            async move {
                let _ = arrived.send(()).await;
                tokio::time::sleep(delay).await;
                "done"
            }
        });
        (endpoint.into_endpoint().map_to_response().boxed(), arrivals)
    }

    #[tokio::test]
    async fn a_request_in_flight_at_shutdown_is_answered_and_then_nothing_is_accepted() {
        let (endpoint, mut arrivals) = slow(Duration::from_millis(300));
        let (url, stop, server) = start(endpoint, Duration::from_secs(10)).await;
        let in_flight = tokio::spawn(reqwest::get(url.clone()));
        arrivals.recv().await.expect("the request arrived");

        stop.send(()).expect("the server runs");
        let response = in_flight.await.expect("joined").expect("answered");
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.expect("body"), "done");
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the server stops once nothing is in flight")
            .expect("joined");
        assert!(reqwest::get(url).await.is_err(), "no longer accepting");
    }

    #[tokio::test]
    async fn a_request_still_busy_when_the_grace_period_ends_is_dropped() {
        let (endpoint, mut arrivals) = slow(Duration::from_secs(60));
        let (url, stop, server) = start(endpoint, Duration::from_millis(200)).await;
        let in_flight = tokio::spawn(reqwest::get(url));
        arrivals.recv().await.expect("the request arrived");

        let stopping = Instant::now();
        stop.send(()).expect("the server runs");
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the server stops after the grace period")
            .expect("joined");
        assert!(stopping.elapsed() >= Duration::from_millis(200));
        assert!(
            in_flight.await.expect("joined").is_err(),
            "the connection was closed"
        );
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_does_not_hold_the_shutdown() {
        let (endpoint, _arrivals) = slow(Duration::ZERO);
        let (url, stop, server) = start(endpoint, Duration::from_secs(10)).await;
        // reqwest keeps the connection open in its pool after the answer.
        let client = reqwest::Client::new();
        let response = client.get(&url).send().await.expect("answered");
        assert_eq!(response.text().await.expect("body"), "done");

        stop.send(()).expect("the server runs");
        tokio::time::timeout(Duration::from_secs(2), server)
            .await
            .expect("the server stops without waiting for idle connections")
            .expect("joined");
    }

    #[tokio::test]
    async fn while_draining_http1_answers_close_their_connection_and_new_ones_are_served() {
        let (endpoint, _arrivals) = slow(Duration::ZERO);
        let draining = Arc::new(Draining::default());
        let (url, _stop, _server) =
            start_draining_with(endpoint, Duration::from_secs(1), Arc::clone(&draining)).await;
        let client = reqwest::Client::new();
        let before = client.get(&url).send().await.expect("answered");
        assert_eq!(before.headers().get("connection"), None, "kept alive");

        draining.start();
        for _ in 0..2 {
            // The first goes on the kept-alive connection, the second on a new one.
            let during = client.get(&url).send().await.expect("still served");
            assert_eq!(during.status(), 200);
            assert_eq!(during.headers()["connection"], "close");
            assert_eq!(during.text().await.expect("body"), "done");
        }
    }

    #[tokio::test]
    async fn hyper_lets_far_more_than_the_documented_header_fields_through() {
        let endpoint = poem::endpoint::make(|request: poem::Request| async move {
            request.headers().len().to_string()
        });
        let endpoint = endpoint.into_endpoint().map_to_response().boxed();
        let (url, _stop, _server) = start(endpoint, Duration::from_secs(1)).await;
        let mut request = reqwest::Client::new().get(&url);
        for i in 0..(HARD_MAX_HEADER_FIELDS - 10) {
            request = request.header(format!("x-field-{i}"), "1");
        }
        let response = request.send().await.expect("answered");
        assert_eq!(response.status(), 200, "not hyper's own 431");
        let fields: usize = response
            .text()
            .await
            .expect("body")
            .parse()
            .expect("a count");
        assert!(fields > HARD_MAX_HEADER_FIELDS - 10);
    }
}
