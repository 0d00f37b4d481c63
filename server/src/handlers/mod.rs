//! The implementation of the generated contract: [`Server`] here (how each security
//! scheme is verified), and one file per spec tag implementing that tag's generated trait
//! (`UsersApi` in `users.rs`, ...), so adding an operation means writing one method.
//! Handlers are thin: take the validated input and verified credentials, call the store,
//! convert.
//!
//! Success answers are built from the operation's response enum. Failures are returned as
//! [`ApiError`] and rendered as Problem documents by the error middleware, so that every
//! error has one shape; the contract tests check that each status a handler produces is
//! one its operation declares.

mod admin;
mod auth;
mod follows;
mod health;
mod observability;
mod pictures;
pub mod stream;
mod tweets;
mod usage;
mod users;
mod webhooks;

use std::sync::Arc;

use uuid::Uuid;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::generated::Server;
use crate::http::error::{ApiError, Result};
use crate::http::pagination::DEFAULT_LIMIT;
use crate::http::request_id::RequestId;
use crate::services::gateway::ActiveKey;
use crate::state::AppState;

/// The server's implementation of the contract.
#[derive(Debug, Clone)]
pub struct Handlers {
    state: Arc<AppState>,
}

impl Handlers {
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }
}

/// How the document's security schemes are verified. The generated routes call these
/// before any handler, for the operations whose `security` names the scheme, and hand
/// the handler what they return.
impl Server for Handlers {
    type Error = ApiError;
    /// The calling key, admitted by its plan (see [`crate::services::gateway`]).
    type ApiKey = ActiveKey;
    /// The user a valid bearer token was issued to.
    type BearerAuth = Uuid;
    /// Proof that the request carries the admin token.
    type AdminAuth = Operator;

    async fn verify_api_key(&self, request: &poem::Request, secret: &str) -> Result<ActiveKey> {
        if !self.state.gateway_enabled {
            return Ok(ActiveKey::unmetered());
        }
        let key = self.state.gateway.admit(secret, request).await?;
        crate::http::telemetry::identify_key(request, key.id);
        if key.may_refresh_cache {
            crate::services::response_cache::allow_refresh(request);
        }
        Ok(key)
    }

    async fn verify_bearer_auth(&self, request: &poem::Request, token: &str) -> Result<Uuid> {
        let claims = self.state.tokens.verify(token).ok_or(ApiError::BAD_TOKEN)?;
        let user: Uuid = claims.sub.parse().map_err(|_| ApiError::BAD_TOKEN)?;
        // A token outlives nothing: one whose user no longer exists (an operator deleted
        // them, or the row went behind the server's back) is refused here, so no
        // operation ever acts, or writes, as a user who is not there. A cache hit almost
        // always (crate::services::profiles).
        if !self.state.profiles.exists(&self.state.store, user).await? {
            return Err(ApiError::BAD_TOKEN);
        }
        crate::http::telemetry::identify_user(request, user);
        Ok(user)
    }

    async fn verify_admin_auth(&self, _request: &poem::Request, token: &str) -> Result<Operator> {
        // Compared as SHA-256 digests, in constant time: neither the token's length nor
        // its prefix leaks through timing.
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if bool::from(presented[..].ct_eq(&self.state.admin_token_hash[..])) {
            Ok(Operator)
        } else {
            Err(ApiError::BAD_ADMIN_TOKEN)
        }
    }
}

/// The operator, authenticated by the admin token.
#[derive(Debug, Clone, Copy)]
pub struct Operator;

pub use pictures::{sweep_orphan_pictures_hourly, sweep_orphans};

const UNKNOWN_USER: ApiError = ApiError::NotFound("No user has this id.");

/// 404 unless the user exists.
async fn require_user(state: &AppState, id: Uuid) -> Result<()> {
    state
        .profiles
        .user(&state.store, id)
        .await?
        .map(|_| ())
        .ok_or(UNKNOWN_USER)
}

/// The cursor of a page token issued for `list`; any other token is a 400.
fn page_cursor<C: std::str::FromStr>(
    state: &AppState,
    list: &str,
    token: Option<&str>,
) -> Result<Option<C>> {
    token
        .map(|token| {
            state
                .page_tokens
                .verify(list, token)
                .and_then(|cursor| cursor.parse().ok())
                .ok_or(ApiError::InvalidPageToken)
        })
        .transpose()
}

/// The page size a list request asked for (the schema bounds it to 1..=100).
fn page_limit(limit: Option<std::num::NonZeroU32>) -> u32 {
    limit.map_or(DEFAULT_LIMIT, std::num::NonZeroU32::get)
}

/// The id of the request being served, for Problem documents built by handlers.
fn request_id(request: &poem::Request) -> String {
    request
        .extensions()
        .get::<RequestId>()
        .map(|id| id.0.clone())
        .unwrap_or_default()
}
