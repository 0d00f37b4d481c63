//! The `users` table and the picture columns on it.
//!
//! Usernames and emails are unique case-insensitively through unique indexes on
//! `lower(...)` (see `migrations/postgres/0001_users.sql`), so a sign-up race between two
//! instances is settled by the index, and the name of the violated index says which field
//! was taken. Email lookups compare `lower(email) = lower($1)`, the indexed expression.
//!
//! Deleting a user deletes what references them first (follows both ways, tweets,
//! Idempotency-Key records) in the same transaction, rather than through `ON DELETE
//! CASCADE`: the counters of the users on the other end of each edge move with it, and
//! the outbox gets the events of exactly the rows that went.

use std::collections::{BTreeMap, HashSet};

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::{PgConnection, PgRow};
use uuid::Uuid;

use super::{PgStore, outbox, retry};
use crate::domain::events::Event;
use crate::infra::store::{
    DeletedUser, NewUserRecord, PictureRecord, StoreError, UserRecord, UserStore, now_millis,
};

/// The columns [`UserRecord`] is read from, as `u.<column>` so that joins can use them
/// (a macro, so that `concat!` builds whole statements at compile time).
macro_rules! user_columns {
    () => {
        "u.id, u.username, u.email, u.display_name, u.password_hash, u.created_at, \
         u.follower_count, u.following_count, u.tweet_count, u.picture_key, u.picture_type, \
         u.picture_etag, u.picture_width, u.picture_height, u.picture_size"
    };
}
pub(super) use user_columns;

#[async_trait]
impl UserStore for PgStore {
    async fn create_user(&self, new: NewUserRecord) -> Result<UserRecord, StoreError> {
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
        // One statement, so no transaction to retry: a concurrent sign-up with the same
        // name waits on the unique index for the other to commit, then fails here.
        let inserted = sqlx::query(
            "INSERT INTO users (id, username, email, display_name, password_hash, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(record.id)
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
                // The index names (users_email_lower_key, users_username_lower_key) say
                // which value was taken; the message text is not stable across locales.
                match db.constraint() {
                    Some(name) if name.contains("email") => {
                        Err(StoreError::Conflict { field: "email" })
                    }
                    Some(name) if name.contains("username") => {
                        Err(StoreError::Conflict { field: "username" })
                    }
                    // The primary key: a repeated UUIDv7 would be a bug, not a conflict.
                    _ => Err(sqlx::Error::Database(db).into()),
                }
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn user_by_id(&self, id: Uuid) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users u WHERE u.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        // lower(u.email) is the expression of the unique index, so this is an index seek.
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users u WHERE lower(u.email) = lower($1)"
        ))
        .bind(email)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    async fn set_picture(
        &self,
        user_id: Uuid,
        picture: &PictureRecord,
    ) -> Result<Option<String>, StoreError> {
        let pool = &self.pool;
        retry(move || async move {
            let mut tx = pool.begin().await?;
            // Locked, so that of two concurrent changes each returns the key the other
            // replaced, and no picture object is left without its deletion. NO KEY
            // UPDATE, so that follows and tweets referencing the user are not blocked.
            let old: Option<String> =
                sqlx::query("SELECT picture_key FROM users WHERE id = $1 FOR NO KEY UPDATE")
                    .bind(user_id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|row| row.try_get("picture_key"))
                    .transpose()?
                    .flatten();
            sqlx::query(
                "UPDATE users SET picture_key = $1, picture_type = $2, picture_etag = $3,
                     picture_width = $4, picture_height = $5, picture_size = $6
                 WHERE id = $7",
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
        })
        .await
    }

    async fn picture_keys(&self) -> Result<HashSet<String>, StoreError> {
        let rows = sqlx::query("SELECT picture_key FROM users WHERE picture_key IS NOT NULL")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|row| row.try_get("picture_key"))
            .collect::<Result<_, _>>()?)
    }

    async fn delete_user(&self, id: Uuid) -> Result<Option<DeletedUser>, StoreError> {
        let pool = &self.pool;
        retry(move || async move {
            let mut tx = pool.begin().await?;
            // FOR UPDATE conflicts with the KEY SHARE lock that inserting a follow or a
            // tweet takes on the user it references: one that began first commits before
            // the deletes below run (and they see it), one that begins later waits and then
            // fails its foreign key. So no row can be left referencing the user.
            let Some(user) = sqlx::query("SELECT picture_key FROM users WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
            else {
                return Ok(None);
            };
            let picture_key: Option<String> = user.try_get("picture_key")?;
            // The counters move for exactly the edges this transaction deleted: an unfollow
            // racing it deletes each edge once, and whichever loses sees no row.
            let follower_ids: Vec<Uuid> = sqlx::query_scalar(
                "DELETE FROM follows WHERE followee_id = $1 RETURNING follower_id",
            )
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
            let followee_ids: Vec<Uuid> = sqlx::query_scalar(
                "DELETE FROM follows WHERE follower_id = $1 RETURNING followee_id",
            )
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
            uncount_edges(&mut tx, &follower_ids, &followee_ids).await?;
            let tweet_ids: Vec<Uuid> =
                sqlx::query_scalar("DELETE FROM tweets WHERE author_id = $1 RETURNING id")
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await?;
            sqlx::query("DELETE FROM idempotency_keys WHERE user_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM users WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            let deleted = DeletedUser {
                id,
                tweet_ids,
                follower_ids,
                followee_ids,
                picture_key,
            };
            for event in Event::of_deleted_user(&deleted) {
                outbox::add(&mut tx, &event).await?;
            }
            tx.commit().await?;
            Ok(Some(deleted))
        })
        .await
    }
}

/// Takes one from the `following_count` of each of `followers` and from the
/// `follower_count` of each of `followees` (a user in both loses one of each). The rows
/// are locked in id order first, the order follows and unfollows lock them in
/// (follows.rs), so that this meets them without deadlocking; one that slips through
/// re-runs the transaction.
async fn uncount_edges(
    conn: &mut PgConnection,
    followers: &[Uuid],
    followees: &[Uuid],
) -> Result<(), sqlx::Error> {
    let mut deltas: BTreeMap<Uuid, (i64, i64)> = BTreeMap::new();
    for id in followers {
        deltas.entry(*id).or_default().0 += 1;
    }
    for id in followees {
        deltas.entry(*id).or_default().1 += 1;
    }
    if deltas.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = deltas.keys().copied().collect();
    let following: Vec<i64> = deltas.values().map(|d| d.0).collect();
    let followers: Vec<i64> = deltas.values().map(|d| d.1).collect();
    sqlx::query("SELECT id FROM users WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE")
        .bind(&ids)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "UPDATE users u SET following_count = u.following_count - d.following,
                            follower_count = u.follower_count - d.followers
         FROM unnest($1::uuid[], $2::bigint[], $3::bigint[]) AS d (id, following, followers)
         WHERE u.id = d.id",
    )
    .bind(&ids)
    .bind(&following)
    .bind(&followers)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A user from the columns of [`user_columns`].
pub(super) fn user_from_row(row: &PgRow) -> Result<UserRecord, sqlx::Error> {
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
