//! Retries with backoff, per-attempt timeouts and automatic idempotency keys.
//!
//! # Why here, and not in the HTTP layer
//!
//! The generated client sends every request with `reqwest::Client::execute`, through
//! progenitor's `ClientHooks` whose `impl` is generated (empty) in `generated.rs`, so it
//! cannot be overridden from hand-written code without changing the generator. The
//! generated `Client` holds a concrete `reqwest::Client`, so `reqwest-middleware`'s
//! `ClientWithMiddleware` cannot be plugged in either, and reqwest 0.13 has no request
//! middleware of its own: its `retry` policy retries at once (no backoff), cannot read
//! `Retry-After`, and cannot add headers; its `connector_layer` sees connections, not
//! requests. So the retry loop sits one level up, around the generated builders:
//!
//! - [`Retryable`] is implemented for every operation's builder (all but `put_picture`,
//!   whose streaming body cannot be replayed: wrap it with [`with_retries`] and a body
//!   you can rebuild), and knows its HTTP method, hence whether it may be replayed;
//!   `builder.send_with_retries(&policy)` replaces `builder.send()`.
//! - [`RetryingClient`] (from [`ClientBuilder::build_with_retries`]) keeps a policy and
//!   dereferences to the generated [`Client`]: `client.send(client.get_me())`, or
//!   [`RetryingClient::post_tweet`].
//! - [`with_retries`] retries any closure that returns a generated call's result.
//!
//! The per-attempt timeout is the `reqwest::Client`'s own (see [`ClientBuilder::timeout`]):
//! it bounds each attempt, from sending the request to reading the whole response.
//!
//! # What is retried
//!
//! At most [`RetryPolicy::max_retries`] times after the first attempt (2 by default, so
//! three attempts; 0 turns retries off):
//!
//! - `429 Too Many Requests`: always (the gateway refused the request before running it);
//! - `502`, `503`, `504` and failures of the connection (reset, closed, timed out): only
//!   for requests that can be replayed safely: `GET`, `HEAD`, `PUT`, `DELETE`, and `POST`
//!   or `PATCH` carrying an `Idempotency-Key` (the server replays the first response for
//!   a repeated key). A `POST` or `PATCH` without a key is only retried when the
//!   connection could not even be opened, so the server never saw it;
//! - `409` (`request_in_flight`) for requests carrying an `Idempotency-Key`: the first
//!   attempt is still running on the server, and the retry gets its response.
//!
//! No other response is retried: a `400`, `401`, `403`, `404`, `422`… would fail again.
//!
//! [`RetryingClient::post_tweet`] and `create_tweet().send_with_retries(…)` add an
//! `Idempotency-Key` (a random UUIDv4) when the caller set none, and send the same key on
//! every attempt, so a retried post creates one tweet.
//!
//! # How long between attempts
//!
//! The server's `Retry-After` (seconds or an HTTP date) when it sent one, else
//! exponential backoff with full jitter: a random delay between zero and
//! `min(max_delay, base_delay × 2^retry)`. A `Retry-After` longer than
//! [`RetryPolicy::max_retry_after`] (60 s by default) ends the retries at once: a spent
//! daily quota is not worth waiting for, and the error (with its `Retry-After`) is
//! returned to the caller.
//!
//! [`ClientBuilder::build_with_retries`]: crate::ClientBuilder::build_with_retries
//! [`ClientBuilder::timeout`]: crate::ClientBuilder::timeout

use std::future::Future;
use std::ops::Deref;
use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode};

use crate::{Client, Error, ResponseValue, builder, types};

/// How many times to retry, and how long to wait in between.
///
/// ```
/// use std::time::Duration;
/// use minitter_client::RetryPolicy;
///
/// let patient = RetryPolicy::default()
///     .max_retries(5)
///     .base_delay(Duration::from_millis(250))
///     .max_delay(Duration::from_secs(4));
/// assert_eq!(patient.max_retries, 5);
/// assert_eq!(RetryPolicy::disabled().max_retries, 0);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt; 0 disables retrying. Default 2.
    pub max_retries: u32,
    /// The backoff before the first retry is at most this; it doubles with each retry.
    /// Default 0.5 s.
    pub base_delay: Duration,
    /// The cap on a backoff delay. Default 8 s.
    pub max_delay: Duration,
    /// The longest `Retry-After` to honour; a longer one ends the retries. Default 60 s.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 2,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn disabled() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// Sets [`RetryPolicy::max_retries`].
    #[must_use]
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// Sets [`RetryPolicy::base_delay`].
    #[must_use]
    pub fn base_delay(mut self, delay: Duration) -> Self {
        self.base_delay = delay;
        self
    }

    /// Sets [`RetryPolicy::max_delay`].
    #[must_use]
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Sets [`RetryPolicy::max_retry_after`].
    #[must_use]
    pub fn max_retry_after(mut self, delay: Duration) -> Self {
        self.max_retry_after = delay;
        self
    }

    /// The backoff before retry number `retry` (0 for the first), with full jitter: a
    /// random duration between zero and `min(max_delay, base_delay × 2^retry)`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(retry))
            .min(self.max_delay);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::random_range(0..=nanos))
    }
}

