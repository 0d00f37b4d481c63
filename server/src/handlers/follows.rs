//! `follows` tag: following, unfollowing, and the lists of followers and followees.

use super::users::public_profile;
use super::{authenticated_user, page_limit};
use crate::error::{ApiError, Result};
use crate::generated::types::{
    self, FollowUserParams, ListFollowersParams, ListFollowingParams, UnfollowUserParams,
};
use crate::generated::{
    FollowUserResponse, ListFollowersResponse, ListFollowingResponse, UnfollowUserResponse,
};
use crate::startup::AppState;
use crate::store::{EdgeChange, Page, UserRecord};

const UNKNOWN_USER: ApiError = ApiError::NotFound("No user has this id.");

pub async fn follow_user(
    state: &AppState,
    request: &poem::Request,
    params: FollowUserParams,
) -> Result<FollowUserResponse> {
    let me = authenticated_user(state, request)?;
    let followee = params.user_id.0.to_string();
    if followee == me {
        return Err(ApiError::Unprocessable {
            code: "cannot_follow_self",
            detail: "You cannot follow yourself.",
        });
    }
    match state.store.follow(&me, &followee).await? {
        EdgeChange::UnknownUser => Err(UNKNOWN_USER),
        EdgeChange::Changed | EdgeChange::Unchanged => Ok(FollowUserResponse::NoContent),
    }
}

pub async fn unfollow_user(
    state: &AppState,
    request: &poem::Request,
    params: UnfollowUserParams,
) -> Result<UnfollowUserResponse> {
    let me = authenticated_user(state, request)?;
    let followee = params.user_id.0.to_string();
    if state.store.user_by_id(&followee).await?.is_none() {
        return Err(UNKNOWN_USER);
    }
    state.store.unfollow(&me, &followee).await?;
    Ok(UnfollowUserResponse::NoContent)
}

pub async fn list_followers(
    state: &AppState,
    params: ListFollowersParams,
) -> Result<ListFollowersResponse> {
    let user = params.user_id.0.to_string();
    let list = format!("followers:{user}");
    let before = edge_cursor(state, &list, params.page_token.as_deref())?;
    require_user(state, &user).await?;
    let page = state
        .store
        .followers(&user, before, page_limit(params.limit))
        .await?;
    Ok(ListFollowersResponse::Ok(user_page(state, &list, page)?))
}

pub async fn list_following(
    state: &AppState,
    params: ListFollowingParams,
) -> Result<ListFollowingResponse> {
    let user = params.user_id.0.to_string();
    let list = format!("following:{user}");
    let before = edge_cursor(state, &list, params.page_token.as_deref())?;
    require_user(state, &user).await?;
    let page = state
        .store
        .following(&user, before, page_limit(params.limit))
        .await?;
    Ok(ListFollowingResponse::Ok(user_page(state, &list, page)?))
}

async fn require_user(state: &AppState, id: &str) -> Result<()> {
    state
        .store
        .user_by_id(id)
        .await?
        .map(|_| ())
        .ok_or(UNKNOWN_USER)
}

fn edge_cursor(state: &AppState, list: &str, token: Option<&str>) -> Result<Option<i64>> {
    token
        .map(|token| {
            state
                .page_tokens
                .verify(list, token)
                .and_then(|cursor| cursor.parse::<i64>().ok())
                .ok_or(ApiError::InvalidPageToken)
        })
        .transpose()
}

fn user_page(state: &AppState, list: &str, page: Page<UserRecord, i64>) -> Result<types::UserPage> {
    Ok(types::UserPage {
        items: page
            .items
            .iter()
            .map(public_profile)
            .collect::<Result<_>>()?,
        next_page: page
            .next
            .map(|edge| state.page_tokens.issue(list, &edge.to_string())),
    })
}
