//! The usage ledger: how many requests each key was admitted per UTC day (and, for the
//! usage histories, how many of those were answered with a 4xx and how many were refused
//! with 429), for usage reports, `GET /v1/usage`, and for seeding a quota counter at the
//! start of a period.
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

use crate::infra::store::{SharedStore, StoreError, Tally, UsageCount};

/// Requests not yet written: key id → UTC day → counts.
type Pending = HashMap<Uuid, HashMap<NaiveDate, Tally>>;

pub struct UsageLedger {
    store: SharedStore,
    pending: std::sync::Mutex<Pending>,
    /// One flush at a time: a flush that finds nothing pending has still to wait for the
    /// one writing, or a report right after it would miss the counts in flight.
    flushing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for UsageLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UsageLedger")
    }
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
        self.add(key_id, day, |tally| tally.used += units);
    }

    /// Counts an admitted request of `key_id` on `day` that was answered with a 4xx.
    pub fn count_client_error(&self, key_id: Uuid, day: NaiveDate) {
        self.add(key_id, day, |tally| tally.client_errors += 1);
    }

    /// Counts a request of `key_id` on `day` refused by the throttle or the quota.
    pub fn count_throttled(&self, key_id: Uuid, day: NaiveDate) {
        self.add(key_id, day, |tally| tally.throttled += 1);
    }

    fn add(&self, key_id: Uuid, day: NaiveDate, change: impl FnOnce(&mut Tally)) {
        change(
            self.pending()
                .entry(key_id)
                .or_default()
                .entry(day)
                .or_default(),
        );
    }

    /// Requests admitted for a key on UTC days `since..`: written, and counted here but not
    /// yet written.
    pub async fn used_since(&self, key_id: Uuid, since: NaiveDate) -> Result<u64, StoreError> {
        let written = self.store.usage_since(key_id, since).await?;
        let unwritten: u64 = self.pending().get(&key_id).map_or(0, |days| {
            days.iter()
                .filter(|(day, _)| **day >= since)
                .map(|(_, tally)| tally.used)
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
                    .map(move |(day, tally)| UsageCount { key_id, day, tally })
            })
            .collect();
        if batch.is_empty() {
            return Ok(());
        }
        if let Err(error) = self.store.add_usage(&batch).await {
            // Keep the counts for the next flush: nothing admitted is lost.
            let mut pending = self.pending();
            for count in batch {
                pending
                    .entry(count.key_id)
                    .or_default()
                    .entry(count.day)
                    .or_default()
                    .add(count.tally);
            }
            return Err(error);
        }
        Ok(())
    }
}