/// Whether a request may be sent again after a failure that leaves its fate unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetrySafety {
    /// `GET`, `HEAD`, `PUT`, `DELETE`: sending it twice does what sending it once does.
    Idempotent,
    /// A `POST` or `PATCH` with an `Idempotency-Key`: the server replays the first
    /// response, and answers `409 request_in_flight` while the first attempt runs.
    IdempotencyKey,
    /// A `POST` or `PATCH` without a key: retried only on `429` and when the connection
    /// could not be opened.
    NotIdempotent,
}

impl RetrySafety {
    /// The safety of a request with this method, with or without an `Idempotency-Key`.
    pub fn of(method: &Method, has_idempotency_key: bool) -> Self {
        if has_idempotency_key {
            Self::IdempotencyKey
        } else if method == Method::GET
            || method == Method::HEAD
            || method == Method::PUT
            || method == Method::DELETE
            || method == Method::OPTIONS
        {
            Self::Idempotent
        } else {
            Self::NotIdempotent
        }
    }

    fn replayable(self) -> bool {
        self != Self::NotIdempotent
    }
}

/// A fresh `Idempotency-Key`: a random UUIDv4.
pub fn new_idempotency_key() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Runs `attempt` until it succeeds, fails for good, or `policy` allows no more retries,
/// waiting between attempts as the module documentation describes. `safety` says what
/// the request may be replayed after; each call of `attempt` must send the same request
/// (the same `Idempotency-Key`, if it has one).
///
/// ```no_run
/// # async fn demo(client: &minitter_client::Client, png: bytes::Bytes)
/// #     -> Result<(), minitter_client::Error<minitter_client::types::Problem>> {
/// use minitter_client::{RetryPolicy, RetrySafety, with_retries};
///
/// let policy = RetryPolicy::default();
/// let picture = with_retries(&policy, RetrySafety::Idempotent, || {
///     client.put_picture().body(png.clone()).send()
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub async fn with_retries<T, E, F, Fut>(
    policy: &RetryPolicy,
    safety: RetrySafety,
    mut attempt: F,
) -> Result<ResponseValue<T>, Error<E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<ResponseValue<T>, Error<E>>>,
{
    let mut retry = 0;
    loop {
        let result = attempt().await;
        if retry >= policy.max_retries {
            return result;
        }
        let delay = match &result {
            Ok(_) => return result,
            Err(error) => match retry_decision(error, safety) {
                Decision::Stop => return result,
                Decision::RetryAfter(wait) if wait > policy.max_retry_after => return result,
                Decision::RetryAfter(wait) => wait,
                Decision::Backoff => policy.backoff(retry),
            },
        };
        drop(result);
        tokio::time::sleep(delay).await;
        retry += 1;
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Stop,
    Backoff,
    RetryAfter(Duration),
}

fn retry_decision<E>(error: &Error<E>, safety: RetrySafety) -> Decision {
    match error {
        Error::ErrorResponse(response) => {
            status_decision(response.status(), response.headers(), safety)
        }
        Error::UnexpectedResponse(response) => {
            status_decision(response.status(), response.headers(), safety)
        }
        Error::CommunicationError(e) => {
            if e.is_builder() || e.is_redirect() || e.is_status() {
                Decision::Stop
            } else if e.is_connect() || safety.replayable() {
                // A connect error means the request was never sent; anything else
                // (a reset, a timeout, a closed connection) leaves its fate unknown.
                Decision::Backoff
            } else {
                Decision::Stop
            }
        }
        Error::ResponseBodyError(_) if safety.replayable() => Decision::Backoff,
        _ => Decision::Stop,
    }
}

fn status_decision(status: StatusCode, headers: &HeaderMap, safety: RetrySafety) -> Decision {
    let retryable = match status {
        StatusCode::TOO_MANY_REQUESTS => true,
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT => {
            safety.replayable()
        }
        StatusCode::CONFLICT => safety == RetrySafety::IdempotencyKey,
        _ => false,
    };
    if !retryable {
        return Decision::Stop;
    }
    match retry_after(headers) {
        Some(wait) => Decision::RetryAfter(wait),
        None => Decision::Backoff,
    }
}

/// The wait a `Retry-After` header asks for: delay-seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = date.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// A generated operation builder that can be sent again: the ones [`with_retries`] can
/// drive without help. Implemented for every operation except `put_picture`.
///
/// ```no_run
/// # async fn demo(client: &minitter_client::Client, id: uuid::Uuid)
/// #     -> Result<(), minitter_client::Error<minitter_client::types::Problem>> {
/// use minitter_client::{RetryPolicy, Retryable};
///
/// let policy = RetryPolicy::default();
/// let user = client.get_user().user_id(id).send_with_retries(&policy).await?;
/// // An Idempotency-Key is added, and reused by every attempt:
/// let tweet = client
///     .create_tweet()
///     .body_map(|b| b.text("Hello"))
///     .send_with_retries(&policy)
///     .await?;
/// # Ok(()) }
/// ```
pub trait Retryable: Clone + Send + Sync + Sized {
    /// The success body.
    type Ok: Send;
    /// The error body.
    type Err: Send;

    /// Whether this request may be replayed (from its method and `Idempotency-Key`).
    fn retry_safety(&self) -> RetrySafety;

    /// Readies the request for retries before its first attempt: `create_tweet` gets an
    /// `Idempotency-Key` here when it has none.
    #[must_use]
    fn prepare_for_retries(self) -> Self {
        self
    }

    /// Sends the request once (the generated `send`).
    fn send_once(
        self,
    ) -> impl Future<Output = Result<ResponseValue<Self::Ok>, Error<Self::Err>>> + Send;

    /// Sends the request, retrying as `policy` allows.
    fn send_with_retries(
        self,
        policy: &RetryPolicy,
    ) -> impl Future<Output = Result<ResponseValue<Self::Ok>, Error<Self::Err>>> + Send {
        async move {
            let request = self.prepare_for_retries();
            let safety = request.retry_safety();
            with_retries(policy, safety, || request.clone().send_once()).await
        }
    }
}

macro_rules! retryable {
    ($($op:ident: $method:ident => $ok:ty, $err:ty;)*) => {
        $(
            impl Retryable for builder::$op<'_> {
                type Ok = $ok;
                type Err = $err;

                fn retry_safety(&self) -> RetrySafety {
                    RetrySafety::of(&Method::$method, false)
                }

                fn send_once(
                    self,
                ) -> impl Future<Output = Result<ResponseValue<$ok>, Error<$err>>> + Send {
                    self.send()
                }
            }
        )*

        /// Every builder with a [`Retryable`] impl, and its method.
        #[cfg(test)]
        const RETRYABLE: &[(&str, &str)] = &[$((stringify!($op), stringify!($method)),)* ("CreateTweet", "POST")];
    };
}

