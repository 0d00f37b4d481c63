//! Answers a middleware keeps (a response cache), offered to the generated route of an
//! operation that opts in with `x-minitter-cache`.
//!
//! The middleware cannot answer from its store by itself: it runs before routing, so it
//! knows neither the operation nor whether the request's credentials are good. So it puts
//! a [`StoredResponses`] into the request, and the generated route, *after* it has verified
//! the credentials (which also meters an API key) and validated the request, asks it with
//! [`stored_response`] for a kept answer before running the handler. Without a [`StoredResponses`] in the request
//! every operation simply runs.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A middleware's store of answers, as the generated routes see it.
pub trait ResponseStore: Send + Sync {
    /// The kept answer to `request`, served by `operation`, if there is a current one.
    fn stored<'a>(
        &'a self,
        request: &'a poem::Request,
        operation: &'static str,
    ) -> Pin<Box<dyn Future<Output = Option<poem::Response>> + Send + 'a>>;
}

/// What a middleware puts into a request to offer its kept answers.
#[derive(Clone)]
pub struct StoredResponses(pub Arc<dyn ResponseStore>);

/// Called by the generated route of an operation that may be cached, once its credentials
/// are verified: the kept answer, if the middleware has one.
pub async fn stored_response(
    request: &poem::Request,
    operation: &'static str,
) -> Option<poem::Response> {
    let store = request.extensions().get::<StoredResponses>()?.0.clone();
    store.stored(request, operation).await
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Always;

    impl ResponseStore for Always {
        fn stored<'a>(
            &'a self,
            _request: &'a poem::Request,
            operation: &'static str,
        ) -> Pin<Box<dyn Future<Output = Option<poem::Response>> + Send + 'a>> {
            Box::pin(async move { Some(poem::Response::builder().body(operation)) })
        }
    }

    #[tokio::test]
    async fn a_request_without_a_store_has_no_stored_answer() {
        let request = poem::Request::builder().finish();
        assert!(stored_response(&request, "get_user").await.is_none());
        let mut request = poem::Request::builder().finish();
        request
            .extensions_mut()
            .insert(StoredResponses(Arc::new(Always)));
        let answer = stored_response(&request, "get_user").await.expect("stored");
        assert_eq!(
            answer.into_body().into_string().await.expect("text"),
            "get_user"
        );
    }
}
