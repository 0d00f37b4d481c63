//! The `tweets` and `idempotency_keys` tables: reading, deleting, the timeline, and
//! Idempotency-Key claims (posting is [`super::posts`]).
//!
//! Ids are UUIDv7, stored so that the database compares them bytewise (a BLOB in SQLite,
//! a `uuid` in PostgreSQL); a v7 id starts with its big-endian millisecond timestamp, so
//! id order is time order: the id is the keyset of every list, and an id range is a time
//! range.
//!
//! Timeline strategy: fan-out on read over a time window. A page looks, for the reader
//! and each account they follow, at the `(author_id, id)` index between the page cursor
//! and a lower bound a short time earlier, and takes the newest `n + 1` of what it finds.
//! When the window holds too few tweets it is widened sixteenfold and tried again, until
//! the page is full or the window reaches back past the start of time. A page therefore
//! costs one seek per followed account plus the tweets in the window, whatever the total
//! number of tweets: no `OFFSET`, no scan, and nothing sorted but the window. A post
//! costs one insert, whatever the follower count. See `docs/timeline.md`.
//!
//! Idempotency claims rely on the primary key `(user_id, key)`: a concurrent insert of
//! the same key waits for the other transaction (or its turn) and then conflicts, so of
//! two requests with one key exactly one is [`Claim::Claimed`].

use async_trait::async_trait;
use uuid::Uuid;

use super::rows::{ClaimRow, TweetRow};
use super::{Backend, Post, QueryExt, Sql, SqlStore, json_list, outbox, overfetch};
use crate::domain::events::{Event, Written};
use crate::domain::records::timeline_windows;
use crate::infra::store::{
    Claim, Deletion, IDEMPOTENCY_ABANDONED_AFTER_SECONDS, IDEMPOTENCY_KEPT_FOR_SECONDS, Page,
    StoreError, StoredResponse, TweetRecord, TweetStore,
};

/// `$1` reader, `$2` upper cursor (exclusive), `$3` lower bound (inclusive), `$4` page
/// size + 1. SQLite's inner query touches only the covering index; PostgreSQL's planner
/// seeks tweets_by_author once per followed account within the window by itself.
const TIMELINE: Sql = Sql {
    sqlite: "SELECT t.id, t.author_id, t.text, t.created_at FROM tweets t
             WHERE t.id IN (
                 SELECT id FROM tweets
                 WHERE author_id IN (SELECT followee_id FROM follows WHERE follower_id = $1
                                     UNION ALL SELECT $1)
                   AND id < $2 AND id >= $3
                 ORDER BY id DESC LIMIT $4)
             ORDER BY t.id DESC",
    postgres: "SELECT id, author_id, text, created_at FROM tweets
               WHERE author_id IN (SELECT followee_id FROM follows WHERE follower_id = $1
                                   UNION ALL SELECT $1::uuid)
                 AND id < $2 AND id >= $3
               ORDER BY id DESC LIMIT $4",
};

/// `$1` the ids as a JSON array. PostgreSQL turns it into an array for an index scan.
const BY_IDS: Sql = Sql {
    sqlite: "SELECT id, author_id, text, created_at FROM tweets
             WHERE id IN (SELECT unhex(value, '-') FROM json_each($1))",
    postgres: "SELECT id, author_id, text, created_at FROM tweets
               WHERE id = ANY(ARRAY(SELECT json_array_elements_text($1::json)::uuid))",
};

/// Forgets expired keys, and this key's claim if its request was abandoned (the process
/// died mid-request). `$1` kept-for seconds, `$2` user, `$3` key, `$4` abandoned-after
/// seconds, `$5` now in Unix seconds. PostgreSQL's times are the database's clock, so that
/// every instance agrees on them.
const FORGET_EXPIRED: Sql = Sql {
    sqlite: "DELETE FROM idempotency_keys
             WHERE created_at < $5 - $1
                OR (user_id = $2 AND key = $3 AND response_status IS NULL
                    AND created_at < $5 - $4)",
    postgres: "DELETE FROM idempotency_keys
               WHERE created_at < now() - $1 * interval '1 second'
                  OR (user_id = $2 AND key = $3 AND response_status IS NULL
                      AND created_at < now() - $4 * interval '1 second')",
};

/// `$1` user, `$2` key, `$3` request hash, `$4` now in Unix seconds (SQLite's clock).
const CLAIM: Sql = Sql {
    sqlite: "INSERT INTO idempotency_keys (user_id, key, request_hash, created_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_id, key) DO NOTHING",
    postgres: "INSERT INTO idempotency_keys (user_id, key, request_hash, created_at)
               VALUES ($1, $2, $3, now())
               ON CONFLICT (user_id, key) DO NOTHING",
};

#[async_trait]
impl<DB: Backend> TweetStore for SqlStore<DB> {
    async fn insert_tweet(
        &self,
        tweet: &TweetRecord,
        replay: Option<StoredResponse<'_>>,
    ) -> Result<Written<()>, StoreError> {
        let post = Post::new(tweet, replay);
        let created = post.created.clone();
        self.post(post).await?;
        Ok(Written::with((), created))
    }

    async fn tweet(&self, id: Uuid) -> Result<Option<TweetRecord>, StoreError> {
        let row: Option<TweetRow> =
            Self::query("SELECT id, author_id, text, created_at FROM tweets WHERE id = $1")
                .arg(id)
                .fetch_optional_as(&mut *self.conn().await?)
                .await?;
        Ok(row.map(TweetRecord::from))
    }

