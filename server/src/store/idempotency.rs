//! Idempotency-Key records (draft-ietf-httpapi-idempotency-key-header).
//!
//! A key is claimed before the request runs and completed in the same transaction as the
//! write it protects ([`super::StoredResponse`]). A claim left incomplete (the process died
//! mid-request) is taken over after [`ABANDONED_AFTER_SECONDS`]; a key is kept for
//! [`KEPT_FOR_SECONDS`], then forgotten.

use sqlx::Row;

use super::{Store, StoreError};

/// How long a key is remembered.
pub const KEPT_FOR_SECONDS: i64 = 24 * 3600;
/// After this long an incomplete claim is assumed abandoned.
pub const ABANDONED_AFTER_SECONDS: i64 = 60;

/// The outcome of claiming a key.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// The key is new: run the request, then complete or release it.
    Claimed,
    /// The key was used with another request body.
    Mismatch,
    /// The first request with this key is still running.
    InFlight,
    /// The first request finished: replay its response.
    Replay {
        status: u16,
        location: Option<String>,
        body: Option<String>,
    },
}

impl Store {
    /// Claims `key` for a request whose body hashes to `request_hash`.
    pub async fn claim_idempotency_key(
        &self,
        user_id: &str,
        key: &str,
        request_hash: &str,
    ) -> Result<Claim, StoreError> {
        let _turn = self.write_turn().await;
        let now = chrono::Utc::now().timestamp();
        let mut tx = self.pool.begin().await?;
        // Writes first, so the transaction holds the write lock from the start.
        sqlx::query(
            "DELETE FROM idempotency_keys
             WHERE created_at < ?1
                OR (user_id = ?2 AND key = ?3 AND response_status IS NULL AND created_at < ?4)",
        )
        .bind(now - KEPT_FOR_SECONDS)
        .bind(user_id)
        .bind(key)
        .bind(now - ABANDONED_AFTER_SECONDS)
        .execute(&mut *tx)
        .await?;
        let claimed = sqlx::query(
            "INSERT INTO idempotency_keys (user_id, key, request_hash, created_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (user_id, key) DO NOTHING",
        )
        .bind(user_id)
        .bind(key)
        .bind(request_hash)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let claim = if claimed {
            Claim::Claimed
        } else {
            let row = sqlx::query(
                "SELECT request_hash, response_status, response_location, response_body
                 FROM idempotency_keys WHERE user_id = ? AND key = ?",
            )
            .bind(user_id)
            .bind(key)
            .fetch_one(&mut *tx)
            .await?;
            let stored_hash: String = row.try_get("request_hash")?;
            let status: Option<i64> = row.try_get("response_status")?;
            // In flight comes first: until the first request ends there is nothing to
            // compare a different body against but a conflict.
            match status {
                None => Claim::InFlight,
                _ if stored_hash != request_hash => Claim::Mismatch,
                Some(status) => Claim::Replay {
                    status: u16::try_from(status).unwrap_or(500),
                    location: row.try_get("response_location")?,
                    body: row.try_get("response_body")?,
                },
            }
        };
        tx.commit().await?;
        Ok(claim)
    }

    /// Forgets an incomplete claim, so that a retry of a failed request can run.
    pub async fn release_idempotency_key(
        &self,
        user_id: &str,
        key: &str,
    ) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        sqlx::query("DELETE FROM idempotency_keys WHERE user_id = ? AND key = ? AND response_status IS NULL")
            .bind(user_id)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
