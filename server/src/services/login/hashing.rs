//! Password hashing with bounded concurrency: argon2 is CPU-bound and slow on purpose, so
//! a flood of logins (or sign-ups) must queue for a few slots, and past a short wait get a
//! 503, rather than take every blocking thread and starve the rest of the API.

use std::time::Duration;

use secrecy::SecretString;

use crate::http::error::ApiError;

/// Argon2 with bounded concurrency: at most `permits` hashes at once.
pub struct Hashing {
    permits: tokio::sync::Semaphore,
    /// How long an excess request waits for a permit before it gets a 503.
    patience: Duration,
}

impl Hashing {
    /// One permit per core: argon2 is CPU-bound, so more at once only queue in the kernel.
    pub fn per_core() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        Self {
            permits: tokio::sync::Semaphore::new(cores),
            patience: Duration::from_secs(2),
        }
    }

    async fn permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, ApiError> {
        match tokio::time::timeout(self.patience, self.permits.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(ApiError::Unavailable(anyhow::anyhow!(
                "every password-hashing slot is busy"
            ))),
        }
    }

    /// [`crate::services::auth::hash_password`], when a slot is free.
    pub async fn hash(&self, password: SecretString) -> Result<String, ApiError> {
        let _permit = self.permit().await?;
        crate::services::auth::hash_password(password)
            .await
            .map_err(ApiError::Internal)
    }

    /// [`crate::services::auth::verify_password`], when a slot is free.
    pub async fn verify(
        &self,
        password: SecretString,
        hash: Option<String>,
    ) -> Result<bool, ApiError> {
        let _permit = self.permit().await?;
        crate::services::auth::verify_password(password, hash)
            .await
            .map_err(ApiError::Internal)
    }
}

impl std::fmt::Debug for Hashing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hashing").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashing_past_its_slots_is_a_503_after_a_short_wait() {
        let hashing = Hashing {
            permits: tokio::sync::Semaphore::new(1),
            patience: Duration::from_millis(20),
        };
        let _busy = hashing.permit().await.expect("the one slot");
        let refused = hashing
            .verify(SecretString::from("guess".to_owned()), None)
            .await;
        assert!(matches!(refused, Err(ApiError::Unavailable(_))));
    }
}
