//! The `users` table and the picture columns on it.
//!
//! Usernames and emails are unique case-insensitively (SQLite: `COLLATE NOCASE` columns;
//! PostgreSQL: unique indexes on `lower(...)`), so a sign-up race is settled by the
//! database, and [`super::super::error`] tells from the violated constraint which field
//! was taken.
//!
//! Deleting a user deletes what references them first (follows both ways, tweets,
//! Idempotency-Key records) in the same transaction, rather than through `ON DELETE
//! CASCADE`: the counters of the users on the other end of each edge move with it, and
//! the outbox gets the events of exactly the rows that went.

use std::collections::{BTreeMap, HashSet};

use async_trait::async_trait;
use uuid::Uuid;

use super::rows::{UserRow, user_columns};
use super::{Backend, QueryExt, Sql, SqlStore, json_list, outbox};
use crate::domain::events::{Event, Written};
use crate::infra::store::{
    DeletedUser, NewUserRecord, PictureRecord, StoreError, UserRecord, UserStore, now_millis,
};

/// The user with an email, compared case-insensitively through the index that makes
/// emails unique: SQLite's column is `COLLATE NOCASE`, PostgreSQL's index is on
/// `lower(email)`.
const USER_BY_EMAIL: Sql = Sql {
    sqlite: concat!(
        "SELECT ",
        user_columns!(),
        " FROM users u WHERE u.email = $1"
    ),
    postgres: concat!(
        "SELECT ",
        user_columns!(),
        " FROM users u WHERE lower(u.email) = lower($1)"
    ),
};

/// A user's picture key, the row locked on PostgreSQL so that of two concurrent changes
/// each returns the key the other replaced (NO KEY UPDATE, so that follows and tweets
/// referencing the user are not blocked). SQLite writers take turns instead.
const PICTURE_FOR_UPDATE: Sql = Sql {
    sqlite: "SELECT picture_key FROM users WHERE id = $1",
    postgres: "SELECT picture_key FROM users WHERE id = $1 FOR NO KEY UPDATE",
};

/// The user about to be deleted. On PostgreSQL FOR UPDATE conflicts with the KEY SHARE
/// lock that inserting a follow or a tweet takes on the user it references: one that
/// began first commits before the deletes (which see it), one that begins later waits and
/// then fails its foreign key, so no row is left referencing the user.
const USER_FOR_DELETE: Sql = Sql {
    sqlite: "SELECT picture_key FROM users WHERE id = $1",
    postgres: "SELECT picture_key FROM users WHERE id = $1 FOR UPDATE",
};

/// Moves counters by a JSON list of `{id, following, followers}`. PostgreSQL locks the
/// rows in id order first, the order follows and unfollows lock them in (follows.rs), so
/// that this meets them without deadlocking.
const UNCOUNT_EDGES: Sql = Sql {
    sqlite: "UPDATE users SET following_count = following_count - d.following,
                              follower_count = follower_count - d.followers
             FROM (SELECT unhex(value ->> 'id', '-') AS id, value ->> 'following' AS following,
                          value ->> 'followers' AS followers
                   FROM json_each($1)) AS d
             WHERE users.id = d.id",
    postgres: "WITH d AS (SELECT * FROM json_to_recordset($1::json)
                              AS d (id uuid, following bigint, followers bigint)),
                    locked AS MATERIALIZED (SELECT u.id FROM users u JOIN d USING (id)
                                            ORDER BY u.id FOR NO KEY UPDATE OF u)
               UPDATE users u SET following_count = u.following_count - d.following,
                                  follower_count = u.follower_count - d.followers
               FROM d JOIN locked USING (id)
               WHERE u.id = d.id",
};

#[async_trait]
impl<DB: Backend> UserStore for SqlStore<DB> {
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
        // One statement: a concurrent sign-up with the same name waits on the unique
        // index for the other to commit, then fails here, a StoreError::Conflict.
        let _turn = self.turn().await;
        Self::query(
            "INSERT INTO users (id, username, email, display_name, password_hash, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .arg(record.id)
        .arg(record.username.as_str())
        .arg(record.email.as_str())
        .arg(record.display_name.as_str())
        .arg(record.password_hash.as_str())
        .arg(record.created_at)
        .execute_on(&mut *self.conn().await?)
        .await?;
        Ok(record)
    }

    async fn user_by_id(&self, id: Uuid) -> Result<Option<UserRecord>, StoreError> {
        let sql = concat!("SELECT ", user_columns!(), " FROM users u WHERE u.id = $1");
        let row: Option<UserRow> = Self::query(sql)
            .arg(id)
            .fetch_optional_as(&mut *self.conn().await?)
            .await?;
        Ok(row.map(UserRecord::try_from).transpose()?)
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        let row: Option<UserRow> = Self::dialect(&USER_BY_EMAIL)
            .arg(email)
            .fetch_optional_as(&mut *self.conn().await?)
            .await?;
        Ok(row.map(UserRecord::try_from).transpose()?)
    }

