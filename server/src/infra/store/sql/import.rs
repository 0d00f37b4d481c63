//! Bulk loading, for the benchmark data generator: one statement per batch, counters
//! recomputed once at the end. Not used by the API.
//!
//! Each batch travels as one JSON array, unpacked by the database (`json_each`,
//! `json_to_recordset`): one round trip and one plan per batch whatever its size, and
//! none of the parameter limits a multi-row `VALUES` list would hit. The counters are
//! left alone during the load and recomputed by [`ImportStore::recount`].

use async_trait::async_trait;
use chrono::SecondsFormat;
use uuid::Uuid;

use super::{Backend, QueryExt, Sql, SqlStore, json_list};
use crate::infra::store::{ImportStore, NewUserRecord, StoreError, TweetRecord, now_millis};

/// `$1` a JSON array of users, `$2` when they were created.
const USERS: Sql = Sql {
    sqlite: "INSERT INTO users (id, username, email, display_name, password_hash, created_at)
             SELECT unhex(value ->> 'id', '-'), value ->> 'username', value ->> 'email',
                    value ->> 'display_name', value ->> 'password_hash', $2
             FROM json_each($1)",
    postgres: "INSERT INTO users (id, username, email, display_name, password_hash, created_at)
               SELECT id, username, email, display_name, password_hash, $2
               FROM json_to_recordset($1::json) AS batch (id uuid, username text, email text,
                                                         display_name text, password_hash text)",
};

/// `$1` a JSON array of edges, `$2` when they were made. DO NOTHING also skips a pair
/// repeated within the batch; edge ids follow the batch's order.
const FOLLOWS: Sql = Sql {
    sqlite: "INSERT INTO follows (follower_id, followee_id, created_at)
             SELECT unhex(value ->> 'follower_id', '-'), unhex(value ->> 'followee_id', '-'), $2
             FROM json_each($1) WHERE true
             ON CONFLICT (follower_id, followee_id) DO NOTHING",
    postgres: "INSERT INTO follows (follower_id, followee_id, created_at)
               SELECT follower_id, followee_id, $2
               FROM json_to_recordset($1::json) AS batch (follower_id uuid, followee_id uuid)
               ON CONFLICT (follower_id, followee_id) DO NOTHING",
};

/// `$1` a JSON array of tweets.
const TWEETS: Sql = Sql {
    sqlite: "INSERT INTO tweets (id, author_id, text, created_at)
             SELECT unhex(value ->> 'id', '-'), unhex(value ->> 'author_id', '-'),
                    value ->> 'text', value ->> 'created_at'
             FROM json_each($1)",
    postgres: "INSERT INTO tweets (id, author_id, text, created_at)
               SELECT id, author_id, text, created_at
               FROM json_to_recordset($1::json)
                   AS batch (id uuid, author_id uuid, text text, created_at timestamptz)",
};

/// Every user's counters from the rows. PostgreSQL's is one pass over each table (a
/// grouped aggregate joined to users rather than three correlated subqueries per user),
/// and leaves rows whose counters are right alone (no dead tuples for nothing).
const RECOUNT: Sql = Sql {
    sqlite: "UPDATE users SET
                 follower_count = (SELECT COUNT(*) FROM follows WHERE followee_id = users.id),
                 following_count = (SELECT COUNT(*) FROM follows WHERE follower_id = users.id),
                 tweet_count = (SELECT COUNT(*) FROM tweets WHERE author_id = users.id)",
    postgres: "UPDATE users SET
                   follower_count = counts.followers,
                   following_count = counts.following,
                   tweet_count = counts.tweets
               FROM (
                   SELECT u.id,
                          COALESCE(fr.n, 0) AS followers,
                          COALESCE(fg.n, 0) AS following,
                          COALESCE(t.n, 0) AS tweets
                   FROM users u
                   LEFT JOIN (SELECT followee_id AS id, COUNT(*) AS n FROM follows
                              GROUP BY followee_id) fr ON fr.id = u.id
                   LEFT JOIN (SELECT follower_id AS id, COUNT(*) AS n FROM follows
                              GROUP BY follower_id) fg ON fg.id = u.id
                   LEFT JOIN (SELECT author_id AS id, COUNT(*) AS n FROM tweets
                              GROUP BY author_id) t ON t.id = u.id
               ) counts
               WHERE users.id = counts.id
                 AND (users.follower_count, users.following_count, users.tweet_count)
                     IS DISTINCT FROM (counts.followers, counts.following, counts.tweets)",
};

/// Fresh planner statistics for the loaded sizes. PostgreSQL's covers only this store's
/// tables (a bare ANALYZE would visit every table the role can reach); SQLite's also folds
/// the WAL into the database file, so that the file alone is a complete copy.
const ANALYZE: Sql = Sql {
    sqlite: "ANALYZE; PRAGMA wal_checkpoint(TRUNCATE)",
    postgres: "ANALYZE users, follows, tweets",
};

#[derive(serde::Serialize)]
struct UserRow<'a> {
    id: Uuid,
    username: &'a str,
    email: &'a str,
    display_name: &'a str,
    password_hash: &'a str,
}

#[derive(serde::Serialize)]
struct EdgeRow {
    follower_id: Uuid,
    followee_id: Uuid,
}

#[derive(serde::Serialize)]
struct TweetRow<'a> {
    id: Uuid,
    author_id: Uuid,
    text: &'a str,
    /// As sqlx writes a time into SQLite (PostgreSQL reads it too).
    created_at: String,
}

#[async_trait]
impl<DB: Backend> ImportStore for SqlStore<DB> {
    async fn import_users(&self, users: &[(Uuid, NewUserRecord)]) -> Result<(), StoreError> {
        let rows: Vec<UserRow> = users
            .iter()
            .map(|(id, user)| UserRow {
                id: *id,
                username: &user.username,
                email: &user.email,
                display_name: &user.display_name,
                password_hash: &user.password_hash,
            })
            .collect();
        self.load(&USERS, json_list(&rows)?).await
    }

    async fn import_follows(&self, edges: &[(Uuid, Uuid)]) -> Result<(), StoreError> {
        let rows: Vec<EdgeRow> = edges
            .iter()
            .map(|&(follower_id, followee_id)| EdgeRow {
                follower_id,
                followee_id,
            })
            .collect();
        self.load(&FOLLOWS, json_list(&rows)?).await
    }

    async fn import_tweets(&self, tweets: &[TweetRecord]) -> Result<(), StoreError> {
        let rows: Vec<TweetRow> = tweets
            .iter()
            .map(|tweet| TweetRow {
                id: tweet.id,
                author_id: tweet.author_id,
                text: &tweet.text,
                created_at: tweet
                    .created_at
                    .to_rfc3339_opts(SecondsFormat::AutoSi, false),
            })
            .collect();
        self.load(&TWEETS, json_list(&rows)?).await
    }

    async fn recount(&self) -> Result<(), StoreError> {
        let _turn = self.turn().await;
        let mut conn = self.conn().await?;
        Self::dialect(&RECOUNT).execute_on(&mut *conn).await?;
        Self::dialect(&ANALYZE).execute_on(&mut *conn).await?;
        Ok(())
    }
}

impl<DB: Backend> SqlStore<DB> {
    /// Runs one batch statement: `$1` the batch as JSON, `$2` now.
    async fn load(&self, sql: &Sql, batch: String) -> Result<(), StoreError> {
        let _turn = self.turn().await;
        Self::dialect(sql)
            .arg(batch)
            .arg(now_millis())
            .execute_on(&mut *self.conn().await?)
            .await?;
        Ok(())
    }
}
