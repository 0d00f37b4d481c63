//! The SDK's retries against the real server, run in this process on port 0 with a fresh
//! SQLite database, all through the generated `send()` and `stream()`: throttling
//! answered by waiting for `Retry-After` (and seen in `tracing`), a whole timeline
//! streamed through a tiny plan, a lost response to a post retried with the same
//! `Idempotency-Key` (one tweet), and a per-attempt timeout against a server that never
//! answers.

mod support;
mod trace;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use minitter_client::{ClientBuilder, Error, ProblemExt, RetryPolicy};
use support::{PASSWORD, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A policy with short backoffs, so that only `Retry-After` makes a test slow.
fn quick() -> RetryPolicy {
    RetryPolicy::default()
        .base_delay(Duration::from_millis(50))
        .max_delay(Duration::from_millis(100))
}

#[tokio::test]
async fn throttled_calls_wait_for_retry_after_and_succeed() {
    let attempts = trace::capture();
    let server = Server::start().await;
    let (user, _) = server.user("throttled").await;
    // One request, then one more every half second.
    let key = server.key(Some((2.0, 1))).await;
    let client = ClientBuilder::new(&server.base_url)
        .api_key(&key)
        .retry_policy(quick())
        .build()
        .expect("a client");

    let started = Instant::now();
    for _ in 0..4 {
        let fetched = client
            .get_user()
            .user_id(user)
            .send()
            .await
            .expect("retried until the bucket refills");
        assert_eq!(*fetched.id, user);
    }
    // Three of the four were throttled with `Retry-After: 1`, and waited for it.
    assert!(
        started.elapsed() >= Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    // Each attempt is a span, and each retry an event in it.
    let spans = attempts.spans("get_user");
    let throttled = spans.iter().filter(|s| s.status == Some(429)).count();
    assert!(throttled >= 3, "{spans:?}");
    assert_eq!(spans.iter().filter(|s| s.status == Some(200)).count(), 4);
    assert!(spans.iter().any(|s| s.attempt == 2), "{spans:?}");
    assert_eq!(attempts.retries("get_user"), throttled);

    let impatient = client.with_retry_policy(RetryPolicy::disabled());
    let mut refusals = Vec::new();
    for _ in 0..4 {
        if let Err(error) = impatient.get_user().user_id(user).send().await {
            refusals.push((
                error.status().map(|s| s.as_u16()),
                error.problem().map(|p| p.code.to_string()),
            ));
        }
    }
    assert!(!refusals.is_empty(), "the burst was never throttled");
    for refusal in refusals {
        assert_eq!(refusal, (Some(429), Some("throttled".to_owned())));
    }
}

#[tokio::test]
async fn a_whole_timeline_streams_through_a_tiny_plan() {
    let attempts = trace::capture();
    let server = Server::start().await;
    let (_, token) = server.user("streamer").await;
    let author = ClientBuilder::new(&server.base_url)
        .api_key(&server.api_key)
        .bearer_token(&token)
        .build()
        .expect("a client");
    for n in 0..6 {
        author
            .create_tweet()
            .body_map(|b| b.text(format!("tweet {n}")))
            .send()
            .await
            .expect("a tweet");
    }
    // Two requests a second, so the pages of two tweets run into the throttle.
    let key = server.key(Some((2.0, 1))).await;
    let reader = ClientBuilder::new(&server.base_url)
        .api_key(&key)
        .bearer_token(&token)
        .retry_policy(quick())
        .build()
        .expect("a client");

    let tweets: Vec<_> = reader
        .get_timeline()
        .limit(2u32)
        .stream()
        .try_collect()
        .await
        .expect("every page, through the throttling");

    let texts: Vec<&str> = tweets.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "tweet 5", "tweet 4", "tweet 3", "tweet 2", "tweet 1", "tweet 0"
        ]
    );
    let spans = attempts.spans("get_timeline");
    assert!(
        spans.iter().any(|s| s.status == Some(429)),
        "the stream was never throttled: {spans:?}"
    );
}

/// A proxy to `upstream` that forwards the first connection's request, waits for the
/// server's answer, and closes the connection without passing it on (a response lost
/// on the way); later connections pass through. Returns its URL and its connection count.
async fn lossy_proxy(upstream: &str) -> (String, Arc<AtomicUsize>) {
    let upstream = upstream.trim_start_matches("http://").to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let url = format!("http://{}", listener.local_addr().expect("an address"));
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&connections);
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let first = counter.fetch_add(1, Ordering::SeqCst) == 0;
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let mut server = TcpStream::connect(&upstream).await.expect("the server");
                if first {
                    let request = read_request(&mut client).await;
                    server.write_all(&request).await.expect("forwarded");
                    let mut answer = [0u8; 1];
                    let _ = server.read(&mut answer).await;
                    // Both connections close here: the client never sees the answer.
                } else {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    (url, connections)
}

