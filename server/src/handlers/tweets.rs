//! `tweets` tag: posting (idempotently), reading and deleting tweets, and timelines.

use super::Handlers;
use crate::generated::{
    CreateTweetAuth, DeleteTweetAuth, GetTimelineAuth, GetTweetAuth, ListUserTweetsAuth, TweetsApi,
};
use base64::Engine;
use sha2::{Digest, Sha256};

use uuid::Uuid;

use super::{page_cursor, page_limit, require_user};
use crate::generated::types::ProblemCode;
use crate::generated::types::{self, NewTweet};
use crate::generated::{
    CreateTweetResponse, DeleteTweetResponse, GetTimelineResponse, GetTweetResponse,
    ListUserTweetsResponse,
};
use crate::http::error::{ApiError, Result};
use crate::infra::store::{Claim, Deletion, Page, StoredResponse, TweetRecord};
use crate::state::AppState;

const UNKNOWN_TWEET: ApiError = ApiError::NotFound("No tweet has this id.");

/// The hash an Idempotency-Key is bound to: the request body as the server understood it.
fn request_hash(body: &NewTweet) -> String {
    let canonical = serde_json::to_vec(body).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(canonical))
}

fn replay(location: Option<String>, body: Option<String>) -> Result<CreateTweetResponse> {
    let body = body.ok_or_else(|| {
        ApiError::Internal(anyhow::anyhow!(
            "a completed idempotency record has no body"
        ))
    })?;
    let tweet: types::Tweet =
        serde_json::from_str(&body).map_err(|e| ApiError::Internal(e.into()))?;
    let location = location.unwrap_or_else(|| format!("/v1/tweets/{}", *tweet.id));
    Ok(CreateTweetResponse::Created {
        body: tweet,
        location,
    })
}

fn created(tweet: &TweetRecord) -> Result<CreateTweetResponse> {
    Ok(CreateTweetResponse::Created {
        body: to_api(tweet.clone()),
        location: location_of(tweet),
    })
}

fn location_of(tweet: &TweetRecord) -> String {
    format!("/v1/tweets/{}", tweet.id)
}

/// Takes the record, so that a page moves each tweet's text instead of copying it.
fn to_api(tweet: TweetRecord) -> types::Tweet {
    types::Tweet {
        id: types::Id(tweet.id),
        author_id: types::Id(tweet.author_id),
        text: types::TweetText(tweet.text),
        created_at: tweet.created_at,
    }
}

fn tweet_page(state: &AppState, list: &str, page: Page<TweetRecord, Uuid>) -> types::TweetPage {
    types::TweetPage {
        items: page.items.into_iter().map(to_api).collect(),
        next_page: page
            .next
            .map(|cursor| state.page_tokens.issue(list, &cursor.to_string())),
    }
}

impl TweetsApi for Handlers {
    async fn create_tweet(
        &self,
        _request: &poem::Request,
        auth: CreateTweetAuth<Self>,
        params: types::CreateTweetParams,
        body: types::NewTweet,
    ) -> Result<CreateTweetResponse> {
        let state = &*self.state;
        let me = auth.bearer_auth;
        let Some(key) = params.idempotency_key else {
            let tweet = TweetRecord::new(me, body.text.0);
            let written = state.store.insert_tweet(&tweet, None).await?;
            state.events.publish_all(written.events).await;
            return created(&tweet);
        };

        match state
            .store
            .claim_idempotency_key(me, &key, &request_hash(&body))
            .await?
        {
            Claim::Claimed => {}
            Claim::Mismatch => {
                return Err(ApiError::Unprocessable {
                    code: ProblemCode::IdempotencyKeyReused,
                    detail: "This Idempotency-Key was used with a different request body.",
                });
            }
            Claim::InFlight => return Err(ApiError::RequestInFlight),
            Claim::Replay { location, body, .. } => return replay(location, body),
        }
        let tweet = TweetRecord::new(me, body.text.0);
        let response = to_api(tweet.clone());
        let location = location_of(&tweet);
        let stored_body =
            serde_json::to_string(&response).map_err(|e| ApiError::Internal(e.into()))?;
        let stored = StoredResponse {
            user_id: me,
            key: &key,
            location: &location,
            body: &stored_body,
        };
        let written = match state.store.insert_tweet(&tweet, Some(stored)).await {
            Ok(written) => written,
            Err(error) => {
                // Nothing was written: free the key so that a retry can run.
                if let Err(release) = state.store.release_idempotency_key(me, &key).await {
                    tracing::warn!(error = %release, "could not release an idempotency key");
                }
                return Err(error.into());
            }
        };
        state.events.publish_all(written.events).await;
        Ok(CreateTweetResponse::Created {
            body: response,
            location,
        })
    }

    async fn get_tweet(
        &self,
        _request: &poem::Request,
        _auth: GetTweetAuth<Self>,
        params: types::GetTweetParams,
    ) -> Result<GetTweetResponse> {
        let state = &*self.state;
        let tweet = state
            .timelines
            .tweet(*params.tweet_id)
            .await?
            .ok_or(UNKNOWN_TWEET)?;
        Ok(GetTweetResponse::Ok(to_api(TweetRecord::clone(&tweet))))
    }

    async fn delete_tweet(
        &self,
        _request: &poem::Request,
        auth: DeleteTweetAuth<Self>,
        params: types::DeleteTweetParams,
    ) -> Result<DeleteTweetResponse> {
        let state = &*self.state;
        let me = auth.bearer_auth;
        let tweet_id = *params.tweet_id;
        let written = state.store.delete_tweet(tweet_id, me).await?;
        state.events.publish_all(written.events).await;
        match written.outcome {
            Deletion::Deleted => Ok(DeleteTweetResponse::NoContent),
            Deletion::NotTheAuthor => {
                Err(ApiError::Forbidden("Only the author may delete a tweet."))
            }
            Deletion::NotFound => Err(UNKNOWN_TWEET),
        }
    }

    async fn list_user_tweets(
        &self,
        _request: &poem::Request,
        _auth: ListUserTweetsAuth<Self>,
        params: types::ListUserTweetsParams,
    ) -> Result<ListUserTweetsResponse> {
        let state = &*self.state;
        let user = *params.user_id;
        let list = format!("tweets:{user}");
        let before = page_cursor(state, &list, params.page_token.as_deref())?;
        require_user(state, user).await?;
        let page = state
            .store
            .tweets_by(user, before, page_limit(params.limit))
            .await?;
        Ok(ListUserTweetsResponse::Ok(tweet_page(state, &list, page)))
    }

    async fn get_timeline(
        &self,
        _request: &poem::Request,
        auth: GetTimelineAuth<Self>,
        params: types::GetTimelineParams,
    ) -> Result<GetTimelineResponse> {
        let state = &*self.state;
        let me = auth.bearer_auth;
        let list = format!("timeline:{me}");
        let before = page_cursor(state, &list, params.page_token.as_deref())?;
        let page = state
            .timelines
            .page(me, before, page_limit(params.limit))
            .await?;
        Ok(GetTimelineResponse::Ok(tweet_page(state, &list, page)))
    }
}
