//! `admin` tag: the operator API for usage plans, API keys and users, behind the admin
//! token.
//!
//! Deleting a user is an operator's act (a partner's app cannot delete its users): the
//! store deletes the user with their tweets and follows in one transaction that also
//! writes the events of the deletion to the outbox; those events are then published, so
//! that every instance's caches and feeds drop what went and every instance refuses the
//! user's tokens; the picture object goes last (a failure leaves it to the orphan sweep).

use super::Handlers;
use crate::generated::{
    AdminApi, CreateApiKeyAuth, CreateUsagePlanAuth, DeleteApiKeyAuth, DeleteUsagePlanAuth,
    DeleteUserAuth, DeleteUserResponse, GetApiKeyAuth, GetUsagePlanAuth, GetUsageReportAuth,
    ListApiKeysAuth, ListUsagePlansAuth, RotateApiKeyAuth, UpdateApiKeyAuth, UpdateUsagePlanAuth,
};
use std::num::NonZeroU64;

use super::{page_cursor, page_limit};
use crate::domain::events::Event;
use crate::generated::GetUsageReportResponse;
use crate::generated::types::{self, Quota, QuotaPeriod, Throttle};
use crate::generated::{
    CreateApiKeyResponse, CreateUsagePlanResponse, DeleteApiKeyResponse, DeleteUsagePlanResponse,
    GetApiKeyResponse, GetUsagePlanResponse, ListApiKeysResponse, ListUsagePlansResponse,
    RotateApiKeyResponse, UpdateApiKeyResponse, UpdateUsagePlanResponse,
};
use crate::http::error::{ApiError, Result};
use crate::infra::store::{
    KeyChanges, KeyRecord, KeyWrite, NewKey, PlanDeletion, PlanRecord, PlanSettings,
};
use crate::services::gateway::limits::Period;
use chrono::TimeZone;

const UNKNOWN_PLAN: ApiError = ApiError::NotFound("No usage plan has this id.");
const UNKNOWN_KEY: ApiError = ApiError::NotFound("No API key has this id.");
const UNKNOWN_USER: ApiError = ApiError::NotFound("No user has this id.");
const PLAN_NOT_FOUND: ApiError = ApiError::Unprocessable {
    code: "unknown_plan",
    detail: "No usage plan has this plan_id.",
};

/// The longest range a usage report covers.
const MAX_REPORT_DAYS: i64 = 366;

fn settings(input: types::UsagePlanInput) -> PlanSettings {
    PlanSettings {
        name: input.name,
        description: input.description,
        throttle: input.throttle.map(|t| {
            (
                t.rate_limit,
                i64::try_from(t.burst_limit.get()).unwrap_or(i64::MAX),
            )
        }),
        quota: input.quota.map(|q| {
            (
                i64::try_from(q.limit.get()).unwrap_or(i64::MAX),
                q.period.to_string(),
            )
        }),
        allow_cache_refresh: input.allow_cache_refresh,
    }
}

pub(super) fn to_api_plan(plan: &PlanRecord) -> Result<types::UsagePlan> {
    let corrupt =
        |what: &str| ApiError::Internal(anyhow::anyhow!("plan {} has an invalid {what}", plan.id));
    let throttle = plan
        .throttle
        .map(|(rate_limit, burst)| {
            let burst_limit = u64::try_from(burst)
                .ok()
                .and_then(NonZeroU64::new)
                .ok_or_else(|| corrupt("burst"))?;
            Ok::<_, ApiError>(Throttle {
                rate_limit,
                burst_limit,
            })
        })
        .transpose()?;
    let quota = plan
        .quota
        .as_ref()
        .map(|(limit, period)| {
            let limit = u64::try_from(*limit)
                .ok()
                .and_then(NonZeroU64::new)
                .ok_or_else(|| corrupt("quota"))?;
            let period = period
                .parse::<QuotaPeriod>()
                .map_err(|_| corrupt("period"))?;
            Ok::<_, ApiError>(Quota { limit, period })
        })
        .transpose()?;
    Ok(types::UsagePlan {
        id: types::Id(plan.id),
        name: plan.name.clone(),
        description: plan.description.clone(),
        throttle,
        quota,
        allow_cache_refresh: plan.allow_cache_refresh,
        created_at: plan.created_at,
    })
}

