//! Users by id, from a bounded cache in this process ([`crate::cache`]).
//!
//! `GET /v1/users/{id}` and every check that a user exists read a user by primary key. The
//! read itself is cheap; the cost is the trip to the database (on SQLite, two thread hops
//! per query, most of the request's CPU in the profile in `docs/benchmarks.md`). A user's
//! row changes when they post or delete (their tweet count), follow or are followed
//! (their counts), or change their picture: each of those is an event, on which the
//! cached user is marked stale, here and, through Redis, on every other instance.

use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

use crate::cache::{RecordCache, Weight};
use crate::events::{Event, Origin, Subscriber};
use crate::store::{SharedStore, StoreError, UserRecord};

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

/// Users by id.
pub struct Profiles {
    cache: RecordCache<Uuid, UserRecord>,
}

impl std::fmt::Debug for Profiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profiles").finish_non_exhaustive()
    }
}

impl crate::response_cache::RecordsById for Profiles {
    fn forget(&self, ids: &[Uuid]) {
        for id in ids {
            self.cache.invalidate(*id);
        }
    }
}

impl Profiles {
    pub fn new(budget_bytes: u64) -> Self {
        Self {
            cache: RecordCache::new("users", budget_bytes, 400),
        }
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
        // A deleted tweet's id among them marks nothing that exists here.
        for id in event.changed() {
            self.cache.invalidate(id);
        }
    }

    fn resync(&self) {
        self.cache.clear();
    }
}
