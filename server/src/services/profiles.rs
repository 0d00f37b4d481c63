//! Users by id, from a bounded cache in this process ([`crate::services::cache`]).
//!
//! `GET /v1/users/{id}` and every check that a user exists read a user by primary key. The
//! read itself is cheap; the cost is the trip to the database (on SQLite, two thread hops
//! per query, most of the request's CPU in the profile in `docs/benchmarks.md`). A user's
//! row changes when they post or delete (their tweet count), follow or are followed
//! (their counts), or change their picture: each of those is an event, on which the
//! cached user is marked stale, here and, through Redis, on every other instance.
//!
//! Every request that acts as a user asks whether that user still exists
//! ([`Profiles::exists`]): a bearer token outlives nothing, and an operator may have
//! deleted its user. That question is asked far more often than any profile is read, and
//! a user's counts change with every post, so it has a cache of its own ([`Known`]):
//! whether an id exists changes only when the user is deleted, on `user.deleted`
//! (`Slot::Gone`, here and on every other instance), so a busy poster's requests stay
//! cache hits while their profile is read again after each post. An id this cache has not
//! seen is read from the database, so a row deleted behind the server's back is refused
//! too, once the id is not cached (the caches start empty, and are emptied whenever
//! events from other instances may be missed).

use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

use crate::domain::events::Event;
use crate::infra::store::{SharedStore, StoreError, UserRecord};
use crate::services::cache::{RecordCache, Weight};
use crate::services::events::{Origin, Subscriber};

impl Weight for UserRecord {
    fn weight(&self) -> u64 {
        let strings = self.username.len()
            + self.email.len()
            + self.display_name.len()
            + self.password_hash.len()
            + self
                .picture
                .as_ref()
                .map_or(0, |p| p.key.len() + p.etag.len() + 64);
        (200 + strings) as u64
    }
}

/// That a user exists (the entry is the whole record: its key).
#[derive(Debug, Clone, Copy)]
pub struct Known;

impl Weight for Known {
    fn weight(&self) -> u64 {
        0
    }
}

/// Users by id.
pub struct Profiles {
    cache: RecordCache<Uuid, UserRecord>,
    /// The ids known to exist, or known not to.
    known: RecordCache<Uuid, Known>,
}

impl std::fmt::Debug for Profiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profiles").finish_non_exhaustive()
    }
}

impl crate::services::response_cache::RecordsById for Profiles {
    fn forget(&self, ids: &[Uuid]) {
        for id in ids {
            self.cache.invalidate(*id);
        }
    }
}

impl Profiles {
    /// Caches within about `budget_bytes`: an eighth for the ids (64 bytes each), the
    /// rest for the records.
    pub fn new(budget_bytes: u64) -> Self {
        let ids = budget_bytes / 8;
        Self {
            cache: RecordCache::new("users", budget_bytes - ids, 400),
            known: RecordCache::new("user_ids", ids, 64),
        }
    }

    /// Whether the user `id` exists, from the cache or else the database.
    pub async fn exists(&self, store: &SharedStore, id: Uuid) -> Result<bool, StoreError> {
        let known = self
            .known
            .get(&id, || async move {
                Ok::<_, StoreError>(self.user(store, id).await?.map(|_| Known))
            })
            .await?;
        Ok(known.is_some())
    }

    /// The user `id`, from the cache or else the database.
    pub async fn user(
        &self,
        store: &SharedStore,
        id: Uuid,
    ) -> Result<Option<Arc<UserRecord>>, StoreError> {
        self.cache.get(&id, || store.user_by_id(id)).await
    }
}

#[async_trait]
impl Subscriber for Profiles {
    async fn on_event(&self, event: &Event, _origin: Origin) {
        if let Event::UserDeleted { user_id } = event {
            self.cache.gone(*user_id);
            self.known.gone(*user_id);
            return;
        }
        // A deleted tweet's id among them marks nothing that exists here.
        for id in event.changed() {
            self.cache.invalidate(id);
        }
    }

    fn set_in_sync(&self, in_sync: bool) {
        self.cache.keep(in_sync);
        self.known.keep(in_sync);
    }
}
