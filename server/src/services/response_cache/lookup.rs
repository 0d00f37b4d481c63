//! One GET's dealings with the response cache. The middleware ([`serve`]) cannot answer
//! by itself: before routing it knows neither the operation nor whether the credentials
//! are good. So it puts a [`Lookup`] in the request, which the generated route asks (as
//! [`codegen_runtime::StoredResponses`]) once the request is verified and validated; the
//! lookup decides hit, miss or bypass then, and on the way out stores a missed 200 and
//! says how the cache took part in `X-Cache`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use codegen_runtime::{RequestKey, ResponseStore, StoredResponses};
use poem::http::{HeaderValue, Method, StatusCode, header};
use poem::{Body, Endpoint, IntoResponse, Request, Response};
use uuid::Uuid;

use super::{Entry, ResponseCache};
use crate::generated::RESPONSE_CACHE;

/// The header that says how the cache took part.
const X_CACHE: &str = "x-cache";

/// How the cache took part in one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Hit,
    Miss,
    Bypass,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Bypass => "bypass",
        }
    }
}

/// One GET's dealings with the cache: what the generated route decides after the
/// credentials, and what to store afterwards. Nothing is worked out for a GET whose
/// operation does not opt in: the route never asks.
struct Lookup {
    cache: Arc<ResponseCache>,
    /// The key's plan allows refreshing; set when the key is verified.
    may_refresh: AtomicBool,
    decided: Mutex<Option<Decision>>,
}

struct Decision {
    outcome: Outcome,
    /// For a miss: the answer's key, how long to keep it, and the versions it is made at.
    store: Option<(String, Duration, Vec<u64>)>,
}

/// The entry key of a request: its canonical parameters and the negotiated content coding.
fn entry_key(request: &Request, key: &RequestKey) -> String {
    let coding = crate::http::compression::coding_for(
        request.header(header::ACCEPT_ENCODING).unwrap_or_default(),
    );
    format!("{}\n{coding}", key.text)
}

/// The ids among a request's path parameters, under which its entry is filed.
fn path_ids(key: &RequestKey) -> Vec<Uuid> {
    key.path_values
        .iter()
        .filter_map(|value| Uuid::try_parse(value).ok())
        .collect()
}

impl Lookup {
    fn new(cache: Arc<ResponseCache>) -> Self {
        Self {
            cache,
            may_refresh: AtomicBool::new(false),
            decided: Mutex::new(None),
        }
    }

    fn decide(
        &self,
        operation: &'static str,
        outcome: Outcome,
        store: Option<(String, Duration, Vec<u64>)>,
    ) {
        crate::infra::metrics::response_cache(operation, outcome.as_str());
        *self
            .decided
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Decision { outcome, store });
    }

    async fn stored(&self, request: &Request, key: RequestKey) -> Option<Response> {
        let operation = key.operation;
        let ttl = RESPONSE_CACHE
            .iter()
            .find(|(id, _)| *id == operation)
            .map(|(_, ttl)| Duration::from_secs(*ttl))?;
        let Some(entries) = &self.cache.entries else {
            self.decide(operation, Outcome::Bypass, None);
            return None;
        };
        if !self.cache.unwritten().is_empty() {
            self.decide(operation, Outcome::Bypass, None);
            return None;
        }
        let ids = path_ids(&key);
        let versions = match self.cache.versions.read(&ids).await {
            Ok(versions) => versions,
            Err(error) => {
                tracing::warn!(%error, "response cache: versions not readable; bypassing");
                // Other instances cannot write new versions either, and this one will not
                // hear of their writes meanwhile: nothing kept or seen so far can be
                // trusted later.
                self.cache.forget_all();
                self.decide(operation, Outcome::Bypass, None);
                return None;
            }
        };
        self.cache.saw(&ids, &versions);
        let refresh = self.may_refresh.load(Ordering::Relaxed)
            && request
                .header(header::CACHE_CONTROL)
                .is_some_and(asks_refresh);
        if refresh {
            // A fresh answer, from the database rather than the record caches.
            self.cache.forget_records(&ids);
        }
        let key = entry_key(request, &key);
        if !refresh
            && let Some(entry) = entries.get(&key)
            && entry.versions == versions
            && entry.expires > Instant::now()
        {
            self.decide(operation, Outcome::Hit, None);
            let mut response = Response::builder().status(StatusCode::OK).finish();
            response.headers_mut().extend(entry.headers());
            response.set_body(Body::from(entry.body.clone()));
            return Some(response);
        }
        self.decide(operation, Outcome::Miss, Some((key, ttl, versions)));
        None
    }

    /// Stores a missed 200 and says how the cache took part.
    async fn finish(&self, response: Response) -> poem::Result<Response> {
        let decided = self
            .decided
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let Some(decided) = decided else {
            return Ok(response);
        };
        if response.status() != StatusCode::OK {
            return Ok(response);
        }
        let mut response = match (decided.store, &self.cache.entries) {
            (Some((key, ttl, versions)), Some(entries)) => {
                let (parts, body) = response.into_parts();
                let body = body.into_bytes().await?;
                entries.insert(
                    key,
                    Arc::new(Entry::new(
                        &body,
                        &parts.headers,
                        versions,
                        Instant::now() + ttl,
                    )),
                );
                Response::from_parts(parts, Body::from(body))
            }
            _ => response,
        };
        response
            .headers_mut()
            .insert(X_CACHE, HeaderValue::from_static(decided.outcome.as_str()));
        Ok(response)
    }
}

impl ResponseStore for Lookup {
    fn stored<'a>(
        &'a self,
        request: &'a Request,
        key: RequestKey,
    ) -> Pin<Box<dyn Future<Output = Option<Response>> + Send + 'a>> {
        Box::pin(Lookup::stored(self, request, key))
    }
}

/// Whether a `Cache-Control` request header asks for a fresh answer.
fn asks_refresh(cache_control: &str) -> bool {
    cache_control.split(',').any(|directive| {
        let directive: String = directive
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_lowercase();
        directive == "no-cache"
            || directive
                .strip_prefix("max-age=")
                .and_then(|seconds| seconds.parse::<u64>().ok())
                == Some(0)
    })
}

/// Lets this request refresh the cache: its key's plan allows it.
pub fn allow_refresh(request: &Request) {
    if let Some(lookup) = request.extensions().get::<Arc<Lookup>>() {
        lookup.may_refresh.store(true, Ordering::Relaxed);
    }
}

/// Middleware: offers kept answers to the routes and keeps their 200s.
pub async fn serve<E: Endpoint>(
    cache: Arc<ResponseCache>,
    next: E,
    mut request: Request,
) -> poem::Result<Response> {
    if request.method() != Method::GET {
        return Ok(next.call(request).await?.into_response());
    }
    let lookup = Arc::new(Lookup::new(cache));
    request.extensions_mut().insert(StoredResponses(
        Arc::clone(&lookup) as Arc<dyn ResponseStore>
    ));
    request.extensions_mut().insert(Arc::clone(&lookup));
    let response = next.call(request).await?.into_response();
    lookup.finish(response).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_zero_and_no_cache_ask_for_a_refresh() {
        assert!(asks_refresh("max-age=0"));
        assert!(asks_refresh("no-store, max-age = 0"));
        assert!(asks_refresh("No-Cache"));
        assert!(!asks_refresh("max-age=60"));
        assert!(asks_refresh("max-age=00"));
        assert!(!asks_refresh("max-age=zero"));
        assert!(!asks_refresh(""));
    }
}
