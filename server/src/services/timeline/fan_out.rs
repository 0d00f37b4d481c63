//! The fan-out: copying a change of an author's tweets into their followers' feeds.
//!
//! The timeline service is a consumer of the outbox ([`crate::services::outbox`]): each
//! post and delete the database committed is read from there, in commit order, by one
//! instance at a time, and copied into the followers' feeds, reading each author's
//! followers from a cache rather than the database. So a post whose instance died right
//! after the commit still reaches every follower once an instance runs again (the
//! author's own feed changed before the post was answered). A copy is idempotent (a feed
//! holds a tweet once), as reading at least once requires. Popular authors (past
//! `fan_out_limit` followers) are marked instead, and their tweets reach only their
//! posts feed. Recovery lives here too: when a change could not be applied to the feeds,
//! they are all dropped, tried each second until the feed store answers.

use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use super::Timelines;
use super::feed::FeedKey;
use crate::domain::events::Event;
use crate::infra::store::{OutboxEntry, Store, StoreError};
use crate::services::cache::Weight;
use crate::services::outbox::{Consumer, Reader, Stopped};

/// The consumer's name, its position's key in the database.
pub(super) const HOME_FEEDS: &str = "home_feeds";

/// The ids of an author's followers.
pub(super) struct FollowerIds(Vec<Uuid>);

impl Weight for FollowerIds {
    fn weight(&self) -> u64 {
        (self.0.len() * size_of::<Uuid>()) as u64
    }
}

#[async_trait]
impl Consumer for Timelines {
    fn reader(&self) -> &Reader {
        &self.fan_out
    }

    fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    async fn handle(&self, batch: &[(Event, &OutboxEntry)]) -> Result<(), Stopped> {
        for (handled, (event, _)) in batch.iter().enumerate() {
            self.fan_out(event)
                .await
                .map_err(|error| Stopped { handled, error })?;
        }
        Ok(())
    }
}

impl Timelines {
    /// Applies one event to the feeds. While the feeds are stale the changes they would
    /// get are skipped: they are to be dropped, and rebuilt from the database.
    async fn fan_out(&self, event: &Event) -> Result<(), StoreError> {
        if self.stale.load(Ordering::Relaxed) {
            return Ok(());
        }
        match event {
            Event::TweetCreated { tweet } => {
                let entry = super::entry_of(tweet);
                if let Some(targets) = self.fan_out_targets(tweet.author_id).await? {
                    self.apply(self.feeds.push(&targets, entry)).await;
                }
            }
            Event::TweetDeleted {
                tweet_id,
                author_id,
            } => {
                if let Some(targets) = self.fan_out_targets(*author_id).await? {
                    self.apply(self.feeds.remove(&targets, *tweet_id)).await;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Waits until the fan-out of every change committed so far is done (for tests).
    pub async fn settle(&self) {
        if let Err(error) = crate::services::outbox::catch_up(self).await {
            tracing::warn!(%error, "the fan-out could not catch up");
        }
    }

    /// The feeds a change of `author`'s tweets reaches beyond their own home feed: their
    /// posts feed, and their followers' home feeds unless they are popular (who are
    /// marked so instead).
    async fn fan_out_targets(&self, author: Uuid) -> Result<Option<Vec<FeedKey>>, StoreError> {
        let limit = self.fan_out_limit + 1;
        let load = || async {
            let ids = self.store.follower_ids(author, limit).await?;
            Ok::<_, StoreError>(Some(FollowerIds(ids)))
        };
        let Some(followers) = self.followers.get(&author, load).await? else {
            return Ok(None);
        };
        let mut targets = vec![FeedKey::Posts(author)];
        if followers.0.len() > self.fan_out_limit as usize {
            self.apply(self.feeds.mark_popular(author)).await;
        } else {
            targets.extend(followers.0.iter().copied().map(FeedKey::Home));
        }
        Ok(Some(targets))
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

/// Drops the feeds whenever changes were lost, checking each second, so that they recover
/// after an outage even when nobody posts.
pub(super) async fn recover_stale_feeds(timelines: Weak<Timelines>) {
    let mut last_try = None;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Some(timelines) = timelines.upgrade() else {
            return;
        };
        timelines.drop_stale_feeds(&mut last_try).await;
    }
}
