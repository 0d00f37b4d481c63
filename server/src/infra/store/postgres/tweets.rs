//! The `tweets` and `idempotency_keys` tables: posting, reading, deleting, the timeline,
//! and Idempotency-Key claims.
//!
//! Ids are UUIDv7 in native `uuid` columns. PostgreSQL compares uuid values bytewise, and
//! a v7 id starts with its big-endian millisecond timestamp, so id order is time order:
//! the id is the keyset of every list, and an id range is a time range.
//!
//! Timeline strategy, the SQLite backend's: fan-out on read over a time window. A page
//! looks, for the reader and each account they follow, at the `(author_id, id)` index
//! between the page cursor and a lower bound a short time earlier, and takes the newest
//! `n + 1` of what it finds. When the window holds too few tweets it is widened sixteenfold
//! and tried again, until the page is full or the window reaches back past the start of
//! time. A page therefore costs one seek per followed account plus the tweets in the
//! window, whatever the total number of tweets: no `OFFSET`, no scan, and nothing sorted
//! but the window. A post costs one insert, whatever the follower count.
//!
//! Idempotency claims rely on the primary key `(user_id, key)`: under READ COMMITTED a
//! concurrent insert of the same key waits for the other transaction and then conflicts,
//! so of two requests with one key exactly one is [`Claim::Claimed`]. Times of claims
//! come from the database's clock (`now()`), so that every instance agrees on when a
//! claim is abandoned and when a key expires.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::{PgStore, outbox, overfetch, retry};
use crate::domain::events::Event;
use crate::domain::records::timeline_windows;
use crate::infra::store::{
    Claim, Deletion, IDEMPOTENCY_ABANDONED_AFTER_SECONDS, IDEMPOTENCY_KEPT_FOR_SECONDS, Page,
    StoreError, StoredResponse, TweetRecord, TweetStore,
};

/// The timeline query: `$1` reader, `$2` upper cursor (exclusive), `$3` lower bound
/// (inclusive), `$4` page size + 1. The planner seeks tweets_by_author once per followed
/// account (and the reader) within the window, then sorts only what the window holds.
const TIMELINE_SQL: &str = "
    SELECT id, author_id, text, created_at FROM tweets
    WHERE author_id IN (SELECT followee_id FROM follows WHERE follower_id = $1
                        UNION ALL SELECT $1::uuid)
      AND id < $2 AND id >= $3
    ORDER BY id DESC LIMIT $4";

