//! Bulk loading, for the benchmark data generator: many rows per statement, counters
//! recomputed once at the end. Not used by the API.
//!
//! Each batch is one `INSERT ... SELECT FROM UNNEST(...)` of one array per column: one
//! round trip and one plan per batch whatever its size, and none of the 65535-parameter
//! limit that a multi-row `VALUES` list would hit. The counters are left alone during the
//! load and recomputed by [`ImportStore::recount`] with set-based updates.

use async_trait::async_trait;
use uuid::Uuid;

use super::PgStore;
use crate::infra::store::{ImportStore, NewUserRecord, StoreError, TweetRecord, now_millis};

#[async_trait]
impl ImportStore for PgStore {
    async fn import_users(&self, users: &[(Uuid, NewUserRecord)]) -> Result<(), StoreError> {
        let ids: Vec<Uuid> = users.iter().map(|(id, _)| *id).collect();
        let usernames: Vec<&str> = users.iter().map(|(_, u)| u.username.as_str()).collect();
        let emails: Vec<&str> = users.iter().map(|(_, u)| u.email.as_str()).collect();
        let display_names: Vec<&str> = users.iter().map(|(_, u)| u.display_name.as_str()).collect();
        let password_hashes: Vec<&str> = users
            .iter()
            .map(|(_, u)| u.password_hash.as_str())
            .collect();
        sqlx::query(
            "INSERT INTO users (id, username, email, display_name, password_hash, created_at)
             SELECT id, username, email, display_name, password_hash, $6
             FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[])
                 AS batch (id, username, email, display_name, password_hash)",
        )
        .bind(ids)
        .bind(usernames)
        .bind(emails)
        .bind(display_names)
        .bind(password_hashes)
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn import_follows(&self, edges: &[(Uuid, Uuid)]) -> Result<(), StoreError> {
        let followers: Vec<Uuid> = edges.iter().map(|(follower, _)| *follower).collect();
        let followees: Vec<Uuid> = edges.iter().map(|(_, followee)| *followee).collect();
        // DO NOTHING also skips a pair repeated within the batch. Edge ids follow the
        // batch's order.
        sqlx::query(
            "INSERT INTO follows (follower_id, followee_id, created_at)
             SELECT follower_id, followee_id, $3
             FROM UNNEST($1::uuid[], $2::uuid[]) AS batch (follower_id, followee_id)
             ON CONFLICT (follower_id, followee_id) DO NOTHING",
        )
        .bind(followers)
        .bind(followees)
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn import_tweets(&self, tweets: &[TweetRecord]) -> Result<(), StoreError> {
        let ids: Vec<Uuid> = tweets.iter().map(|t| t.id).collect();
        let authors: Vec<Uuid> = tweets.iter().map(|t| t.author_id).collect();
        let texts: Vec<&str> = tweets.iter().map(|t| t.text.as_str()).collect();
        let created: Vec<_> = tweets.iter().map(|t| t.created_at).collect();
        sqlx::query(
            "INSERT INTO tweets (id, author_id, text, created_at)
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[])",
        )
        .bind(ids)
        .bind(authors)
        .bind(texts)
        .bind(created)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn recount(&self) -> Result<(), StoreError> {
        // One statement, one pass over each table: each count is a grouped aggregate
        // joined to users, rather than three correlated subqueries per user. Rows whose
        // counters are already right are not rewritten (no dead tuples for nothing).
        sqlx::query(
            "UPDATE users SET
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
        )
        .execute(&self.pool)
        .await?;
        // Fresh statistics, so that the planner sees the loaded sizes at once rather than
        // after autovacuum gets round to them. Only this store's tables: a bare ANALYZE
        // would visit every table the role can reach in the database.
        sqlx::query("ANALYZE users, follows, tweets")
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
