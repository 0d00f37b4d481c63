//! `users` tag: sign-up and public profiles.

use super::Handlers;
use crate::generated::{GetUserAuth, SignUpAuth, UsersApi};
use secrecy::SecretString;

use crate::generated::types::{self, DisplayName, Username};
use crate::generated::{GetUserResponse, SignUpResponse};
use crate::http::error::{ApiError, Result};
use crate::infra::store::{NewUserRecord, UserRecord};

/// The fields of a user that anyone may see.
pub fn public_profile(record: &UserRecord) -> types::User {
    types::User {
        id: types::Id(record.id),
        username: Username(record.username.clone()),
        display_name: DisplayName(record.display_name.clone()),
        created_at: record.created_at,
        follower_count: record.follower_count,
        following_count: record.following_count,
        tweet_count: record.tweet_count,
        picture_url: record
            .picture
            .as_ref()
            .map(|_| super::pictures::picture_url(record.id).into()),
    }
}

impl UsersApi for Handlers {
    async fn sign_up(
        &self,
        _request: &poem::Request,
        _auth: SignUpAuth<Self>,
        body: types::NewUser,
    ) -> Result<SignUpResponse> {
        let state = &*self.state;
        let password_hash = state
            .hashing
            .hash(SecretString::from(body.password.0))
            .await?;
        let username = body.username.0;
        let display_name = body
            .display_name
            .map_or_else(|| username.clone(), |name| name.0);
        let record = state
            .store
            .create_user(NewUserRecord {
                username,
                email: body.email.0,
                display_name,
                password_hash,
            })
            .await?;
        Ok(SignUpResponse::Created {
            location: format!("/v1/users/{}", record.id),
            body: public_profile(&record),
        })
    }

    async fn get_user(
        &self,
        _request: &poem::Request,
        _auth: GetUserAuth<Self>,
        params: types::GetUserParams,
    ) -> Result<GetUserResponse> {
        let state = &*self.state;
        let user = state
            .profiles
            .user(&state.store, *params.user_id)
            .await?
            .ok_or(ApiError::NotFound("No user has this id."))?;
        Ok(GetUserResponse::Ok(public_profile(&user)))
    }
}
