//! The `follows` table, and the follower/following counters it keeps exact.

use sqlx::Row;

use super::users::{USER_COLUMNS, from_row, now_millis};
use super::{Page, Store, StoreError, UserRecord};

/// What a follow or unfollow did.
#[derive(Debug, PartialEq, Eq)]
pub enum EdgeChange {
    Changed,
    Unchanged,
    /// The user to follow does not exist.
    UnknownUser,
}

impl Store {
    /// Makes `follower` follow `followee`. Idempotent; counters move only on a change.
    pub async fn follow(&self, follower: &str, followee: &str) -> Result<EdgeChange, StoreError> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        // The write comes first so the transaction takes the write lock at once (and waits
        // for it) instead of failing to upgrade a read lock under contention.
        let inserted = sqlx::query(
            "INSERT INTO follows (follower_id, followee_id, created_at) VALUES (?, ?, ?)
             ON CONFLICT (follower_id, followee_id) DO NOTHING",
        )
        .bind(follower)
        .bind(followee)
        .bind(now_millis())
        .execute(&mut *tx)
        .await;
        let inserted = match inserted {
            Ok(result) => result.rows_affected() == 1,
            Err(sqlx::Error::Database(db)) if db.is_foreign_key_violation() => {
                return Ok(EdgeChange::UnknownUser);
            }
            Err(error) => return Err(error.into()),
        };
        if !inserted {
            return Ok(EdgeChange::Unchanged);
        }
        adjust_counts(&mut tx, follower, followee, 1).await?;
        tx.commit().await?;
        Ok(EdgeChange::Changed)
    }

    /// Makes `follower` stop following `followee`. Idempotent.
    pub async fn unfollow(&self, follower: &str, followee: &str) -> Result<EdgeChange, StoreError> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query("DELETE FROM follows WHERE follower_id = ? AND followee_id = ?")
            .bind(follower)
            .bind(followee)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Ok(EdgeChange::Unchanged);
        }
        adjust_counts(&mut tx, follower, followee, -1).await?;
        tx.commit().await?;
        Ok(EdgeChange::Changed)
    }

    /// The users who follow `user`, most recent follow first, after the edge `before`.
    pub async fn followers(
        &self,
        user: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Page<UserRecord, i64>, StoreError> {
        self.edge_page("follower_id", "followee_id", user, before, limit)
            .await
    }

    /// The users `user` follows, most recent follow first, after the edge `before`.
    pub async fn following(
        &self,
        user: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Page<UserRecord, i64>, StoreError> {
        self.edge_page("followee_id", "follower_id", user, before, limit)
            .await
    }

    /// One page of the users at the `listed` end of the edges whose `owner` end is `user`.
    async fn edge_page(
        &self,
        listed: &'static str,
        owner: &'static str,
        user: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Page<UserRecord, i64>, StoreError> {
        let columns = USER_COLUMNS
            .split(", ")
            .map(|c| format!("u.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {columns}, f.id AS edge FROM follows f JOIN users u ON u.id = f.{listed}
             WHERE f.{owner} = ? AND f.id < ? ORDER BY f.id DESC LIMIT ?"
        );
        let rows = sqlx::query(&sql)
            .bind(user)
            .bind(before.unwrap_or(i64::MAX))
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.pool)
            .await?;
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            items.push((from_row(row)?, row.try_get::<i64, _>("edge")?));
        }
        Ok(Page::from_overfetch(items, limit))
    }
}

async fn adjust_counts(
    tx: &mut sqlx::SqliteConnection,
    follower: &str,
    followee: &str,
    delta: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE users SET following_count = following_count + ? WHERE id = ?")
        .bind(delta)
        .bind(follower)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE users SET follower_count = follower_count + ? WHERE id = ?")
        .bind(delta)
        .bind(followee)
        .execute(&mut *tx)
        .await?;
    Ok(())
}
