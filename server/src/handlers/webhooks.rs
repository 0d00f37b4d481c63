//! `webhooks` tag: a partner's subscriptions and their deliveries.
//!
//! Every operation is scoped by the calling API key: a subscription is found only
//! through the key that made it, so another partner's id is a 404, exactly like an id
//! that does not exist (no enumeration). A URL passes the SSRF guard
//! ([`crate::services::webhooks::ssrf`]) here, at registration, and again at every
//! connection.

use chrono::Utc;
use uuid::Uuid;

use super::{Handlers, page_cursor, page_limit};
use crate::domain::webhooks::{
    DeliveryRecord, NewWebhook, WebhookChanges, WebhookCreation, WebhookRecord, message_id,
};
use crate::generated::types::{self, WebhookBreakerState, WebhookDeliveryStatus};
use crate::generated::{
    CreateWebhookAuth, CreateWebhookResponse, DeleteWebhookAuth, DeleteWebhookResponse,
    GetWebhookAuth, GetWebhookResponse, ListWebhookDeliveriesAuth, ListWebhookDeliveriesResponse,
    ListWebhooksAuth, ListWebhooksResponse, RedeliverWebhookAuth, RedeliverWebhookResponse,
    RotateWebhookSecretAuth, RotateWebhookSecretResponse, TestWebhookAuth, TestWebhookResponse,
    UpdateWebhookAuth, UpdateWebhookResponse, WebhooksApi,
};
use crate::http::error::{ApiError, Result};
use crate::services::gateway::ActiveKey;
use crate::services::webhooks::schedule::{Breaker, BreakerState};
use crate::services::webhooks::send::new_secret;
use crate::state::AppState;

const UNKNOWN_WEBHOOK: ApiError =
    ApiError::NotFound("No webhook subscription of this key has this id.");
const UNKNOWN_DELIVERY: ApiError =
    ApiError::NotFound("This subscription has no delivery with this id.");

impl WebhooksApi for Handlers {
    async fn create_webhook(
        &self,
        _request: &poem::Request,
        auth: CreateWebhookAuth<Self>,
        body: types::NewWebhook,
    ) -> Result<CreateWebhookResponse> {
        let state = &*self.state;
        let key = owner(&auth.api_key)?;
        let url = checked_url(state, &body.url).await?;
        let limit = state
            .store
            .plan(auth.api_key.plan_id)
            .await?
            .ok_or(ApiError::Forbidden("The key's plan is gone."))?
            .webhook_limit;
        let new = NewWebhook {
            id: Uuid::now_v7(),
            api_key_id: key,
            url,
            event_types: event_types(&body.event_types),
            user_ids: body.user_ids.map(|ids| user_ids(&ids)),
            description: body.description.map(Into::into),
            enabled: body.enabled.unwrap_or(true),
            secret: new_secret(),
            created_at: Utc::now(),
        };
        match state.store.create_webhook(&new, limit).await? {
            WebhookCreation::Created(webhook) => Ok(CreateWebhookResponse::Created {
                location: format!("/v1/webhooks/{}", webhook.id),
                body: with_secret(&webhook, new.secret),
            }),
            WebhookCreation::LimitReached => Err(ApiError::TooManyWebhooks { limit }),
        }
    }

    async fn list_webhooks(
        &self,
        _request: &poem::Request,
        auth: ListWebhooksAuth<Self>,
        params: types::ListWebhooksParams,
    ) -> Result<ListWebhooksResponse> {
        let state = &*self.state;
        let key = owner(&auth.api_key)?;
        let before = page_cursor(state, "webhooks", params.page_token.as_deref())?;
        let page = state
            .store
            .webhooks(key, before, page_limit(params.limit))
            .await?;
        Ok(ListWebhooksResponse::Ok(types::WebhookPage {
            items: page.items.iter().map(to_api_webhook).collect(),
            next_page: page
                .next
                .map(|cursor| state.page_tokens.issue("webhooks", &cursor.to_string())),
        }))
    }

    async fn get_webhook(
        &self,
        _request: &poem::Request,
        auth: GetWebhookAuth<Self>,
        params: types::GetWebhookParams,
    ) -> Result<GetWebhookResponse> {
        let webhook = own_webhook(&self.state, &auth.api_key, *params.webhook_id).await?;
        Ok(GetWebhookResponse::Ok(to_api_webhook(&webhook)))
    }

