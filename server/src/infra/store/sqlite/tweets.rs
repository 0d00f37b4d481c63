//! The `tweets` and `idempotency_keys` tables: posting, reading, deleting, timelines.
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

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use super::{SqliteStore, outbox, text, uuid};
use crate::domain::events::Event;
use crate::domain::records::timeline_windows;
use crate::infra::store::{
    Claim, Deletion, IDEMPOTENCY_ABANDONED_AFTER_SECONDS, IDEMPOTENCY_KEPT_FOR_SECONDS, Page,
    StoreError, StoredResponse, TweetRecord, TweetStore,
};

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

#[async_trait]
impl TweetStore for SqliteStore {
    /// Waits for the group commit (see [`GroupCommit`]) that makes this post durable.
    async fn insert_tweet(
        &self,
        tweet: &TweetRecord,
        replay: Option<StoredResponse<'_>>,
    ) -> Result<(), StoreError> {
        let (done, committed) = tokio::sync::oneshot::channel();
        // The queue is bounded: when it is full, posting waits (backpressure).
        let post = Post {
            tweet: tweet.clone(),
            replay: replay.map(|r| OwnedReplay {
                user_id: r.user_id,
                key: r.key.to_owned(),
                location: r.location.to_owned(),
                body: r.body.to_owned(),
            }),
            done,
        };
        let queue = self
            .posts
            .as_ref()
            .expect("BUG: the committer does not post");
        if queue.send(post).await.is_err() {
            return Err(StoreError::Unavailable(sqlx::Error::PoolClosed));
        }
        committed
            .await
            .unwrap_or(Err(StoreError::Unavailable(sqlx::Error::PoolClosed)))
    }

