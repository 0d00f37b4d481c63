//! Posting a tweet: the row, its author's counter, its outbox event and its
//! Idempotency-Key record, in one transaction.
//!
//! On SQLite posts share transactions, and so fsyncs: a post waits in a queue while the
//! writer is busy, and the next transaction takes everything that queued meanwhile (up to
//! [`GROUP_MAX`]). Under load that turns one `synchronous=FULL` commit per post into one
//! per group; alone, a post commits at once. Each post is acknowledged only after the
//! commit that holds it; if a group fails, its posts are retried one transaction each,
//! so that one bad post cannot fail the others. On PostgreSQL, where many connections
//! commit in parallel, each post is its own transaction ([`SqlStore::write`]).

use chrono::SecondsFormat;
use sqlx::Transaction;
use uuid::Uuid;

use super::{Backend, QueryExt, Sql, SqlStore, json_list, outbox};
use crate::domain::events::Event;
use crate::infra::store::{StoreError, StoredResponse, TweetRecord};

/// A tweet to store, with its event and the response its Idempotency-Key record will
/// replay.
pub struct Post {
    tweet: TweetRecord,
    /// `tweet.created`, written to the outbox and returned to the caller to publish.
    pub(super) created: Event,
    replay: Option<OwnedReplay>,
}

struct OwnedReplay {
    user_id: Uuid,
    key: String,
    location: String,
    body: String,
}

impl Post {
    pub fn new(tweet: &TweetRecord, replay: Option<StoredResponse<'_>>) -> Self {
        Self {
            tweet: tweet.clone(),
            created: Event::TweetCreated {
                tweet: tweet.clone(),
            },
            replay: replay.map(|r| OwnedReplay {
                user_id: r.user_id,
                key: r.key.to_owned(),
                location: r.location.to_owned(),
                body: r.body.to_owned(),
            }),
        }
    }
}

/// A post in the queue, with where to say how its commit went.
pub(super) type Queued = (Post, tokio::sync::oneshot::Sender<Result<(), StoreError>>);

/// The most posts one transaction takes.
const GROUP_MAX: usize = 256;

/// The committer: runs until every sender (every clone of the store) is gone.
pub(super) struct GroupCommit;

impl GroupCommit {
    pub(super) fn start<DB: Backend>(
        store: SqlStore<DB>,
        mut queue: tokio::sync::mpsc::Receiver<Queued>,
    ) {
        tokio::spawn(async move {
            while let Some(first) = queue.recv().await {
                let mut group = vec![first];
                while group.len() < GROUP_MAX {
                    match queue.try_recv() {
                        Ok(post) => group.push(post),
                        Err(_) => break,
                    }
                }
                let turn = store.turn().await;
                let posts: Vec<&Post> = group.iter().map(|(post, _)| post).collect();
                if store.commit_posts(&posts).await.is_ok() {
                    drop(turn);
                    for (_, done) in group {
                        let _ = done.send(Ok(()));
                    }
                    continue;
                }
                for (post, done) in group {
                    let _ = done.send(store.commit_posts(&[&post]).await);
                }
                drop(turn);
            }
        });
    }
}

impl<DB: Backend> SqlStore<DB> {
    /// Stores `post`: through the group commit where there is one, else in a
    /// transaction of its own.
    pub(super) async fn post(&self, post: Post) -> Result<(), StoreError> {
        let Some(queue) = &self.posts else {
            let post = &post;
            return self
                .write(move |tx| async move { commit(tx, &[post]).await })
                .await;
        };
        let closed = || StoreError::Unavailable(sqlx::Error::PoolClosed);
        let (done, committed) = tokio::sync::oneshot::channel();
        // The queue is bounded: when it is full, posting waits (backpressure).
        if queue.send((post, done)).await.is_err() {
            return Err(closed());
        }
        committed.await.unwrap_or_else(|_| Err(closed()))
    }

    /// One transaction for `posts`, in the committer's turn.
    async fn commit_posts(&self, posts: &[&Post]) -> Result<(), StoreError> {
        Ok(commit(self.pool.begin().await?, posts).await?)
    }
}

/// `$1` a JSON array of tweets ([`tweet_rows`]), inserted in the array's order.
pub(super) const TWEETS: Sql = Sql {
    sqlite: "INSERT INTO tweets (id, author_id, text, created_at)
             SELECT unhex(value ->> 'id', '-'), unhex(value ->> 'author_id', '-'),
                    value ->> 'text', value ->> 'created_at'
             FROM json_each($1) ORDER BY key",
    postgres: "INSERT INTO tweets (id, author_id, text, created_at)
               SELECT id, author_id, text, created_at
               FROM json_to_recordset($1::json)
                   AS batch (id uuid, author_id uuid, text text, created_at timestamptz)",
};