    async fn update_webhook(
        &self,
        _request: &poem::Request,
        auth: UpdateWebhookAuth<Self>,
        params: types::UpdateWebhookParams,
        body: types::WebhookUpdate,
    ) -> Result<UpdateWebhookResponse> {
        let state = &*self.state;
        let key = owner(&auth.api_key)?;
        let widen = body.all_users == Some(true);
        if widen && body.user_ids.is_some() {
            return Err(ApiError::Unprocessable {
                code: types::ProblemCode::InvalidRequest,
                detail: "Send user_ids to narrow the subscription or all_users: true to widen it, not both.",
            });
        }
        let url = match &body.url {
            Some(url) => Some(checked_url(state, url).await?),
            None => None,
        };
        let changes = WebhookChanges {
            url,
            event_types: body.event_types.as_ref().map(event_types),
            user_ids: match body.user_ids {
                Some(ids) => Some(Some(user_ids(&ids))),
                None if widen => Some(None),
                None => None,
            },
            description: body.description.map(Into::into),
            enabled: body.enabled,
        };
        let webhook = state
            .store
            .update_webhook(key, *params.webhook_id, &changes)
            .await?
            .ok_or(UNKNOWN_WEBHOOK)?;
        if changes.enabled == Some(true) {
            state.webhooks.wake_worker();
        }
        Ok(UpdateWebhookResponse::Ok(to_api_webhook(&webhook)))
    }

    async fn delete_webhook(
        &self,
        _request: &poem::Request,
        auth: DeleteWebhookAuth<Self>,
        params: types::DeleteWebhookParams,
    ) -> Result<DeleteWebhookResponse> {
        let key = owner(&auth.api_key)?;
        if self
            .state
            .store
            .delete_webhook(key, *params.webhook_id)
            .await?
        {
            Ok(DeleteWebhookResponse::NoContent)
        } else {
            Err(UNKNOWN_WEBHOOK)
        }
    }

    async fn rotate_webhook_secret(
        &self,
        _request: &poem::Request,
        auth: RotateWebhookSecretAuth<Self>,
        params: types::RotateWebhookSecretParams,
    ) -> Result<RotateWebhookSecretResponse> {
        let state = &*self.state;
        let key = owner(&auth.api_key)?;
        let secret = new_secret();
        let grace = chrono::Duration::from_std(state.webhooks.settings().secret_grace)
            .unwrap_or(chrono::Duration::days(1));
        let webhook = state
            .store
            .rotate_webhook_secret(key, *params.webhook_id, &secret, Utc::now() + grace)
            .await?
            .ok_or(UNKNOWN_WEBHOOK)?;
        Ok(RotateWebhookSecretResponse::Ok(with_secret(
            &webhook, secret,
        )))
    }

    async fn test_webhook(
        &self,
        _request: &poem::Request,
        auth: TestWebhookAuth<Self>,
        params: types::TestWebhookParams,
    ) -> Result<TestWebhookResponse> {
        let state = &*self.state;
        let webhook = own_webhook(state, &auth.api_key, *params.webhook_id).await?;
        let delivery = state
            .webhooks
            .ping(webhook.id)
            .await?
            .ok_or(UNKNOWN_WEBHOOK)?;
        Ok(TestWebhookResponse::Accepted(to_api_delivery(&delivery)?))
    }

    async fn list_webhook_deliveries(
        &self,
        _request: &poem::Request,
        auth: ListWebhookDeliveriesAuth<Self>,
        params: types::ListWebhookDeliveriesParams,
    ) -> Result<ListWebhookDeliveriesResponse> {
        let state = &*self.state;
        let webhook = own_webhook(state, &auth.api_key, *params.webhook_id).await?;
        let list = format!("deliveries:{}", webhook.id);
        let before = page_cursor(state, &list, params.page_token.as_deref())?;
        let page = state
            .store
            .deliveries(webhook.id, before, page_limit(params.limit))
            .await?;
        Ok(ListWebhookDeliveriesResponse::Ok(
            types::WebhookDeliveryPage {
                items: page
                    .items
                    .iter()
                    .map(to_api_delivery)
                    .collect::<Result<_>>()?,
                next_page: page
                    .next
                    .map(|cursor| state.page_tokens.issue(&list, &cursor.to_string())),
            },
        ))
    }

    async fn redeliver_webhook(
        &self,
        _request: &poem::Request,
        auth: RedeliverWebhookAuth<Self>,
        params: types::RedeliverWebhookParams,
    ) -> Result<RedeliverWebhookResponse> {
        let state = &*self.state;
        let webhook = own_webhook(state, &auth.api_key, *params.webhook_id).await?;
        let delivery = state
            .store
            .requeue_delivery(webhook.id, *params.delivery_id, Utc::now())
            .await?
            .ok_or(UNKNOWN_DELIVERY)?;
        state.webhooks.wake_worker();
        Ok(RedeliverWebhookResponse::Accepted(to_api_delivery(
            &delivery,
        )?))
    }
}

/// The key that owns what the caller makes. With the gateway off (a benchmark of its
/// cost only) there is no key to own a subscription.
fn owner(key: &ActiveKey) -> Result<Uuid> {
    if key.id.is_nil() {
        return Err(ApiError::Forbidden(
            "Webhook subscriptions belong to an API key; the gateway is off.",
        ));
    }
    Ok(key.id)
}

