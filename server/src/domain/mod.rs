//! The domain: the records the store returns and the events that say what changed. What
//! every other layer speaks, so it depends on none of them.

pub mod events;
pub mod ip_policy;
pub mod records;
pub mod webhooks;
