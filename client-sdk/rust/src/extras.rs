//! Hand-written conveniences over the generated client.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, InvalidHeaderValue};

use crate::{Client, Error, RetryPolicy, RetryingClient, types::Problem};

/// How long one attempt may take by default, from sending the request to reading the
/// whole response.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds a [`Client`] that sends credentials with every request, and gives each
/// request (each attempt, when retried) at most [`ClientBuilder::timeout`].
/// [`ClientBuilder::build_with_retries`] builds a [`RetryingClient`] instead.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let client = minitter_client::ClientBuilder::new("http://127.0.0.1:8080")
///     .api_key("mk_...")
///     .bearer_token("eyJ...")
///     .build()?;
/// let me = client.get_me().send().await?;
/// println!("{}", me.username.as_str());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    base_url: String,
    api_key: Option<String>,
    bearer_token: Option<String>,
    timeout: Duration,
    retry_policy: RetryPolicy,
}

impl ClientBuilder {
    /// A client for the API at `base_url` (for example `http://127.0.0.1:8080`).
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: None,
            bearer_token: None,
            timeout: DEFAULT_TIMEOUT,
            retry_policy: RetryPolicy::default(),
        }
    }

    /// The partner's API key, sent as `x-api-key`.
    #[must_use]
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// A user's token from `create_token`, sent as `Authorization: Bearer …`.
    #[must_use]
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.bearer_token = Some(token.into());
        self
    }

    /// How long one attempt may take, from sending the request to reading the whole
    /// response ([`DEFAULT_TIMEOUT`], 30 s, unless set). A timed-out attempt fails with
    /// `Error::CommunicationError` (`is_timeout()`), and is retried like a lost
    /// connection.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The retries of [`ClientBuilder::build_with_retries`]'s client
    /// ([`RetryPolicy::default`] unless set).
    #[must_use]
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry_policy = policy;
        self
    }

    /// Builds a client whose [`RetryingClient::send`] retries as the policy allows (see
    /// [`crate::retry`]). Fails only as [`ClientBuilder::build`] does.
    pub fn build_with_retries(self) -> Result<RetryingClient, BuildError> {
        let policy = self.retry_policy.clone();
        Ok(RetryingClient::new(self.build()?, policy))
    }

    /// Builds the generated client, which sends each request once. Fails only if a
    /// credential is not a valid header value.
    pub fn build(self) -> Result<Client, BuildError> {
        let mut headers = HeaderMap::new();
        if let Some(key) = self.api_key {
            let mut value = HeaderValue::from_str(&key)?;
            value.set_sensitive(true);
            headers.insert("x-api-key", value);
        }
        if let Some(token) = self.bearer_token {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}"))?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(self.timeout)
            .build()
            .map_err(BuildError::Http)?;
        Ok(Client::new_with_client(&self.base_url, http))
    }
}

/// Why [`ClientBuilder::build`] failed.
#[derive(Debug)]
pub enum BuildError {
    /// A credential contains characters a header cannot carry.
    InvalidCredential(InvalidHeaderValue),
    /// The HTTP client could not be built (for example, no TLS backend).
    Http(reqwest::Error),
}

impl From<InvalidHeaderValue> for BuildError {
    fn from(error: InvalidHeaderValue) -> Self {
        Self::InvalidCredential(error)
    }
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InvalidCredential(e) => write!(f, "invalid credential: {e}"),
            Self::Http(e) => write!(f, "cannot build the HTTP client: {e}"),
        }
    }
}

impl std::error::Error for BuildError {}

/// The typed RFC 9457 problem of an error response.
pub trait ProblemExt {
    /// The problem document, when the server answered with a declared error status.
    fn problem(&self) -> Option<&Problem>;
}

impl ProblemExt for Error<Problem> {
    fn problem(&self) -> Option<&Problem> {
        match self {
            Error::ErrorResponse(response) => Some(response.as_ref()),
            _ => None,
        }
    }
}