/// One HTTP/1.1 request with a `content-length` body, as bytes.
async fn read_request(stream: &mut TcpStream) -> Vec<u8> {
    let mut request = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let read = stream.read(&mut buffer).await.expect("the request");
        assert!(read > 0, "the connection closed mid-request");
        request.extend_from_slice(&buffer[..read]);
        let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .map_or(0, |value| value.trim().parse().expect("a length"));
        if request.len() >= end + 4 + length {
            return request;
        }
    }
}

#[tokio::test]
async fn a_post_whose_response_is_lost_is_retried_into_one_tweet() {
    let server = Server::start().await;
    let (user, token) = server.user("poster").await;
    let through = |url: &str| {
        ClientBuilder::new(url)
            .api_key(&server.api_key)
            .bearer_token(&token)
            .retry_policy(quick())
            .build()
            .expect("a client")
    };

    // The generated send: the first attempt's response is lost, and the retry, with the
    // Idempotency-Key the SDK added, gets the first attempt's tweet replayed.
    let (url, connections) = lossy_proxy(&server.base_url).await;
    let client = through(&url);
    let tweet = client
        .create_tweet()
        .body_map(|b| b.text("exactly once"))
        .send()
        .await
        .expect("the retry succeeds");
    assert_eq!(tweet.text.as_str(), "exactly once");
    assert_eq!(connections.load(Ordering::SeqCst), 2);
    assert_eq!(server.tweet_count(user).await, 1);
    let stored = client
        .get_tweet()
        .tweet_id(*tweet.id)
        .send()
        .await
        .expect("the tweet");
    assert_eq!(stored.id, tweet.id);

    // A key the caller chose is the one sent, and replayed.
    let (url, connections) = lossy_proxy(&server.base_url).await;
    let client = through(&url);
    let key = minitter_client::new_idempotency_key();
    let tweet = client
        .create_tweet()
        .idempotency_key(key.as_str())
        .body_map(|b| b.text("once more"))
        .send()
        .await
        .expect("the retry succeeds");
    assert_eq!(connections.load(Ordering::SeqCst), 2);
    assert_eq!(server.tweet_count(user).await, 2);
    let again = through(&server.base_url)
        .create_tweet()
        .idempotency_key(key.as_str())
        .body_map(|b| b.text("once more"))
        .send()
        .await
        .expect("a replay");
    assert_eq!(again.id, tweet.id, "the server knew the caller's key");
    assert_eq!(server.tweet_count(user).await, 2);

    // Without retries the caller sees the lost connection, though the tweet was made:
    // why a retry must carry the same key.
    let (url, _) = lossy_proxy(&server.base_url).await;
    let client = through(&url).with_retry_policy(RetryPolicy::disabled());
    let lost = client
        .create_tweet()
        .body_map(|b| b.text("lost"))
        .send()
        .await
        .expect_err("the response is lost");
    assert!(matches!(lost, Error::CommunicationError(_)), "{lost:?}");
    assert_eq!(server.tweet_count(user).await, 3);
}

/// A server that accepts connections and never answers; counts the requests it got.
async fn silent_server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let url = format!("http://{}", listener.local_addr().expect("an address"));
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&requests);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                if matches!(stream.read(&mut buffer).await, Ok(read) if read > 0) {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                // Hold the connection open, silently, until the client gives up.
                while matches!(stream.read(&mut buffer).await, Ok(read) if read > 0) {}
            });
        }
    });
    (url, requests)
}

#[tokio::test]
async fn each_attempt_times_out_and_the_retries_are_bounded() {
    let (url, requests) = silent_server().await;
    let client = ClientBuilder::new(&url)
        .api_key("mk_unused")
        .timeout(Duration::from_millis(300))
        .retry_policy(quick())
        .build()
        .expect("a client");

    let started = Instant::now();
    let error = client
        .get_health()
        .send()
        .await
        .expect_err("nobody answers");
    let elapsed = started.elapsed();
    assert!(
        matches!(&error, Error::CommunicationError(e) if e.is_timeout()),
        "{error:?}"
    );
    assert_eq!(requests.load(Ordering::SeqCst), 3, "three attempts");
    // Three 300 ms timeouts and two backoffs of at most 100 ms.
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(2500), "{elapsed:?}");

    // A POST without an Idempotency-Key may have been received: it is not sent again.
    let started = Instant::now();
    let error = client
        .sign_up()
        .body_map(|b| {
            b.username("nobody")
                .email("nobody@example.com")
                .password(PASSWORD)
        })
        .send()
        .await
        .expect_err("nobody answers");
    assert!(
        matches!(&error, Error::CommunicationError(e) if e.is_timeout()),
        "{error:?}"
    );
    assert_eq!(requests.load(Ordering::SeqCst), 4, "one attempt");
    assert!(started.elapsed() < Duration::from_millis(900));
}