fn to_api_key(key: &KeyRecord) -> Result<types::ApiKey> {
    Ok(types::ApiKey {
        id: types::Id(key.id),
        name: key.name.clone(),
        prefix: key.prefix.clone(),
        plan_id: types::Id(key.plan_id),
        enabled: key.enabled,
        created_at: key.created_at,
        last_used_at: key.last_used_at,
    })
}

fn with_secret(new: NewKey) -> types::CreatedApiKey {
    let NewKey {
        record: key,
        secret,
    } = new;
    types::CreatedApiKey {
        id: types::Id(key.id),
        name: key.name,
        prefix: key.prefix,
        plan_id: types::Id(key.plan_id),
        enabled: key.enabled,
        created_at: key.created_at,
        last_used_at: key.last_used_at,
        secret,
    }
}

impl AdminApi for Handlers {
    async fn list_usage_plans(
        &self,
        _request: &poem::Request,
        _auth: ListUsagePlansAuth<Self>,
        params: types::ListUsagePlansParams,
    ) -> Result<ListUsagePlansResponse> {
        let state = &*self.state;
        let before = page_cursor(state, "usage-plans", params.page_token.as_deref())?;
        let page = state.store.plans(before, page_limit(params.limit)).await?;
        Ok(ListUsagePlansResponse::Ok(types::UsagePlanPage {
            items: page.items.iter().map(to_api_plan).collect::<Result<_>>()?,
            next_page: page
                .next
                .map(|cursor| state.page_tokens.issue("usage-plans", &cursor.to_string())),
        }))
    }

    async fn create_usage_plan(
        &self,
        _request: &poem::Request,
        _auth: CreateUsagePlanAuth<Self>,
        body: types::UsagePlanInput,
    ) -> Result<CreateUsagePlanResponse> {
        let state = &*self.state;
        let plan = state.store.create_plan(settings(body)).await?;
        Ok(CreateUsagePlanResponse::Created {
            location: format!("/admin/v1/usage-plans/{}", plan.id),
            body: to_api_plan(&plan)?,
        })
    }

    async fn get_usage_plan(
        &self,
        _request: &poem::Request,
        _auth: GetUsagePlanAuth<Self>,
        params: types::GetUsagePlanParams,
    ) -> Result<GetUsagePlanResponse> {
        let state = &*self.state;
        let plan = state
            .store
            .plan(*params.plan_id)
            .await?
            .ok_or(UNKNOWN_PLAN)?;
        Ok(GetUsagePlanResponse::Ok(to_api_plan(&plan)?))
    }

    async fn update_usage_plan(
        &self,
        _request: &poem::Request,
        _auth: UpdateUsagePlanAuth<Self>,
        params: types::UpdateUsagePlanParams,
        body: types::UsagePlanInput,
    ) -> Result<UpdateUsagePlanResponse> {
        let state = &*self.state;
        let plan = state
            .store
            .update_plan(*params.plan_id, settings(body))
            .await?
            .ok_or(UNKNOWN_PLAN)?;
        // The change is committed: every instance forgets the keys it cached.
        state.events.publish(Event::KeyChanged).await;
        Ok(UpdateUsagePlanResponse::Ok(to_api_plan(&plan)?))
    }

    async fn delete_usage_plan(
        &self,
        _request: &poem::Request,
        _auth: DeleteUsagePlanAuth<Self>,
        params: types::DeleteUsagePlanParams,
    ) -> Result<DeleteUsagePlanResponse> {
        let state = &*self.state;
        let deletion = state.store.delete_plan(*params.plan_id).await?;
        // The change is committed: every instance forgets the keys it cached.
        state.events.publish(Event::KeyChanged).await;
        match deletion {
            PlanDeletion::Deleted => Ok(DeleteUsagePlanResponse::NoContent),
            PlanDeletion::NotFound => Err(UNKNOWN_PLAN),
            PlanDeletion::InUse => Err(ApiError::InUse(
                "API keys use this plan; move or delete them first.",
            )),
        }
    }

