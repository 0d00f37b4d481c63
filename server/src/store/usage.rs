//! The `usage` table, and the lookup of a key by its secret for the gateway.

use sqlx::Row;

use super::gateway::{KeyRecord, PlanRecord};
use super::{Store, StoreError};

impl Store {
    /// The key whose secret hashes to `secret_hash`, with its plan.
    pub async fn key_by_secret_hash(
        &self,
        secret_hash: &str,
    ) -> Result<Option<(KeyRecord, PlanRecord, String)>, StoreError> {
        let row = sqlx::query(
            "SELECT k.id AS key_id, k.secret_hash, p.id AS plan_id
             FROM api_keys k JOIN usage_plans p ON p.id = k.plan_id WHERE k.secret_hash = ?",
        )
        .bind(secret_hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let key_id: String = row.try_get("key_id")?;
        let plan_id: String = row.try_get("plan_id")?;
        let stored_hash: String = row.try_get("secret_hash")?;
        let (Some(key), Some(plan)) = (self.key(&key_id).await?, self.plan(&plan_id).await?) else {
            return Ok(None);
        };
        Ok(Some((key, plan, stored_hash)))
    }

    /// Requests a key made on days `from_day..` (YYYY-MM-DD, UTC).
    pub async fn usage_since(&self, key_id: &str, from_day: &str) -> Result<u64, StoreError> {
        let used: i64 = sqlx::query(
            "SELECT COALESCE(SUM(used), 0) AS used FROM usage WHERE key_id = ? AND day >= ?",
        )
        .bind(key_id)
        .bind(from_day)
        .fetch_one(&self.pool)
        .await?
        .try_get("used")?;
        Ok(u64::try_from(used).unwrap_or(0))
    }

    /// Adds counts of admitted requests `(key_id, day, count)`, and marks the keys used.
    pub async fn add_usage(&self, counts: &[(String, String, u64)]) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        let now = super::users::now_millis();
        for (key_id, day, count) in counts {
            sqlx::query(
                "INSERT INTO usage (key_id, day, used) VALUES (?, ?, ?)
                 ON CONFLICT (key_id, day) DO UPDATE SET used = used + excluded.used",
            )
            .bind(key_id)
            .bind(day)
            .bind(i64::try_from(*count).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE api_keys SET last_used_at = ? WHERE id = ?")
                .bind(now)
                .bind(key_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

impl Store {
    /// The ids of the keys now in a plan.
    pub async fn keys_in_plan(&self, plan_id: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT id FROM api_keys WHERE plan_id = ? ORDER BY id")
            .bind(plan_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| row.try_get("id").map_err(StoreError::from))
            .collect()
    }

    /// A key's admitted requests per day, for days `from..=to` (YYYY-MM-DD) that have any.
    pub async fn usage_by_day(
        &self,
        key_id: &str,
        from: &str,
        to: &str,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT day, used FROM usage WHERE key_id = ? AND day BETWEEN ? AND ? ORDER BY day",
        )
        .bind(key_id)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let used: i64 = row.try_get("used")?;
                Ok((row.try_get("day")?, u64::try_from(used).unwrap_or(0)))
            })
            .collect()
    }
}
