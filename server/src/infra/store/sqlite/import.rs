//! Bulk loading for the benchmark data generator: one transaction per batch, counters
//! recomputed once at the end.

use async_trait::async_trait;
use uuid::Uuid;

use super::tweets::insert_row;
use super::{SqliteStore, text};
use crate::infra::store::{ImportStore, NewUserRecord, StoreError, TweetRecord, now_millis};

#[async_trait]
impl ImportStore for SqliteStore {
    async fn import_users(&self, users: &[(Uuid, NewUserRecord)]) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        let now = now_millis();
        for (id, user) in users {
            sqlx::query(
                "INSERT INTO users (id, username, email, display_name, password_hash, created_at)
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(text(*id))
            .bind(&user.username)
            .bind(&user.email)
            .bind(&user.display_name)
            .bind(&user.password_hash)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn import_follows(&self, edges: &[(Uuid, Uuid)]) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        let now = now_millis();
        for (follower, followee) in edges {
            sqlx::query(
                "INSERT INTO follows (follower_id, followee_id, created_at) VALUES (?, ?, ?)
                 ON CONFLICT (follower_id, followee_id) DO NOTHING",
            )
            .bind(text(*follower))
            .bind(text(*followee))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn import_tweets(&self, tweets: &[TweetRecord]) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        for tweet in tweets {
            insert_row(&mut tx, tweet).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn recount(&self) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "UPDATE users SET
                follower_count = (SELECT COUNT(*) FROM follows WHERE followee_id = users.id),
                following_count = (SELECT COUNT(*) FROM follows WHERE follower_id = users.id),
                tweet_count = (SELECT COUNT(*) FROM tweets WHERE author_id = users.id)",
        )
        .execute(&self.pool)
        .await?;
        sqlx::query("ANALYZE").execute(&self.pool).await?;
        // Fold the WAL into the database file, so that the file alone is a complete copy.
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
