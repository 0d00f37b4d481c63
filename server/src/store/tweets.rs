//! The `tweets` table: posting, reading, deleting, and the timeline.
//!
//! Timeline strategy: fan-out on read with a per-followee limit. For a page of `n`
//! tweets, each followed account (and the reader) contributes at most `n + 1` tweets,
//! each found by one seek of the `(author_id, id)` index below the page cursor; only
//! those few rows are merged and sorted. A page therefore costs
//! `O(followees × n)` index reads whatever the total number of tweets, with no `OFFSET`
//! and no scan, and a post costs one insert, whatever the follower count. See
//! `docs/timeline.md` for the query plan.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::users::now_millis;
use super::{Page, Store, StoreError};

/// A tweet as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TweetRecord {
    pub id: String,
    pub author_id: String,
    pub text: String,
    pub created_at: DateTime<Utc>,
}

/// Sorts above every tweet id, so that a first page needs no special query.
const AFTER_EVERY_ID: &str = "~";

/// What a delete did.
#[derive(Debug, PartialEq, Eq)]
pub enum Deletion {
    Deleted,
    NotTheAuthor,
    NotFound,
}

/// The response to replay for an idempotent create, stored with the tweet.
#[derive(Debug)]
pub struct StoredResponse<'a> {
    pub user_id: &'a str,
    pub key: &'a str,
    pub location: &'a str,
    pub body: &'a str,
}

impl Store {
    /// A new tweet's record, not yet stored: the caller needs its id for the response it
    /// may store with it.
    pub fn new_tweet(author_id: &str, text: String) -> TweetRecord {
        TweetRecord {
            id: uuid::Uuid::now_v7().to_string(),
            author_id: author_id.to_owned(),
            text,
            created_at: now_millis(),
        }
    }

    /// Stores a tweet and counts it; with `replay`, also completes its idempotency record
    /// in the same transaction, so the two are durable together or not at all.
    pub async fn insert_tweet(
        &self,
        tweet: &TweetRecord,
        replay: Option<StoredResponse<'_>>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO tweets (id, author_id, text, created_at) VALUES (?, ?, ?, ?)")
            .bind(&tweet.id)
            .bind(&tweet.author_id)
            .bind(&tweet.text)
            .bind(tweet.created_at)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE users SET tweet_count = tweet_count + 1 WHERE id = ?")
            .bind(&tweet.author_id)
            .execute(&mut *tx)
            .await?;
        if let Some(replay) = replay {
            sqlx::query(
                "UPDATE idempotency_keys
                 SET response_status = 201, response_location = ?, response_body = ?, resource_id = ?
                 WHERE user_id = ? AND key = ?",
            )
            .bind(replay.location)
            .bind(replay.body)
            .bind(&tweet.id)
            .bind(replay.user_id)
            .bind(replay.key)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn tweet(&self, id: &str) -> Result<Option<TweetRecord>, StoreError> {
        let row = sqlx::query("SELECT id, author_id, text, created_at FROM tweets WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| tweet_from_row(&row)).transpose()
    }

    /// Deletes a tweet if `author_id` wrote it.
    pub async fn delete_tweet(&self, id: &str, author_id: &str) -> Result<Deletion, StoreError> {
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query("DELETE FROM tweets WHERE id = ? AND author_id = ?")
            .bind(id)
            .bind(author_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 1 {
            sqlx::query("UPDATE users SET tweet_count = tweet_count - 1 WHERE id = ?")
                .bind(author_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM idempotency_keys WHERE resource_id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(Deletion::Deleted);
        }
        let exists = sqlx::query("SELECT 1 FROM tweets WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        Ok(if exists {
            Deletion::NotTheAuthor
        } else {
            Deletion::NotFound
        })
    }

    /// A user's tweets, newest first, older than the tweet `before`.
    pub async fn tweets_by(
        &self,
        author_id: &str,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Page<TweetRecord, String>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, author_id, text, created_at FROM tweets
             WHERE author_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
        )
        .bind(author_id)
        .bind(before.unwrap_or(AFTER_EVERY_ID))
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        tweet_page(&rows, limit)
    }

    /// The tweets of `reader` and of everyone they follow, newest first, older than the
    /// tweet `before` (fan-out on read with a per-followee limit; see the module docs).
    pub async fn timeline(
        &self,
        reader: &str,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Page<TweetRecord, String>, StoreError> {
        let rows = sqlx::query(TIMELINE_SQL)
            .bind(reader)
            .bind(before.unwrap_or(AFTER_EVERY_ID))
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.pool)
            .await?;
        tweet_page(&rows, limit)
    }
}

/// The timeline query: `?1` reader, `?2` cursor, `?3` page size + 1.
pub const TIMELINE_SQL: &str = "
    SELECT t.id, t.author_id, t.text, t.created_at
    FROM (SELECT followee_id AS author FROM follows WHERE follower_id = ?1
          UNION ALL SELECT ?1) AS a
    JOIN tweets t ON t.rowid IN (
        SELECT rowid FROM tweets
        WHERE author_id = a.author AND id < ?2
        ORDER BY id DESC LIMIT ?3)
    ORDER BY t.id DESC
    LIMIT ?3";

fn tweet_page(
    rows: &[sqlx::sqlite::SqliteRow],
    limit: u32,
) -> Result<Page<TweetRecord, String>, StoreError> {
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        let tweet = tweet_from_row(row)?;
        let cursor = tweet.id.clone();
        items.push((tweet, cursor));
    }
    Ok(Page::from_overfetch(items, limit))
}

fn tweet_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<TweetRecord, StoreError> {
    Ok(TweetRecord {
        id: row.try_get("id")?,
        author_id: row.try_get("author_id")?,
        text: row.try_get("text")?,
        created_at: row.try_get("created_at")?,
    })
}
