//! `admin` tag: the operator API for usage plans, API keys and users, behind the admin
//! token.
//!
//! Deleting a user is an operator's act (a partner's app cannot delete its users): the
//! store deletes the user with their tweets and follows in one transaction that also
//! writes the events of the deletion to the outbox; those events are then published, so
//! that every instance's caches and feeds drop what went and every instance refuses the
//! user's tokens; the picture object goes last (a failure leaves it to the orphan sweep).

mod convert;
mod usage_report;

use self::convert::{ip_policy, settings, to_api_key};
pub(super) use self::convert::{to_api_plan, with_secret};
use super::Handlers;
use super::usage::{check_range, every_day};
use super::{page_cursor, page_limit};
use crate::domain::events::Event;
use crate::generated::types;
use crate::generated::types::ProblemCode;
use crate::generated::{
    AdminApi, CreateApiKeyAuth, CreateUsagePlanAuth, DeleteApiKeyAuth, DeleteUsagePlanAuth,
    DeleteUserAuth, DeleteUserResponse, GetApiKeyAuth, GetUsagePlanAuth, GetUsageReportAuth,
    ListApiKeysAuth, ListUsagePlansAuth, RotateApiKeyAuth, UpdateApiKeyAuth, UpdateUsagePlanAuth,
};
use crate::generated::{
    CreateApiKeyResponse, CreateUsagePlanResponse, DeleteApiKeyResponse, DeleteUsagePlanResponse,
    GetApiKeyResponse, GetUsagePlanResponse, ListApiKeysResponse, ListUsagePlansResponse,
    RotateApiKeyResponse, UpdateApiKeyResponse, UpdateUsagePlanResponse,
};
use crate::generated::{
    GetPlanUsageHistoryAuth, GetPlanUsageHistoryResponse, GetUsageReportResponse,
};
use crate::http::error::{ApiError, Result};
use crate::infra::store::{KeyChanges, KeySettings, KeyWrite, PlanDeletion};
use crate::services::gateway::limits::Period;
use chrono::TimeZone;

const UNKNOWN_PLAN: ApiError = ApiError::NotFound("No usage plan has this id.");
const UNKNOWN_KEY: ApiError = ApiError::NotFound("No API key has this id.");
const UNKNOWN_USER: ApiError = ApiError::NotFound("No user has this id.");
const PLAN_NOT_FOUND: ApiError = ApiError::Unprocessable {
    code: ProblemCode::UnknownPlan,
    detail: "No usage plan has this plan_id.",
};

/// How many keys a plan's usage history names.
const TOP_KEYS: u32 = 10;

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
        let plan = state.store.create_plan(settings(body)?).await?;
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
            .update_plan(*params.plan_id, settings(body)?)
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
        let settings = KeySettings {
            name: body.name.into(),
            plan_id: *body.plan_id,
            enabled: body.enabled.unwrap_or(true),
            ip_policy: body
                .ip_policy
                .map(ip_policy)
                .transpose()?
                .unwrap_or_default(),
        };
        match state.store.create_key(settings).await? {
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
            name: body.name.map(Into::into),
            plan_id: body.plan_id.map(|id| id.0),
            enabled: body.enabled,
            ip_policy: body.ip_policy.map(ip_policy).transpose()?,
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
        let written = state.store.delete_user(*params.user_id).await?;
        // Committed: what went with the user, then the user, leave every cache and feed.
        state.events.publish_all(written.events).await;
        let deleted = written.outcome.ok_or(UNKNOWN_USER)?;
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
        check_range(start, end)?;
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
            let series = usage_report::daily_series(&rows.into_iter().collect(), start, end, quota);
            items.insert(key_id.to_string(), series);
        }
        Ok(GetUsageReportResponse::Ok(types::UsageReport {
            plan_id: params.plan_id,
            start_date: start,
            end_date: end,
            items,
        }))
    }

    async fn get_plan_usage_history(
        &self,
        _request: &poem::Request,
        _auth: GetPlanUsageHistoryAuth<Self>,
        params: types::GetPlanUsageHistoryParams,
    ) -> Result<GetPlanUsageHistoryResponse> {
        let state = &*self.state;
        let (start, end) = (params.start_date, params.end_date);
        check_range(start, end)?;
        let plan_id = *params.plan_id;
        state.store.plan(plan_id).await?.ok_or(UNKNOWN_PLAN)?;
        state.gateway.flush().await?;
        let (days, top_keys) = state
            .store
            .plan_history(plan_id, start, end, TOP_KEYS)
            .await?;
        Ok(GetPlanUsageHistoryResponse::Ok(types::PlanUsageHistory {
            plan_id: params.plan_id,
            start_date: start,
            end_date: end,
            days: every_day(days, start, end),
            top_keys: top_keys
                .into_iter()
                .map(|(key_id, used)| types::KeyTotal {
                    key_id: types::Id(key_id),
                    used: i64::try_from(used).unwrap_or(i64::MAX),
                })
                .collect(),
        }))
    }
}
