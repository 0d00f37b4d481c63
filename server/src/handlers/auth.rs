//! `auth` tag: logging in, and the logged-in user.

use super::Handlers;
use crate::generated::{AuthApi, GetMeAuth, LogInAuth};
use secrecy::SecretString;

use crate::generated::types::{
    self, AccessToken, CurrentUser, DisplayName, Email, TokenType, Username,
};
use crate::generated::{GetMeResponse, LogInResponse};
use crate::http::client_address::ClientAddress;
use crate::http::error::{ApiError, Result};
use crate::services::login::Client;

const BAD_CREDENTIALS: ApiError = ApiError::Unauthorized("The email or password is wrong.");

impl AuthApi for Handlers {
    async fn log_in(
        &self,
        request: &poem::Request,
        auth: LogInAuth<Self>,
        body: types::Credentials,
    ) -> Result<LogInResponse> {
        let state = &*self.state;
        let client = Client {
            key: auth.api_key.id,
            // Behind a trusted proxy, the client it forwards; not the proxy, which all
            // clients would share.
            address: ClientAddress::of(request),
        };
        // Reserved before any hashing: past a budget, a guess costs nothing (crate::services::login).
        let attempt = state.login.begin(&body.email.0, client).await?;
        // An unknown email is checked against a decoy hash, so that it costs the same time
        // as a wrong password and the answer does not reveal which accounts exist.
        let checked = async {
            let user = state.store.user_by_email(&body.email.0).await?;
            let hash = user.as_ref().map(|u| u.password_hash.clone());
            let matches = state
                .hashing
                .verify(SecretString::from(body.password.0), hash)
                .await?;
            Ok::<_, ApiError>(user.filter(|_| matches))
        }
        .await;
        let user = match checked {
            Ok(Some(user)) => user,
            Ok(None) => {
                // Counting the failure must work before its answer is given: if it cannot
                // be counted (Redis is down), the 503 tells the guesser nothing.
                attempt.failed().await?;
                return Err(BAD_CREDENTIALS);
            }
            Err(error) => {
                // No answer was checked; the reservation is given back (or its lease ends).
                if let Err(release) = attempt.abandoned().await {
                    tracing::warn!(error = %release, "a login reservation was not given back");
                }
                return Err(error);
            }
        };
        // The password is right: a reservation not given back only costs the owner a slot
        // until its lease ends, which is no reason to refuse the login.
        if let Err(error) = attempt.succeeded().await {
            tracing::warn!(%error, "a login reservation was not given back");
        }
        let access_token = state
            .tokens
            .issue(&user.id.to_string())
            .map_err(ApiError::Internal)?;
        Ok(LogInResponse::Ok(AccessToken {
            access_token: access_token.into(),
            token_type: TokenType::Bearer,
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
        let user = state
            .store
            .user_by_id(user_id)
            .await?
            .ok_or(ApiError::BAD_TOKEN)?;
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
                .map(|_| super::pictures::picture_url(user.id).into()),
            tweet_count: user.tweet_count,
        }))
    }
}
