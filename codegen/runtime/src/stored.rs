//! Answers a middleware keeps (a response cache), offered to the generated route of an
//! operation that opts in with `x-minitter-cache`.
//!
//! The middleware cannot answer from its store by itself: it runs before routing, so it
//! knows neither the operation nor whether the request's credentials are good. So it puts
//! a [`StoredResponses`] into the request, and the generated route, *after* it has verified
//! the credentials (which also meters an API key) and validated the request, asks it with
//! [`stored_response`] for a kept answer before running the handler. Without a
//! [`StoredResponses`] in the request every operation simply runs.
//!
//! **What names an answer.** The route hands the store a [`RequestKey`] made from the
//! parameters *as the handler receives them*: decoded by the router, parsed into the
//! operation's typed params and serialized back, path and query only, in the document's
//! order. So every spelling of a request that reaches the same handler call
//! (`%30%31…` for `01…`, upper-case hex in a uuid, `limit=020`, reordered, repeated or
//! unknown query parameters) has one key, and a store never has to re-parse a URI the
//! router has already read its own way.

use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::Value;

use crate::{Location, Operation};

/// A request as the handler of a cacheable operation sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestKey {
    /// The operationId.
    pub operation: &'static str,
    /// The path parameters' values, canonical, in the document's order: the resources the
    /// answer shows (a store files the answer under them to invalidate it).
    pub path_values: Vec<String>,
    /// The operation, path and query parameters as one canonical text: the entry's name.
    pub text: String,
}

impl RequestKey {
    /// The key of `operation` called with `params` (its typed params struct). Header
    /// parameters (`If-None-Match`, `Cache-Control`) are left out: they decide *whether* a
    /// kept answer serves, not *which* one.
    /// `None` if `params` does not serialize (a bug in the generated types): the request
    /// then runs uncached rather than under a key that could be shared.
    pub fn of<P: serde::Serialize>(operation: &Operation, params: &P) -> Option<Self> {
        // The params struct serializes under the document's names.
        let values = serde_json::to_value(params).ok()?;
        let mut path_values = Vec::new();
        let mut text = operation.id.to_owned();
        for param in operation.params {
            if !matches!(param.location, Location::Path | Location::Query) {
                continue;
            }
            let Some(value) = values.get(param.name).filter(|v| !v.is_null()) else {
                continue;
            };
            let canonical = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            if param.location == Location::Path {
                path_values.push(canonical.clone());
            }
            // `name=<JSON>` cannot be confused across parameters: a JSON string is quoted
            // and escaped, so no value can forge a separator.
            let _ = write!(text, "\n{}={value}", param.name);
        }
        Some(Self {
            operation: operation.id,
            path_values,
            text,
        })
    }
}

/// A middleware's store of answers, as the generated routes see it.
pub trait ResponseStore: Send + Sync {
    /// The kept answer to `request`, named by `key`, if there is a current one.
    fn stored<'a>(
        &'a self,
        request: &'a poem::Request,
        key: RequestKey,
    ) -> Pin<Box<dyn Future<Output = Option<poem::Response>> + Send + 'a>>;
}

/// What a middleware puts into a request to offer its kept answers.
#[derive(Clone)]
pub struct StoredResponses(pub Arc<dyn ResponseStore>);

/// Called by the generated route of an operation that may be cached, once its credentials
/// are verified and its request validated into `params`: the kept answer, if the
/// middleware has one. Nothing is worked out when no middleware offers answers.
pub async fn stored_response<P: serde::Serialize>(
    request: &poem::Request,
    operation: &Operation,
    params: &P,
) -> Option<poem::Response> {
    let store = request.extensions().get::<StoredResponses>()?.0.clone();
    store
        .stored(request, RequestKey::of(operation, params)?)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Param, Scalar};

    static GET_THING: Operation = Operation {
        id: "get_thing",
        params: &[
            Param {
                name: "thing_id",
                location: Location::Path,
                scalar: Scalar::String,
                array: false,
            },
            Param {
                name: "If-None-Match",
                location: Location::Header,
                scalar: Scalar::String,
                array: false,
            },
            Param {
                name: "limit",
                location: Location::Query,
                scalar: Scalar::Integer,
                array: false,
            },
            Param {
                name: "page_token",
                location: Location::Query,
                scalar: Scalar::String,
                array: false,
            },
        ],
        body: None,
    };

    #[derive(serde::Serialize)]
    struct Params {
        thing_id: uuid::Uuid,
        #[serde(rename = "If-None-Match", skip_serializing_if = "Option::is_none")]
        if_none_match: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        page_token: Option<String>,
    }

    fn key(id: &str, tag: Option<&str>, limit: Option<u32>, token: Option<&str>) -> RequestKey {
        let params = Params {
            thing_id: id.parse().expect("uuid"),
            if_none_match: tag.map(str::to_owned),
            limit,
            page_token: token.map(str::to_owned),
        };
        RequestKey::of(&GET_THING, &params).expect("serializable")
    }

    const ID: &str = "01936c4e-7a9b-7cc3-a2d5-4f0e8c1b2a3d";

    #[test]
    fn a_key_holds_the_canonical_path_and_query_but_no_header() {
        let key = key(&ID.to_uppercase(), Some("\"abc\""), Some(20), Some("x"));
        assert_eq!(key.operation, "get_thing");
        assert_eq!(key.path_values, vec![ID.to_owned()]);
        assert_eq!(
            key.text,
            format!("get_thing\nthing_id=\"{ID}\"\nlimit=20\npage_token=\"x\"")
        );
        assert_eq!(key, self::key(ID, None, Some(20), Some("x")));
    }

    #[test]
    fn absent_parameters_and_crafted_values_make_distinct_keys() {
        assert_ne!(key(ID, None, None, None), key(ID, None, Some(20), None));
        // A token that looks like another parameter stays inside its own quotes.
        assert_ne!(
            key(ID, None, None, Some("\"\nlimit=20")),
            key(ID, None, Some(20), None)
        );
    }

    struct Always;

    impl ResponseStore for Always {
        fn stored<'a>(
            &'a self,
            _request: &'a poem::Request,
            key: RequestKey,
        ) -> Pin<Box<dyn Future<Output = Option<poem::Response>> + Send + 'a>> {
            Box::pin(async move { Some(poem::Response::builder().body(key.text)) })
        }
    }

    #[tokio::test]
    async fn a_request_without_a_store_has_no_stored_answer() {
        let params = Params {
            thing_id: ID.parse().expect("uuid"),
            if_none_match: None,
            limit: None,
            page_token: None,
        };
        let request = poem::Request::builder().finish();
        assert!(
            stored_response(&request, &GET_THING, &params)
                .await
                .is_none()
        );
        let mut request = poem::Request::builder().finish();
        request
            .extensions_mut()
            .insert(StoredResponses(Arc::new(Always)));
        let answer = stored_response(&request, &GET_THING, &params)
            .await
            .expect("stored");
        assert_eq!(
            answer.into_body().into_string().await.expect("text"),
            format!("get_thing\nthing_id=\"{ID}\"")
        );
    }
}
