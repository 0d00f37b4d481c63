//! `follows` tag: following, unfollowing, and the lists of followers and followees.

use super::Handlers;
use super::users::public_profile;
use super::{UNKNOWN_USER, page_cursor, page_limit, require_user};
use crate::generated::types::ProblemCode;
use crate::generated::types::{self};
use crate::generated::{
    FollowUserAuth, FollowsApi, ListFollowersAuth, ListFollowingAuth, UnfollowUserAuth,
};
use crate::generated::{
    FollowUserResponse, ListFollowersResponse, ListFollowingResponse, UnfollowUserResponse,
};
use crate::http::error::{ApiError, Result};
use crate::infra::store::EdgeChange;
use crate::state::AppState;

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

impl FollowsApi for Handlers {
    async fn follow_user(
        &self,
        _request: &poem::Request,
        auth: FollowUserAuth<Self>,
        params: types::FollowUserParams,
    ) -> Result<FollowUserResponse> {
        let state = &*self.state;
        let me = auth.bearer_auth;
        let followee = *params.user_id;
        if followee == me {
            return Err(ApiError::Unprocessable {
                code: ProblemCode::CannotFollowSelf,
                detail: "You cannot follow yourself.",
            });
        }
        let written = state.store.follow(me, followee).await?;
        state.events.publish_all(written.events).await;
        match written.outcome {
            EdgeChange::UnknownUser => Err(UNKNOWN_USER),
            EdgeChange::Changed | EdgeChange::Unchanged => Ok(FollowUserResponse::NoContent),
        }
    }

    async fn unfollow_user(
        &self,
        _request: &poem::Request,
        auth: UnfollowUserAuth<Self>,
        params: types::UnfollowUserParams,
    ) -> Result<UnfollowUserResponse> {
        let state = &*self.state;
        let me = auth.bearer_auth;
        let followee = *params.user_id;
        require_user(state, followee).await?;
        let written = state.store.unfollow(me, followee).await?;
        state.events.publish_all(written.events).await;
        Ok(UnfollowUserResponse::NoContent)
    }

    async fn list_followers(
        &self,
        _request: &poem::Request,
        _auth: ListFollowersAuth<Self>,
        params: types::ListFollowersParams,
    ) -> Result<ListFollowersResponse> {
        let state = &*self.state;
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

    async fn list_following(
        &self,
        _request: &poem::Request,
        _auth: ListFollowingAuth<Self>,
        params: types::ListFollowingParams,
    ) -> Result<ListFollowingResponse> {
        let state = &*self.state;
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
}
