//! Where profile pictures live: a local directory (the default, inside the data
//! directory) or any S3-compatible store. Both sit behind [`BlobStore`].
//!
//! Object keys are made by the server (`pictures/<user id>/<UUIDv7>.<ext>`) and never
//! contain anything a client sent. Every failure is a [`BlobError`], which the API answers
//! with 503 and `Retry-After`: storage is a dependency, and the caller's earlier picture
//! is untouched (see `handlers/pictures.rs` for the write-new, switch, delete-old order).
//!
//! S3 is wrapped in a circuit breaker ([`breaker::CircuitBreaker`]): after consecutive
//! failures, picture operations fail at once without reaching S3 until a probe succeeds.

pub mod breaker;
pub mod local;
pub mod s3;

use std::time::SystemTime;

use futures::future::BoxFuture;

/// Storage failed or could not be reached.
#[derive(Debug, thiserror::Error)]
#[error("picture storage failed: {0:#}")]
pub struct BlobError(#[from] pub anyhow::Error);

/// An object, as listed for the orphan sweep.
#[derive(Debug, Clone)]
pub struct Listed {
    pub key: String,
    pub modified: SystemTime,
}

/// A store of immutable objects.
pub trait BlobStore: Send + Sync {
    fn put<'a>(
        &'a self,
        key: &'a str,
        bytes: Vec<u8>,
        content_type: &'a str,
    ) -> BoxFuture<'a, Result<(), BlobError>>;
    /// The object's bytes, or `None` when there is no such object.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, BlobError>>;
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), BlobError>>;
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<Listed>, BlobError>>;
    /// A short-lived URL to fetch the object from directly, when this store offers them.
    fn presigned_get<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, BlobError>>;
}

impl std::fmt::Debug for dyn BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlobStore")
    }
}
