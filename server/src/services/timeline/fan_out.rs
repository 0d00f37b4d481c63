//! The fan-out: copying a change of an author's tweets into their followers' feeds.
//!
//! The subscriber queues a job per local post or delete once the author's own feed has
//! it; one worker per instance runs the jobs in the order they were queued, off the
//! request, reading each author's followers from a cache rather than the database. Popular
//! authors (past `fan_out_limit` followers) are marked instead, and their tweets reach
//! only their posts feed. The worker also owns recovery: when a change could not be
//! applied it skips the jobs and drops every feed, retrying each second until the feed
//! store answers. It lives apart from the read path and the subscriber because it is the
//! one part that runs on its own task, with its own queue and back-pressure.

use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::Timelines;
use super::feed::{Entry, FeedKey};
use crate::infra::store::StoreError;
use crate::services::cache::Weight;

/// How many fan-out jobs may wait; past that, writers wait for the fan-out to catch up.
pub(super) const FAN_OUT_QUEUE: usize = 10_000;

/// The ids of an author's followers.
pub(super) struct FollowerIds(Vec<Uuid>);

impl Weight for FollowerIds {
    fn weight(&self) -> u64 {
        (self.0.len() * size_of::<Uuid>()) as u64
    }
}

/// Work for the fan-out worker, done in the order it was queued.
pub(super) enum Job {
    Push(Entry),
    Remove {
        tweet_id: Uuid,
        author_id: Uuid,
    },
    /// Answered once every job queued before it is done (for tests).
    Settle(oneshot::Sender<()>),
}

impl Timelines {
    /// Queues fan-out work. A full queue holds the writer back (the post is durable
    /// already; its answer waits) rather than lose the change.
    pub(super) async fn queue(&self, job: Job) {
        if self.jobs.send(job).await.is_err() {
            self.stale.store(true, Ordering::Relaxed);
        }
    }

    /// Waits until the fan-out of every change published so far is done (for tests).
    pub async fn settle(&self) {
        let (done, settled) = oneshot::channel();
        if self.jobs.send(Job::Settle(done)).await.is_ok() {
            let _ = settled.await;
        }
    }

    async fn fan_out(&self, job: Job) {
        match job {
            Job::Push(entry) => {
                let author = entry.author_id;
                let Some(targets) = self.fan_out_targets(author).await else {
                    return;
                };
                self.apply(self.feeds.push(&targets, entry)).await;
            }
            Job::Remove {
                tweet_id,
                author_id,
            } => {
                let Some(targets) = self.fan_out_targets(author_id).await else {
                    return;
                };
                self.apply(self.feeds.remove(&targets, tweet_id)).await;
            }
            Job::Settle(done) => {
                let _ = done.send(());
            }
        }
    }

    /// The feeds a change of `author`'s tweets reaches beyond their own home feed: their
    /// posts feed, and their followers' home feeds unless they are popular.
    async fn fan_out_targets(&self, author: Uuid) -> Option<Vec<FeedKey>> {
        let limit = self.fan_out_limit + 1;
        let load = || async {
            let ids = self.store.follower_ids(author, limit).await?;
            Ok::<_, StoreError>(Some(FollowerIds(ids)))
        };
        let followers = match self.followers.get(&author, load).await {
            Ok(Some(followers)) => followers,
            Ok(None) => return None,
            Err(error) => {
                tracing::warn!(%error, "cannot read followers for a fan-out; feeds will be rebuilt");
                self.stale.store(true, Ordering::Relaxed);
                return None;
            }
        };
        let mut targets = vec![FeedKey::Posts(author)];
        if followers.0.len() > self.fan_out_limit as usize {
            self.apply(self.feeds.mark_popular(author)).await;
        } else {
            targets.extend(followers.0.iter().copied().map(FeedKey::Home));
        }
        Some(targets)
    }

    /// Drops every feed if changes were lost. Jobs meanwhile are skipped (the feeds they
    /// would change are to be dropped anyway); the drop is tried again a second later.
    async fn drop_stale_feeds(&self, last_try: &mut Option<tokio::time::Instant>) {
        if !self.stale.load(Ordering::Relaxed)
            || last_try.is_some_and(|at| at.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        *last_try = Some(tokio::time::Instant::now());
        self.stale.store(false, Ordering::Relaxed);
        match self.feeds.forget_all().await {
            Ok(()) => {
                tracing::info!("dropped every feed after changes were lost; they rebuild on demand")
            }
            Err(error) => {
                tracing::warn!(%error, "cannot drop stale feeds yet; retrying");
                self.stale.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// Runs fan-out jobs in order, and drops stale feeds (checked at least once a second,
/// so that feeds recover after an outage even when nobody posts).
pub(super) async fn fan_out_worker(timelines: Weak<Timelines>, mut queue: mpsc::Receiver<Job>) {
    let mut last_try = None;
    loop {
        let job = match tokio::time::timeout(Duration::from_secs(1), queue.recv()).await {
            Ok(Some(job)) => Some(job),
            Ok(None) => return,
            Err(_) => None,
        };
        let Some(timelines) = timelines.upgrade() else {
            return;
        };
        // While the feeds are stale the changes they would get are skipped (the feeds are
        // to be dropped); a Settle is always answered.
        if let Some(job) = job
            && (matches!(job, Job::Settle(_)) || !timelines.stale.load(Ordering::Relaxed))
        {
            timelines.fan_out(job).await;
        }
        timelines.drop_stale_feeds(&mut last_try).await;
    }
}
