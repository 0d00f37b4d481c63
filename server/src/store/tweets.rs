//! The `tweets` table: posting, reading, deleting, and the timeline.
//!
//! Timeline strategy: fan-out on read over a time window. Tweet ids are UUIDv7, so an id
//! range is a time range. A page looks, for the reader and each account they follow, at
//! the `(author_id, id)` index between the page cursor and a lower bound a short time
//! earlier — one index seek per followee — takes the newest `n + 1` of what it finds,
//! and reads only those rows. When the window holds too few tweets it is widened
//! sixteenfold and tried again. A page therefore costs one seek per followed account
//! plus the tweets in the window, whatever the total number of tweets: no `OFFSET`, no
//! scan, and nothing sorted but the window. A post costs one insert, whatever the
//! follower count. See `docs/timeline.md` for the measurements and the query plan.

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
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        insert_row(&mut tx, tweet).await?;
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
        let _turn = self.write_turn().await;
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
    /// tweet `before` (fan-out on read over a widening time window; see the module docs).
    pub async fn timeline(
        &self,
        reader: &str,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Page<TweetRecord, String>, StoreError> {
        let upper = before.unwrap_or(AFTER_EVERY_ID);
        let upper_ms = before
            .and_then(uuid_v7_millis)
            .unwrap_or_else(|| now_millis().timestamp_millis().max(0) as u64);
        let mut window_ms = FIRST_WINDOW_MS;
        loop {
            // Past the start of time the window is unbounded: this is the last try.
            let lower = upper_ms
                .checked_sub(window_ms)
                .map_or_else(|| BEFORE_EVERY_ID.to_owned(), id_prefix_at);
            let rows = sqlx::query(TIMELINE_SQL)
                .bind(reader)
                .bind(upper)
                .bind(&lower)
                .bind(i64::from(limit) + 1)
                .fetch_all(&self.pool)
                .await?;
            if rows.len() > limit as usize || lower == BEFORE_EVERY_ID {
                return tweet_page(&rows, limit);
            }
            window_ms = window_ms.saturating_mul(16);
        }
    }
}

/// The first timeline window: an hour holds a page for anyone who follows active accounts.
const FIRST_WINDOW_MS: u64 = 3_600_000;
/// Sorts below every tweet id.
const BEFORE_EVERY_ID: &str = "0";

/// The timeline query: `?1` reader, `?2` upper cursor (exclusive), `?3` lower bound
/// (inclusive), `?4` page size + 1. The inner query touches only the covering index.
const TIMELINE_SQL: &str = "
    SELECT t.id, t.author_id, t.text, t.created_at FROM tweets t
    WHERE t.id IN (
        SELECT id FROM tweets
        WHERE author_id IN (SELECT followee_id FROM follows WHERE follower_id = ?1 UNION ALL SELECT ?1)
          AND id < ?2 AND id >= ?3
        ORDER BY id DESC LIMIT ?4)
    ORDER BY t.id DESC";

/// The millisecond timestamp of a UUIDv7 in its text form.
fn uuid_v7_millis(id: &str) -> Option<u64> {
    let hex: String = id.get(..13)?.chars().filter(|c| *c != '-').collect();
    u64::from_str_radix(&hex, 16).ok()
}

/// The smallest id text of any UUIDv7 made at `ms` or later.
fn id_prefix_at(ms: u64) -> String {
    format!("{:08x}-{:04x}", ms >> 16, ms & 0xffff)
}

/// Inserts one tweet row (its author's counter is the caller's business).
pub(super) async fn insert_row(
    conn: &mut sqlx::SqliteConnection,
    tweet: &TweetRecord,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO tweets (id, author_id, text, created_at) VALUES (?, ?, ?, ?)")
        .bind(&tweet.id)
        .bind(&tweet.author_id)
        .bind(&tweet.text)
        .bind(tweet.created_at)
        .execute(conn)
        .await?;
    Ok(())
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uuid_v7_sorts_with_the_prefix_of_its_millisecond() {
        let id = uuid::Uuid::now_v7().to_string();
        let ms = uuid_v7_millis(&id).expect("a v7 id");
        assert!(id_prefix_at(ms).as_str() <= id.as_str());
        assert!(id_prefix_at(ms + 1).as_str() > id.as_str());
        assert!(BEFORE_EVERY_ID < id_prefix_at(0).as_str() && AFTER_EVERY_ID > id.as_str());
    }
}