    async fn tweets_by_ids(&self, ids: &[Uuid]) -> Result<Vec<TweetRecord>, StoreError> {
        // One statement for any number of ids: they travel as one JSON array.
        let rows: Vec<TweetRow> = Self::dialect(&BY_IDS)
            .arg(json_list(ids)?)
            .fetch_all_as(&mut *self.conn().await?)
            .await?;
        Ok(rows.into_iter().map(TweetRecord::from).collect())
    }

    async fn delete_tweet(
        &self,
        id: Uuid,
        author_id: Uuid,
    ) -> Result<Written<Deletion>, StoreError> {
        self.write(move |mut tx| async move {
            // A concurrent delete of the same tweet waits for this row lock (or its
            // turn), then finds the row gone: the counter moves once.
            let deleted = Self::query("DELETE FROM tweets WHERE id = $1 AND author_id = $2")
                .arg(id)
                .arg(author_id)
                .execute_on(&mut *tx)
                .await?;
            if deleted == 1 {
                Self::query("UPDATE users SET tweet_count = tweet_count - 1 WHERE id = $1")
                    .arg(author_id)
                    .execute_on(&mut *tx)
                    .await?;
                // A replay must never answer 201 for a tweet that no longer exists.
                Self::query("DELETE FROM idempotency_keys WHERE resource_id = $1")
                    .arg(id)
                    .execute_on(&mut *tx)
                    .await?;
                let deleted = Event::TweetDeleted {
                    tweet_id: id,
                    author_id,
                };
                outbox::add(&mut tx, &deleted).await?;
                tx.commit().await?;
                return Ok(Written::with(Deletion::Deleted, deleted));
            }
            let exists: Option<(Uuid,)> = Self::query("SELECT id FROM tweets WHERE id = $1")
                .arg(id)
                .fetch_optional_as(&mut *tx)
                .await?;
            Ok(Written::unchanged(if exists.is_some() {
                Deletion::NotTheAuthor
            } else {
                Deletion::NotFound
            }))
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
        let rows: Vec<TweetRow> = Self::query(
            "SELECT id, author_id, text, created_at FROM tweets
             WHERE author_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
        )
        .arg(author_id)
        .arg(before.unwrap_or(Uuid::max()))
        .arg(overfetch(limit))
        .fetch_all_as(&mut *self.conn().await?)
        .await?;
        Ok(tweet_page(rows, limit))
    }

    async fn timeline(
        &self,
        reader: Uuid,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Page<TweetRecord, Uuid>, StoreError> {
        let upper = before.unwrap_or(Uuid::max());
        let mut conn = self.conn().await?;
        let mut rows = Vec::new();
        for lower in timeline_windows(before) {
            rows = Self::dialect(&TIMELINE)
                .arg(reader)
                .arg(upper)
                .arg(lower.unwrap_or(Uuid::nil()))
                .arg(overfetch(limit))
                .fetch_all_as(&mut *conn)
                .await?;
            if rows.len() > limit as usize {
                break;
            }
        }
        Ok(tweet_page(rows, limit))
    }

    async fn claim_idempotency_key(
        &self,
        user_id: Uuid,
        key: &str,
        request_hash: &str,
    ) -> Result<Claim, StoreError> {
        self.write(move |mut tx| async move {
            let now = chrono::Utc::now().timestamp();
            Self::dialect(&FORGET_EXPIRED)
                .arg(IDEMPOTENCY_KEPT_FOR_SECONDS)
                .arg(user_id)
                .arg(key)
                .arg(IDEMPOTENCY_ABANDONED_AFTER_SECONDS)
                .arg(now)
                .execute_on(&mut *tx)
                .await?;
            // The row can vanish between a conflicting insert and the read (a release, or
            // the other request's tweet being deleted); then the key is free: try again.
            for _ in 0..3 {
                let claimed = Self::dialect(&CLAIM)
                    .arg(user_id)
                    .arg(key)
                    .arg(request_hash)
                    .arg(now)
                    .execute_on(&mut *tx)
                    .await?
                    == 1;
                if claimed {
                    tx.commit().await?;
                    return Ok(Claim::Claimed);
                }
                let row: Option<ClaimRow> = Self::query(
                    "SELECT request_hash, response_status, response_location, response_body
                     FROM idempotency_keys WHERE user_id = $1 AND key = $2",
                )
                .arg(user_id)
                .arg(key)
                .fetch_optional_as(&mut *tx)
                .await?;
                let Some(row) = row else { continue };
                // In flight comes first: until the first request ends there is nothing to
                // compare a different body against but a conflict.
                let claim = match row.response_status {
                    None => Claim::InFlight,
                    _ if row.request_hash != request_hash => Claim::Mismatch,
                    Some(status) => Claim::Replay {
                        status: u16::try_from(status).unwrap_or(500),
                        location: row.response_location,
                        body: row.response_body,
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
        let _turn = self.turn().await;
        Self::query(
            "DELETE FROM idempotency_keys
             WHERE user_id = $1 AND key = $2 AND response_status IS NULL",
        )
        .arg(user_id)
        .arg(key)
        .execute_on(&mut *self.conn().await?)
        .await?;
        Ok(())
    }
}

/// A page of tweets from `limit + 1` rows, with the tweet id as the cursor.
fn tweet_page(rows: Vec<TweetRow>, limit: u32) -> Page<TweetRecord, Uuid> {
    let tweets = rows.into_iter().map(TweetRecord::from).collect();
    Page::by_id(tweets, limit, |tweet| tweet.id)
}
