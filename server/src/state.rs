//! What every request handler, the gateway and the background tasks share: built once by
//! [`crate::startup`], read everywhere else. A module of its own so that handlers and the
//! gateway depend on the state, not on the composition root that assembles it.

use std::sync::Arc;

use crate::http::client_address::TrustedProxies;
use crate::http::pagination::PageTokens;
use crate::http::serve::Draining;
use crate::infra::blob::BlobStore;
use crate::infra::store::SharedStore;
use crate::services::auth::Tokens;
use crate::services::events::Events;
use crate::services::gateway::Gateway;
use crate::services::login::{Hashing, LoginGuard};
use crate::services::profiles::Profiles;
use crate::services::realtime::Hub;
use crate::services::realtime::tickets::Tickets;
use crate::services::response_cache::ResponseCache;
use crate::services::timeline::Timelines;
use crate::services::webhooks::Webhooks;

/// What every request handler shares.
#[derive(Debug)]
pub struct AppState {
    pub store: SharedStore,
    pub tokens: Tokens,
    pub page_tokens: PageTokens,
    /// SHA-256 of the admin token, compared in constant time.
    pub admin_token_hash: [u8; 32],
    /// API keys and usage plans on `/v1`.
    pub gateway: Arc<Gateway>,
    /// False only when benchmarking the cost of the gateway.
    pub gateway_enabled: bool,
    /// False only when benchmarking the cost of metrics and the access log.
    pub telemetry_enabled: bool,
    /// The proxies whose forwarding headers name the client's address.
    pub trusted_proxies: TrustedProxies,
    /// Failed-login counters (per account and per key).
    pub login: LoginGuard,
    /// Password hashing with bounded concurrency.
    pub hashing: Hashing,
    /// Where profile pictures live.
    pub pictures: Arc<dyn BlobStore>,
    /// Users by id, kept up to date by the events.
    pub profiles: Arc<Profiles>,
    /// Home timelines and tweets by id, kept up to date by the events.
    pub timelines: Arc<Timelines>,
    /// Partners' webhook subscriptions: their queue and their delivery worker.
    pub webhooks: Arc<Webhooks>,
    /// The realtime stream's sockets and what they follow.
    pub realtime: Arc<Hub>,
    /// The one-time tickets that open the stream.
    pub tickets: Tickets,
    /// Whole answers of the operations the document lets be cached.
    pub response_cache: Arc<ResponseCache>,
    /// Word of committed changes, to this instance's caches and the other instances.
    pub events: Arc<Events>,
    /// Set once the instance has been told to stop: `/readyz` answers 503 from then on.
    pub draining: Arc<Draining>,
}
