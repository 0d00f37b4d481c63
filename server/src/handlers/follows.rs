//! `follows` tag: following, unfollowing, and the lists of followers and followees.

use super::users::public_profile;
use super::{UNKNOWN_USER, authenticated_user, page_cursor, page_limit, require_user};
use crate::error::{ApiError, Result};
use crate::generated::types::{
    self, FollowUserParams, ListFollowersParams, ListFollowingParams, UnfollowUserParams,
};
use crate::generated::{
    FollowUserResponse, ListFollowersResponse, ListFollowingResponse, UnfollowUserResponse,
};
use crate::state::AppState;
use crate::store::EdgeChange;

pub async fn follow_user(
    state: &AppState,
    request: &poem::Request,
    params: FollowUserParams,
) -> Result<FollowUserResponse> {
    let me = authenticated_user(state, request)?;
    let followee = *params.user_id;
    if followee == me {
        return Err(ApiError::Unprocessable {
            code: "cannot_follow_self",
            detail: "You cannot follow yourself.",
        });
    }
    match state.store.follow(me, followee).await? {
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
    let followee = *params.user_id;
    if state.store.user_by_id(followee).await?.is_none() {
        return Err(UNKNOWN_USER);
    }
    state.store.unfollow(me, followee).await?;
    Ok(UnfollowUserResponse::NoContent)
}

pub async fn list_followers(
    state: &AppState,
    params: ListFollowersParams,
) -> Result<ListFollowersResponse> {
    let page = list_edges(
        state,
        Edges::Followers,
        &params.user_id,
        params.limit,
        params.page_token,
    )
    .await?;
    Ok(ListFollowersResponse::Ok(page))
}

pub async fn list_following(
    state: &AppState,
    params: ListFollowingParams,
) -> Result<ListFollowingResponse> {
    let page = list_edges(
        state,
        Edges::Following,
        &params.user_id,
        params.limit,
        params.page_token,
    )
    .await?;
    Ok(ListFollowingResponse::Ok(page))
}

/// Which end of a user's follow edges a list shows.
#[derive(Clone, Copy)]
enum Edges {
    Followers,
    Following,
}

async fn list_edges(
    state: &AppState,
    edges: Edges,
    user_id: &types::Id,
    limit: Option<std::num::NonZeroU32>,
    page_token: Option<String>,
) -> Result<types::UserPage> {
    let user = user_id.0;
    let list = match edges {
        Edges::Followers => format!("followers:{user}"),
        Edges::Following => format!("following:{user}"),
    };
    let before: Option<i64> = page_cursor(state, &list, page_token.as_deref())?;
    require_user(state, user).await?;
    let limit = page_limit(limit);
    let page = match edges {
        Edges::Followers => state.store.followers(user, before, limit).await?,
        Edges::Following => state.store.following(user, before, limit).await?,
    };
    Ok(types::UserPage {
        items: page.items.iter().map(public_profile).collect(),
        next_page: page
            .next
            .map(|edge| state.page_tokens.issue(&list, &edge.to_string())),
    })
}
