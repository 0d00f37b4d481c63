//! The `follows` table, and the follower/following counters it keeps exact.

use async_trait::async_trait;
use sqlx::Row;
use uuid::Uuid;

use super::users::{user_columns, user_from_row};
use super::{SqliteStore, outbox, text, uuid};
use crate::domain::events::Event;
use crate::infra::store::{EdgeChange, FollowStore, Page, StoreError, UserRecord, now_millis};

#[async_trait]
impl FollowStore for SqliteStore {
    async fn follow(&self, follower: Uuid, followee: Uuid) -> Result<EdgeChange, StoreError> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        // The write comes first so the transaction takes the write lock at once (and waits
        // for it) instead of failing to upgrade a read lock under contention.
        let inserted = sqlx::query(
            "INSERT INTO follows (follower_id, followee_id, created_at) VALUES (?, ?, ?)
             ON CONFLICT (follower_id, followee_id) DO NOTHING",
        )
        .bind(text(follower))
        .bind(text(followee))
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
        let followed = Event::UserFollowed {
            follower_id: follower,
            followee_id: followee,
        };
        outbox::add(&mut tx, &followed).await?;
        tx.commit().await?;
        Ok(EdgeChange::Changed)
    }

    async fn unfollow(&self, follower: Uuid, followee: Uuid) -> Result<EdgeChange, StoreError> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query("DELETE FROM follows WHERE follower_id = ? AND followee_id = ?")
            .bind(text(follower))
            .bind(text(followee))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Ok(EdgeChange::Unchanged);
        }
        adjust_counts(&mut tx, follower, followee, -1).await?;
        let unfollowed = Event::UserUnfollowed {
            follower_id: follower,
            followee_id: followee,
        };
        outbox::add(&mut tx, &unfollowed).await?;
        tx.commit().await?;
        Ok(EdgeChange::Changed)
    }

    async fn followers(
        &self,
        user: Uuid,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Page<UserRecord, i64>, StoreError> {
        self.edge_page(FOLLOWERS_SQL, user, before, limit).await
    }

    async fn following(
        &self,
        user: Uuid,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Page<UserRecord, i64>, StoreError> {
        self.edge_page(FOLLOWING_SQL, user, before, limit).await
    }

    async fn follower_ids(&self, user: Uuid, limit: u32) -> Result<Vec<Uuid>, StoreError> {
        let rows = sqlx::query("SELECT follower_id FROM follows WHERE followee_id = ? LIMIT ?")
            .bind(text(user))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|row| uuid(row, "follower_id"))
            .collect::<Result<_, _>>()?)
    }

    async fn followee_ids(&self, user: Uuid) -> Result<Vec<Uuid>, StoreError> {
        let rows = sqlx::query("SELECT followee_id FROM follows WHERE follower_id = ?")
            .bind(text(user))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|row| uuid(row, "followee_id"))
            .collect::<Result<_, _>>()?)
    }
}

/// `?1` user, `?2` edge cursor (exclusive), `?3` page size + 1.
const FOLLOWERS_SQL: &str = concat!(
    "SELECT ",
    user_columns!(),
    ", f.id AS edge FROM follows f JOIN users u ON u.id = f.follower_id
     WHERE f.followee_id = ?1 AND f.id < ?2 ORDER BY f.id DESC LIMIT ?3"
);
/// Like [`FOLLOWERS_SQL`], the other end of the edges.
const FOLLOWING_SQL: &str = concat!(
    "SELECT ",
    user_columns!(),
    ", f.id AS edge FROM follows f JOIN users u ON u.id = f.followee_id
     WHERE f.follower_id = ?1 AND f.id < ?2 ORDER BY f.id DESC LIMIT ?3"
);

impl SqliteStore {
    async fn edge_page(
        &self,
        sql: &'static str,
        user: Uuid,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Page<UserRecord, i64>, StoreError> {
        let rows = sqlx::query(sql)
            .bind(text(user))
            .bind(before.unwrap_or(i64::MAX))
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.pool)
            .await?;
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            items.push((user_from_row(row)?, row.try_get::<i64, _>("edge")?));
        }
        Ok(Page::from_overfetch(items, limit))
    }
}

async fn adjust_counts(
    tx: &mut sqlx::SqliteConnection,
    follower: Uuid,
    followee: Uuid,
    delta: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE users SET following_count = following_count + ? WHERE id = ?")
        .bind(delta)
        .bind(text(follower))
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE users SET follower_count = follower_count + ? WHERE id = ?")
        .bind(delta)
        .bind(text(followee))
        .execute(&mut *tx)
        .await?;
    Ok(())
}
