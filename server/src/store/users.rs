//! The `users` table.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Store, StoreError};

/// A user as stored.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub id: String,
    pub username: String,
    pub email: String,
    pub display_name: String,
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
    pub follower_count: i64,
    pub following_count: i64,
    pub tweet_count: i64,
    pub picture: Option<PictureRecord>,
}

/// A stored profile picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PictureRecord {
    /// The object key in the picture store.
    pub key: String,
    pub content_type: String,
    /// A strong ETag, quotes included.
    pub etag: String,
    pub width: i64,
    pub height: i64,
    pub size: i64,
}

/// The columns [`UserRecord`] is read from.
pub(super) const USER_COLUMNS: &str = "id, username, email, display_name, password_hash, created_at, \
     follower_count, following_count, tweet_count, picture_key, picture_type, picture_etag, \
     picture_width, picture_height, picture_size";

/// What sign-up stores.
#[derive(Debug)]
pub struct NewUserRecord {
    pub username: String,
    pub email: String,
    pub display_name: String,
    pub password_hash: String,
}

impl Store {
    /// Inserts a user; a taken username or email is a [`StoreError::Conflict`] naming it.
    pub async fn create_user(&self, new: NewUserRecord) -> Result<UserRecord, StoreError> {
        let _turn = self.write_turn().await;
        let record = UserRecord {
            id: uuid::Uuid::now_v7().to_string(),
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
        .bind(&record.id)
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

    /// The user with this id.
    pub async fn user_by_id(&self, id: &str) -> Result<Option<UserRecord>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| from_row(&row)).transpose()
    }

    /// The user with this email, compared case-insensitively.
    pub async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE email = ?");
        let row = sqlx::query(&sql)
            .bind(email)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| from_row(&row)).transpose()
    }
}

/// Now, to the millisecond, so that what is returned equals what is read back.
pub(super) fn now_millis() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap_or_else(Utc::now)
}

pub(super) fn from_row(row: &sqlx::sqlite::SqliteRow) -> Result<UserRecord, StoreError> {
    Ok(UserRecord {
        id: row.try_get("id")?,
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

impl Store {
    /// Points a user at a new picture; returns the key of the one it replaces.
    pub async fn set_picture(
        &self,
        user_id: &str,
        picture: &PictureRecord,
    ) -> Result<Option<String>, StoreError> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        let old: Option<String> = sqlx::query("SELECT picture_key FROM users WHERE id = ?")
            .bind(user_id)
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
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(old)
    }

    /// Every picture object a user points at, for the orphan sweep.
    pub async fn picture_keys(&self) -> Result<std::collections::HashSet<String>, StoreError> {
        let rows = sqlx::query("SELECT picture_key FROM users WHERE picture_key IS NOT NULL")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| row.try_get("picture_key").map_err(StoreError::from))
            .collect()
    }
}
