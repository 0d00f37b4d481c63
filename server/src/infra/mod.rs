//! Infrastructure: the database (`store`), Redis, the picture store (`blob`), metrics and
//! trace export. Each is opened at start-up and handed to the services that need it; none
//! knows of a service or of HTTP.

pub mod blob;
pub mod metrics;
pub mod otel;
pub mod redis;
pub mod store;
