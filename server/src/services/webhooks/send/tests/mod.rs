use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http::StatusCode;
use poem::listener::{Acceptor, TcpAcceptor};
use tokio::net::TcpListener;

use super::*;
use crate::services::webhooks::ssrf::USER_AGENT;

mod refusals;

/// What a test receiver saw of one request.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

/// A real HTTP server on 127.0.0.1 and a port of its own, recording every request.
struct Receiver {
    base: Url,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    /// The URL of `path_and_query` on this receiver.
    fn url(&self, path_and_query: &str) -> Url {
        self.base.join(path_and_query).expect("a valid URL")
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().expect("not poisoned").clone()
    }
}

/// Starts a receiver that answers each request with `respond(path)`.
async fn receiver<F, Fut>(respond: F) -> Receiver
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = poem::Response> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let port = listener.local_addr().expect("a bound address").port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let respond = Arc::new(respond);
    let log = Arc::clone(&received);
    let endpoint = poem::endpoint::make(move |mut request: poem::Request| {
        let log = Arc::clone(&log);
        let respond = Arc::clone(&respond);
        async move {
            let body = request.take_body().into_vec().await.unwrap_or_default();
            let path = request.uri().path().to_owned();
            log.lock().expect("not poisoned").push(Received {
                path: path.clone(),
                headers: request.headers().clone(),
                body,
            });
            respond(path).await
        }
    });
    let acceptor = TcpAcceptor::from_tokio(listener).expect("an acceptor");
    assert_eq!(acceptor.local_addr().len(), 1);
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(endpoint));
    Receiver {
        base: Url::parse(&format!("http://127.0.0.1:{port}/")).expect("a valid URL"),
        received,
    }
}

fn status(code: StatusCode) -> poem::Response {
    poem::Response::builder().status(code).finish()
}

fn loopback_policy() -> UrlPolicy {
    UrlPolicy::new(vec!["127.0.0.1/32".parse().expect("a network")])
}

fn sender() -> Sender {
    Sender::new(loopback_policy())
}

const PAYLOAD: &[u8] = br#"{"type":"tweet.created","data":{"id":"42","text":"hello"}}"#;
const ID: &str = "msg_01939b3e-7c1a-7d2e-9f00-000000000001";

fn message(payload: &[u8]) -> Message<'_> {
    Message {
        id: ID,
        timestamp: Utc::now(),
        payload,
    }
}

fn header<'a>(received: &'a Received, name: &str) -> &'a str {
    received
        .headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .expect("a text header")
}

#[test]
fn a_new_secret_is_32_random_bytes_the_crate_accepts() {
    let secret = new_secret();
    let key = secret.strip_prefix("whsec_").expect("the whsec_ prefix");
    let bytes = STANDARD.decode(key).expect("standard base64");
    assert_eq!(bytes.len(), 32);
    assert!(Webhook::new(&secret).is_ok());
    assert_ne!(new_secret(), secret);
}

#[tokio::test]
async fn a_delivery_verifies_with_each_of_two_secrets() {
    let receiver = receiver(|_| async { status(StatusCode::OK) }).await;
    let (old, new) = (new_secret(), new_secret());
    let message = message(PAYLOAD);

    let attempt = sender()
        .send(&receiver.url("/hook"), &[&old, &new], &message)
        .await;

    assert_eq!(attempt.outcome, Outcome::Delivered, "{attempt:?}");
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    let request = &received[0];
    assert_eq!(request.body, PAYLOAD);
    for secret in [&old, &new] {
        Webhook::new(secret)
            .expect("a valid secret")
            .verify(&request.body, &request.headers)
            .expect("the crate verifies the request");
    }
    // A secret that did not sign does not verify: the check above means something.
    assert!(
        Webhook::new(&new_secret())
            .expect("a valid secret")
            .verify(&request.body, &request.headers)
            .is_err()
    );
    assert_eq!(header(request, "webhook-id"), ID);
    assert_eq!(
        header(request, "webhook-timestamp"),
        message.timestamp.timestamp().to_string()
    );
    assert_eq!(header(request, "content-type"), "application/json");
    assert_eq!(header(request, "user-agent"), USER_AGENT);
    let signatures: Vec<&str> = header(request, "webhook-signature").split(' ').collect();
    assert_eq!(signatures.len(), 2);
    assert!(signatures.iter().all(|s| s.starts_with("v1,")));
}

