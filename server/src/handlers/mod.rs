//! The implementation of the generated [`Api`] trait, one file per spec tag.
//!
//! Rust wants a trait implemented in one block, so this file is that block and each
//! method delegates to the function of the same name in its tag's module. Handlers are
//! thin: take the validated input, call the store, convert.
//!
//! Success answers are built from the operation's response enum. Failures are returned as
//! [`ApiError`] and rendered as Problem documents by the error middleware, so that every
//! error has one shape; the contract tests check that each status a handler produces is
//! one its operation declares.

mod admin;
mod auth;
mod follows;
mod health;
mod pictures;
mod tweets;
mod usage;
mod users;

use std::sync::Arc;

use uuid::Uuid;

use crate::error::{ApiError, Result};
use crate::generated::types;
use crate::generated::{
    Api, CreateTokenResponse, CreateTweetResponse, DeleteTweetResponse, FollowUserResponse,
    GetHealthResponse, GetMeResponse, GetReadinessResponse, GetTimelineResponse, GetTweetResponse,
    GetUserResponse, ListFollowersResponse, ListFollowingResponse, ListUserTweetsResponse,
    SignUpResponse, UnfollowUserResponse,
};
use crate::generated::{
    CreateApiKeyResponse, CreateUsagePlanResponse, DeleteApiKeyResponse, DeleteUsagePlanResponse,
    GetApiKeyResponse, GetUsagePlanResponse, ListApiKeysResponse, ListUsagePlansResponse,
    RotateApiKeyResponse, UpdateApiKeyResponse, UpdateUsagePlanResponse,
};
use crate::pagination::DEFAULT_LIMIT;
use crate::state::AppState;
use crate::telemetry::RequestId;

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

impl Api for Handlers {
    type Error = ApiError;

    async fn get_health(&self, _request: &poem::Request) -> Result<GetHealthResponse> {
        health::get_health().await
    }

    async fn get_readiness(&self, request: &poem::Request) -> Result<GetReadinessResponse> {
        health::get_readiness(&self.state, request).await
    }

    async fn sign_up(
        &self,
        _request: &poem::Request,
        body: types::NewUser,
    ) -> Result<SignUpResponse> {
        users::sign_up(&self.state, body).await
    }

    async fn get_user(
        &self,
        _request: &poem::Request,
        params: types::GetUserParams,
    ) -> Result<GetUserResponse> {
        users::get_user(&self.state, params).await
    }

    async fn create_token(
        &self,
        _request: &poem::Request,
        body: types::Credentials,
    ) -> Result<CreateTokenResponse> {
        auth::create_token(&self.state, body).await
    }

    async fn get_me(&self, request: &poem::Request) -> Result<GetMeResponse> {
        auth::get_me(&self.state, request).await
    }

    async fn follow_user(
        &self,
        request: &poem::Request,
        params: types::FollowUserParams,
    ) -> Result<FollowUserResponse> {
        follows::follow_user(&self.state, request, params).await
    }

    async fn unfollow_user(
        &self,
        request: &poem::Request,
        params: types::UnfollowUserParams,
    ) -> Result<UnfollowUserResponse> {
        follows::unfollow_user(&self.state, request, params).await
    }

    async fn list_followers(
        &self,
        _request: &poem::Request,
        params: types::ListFollowersParams,
    ) -> Result<ListFollowersResponse> {
        follows::list_followers(&self.state, params).await
    }

    async fn list_following(
        &self,
        _request: &poem::Request,
        params: types::ListFollowingParams,
    ) -> Result<ListFollowingResponse> {
        follows::list_following(&self.state, params).await
    }

    async fn create_tweet(
        &self,
        request: &poem::Request,
        params: types::CreateTweetParams,
        body: types::NewTweet,
    ) -> Result<CreateTweetResponse> {
        tweets::create_tweet(&self.state, request, params, body).await
    }

    async fn get_tweet(
        &self,
        _request: &poem::Request,
        params: types::GetTweetParams,
    ) -> Result<GetTweetResponse> {
        tweets::get_tweet(&self.state, params).await
    }

    async fn delete_tweet(
        &self,
        request: &poem::Request,
        params: types::DeleteTweetParams,
    ) -> Result<DeleteTweetResponse> {
        tweets::delete_tweet(&self.state, request, params).await
    }

    async fn list_user_tweets(
        &self,
        _request: &poem::Request,
        params: types::ListUserTweetsParams,
    ) -> Result<ListUserTweetsResponse> {
        tweets::list_user_tweets(&self.state, params).await
    }

    async fn get_timeline(
        &self,
        request: &poem::Request,
        params: types::GetTimelineParams,
    ) -> Result<GetTimelineResponse> {
        tweets::get_timeline(&self.state, request, params).await
    }

