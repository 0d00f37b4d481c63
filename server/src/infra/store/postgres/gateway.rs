//! The `usage_plans`, `api_keys` and `usage` tables: the operator API's plans and keys,
//! the gateway's lookup of a request's key, and the usage counts quotas read.
//!
//! Every check that another instance could outdate is left to a constraint: a plan in use
//! cannot be deleted because `api_keys.plan_id` is `ON DELETE RESTRICT` (the delete fails,
//! and that is [`PlanDeletion::InUse`]); a key in an unknown plan fails its foreign key
//! ([`KeyWrite::UnknownPlan`]). Updates return the row they wrote (`RETURNING`), so the
//! answer is what this statement did, not a later read another write may have changed.
//!
//! Usage batches from several instances add to the same `(key, day)` rows, so each batch
//! locks its rows in one order (usage rows by key and day, then keys by id) and is re-run
//! whole if it loses a race anyway ([`super::retry`]).

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::NaiveDate;
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::{PgStore, overfetch, retry};
use crate::infra::store::{
    GatewayStore, KeyChanges, KeyRecord, KeyWrite, NewKey, Page, PlanDeletion, PlanRecord,
    PlanSettings, StoreError, UsageCount, new_secret, now_millis, secret_hash, secret_prefix,
};

/// The columns [`PlanRecord`] is read from.
macro_rules! plan_columns {
    () => {
        "id, name, description, throttle_rate, throttle_burst, quota_limit, quota_period, \
         allow_cache_refresh, created_at"
    };
}

/// The columns [`KeyRecord`] is read from.
macro_rules! key_columns {
    () => {
        "id, name, prefix, plan_id, enabled, created_at, last_used_at"
    };
}

#[async_trait]
impl GatewayStore for PgStore {
    async fn create_plan(&self, settings: PlanSettings) -> Result<PlanRecord, StoreError> {
        let plan = PlanRecord::new(settings);
        sqlx::query(
            "INSERT INTO usage_plans (id, name, description, throttle_rate, throttle_burst,
                 quota_limit, quota_period, allow_cache_refresh, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(plan.id)
        .bind(&plan.name)
        .bind(&plan.description)
        .bind(plan.throttle.map(|(rate, _)| rate))
        .bind(plan.throttle.map(|(_, burst)| burst))
        .bind(plan.quota.as_ref().map(|(limit, _)| *limit))
        .bind(plan.quota.as_ref().map(|(_, period)| period.as_str()))
        .bind(plan.allow_cache_refresh)
        .bind(plan.created_at)
        .execute(&self.pool)
        .await?;
        Ok(plan)
    }

    async fn plan(&self, id: Uuid) -> Result<Option<PlanRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            plan_columns!(),
            " FROM usage_plans WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(plan_from_row).transpose()?)
    }

