//! `auth` tag: logging in, and the logged-in user.

use super::Handlers;
use crate::generated::{AuthApi, CreateTokenAuth, GetMeAuth};
use secrecy::SecretString;

use super::BAD_TOKEN;
use crate::error::{ApiError, Result};
use crate::generated::types::{
    self, AccessToken, AccessTokenTokenType, CurrentUser, DisplayName, Email, Username,
};
use crate::generated::{CreateTokenResponse, GetMeResponse};

const BAD_CREDENTIALS: ApiError = ApiError::Unauthorized("The email or password is wrong.");

impl AuthApi for Handlers {
    async fn create_token(
        &self,
        _request: &poem::Request,
        auth: CreateTokenAuth<Self>,
        body: types::Credentials,
    ) -> Result<CreateTokenResponse> {
        let state = &*self.state;
        // Counted before any hashing: past the limit, a guess costs nothing (crate::login).
        let attempt = state.login.begin(&body.email.0, auth.api_key.id).await?;
        let user = state.store.user_by_email(&body.email.0).await?;
        // An unknown email is checked against a decoy hash, so that it costs the same time
        // as a wrong password and the answer does not reveal which accounts exist.
        let hash = user.as_ref().map(|u| u.password_hash.clone());
        let matches = state
            .hashing
            .verify(SecretString::from(body.password.0), hash)
            .await?;
        let user = match user {
            Some(user) if matches => user,
            _ => return Err(BAD_CREDENTIALS),
        };
        state.login.succeeded(attempt).await?;
        let access_token = state
            .tokens
            .issue(&user.id.to_string())
            .map_err(ApiError::Internal)?;
        Ok(CreateTokenResponse::Ok(AccessToken {
            access_token,
            token_type: AccessTokenTokenType::Bearer,
            expires_in: state
                .tokens
                .ttl_seconds()
                .try_into()
                .map_err(|e| ApiError::Internal(anyhow::anyhow!("{e}")))?,
        }))
    }

    async fn get_me(
        &self,
        _request: &poem::Request,
        auth: GetMeAuth<Self>,
    ) -> Result<GetMeResponse> {
        let state = &*self.state;
        let user_id = auth.bearer_auth;
        // A valid token for a user who no longer exists is as good as no token.
        let user = state.store.user_by_id(user_id).await?.ok_or(BAD_TOKEN)?;
        Ok(GetMeResponse::Ok(CurrentUser {
            id: types::Id(user.id),
            username: Username(user.username),
            display_name: DisplayName(user.display_name),
            email: Email(user.email),
            created_at: user.created_at,
            follower_count: user.follower_count,
            following_count: user.following_count,
            picture_url: user
                .picture
                .as_ref()
                .map(|_| super::pictures::picture_url(user.id)),
            tweet_count: user.tweet_count,
        }))
    }
}
