//! The `follows` table, and the follower/following counters it keeps exact.
//!
//! A follow inserts its edge with `ON CONFLICT DO NOTHING` and moves both counters only
//! when the edge is new, in the same transaction, so the counters stay exact however
//! many requests (or instances) follow and unfollow at once: a duplicate follow waits for
//! the first on the unique index and then changes nothing. The unknown user is the
//! foreign key's verdict, not a check before the insert, which another transaction could
//! outdate.
//!
//! "A follows B" and "B follows A" at once both update the rows of A and B. Each
//! transaction updates the two rows in id order, so that on PostgreSQL neither can hold
//! one row while waiting for the other's; a deadlock that slips through anyway re-runs the
//! whole transaction ([`SqlStore::write`]).

use async_trait::async_trait;
use sqlx::Transaction;
use uuid::Uuid;

use super::rows::{EdgeRow, user_columns};
use super::{Backend, QueryExt, SqlStore, outbox, overfetch};
use crate::domain::events::{Event, Written};
use crate::infra::store::error::is_foreign_key_violation;
use crate::infra::store::{EdgeChange, FollowStore, Page, StoreError, UserRecord, now_millis};

/// `$1` user, `$2` edge cursor (exclusive), `$3` row count. Through follows_by_followee
/// (followee_id, id), read backwards: no sort.
const FOLLOWERS_SQL: &str = concat!(
    "SELECT ",
    user_columns!(),
    ", f.id AS edge FROM follows f JOIN users u ON u.id = f.follower_id
     WHERE f.followee_id = $1 AND f.id < $2 ORDER BY f.id DESC LIMIT $3"
);
/// Like [`FOLLOWERS_SQL`], the other end of the edges, through follows_by_follower.
const FOLLOWING_SQL: &str = concat!(
    "SELECT ",
    user_columns!(),
    ", f.id AS edge FROM follows f JOIN users u ON u.id = f.followee_id
     WHERE f.follower_id = $1 AND f.id < $2 ORDER BY f.id DESC LIMIT $3"
);

#[async_trait]
impl<DB: Backend> FollowStore for SqlStore<DB> {
    async fn follow(
        &self,
        follower: Uuid,
        followee: Uuid,
    ) -> Result<Written<EdgeChange>, StoreError> {
        self.write(move |mut tx| async move {
            let inserted = Self::query(
                "INSERT INTO follows (follower_id, followee_id, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT (follower_id, followee_id) DO NOTHING",
            )
            .arg(follower)
            .arg(followee)
            .arg(now_millis())
            .execute_on(&mut *tx)
            .await;
            let inserted = match inserted {
                Ok(rows) => rows == 1,
                // Dropping the transaction rolls it back.
                Err(error) if is_foreign_key_violation(&error) => {
                    return Ok(Written::unchanged(EdgeChange::UnknownUser));
                }
                Err(error) => return Err(error),
            };
            if !inserted {
                return Ok(Written::unchanged(EdgeChange::Unchanged));
            }
            adjust_counts(&mut tx, follower, followee, 1).await?;
            let followed = Event::UserFollowed {
                follower_id: follower,
                followee_id: followee,
            };
            outbox::add(&mut tx, &followed).await?;
            tx.commit().await?;
            Ok(Written::with(EdgeChange::Changed, followed))
        })
        .await
    }

    async fn unfollow(
        &self,
        follower: Uuid,
        followee: Uuid,
    ) -> Result<Written<EdgeChange>, StoreError> {
        self.write(move |mut tx| async move {
            // A concurrent unfollow of the same edge waits for this row (PostgreSQL) or
            // its turn (SQLite), then finds the row gone: the counters move once.
            let deleted =
                Self::query("DELETE FROM follows WHERE follower_id = $1 AND followee_id = $2")
                    .arg(follower)
                    .arg(followee)
                    .execute_on(&mut *tx)
                    .await?;
            if deleted == 0 {
                return Ok(Written::unchanged(EdgeChange::Unchanged));
            }
            adjust_counts(&mut tx, follower, followee, -1).await?;
            let unfollowed = Event::UserUnfollowed {
                follower_id: follower,
                followee_id: followee,
            };
            outbox::add(&mut tx, &unfollowed).await?;
            tx.commit().await?;
            Ok(Written::with(EdgeChange::Changed, unfollowed))
        })
        .await
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
        let rows: Vec<(Uuid,)> =
            Self::query("SELECT follower_id FROM follows WHERE followee_id = $1 LIMIT $2")
                .arg(user)
                .arg(i64::from(limit))
                .fetch_all_as(&mut *self.conn().await?)
                .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    async fn followee_ids(&self, user: Uuid) -> Result<Vec<Uuid>, StoreError> {
        let rows: Vec<(Uuid,)> =
            Self::query("SELECT followee_id FROM follows WHERE follower_id = $1")
                .arg(user)
                .fetch_all_as(&mut *self.conn().await?)
                .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }
}

impl<DB: Backend> SqlStore<DB> {
    /// One page of users by `sql`, newest edge first, with the edge id as the cursor.
    async fn edge_page(
        &self,
        sql: &'static str,
        user: Uuid,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Page<UserRecord, i64>, StoreError> {
        // Edge ids start at 1, so i64::MAX is past every edge: a first page needs no
        // other query.
        let rows: Vec<EdgeRow> = Self::query(sql)
            .arg(user)
            .arg(before.unwrap_or(i64::MAX))
            .arg(overfetch(limit))
            .fetch_all_as(&mut *self.conn().await?)
            .await?;
        let items = rows
            .into_iter()
            .map(|row| Ok((UserRecord::try_from(row.user)?, row.edge)))
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(Page::from_overfetch(items, limit))
    }
}

/// Moves the follower's following_count and the followee's follower_count by `delta`,
/// updating the two rows in id order (the order uuid values compare in, in Rust and in
/// both databases), so that two transactions on the same pair lock them in the same
/// order and cannot deadlock.
async fn adjust_counts<DB: Backend>(
    tx: &mut Transaction<'static, DB>,
    follower: Uuid,
    followee: Uuid,
    delta: i64,
) -> Result<(), sqlx::Error> {
    const FOLLOWING: &str = "UPDATE users SET following_count = following_count + $2 WHERE id = $1";
    const FOLLOWER: &str = "UPDATE users SET follower_count = follower_count + $2 WHERE id = $1";
    let mut updates = [(follower, FOLLOWING), (followee, FOLLOWER)];
    updates.sort_by_key(|(id, _)| *id);
    for (id, sql) in updates {
        SqlStore::<DB>::query(sql)
            .arg(id)
            .arg(delta)
            .execute_on(&mut **tx)
            .await?;
    }
    Ok(())
}