/// `$1` the same array: each author's counter moves by their tweets in it.
const COUNTERS: Sql = Sql {
    sqlite: "UPDATE users SET tweet_count = tweet_count + posted.n
             FROM (SELECT unhex(value ->> 'author_id', '-') AS author, COUNT(*) AS n
                   FROM json_each($1) GROUP BY 1) AS posted
             WHERE users.id = posted.author",
    postgres: "UPDATE users SET tweet_count = tweet_count + posted.n
               FROM (SELECT author_id, COUNT(*) AS n
                     FROM json_to_recordset($1::json) AS batch (author_id uuid)
                     GROUP BY author_id) AS posted
               WHERE users.id = posted.author_id",
};

#[derive(serde::Serialize)]
struct TweetRow<'a> {
    id: Uuid,
    author_id: Uuid,
    text: &'a str,
    created_at: String,
}

/// `tweets` as the JSON array that [`TWEETS`] and [`COUNTERS`] read.
pub(super) fn tweet_rows<'a>(
    tweets: impl Iterator<Item = &'a TweetRecord>,
) -> Result<String, sqlx::Error> {
    let rows: Vec<TweetRow> = tweets
        .map(|tweet| TweetRow {
            id: tweet.id,
            author_id: tweet.author_id,
            text: &tweet.text,
            created_at: sqlite_time(tweet.created_at),
        })
        .collect();
    json_list(&rows)
}

/// A time as sqlx writes it into SQLite (PostgreSQL reads it too).
pub(super) fn sqlite_time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

/// `$1` a JSON array of [`ReplayRow`]s: each claimed Idempotency-Key record gets the
/// response its retries will replay.
const REPLAYS: Sql = Sql {
    sqlite: "UPDATE idempotency_keys
             SET response_status = 201, response_location = posted.value ->> 'location',
                 response_body = posted.value ->> 'body',
                 resource_id = unhex(posted.value ->> 'tweet_id', '-')
             FROM json_each($1) AS posted
             WHERE idempotency_keys.user_id = unhex(posted.value ->> 'user_id', '-')
               AND idempotency_keys.key = posted.value ->> 'key'",
    postgres: "UPDATE idempotency_keys
               SET response_status = 201, response_location = posted.location,
                   response_body = posted.body, resource_id = posted.tweet_id
               FROM json_to_recordset($1::json)
                   AS posted (user_id uuid, key text, location text, body text, tweet_id uuid)
               WHERE idempotency_keys.user_id = posted.user_id
                 AND idempotency_keys.key = posted.key",
};

#[derive(serde::Serialize)]
struct ReplayRow<'a> {
    user_id: Uuid,
    key: &'a str,
    location: &'a str,
    body: &'a str,
    tweet_id: Uuid,
}

/// The posts' tweets, their authors' counters, their events and their Idempotency-Key
/// records, each one statement for the whole group (SQLite runs every statement on a thread of its own, one round trip
/// and two thread switches each, so a group of 64 posts costs at most 4 round trips rather than
/// 256; see docs/benchmarks.md, "Profile of `POST /v1/tweets`"), then the commit.
async fn commit<DB: Backend>(
    mut tx: Transaction<'static, DB>,
    posts: &[&Post],
) -> Result<(), sqlx::Error> {
    let rows = tweet_rows(posts.iter().map(|post| &post.tweet))?;
    SqlStore::<DB>::dialect(&TWEETS)
        .arg(rows.as_str())
        .execute_on(&mut *tx)
        .await?;
    SqlStore::<DB>::dialect(&COUNTERS)
        .arg(rows.as_str())
        .execute_on(&mut *tx)
        .await?;
    outbox::add_all(&mut tx, posts.iter().map(|post| &post.created)).await?;
    let replays: Vec<ReplayRow> = posts
        .iter()
        .filter_map(|post| {
            post.replay.as_ref().map(|replay| ReplayRow {
                user_id: replay.user_id,
                key: &replay.key,
                location: &replay.location,
                body: &replay.body,
                tweet_id: post.tweet.id,
            })
        })
        .collect();
    if !replays.is_empty() {
        SqlStore::<DB>::dialect(&REPLAYS)
            .arg(json_list(&replays)?)
            .execute_on(&mut *tx)
            .await?;
    }
    tx.commit().await
}
