//! The `usage_plans`, `api_keys` and `usage` tables, for the operator API and the gateway.

use async_trait::async_trait;
use chrono::NaiveDate;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use super::{SqliteStore, text, uuid};
use crate::infra::store::{
    GatewayStore, KeyChanges, KeyRecord, KeyWrite, NewKey, Page, PlanDeletion, PlanRecord,
    PlanSettings, StoreError, UsageCount, new_secret, now_millis, secret_hash, secret_prefix,
};

const PLAN_COLUMNS: &str = "id, name, description, throttle_rate, throttle_burst, quota_limit, quota_period, allow_cache_refresh, created_at";
const KEY_COLUMNS: &str = "id, name, prefix, plan_id, enabled, created_at, last_used_at";

#[async_trait]
impl GatewayStore for SqliteStore {
    async fn create_plan(&self, settings: PlanSettings) -> Result<PlanRecord, StoreError> {
        let _turn = self.write_turn().await;
        let plan = PlanRecord::new(settings);
        sqlx::query(
            "INSERT INTO usage_plans (id, name, description, throttle_rate, throttle_burst, quota_limit, quota_period, allow_cache_refresh, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(text(plan.id))
        .bind(&plan.name)
        .bind(&plan.description)
        .bind(plan.throttle.map(|t| t.0))
        .bind(plan.throttle.map(|t| t.1))
        .bind(plan.quota.as_ref().map(|q| q.0))
        .bind(plan.quota.as_ref().map(|q| q.1.clone()))
        .bind(plan.allow_cache_refresh)
        .bind(plan.created_at)
        .execute(&self.pool)
        .await?;
        Ok(plan)
    }

    async fn plan(&self, id: Uuid) -> Result<Option<PlanRecord>, StoreError> {
        let sql = format!("SELECT {PLAN_COLUMNS} FROM usage_plans WHERE id = ?");
        let row = sqlx::query(&sql)
            .bind(text(id))
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| plan_from_row(&row)).transpose()?)
    }

    async fn plans(
        &self,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Page<PlanRecord, Uuid>, StoreError> {
        let plans = self
            .newest_first("usage_plans", PLAN_COLUMNS, plan_from_row, before, limit)
            .await?;
        Ok(Page::by_id(plans, limit, |plan| plan.id))
    }

    async fn update_plan(
        &self,
        id: Uuid,
        settings: PlanSettings,
    ) -> Result<Option<PlanRecord>, StoreError> {
        let turn = self.write_turn().await;
        let updated = sqlx::query(
            "UPDATE usage_plans SET name = ?, description = ?, throttle_rate = ?, throttle_burst = ?,
                 quota_limit = ?, quota_period = ?, allow_cache_refresh = ? WHERE id = ?",
        )
        .bind(&settings.name)
        .bind(&settings.description)
        .bind(settings.throttle.map(|t| t.0))
        .bind(settings.throttle.map(|t| t.1))
        .bind(settings.quota.as_ref().map(|q| q.0))
        .bind(settings.quota.as_ref().map(|q| q.1.clone()))
        .bind(settings.allow_cache_refresh)
        .bind(text(id))
        .execute(&self.pool)
        .await?
        .rows_affected();
        drop(turn);
        if updated == 0 {
            return Ok(None);
        }
        self.plan(id).await
    }

    /// Checks for keys, then deletes: keys are only created under the same write turn, so
    /// none can appear in between. (SQLite reports `ON DELETE RESTRICT` as
    /// `SQLITE_CONSTRAINT_TRIGGER`, which sqlx does not call a foreign-key violation, so
    /// the constraint alone cannot tell "in use" from a bug.)
    async fn delete_plan(&self, id: Uuid) -> Result<PlanDeletion, StoreError> {
        let _turn = self.write_turn().await;
        let in_use = sqlx::query("SELECT 1 FROM api_keys WHERE plan_id = ? LIMIT 1")
            .bind(text(id))
            .fetch_optional(&self.pool)
            .await?
            .is_some();
        if in_use {
            return Ok(PlanDeletion::InUse);
        }
        let deleted = sqlx::query("DELETE FROM usage_plans WHERE id = ?")
            .bind(text(id))
            .execute(&self.pool)
            .await?;
        Ok(if deleted.rows_affected() == 1 {
            PlanDeletion::Deleted
        } else {
            PlanDeletion::NotFound
        })
    }

    async fn has_plans(&self) -> Result<bool, StoreError> {
        Ok(sqlx::query("SELECT 1 FROM usage_plans LIMIT 1")
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    async fn create_key(
        &self,
        name: &str,
        plan_id: Uuid,
        enabled: bool,
    ) -> Result<KeyWrite<NewKey>, StoreError> {
        let _turn = self.write_turn().await;
        let new = NewKey::new(name, plan_id, enabled);
        let key = &new.record;
        let inserted = sqlx::query(
            "INSERT INTO api_keys (id, name, prefix, secret_hash, plan_id, enabled, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(text(key.id))
        .bind(&key.name)
        .bind(&key.prefix)
        .bind(secret_hash(&new.secret))
        .bind(text(key.plan_id))
        .bind(key.enabled)
        .bind(key.created_at)
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(KeyWrite::Done(new)),
            Err(sqlx::Error::Database(db)) if db.is_foreign_key_violation() => {
                Ok(KeyWrite::UnknownPlan)
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn key(&self, id: Uuid) -> Result<Option<KeyRecord>, StoreError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?");
        let row = sqlx::query(&sql)
            .bind(text(id))
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| key_from_row(&row)).transpose()?)
    }

    async fn keys(
        &self,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Page<KeyRecord, Uuid>, StoreError> {
        let keys = self
            .newest_first("api_keys", KEY_COLUMNS, key_from_row, before, limit)
            .await?;
        Ok(Page::by_id(keys, limit, |key| key.id))
    }

    async fn keys_in_plan(&self, plan_id: Uuid) -> Result<Vec<Uuid>, StoreError> {
        let rows = sqlx::query("SELECT id FROM api_keys WHERE plan_id = ? ORDER BY id")
            .bind(text(plan_id))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|row| uuid(row, "id"))
            .collect::<Result<_, _>>()?)
    }

    async fn update_key(
        &self,
        id: Uuid,
        changes: KeyChanges,
    ) -> Result<KeyWrite<KeyRecord>, StoreError> {
        let turn = self.write_turn().await;
        let updated = sqlx::query(
            "UPDATE api_keys SET name = COALESCE(?, name), plan_id = COALESCE(?, plan_id), enabled = COALESCE(?, enabled)
             WHERE id = ?",
        )
        .bind(&changes.name)
        .bind(changes.plan_id.map(text))
        .bind(changes.enabled)
        .bind(text(id))
        .execute(&self.pool)
        .await;
        drop(turn);
        match updated {
            Ok(result) if result.rows_affected() == 0 => Ok(KeyWrite::NotFound),
            Ok(_) => Ok(self
                .key(id)
                .await?
                .map_or(KeyWrite::NotFound, KeyWrite::Done)),
            Err(sqlx::Error::Database(db)) if db.is_foreign_key_violation() => {
                Ok(KeyWrite::UnknownPlan)
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn rotate_key(&self, id: Uuid) -> Result<Option<NewKey>, StoreError> {
        let turn = self.write_turn().await;
        let secret = new_secret();
        let updated = sqlx::query("UPDATE api_keys SET secret_hash = ?, prefix = ? WHERE id = ?")
            .bind(secret_hash(&secret))
            .bind(secret_prefix(&secret))
            .bind(text(id))
            .execute(&self.pool)
            .await?
            .rows_affected();
        drop(turn);
        if updated == 0 {
            return Ok(None);
        }
        Ok(self.key(id).await?.map(|record| NewKey { record, secret }))
    }

    async fn delete_key(&self, id: Uuid) -> Result<bool, StoreError> {
        let _turn = self.write_turn().await;
        let deleted = sqlx::query("DELETE FROM api_keys WHERE id = ?")
            .bind(text(id))
            .execute(&self.pool)
            .await?;
        Ok(deleted.rows_affected() == 1)
    }

    async fn key_by_secret_hash(
        &self,
        secret_hash: &str,
    ) -> Result<Option<(KeyRecord, PlanRecord, String)>, StoreError> {
        let row = sqlx::query(
            "SELECT k.id, k.name, k.prefix, k.plan_id, k.enabled, k.created_at, k.last_used_at,
                    k.secret_hash, p.name AS plan_name, p.description, p.throttle_rate,
                    p.throttle_burst, p.quota_limit, p.quota_period, p.allow_cache_refresh,
                    p.created_at AS plan_created_at
             FROM api_keys k JOIN usage_plans p ON p.id = k.plan_id WHERE k.secret_hash = ?",
        )
        .bind(secret_hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let key = key_from_row(&row)?;
        let plan = plan_from_columns(&row, ["plan_id", "plan_name", "plan_created_at"])?;
        Ok(Some((key, plan, row.try_get("secret_hash")?)))
    }

    async fn usage_since(&self, key_id: Uuid, from: NaiveDate) -> Result<u64, StoreError> {
        let used: i64 = sqlx::query(
            "SELECT COALESCE(SUM(used), 0) AS used FROM usage WHERE key_id = ? AND day >= ?",
        )
        .bind(text(key_id))
        .bind(from)
        .fetch_one(&self.pool)
        .await?
        .try_get("used")?;
        Ok(u64::try_from(used).unwrap_or(0))
    }

    async fn add_usage(&self, counts: &[UsageCount]) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        let now = now_millis();
        for count in counts {
            sqlx::query(
                "INSERT INTO usage (key_id, day, used) VALUES (?, ?, ?)
                 ON CONFLICT (key_id, day) DO UPDATE SET used = used + excluded.used",
            )
            .bind(text(count.key_id))
            .bind(count.day)
            .bind(i64::try_from(count.used).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE api_keys SET last_used_at = ? WHERE id = ?")
                .bind(now)
                .bind(text(count.key_id))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn usage_by_day(
        &self,
        key_id: Uuid,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<(NaiveDate, u64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT day, used FROM usage WHERE key_id = ? AND day BETWEEN ? AND ? ORDER BY day",
        )
        .bind(text(key_id))
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| {
                let used: i64 = row.try_get("used")?;
                Ok((row.try_get("day")?, u64::try_from(used).unwrap_or(0)))
            })
            .collect::<Result<_, sqlx::Error>>()?)
    }
}

impl SqliteStore {
    /// Rows of a table whose UUIDv7 ids order it, newest first, older than `before`, one
    /// more than `limit` (see [`Page::by_id`]).
    async fn newest_first<T>(
        &self,
        table: &str,
        columns: &str,
        from_row: fn(&SqliteRow) -> Result<T, sqlx::Error>,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<T>, StoreError> {
        let sql = format!("SELECT {columns} FROM {table} WHERE id < ? ORDER BY id DESC LIMIT ?");
        let rows = sqlx::query(&sql)
            .bind(text(before.unwrap_or(Uuid::max())))
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }
}

fn plan_from_row(row: &SqliteRow) -> Result<PlanRecord, sqlx::Error> {
    plan_from_columns(row, ["id", "name", "created_at"])
}

/// A plan from a row whose id, name and creation time are in the named columns (a join
/// with `api_keys` renames them).
fn plan_from_columns(
    row: &SqliteRow,
    [id, name, created_at]: [&str; 3],
) -> Result<PlanRecord, sqlx::Error> {
    let rate: Option<f64> = row.try_get("throttle_rate")?;
    let burst: Option<i64> = row.try_get("throttle_burst")?;
    let limit: Option<i64> = row.try_get("quota_limit")?;
    let period: Option<String> = row.try_get("quota_period")?;
    Ok(PlanRecord {
        id: uuid(row, id)?,
        name: row.try_get(name)?,
        description: row.try_get("description")?,
        throttle: rate.zip(burst),
        quota: limit.zip(period),
        allow_cache_refresh: row.try_get("allow_cache_refresh")?,
        created_at: row.try_get(created_at)?,
    })
}

fn key_from_row(row: &SqliteRow) -> Result<KeyRecord, sqlx::Error> {
    Ok(KeyRecord {
        id: uuid(row, "id")?,
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        plan_id: uuid(row, "plan_id")?,
        enabled: row.try_get("enabled")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
    })
}
