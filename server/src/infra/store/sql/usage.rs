//! The `usage` table: requests per key and UTC day by outcome (admitted, of those
//! answered with a 4xx, and refused with 429), which quotas, usage reports and the
//! histories the portal and console chart read.
//!
//! Usage batches from several instances add to the same `(key, day)` rows, so each batch
//! locks its rows in one order on PostgreSQL (usage rows by key and day, then keys by id)
//! and is re-run whole if it loses a race anyway ([`SqlStore::write`]).

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::NaiveDate;
use uuid::Uuid;

use super::rows::DayRow;
use super::{Backend, QueryExt, Sql, SqlStore, json_list};
use crate::infra::store::{StoreError, Tally, UsageCount, UsageDay, UsageStore, now_millis};

/// Adds a JSON list of `{key_id, day, used, client_errors, throttled}` (one per key and
/// day, in that order) to the counts. PostgreSQL inserts, and so locks, the rows in key
/// and day order.
const ADD_USAGE: Sql = Sql {
    sqlite: "INSERT INTO usage (key_id, day, used, client_errors, throttled)
             SELECT unhex(value ->> 'key_id', '-'), value ->> 'day', value ->> 'used',
                 value ->> 'client_errors', value ->> 'throttled'
             FROM json_each($1) WHERE true
             ON CONFLICT (key_id, day) DO UPDATE SET used = used + excluded.used,
                 client_errors = client_errors + excluded.client_errors,
                 throttled = throttled + excluded.throttled",
    postgres: "INSERT INTO usage (key_id, day, used, client_errors, throttled)
               SELECT key_id, day, used, client_errors, throttled
               FROM json_to_recordset($1::json) AS batch (key_id uuid, day date, used bigint,
                   client_errors bigint, throttled bigint)
               ORDER BY key_id, day
               ON CONFLICT (key_id, day) DO UPDATE SET used = usage.used + excluded.used,
                   client_errors = usage.client_errors + excluded.client_errors,
                   throttled = usage.throttled + excluded.throttled",
};

/// Marks the keys of a JSON list used at `$1`. PostgreSQL locks them in id order first,
/// and never moves last_used_at backwards (a batch from an instance whose clock is
/// behind, or that committed late; GREATEST ignores the NULL of a key never used). A key
/// deleted since is simply not there.
const MARK_USED: Sql = Sql {
    sqlite: "UPDATE api_keys SET last_used_at = $1
             WHERE id IN (SELECT unhex(value, '-') FROM json_each($2))",
    postgres: "WITH locked AS (
                   SELECT id FROM api_keys
                   WHERE id = ANY(ARRAY(SELECT json_array_elements_text($2::json)::uuid))
                   ORDER BY id FOR NO KEY UPDATE)
               UPDATE api_keys SET last_used_at = GREATEST(last_used_at, $1)
               FROM locked WHERE api_keys.id = locked.id",
};

/// One usage count in an [`ADD_USAGE`] batch.
#[derive(serde::Serialize)]
struct UsageRow {
    key_id: Uuid,
    day: NaiveDate,
    used: i64,
    client_errors: i64,
    throttled: i64,
}

#[async_trait]
impl<DB: Backend> UsageStore for SqlStore<DB> {
    async fn usage_since(&self, key_id: Uuid, from: NaiveDate) -> Result<u64, StoreError> {
        // SUM(bigint) is numeric in PostgreSQL; the cast brings it back to a bigint.
        let (used,): (i64,) = Self::query(
            "SELECT CAST(COALESCE(SUM(used), 0) AS BIGINT) FROM usage
             WHERE key_id = $1 AND day >= $2",
        )
        .arg(key_id)
        .arg(from)
        .fetch_one_as(&mut *self.conn().await?)
        .await?;
        Ok(u64::try_from(used).unwrap_or(0))
    }