#[tokio::test]
async fn a_delivery_with_one_secret_carries_one_signature() {
    let receiver = receiver(|_| async { status(StatusCode::NO_CONTENT) }).await;
    let secret = new_secret();

    let attempt = sender()
        .send(&receiver.url("/hook"), &[&secret], &message(PAYLOAD))
        .await;

    assert_eq!(attempt.outcome, Outcome::Delivered);
    assert_eq!(attempt.status, Some(204));
    let request = &receiver.received()[0];
    assert!(!header(request, "webhook-signature").contains(' '));
    Webhook::new(&secret)
        .expect("a valid secret")
        .verify(&request.body, &request.headers)
        .expect("the crate verifies the request");
}

#[tokio::test]
async fn a_2xx_answer_is_delivered_with_its_status_and_excerpt() {
    let receiver = receiver(|_| async {
        poem::Response::builder()
            .status(StatusCode::ACCEPTED)
            .body("queued")
    })
    .await;

    let attempt = sender()
        .send(&receiver.url("/hook"), &[&new_secret()], &message(PAYLOAD))
        .await;

    assert_eq!(attempt.outcome, Outcome::Delivered);
    assert_eq!(attempt.status, Some(202));
    assert_eq!(attempt.excerpt, "queued");
    assert_eq!(attempt.error, None);
    assert_eq!(attempt.retry_after, None);
    assert!(attempt.latency > Duration::ZERO);
}

#[tokio::test]
async fn a_410_answer_is_gone() {
    let receiver = receiver(|_| async { status(StatusCode::GONE) }).await;

    let attempt = sender()
        .send(&receiver.url("/hook"), &[&new_secret()], &message(PAYLOAD))
        .await;

    assert_eq!(attempt.outcome, Outcome::Gone);
    assert_eq!(attempt.status, Some(410));
}

#[tokio::test]
async fn a_500_with_retry_after_seconds_is_failed_with_the_delay() {
    let receiver = receiver(|_| async {
        poem::Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .header("retry-after", "7")
            .body("database down")
    })
    .await;

    let attempt = sender()
        .send(&receiver.url("/hook"), &[&new_secret()], &message(PAYLOAD))
        .await;

    assert_eq!(attempt.outcome, Outcome::Failed);
    assert_eq!(attempt.status, Some(500));
    assert_eq!(attempt.retry_after, Some(Duration::from_secs(7)));
    assert_eq!(attempt.excerpt, "database down");
    assert_eq!(attempt.error, None);
}

#[tokio::test]
async fn a_retry_after_http_date_is_read_as_the_time_until_it() {
    let receiver = receiver(|_| async {
        let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        poem::Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .header("retry-after", date)
            .finish()
    })
    .await;

    let attempt = sender()
        .send(&receiver.url("/hook"), &[&new_secret()], &message(PAYLOAD))
        .await;

    assert_eq!(attempt.outcome, Outcome::Failed);
    assert_eq!(attempt.status, Some(503));
    let retry_after = attempt.retry_after.expect("a Retry-After");
    assert!(
        retry_after > Duration::from_secs(110) && retry_after <= Duration::from_secs(120),
        "{retry_after:?}"
    );
}

#[tokio::test]
async fn a_huge_answer_is_cut_to_the_excerpt() {
    let receiver = receiver(|_| async {
        poem::Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .body(vec![b'x'; 1 << 20])
    })
    .await;

    let attempt = sender()
        .send(&receiver.url("/hook"), &[&new_secret()], &message(PAYLOAD))
        .await;

    assert_eq!(attempt.outcome, Outcome::Failed);
    assert_eq!(attempt.status, Some(400));
    assert_eq!(attempt.excerpt.len(), EXCERPT_BYTES);
    assert!(attempt.excerpt.bytes().all(|b| b == b'x'));
}