// Checked against generated.rs by `tests::every_operation_is_retryable`.
retryable! {
    GetHealth: GET => types::HealthStatus, ();
    GetReadiness: GET => types::HealthStatus, types::Problem;
    SignUp: POST => types::User, types::Problem;
    GetUser: GET => types::User, types::Problem;
    CreateToken: POST => types::AccessToken, types::Problem;
    GetMe: GET => types::CurrentUser, types::Problem;
    FollowUser: PUT => (), types::Problem;
    UnfollowUser: DELETE => (), types::Problem;
    ListFollowers: GET => types::UserPage, types::Problem;
    ListFollowing: GET => types::UserPage, types::Problem;
    GetTweet: GET => types::Tweet, types::Problem;
    DeleteTweet: DELETE => (), types::Problem;
    ListUserTweets: GET => types::TweetPage, types::Problem;
    GetTimeline: GET => types::TweetPage, types::Problem;
    ListUsagePlans: GET => types::UsagePlanPage, types::Problem;
    CreateUsagePlan: POST => types::UsagePlan, types::Problem;
    GetUsagePlan: GET => types::UsagePlan, types::Problem;
    UpdateUsagePlan: PUT => types::UsagePlan, types::Problem;
    DeleteUsagePlan: DELETE => (), types::Problem;
    DeleteUser: DELETE => (), types::Problem;
    ListApiKeys: GET => types::ApiKeyPage, types::Problem;
    CreateApiKey: POST => types::CreatedApiKey, types::Problem;
    GetApiKey: GET => types::ApiKey, types::Problem;
    DeleteApiKey: DELETE => (), types::Problem;
    UpdateApiKey: PATCH => types::ApiKey, types::Problem;
    RotateApiKey: POST => types::CreatedApiKey, types::Problem;
    GetUsage: GET => types::KeyUsage, types::Problem;
    GetUsageReport: GET => types::UsageReport, types::Problem;
    GetPicture: GET => crate::ByteStream, types::Problem;
    GetMetrics: GET => crate::ByteStream, types::Problem;
}

