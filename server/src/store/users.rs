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
}

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
        let record = UserRecord {
            id: uuid::Uuid::now_v7().to_string(),
            username: new.username,
            email: new.email,
            display_name: new.display_name,
            password_hash: new.password_hash,
            // Millisecond precision, so that what is returned equals what is read back.
            created_at: DateTime::from_timestamp_millis(Utc::now().timestamp_millis())
                .unwrap_or_else(Utc::now),
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
        let row = sqlx::query(
            "SELECT id, username, email, display_name, password_hash, created_at
             FROM users WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| from_row(&row)).transpose()
    }

    /// The user with this email, compared case-insensitively.
    pub async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, username, email, display_name, password_hash, created_at
             FROM users WHERE email = ?",
        )
        .bind(email)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| from_row(&row)).transpose()
    }
}

fn from_row(row: &sqlx::sqlite::SqliteRow) -> Result<UserRecord, StoreError> {
    Ok(UserRecord {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        email: row.try_get("email")?,
        display_name: row.try_get("display_name")?,
        password_hash: row.try_get("password_hash")?,
        created_at: row.try_get("created_at")?,
    })
}
