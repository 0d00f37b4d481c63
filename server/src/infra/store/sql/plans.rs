//! The `usage_plans` table: the operator API's plans, which keys belong to.
//!
//! A plan in use cannot be deleted because `api_keys.plan_id` is `ON DELETE RESTRICT`:
//! the delete fails, and that is [`PlanDeletion::InUse`], rather than a check before the
//! delete that another writer could outdate. Updates return the row they wrote
//! (`RETURNING`), so the answer is what this statement did, not a later read another
//! write may have changed.

use async_trait::async_trait;
use uuid::Uuid;

use super::exec::Q;
use super::rows::{PlanRow, networks_column, plan_columns};
use super::{Backend, QueryExt, SqlStore, overfetch};
use crate::infra::store::error::is_foreign_key_violation;
use crate::infra::store::{Page, PlanDeletion, PlanRecord, PlanSettings, PlanStore, StoreError};

#[async_trait]
impl<DB: Backend> PlanStore for SqlStore<DB> {
    async fn create_plan(&self, settings: PlanSettings) -> Result<PlanRecord, StoreError> {
        let plan = PlanRecord::new(settings.clone());
        let insert = Self::query(
            "INSERT INTO usage_plans (name, description, throttle_rate, throttle_burst,
                 quota_limit, quota_period, allow_cache_refresh, ip_allow, ip_deny, webhook_limit,
                 stream_connection_limit, id, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        );
        let columns = SettingsColumns::of(&settings);
        let _turn = self.turn().await;
        columns
            .bind(insert)
            .arg(plan.id)
            .arg(plan.created_at)
            .execute_on(&mut *self.conn().await?)
            .await?;
        Ok(plan)
    }

    async fn plan(&self, id: Uuid) -> Result<Option<PlanRecord>, StoreError> {
        let sql = concat!(
            "SELECT ",
            plan_columns!(),
            " FROM usage_plans WHERE id = $1"
        );
        let row: Option<PlanRow> = Self::query(sql)
            .arg(id)
            .fetch_optional_as(&mut *self.conn().await?)
            .await?;
        Ok(row.map(PlanRecord::try_from).transpose()?)
    }

    async fn plans(
        &self,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Page<PlanRecord, Uuid>, StoreError> {
        // UUIDv7 ids: newest first is id order, and Uuid::max() is past every id.
        let sql = concat!(
            "SELECT ",
            plan_columns!(),
            " FROM usage_plans WHERE id < $1 ORDER BY id DESC LIMIT $2"
        );
        let rows: Vec<PlanRow> = Self::query(sql)
            .arg(before.unwrap_or(Uuid::max()))
            .arg(overfetch(limit))
            .fetch_all_as(&mut *self.conn().await?)
            .await?;
        let plans = rows
            .into_iter()
            .map(PlanRecord::try_from)
            .collect::<Result<_, _>>()?;
        Ok(Page::by_id(plans, limit, |plan| plan.id))
    }

    async fn update_plan(
        &self,
        id: Uuid,
        settings: PlanSettings,
    ) -> Result<Option<PlanRecord>, StoreError> {
        let sql = concat!(
            "UPDATE usage_plans SET name = $1, description = $2, throttle_rate = $3,
                 throttle_burst = $4, quota_limit = $5, quota_period = $6,
                 allow_cache_refresh = $7, ip_allow = $8, ip_deny = $9, webhook_limit = $10,
                 stream_connection_limit = $11
             WHERE id = $12 RETURNING ",
            plan_columns!()
        );
        let columns = SettingsColumns::of(&settings);
        let _turn = self.turn().await;
        let row: Option<PlanRow> = columns
            .bind(Self::query(sql))
            .arg(id)
            .fetch_optional_as(&mut *self.conn().await?)
            .await?;
        Ok(row.map(PlanRecord::try_from).transpose()?)
    }

    async fn delete_plan(&self, id: Uuid) -> Result<PlanDeletion, StoreError> {
        // No check first: a key created between a check and the delete would be left
        // without its plan. The foreign key (ON DELETE RESTRICT) refuses the delete of a
        // plan in use, and a key insert racing with this delete waits for it and then
        // fails as an unknown plan.
        let _turn = self.turn().await;
        let deleted = Self::query("DELETE FROM usage_plans WHERE id = $1")
            .arg(id)
            .execute_on(&mut *self.conn().await?)
            .await;
        match deleted {
            Ok(1) => Ok(PlanDeletion::Deleted),
            Ok(_) => Ok(PlanDeletion::NotFound),
            Err(error) if is_foreign_key_violation(&error) => Ok(PlanDeletion::InUse),
            Err(error) => Err(error.into()),
        }
    }

    async fn has_plans(&self) -> Result<bool, StoreError> {
        let any: Option<(Uuid,)> = Self::query("SELECT id FROM usage_plans LIMIT 1")
            .fetch_optional_as(&mut *self.conn().await?)
            .await?;
        Ok(any.is_some())
    }
}

/// A plan's settings as their columns keep them.
struct SettingsColumns<'s> {
    settings: &'s PlanSettings,
    ip_allow: String,
    ip_deny: String,
}

impl<'s> SettingsColumns<'s> {
    fn of(settings: &'s PlanSettings) -> Self {
        Self {
            settings,
            ip_allow: networks_column(&settings.ip_policy.allow),
            ip_deny: networks_column(&settings.ip_policy.deny),
        }
    }

    /// Binds them as `$1` to `$11`: name, description, throttle rate and burst, quota
    /// limit and period, whether the plan may refresh the cache, its IP allow and deny
    /// lists, and its keys' webhook and stream connection limits.
    fn bind<'q, DB: Backend>(&'q self, query: Q<'q, DB>) -> Q<'q, DB> {
        let settings = self.settings;
        query
            .arg(settings.name.as_str())
            .arg(settings.description.as_deref())
            .arg(settings.throttle.map(|(rate, _)| rate))
            .arg(settings.throttle.map(|(_, burst)| burst))
            .arg(settings.quota.as_ref().map(|(limit, _)| *limit))
            .arg(settings.quota.as_ref().map(|(_, period)| period.as_str()))
            .arg(settings.allow_cache_refresh)
            .arg(self.ip_allow.as_str())
            .arg(self.ip_deny.as_str())
            .arg(i64::from(settings.webhook_limit))
            .arg(i64::from(settings.stream_connection_limit))
    }
}