    async fn list_api_keys(
        &self,
        _request: &poem::Request,
        _auth: ListApiKeysAuth<Self>,
        params: types::ListApiKeysParams,
    ) -> Result<ListApiKeysResponse> {
        let state = &*self.state;
        let before = page_cursor(state, "api-keys", params.page_token.as_deref())?;
        let page = state.store.keys(before, page_limit(params.limit)).await?;
        Ok(ListApiKeysResponse::Ok(types::ApiKeyPage {
            items: page.items.iter().map(to_api_key).collect::<Result<_>>()?,
            next_page: page
                .next
                .map(|cursor| state.page_tokens.issue("api-keys", &cursor.to_string())),
        }))
    }

    async fn create_api_key(
        &self,
        _request: &poem::Request,
        _auth: CreateApiKeyAuth<Self>,
        body: types::NewApiKey,
    ) -> Result<CreateApiKeyResponse> {
        let state = &*self.state;
        let enabled = body.enabled.unwrap_or(true);
        match state
            .store
            .create_key(&body.name, *body.plan_id, enabled)
            .await?
        {
            KeyWrite::Done(new) => Ok(CreateApiKeyResponse::Created {
                location: format!("/admin/v1/api-keys/{}", new.record.id),
                body: with_secret(new),
            }),
            KeyWrite::UnknownPlan => Err(PLAN_NOT_FOUND),
            KeyWrite::NotFound => Err(UNKNOWN_KEY),
        }
    }

    async fn get_api_key(
        &self,
        _request: &poem::Request,
        _auth: GetApiKeyAuth<Self>,
        params: types::GetApiKeyParams,
    ) -> Result<GetApiKeyResponse> {
        let state = &*self.state;
        let key = state.store.key(*params.key_id).await?.ok_or(UNKNOWN_KEY)?;
        Ok(GetApiKeyResponse::Ok(to_api_key(&key)?))
    }

    async fn delete_api_key(
        &self,
        _request: &poem::Request,
        _auth: DeleteApiKeyAuth<Self>,
        params: types::DeleteApiKeyParams,
    ) -> Result<DeleteApiKeyResponse> {
        let state = &*self.state;
        let deleted = state.store.delete_key(*params.key_id).await?;
        // The change is committed: every instance forgets the keys it cached.
        state.events.publish(Event::KeyChanged).await;
        if deleted {
            Ok(DeleteApiKeyResponse::NoContent)
        } else {
            Err(UNKNOWN_KEY)
        }
    }

    async fn update_api_key(
        &self,
        _request: &poem::Request,
        _auth: UpdateApiKeyAuth<Self>,
        params: types::UpdateApiKeyParams,
        body: types::ApiKeyUpdate,
    ) -> Result<UpdateApiKeyResponse> {
        let state = &*self.state;
        let changes = KeyChanges {
            name: body.name,
            plan_id: body.plan_id.map(|id| id.0),
            enabled: body.enabled,
        };
        let updated = state.store.update_key(*params.key_id, changes).await?;
        // The change is committed: every instance forgets the keys it cached.
        state.events.publish(Event::KeyChanged).await;
        match updated {
            KeyWrite::Done(key) => Ok(UpdateApiKeyResponse::Ok(to_api_key(&key)?)),
            KeyWrite::UnknownPlan => Err(PLAN_NOT_FOUND),
            KeyWrite::NotFound => Err(UNKNOWN_KEY),
        }
    }

