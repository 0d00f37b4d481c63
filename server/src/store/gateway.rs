//! The `usage_plans` and `api_keys` tables, for the operator API.

use chrono::{DateTime, Utc};
use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::users::now_millis;
use super::{Page, Store, StoreError};

/// A usage plan as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanRecord {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    /// Requests per second and bucket size.
    pub throttle: Option<(f64, i64)>,
    /// Requests per period (`DAY`, `WEEK`, `MONTH`).
    pub quota: Option<(i64, String)>,
    pub created_at: DateTime<Utc>,
}

/// What a plan is created or replaced with.
#[derive(Debug, Clone)]
pub struct PlanSettings {
    pub name: String,
    pub description: Option<String>,
    pub throttle: Option<(f64, i64)>,
    pub quota: Option<(i64, String)>,
}

/// An API key as stored, without its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub plan_id: String,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// The changes of a key update; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct KeyChanges {
    pub name: Option<String>,
    pub plan_id: Option<String>,
    pub enabled: Option<bool>,
}

/// What deleting a plan did.
#[derive(Debug, PartialEq, Eq)]
pub enum PlanDeletion {
    Deleted,
    NotFound,
    InUse,
}

/// Why a key could not be written.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyWrite<T> {
    Done(T),
    NotFound,
    UnknownPlan,
}

const SECRET_CHARS: usize = 43;
const PREFIX_CHARS: usize = 8;
const PLAN_COLUMNS: &str =
    "id, name, description, throttle_rate, throttle_burst, quota_limit, quota_period, created_at";
const KEY_COLUMNS: &str = "id, name, prefix, plan_id, enabled, created_at, last_used_at";

/// A new secret: `mk_` and 43 base62 characters, 256 bits from the OS generator.
pub fn new_secret() -> String {
    let body: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(SECRET_CHARS)
        .map(char::from)
        .collect();
    format!("mk_{body}")
}