    async fn set_picture(
        &self,
        user_id: Uuid,
        picture: &PictureRecord,
    ) -> Result<Option<String>, StoreError> {
        self.write(move |mut tx| async move {
            let old: Option<(Option<String>,)> = Self::dialect(&PICTURE_FOR_UPDATE)
                .arg(user_id)
                .fetch_optional_as(&mut *tx)
                .await?;
            Self::query(
                "UPDATE users SET picture_key = $1, picture_type = $2, picture_etag = $3,
                     picture_width = $4, picture_height = $5, picture_size = $6
                 WHERE id = $7",
            )
            .arg(picture.key.as_str())
            .arg(picture.content_type.as_str())
            .arg(picture.etag.as_str())
            .arg(picture.width)
            .arg(picture.height)
            .arg(picture.size)
            .arg(user_id)
            .execute_on(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(old.and_then(|(key,)| key))
        })
        .await
    }

    async fn picture_keys(&self) -> Result<HashSet<String>, StoreError> {
        let keys: Vec<(String,)> =
            Self::query("SELECT picture_key FROM users WHERE picture_key IS NOT NULL")
                .fetch_all_as(&mut *self.conn().await?)
                .await?;
        Ok(keys.into_iter().map(|(key,)| key).collect())
    }

    async fn delete_user(&self, id: Uuid) -> Result<Written<Option<DeletedUser>>, StoreError> {
        self.write(move |mut tx| async move {
            let user: Option<(Option<String>,)> = Self::dialect(&USER_FOR_DELETE)
                .arg(id)
                .fetch_optional_as(&mut *tx)
                .await?;
            let Some((picture_key,)) = user else {
                return Ok(Written::unchanged(None));
            };
            // The counters move for exactly the edges this transaction deleted: an
            // unfollow racing it deletes each edge once, and whichever loses sees no row.
            let follower_ids = ids(Self::query(
                "DELETE FROM follows WHERE followee_id = $1 RETURNING follower_id",
            )
            .arg(id)
            .fetch_all_as(&mut *tx)
            .await?);
            let followee_ids = ids(Self::query(
                "DELETE FROM follows WHERE follower_id = $1 RETURNING followee_id",
            )
            .arg(id)
            .fetch_all_as(&mut *tx)
            .await?);
            let deltas = edge_deltas(&follower_ids, &followee_ids);
            if !deltas.is_empty() {
                Self::dialect(&UNCOUNT_EDGES)
                    .arg(json_list(&deltas)?)
                    .execute_on(&mut *tx)
                    .await?;
            }
            let tweet_ids = ids(Self::query(
                "DELETE FROM tweets WHERE author_id = $1 RETURNING id",
            )
            .arg(id)
            .fetch_all_as(&mut *tx)
            .await?);
            for sql in [
                "DELETE FROM idempotency_keys WHERE user_id = $1",
                "DELETE FROM users WHERE id = $1",
            ] {
                Self::query(sql).arg(id).execute_on(&mut *tx).await?;
            }
            let deleted = DeletedUser {
                id,
                tweet_ids,
                follower_ids,
                followee_ids,
                picture_key,
            };
            let events = Event::of_deleted_user(&deleted);
            for event in &events {
                outbox::add(&mut tx, event).await?;
            }
            tx.commit().await?;
            Ok(Written {
                outcome: Some(deleted),
                events,
            })
        })
        .await
    }
}

fn ids(rows: Vec<(Uuid,)>) -> Vec<Uuid> {
    rows.into_iter().map(|(id,)| id).collect()
}

/// How much each user's counters go down: one from the `following_count` of each of
/// `followers` and from the `follower_count` of each of `followees` (a user in both loses
/// one of each), in id order.
#[derive(serde::Serialize)]
struct EdgeDelta {
    id: Uuid,
    following: i64,
    followers: i64,
}

fn edge_deltas(followers: &[Uuid], followees: &[Uuid]) -> Vec<EdgeDelta> {
    let mut deltas: BTreeMap<Uuid, (i64, i64)> = BTreeMap::new();
    for id in followers {
        deltas.entry(*id).or_default().0 += 1;
    }
    for id in followees {
        deltas.entry(*id).or_default().1 += 1;
    }
    deltas
        .into_iter()
        .map(|(id, (following, followers))| EdgeDelta {
            id,
            following,
            followers,
        })
        .collect()
}