    async fn add_usage(&self, counts: &[UsageCount]) -> Result<(), StoreError> {
        // One row per (key, day), in key and day order: an upsert must not meet the same
        // row twice in one statement, and every batch then locks rows in the same order.
        let mut merged: BTreeMap<(Uuid, NaiveDate), Tally> = BTreeMap::new();
        for count in counts {
            merged
                .entry((count.key_id, count.day))
                .or_default()
                .add(count.tally);
        }
        if merged.is_empty() {
            return Ok(());
        }
        let column = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let rows: Vec<UsageRow> = merged
            .into_iter()
            .map(|((key_id, day), tally)| UsageRow {
                key_id,
                day,
                used: column(tally.used),
                client_errors: column(tally.client_errors),
                throttled: column(tally.throttled),
            })
            .collect();
        let mut keys: Vec<Uuid> = rows.iter().map(|row| row.key_id).collect();
        keys.dedup();
        let (rows, keys) = (json_list(&rows)?, json_list(&keys)?);
        let (rows, keys) = (rows.as_str(), keys.as_str());
        self.write(move |mut tx| async move {
            Self::dialect(&ADD_USAGE)
                .arg(rows)
                .execute_on(&mut *tx)
                .await?;
            Self::dialect(&MARK_USED)
                .arg(now_millis())
                .arg(keys)
                .execute_on(&mut *tx)
                .await?;
            tx.commit().await
        })
        .await
    }

    async fn usage_by_day(
        &self,
        key_id: Uuid,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<(NaiveDate, u64)>, StoreError> {
        let rows: Vec<(NaiveDate, i64)> = Self::query(
            "SELECT day, used FROM usage WHERE key_id = $1 AND day BETWEEN $2 AND $3 ORDER BY day",
        )
        .arg(key_id)
        .arg(from)
        .arg(to)
        .fetch_all_as(&mut *self.conn().await?)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(day, used)| (day, u64::try_from(used).unwrap_or(0)))
            .collect())
    }

    async fn key_history(
        &self,
        key_id: Uuid,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<UsageDay>, StoreError> {
        let rows: Vec<DayRow> = Self::query(
            "SELECT day, used, client_errors, throttled FROM usage
             WHERE key_id = $1 AND day BETWEEN $2 AND $3 ORDER BY day",
        )
        .arg(key_id)
        .arg(from)
        .arg(to)
        .fetch_all_as(&mut *self.conn().await?)
        .await?;
        Ok(rows.into_iter().map(UsageDay::from).collect())
    }

    async fn plan_history(
        &self,
        plan_id: Uuid,
        from: NaiveDate,
        to: NaiveDate,
        top: u32,
    ) -> Result<(Vec<UsageDay>, Vec<(Uuid, u64)>), StoreError> {
        let mut conn = self.conn().await?;
        let days: Vec<DayRow> = Self::query(
            "SELECT u.day,
                 CAST(SUM(u.used) AS BIGINT) AS used,
                 CAST(SUM(u.client_errors) AS BIGINT) AS client_errors,
                 CAST(SUM(u.throttled) AS BIGINT) AS throttled
             FROM usage u JOIN api_keys k ON k.id = u.key_id
             WHERE k.plan_id = $1 AND u.day BETWEEN $2 AND $3
             GROUP BY u.day ORDER BY u.day",
        )
        .arg(plan_id)
        .arg(from)
        .arg(to)
        .fetch_all_as(&mut *conn)
        .await?;
        let top_keys: Vec<(Uuid, i64)> = Self::query(
            "SELECT u.key_id, CAST(SUM(u.used) AS BIGINT) AS used
             FROM usage u JOIN api_keys k ON k.id = u.key_id
             WHERE k.plan_id = $1 AND u.day BETWEEN $2 AND $3
             GROUP BY u.key_id HAVING SUM(u.used) > 0
             ORDER BY used DESC, u.key_id LIMIT $4",
        )
        .arg(plan_id)
        .arg(from)
        .arg(to)
        .arg(i64::from(top))
        .fetch_all_as(&mut *conn)
        .await?;
        Ok((
            days.into_iter().map(UsageDay::from).collect(),
            top_keys
                .into_iter()
                .map(|(key, used)| (key, u64::try_from(used).unwrap_or(0)))
                .collect(),
        ))
    }
}