/// What a `create_tweet` builder holds for its `Idempotency-Key`.
#[derive(Debug, PartialEq, Eq)]
enum KeyState {
    Absent,
    Present,
    /// Invalid, or not readable: `send` reports an invalid key itself, and an unreadable
    /// one is treated as absent-but-unknown (no key is added, no unsafe retry happens).
    Unknown,
}

/// The builder's fields are private, so its (derived, stable) `Debug` output is read:
/// pretty-printed, a top-level field is the only line starting with exactly four spaces
/// and its name, since the values of strings print escaped, on one line.
fn idempotency_key_state(request: &builder::CreateTweet<'_>) -> KeyState {
    let debug = format!("{request:#?}");
    let Some(start) = debug.find("\n    idempotency_key: ") else {
        return KeyState::Unknown;
    };
    let value: String = debug[start + "\n    idempotency_key: ".len()..]
        .chars()
        .filter(|c| !c.is_whitespace())
        .take("Ok(Some(".len())
        .collect();
    if value.starts_with("Ok(None") {
        KeyState::Absent
    } else if value.starts_with("Ok(Some(") {
        KeyState::Present
    } else {
        KeyState::Unknown
    }
}

impl Retryable for builder::CreateTweet<'_> {
    type Ok = types::Tweet;
    type Err = types::Problem;

    fn retry_safety(&self) -> RetrySafety {
        let keyed = idempotency_key_state(self) == KeyState::Present;
        RetrySafety::of(&Method::POST, keyed)
    }

    fn prepare_for_retries(self) -> Self {
        match idempotency_key_state(&self) {
            KeyState::Absent => self.idempotency_key(new_idempotency_key()),
            KeyState::Present | KeyState::Unknown => self,
        }
    }

    fn send_once(
        self,
    ) -> impl Future<Output = Result<ResponseValue<types::Tweet>, Error<types::Problem>>> + Send
    {
        self.send()
    }
}

/// A generated [`Client`] with a [`RetryPolicy`]: every method of the generated client is
/// available through `Deref`, and [`RetryingClient::send`] sends a builder with retries.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use minitter_client::{ClientBuilder, RetryPolicy};
///
/// let client = ClientBuilder::new("http://127.0.0.1:8080")
///     .api_key("mk_...")
///     .bearer_token("eyJ...")
///     .retry_policy(RetryPolicy::default().max_retries(3))
///     .build_with_retries()?;
/// let me = client.send(client.get_me()).await?;
/// let tweet = client.post_tweet("Hello, Minitter!").await?; // one tweet, however many attempts
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RetryingClient {
    client: Client,
    policy: RetryPolicy,
}

impl RetryingClient {
    /// Wraps a generated client.
    pub fn new(client: Client, policy: RetryPolicy) -> Self {
        Self { client, policy }
    }

    /// The policy [`RetryingClient::send`] follows.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// The generated client, which sends every request once.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Sends an operation built from this client, with retries.
    pub async fn send<R: Retryable>(
        &self,
        request: R,
    ) -> Result<ResponseValue<R::Ok>, Error<R::Err>> {
        request.send_with_retries(&self.policy).await
    }

    /// Posts a tweet as the client's user, with a fresh `Idempotency-Key` reused by
    /// every attempt: one tweet, however many attempts it takes.
    pub async fn post_tweet(
        &self,
        text: &str,
    ) -> Result<ResponseValue<types::Tweet>, Error<types::Problem>> {
        let request = self
            .client
            .create_tweet()
            .idempotency_key(new_idempotency_key())
            .body_map(|body| body.text(text));
        self.send(request).await
    }
}

