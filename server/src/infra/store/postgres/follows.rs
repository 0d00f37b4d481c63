//! The `follows` table, and the follower/following counters it keeps exact.
//!
//! A follow inserts its edge with `ON CONFLICT DO NOTHING` and moves both counters only
//! when the edge is new, in the same transaction, so the counters stay exact however
//! many instances follow and unfollow at once: a duplicate follow waits for the first on
//! the unique index and then changes nothing. The unknown user is the foreign key's
//! verdict (23503), not a check before the insert, which another transaction could
//! outdate.
//!
//! "A follows B" and "B follows A" at once both update the rows of A and B. Each
//! transaction updates the two rows in id order, so neither can hold one row while
//! waiting for the other's; a deadlock that slips through anyway (or any other lost race)
//! re-runs the whole transaction ([`super::retry`]).

use async_trait::async_trait;
use sqlx::postgres::PgConnection;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::users::{user_columns, user_from_row};
use super::{PgStore, outbox, overfetch, retry};
use crate::domain::events::Event;
use crate::infra::store::{EdgeChange, FollowStore, Page, StoreError, UserRecord, now_millis};

#[async_trait]
impl FollowStore for PgStore {
    async fn follow(&self, follower: Uuid, followee: Uuid) -> Result<EdgeChange, StoreError> {
        let pool = &self.pool;
        retry(move || async move {
            let mut tx = pool.begin().await?;
            let inserted = sqlx::query(
                "INSERT INTO follows (follower_id, followee_id, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT (follower_id, followee_id) DO NOTHING",
            )
            .bind(follower)
            .bind(followee)
            .bind(now_millis())
            .execute(&mut *tx)
            .await;
            let inserted = match inserted {
                Ok(result) => result.rows_affected() == 1,
                // Dropping the (now aborted) transaction rolls it back.
                Err(sqlx::Error::Database(db)) if db.is_foreign_key_violation() => {
                    return Ok(EdgeChange::UnknownUser);
                }
                Err(error) => return Err(error),
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
        })
        .await
    }

    async fn unfollow(&self, follower: Uuid, followee: Uuid) -> Result<EdgeChange, StoreError> {
        let pool = &self.pool;
        retry(move || async move {
            let mut tx = pool.begin().await?;
            // A concurrent unfollow of the same edge waits for this row lock, then finds
            // the row gone and deletes nothing: the counters move once.
            let deleted =
                sqlx::query("DELETE FROM follows WHERE follower_id = $1 AND followee_id = $2")
                    .bind(follower)
                    .bind(followee)
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
        })
        .await
    }

    async fn followers(
        &self,
        user: Uuid,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Page<UserRecord, i64>, StoreError> {
        // Through follows_by_followee (followee_id, id), read backwards: no sort.
        const SQL: &str = concat!(
            "SELECT ",
            user_columns!(),
            ", f.id AS edge FROM follows f JOIN users u ON u.id = f.follower_id
             WHERE f.followee_id = $1 AND f.id < $2 ORDER BY f.id DESC LIMIT $3"
        );
        edge_page(&self.pool, SQL, user, before, limit).await
    }

    async fn following(
        &self,
        user: Uuid,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Page<UserRecord, i64>, StoreError> {
        // Through follows_by_follower (follower_id, id), read backwards: no sort.
        const SQL: &str = concat!(
            "SELECT ",
            user_columns!(),
            ", f.id AS edge FROM follows f JOIN users u ON u.id = f.followee_id
             WHERE f.follower_id = $1 AND f.id < $2 ORDER BY f.id DESC LIMIT $3"
        );
        edge_page(&self.pool, SQL, user, before, limit).await
    }

    async fn follower_ids(&self, user: Uuid, limit: u32) -> Result<Vec<Uuid>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT follower_id FROM follows WHERE followee_id = $1 LIMIT $2")
                .bind(user)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn followee_ids(&self, user: Uuid) -> Result<Vec<Uuid>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT followee_id FROM follows WHERE follower_id = $1")
                .bind(user)
                .fetch_all(&self.pool)
                .await?,
        )
    }
}

/// One page of users by `sql` (`$1` the user, `$2` the edge cursor, exclusive, `$3` the
/// row count), newest edge first, with the edge id as the cursor.
async fn edge_page(
    pool: &PgPool,
    sql: &'static str,
    user: Uuid,
    before: Option<i64>,
    limit: u32,
) -> Result<Page<UserRecord, i64>, StoreError> {
    // Identity values start at 1, so i64::MAX is past every edge: a first page needs no
    // other query.
    let rows = sqlx::query(sql)
        .bind(user)
        .bind(before.unwrap_or(i64::MAX))
        .bind(overfetch(limit))
        .fetch_all(pool)
        .await?;
    let items = rows
        .iter()
        .map(|row| Ok((user_from_row(row)?, row.try_get::<i64, _>("edge")?)))
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Page::from_overfetch(items, limit))
}

/// Moves the follower's following_count and the followee's follower_count by `delta`,
/// updating the two rows in id order (the order uuid values compare in, in Rust and in
/// PostgreSQL alike), so that two transactions on the same pair lock them in the same
/// order and cannot deadlock.
async fn adjust_counts(
    conn: &mut PgConnection,
    follower: Uuid,
    followee: Uuid,
    delta: i64,
) -> Result<(), sqlx::Error> {
    const FOLLOWING: &str = "UPDATE users SET following_count = following_count + $2 WHERE id = $1";
    const FOLLOWER: &str = "UPDATE users SET follower_count = follower_count + $2 WHERE id = $1";
    let mut updates = [(follower, FOLLOWING), (followee, FOLLOWER)];
    updates.sort_by_key(|(id, _)| *id);
    for (id, sql) in updates {
        sqlx::query(sql)
            .bind(id)
            .bind(delta)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