#[tokio::test]
async fn a_receiver_that_never_answers_times_out_without_a_status() {
    let receiver = receiver(|_| std::future::pending::<poem::Response>()).await;
    let timeout = Duration::from_millis(300);
    let sender = Sender::with_timeout(loopback_policy(), timeout);

    let attempt = sender
        .send(
            &receiver.url("/hook?token=hush-hush"),
            &[&new_secret()],
            &message(PAYLOAD),
        )
        .await;

    assert_eq!(attempt.outcome, Outcome::Failed);
    assert_eq!(attempt.status, None);
    let error = attempt.error.expect("an error");
    assert!(error.contains("timed out"), "{error}");
    assert!(!error.contains("hush-hush"), "{error}");
    assert!(attempt.latency >= timeout, "{:?}", attempt.latency);
    assert!(
        attempt.latency < Duration::from_secs(5),
        "{:?}",
        attempt.latency
    );
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let receiver = receiver(|path| async move {
        if path == "/hook" {
            poem::Response::builder()
                .status(StatusCode::FOUND)
                .header("location", "/elsewhere")
                .finish()
        } else {
            status(StatusCode::OK)
        }
    })
    .await;

    let attempt = sender()
        .send(&receiver.url("/hook"), &[&new_secret()], &message(PAYLOAD))
        .await;

    assert_eq!(attempt.outcome, Outcome::Failed);
    assert_eq!(attempt.status, Some(302));
    let paths: Vec<String> = receiver.received().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/hook"]);
}

#[test]
fn retry_after_parses_delta_seconds_and_all_http_date_forms() {
    let date = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").expect("a date");
    let now = date - Duration::from_secs(30);
    let thirty = Some(Duration::from_secs(30));
    assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
    assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
    assert_eq!(
        parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
        thirty
    );
    assert_eq!(
        parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now),
        thirty
    );
    assert_eq!(parse_retry_after("Sun Nov  6 08:49:37 1994", now), thirty);
    // A date in the past: retry as soon as the schedule says.
    let later = date + Duration::from_secs(60);
    assert_eq!(
        parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", later),
        Some(Duration::ZERO)
    );
    // Too many seconds to count still means "a long time"; the schedule clamps it.
    assert_eq!(
        parse_retry_after("99999999999999999999999", now),
        Some(Duration::from_secs(u64::MAX))
    );
    for invalid in ["", "-1", "+7", "1.5", "soon", "7 seconds"] {
        assert_eq!(parse_retry_after(invalid, now), None, "{invalid:?}");
    }
}

#[test]
fn an_excerpt_never_exceeds_its_bytes_nor_splits_a_character() {
    // 'a' then two-byte characters: the cap falls inside one.
    let mut body = b"a".to_vec();
    body.extend("é".repeat(EXCERPT_BYTES).as_bytes());
    let cut = &body[..EXCERPT_BYTES];
    let text = excerpt_text(cut);
    assert!(text.len() <= EXCERPT_BYTES);
    assert!(
        std::str::from_utf8(&body)
            .expect("UTF-8")
            .starts_with(&text)
    );
    assert_eq!(text.len(), EXCERPT_BYTES - 1);

    // Invalid bytes grow threefold when replaced; the text is still capped.
    let binary = excerpt_text(&[0xff; EXCERPT_BYTES]);
    assert!(binary.len() <= EXCERPT_BYTES);
    assert!(binary.chars().all(|c| c == char::REPLACEMENT_CHARACTER));
}

#[test]
fn outcomes_have_their_store_names() {
    assert_eq!(Outcome::Delivered.as_str(), "delivered");
    assert_eq!(Outcome::Failed.to_string(), "failed");
    assert_eq!(Outcome::Gone.as_str(), "gone");
}