impl Deref for RetryingClient {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(retry_after: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_str(retry_after).expect("a header value"),
        );
        headers
    }

    #[test]
    fn every_operation_is_retryable() {
        let source = include_str!("generated.rs");
        let builders = &source[source.find("\npub mod builder").expect("a builder module")..];
        let mut found = Vec::new();
        for chunk in builders.split("    pub struct ").skip(1) {
            let name = chunk.split('<').next().expect("a name");
            let method = chunk
                .split("///Sends a `")
                .nth(1)
                .and_then(|rest| rest.split('`').next())
                .expect("a method");
            found.push((name, method));
        }
        let unreplayable = [("PutPicture", "PUT")];
        let mut expected: Vec<_> = RETRYABLE.iter().chain(&unreplayable).copied().collect();
        expected.sort_unstable();
        found.sort_unstable();
        assert_eq!(found, expected);
    }

    #[test]
    fn create_tweet_gets_one_key_unless_it_has_one() {
        let client = Client::new_with_client("http://localhost", reqwest::Client::new());
        let bare = client
            .create_tweet()
            .body_map(|b| b.text("a \"tricky\"\n    idempotency_key: Ok(None)"));
        assert_eq!(idempotency_key_state(&bare), KeyState::Absent);
        assert_eq!(bare.retry_safety(), RetrySafety::NotIdempotent);
        let prepared = bare.prepare_for_retries();
        assert_eq!(idempotency_key_state(&prepared), KeyState::Present);
        assert_eq!(prepared.retry_safety(), RetrySafety::IdempotencyKey);
        let debug = format!("{prepared:?}");
        let again = prepared.prepare_for_retries();
        assert_eq!(format!("{again:?}"), debug, "an existing key is kept");
        let invalid = client.create_tweet().idempotency_key("");
        assert_eq!(idempotency_key_state(&invalid), KeyState::Unknown);
    }

    #[test]
    fn safety_follows_the_method_and_key() {
        assert_eq!(
            RetrySafety::of(&Method::GET, false),
            RetrySafety::Idempotent
        );
        assert_eq!(
            RetrySafety::of(&Method::DELETE, false),
            RetrySafety::Idempotent
        );
        assert_eq!(
            RetrySafety::of(&Method::POST, false),
            RetrySafety::NotIdempotent
        );
        assert_eq!(
            RetrySafety::of(&Method::PATCH, false),
            RetrySafety::NotIdempotent
        );
        assert_eq!(
            RetrySafety::of(&Method::POST, true),
            RetrySafety::IdempotencyKey
        );
    }

    #[test]
    fn statuses_are_retried_only_when_safe() {
        use RetrySafety::*;
        let none = HeaderMap::new();
        let cases = [
            (429, NotIdempotent, Decision::Backoff),
            (503, Idempotent, Decision::Backoff),
            (502, IdempotencyKey, Decision::Backoff),
            (504, Idempotent, Decision::Backoff),
            (503, NotIdempotent, Decision::Stop),
            (409, IdempotencyKey, Decision::Backoff),
            (409, Idempotent, Decision::Stop),
            (400, Idempotent, Decision::Stop),
            (404, Idempotent, Decision::Stop),
            (422, IdempotencyKey, Decision::Stop),
            (500, Idempotent, Decision::Stop),
        ];
        for (status, safety, expected) in cases {
            let status = StatusCode::from_u16(status).expect("a status");
            assert_eq!(
                status_decision(status, &none, safety),
                expected,
                "{status} {safety:?}"
            );
        }
        assert_eq!(
            status_decision(StatusCode::TOO_MANY_REQUESTS, &headers("3"), Idempotent),
            Decision::RetryAfter(Duration::from_secs(3))
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(retry_after(&headers("7")), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after(&headers("Sun, 06 Nov 1994 08:49:37 GMT")),
            Some(Duration::ZERO)
        );
        let soon = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        let wait = retry_after(&headers(&soon)).expect("a date");
        assert!(
            wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert_eq!(retry_after(&headers("soon")), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn backoff_is_jittered_below_an_exponential_ceiling() {
        let policy = RetryPolicy::default();
        for retry in 0..10 {
            let ceiling = Duration::from_millis(500 * 2u64.pow(retry)).min(Duration::from_secs(8));
            for _ in 0..50 {
                assert!(policy.backoff(retry) <= ceiling);
            }
        }
        assert!((0..50).any(|_| policy.backoff(3) > Duration::from_secs(1)));
        assert_eq!(RetryPolicy::default().max_retries, 2);
    }

    #[tokio::test]
    async fn a_long_retry_after_is_not_waited_for() {
        let mut attempts = 0;
        let policy = RetryPolicy::default().max_retry_after(Duration::from_secs(5));
        let result: Result<ResponseValue<()>, Error<()>> =
            with_retries(&policy, RetrySafety::Idempotent, || {
                attempts += 1;
                let status = StatusCode::TOO_MANY_REQUESTS;
                async move {
                    let response = http_response(status, "3600");
                    Err(Error::UnexpectedResponse(response))
                }
            })
            .await;
        assert!(result.is_err());
        assert_eq!(attempts, 1);
    }

    fn http_response(status: StatusCode, retry_after: &str) -> reqwest::Response {
        reqwest::Response::from(
            ::http::Response::builder()
                .status(status)
                .header(RETRY_AFTER, retry_after)
                .body(Vec::<u8>::new())
                .expect("a response"),
        )
    }
}
