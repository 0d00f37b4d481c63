//! The gateway in front of `/v1`: every request needs an `x-api-key` of an enabled key,
//! whose usage plan's throttle and quota it must fit, and every keyed response says where
//! the key stands (`RateLimit-Policy`, `RateLimit`, `X-RateLimit-*`).
//!
//! Keys are looked up by the SHA-256 of the presented secret through a per-node cache
//! whose entries live one second, so the hot path reads no database and disabling,
//! rotating or deleting a key takes effect within a second: at once on the node that
//! made the change, which clears its cache, and on every node when they share Redis,
//! which carries the news ([`redis`]). See `docs/gateway.md`.
//!
//! Three pieces, each with its own errors: the key cache here; [`admission::Admission`]
//! (throttle and quota: in this process, or in Redis for several instances); and the
//! [`ledger::UsageLedger`] (counting what was admitted, for reports).

pub mod admission;
pub mod ledger;
pub mod limits;
pub mod redis;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use poem::http::HeaderValue;
use poem::{Endpoint, IntoResponse, Request, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use self::admission::Admission;
use self::ledger::UsageLedger;
use self::limits::{Decision, Period, PlanLimits, Verdict};
use self::redis::SharedRedis;
use crate::error::{ApiError, error_to_response, render_api_error};
use crate::state::AppState;
use crate::store::{SharedStore, StoreError, secret_hash};
use crate::telemetry::RequestId;

/// How long a looked-up key is trusted before it is read again.
const KEY_CACHE_TTL: Duration = Duration::from_secs(1);
/// Past this many cached keys the cache starts afresh (unknown keys are cached too).
const KEY_CACHE_MAX: usize = 100_000;

/// A key that may call the API; handlers find it in the request's extensions.
#[derive(Debug, Clone)]
pub struct ActiveKey {
    pub id: Uuid,
    pub plan_id: Uuid,
    pub limits: PlanLimits,
}

/// Looked-up keys by the SHA-256 of their secret, with when they were looked up; `None`
/// for a secret that matches no enabled key.
type KeyCache = HashMap<[u8; 32], (Instant, Option<ActiveKey>)>;

/// Why the gateway could not decide.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The database (key lookup, usage counts) failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The shared limiter (Redis) did not answer in time.
    #[error("the shared limiter is unavailable")]
    LimiterUnavailable(#[source] anyhow::Error),
}

impl From<GatewayError> for ApiError {
    fn from(error: GatewayError) -> Self {
        match error {
            GatewayError::Store(error) => error.into(),
            GatewayError::LimiterUnavailable(cause) => Self::Unavailable(cause),
        }
    }
}

/// Keys, limits and counters.
pub struct Gateway {
    store: SharedStore,
    admission: Arc<dyn Admission>,
    ledger: Arc<UsageLedger>,
    /// Where key changes are announced to the other instances, when there are any.
    redis: Option<SharedRedis>,
    cache: std::sync::Mutex<KeyCache>,
    /// Requests refused for the throttle and for the quota, for metrics.
    pub throttled: AtomicU64,
    pub quota_exceeded: AtomicU64,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").finish_non_exhaustive()
    }
}

impl Gateway {
    /// The gateway of a single instance: admission decided in this process.
    pub fn in_process(store: SharedStore) -> Self {
        let ledger = Arc::new(UsageLedger::new(Arc::clone(&store)));
        let admission = Arc::new(admission::InProcessAdmission::new(Arc::clone(&ledger)));
        Self::new(store, admission, ledger, None)
    }

    /// The gateway of one of several instances: admission decided in Redis, key changes
    /// announced through it.
    pub fn shared(store: SharedStore, redis: SharedRedis) -> Self {
        let ledger = Arc::new(UsageLedger::new(Arc::clone(&store)));
        let admission = Arc::new(redis::RedisAdmission::new(
            redis.clone(),
            Arc::clone(&ledger),
        ));
        Self::new(store, admission, ledger, Some(redis))
    }

    fn new(
        store: SharedStore,
        admission: Arc<dyn Admission>,
        ledger: Arc<UsageLedger>,
        redis: Option<SharedRedis>,
    ) -> Self {
        Self {
            store,
            admission,
            ledger,
            redis,
            cache: Default::default(),
            throttled: AtomicU64::new(0),
            quota_exceeded: AtomicU64::new(0),
        }
    }

    /// Forgets every cached key.
    pub fn forget_keys(&self) {
        self.cache().clear();
    }

    /// After an operator's change to keys or plans has committed: this instance forgets
    /// its cached keys at once, and the others too when they share Redis (else within
    /// [`KEY_CACHE_TTL`], as their entries expire).
    pub async fn keys_changed(&self) {
        self.forget_keys();
        if let Some(redis) = &self.redis {
            redis.announce_key_change().await;
        }
    }

    /// The Redis connection, when instances share one.
    pub fn redis(&self) -> Option<&SharedRedis> {
        self.redis.as_ref()
    }

