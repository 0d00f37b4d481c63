//! Conditional reads: a `304 Not Modified` as a typed outcome instead of
//! `Error::UnexpectedResponse`.
//!
//! progenitor types only the responses whose status has a body schema, and it treats
//! every status it does not type as unexpected, so the `304` that the document declares
//! for a GET sent with `If-None-Match` comes back from `send()` as an error. codegen marks
//! the builders of the operations that take `If-None-Match` with
//! [`ConditionalBuilder`](crate::operations::ConditionalBuilder), and
//! [`SendConditional::send_conditional`] is available on exactly those: like `send()`,
//! with `304` as [`Conditional::NotModified`]. The shape follows octocrab's `Etagged<T>`:
//! the entity tag, and the value or "not modified".

use std::future::Future;

use reqwest::StatusCode;
use reqwest::header::{ETAG, HeaderMap};

use crate::operations::ConditionalBuilder;
use crate::{Error, ResponseValue};

/// The outcome of a conditional read.
#[derive(Debug)]
pub enum Conditional<T> {
    /// The copy named by `If-None-Match` is stale (or none was named): the current one.
    Modified(ResponseValue<T>),
    /// The copy named by `If-None-Match` is current; the response had no body.
    NotModified(NotModified),
}

/// A `304 Not Modified` response: its headers (`ETag`, rate limits).
#[derive(Debug, Clone)]
pub struct NotModified {
    headers: HeaderMap,
}

impl NotModified {
    /// The response's headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }
}

impl<T> Conditional<T> {
    /// The `ETag` of the current copy, to send as `If-None-Match` next time.
    pub fn etag(&self) -> Option<&str> {
        self.headers().get(ETAG)?.to_str().ok()
    }

    /// The response's headers.
    pub fn headers(&self) -> &HeaderMap {
        match self {
            Self::Modified(response) => response.headers(),
            Self::NotModified(not_modified) => not_modified.headers(),
        }
    }

    /// The new value, or `None` when the copy named by `If-None-Match` is current.
    pub fn into_modified(self) -> Option<T> {
        match self {
            Self::Modified(response) => Some(response.into_inner()),
            Self::NotModified(_) => None,
        }
    }

    /// Whether the response was a `304 Not Modified`.
    pub fn is_not_modified(&self) -> bool {
        matches!(self, Self::NotModified(_))
    }
}

/// `send_conditional()` for the builders of operations that take `If-None-Match`.
///
/// ```no_run
/// # async fn demo(client: minitter_client::Client, id: &str) -> Result<(), Box<dyn std::error::Error>> {
/// use minitter_client::{Conditional, SendConditional};
///
/// let first = client.get_user().user_id(id).send_conditional().await?;
/// let etag = first.etag().map(str::to_owned);
/// // Later: ask again, naming the copy we have.
/// let mut request = client.get_user().user_id(id);
/// if let Some(etag) = etag {
///     request = request.if_none_match(etag);
/// }
/// match request.send_conditional().await? {
///     Conditional::NotModified(_) => println!("unchanged"),
///     Conditional::Modified(user) => println!("now {}", user.username.as_str()),
/// }
/// # Ok(()) }
/// ```
///
/// Only operations that take `If-None-Match` have it:
///
/// ```compile_fail,E0599
/// # async fn demo(client: minitter_client::Client) {
/// use minitter_client::SendConditional;
///
/// let _ = client.create_tweet().send_conditional().await;
/// # }
/// ```
pub trait SendConditional: ConditionalBuilder + Send {
    /// Sends the request like `send()`, with a `304` as [`Conditional::NotModified`].
    fn send_conditional(
        self,
    ) -> impl Future<Output = Result<Conditional<Self::Ok>, Error<Self::Err>>> + Send
    where
        Self::Ok: Send,
        Self::Err: Send,
    {
        async move {
            match crate::operations::OperationBuilder::send(self).await {
                Ok(response) => Ok(Conditional::Modified(response)),
                Err(Error::UnexpectedResponse(response))
                    if response.status() == StatusCode::NOT_MODIFIED =>
                {
                    Ok(Conditional::NotModified(NotModified {
                        headers: response.headers().clone(),
                    }))
                }
                Err(error) => Err(error),
            }
        }
    }
}

impl<B: ConditionalBuilder + Send> SendConditional for B {}
