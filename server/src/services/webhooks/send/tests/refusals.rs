//! Attempts refused before any request is made, or made to fail without one: addresses
//! the SSRF guard refuses (by default, and at connect time after a name resolves),
//! connections refused, secrets and payloads that cannot be sent.

use super::*;

/// A listener on loopback that only counts the connections it accepts.
async fn counting_listener() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let port = listener.local_addr().expect("a bound address").port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&connections);
    tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, connections)
}

#[tokio::test]
async fn a_loopback_address_is_refused_without_connecting_by_default() {
    let (port, connections) = counting_listener().await;
    let url = Url::parse(&format!("http://127.0.0.1:{port}/hook")).expect("a valid URL");

    let attempt = Sender::new(UrlPolicy::default())
        .send(&url, &[&new_secret()], &message(PAYLOAD))
        .await;

    assert_eq!(attempt.outcome, Outcome::Failed);
    assert_eq!(attempt.status, None);
    assert_eq!(attempt.latency, Duration::ZERO);
    let error = attempt.error.expect("an error");
    assert!(error.contains("loopback"), "{error}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_at_connect_time() {
    let (port, connections) = counting_listener().await;
    let url =
        Url::parse(&format!("http://localhost:{port}/hook?token=hush-hush")).expect("a valid URL");

    let attempt = Sender::new(UrlPolicy::default())
        .send(&url, &[&new_secret()], &message(PAYLOAD))
        .await;

    assert_eq!(attempt.outcome, Outcome::Failed);
    assert_eq!(attempt.status, None);
    let error = attempt.error.expect("an error");
    assert!(error.contains("loopback"), "{error}");
    assert!(!error.contains("hush-hush"), "{error}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_refused_connection_is_failed_without_the_url_in_the_error() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        listener.local_addr().expect("a bound address").port()
    };
    let url = Url::parse(&format!(
        "http://127.0.0.1:{port}/hook/s3cret-path?token=hush-hush"
    ))
    .expect("a valid URL");

    let attempt = sender()
        .send(&url, &[&new_secret()], &message(PAYLOAD))
        .await;

    assert_eq!(attempt.outcome, Outcome::Failed);
    assert_eq!(attempt.status, None);
    let error = attempt.error.expect("an error");
    assert!(!error.contains("hush-hush"), "{error}");
    assert!(!error.contains("s3cret-path"), "{error}");
}

#[tokio::test]
async fn a_secret_that_does_not_parse_fails_the_attempt_without_a_request() {
    let receiver = receiver(|_| async { status(StatusCode::OK) }).await;
    let good = new_secret();
    let cases: [&[&str]; 4] = [
        &["whsec_not*base64!"],
        &[&good, "whsec_%%%"],
        &["whsec_"],
        &[],
    ];
    for secrets in cases {
        let attempt = sender()
            .send(&receiver.url("/hook"), secrets, &message(PAYLOAD))
            .await;
        assert_eq!(attempt.outcome, Outcome::Failed);
        assert_eq!(attempt.status, None);
        let error = attempt.error.expect("an error");
        assert!(error.contains("secret"), "{error}");
        assert!(
            !error.contains("%%%") && !error.contains("not*base64"),
            "{error}"
        );
    }
    assert!(receiver.received().is_empty());
}

#[tokio::test]
async fn a_payload_that_is_not_utf8_fails_the_attempt_without_a_request() {
    let receiver = receiver(|_| async { status(StatusCode::OK) }).await;

    let attempt = sender()
        .send(
            &receiver.url("/hook"),
            &[&new_secret()],
            &message(b"\xff\xfe"),
        )
        .await;

    assert_eq!(attempt.outcome, Outcome::Failed);
    assert!(attempt.error.expect("an error").contains("UTF-8"));
    assert!(receiver.received().is_empty());
}
