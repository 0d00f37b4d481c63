//! The SDK's retries against the real server, run in this process on port 0 with a fresh
//! SQLite database: throttling answered by waiting for `Retry-After`, a lost response to
//! a post retried with the same `Idempotency-Key` (one tweet), and a per-attempt timeout
//! against a server that never answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use minitter_client::{ClientBuilder, Error, ProblemExt, RetryPolicy, Retryable, RetryingClient};
use minitter_server::config::Config;
use minitter_server::infra::store::{KeyWrite, PlanSettings};
use minitter_server::startup::Application;
use minitter_server::state::AppState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PASSWORD: &str = "correct horse battery staple";

struct Server {
    base_url: String,
    state: Arc<AppState>,
    /// A key of a plan without limits.
    api_key: String,
    _data_dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> Self {
        let data_dir = tempfile::tempdir().expect("a temporary directory");
        let mut config = Config::for_data_dir(data_dir.path());
        config.bind = "127.0.0.1:0".parse().expect("an address");
        config.database_url = None;
        config.redis_url = None;
        config.jwt_secret = None;
        config.admin_token = None;
        config.s3_bucket = None;
        config.production = false;
        let app = Application::build(config).await.expect("the server builds");
        let base_url = format!("http://127.0.0.1:{}", app.port());
        let state = app.state();
        tokio::spawn(app.run_until_stopped());
        let mut server = Self {
            base_url,
            state,
            api_key: String::new(),
            _data_dir: data_dir,
        };
        server.api_key = server.key(None).await;
        server
    }

    /// A key of a new plan with this throttle (requests per second, burst).
    async fn key(&self, throttle: Option<(f64, i64)>) -> String {
        let store = self.state.store.as_ref();
        let settings = PlanSettings {
            name: "sdk retries".into(),
            description: None,
            throttle,
            quota: None,
            allow_cache_refresh: false,
        };
        let plan = store.create_plan(settings).await.expect("a plan");
        match store
            .create_key("sdk retries", plan.id, true)
            .await
            .expect("a key")
        {
            KeyWrite::Done(key) => key.secret,
            other => panic!("no key: {other:?}"),
        }
    }

    /// Signs a user up and logs them in: their id and bearer token.
    async fn user(&self, username: &str) -> (uuid::Uuid, String) {
        let client = ClientBuilder::new(&self.base_url)
            .api_key(&self.api_key)
            .build()
            .expect("a client");
        let email = format!("{username}@example.com");
        let user = client
            .sign_up()
            .body_map(|b| {
                b.username(username)
                    .email(email.as_str())
                    .password(PASSWORD)
            })
            .send()
            .await
            .expect("sign-up");
        let token = client
            .create_token()
            .body_map(|b| b.email(email.as_str()).password(PASSWORD))
            .send()
            .await
            .expect("log-in");
        (*user.id, token.access_token.as_str().to_owned())
    }

    async fn tweet_count(&self, user: uuid::Uuid) -> i64 {
        let client = ClientBuilder::new(&self.base_url)
            .api_key(&self.api_key)
            .build()
            .expect("a client");
        let user = client
            .get_user()
            .user_id(user)
            .send()
            .await
            .expect("the user");
        user.tweet_count
    }
}

/// A policy with short backoffs, so that only `Retry-After` makes a test slow.
fn quick() -> RetryPolicy {
    RetryPolicy::default()
        .base_delay(Duration::from_millis(50))
        .max_delay(Duration::from_millis(100))
}

#[tokio::test]
async fn throttled_calls_wait_for_retry_after_and_succeed() {
    let server = Server::start().await;
    let (user, _) = server.user("throttled").await;
    // One request, then one more every half second.
    let key = server.key(Some((2.0, 1))).await;
    let client = ClientBuilder::new(&server.base_url)
        .api_key(&key)
        .retry_policy(quick())
        .build_with_retries()
        .expect("a client");

    let started = Instant::now();
    for _ in 0..4 {
        let fetched = client
            .send(client.get_user().user_id(user))
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

    let impatient = RetryingClient::new(client.client().clone(), RetryPolicy::disabled());
    let mut refusals = Vec::new();
    for _ in 0..4 {
        if let Err(error) = impatient.send(impatient.get_user().user_id(user)).await {
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
            .build_with_retries()
            .expect("a client")
    };

    // post_tweet: the first attempt's response is lost, the retry replays it.
    let (url, connections) = lossy_proxy(&server.base_url).await;
    let client = through(&url);
    let tweet = client
        .post_tweet("exactly once")
        .await
        .expect("the retry succeeds");
    assert_eq!(tweet.text.as_str(), "exactly once");
    assert_eq!(connections.load(Ordering::SeqCst), 2);
    assert_eq!(server.tweet_count(user).await, 1);
    let stored = client
        .send(client.get_tweet().tweet_id(*tweet.id))
        .await
        .expect("the tweet");
    assert_eq!(stored.id, tweet.id);

    // The generated builder, sent with retries, gets a key of its own too.
    let (url, connections) = lossy_proxy(&server.base_url).await;
    let client = through(&url);
    let tweet = client
        .create_tweet()
        .body_map(|b| b.text("once more"))
        .send_with_retries(client.policy())
        .await
        .expect("the retry succeeds");
    assert_eq!(tweet.text.as_str(), "once more");
    assert_eq!(connections.load(Ordering::SeqCst), 2);
    assert_eq!(server.tweet_count(user).await, 2);

    // Without retries the caller sees the lost connection, though the tweet was made:
    // why a retry must carry the same key.
    let (url, _) = lossy_proxy(&server.base_url).await;
    let client = through(&url);
    let lost = client
        .create_tweet()
        .body_map(|b| b.text("lost"))
        .send_with_retries(&RetryPolicy::disabled())
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
        .build_with_retries()
        .expect("a client");

    let started = Instant::now();
    let error = client
        .send(client.get_health())
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
        .send(client.sign_up().body_map(|b| {
            b.username("nobody")
                .email("nobody@example.com")
                .password(PASSWORD)
        }))
        .await
        .expect_err("nobody answers");
    assert!(
        matches!(&error, Error::CommunicationError(e) if e.is_timeout()),
        "{error:?}"
    );
    assert_eq!(requests.load(Ordering::SeqCst), 4, "one attempt");
    assert!(started.elapsed() < Duration::from_millis(900));
}