    async fn rotate_api_key(
        &self,
        _request: &poem::Request,
        _auth: RotateApiKeyAuth<Self>,
        params: types::RotateApiKeyParams,
    ) -> Result<RotateApiKeyResponse> {
        let state = &*self.state;
        let rotated = state
            .store
            .rotate_key(*params.key_id)
            .await?
            .ok_or(UNKNOWN_KEY)?;
        // The change is committed: every instance forgets the keys it cached.
        state.events.publish(Event::KeyChanged).await;
        Ok(RotateApiKeyResponse::Ok(with_secret(rotated)))
    }

    async fn delete_user(
        &self,
        _request: &poem::Request,
        _auth: DeleteUserAuth<Self>,
        params: types::DeleteUserParams,
    ) -> Result<DeleteUserResponse> {
        let state = &*self.state;
        let deleted = state
            .store
            .delete_user(*params.user_id)
            .await?
            .ok_or(UNKNOWN_USER)?;
        // Committed: what went with the user, then the user, leave every cache and feed.
        for event in Event::of_deleted_user(&deleted) {
            state.events.publish(event).await;
        }
        if let Some(key) = &deleted.picture_key
            && let Err(error) = state.pictures.delete(key).await
        {
            tracing::warn!(%error, "a deleted user's picture is left for the sweep");
        }
        Ok(DeleteUserResponse::NoContent)
    }

    async fn get_usage_report(
        &self,
        _request: &poem::Request,
        _auth: GetUsageReportAuth<Self>,
        params: types::GetUsageReportParams,
    ) -> Result<GetUsageReportResponse> {
        let state = &*self.state;
        let (start, end) = (params.start_date, params.end_date);
        let days = (end - start).num_days() + 1;
        if !(1..=MAX_REPORT_DAYS).contains(&days) {
            return Err(ApiError::Unprocessable {
                code: "invalid_date_range",
                detail: "end_date must be on or after start_date, and at most 366 days later.",
            });
        }
        let plan_id = *params.plan_id;
        let plan = state.store.plan(plan_id).await?.ok_or(UNKNOWN_PLAN)?;
        // Counts admitted in the last second are written first, so the report is exact.
        state.gateway.flush().await?;
        let quota = plan.quota.as_ref().and_then(|(limit, period)| {
            Some((u64::try_from(*limit).ok()?, Period::parse(period)?))
        });
        // Remaining is counted from the start of the first day's quota period.
        let first_day =
            chrono::Utc.from_utc_datetime(&start.and_hms_opt(0, 0, 0).unwrap_or_default());
        let from = quota
            .map_or(first_day, |(_, period)| period.bounds(first_day).0)
            .date_naive();
        let wanted = params.key_id.map(|id| id.0);
        let mut items = std::collections::HashMap::new();
        for key_id in state.store.keys_in_plan(plan_id).await? {
            if wanted.is_some_and(|w| w != key_id) {
                continue;
            }
            let rows = state.store.usage_by_day(key_id, from, end).await?;
            let by_day: std::collections::HashMap<chrono::NaiveDate, u64> =
                rows.into_iter().collect();
            let mut series = Vec::with_capacity(usize::try_from(days).unwrap_or(0));
            for day in start.iter_days().take_while(|day| *day <= end) {
                let used = by_day.get(&day).copied().unwrap_or(0);
                let entry = match quota {
                    None => vec![used],
                    Some((limit, period)) => {
                        let midnight = chrono::Utc
                            .from_utc_datetime(&day.and_hms_opt(0, 0, 0).unwrap_or_default());
                        let period_start = period.bounds(midnight).0.date_naive();
                        let spent: u64 = period_start
                            .iter_days()
                            .take_while(|d| *d <= day)
                            .map(|d| by_day.get(&d).copied().unwrap_or(0))
                            .sum();
                        vec![used, limit.saturating_sub(spent)]
                    }
                };
                series.push(
                    entry
                        .into_iter()
                        .map(|n| i64::try_from(n).unwrap_or(i64::MAX))
                        .collect(),
                );
            }
            items.insert(key_id.to_string(), series);
        }
        Ok(GetUsageReportResponse::Ok(types::UsageReport {
            plan_id: params.plan_id,
            start_date: start,
            end_date: end,
            items,
        }))
    }
}
