//! Between the operator API's types and the store's records: plan settings in, plans and
//! keys out (a key's secret only in the answer that creates or rotates it).

use std::num::NonZeroU64;

use crate::generated::types::{self, Quota, QuotaPeriod, Throttle};
use crate::http::error::{ApiError, Result};
use crate::infra::store::{KeyRecord, NewKey, PlanRecord, PlanSettings};

pub(super) fn settings(input: types::UsagePlanInput) -> PlanSettings {
    PlanSettings {
        name: input.name.into(),
        description: input.description.map(Into::into),
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

pub(in crate::handlers) fn to_api_plan(plan: &PlanRecord) -> Result<types::UsagePlan> {
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
        name: plan.name.clone().into(),
        description: plan.description.clone().map(Into::into),
        throttle,
        quota,
        allow_cache_refresh: plan.allow_cache_refresh,
        created_at: plan.created_at,
    })
}

pub(super) fn to_api_key(key: &KeyRecord) -> Result<types::ApiKey> {
    Ok(types::ApiKey {
        id: types::Id(key.id),
        name: key.name.clone().into(),
        prefix: key.prefix.clone().into(),
        plan_id: types::Id(key.plan_id),
        enabled: key.enabled,
        created_at: key.created_at,
        last_used_at: key.last_used_at,
    })
}

pub(super) fn with_secret(new: NewKey) -> types::CreatedApiKey {
    let NewKey {
        record: key,
        secret,
    } = new;
    types::CreatedApiKey {
        id: types::Id(key.id),
        name: key.name.into(),
        prefix: key.prefix.into(),
        plan_id: types::Id(key.plan_id),
        enabled: key.enabled,
        created_at: key.created_at,
        last_used_at: key.last_used_at,
        secret: secret.into(),
    }
}