/// The caller's subscription `id`, or 404.
async fn own_webhook(state: &AppState, key: &ActiveKey, id: Uuid) -> Result<WebhookRecord> {
    state
        .store
        .webhook(owner(key)?, id)
        .await?
        .ok_or(UNKNOWN_WEBHOOK)
}

/// The URL as it is stored, once the SSRF guard admits it.
async fn checked_url(state: &AppState, url: &types::WebhookUrl) -> Result<String> {
    match state.webhooks.policy().check(url).await {
        Ok(url) => Ok(url.to_string()),
        Err(refusal) => Err(ApiError::WebhookUrlRefused(refusal.to_string())),
    }
}

fn event_types(types: &types::WebhookEventTypes) -> Vec<String> {
    types.iter().map(ToString::to_string).collect()
}

fn user_ids(ids: &types::WebhookUserIds) -> Vec<Uuid> {
    ids.iter().map(|id| **id).collect()
}

fn breaker_of(webhook: &WebhookRecord) -> types::WebhookBreaker {
    let breaker = Breaker {
        consecutive_failures: webhook.consecutive_failures,
        open_until: webhook.open_until,
    };
    let (state, open_until) = match breaker.state(Utc::now()) {
        BreakerState::Closed => (WebhookBreakerState::Closed, None),
        BreakerState::Open { until } => (WebhookBreakerState::Open, Some(until)),
        BreakerState::HalfOpen => (WebhookBreakerState::HalfOpen, None),
    };
    types::WebhookBreaker {
        state,
        consecutive_failures: i32::try_from(webhook.consecutive_failures).unwrap_or(i32::MAX),
        open_until,
    }
}

fn to_api_webhook(webhook: &WebhookRecord) -> types::Webhook {
    types::Webhook {
        id: types::Id(webhook.id),
        url: types::WebhookUrl(webhook.url.clone()),
        event_types: types::WebhookEventTypes(
            webhook
                .event_types
                .iter()
                .filter_map(|name| name.parse().ok())
                .collect(),
        ),
        user_ids: webhook
            .user_ids
            .as_ref()
            .map(|ids| ids.iter().copied().map(types::Id).collect()),
        description: webhook.description.clone().map(types::WebhookDescription),
        enabled: webhook.enabled,
        disabled_reason: webhook.disabled_reason.clone(),
        breaker: breaker_of(webhook),
        previous_secret_expires_at: webhook
            .previous_secret_expires_at
            .filter(|until| *until > Utc::now()),
        created_at: webhook.created_at,
    }
}

fn with_secret(webhook: &WebhookRecord, secret: String) -> types::CreatedWebhook {
    let api = to_api_webhook(webhook);
    types::CreatedWebhook {
        id: api.id,
        url: api.url,
        event_types: api.event_types,
        user_ids: api.user_ids,
        description: api.description,
        enabled: api.enabled,
        disabled_reason: api.disabled_reason,
        breaker: api.breaker,
        previous_secret_expires_at: api.previous_secret_expires_at,
        created_at: api.created_at,
        secret: types::WebhookSecret(secret),
    }
}

fn to_api_delivery(delivery: &DeliveryRecord) -> Result<types::WebhookDelivery> {
    let payload: types::WebhookEvent =
        serde_json::from_str(&delivery.payload).map_err(|error| {
            ApiError::Internal(anyhow::anyhow!(
                "delivery {} has a bad payload: {error}",
                delivery.id
            ))
        })?;
    Ok(types::WebhookDelivery {
        id: types::Id(delivery.id),
        webhook_id: types::Id(delivery.webhook_id),
        message_id: message_id(delivery.id),
        event_type: delivery.event_type.clone(),
        status: match delivery.status {
            crate::domain::webhooks::DeliveryStatus::Pending => WebhookDeliveryStatus::Pending,
            crate::domain::webhooks::DeliveryStatus::Delivered => WebhookDeliveryStatus::Delivered,
            crate::domain::webhooks::DeliveryStatus::Failed => WebhookDeliveryStatus::Failed,
        },
        attempts: i32::try_from(delivery.attempts).unwrap_or(i32::MAX),
        next_attempt_at: delivery.next_attempt_at,
        last_attempt_at: delivery.last_attempt_at,
        last_status_code: delivery.last_status_code.map(i32::from),
        last_error: delivery.last_error.clone(),
        last_latency_ms: delivery
            .last_latency_ms
            .map(|ms| i64::try_from(ms).unwrap_or(i64::MAX)),
        last_response_excerpt: delivery.last_response_excerpt.clone(),
        payload,
        created_at: delivery.created_at,
        delivered_at: delivery.delivered_at,
    })
}
