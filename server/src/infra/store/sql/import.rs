//! Bulk loading, for the benchmark data generator: one statement per batch, counters
//! recomputed once at the end. Not used by the API.
//!
//! On PostgreSQL each batch is a `COPY … FROM STDIN` of CSV rows, the database's own bulk
//! path (no statement to plan, no JSON to parse: about 1.5 times the rows a second of the
//! JSON statement below, measured with 200k tweets). On SQLite each batch travels as one
//! JSON array, unpacked by the database (`json_each`): one round trip and one plan per
//! batch whatever its size, and none of the parameter limits a multi-row `VALUES` list
//! would hit. The counters are left alone during the load and recomputed by
//! [`ImportStore::finish`]. A batch's edges must not repeat a pair (COPY has no `ON
//! CONFLICT`; the generator draws each follower's followees as a set).
//!
//! The secondary indexes of the bulk tables ([`DEFERRED_INDEXES`]), and on PostgreSQL
//! their foreign keys, are dropped by [`ImportStore::begin`] and built again by
//! [`ImportStore::finish`], as `pg_restore` loads data before indexes and constraints:
//! inserting millions of rows in random order into an index costs a B-tree descent each,
//! and checking a foreign key a lookup per row, where building the index afterwards is
//! one sort and validating the key one join. Their definitions are read from the
//! database's catalogue, so the migrations stay their only source.

use async_trait::async_trait;
use uuid::Uuid;

use super::posts::{self, sqlite_time};
use super::{Backend, QueryExt, Sql, SqlStore, json_list};
use crate::infra::store::{
    Deferred, ImportStore, NewUserRecord, StoreError, TweetRecord, now_millis,
};

/// The indexes a bulk load builds at its end rather than row by row.
const DEFERRED_INDEXES: [&str; 3] = [
    "follows_by_followee",
    "follows_by_follower",
    "tweets_by_author",
];

/// `$1` a JSON array of index names: each one's name and `CREATE INDEX` statement.
const INDEX_DEFINITIONS: Sql = Sql {
    sqlite: "SELECT name, sql FROM sqlite_master
             WHERE type = 'index' AND name IN (SELECT value FROM json_each($1))
             ORDER BY name",
    postgres: "SELECT indexname::text, indexdef FROM pg_indexes
               WHERE schemaname = current_schema()
                 AND indexname IN (SELECT json_array_elements_text($1::json))
               ORDER BY indexname",
};

/// PostgreSQL: the foreign keys of the bulk tables, each one's name and the statements
/// that drop it and add it again.
const FOREIGN_KEYS: &str = "SELECT conname::text,
        format('ALTER TABLE %s DROP CONSTRAINT %I', conrelid::regclass, conname),
        format('ALTER TABLE %s ADD CONSTRAINT %I %s', conrelid::regclass, conname,
               pg_get_constraintdef(oid))
    FROM pg_constraint
    WHERE contype = 'f' AND conrelid IN (to_regclass('follows'), to_regclass('tweets'))
    ORDER BY conname";

/// SQLite: `$1` a JSON array of users.
const USERS: &str =
    "INSERT INTO users (id, username, email, display_name, password_hash, created_at)
     SELECT unhex(value ->> 'id', '-'), value ->> 'username', value ->> 'email',
            value ->> 'display_name', value ->> 'password_hash', value ->> 'created_at'
     FROM json_each($1)";
const COPY_USERS: &str = "COPY users (id, username, email, display_name, password_hash, created_at)
     FROM STDIN (FORMAT csv)";

/// SQLite: `$1` a JSON array of edges; edge ids follow the batch's order.
const FOLLOWS: &str = "INSERT INTO follows (follower_id, followee_id, created_at)
     SELECT unhex(value ->> 'follower_id', '-'), unhex(value ->> 'followee_id', '-'),
            value ->> 'created_at'
     FROM json_each($1) ORDER BY key";
const COPY_FOLLOWS: &str =
    "COPY follows (follower_id, followee_id, created_at) FROM STDIN (FORMAT csv)";

const COPY_TWEETS: &str = "COPY tweets (id, author_id, text, created_at) FROM STDIN (FORMAT csv)";

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
    created_at: &'a str,
}

#[derive(serde::Serialize)]
struct EdgeRow<'a> {
    follower_id: Uuid,
    followee_id: Uuid,
    created_at: &'a str,
}

#[async_trait]
impl<DB: Backend> ImportStore for SqlStore<DB> {
    async fn import_users(&self, users: &[(Uuid, NewUserRecord)]) -> Result<(), StoreError> {
        let now = now_millis();
        let csv = || {
            let mut csv = Csv::default();
            for (id, user) in users {
                csv.plain(id)
                    .text(&user.username)
                    .text(&user.email)
                    .text(&user.display_name)
                    .text(&user.password_hash)
                    .plain(now.to_rfc3339())
                    .end();
            }
            csv.0
        };
        let json = || {
            let created_at = sqlite_time(now);
            let rows: Vec<UserRow> = users
                .iter()
                .map(|(id, user)| UserRow {
                    id: *id,
                    username: &user.username,
                    email: &user.email,
                    display_name: &user.display_name,
                    password_hash: &user.password_hash,
                    created_at: &created_at,
                })
                .collect();
            json_list(&rows)
        };
        self.load(COPY_USERS, csv, USERS, json).await
    }

