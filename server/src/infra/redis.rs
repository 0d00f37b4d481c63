//! The connection to Redis that instances share (`MINITTER_REDIS_URL`), handed at start-up
//! to whatever keeps shared state there: the gateway's limiter, the login throttle, the
//! event bus, the home feeds and the response cache's versions. One multiplexed connection
//! re-established in the background, and one timeout, so that every use of Redis fails
//! the same way and fast (each use documents what it does then).

use std::time::Duration;

use anyhow::Context;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// The longest a request waits for Redis before it is refused with a 503.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(500);

/// A connection to Redis shared by every request of this instance (multiplexed, and
/// re-established in the background when it breaks).
#[derive(Clone)]
pub struct SharedRedis {
    client: redis::Client,
    connection: ConnectionManager,
}

impl SharedRedis {
    /// Connects to the Redis `url` names; the variable is named in any error, the URL
    /// (which may hold a password) is not.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let client =
            redis::Client::open(url).context("MINITTER_REDIS_URL is not a valid redis:// URL")?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let connection = client
            .get_connection_manager_with_config(config)
            .await
            .context("connecting to the Redis MINITTER_REDIS_URL names")?;
        Ok(Self { client, connection })
    }

    /// The multiplexed connection, shared by every use of this instance.
    pub fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }

    /// The client, for connections of their own (pub/sub subscriptions).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }
}