    /// Requests admitted for a key on UTC days `since..`.
    pub async fn used_since(&self, key_id: Uuid, since: NaiveDate) -> Result<u64, StoreError> {
        self.ledger.used_since(key_id, since).await
    }

    /// Writes pending usage counts; the server calls it every second and at shutdown.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.ledger.flush().await
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, KeyCache> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The key this secret belongs to, if it is enabled.
    async fn active_key(&self, secret: &str) -> Result<Option<ActiveKey>, StoreError> {
        let hash: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        if let Some((at, key)) = self.cache().get(&hash)
            && at.elapsed() < KEY_CACHE_TTL
        {
            return Ok(key.clone());
        }
        let hex = secret_hash(secret);
        let found = self.store.key_by_secret_hash(&hex).await?;
        let active = found.and_then(|(key, plan, stored_hash)| {
            // The index found it by hash; the comparison that decides is constant-time.
            let matches: bool = stored_hash.as_bytes().ct_eq(hex.as_bytes()).into();
            (matches && key.enabled).then(|| ActiveKey {
                id: key.id,
                plan_id: plan.id,
                limits: PlanLimits {
                    throttle: plan.throttle.map(|(rate, burst)| (rate, burst as f64)),
                    quota: plan.quota.as_ref().and_then(|(limit, period)| {
                        Some((u64::try_from(*limit).ok()?, Period::parse(period)?))
                    }),
                },
            })
        });
        let mut cache = self.cache();
        if cache.len() >= KEY_CACHE_MAX {
            cache.clear();
        }
        cache.insert(hash, (Instant::now(), active.clone()));
        Ok(active)
    }
}

/// Middleware: the API key and usage plan of every `/v1` request.
pub async fn enforce<E: Endpoint>(
    next: E,
    mut request: Request,
    state: Arc<AppState>,
) -> poem::Result<Response> {
    if !state.gateway_enabled || !request.uri().path().starts_with("/v1/") {
        return next.call(request).await.map(IntoResponse::into_response);
    }
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .map(|id| id.0.clone())
        .unwrap_or_default();
    let gateway = &state.gateway;
    let Some(secret) = request.header("x-api-key").map(str::to_owned) else {
        return Ok(render_api_error(&NO_KEY, &request_id));
    };
    let key = match gateway.active_key(&secret).await {
        Ok(Some(key)) => key,
        Ok(None) => return Ok(render_api_error(&NO_KEY, &request_id)),
        Err(error) => return Ok(render_api_error(&ApiError::from(error), &request_id)),
    };
    let now = chrono::Utc::now();
    let decision = match gateway.admission.admit(key.id, key.limits, now).await {
        Ok(decision) => decision,
        Err(error) => return Ok(render_api_error(&ApiError::from(error), &request_id)),
    };
    if decision.verdict == Verdict::Admitted {
        gateway.ledger.count(key.id, now.date_naive());
    }
    let mut response = match decision.verdict {
        // Errors are rendered here rather than by the outer middleware, so that they too
        // carry the rate-limit headers.
        Verdict::Admitted => match next
            .call({
                request.extensions_mut().insert(key);
                request
            })
            .await
        {
            Ok(response) => response.into_response(),
            Err(error) => error_to_response(error, &request_id),
        },
        Verdict::Throttled { retry_after } => {
            gateway.throttled.fetch_add(1, Ordering::Relaxed);
            render_api_error(&ApiError::Throttled { retry_after }, &request_id)
        }
        Verdict::QuotaExceeded { retry_after } => {
            gateway.quota_exceeded.fetch_add(1, Ordering::Relaxed);
            render_api_error(&ApiError::QuotaExceeded { retry_after }, &request_id)
        }
    };
    set_rate_limit_headers(&mut response, &decision);
    Ok(response)
}

const NO_KEY: ApiError = ApiError::Forbidden("A valid, enabled x-api-key is required.");

/// `RateLimit-Policy`, `RateLimit` (draft-ietf-httpapi-ratelimit-headers) and the
/// `X-RateLimit-*` trio, for the quota when the plan has one, else for the burst.
fn set_rate_limit_headers(response: &mut Response, decision: &Decision) {
    let (name, limit, remaining, reset, window) = match (decision.quota, decision.burst) {
        (Some(q), _) => ("quota", q.limit, q.remaining, q.resets_in, q.window),
        (None, Some(b)) => ("burst", b.burst, b.remaining, b.full_in, b.full_in.max(1)),
        (None, None) => return,
    };
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set(
        "ratelimit-policy",
        format!("\"{name}\";q={limit};w={window}"),
    );
    set("ratelimit", format!("\"{name}\";r={remaining};t={reset}"));
    set("x-ratelimit-limit", limit.to_string());
    set("x-ratelimit-remaining", remaining.to_string());
    set("x-ratelimit-reset", reset.to_string());
}
