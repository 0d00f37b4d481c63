//! The gateway: every operation whose `security` requires the `apiKey` scheme needs an
//! `x-api-key` of an enabled key, whose usage plan's throttle and quota it must fit, and
//! every keyed response says where the key stands (`RateLimit-Policy`, `RateLimit`,
//! `X-RateLimit-*`). Which operations are keyed is the document's business: the
//! generated routes call [`Gateway::admit`] through `Server::verify_api_key`, and
//! [`rate_limit_headers`] writes the headers of whatever response comes out.
//!
//! Keys are looked up by the SHA-256 of the presented secret through a per-node cache
//! whose entries live one second, so the hot path reads no database and disabling,
//! rotating or deleting a key takes effect within a second: at once on the node that
//! made the change, which clears its cache, and on every node when they share Redis,
//! which carries the news ([`redis`]). See `docs/gateway.md`.
//!
//! A key's plan and the key itself may each restrict the client addresses it is used from
//! ([`IpPolicy`]): that is checked right after the key is found and before the throttle
//! and quota, so a refused address spends nothing (403 `ip_not_allowed`). The address is
//! the [`ClientAddress`] the HTTP layer resolved (through trusted proxies only); a request
//! without one meets a restricted key refused.
//!
//! Three pieces, each with its own errors: the key cache here; [`admission::Admission`]
//! (throttle and quota: in this process, or in Redis for several instances); and the
//! [`ledger::UsageLedger`] (counting what was admitted, for reports).

pub mod admission;
pub mod ledger;
pub mod limits;
pub mod redis;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
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
use crate::domain::events::Event;
use crate::domain::ip_policy::IpPolicy;
use crate::http::client_address::ClientAddress;
use crate::http::error::{ApiError, error_to_response};
use crate::http::request_id::RequestId;
use crate::infra::redis::SharedRedis;
use crate::infra::store::{SharedStore, StoreError, secret_hash};
use crate::services::events::{Origin, Subscriber};

/// How long a looked-up key is trusted before it is read again.
const KEY_CACHE_TTL: Duration = Duration::from_secs(1);
/// Past this many cached keys the cache starts afresh (unknown keys are cached too).
const KEY_CACHE_MAX: usize = 100_000;

/// A key that may call the API, as verified for the handlers of keyed operations.
#[derive(Debug, Clone)]
pub struct ActiveKey {
    pub id: Uuid,
    pub plan_id: Uuid,
    pub limits: PlanLimits,
    /// The plan lets the key refresh the response cache.
    pub may_refresh_cache: bool,
    /// How many stream sockets the plan lets the key hold open.
    pub stream_connection_limit: u32,
    /// The plan's and the key's IP policies, when either restricts anything (shared, so
    /// that the cache hands out a key without copying its lists).
    pub ip_policies: Option<Arc<[IpPolicy; 2]>>,
}

impl ActiveKey {
    /// What a keyed handler gets while the gateway is off (only to measure its cost).
    pub fn unmetered() -> Self {
        Self {
            id: Uuid::nil(),
            plan_id: Uuid::nil(),
            limits: PlanLimits {
                throttle: None,
                quota: None,
            },
            may_refresh_cache: false,
            stream_connection_limit: u32::MAX,
            ip_policies: None,
        }
    }

