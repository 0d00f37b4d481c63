//! [`ClientBuilder`]: the one place a partner configures a client (credentials, timeout,
//! retries), so that the generated constructors' `reqwest::Client` and inner value need
//! not be assembled by hand.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, InvalidHeaderValue};

use crate::{Client, ClientConfig, RetryPolicy};

/// How long one attempt may take by default, from sending the request to reading the
/// whole response.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds a [`Client`] that sends credentials with every request, retries as its
/// [`RetryPolicy`] allows (see [`crate::retry`]), and gives each attempt at most
/// [`ClientBuilder::timeout`].
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let client = minitter_client::ClientBuilder::new("https://api.example.com")
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
    #[cfg(any(feature = "rustls", feature = "native-tls"))]
    root_certificates: Vec<reqwest::Certificate>,
}

impl ClientBuilder {
    /// A client for the API at `base_url` (for example `https://api.example.com` or
    /// `http://127.0.0.1:8080`).
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: None,
            bearer_token: None,
            timeout: DEFAULT_TIMEOUT,
            retry_policy: RetryPolicy::default(),
            #[cfg(any(feature = "rustls", feature = "native-tls"))]
            root_certificates: Vec::new(),
        }
    }

    /// The partner's API key, sent as `x-api-key`.
    #[must_use]
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// A user's token from `log_in`, sent as `Authorization: Bearer …`
    /// ([`Client::with_bearer_token`] switches users later without a new pool).
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

    /// The retries of every call ([`RetryPolicy::default`] unless set;
    /// [`RetryPolicy::disabled`] turns them off).
    #[must_use]
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry_policy = policy;
        self
    }

    #[cfg(any(feature = "rustls", feature = "native-tls"))]
    /// Trusts this certificate authority for `https://` as well as the platform's own
    /// (for a private CA, or a test certificate).
    #[must_use]
    pub fn add_root_certificate(mut self, certificate: reqwest::Certificate) -> Self {
        self.root_certificates.push(certificate);
        self
    }

    /// Builds the client. Fails if a credential is not a valid header value, or if the
    /// HTTP client cannot be built.
    pub fn build(self) -> Result<Client, BuildError> {
        let mut headers = HeaderMap::new();
        if let Some(key) = self.api_key {
            let mut value = HeaderValue::from_str(&key)?;
            value.set_sensitive(true);
            headers.insert("x-api-key", value);
        }
        let mut config = ClientConfig::default().retry_policy(self.retry_policy);
        if let Some(token) = self.bearer_token {
            config = config.bearer_token(&token)?;
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(self.timeout);
        #[cfg(any(feature = "rustls", feature = "native-tls"))]
        let http = if self.root_certificates.is_empty() {
            http
        } else {
            http.tls_certs_merge(self.root_certificates)
        };
        let http = http.build().map_err(BuildError::Http)?;
        Ok(Client::new_with_client(&self.base_url, http, config))
    }
}

/// Why [`ClientBuilder::build`] failed.
#[derive(Debug)]
pub enum BuildError {
    /// A credential contains characters a header cannot carry.
    InvalidCredential(InvalidHeaderValue),
    /// The HTTP client could not be built.
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

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::InvalidCredential(e) => Some(e),
            Self::Http(e) => Some(e),
        }
    }
}
