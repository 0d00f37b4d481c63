//! The `users` table and the picture columns on it.
//!
//! Deleting a user deletes what references them first (follows both ways, tweets,
//! Idempotency-Key records) in the same transaction, rather than through `ON DELETE
//! CASCADE`: the counters of the users on the other end of each edge move with it, and
//! the outbox gets the events of exactly the rows that went.

use std::collections::HashSet;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use super::{SqliteStore, outbox, text, uuid};
use crate::domain::events::Event;
use crate::infra::store::{
    DeletedUser, NewUserRecord, PictureRecord, StoreError, UserRecord, UserStore, now_millis,
};

/// The columns [`UserRecord`] is read from, as `u.<column>` so that joins can use them
/// (a macro, so that `concat!` can build whole statements at compile time).
macro_rules! user_columns {
    () => {
        "u.id, u.username, u.email, u.display_name, u.password_hash, u.created_at, \
         u.follower_count, u.following_count, u.tweet_count, u.picture_key, u.picture_type, \
         u.picture_etag, u.picture_width, u.picture_height, u.picture_size"
    };
}
pub(super) use user_columns;

#[async_trait]
impl UserStore for SqliteStore {
    async fn create_user(&self, new: NewUserRecord) -> Result<UserRecord, StoreError> {
        let _turn = self.write_turn().await;
        let record = UserRecord {
            id: Uuid::now_v7(),
            username: new.username,
            email: new.email,
            display_name: new.display_name,
            password_hash: new.password_hash,
            created_at: now_millis(),
            follower_count: 0,
            following_count: 0,
            tweet_count: 0,
            picture: None,
        };
        let inserted = sqlx::query(
            "INSERT INTO users (id, username, email, display_name, password_hash, created_at)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(text(record.id))
        .bind(&record.username)
        .bind(&record.email)
        .bind(&record.display_name)
        .bind(&record.password_hash)
        .bind(record.created_at)
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(record),
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                // SQLite names the column in the message: "UNIQUE constraint failed: users.email".
                let field = if db.message().contains("users.email") {
                    "email"
                } else {
                    "username"
                };
                Err(StoreError::Conflict { field })
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn user_by_id(&self, id: Uuid) -> Result<Option<UserRecord>, StoreError> {
        let sql = concat!("SELECT ", user_columns!(), " FROM users u WHERE u.id = ?");
        let row = sqlx::query(sql)
            .bind(text(id))
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| user_from_row(&row)).transpose()?)
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        // The column is COLLATE NOCASE, so this compares case-insensitively.
        let sql = concat!(
            "SELECT ",
            user_columns!(),
            " FROM users u WHERE u.email = ?"
        );
        let row = sqlx::query(sql)
            .bind(email)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| user_from_row(&row)).transpose()?)
    }

    async fn set_picture(
        &self,
        user_id: Uuid,
        picture: &PictureRecord,
    ) -> Result<Option<String>, StoreError> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        let old: Option<String> = sqlx::query("SELECT picture_key FROM users WHERE id = ?")
            .bind(text(user_id))
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| row.try_get("picture_key"))
            .transpose()?
            .flatten();
        sqlx::query(
            "UPDATE users SET picture_key = ?, picture_type = ?, picture_etag = ?, picture_width = ?,
                 picture_height = ?, picture_size = ? WHERE id = ?",
        )
        .bind(&picture.key)
        .bind(&picture.content_type)
        .bind(&picture.etag)
        .bind(picture.width)
        .bind(picture.height)
        .bind(picture.size)
        .bind(text(user_id))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(old)
    }

    async fn picture_keys(&self) -> Result<HashSet<String>, StoreError> {
        let rows = sqlx::query("SELECT picture_key FROM users WHERE picture_key IS NOT NULL")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| row.try_get("picture_key").map_err(StoreError::from))
            .collect()
    }

    async fn delete_user(&self, id: Uuid) -> Result<Option<DeletedUser>, StoreError> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        // Writes first, so that the transaction takes the write lock at once (see
        // follows.rs). The counters on the other end move for exactly the edges deleted.
        let follower_ids = ids(
            sqlx::query("DELETE FROM follows WHERE followee_id = ? RETURNING follower_id")
                .bind(text(id))
                .fetch_all(&mut *tx)
                .await?,
            "follower_id",
        )?;
        let followee_ids = ids(
            sqlx::query("DELETE FROM follows WHERE follower_id = ? RETURNING followee_id")
                .bind(text(id))
                .fetch_all(&mut *tx)
                .await?,
            "followee_id",
        )?;
        for (others, sql) in [
            (
                &follower_ids,
                "UPDATE users SET following_count = following_count - 1 WHERE id = ?",
            ),
            (
                &followee_ids,
                "UPDATE users SET follower_count = follower_count - 1 WHERE id = ?",
            ),
        ] {
            for other in others {
                sqlx::query(sql)
                    .bind(text(*other))
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let tweet_ids = ids(
            sqlx::query("DELETE FROM tweets WHERE author_id = ? RETURNING id")
                .bind(text(id))
                .fetch_all(&mut *tx)
                .await?,
            "id",
        )?;
        sqlx::query("DELETE FROM idempotency_keys WHERE user_id = ?")
            .bind(text(id))
            .execute(&mut *tx)
            .await?;
        let Some(user) = sqlx::query("DELETE FROM users WHERE id = ? RETURNING picture_key")
            .bind(text(id))
            .fetch_optional(&mut *tx)
            .await?
        else {
            // No such user (so nothing else was deleted either); dropping the transaction
            // rolls it back.
            return Ok(None);
        };
        let deleted = DeletedUser {
            id,
            tweet_ids,
            follower_ids,
            followee_ids,
            picture_key: user.try_get("picture_key")?,
        };
        for event in Event::of_deleted_user(&deleted) {
            outbox::add(&mut tx, &event).await?;
        }
        tx.commit().await?;
        Ok(Some(deleted))
    }
}

/// The UUIDs in `column` of `rows`.
fn ids(rows: Vec<SqliteRow>, column: &str) -> Result<Vec<Uuid>, sqlx::Error> {
    rows.iter().map(|row| uuid(row, column)).collect()
}

/// A user from a row that has the [`user_columns`].
pub(super) fn user_from_row(row: &SqliteRow) -> Result<UserRecord, sqlx::Error> {
    Ok(UserRecord {
        id: uuid(row, "id")?,
        username: row.try_get("username")?,
        email: row.try_get("email")?,
        display_name: row.try_get("display_name")?,
        password_hash: row.try_get("password_hash")?,
        created_at: row.try_get("created_at")?,
        follower_count: row.try_get("follower_count")?,
        following_count: row.try_get("following_count")?,
        tweet_count: row.try_get("tweet_count")?,
        picture: match row.try_get::<Option<String>, _>("picture_key")? {
            None => None,
            Some(key) => Some(PictureRecord {
                key,
                content_type: row.try_get("picture_type")?,
                etag: row.try_get("picture_etag")?,
                width: row.try_get("picture_width")?,
                height: row.try_get("picture_height")?,
                size: row.try_get("picture_size")?,
            }),
        },
    })
}