    async fn put_picture(
        &self,
        request: &poem::Request,
        body: Vec<u8>,
    ) -> Result<crate::generated::PutPictureResponse> {
        pictures::put_picture(&self.state, request, body).await
    }

    async fn get_picture(
        &self,
        _request: &poem::Request,
        params: types::GetPictureParams,
    ) -> Result<crate::generated::GetPictureResponse> {
        pictures::get_picture(&self.state, params).await
    }

    async fn get_usage(
        &self,
        request: &poem::Request,
    ) -> Result<crate::generated::GetUsageResponse> {
        usage::get_usage(&self.state, request).await
    }

    async fn get_usage_report(
        &self,
        request: &poem::Request,
        params: types::GetUsageReportParams,
    ) -> Result<crate::generated::GetUsageReportResponse> {
        admin::require_admin(&self.state, request)?;
        admin::get_usage_report(&self.state, params).await
    }

    async fn create_usage_plan(
        &self,
        request: &poem::Request,
        body: types::UsagePlanInput,
    ) -> Result<CreateUsagePlanResponse> {
        admin::require_admin(&self.state, request)?;
        admin::create_usage_plan(&self.state, body).await
    }

    async fn list_usage_plans(
        &self,
        request: &poem::Request,
        params: types::ListUsagePlansParams,
    ) -> Result<ListUsagePlansResponse> {
        admin::require_admin(&self.state, request)?;
        admin::list_usage_plans(&self.state, params).await
    }

    async fn get_usage_plan(
        &self,
        request: &poem::Request,
        params: types::GetUsagePlanParams,
    ) -> Result<GetUsagePlanResponse> {
        admin::require_admin(&self.state, request)?;
        admin::get_usage_plan(&self.state, params).await
    }

    async fn update_usage_plan(
        &self,
        request: &poem::Request,
        params: types::UpdateUsagePlanParams,
        body: types::UsagePlanInput,
    ) -> Result<UpdateUsagePlanResponse> {
        admin::require_admin(&self.state, request)?;
        admin::update_usage_plan(&self.state, params, body).await
    }

    async fn delete_usage_plan(
        &self,
        request: &poem::Request,
        params: types::DeleteUsagePlanParams,
    ) -> Result<DeleteUsagePlanResponse> {
        admin::require_admin(&self.state, request)?;
        admin::delete_usage_plan(&self.state, params).await
    }

    async fn create_api_key(
        &self,
        request: &poem::Request,
        body: types::NewApiKey,
    ) -> Result<CreateApiKeyResponse> {
        admin::require_admin(&self.state, request)?;
        admin::create_api_key(&self.state, body).await
    }

    async fn list_api_keys(
        &self,
        request: &poem::Request,
        params: types::ListApiKeysParams,
    ) -> Result<ListApiKeysResponse> {
        admin::require_admin(&self.state, request)?;
        admin::list_api_keys(&self.state, params).await
    }

    async fn get_api_key(
        &self,
        request: &poem::Request,
        params: types::GetApiKeyParams,
    ) -> Result<GetApiKeyResponse> {
        admin::require_admin(&self.state, request)?;
        admin::get_api_key(&self.state, params).await
    }

    async fn update_api_key(
        &self,
        request: &poem::Request,
        params: types::UpdateApiKeyParams,
        body: types::ApiKeyUpdate,
    ) -> Result<UpdateApiKeyResponse> {
        admin::require_admin(&self.state, request)?;
        admin::update_api_key(&self.state, params, body).await
    }

    async fn rotate_api_key(
        &self,
        request: &poem::Request,
        params: types::RotateApiKeyParams,
    ) -> Result<RotateApiKeyResponse> {
        admin::require_admin(&self.state, request)?;
        admin::rotate_api_key(&self.state, params).await
    }

    async fn delete_api_key(
        &self,
        request: &poem::Request,
        params: types::DeleteApiKeyParams,
    ) -> Result<DeleteApiKeyResponse> {
        admin::require_admin(&self.state, request)?;
        admin::delete_api_key(&self.state, params).await
    }
}

pub use pictures::{sweep_orphan_pictures_hourly, sweep_orphans};

const BAD_TOKEN: ApiError = ApiError::Unauthorized("The bearer token is missing or invalid.");

/// The id of the user whose valid bearer token the request carries.
fn authenticated_user(state: &AppState, request: &poem::Request) -> Result<Uuid> {
    let token = crate::auth::bearer_token(request).ok_or(BAD_TOKEN)?;
    let claims = state.tokens.verify(token).ok_or(BAD_TOKEN)?;
    claims.sub.parse().map_err(|_| BAD_TOKEN)
}

const UNKNOWN_USER: ApiError = ApiError::NotFound("No user has this id.");

/// 404 unless the user exists.
async fn require_user(state: &AppState, id: Uuid) -> Result<()> {
    state
        .store
        .user_by_id(id)
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