    async fn import_follows(&self, edges: &[(Uuid, Uuid)]) -> Result<(), StoreError> {
        let now = now_millis();
        let csv = || {
            let mut csv = Csv::default();
            let at = now.to_rfc3339();
            for (follower_id, followee_id) in edges {
                csv.plain(follower_id).plain(followee_id).plain(&at).end();
            }
            csv.0
        };
        let json = || {
            let created_at = sqlite_time(now);
            let rows: Vec<EdgeRow> = edges
                .iter()
                .map(|&(follower_id, followee_id)| EdgeRow {
                    follower_id,
                    followee_id,
                    created_at: &created_at,
                })
                .collect();
            json_list(&rows)
        };
        self.load(COPY_FOLLOWS, csv, FOLLOWS, json).await
    }

    async fn import_tweets(&self, tweets: &[TweetRecord]) -> Result<(), StoreError> {
        let csv = || {
            let mut csv = Csv::default();
            for tweet in tweets {
                csv.plain(tweet.id)
                    .plain(tweet.author_id)
                    .text(&tweet.text)
                    .plain(sqlite_time(tweet.created_at))
                    .end();
            }
            csv.0
        };
        let json = || posts::tweet_rows(tweets.iter());
        self.load(COPY_TWEETS, csv, posts::TWEETS.sqlite, json)
            .await
    }

    async fn begin(&self) -> Result<Deferred, StoreError> {
        let _turn = self.turn().await;
        let mut conn = self.conn().await?;
        let definitions = Self::index_definitions(&mut conn, &DEFERRED_INDEXES).await?;
        for (name, _) in &definitions {
            // A name from the catalogue, one of ours: plain, and quoted all the same.
            Self::query(&format!("DROP INDEX \"{name}\""))
                .execute_on(&mut *conn)
                .await?;
        }
        let mut deferred = Deferred(definitions);
        if let Some(postgres) = DB::as_postgres(&mut conn) {
            let keys: Vec<(String, String, String)> = sqlx::query_as(FOREIGN_KEYS)
                .fetch_all(&mut *postgres)
                .await?;
            for (name, drop, add) in keys {
                sqlx::query(&drop).execute(&mut *postgres).await?;
                deferred.0.push((name, add));
            }
        }
        Ok(deferred)
    }

    async fn finish(&self, deferred: Deferred) -> Result<(), StoreError> {
        let _turn = self.turn().await;
        let mut conn = self.conn().await?;
        // Reading the catalogue first also brings this connection's copy of the schema up
        // to date: SQLite checks a new index's name against that copy when it prepares
        // the statement, and a connection that last looked before `begin` dropped the
        // index would refuse to build it again ("already exists").
        let names: Vec<&str> = deferred.names();
        let present = Self::index_definitions(&mut conn, &names).await?;
        for (name, create) in &deferred.0 {
            if !present.iter().any(|(built, _)| built == name) {
                Self::query(create).execute_on(&mut *conn).await?;
            }
        }
        Self::dialect(&RECOUNT).execute_on(&mut *conn).await?;
        Self::dialect(&ANALYZE).execute_on(&mut *conn).await?;
        Ok(())
    }
}

impl<DB: Backend> SqlStore<DB> {
    /// The indexes of `names` that exist: each one's name and `CREATE INDEX` statement.
    async fn index_definitions(
        conn: &mut DB::Connection,
        names: &[&str],
    ) -> Result<Vec<(String, String)>, sqlx::Error> {
        let names = json_list(names)?;
        Self::dialect(&INDEX_DEFINITIONS)
            .arg(names.as_str())
            .fetch_all_as(conn)
            .await
    }

    /// Loads one batch: on PostgreSQL `copy` fed the rows as `csv`, elsewhere `insert`
    /// with `$1` the rows as `json`. Each builds its rows only when used.
    async fn load(
        &self,
        copy: &str,
        csv: impl FnOnce() -> String,
        insert: &'static str,
        json: impl FnOnce() -> Result<String, sqlx::Error>,
    ) -> Result<(), StoreError> {
        let _turn = self.turn().await;
        let mut conn = self.conn().await?;
        if let Some(postgres) = DB::as_postgres(&mut conn) {
            let mut copying = postgres.copy_in_raw(copy).await?;
            copying.send(csv().into_bytes()).await?;
            copying.finish().await?;
            return Ok(());
        }
        Self::query(insert)
            .arg(json()?)
            .execute_on(&mut *conn)
            .await?;
        Ok(())
    }
}

/// Rows in PostgreSQL's `FORMAT csv`: text quoted with its quotes doubled, so that any
/// character (commas, quotes, newlines) is data and an empty string is not NULL.
#[derive(Default)]
struct Csv(String);

impl Csv {
    /// A value whose text needs no quoting (ids, times).
    fn plain(&mut self, value: impl std::fmt::Display) -> &mut Self {
        use std::fmt::Write;
        // Writing to a String cannot fail.
        let _ = write!(self.0, "{value},");
        self
    }

    fn text(&mut self, value: &str) -> &mut Self {
        self.0.push('"');
        self.0.push_str(&value.replace('"', "\"\""));
        self.0.push_str("\",");
        self
    }

    /// Ends the row (its last field's comma becomes the line's end).
    fn end(&mut self) {
        self.0.pop();
        self.0.push('\n');
    }
}