    async fn tweet(&self, id: Uuid) -> Result<Option<TweetRecord>, StoreError> {
        let row = sqlx::query("SELECT id, author_id, text, created_at FROM tweets WHERE id = ?")
            .bind(text(id))
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| tweet_from_row(&row)).transpose()?)
    }

    async fn tweets_by_ids(&self, ids: &[Uuid]) -> Result<Vec<TweetRecord>, StoreError> {
        // One statement for any number of ids: the ids travel as one JSON array.
        let ids = serde_json::to_string(ids)
            .map_err(|e| StoreError::Other(sqlx::Error::Encode(e.into())))?;
        let rows = sqlx::query(
            "SELECT id, author_id, text, created_at FROM tweets
             WHERE id IN (SELECT value FROM json_each(?))",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(tweet_from_row).collect::<Result<_, _>>()?)
    }

    async fn delete_tweet(&self, id: Uuid, author_id: Uuid) -> Result<Deletion, StoreError> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query("DELETE FROM tweets WHERE id = ? AND author_id = ?")
            .bind(text(id))
            .bind(text(author_id))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 1 {
            sqlx::query("UPDATE users SET tweet_count = tweet_count - 1 WHERE id = ?")
                .bind(text(author_id))
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM idempotency_keys WHERE resource_id = ?")
                .bind(text(id))
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
        let exists = sqlx::query("SELECT 1 FROM tweets WHERE id = ?")
            .bind(text(id))
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        Ok(if exists {
            Deletion::NotTheAuthor
        } else {
            Deletion::NotFound
        })
    }

    async fn tweets_by(
        &self,
        author_id: Uuid,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Page<TweetRecord, Uuid>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, author_id, text, created_at FROM tweets
             WHERE author_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
        )
        .bind(text(author_id))
        .bind(text(before.unwrap_or(Uuid::max())))
        .bind(i64::from(limit) + 1)
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
                .bind(text(reader))
                .bind(text(upper))
                .bind(text(lower.unwrap_or(Uuid::nil())))
                .bind(i64::from(limit) + 1)
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
        let _turn = self.write_turn().await;
        let now = chrono::Utc::now().timestamp();
        let mut tx = self.pool.begin().await?;
        // Writes first, so the transaction holds the write lock from the start.
        sqlx::query(
            "DELETE FROM idempotency_keys
             WHERE created_at < ?1
                OR (user_id = ?2 AND key = ?3 AND response_status IS NULL AND created_at < ?4)",
        )
        .bind(now - IDEMPOTENCY_KEPT_FOR_SECONDS)
        .bind(text(user_id))
        .bind(key)
        .bind(now - IDEMPOTENCY_ABANDONED_AFTER_SECONDS)
        .execute(&mut *tx)
        .await?;
        let claimed = sqlx::query(
            "INSERT INTO idempotency_keys (user_id, key, request_hash, created_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (user_id, key) DO NOTHING",
        )
        .bind(text(user_id))
        .bind(key)
        .bind(request_hash)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let claim = if claimed {
            Claim::Claimed
        } else {
            let row = sqlx::query(
                "SELECT request_hash, response_status, response_location, response_body
                 FROM idempotency_keys WHERE user_id = ? AND key = ?",
            )
            .bind(text(user_id))
            .bind(key)
            .fetch_one(&mut *tx)
            .await?;
            let stored_hash: String = row.try_get("request_hash")?;
            let status: Option<i64> = row.try_get("response_status")?;
            // In flight comes first: until the first request ends there is nothing to
            // compare a different body against but a conflict.
            match status {
                None => Claim::InFlight,
                _ if stored_hash != request_hash => Claim::Mismatch,
                Some(status) => Claim::Replay {
                    status: u16::try_from(status).unwrap_or(500),
                    location: row.try_get("response_location")?,
                    body: row.try_get("response_body")?,
                },
            }
        };
        tx.commit().await?;
        Ok(claim)
    }

    async fn release_idempotency_key(&self, user_id: Uuid, key: &str) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE user_id = ? AND key = ? AND response_status IS NULL",
        )
        .bind(text(user_id))
        .bind(key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// Posts that share one transaction and one fsync: a post waits in the queue while the
/// writer is busy, and the next transaction takes everything that queued meanwhile (up to
/// [`GROUP_MAX`]). Under load that turns one `synchronous=FULL` commit per post into one per
/// group; alone, a post commits at once. Each post is acknowledged only after the commit
/// that holds it; if a group fails, its posts are retried one transaction each, so that one
/// bad post cannot fail the others.
pub(super) struct Post {
    tweet: TweetRecord,
    replay: Option<OwnedReplay>,
    done: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
}

pub(super) struct OwnedReplay {
    user_id: Uuid,
    key: String,
    location: String,
    body: String,
}

/// The most posts one transaction takes.
const GROUP_MAX: usize = 256;

/// The committer: runs until every sender (every clone of the store) is gone.
pub(super) struct GroupCommit;

impl GroupCommit {
    pub(super) fn start(store: &SqliteStore, mut posts: tokio::sync::mpsc::Receiver<Post>) {
        let store = store.clone_without_posts();
        tokio::spawn(async move {
            while let Some(first) = posts.recv().await {
                let mut group = vec![first];
                while group.len() < GROUP_MAX {
                    match posts.try_recv() {
                        Ok(post) => group.push(post),
                        Err(_) => break,
                    }
                }
                let turn = store.write_turn().await;
                if store.commit_group(&group).await.is_ok() {
                    drop(turn);
                    for post in group {
                        let _ = post.done.send(Ok(()));
                    }
                    continue;
                }
                for post in group {
                    let alone = store.commit_group(std::slice::from_ref(&post)).await;
                    let _ = post.done.send(alone);
                }
                drop(turn);
            }
        });
    }
}

impl SqliteStore {
    /// One transaction for `group`: each tweet, its author's counter, and its
    /// idempotency record.
    async fn commit_group(&self, group: &[Post]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for post in group {
            let tweet = &post.tweet;
            insert_row(&mut tx, tweet).await?;
            sqlx::query("UPDATE users SET tweet_count = tweet_count + 1 WHERE id = ?")
                .bind(text(tweet.author_id))
                .execute(&mut *tx)
                .await?;
            let created = Event::TweetCreated {
                tweet: tweet.clone(),
            };
            outbox::add(&mut tx, &created).await?;
            if let Some(replay) = &post.replay {
                sqlx::query(
                    "UPDATE idempotency_keys
                     SET response_status = 201, response_location = ?, response_body = ?, resource_id = ?
                     WHERE user_id = ? AND key = ?",
                )
                .bind(&replay.location)
                .bind(&replay.body)
                .bind(text(tweet.id))
                .bind(text(replay.user_id))
                .bind(&replay.key)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Inserts one tweet row (its author's counter is the caller's business).
pub(super) async fn insert_row(
    conn: &mut sqlx::SqliteConnection,
    tweet: &TweetRecord,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO tweets (id, author_id, text, created_at) VALUES (?, ?, ?, ?)")
        .bind(text(tweet.id))
        .bind(text(tweet.author_id))
        .bind(&tweet.text)
        .bind(tweet.created_at)
        .execute(conn)
        .await?;
    Ok(())
}

fn tweet_page(rows: &[SqliteRow], limit: u32) -> Result<Page<TweetRecord, Uuid>, StoreError> {
    let tweets = rows
        .iter()
        .map(tweet_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::by_id(tweets, limit, |tweet| tweet.id))
}

fn tweet_from_row(row: &SqliteRow) -> Result<TweetRecord, sqlx::Error> {
    Ok(TweetRecord {
        id: uuid(row, "id")?,
        author_id: uuid(row, "author_id")?,
        text: row.try_get("text")?,
        created_at: row.try_get("created_at")?,
    })
}
