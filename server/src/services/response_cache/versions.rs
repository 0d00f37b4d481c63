//! A version per resource (a user's or a tweet's id), changed by every write to it: a kept
//! answer is current only while the versions of the resources in its path are the ones
//! read before it was produced.
//!
//! Reading the versions *before* the operation runs is what makes the cache safe against
//! the late writer: if a write lands while the operation reads the database, the version
//! changes and the answer, stored with the older version, is never served.
//!
//! Alone, versions live in process. With Redis they live in Redis (`rc:v:<id>`), and the
//! instance that acknowledges a write changes them before it answers, so no instance
//! serves a copy the write replaced, even in the moment before the event reaches it. A
//! version is a random number rather than a counter: a Redis that lost its data, or a key
//! that expired, can never bring an old version back. A resource never written (or not
//! written for two hours, longer than any answer is kept) reads as version 0.

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use async_trait::async_trait;
use uuid::Uuid;

use crate::infra::redis::{REDIS_TIMEOUT, SharedRedis};

/// How long Redis keeps a version after the last write: longer than the longest TTL a
/// document may give (3600 s), so that an answer never outlives the version it was made at.
const VERSION_LIFETIME_SECONDS: u64 = 7200;

/// Where resource versions are kept.
#[async_trait]
pub trait Versions: Send + Sync {
    /// The current version of each of `ids`, in order.
    async fn read(&self, ids: &[Uuid]) -> Result<Vec<u64>>;
    /// Gives each of `ids` a new version.
    async fn change(&self, ids: &[Uuid]) -> Result<()>;
}

/// Versions of one instance, bounded: a forgotten version reads as a new one, which only
/// costs a miss.
pub struct LocalVersions {
    versions: quick_cache::sync::Cache<Uuid, u64>,
    next: AtomicU64,
}

impl LocalVersions {
    pub fn new(capacity: usize) -> Self {
        Self {
            versions: quick_cache::sync::Cache::new(capacity.max(1)),
            // 0 is the version a resource gets in Redis before any write; not used here.
            next: AtomicU64::new(1),
        }
    }

    fn fresh(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }
}

#[async_trait]
impl Versions for LocalVersions {
    async fn read(&self, ids: &[Uuid]) -> Result<Vec<u64>> {
        Ok(ids
            .iter()
            .map(|id| {
                self.versions
                    .get_or_insert_with(id, || Ok::<_, std::convert::Infallible>(self.fresh()))
                    .unwrap_or_default()
            })
            .collect())
    }

    async fn change(&self, ids: &[Uuid]) -> Result<()> {
        for id in ids {
            self.versions.insert(*id, self.fresh());
        }
        Ok(())
    }
}

/// Versions shared by every instance through Redis.
pub struct RedisVersions {
    redis: SharedRedis,
}

impl RedisVersions {
    pub fn new(redis: SharedRedis) -> Self {
        Self { redis }
    }
}

fn key(id: &Uuid) -> String {
    format!("rc:v:{id}")
}

#[async_trait]
impl Versions for RedisVersions {
    async fn read(&self, ids: &[Uuid]) -> Result<Vec<u64>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(key).collect();
        let mut connection = self.redis.connection();
        let versions: Vec<Option<u64>> = tokio::time::timeout(
            REDIS_TIMEOUT,
            redis::cmd("MGET").arg(&keys).query_async(&mut connection),
        )
        .await
        .context("Redis did not answer")??;
        Ok(versions
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect())
    }

    async fn change(&self, ids: &[Uuid]) -> Result<()> {
        let mut pipeline = redis::pipe();
        for id in ids {
            // Never 0, the version of a resource Redis knows nothing of.
            let version = rand::random::<u64>().max(1);
            pipeline
                .cmd("SET")
                .arg(key(id))
                .arg(version)
                .arg("EX")
                .arg(VERSION_LIFETIME_SECONDS)
                .ignore();
        }
        let mut connection = self.redis.connection();
        tokio::time::timeout(REDIS_TIMEOUT, pipeline.exec_async(&mut connection))
            .await
            .context("Redis did not answer")??;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_change_gives_a_version_never_seen_before() {
        let versions = LocalVersions::new(100);
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let before = versions.read(&[a, b]).await.expect("local versions");
        assert_eq!(
            versions.read(&[a, b]).await.expect("local versions"),
            before
        );
        versions.change(&[a]).await.expect("local versions");
        let after = versions.read(&[a, b]).await.expect("local versions");
        assert_ne!(after[0], before[0]);
        assert_eq!(after[1], before[1]);
    }
}
