//! Between the operator API's types and the store's records: plan settings and IP
//! policies in, plans and keys out (a key's secret only in the answer that creates or
//! rotates it).

use std::num::NonZeroU64;

use crate::domain::records::DEFAULT_STREAM_CONNECTION_LIMIT;
use crate::domain::webhooks::DEFAULT_WEBHOOK_LIMIT;
use crate::generated::types::{self, Quota, QuotaPeriod, Throttle};
use crate::http::error::{ApiError, Result};
use crate::infra::store::{IpPolicy, KeyRecord, NewKey, PlanRecord, PlanSettings};

pub(super) fn settings(input: types::UsagePlanInput) -> Result<PlanSettings> {
    Ok(PlanSettings {
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
        ip_policy: input
            .ip_policy
            .map(ip_policy)
            .transpose()?
            .unwrap_or_default(),
        // The schema bounds it to 0..=1000.
        webhook_limit: input.webhook_limit.map_or(DEFAULT_WEBHOOK_LIMIT, |limit| {
            u32::try_from(limit).unwrap_or(0)
        }),
        // The schema bounds it to 0..=100000.
        stream_connection_limit: input
            .stream_connection_limit
            .map_or(DEFAULT_STREAM_CONNECTION_LIMIT, |limit| {
                u32::try_from(limit).unwrap_or(0)
            }),
    })
}

/// The policy of a request body. Its networks have passed the document's `cidr` format,
/// which accepts what [`IpPolicy::parse`] does; a refusal here is a bug, not bad input.
pub(super) fn ip_policy(input: types::IpPolicy) -> Result<IpPolicy> {
    let strings = |list: &[types::Cidr]| list.iter().map(|net| net.0.clone()).collect::<Vec<_>>();
    IpPolicy::parse(&strings(&input.allow), &strings(&input.deny))
        .map_err(|error| ApiError::Internal(anyhow::anyhow!("past the validator: {error}")))
}

fn to_api_ip_policy(policy: &IpPolicy) -> types::IpPolicy {
    let strings = |list: &[ipnet::IpNet]| list.iter().map(|net| net.to_string().into()).collect();
    types::IpPolicy {
        allow: strings(&policy.allow),
        deny: strings(&policy.deny),
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
        ip_policy: to_api_ip_policy(&plan.ip_policy),
        webhook_limit: i32::try_from(plan.webhook_limit).unwrap_or(i32::MAX),
        stream_connection_limit: i32::try_from(plan.stream_connection_limit).unwrap_or(i32::MAX),
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
        ip_policy: to_api_ip_policy(&key.ip_policy),
        created_at: key.created_at,
        last_used_at: key.last_used_at,
    })
}

pub(in crate::handlers) fn with_secret(new: NewKey) -> types::CreatedApiKey {
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
        ip_policy: to_api_ip_policy(&key.ip_policy),
        created_at: key.created_at,
        last_used_at: key.last_used_at,
        secret: secret.into(),
    }
}
