//! Keeping the outbox small: events every consumer has handled, and older than the
//! retention window, are deleted.
//!
//! Every tweet, delete, follow and unfollow adds an outbox row in its own transaction
//! (see [`crate::infra::store::OutboxStore`]); without pruning the table only grows. The
//! window (`MINITTER_OUTBOX_RETENTION_DAYS`, 7 by default) keeps events around for a
//! consumer that is behind or being added (a webhook redelivered, a realtime client that
//! resumes); a row some consumer has not handled is kept however old it is. Rows go in
//! small batches with a pause between them, so writers never wait for more than one
//! batch, and the work is the same whatever the table's size (the store looks only at the
//! oldest rows). Every instance may prune: batches on different instances delete
//! different rows or nothing.

use std::sync::Weak;
use std::time::Duration;

use crate::infra::store::{Store, StoreError};

/// How many events one batch deletes at most.
pub const PRUNE_BATCH: u32 = 1000;
/// How often the outbox is pruned.
pub const EVERY: Duration = Duration::from_secs(600);
/// The pause between two batches of one pruning, which lets writers in.
const PAUSE: Duration = Duration::from_millis(50);

/// Deletes the outbox events older than `retention` that every consumer has handled, one
/// batch after another; returns how many went.
pub async fn prune(store: &dyn Store, retention: chrono::Duration) -> Result<u64, StoreError> {
    let cutoff = crate::infra::store::now_millis() - retention;
    in_batches(|batch| store.prune_outbox(cutoff, batch)).await
}

/// Calls `delete` with [`PRUNE_BATCH`] until it deletes fewer, pausing between calls so
/// that writers get in; returns how many rows went. For every table pruned this way.
pub async fn in_batches<F, Fut>(mut delete: F) -> Result<u64, StoreError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<u64, StoreError>>,
{
    let mut pruned = 0;
    loop {
        let deleted = delete(PRUNE_BATCH).await?;
        pruned += deleted;
        if deleted < u64::from(PRUNE_BATCH) {
            return Ok(pruned);
        }
        tokio::time::sleep(PAUSE).await;
    }
}

/// Prunes the outbox now and then every ten minutes, until the store is gone. A failure
/// (the database is down) is logged and tried again at the next turn.
pub async fn prune_periodically(store: Weak<dyn Store>, retention: chrono::Duration) {
    let mut ticks = tokio::time::interval(EVERY);
    loop {
        ticks.tick().await;
        let Some(store) = store.upgrade() else {
            return;
        };
        match prune(store.as_ref(), retention).await {
            Ok(0) => {}
            Ok(pruned) => {
                crate::infra::metrics::outbox_pruned(pruned);
                tracing::info!(pruned, "pruned the outbox");
            }
            Err(error) => tracing::warn!(%error, "cannot prune the outbox now; retrying later"),
        }
    }
}
