//! The usage ledger: how many requests each key was admitted per UTC day, for usage
//! reports, `GET /v1/usage`, and for seeding a quota counter at the start of a period.
//!
//! Each instance counts what it admitted in memory and adds the counts to the database's
//! `usage` table about once a second (and at shutdown), in one transaction, whatever
//! decides admission (this process or Redis). A crash loses about a second of this
//! instance's counts for the reports, never an acknowledged write; a failed write keeps
//! the counts for the next one. Counting in memory rather than in Redis keeps the hot
//! path at one Redis round trip, and needs no cross-slot bookkeeping in a Redis Cluster.

use std::collections::HashMap;

use chrono::NaiveDate;
use uuid::Uuid;

use crate::infra::store::{SharedStore, StoreError, UsageCount};

/// Admitted requests not yet written: key id → UTC day → count.
type Pending = HashMap<Uuid, HashMap<NaiveDate, u64>>;

pub struct UsageLedger {
    store: SharedStore,
    pending: std::sync::Mutex<Pending>,
    /// One flush at a time: a flush that finds nothing pending has still to wait for the
    /// one writing, or a report right after it would miss the counts in flight.
    flushing: tokio::sync::Mutex<()>,
}

impl UsageLedger {
    pub fn new(store: SharedStore) -> Self {
        Self {
            store,
            pending: Default::default(),
            flushing: Default::default(),
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts `units` admitted requests (or stream messages) of `key_id` on `day`.
    pub fn count(&self, key_id: Uuid, day: NaiveDate, units: u64) {
        *self
            .pending()
            .entry(key_id)
            .or_default()
            .entry(day)
            .or_default() += units;
    }

    /// Requests admitted for a key on UTC days `since..`: written, and counted here but not
    /// yet written.
    pub async fn used_since(&self, key_id: Uuid, since: NaiveDate) -> Result<u64, StoreError> {
        let written = self.store.usage_since(key_id, since).await?;
        let unwritten: u64 = self.pending().get(&key_id).map_or(0, |days| {
            days.iter()
                .filter(|(day, _)| **day >= since)
                .map(|(_, n)| n)
                .sum()
        });
        Ok(written + unwritten)
    }

    /// Writes the counts made since the last flush; when it returns, every count made
    /// before the call is in the database (or the error says it is not).
    pub async fn flush(&self) -> Result<(), StoreError> {
        let _turn = self.flushing.lock().await;
        let batch: Vec<UsageCount> = std::mem::take(&mut *self.pending())
            .into_iter()
            .flat_map(|(key_id, days)| {
                days.into_iter()
                    .map(move |(day, used)| UsageCount { key_id, day, used })
            })
            .collect();
        if batch.is_empty() {
            return Ok(());
        }
        if let Err(error) = self.store.add_usage(&batch).await {
            // Keep the counts for the next flush: nothing admitted is lost.
            let mut pending = self.pending();
            for count in batch {
                *pending
                    .entry(count.key_id)
                    .or_default()
                    .entry(count.day)
                    .or_default() += count.used;
            }
            return Err(error);
        }
        Ok(())
    }
}
