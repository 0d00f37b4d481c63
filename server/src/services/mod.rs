//! Services: what the handlers call to do the work, each owning one concern and its
//! caches: the event bus, the gateway (keys, limits, usage), logins and passwords, users
//! by id, home timelines, the response cache, and the outbox's upkeep.

pub mod auth;
pub mod cache;
pub mod events;
pub mod gateway;
pub mod login;
pub mod outbox;
pub mod profiles;
pub mod realtime;
pub mod response_cache;
pub mod timeline;
pub mod webhooks;