    async fn plans(
        &self,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Page<PlanRecord, Uuid>, StoreError> {
        // UUIDv7 ids: newest first is id order, and Uuid::max() is past every id.
        let rows = sqlx::query(concat!(
            "SELECT ",
            plan_columns!(),
            " FROM usage_plans WHERE id < $1 ORDER BY id DESC LIMIT $2"
        ))
        .bind(before.unwrap_or(Uuid::max()))
        .bind(overfetch(limit))
        .fetch_all(&self.pool)
        .await?;
        let plans = rows
            .iter()
            .map(plan_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::by_id(plans, limit, |plan| plan.id))
    }

    async fn update_plan(
        &self,
        id: Uuid,
        settings: PlanSettings,
    ) -> Result<Option<PlanRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "UPDATE usage_plans SET name = $1, description = $2, throttle_rate = $3,
                 throttle_burst = $4, quota_limit = $5, quota_period = $6,
                 allow_cache_refresh = $7
             WHERE id = $8 RETURNING ",
            plan_columns!()
        ))
        .bind(&settings.name)
        .bind(&settings.description)
        .bind(settings.throttle.map(|(rate, _)| rate))
        .bind(settings.throttle.map(|(_, burst)| burst))
        .bind(settings.quota.as_ref().map(|(limit, _)| *limit))
        .bind(settings.quota.as_ref().map(|(_, period)| period.as_str()))
        .bind(settings.allow_cache_refresh)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(plan_from_row).transpose()?)
    }

    async fn delete_plan(&self, id: Uuid) -> Result<PlanDeletion, StoreError> {
        // No check first: a key created between a check and the delete would be left
        // without its plan. The foreign key (ON DELETE RESTRICT) refuses the delete of a
        // plan in use, and a key insert racing with this delete waits for it and then
        // fails as an unknown plan.
        let deleted = sqlx::query("DELETE FROM usage_plans WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await;
        match deleted {
            Ok(result) if result.rows_affected() == 1 => Ok(PlanDeletion::Deleted),
            Ok(_) => Ok(PlanDeletion::NotFound),
            Err(sqlx::Error::Database(db)) if db.is_foreign_key_violation() => {
                Ok(PlanDeletion::InUse)
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn has_plans(&self) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT EXISTS (SELECT 1 FROM usage_plans) AS any")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("any")?)
    }

    async fn create_key(
        &self,
        name: &str,
        plan_id: Uuid,
        enabled: bool,
    ) -> Result<KeyWrite<NewKey>, StoreError> {
        let new = NewKey::new(name, plan_id, enabled);
        let key = &new.record;
        let inserted = sqlx::query(
            "INSERT INTO api_keys (id, name, prefix, secret_hash, plan_id, enabled, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(key.id)
        .bind(&key.name)
        .bind(&key.prefix)
        .bind(secret_hash(&new.secret))
        .bind(key.plan_id)
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
        let row = sqlx::query(concat!(
            "SELECT ",
            key_columns!(),
            " FROM api_keys WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(key_from_row).transpose()?)
    }

    async fn keys(
        &self,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Page<KeyRecord, Uuid>, StoreError> {
        // UUIDv7 ids: newest first is id order, and Uuid::max() is past every id.
        let rows = sqlx::query(concat!(
            "SELECT ",
            key_columns!(),
            " FROM api_keys WHERE id < $1 ORDER BY id DESC LIMIT $2"
        ))
        .bind(before.unwrap_or(Uuid::max()))
        .bind(overfetch(limit))
        .fetch_all(&self.pool)
        .await?;
        let keys = rows
            .iter()
            .map(key_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::by_id(keys, limit, |key| key.id))
    }

    async fn keys_in_plan(&self, plan_id: Uuid) -> Result<Vec<Uuid>, StoreError> {
        let rows = sqlx::query("SELECT id FROM api_keys WHERE plan_id = $1 ORDER BY id")
            .bind(plan_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|row| row.try_get("id"))
            .collect::<Result<_, _>>()?)
    }

    async fn update_key(
        &self,
        id: Uuid,
        changes: KeyChanges,
    ) -> Result<KeyWrite<KeyRecord>, StoreError> {
        // COALESCE: a field left out (a typed NULL) keeps its value.
        let updated = sqlx::query(concat!(
            "UPDATE api_keys SET name = COALESCE($1, name), plan_id = COALESCE($2, plan_id),
                 enabled = COALESCE($3, enabled)
             WHERE id = $4 RETURNING ",
            key_columns!()
        ))
        .bind(changes.name)
        .bind(changes.plan_id)
        .bind(changes.enabled)
        .bind(id)
        .fetch_optional(&self.pool)
        .await;
        match updated {
            Ok(Some(row)) => Ok(KeyWrite::Done(key_from_row(&row)?)),
            Ok(None) => Ok(KeyWrite::NotFound),
            Err(sqlx::Error::Database(db)) if db.is_foreign_key_violation() => {
                Ok(KeyWrite::UnknownPlan)
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn rotate_key(&self, id: Uuid) -> Result<Option<NewKey>, StoreError> {
        let secret = new_secret();
        // One statement: from its commit on, only the new secret's hash matches.
        let row = sqlx::query(concat!(
            "UPDATE api_keys SET secret_hash = $1, prefix = $2 WHERE id = $3 RETURNING ",
            key_columns!()
        ))
        .bind(secret_hash(&secret))
        .bind(secret_prefix(&secret))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(NewKey {
            record: key_from_row(&row)?,
            secret,
        }))
    }

    async fn delete_key(&self, id: Uuid) -> Result<bool, StoreError> {
        let deleted = sqlx::query("DELETE FROM api_keys WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(deleted.rows_affected() == 1)
    }

    async fn key_by_secret_hash(
        &self,
        secret_hash: &str,
    ) -> Result<Option<(KeyRecord, PlanRecord, String)>, StoreError> {
        // One query through the unique index on secret_hash: the key and its plan are read
        // from one snapshot, so they agree with each other.
        let row = sqlx::query(
            "SELECT k.id, k.name, k.prefix, k.plan_id, k.enabled, k.created_at, k.last_used_at,
                 k.secret_hash,
                 p.name AS plan_name, p.description AS plan_description,
                 p.throttle_rate, p.throttle_burst, p.quota_limit, p.quota_period,
                 p.allow_cache_refresh, p.created_at AS plan_created_at
             FROM api_keys k JOIN usage_plans p ON p.id = k.plan_id
             WHERE k.secret_hash = $1",
        )
        .bind(secret_hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let key = key_from_row(&row)?;
        let plan = PlanRecord {
            id: key.plan_id,
            name: row.try_get("plan_name")?,
            description: row.try_get("plan_description")?,
            throttle: throttle_from_row(&row)?,
            quota: quota_from_row(&row)?,
            allow_cache_refresh: row.try_get("allow_cache_refresh")?,
            created_at: row.try_get("plan_created_at")?,
        };
        let stored_hash: String = row.try_get("secret_hash")?;
        Ok(Some((key, plan, stored_hash)))
    }

    async fn usage_since(&self, key_id: Uuid, from: NaiveDate) -> Result<u64, StoreError> {
        // SUM(bigint) is numeric in PostgreSQL; the cast brings it back to a bigint.
        let used: i64 = sqlx::query(
            "SELECT COALESCE(SUM(used), 0)::bigint AS used FROM usage
             WHERE key_id = $1 AND day >= $2",
        )
        .bind(key_id)
        .bind(from)
        .fetch_one(&self.pool)
        .await?
        .try_get("used")?;
        Ok(u64::try_from(used).unwrap_or(0))
    }

    async fn add_usage(&self, counts: &[UsageCount]) -> Result<(), StoreError> {
        // One row per (key, day), in key and day order: an upsert must not meet the same
        // row twice in one statement, and every batch then locks rows in the same order.
        let mut merged: BTreeMap<(Uuid, NaiveDate), u64> = BTreeMap::new();
        for count in counts {
            let used = merged.entry((count.key_id, count.day)).or_default();
            *used = used.saturating_add(count.used);
        }
        if merged.is_empty() {
            return Ok(());
        }
        let mut key_ids = Vec::with_capacity(merged.len());
        let mut days = Vec::with_capacity(merged.len());
        let mut used = Vec::with_capacity(merged.len());
        for ((key_id, day), count) in merged {
            key_ids.push(key_id);
            days.push(day);
            used.push(i64::try_from(count).unwrap_or(i64::MAX));
        }
        let mut keys = key_ids.clone();
        keys.dedup();
        let (key_ids, days, used, keys) = (&key_ids, &days, &used, &keys);
        let pool = &self.pool;
        retry(move || async move {
            let mut tx = pool.begin().await?;
            // ORDER BY: the rows are inserted, and so locked, in key and day order.
            sqlx::query(
                "INSERT INTO usage (key_id, day, used)
                 SELECT key_id, day, used
                 FROM UNNEST($1::uuid[], $2::date[], $3::bigint[]) AS batch (key_id, day, used)
                 ORDER BY key_id, day
                 ON CONFLICT (key_id, day) DO UPDATE SET used = usage.used + excluded.used",
            )
            .bind(key_ids)
            .bind(days)
            .bind(used)
            .execute(&mut *tx)
            .await?;
            // The keys are locked in id order before the update, for the same reason.
            // GREATEST: a batch from an instance whose clock is behind, or that committed
            // late, does not move last_used_at backwards (GREATEST ignores the NULL of a
            // key never used). A key deleted since is simply not there.
            sqlx::query(
                "WITH locked AS (
                     SELECT id FROM api_keys WHERE id = ANY($2) ORDER BY id FOR NO KEY UPDATE)
                 UPDATE api_keys SET last_used_at = GREATEST(last_used_at, $1)
                 FROM locked WHERE api_keys.id = locked.id",
            )
            .bind(now_millis())
            .bind(keys)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn usage_by_day(
        &self,
        key_id: Uuid,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<(NaiveDate, u64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT day, used FROM usage WHERE key_id = $1 AND day BETWEEN $2 AND $3 ORDER BY day",
        )
        .bind(key_id)
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

fn plan_from_row(row: &PgRow) -> Result<PlanRecord, sqlx::Error> {
    Ok(PlanRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        throttle: throttle_from_row(row)?,
        quota: quota_from_row(row)?,
        allow_cache_refresh: row.try_get("allow_cache_refresh")?,
        created_at: row.try_get("created_at")?,
    })
}

/// A plan's throttle; the table's checks keep both columns set or both NULL.
fn throttle_from_row(row: &PgRow) -> Result<Option<(f64, i64)>, sqlx::Error> {
    let rate: Option<f64> = row.try_get("throttle_rate")?;
    let burst: Option<i64> = row.try_get("throttle_burst")?;
    Ok(rate.zip(burst))
}

/// A plan's quota; the table's checks keep both columns set or both NULL.
fn quota_from_row(row: &PgRow) -> Result<Option<(i64, String)>, sqlx::Error> {
    let limit: Option<i64> = row.try_get("quota_limit")?;
    let period: Option<String> = row.try_get("quota_period")?;
    Ok(limit.zip(period))
}

fn key_from_row(row: &PgRow) -> Result<KeyRecord, sqlx::Error> {
    Ok(KeyRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        plan_id: row.try_get("plan_id")?,
        enabled: row.try_get("enabled")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
    })
}