#[async_trait]
impl TweetStore for PgStore {
    async fn insert_tweet(
        &self,
        tweet: &TweetRecord,
        replay: Option<StoredResponse<'_>>,
    ) -> Result<(), StoreError> {
        let pool = &self.pool;
        let replay = replay.as_ref();
        retry(move || async move {
            let mut tx = pool.begin().await?;
            insert_row(&mut tx, tweet).await?;
            sqlx::query("UPDATE users SET tweet_count = tweet_count + 1 WHERE id = $1")
                .bind(tweet.author_id)
                .execute(&mut *tx)
                .await?;
            let created = Event::TweetCreated {
                tweet: tweet.clone(),
            };
            outbox::add(&mut tx, &created).await?;
            if let Some(replay) = replay {
                sqlx::query(
                    "UPDATE idempotency_keys
                     SET response_status = 201, response_location = $1, response_body = $2,
                         resource_id = $3
                     WHERE user_id = $4 AND key = $5",
                )
                .bind(replay.location)
                .bind(replay.body)
                .bind(tweet.id)
                .bind(replay.user_id)
                .bind(replay.key)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn tweet(&self, id: Uuid) -> Result<Option<TweetRecord>, StoreError> {
        let row = sqlx::query("SELECT id, author_id, text, created_at FROM tweets WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(tweet_from_row).transpose()?)
    }

    async fn tweets_by_ids(&self, ids: &[Uuid]) -> Result<Vec<TweetRecord>, StoreError> {
        let rows =
            sqlx::query("SELECT id, author_id, text, created_at FROM tweets WHERE id = ANY($1)")
                .bind(ids)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.iter().map(tweet_from_row).collect::<Result<_, _>>()?)
    }

    async fn delete_tweet(&self, id: Uuid, author_id: Uuid) -> Result<Deletion, StoreError> {
        let pool = &self.pool;
        retry(move || async move {
            let mut tx = pool.begin().await?;
            // A concurrent delete of the same tweet waits for this row lock, then finds the
            // row gone: the counter moves once.
            let deleted = sqlx::query("DELETE FROM tweets WHERE id = $1 AND author_id = $2")
                .bind(id)
                .bind(author_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if deleted == 1 {
                sqlx::query("UPDATE users SET tweet_count = tweet_count - 1 WHERE id = $1")
                    .bind(author_id)
                    .execute(&mut *tx)
                    .await?;
                // A replay must never answer 201 for a tweet that no longer exists.
                sqlx::query("DELETE FROM idempotency_keys WHERE resource_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                let deleted = Event::TweetDeleted {
                    tweet_id: id,
                    author_id,
                };
                outbox::add(&mut tx, &deleted).await?;
                tx.commit().await?;
                return Ok(Deletion::Deleted);
            }
            let exists = sqlx::query("SELECT 1 FROM tweets WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            Ok(if exists {
                Deletion::NotTheAuthor
            } else {
                Deletion::NotFound
            })
        })
        .await
    }

    async fn tweets_by(
        &self,
        author_id: Uuid,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Page<TweetRecord, Uuid>, StoreError> {
        // Uuid::max() sorts after every id, so a first page needs no other query; the scan
        // reads tweets_by_author backwards, without a sort.
        let rows = sqlx::query(
            "SELECT id, author_id, text, created_at FROM tweets
             WHERE author_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
        )
        .bind(author_id)
        .bind(before.unwrap_or(Uuid::max()))
        .bind(overfetch(limit))
        .fetch_all(&self.pool)
        .await?;
        tweet_page(&rows, limit)
    }

    async fn timeline(
        &self,
        reader: Uuid,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Page<TweetRecord, Uuid>, StoreError> {
        let upper = before.unwrap_or(Uuid::max());
        let mut rows = Vec::new();
        for lower in timeline_windows(before) {
            rows = sqlx::query(TIMELINE_SQL)
                .bind(reader)
                .bind(upper)
                .bind(lower.unwrap_or(Uuid::nil()))
                .bind(overfetch(limit))
                .fetch_all(&self.pool)
                .await?;
            if rows.len() > limit as usize {
                break;
            }
        }
        tweet_page(&rows, limit)
    }

    async fn claim_idempotency_key(
        &self,
        user_id: Uuid,
        key: &str,
        request_hash: &str,
    ) -> Result<Claim, StoreError> {
        let pool = &self.pool;
        retry(move || async move {
            let mut tx = pool.begin().await?;
            // Forget expired keys, and this key's claim if its request was abandoned (the
            // process died mid-request), so that it can be claimed again below.
            sqlx::query(
                "DELETE FROM idempotency_keys
                 WHERE created_at < now() - $1 * interval '1 second'
                    OR (user_id = $2 AND key = $3 AND response_status IS NULL
                        AND created_at < now() - $4 * interval '1 second')",
            )
            .bind(IDEMPOTENCY_KEPT_FOR_SECONDS)
            .bind(user_id)
            .bind(key)
            .bind(IDEMPOTENCY_ABANDONED_AFTER_SECONDS)
            .execute(&mut *tx)
            .await?;
            // The row can vanish between a conflicting insert and the read (a release, or
            // the other request's tweet being deleted); then the key is free: try again.
            for _ in 0..3 {
                let claimed = sqlx::query(
                    "INSERT INTO idempotency_keys (user_id, key, request_hash, created_at)
                     VALUES ($1, $2, $3, now())
                     ON CONFLICT (user_id, key) DO NOTHING",
                )
                .bind(user_id)
                .bind(key)
                .bind(request_hash)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if claimed {
                    tx.commit().await?;
                    return Ok(Claim::Claimed);
                }
                let row = sqlx::query(
                    "SELECT request_hash, response_status, response_location, response_body
                     FROM idempotency_keys WHERE user_id = $1 AND key = $2",
                )
                .bind(user_id)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else { continue };
                let stored_hash: String = row.try_get("request_hash")?;
                let status: Option<i32> = row.try_get("response_status")?;
                // In flight comes first: until the first request ends there is nothing to
                // compare a different body against but a conflict.
                let claim = match status {
                    None => Claim::InFlight,
                    _ if stored_hash != request_hash => Claim::Mismatch,
                    Some(status) => Claim::Replay {
                        status: u16::try_from(status).unwrap_or(500),
                        location: row.try_get("response_location")?,
                        body: row.try_get("response_body")?,
                    },
                };
                tx.commit().await?;
                return Ok(claim);
            }
            // The key keeps appearing and vanishing: another request is busy with it.
            Ok(Claim::InFlight)
        })
        .await
    }

    async fn release_idempotency_key(&self, user_id: Uuid, key: &str) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM idempotency_keys
             WHERE user_id = $1 AND key = $2 AND response_status IS NULL",
        )
        .bind(user_id)
        .bind(key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// Inserts one tweet row (its author's counter is the caller's business).
async fn insert_row(conn: &mut sqlx::PgConnection, tweet: &TweetRecord) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO tweets (id, author_id, text, created_at) VALUES ($1, $2, $3, $4)")
        .bind(tweet.id)
        .bind(tweet.author_id)
        .bind(&tweet.text)
        .bind(tweet.created_at)
        .execute(conn)
        .await?;
    Ok(())
}

/// A page of tweets from `limit + 1` rows, with the tweet id as the cursor.
fn tweet_page(rows: &[PgRow], limit: u32) -> Result<Page<TweetRecord, Uuid>, StoreError> {
    let items = rows
        .iter()
        .map(|row| {
            let tweet = tweet_from_row(row)?;
            let cursor = tweet.id;
            Ok((tweet, cursor))
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Page::from_overfetch(items, limit))
}

fn tweet_from_row(row: &PgRow) -> Result<TweetRecord, sqlx::Error> {
    Ok(TweetRecord {
        id: row.try_get("id")?,
        author_id: row.try_get("author_id")?,
        text: row.try_get("text")?,
        created_at: row.try_get("created_at")?,
    })
}
