//! `usage` tag: a partner's own key: its plan and usage, its requests per day by outcome
//! (the history the portal charts; the console's per plan shares [`every_day`]), and
//! the rotation of its secret.

use chrono::NaiveDate;

use super::Handlers;
use super::admin::{to_api_plan, with_secret};
use crate::domain::events::Event;
use crate::generated::types::{self, KeyUsage, ProblemCode, UsageHistory};
use crate::generated::{GetUsageAuth, GetUsageHistoryAuth, RotateOwnApiKeyAuth, UsageApi};
use crate::generated::{GetUsageHistoryResponse, GetUsageResponse, RotateOwnApiKeyResponse};
use crate::http::error::{ApiError, Result};
use crate::infra::store::UsageDay;
use crate::services::gateway::limits::Period;

/// The longest range a usage report or history covers, in days.
const MAX_RANGE_DAYS: i64 = 366;

/// Refuses a range that runs backwards or covers more than [`MAX_RANGE_DAYS`].
pub(super) fn check_range(start: NaiveDate, end: NaiveDate) -> Result<()> {
    let days = (end - start).num_days() + 1;
    if (1..=MAX_RANGE_DAYS).contains(&days) {
        return Ok(());
    }
    Err(ApiError::Unprocessable {
        code: ProblemCode::InvalidDateRange,
        detail: "end_date must be on or after start_date, and at most 366 days later.",
    })
}

/// Every day from `start` to `end`, with the counts `rows` (oldest first) have for it
/// and zeros for the days they do not.
pub(super) fn every_day(
    rows: Vec<UsageDay>,
    start: NaiveDate,
    end: NaiveDate,
) -> Vec<types::UsageDay> {
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let mut rows = rows.into_iter().peekable();
    start
        .iter_days()
        .take_while(|day| *day <= end)
        .map(|date| {
            let tally = rows
                .next_if(|row| row.day == date)
                .map(|row| row.tally)
                .unwrap_or_default();
            types::UsageDay {
                date,
                used: count(tally.used),
                client_errors: count(tally.client_errors),
                throttled: count(tally.throttled),
            }
        })
        .collect()
}

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

    async fn get_usage_history(
        &self,
        _request: &poem::Request,
        auth: GetUsageHistoryAuth<Self>,
        params: types::GetUsageHistoryParams,
    ) -> Result<GetUsageHistoryResponse> {
        let state = &*self.state;
        let (start, end) = (params.start_date, params.end_date);
        check_range(start, end)?;
        // Counts of the last second are written first, so today's are current.
        state.gateway.flush().await?;
        let rows = state.store.key_history(auth.api_key.id, start, end).await?;
        Ok(GetUsageHistoryResponse::Ok(UsageHistory {
            start_date: start,
            end_date: end,
            days: every_day(rows, start, end),
        }))
    }

    async fn rotate_own_api_key(
        &self,
        _request: &poem::Request,
        auth: RotateOwnApiKeyAuth<Self>,
    ) -> Result<RotateOwnApiKeyResponse> {
        let state = &*self.state;
        let rotated = state
            .store
            .rotate_key(auth.api_key.id)
            .await?
            .ok_or(ApiError::NO_KEY)?;
        // Committed: every instance forgets the keys it cached, so the old secret is
        // refused everywhere from now on.
        state.events.publish(Event::KeyChanged).await;
        Ok(RotateOwnApiKeyResponse::Ok(with_secret(rotated)))
    }
}