/// How a secret is stored and looked up.
pub fn secret_hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Store {
    pub async fn create_plan(&self, settings: PlanSettings) -> Result<PlanRecord, StoreError> {
        let _turn = self.write_turn().await;
        let plan = PlanRecord {
            id: uuid::Uuid::now_v7().to_string(),
            name: settings.name,
            description: settings.description,
            throttle: settings.throttle,
            quota: settings.quota,
            created_at: now_millis(),
        };
        sqlx::query(
            "INSERT INTO usage_plans (id, name, description, throttle_rate, throttle_burst, quota_limit, quota_period, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&plan.id)
        .bind(&plan.name)
        .bind(&plan.description)
        .bind(plan.throttle.map(|t| t.0))
        .bind(plan.throttle.map(|t| t.1))
        .bind(plan.quota.as_ref().map(|q| q.0))
        .bind(plan.quota.as_ref().map(|q| q.1.clone()))
        .bind(plan.created_at)
        .execute(&self.pool)
        .await?;
        Ok(plan)
    }

    pub async fn plan(&self, id: &str) -> Result<Option<PlanRecord>, StoreError> {
        let sql = format!("SELECT {PLAN_COLUMNS} FROM usage_plans WHERE id = ?");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| plan_from_row(&row)).transpose()
    }

    /// Plans, newest first, older than the plan `before`.
    pub async fn plans(
        &self,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Page<PlanRecord, String>, StoreError> {
        self.page_by_id(
            "usage_plans",
            PLAN_COLUMNS,
            plan_from_row,
            before,
            limit,
            |p| p.id.clone(),
        )
        .await
    }

    /// Replaces a plan's settings; `None` when there is no such plan.
    pub async fn update_plan(
        &self,
        id: &str,
        settings: PlanSettings,
    ) -> Result<Option<PlanRecord>, StoreError> {
        let turn = self.write_turn().await;
        let updated = sqlx::query(
            "UPDATE usage_plans SET name = ?, description = ?, throttle_rate = ?, throttle_burst = ?,
                 quota_limit = ?, quota_period = ? WHERE id = ?",
        )
        .bind(&settings.name)
        .bind(&settings.description)
        .bind(settings.throttle.map(|t| t.0))
        .bind(settings.throttle.map(|t| t.1))
        .bind(settings.quota.as_ref().map(|q| q.0))
        .bind(settings.quota.as_ref().map(|q| q.1.clone()))
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        drop(turn);
        if updated == 0 {
            return Ok(None);
        }
        self.plan(id).await
    }

    /// Deletes a plan no key uses. Keys are only created under the same write turn, so
    /// none can appear between the check and the delete.
    pub async fn delete_plan(&self, id: &str) -> Result<PlanDeletion, StoreError> {
        let _turn = self.write_turn().await;
        let in_use = sqlx::query("SELECT 1 FROM api_keys WHERE plan_id = ? LIMIT 1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .is_some();
        if in_use {
            return Ok(PlanDeletion::InUse);
        }
        let deleted = sqlx::query("DELETE FROM usage_plans WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(if deleted.rows_affected() == 1 {
            PlanDeletion::Deleted
        } else {
            PlanDeletion::NotFound
        })
    }

    /// Creates a key in `plan_id`; returns it with its secret, which is stored only hashed.
    pub async fn create_key(
        &self,
        name: &str,
        plan_id: &str,
        enabled: bool,
    ) -> Result<KeyWrite<(KeyRecord, String)>, StoreError> {
        let _turn = self.write_turn().await;
        let secret = new_secret();
        let key = KeyRecord {
            id: uuid::Uuid::now_v7().to_string(),
            name: name.to_owned(),
            prefix: secret[..PREFIX_CHARS].to_owned(),
            plan_id: plan_id.to_owned(),
            enabled,
            created_at: now_millis(),
            last_used_at: None,
        };
        let inserted = sqlx::query(
            "INSERT INTO api_keys (id, name, prefix, secret_hash, plan_id, enabled, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&key.id)
        .bind(&key.name)
        .bind(&key.prefix)
        .bind(secret_hash(&secret))
        .bind(&key.plan_id)
        .bind(key.enabled)
        .bind(key.created_at)
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(KeyWrite::Done((key, secret))),
            Err(sqlx::Error::Database(db)) if db.is_foreign_key_violation() => {
                Ok(KeyWrite::UnknownPlan)
            }
            Err(error) => Err(error.into()),
        }
    }

    pub async fn key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| key_from_row(&row)).transpose()
    }

    /// Keys, newest first, older than the key `before`.
    pub async fn keys(
        &self,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Page<KeyRecord, String>, StoreError> {
        self.page_by_id("api_keys", KEY_COLUMNS, key_from_row, before, limit, |k| {
            k.id.clone()
        })
        .await
    }

    /// One page of a table whose UUIDv7 ids order it, newest first.
    async fn page_by_id<T>(
        &self,
        table: &str,
        columns: &str,
        from_row: fn(&sqlx::sqlite::SqliteRow) -> Result<T, StoreError>,
        before: Option<&str>,
        limit: u32,
        id_of: fn(&T) -> String,
    ) -> Result<Page<T, String>, StoreError> {
        let sql = format!("SELECT {columns} FROM {table} WHERE id < ? ORDER BY id DESC LIMIT ?");
        let rows = sqlx::query(&sql)
            .bind(before.unwrap_or("~"))
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.pool)
            .await?;
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            let item = from_row(row)?;
            let cursor = id_of(&item);
            items.push((item, cursor));
        }
        Ok(Page::from_overfetch(items, limit))
    }

    /// Applies `changes` to a key.
    pub async fn update_key(
        &self,
        id: &str,
        changes: KeyChanges,
    ) -> Result<KeyWrite<KeyRecord>, StoreError> {
        let turn = self.write_turn().await;
        let updated = sqlx::query(
            "UPDATE api_keys SET name = COALESCE(?, name), plan_id = COALESCE(?, plan_id), enabled = COALESCE(?, enabled)
             WHERE id = ?",
        )
        .bind(&changes.name)
        .bind(&changes.plan_id)
        .bind(changes.enabled)
        .bind(id)
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

    /// Gives a key a new secret; the old one stops matching at once.
    pub async fn rotate_key(&self, id: &str) -> Result<Option<(KeyRecord, String)>, StoreError> {
        let turn = self.write_turn().await;
        let secret = new_secret();
        let updated = sqlx::query("UPDATE api_keys SET secret_hash = ?, prefix = ? WHERE id = ?")
            .bind(secret_hash(&secret))
            .bind(&secret[..PREFIX_CHARS])
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        drop(turn);
        if updated == 0 {
            return Ok(None);
        }
        Ok(self.key(id).await?.map(|key| (key, secret)))
    }

    /// Deletes a key; `false` when there is none.
    pub async fn delete_key(&self, id: &str) -> Result<bool, StoreError> {
        let _turn = self.write_turn().await;
        let deleted = sqlx::query("DELETE FROM api_keys WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(deleted.rows_affected() == 1)
    }

    /// Whether any plan exists (a fresh database gets a default plan in development).
    pub async fn has_plans(&self) -> Result<bool, StoreError> {
        Ok(sqlx::query("SELECT 1 FROM usage_plans LIMIT 1")
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }
}

fn plan_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<PlanRecord, StoreError> {
    let rate: Option<f64> = row.try_get("throttle_rate")?;
    let burst: Option<i64> = row.try_get("throttle_burst")?;
    let limit: Option<i64> = row.try_get("quota_limit")?;
    let period: Option<String> = row.try_get("quota_period")?;
    Ok(PlanRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        throttle: rate.zip(burst),
        quota: limit.zip(period),
        created_at: row.try_get("created_at")?,
    })
}

fn key_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<KeyRecord, StoreError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_random_and_hash_to_hex() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert_eq!(a.len(), 3 + SECRET_CHARS);
        assert!(a.starts_with("mk_") && a[3..].chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(secret_hash(&a).len(), 64);
        assert_ne!(secret_hash(&a), secret_hash(&b));
    }
}
