//! `usage` tag: a partner's own plan and usage.

use super::Handlers;
use super::admin::to_api_plan;
use crate::generated::GetUsageResponse;
use crate::generated::types::{self, KeyUsage};
use crate::generated::{GetUsageAuth, UsageApi};
use crate::http::error::{ApiError, Result};
use crate::services::gateway::limits::Period;

impl UsageApi for Handlers {
    async fn get_usage(
        &self,
        _request: &poem::Request,
        auth: GetUsageAuth<Self>,
    ) -> Result<GetUsageResponse> {
        let state = &*self.state;
        let key = auth.api_key;
        let plan = state
            .store
            .plan(key.plan_id)
            .await?
            .ok_or(ApiError::Forbidden("The key's plan is gone."))?;
        let now = chrono::Utc::now();
        let (period_start, period_end) = key
            .limits
            .quota
            .map_or(Period::Day, |(_, period)| period)
            .bounds(now);
        let used = state
            .gateway
            .used_since(key.id, period_start.date_naive())
            .await?;
        Ok(GetUsageResponse::Ok(KeyUsage {
            key_id: types::Id(key.id),
            plan: to_api_plan(&plan)?,
            period_start,
            period_end,
            used: i64::try_from(used).unwrap_or(i64::MAX),
            remaining: key
                .limits
                .quota
                .map(|(limit, _)| i64::try_from(limit.saturating_sub(used)).unwrap_or(i64::MAX)),
        }))
    }
}