    /// Whether a request from `client` may use this key: both policies admit it.
    fn admits(&self, client: Option<IpAddr>) -> bool {
        match (&self.ip_policies, client) {
            (None, _) => true,
            (Some(policies), Some(client)) => policies.iter().all(|p| p.admits(client)),
            (Some(_), None) => false,
        }
    }
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
        }
    }

    /// Forgets every cached key.
    pub fn forget_keys(&self) {
        self.cache().clear();
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
                may_refresh_cache: plan.allow_cache_refresh,
                stream_connection_limit: plan.stream_connection_limit,
                ip_policies: (!plan.ip_policy.is_open() || !key.ip_policy.is_open())
                    .then(|| Arc::new([plan.ip_policy, key.ip_policy])),
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

impl Gateway {
    /// Verifies an `x-api-key` for an operation whose `security` requires one (the
    /// generated route calls this through `Server::verify_api_key`): the key must be
    /// enabled, the request's address admitted by the key's and its plan's IP policies,
    /// and the plan's throttle and quota must admit the request, which is then counted. The decision goes into the request's [`RateLimitSlot`], from which
    /// [`rate_limit_headers`] writes the headers, refusals included.
    pub async fn admit(&self, secret: &str, request: &Request) -> Result<ActiveKey, ApiError> {
        let key = self.active_key(secret).await?.ok_or(ApiError::NO_KEY)?;
        if !key.admits(ClientAddress::of(request)) {
            crate::infra::metrics::gateway_decision(key.plan_id, "ip_not_allowed");
            return Err(ApiError::IpNotAllowed);
        }
        let now = chrono::Utc::now();
        let decision = self.admission.admit(key.id, key.limits, 1, now).await?;
        if let Some(slot) = request.extensions().get::<RateLimitSlot>() {
            let admitted =
                (decision.verdict == Verdict::Admitted).then(|| (key.id, Arc::clone(&self.ledger)));
            let _ = slot.0.set(Decided { decision, admitted });
        }
        match decision.verdict {
            Verdict::Admitted => {
                crate::infra::metrics::gateway_decision(key.plan_id, "admitted");
                self.ledger.count(key.id, now.date_naive(), 1);
                Ok(key)
            }
            Verdict::Throttled { retry_after } => {
                crate::infra::metrics::gateway_decision(key.plan_id, "throttled");
                self.ledger.count_throttled(key.id, now.date_naive());
                Err(ApiError::Throttled { retry_after })
            }
            Verdict::QuotaExceeded { retry_after } => {
                crate::infra::metrics::gateway_decision(key.plan_id, "quota_exceeded");
                self.ledger.count_throttled(key.id, now.date_naive());
                Err(ApiError::QuotaExceeded { retry_after })
            }
        }
    }
}

impl Gateway {
    /// Meters stream messages of a key: `units` messages its client sent or it was sent,
    /// under `limits` (a socket keeps those of its ticket). Admitted units count in the
    /// usage reports like requests; the verdict says whether the quota (and the throttle,
    /// when `limits` has one) admitted them.
    pub async fn meter(
        &self,
        key_id: Uuid,
        plan_id: Uuid,
        limits: PlanLimits,
        units: u64,
    ) -> Result<Decision, GatewayError> {
        let now = chrono::Utc::now();
        let decision = self.admission.admit(key_id, limits, units, now).await?;
        let outcome = match decision.verdict {
            Verdict::Admitted => {
                self.ledger.count(key_id, now.date_naive(), units);
                "admitted"
            }
            Verdict::Throttled { .. } => "throttled",
            Verdict::QuotaExceeded { .. } => "quota_exceeded",
        };
        crate::infra::metrics::gateway_decision(plan_id, outcome);
        Ok(decision)
    }
}

/// Where [`Gateway::admit`] leaves its decision for the middleware that writes the
/// rate-limit headers (the decision is made inside the generated route, the headers
/// are added to whatever response comes out of it), and, for an admitted request, the
/// key and the ledger that count it if it is answered with a 4xx.
#[derive(Debug, Clone, Default)]
pub struct RateLimitSlot(Arc<OnceLock<Decided>>);

#[derive(Debug)]
struct Decided {
    decision: Decision,
    admitted: Option<(Uuid, Arc<UsageLedger>)>,
}

/// Middleware: the rate-limit headers of every keyed response, refusals included.
pub async fn rate_limit_headers<E: Endpoint>(
    next: E,
    mut request: Request,
) -> poem::Result<Response> {
    let slot = RateLimitSlot::default();
    request.extensions_mut().insert(slot.clone());
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .map(|id| id.0.clone())
        .unwrap_or_default();
    // Errors are rendered here rather than by the outer middleware, so that they too
    // carry the headers.
    let mut response = match next.call(request).await {
        Ok(response) => response.into_response(),
        Err(error) => error_to_response(error, &request_id),
    };
    if let Some(decided) = slot.0.get() {
        set_rate_limit_headers(&mut response, &decided.decision);
        if let Some((key_id, ledger)) = &decided.admitted
            && response.status().is_client_error()
        {
            ledger.count_client_error(*key_id, chrono::Utc::now().date_naive());
        }
    }
    Ok(response)
}

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

/// The key cache follows the operator's changes: every instance drops its cached keys
/// when any instance changes a key or plan (within [`KEY_CACHE_TTL`] at worst, as entries
/// expire, while the instances cannot reach each other).
#[async_trait::async_trait]
impl Subscriber for Gateway {
    async fn on_event(&self, event: &Event, _origin: Origin) {
        if *event == Event::KeyChanged {
            self.forget_keys();
        }
    }

    fn set_in_sync(&self, _in_sync: bool) {
        // Cached keys live a second at most, so they need no more than a fresh start.
        self.forget_keys();
    }
}
