//! What each [`Client`] carries beside its HTTP connection pool: the retry policy and the
//! bearer token. codegen makes this the generated client's "inner" value, which the
//! hooks (`crate::hooks`) read on every request, so that two clients sharing one pool can
//! act as different users or retry differently ([`Client::with_bearer_token`],
//! [`Client::with_retry_policy`]): cloning a `Client` clones a handle to its pool.

use reqwest::header::{HeaderValue, InvalidHeaderValue};

use crate::{Client, RetryPolicy};

/// A client's retry policy and credentials (the generated `Client`'s inner value).
/// [`crate::ClientBuilder`] makes one; `ClientConfig::default()` retries with
/// [`RetryPolicy::default`] and sends no bearer token.
#[derive(Debug, Clone, Default)]
pub struct ClientConfig {
    pub(crate) retry_policy: RetryPolicy,
    /// `Bearer <token>`, marked sensitive so that `Debug` does not print it.
    pub(crate) authorization: Option<HeaderValue>,
}

impl ClientConfig {
    /// Sets the retry policy.
    #[must_use]
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry_policy = policy;
        self
    }

    /// Sets the bearer token sent as `Authorization: Bearer …`. Fails if it cannot be a
    /// header value.
    pub fn bearer_token(mut self, token: &str) -> Result<Self, InvalidHeaderValue> {
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))?;
        value.set_sensitive(true);
        self.authorization = Some(value);
        Ok(self)
    }
}

impl Client {
    /// The same client (the same connection pool, API key and policy), acting as the user
    /// this token belongs to. Cheap: no new connections are made.
    ///
    /// ```no_run
    /// # async fn demo(client: minitter_client::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let token = client
    ///     .log_in()
    ///     .body_map(|b| b.email("ada@example.com").password("correct horse battery staple"))
    ///     .send()
    ///     .await?;
    /// let ada = client.with_bearer_token(token.access_token.as_str())?;
    /// let me = ada.get_me().send().await?;
    /// # Ok(()) }
    /// ```
    pub fn with_bearer_token(&self, token: &str) -> Result<Self, InvalidHeaderValue> {
        let mut client = self.clone();
        client.inner = client.inner.bearer_token(token)?;
        Ok(client)
    }

    /// The same client with another retry policy; [`RetryPolicy::disabled`] sends every
    /// request once.
    #[must_use]
    pub fn with_retry_policy(&self, policy: RetryPolicy) -> Self {
        let mut client = self.clone();
        client.inner.retry_policy = policy;
        client
    }

    /// The policy this client's calls are retried with.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry_policy
    }
}
