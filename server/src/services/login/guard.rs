//! The service the login handler calls: [`LoginGuard::begin`] names the three budgets an
//! attempt counts against (this account from this [`Client`], this account from every
//! client, this API key on every account), reserves a slot in each or refuses with a 429,
//! and hands back an [`Attempt`] whose outcome settles the reservation. Where the budgets
//! are kept is chosen once, at start-up: in this process, or in Redis when instances
//! share one.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::LoginLimits;
use super::counters::{AttemptCounters, Budget, Outcome, Verdict};
use super::memory::InProcessCounters;
use super::redis::RedisCounters;
use crate::http::error::ApiError;
use crate::infra::redis::SharedRedis;

/// How long an attempt waits for other attempts' outcomes when their reservations fill a
/// budget, before it is refused: several hashes' time.
const PATIENCE: Duration = Duration::from_secs(3);

/// Who is logging in: the API key, and the address the request came from when known.
///
/// The address is the connection's peer: behind a proxy every client has the proxy's, and
/// the client is then the key alone. IPv6 addresses count by their /64, which one
/// subscriber usually holds whole.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    pub key: Uuid,
    pub address: Option<IpAddr>,
}

impl Client {
    fn digest(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.key.as_bytes());
        match self.address.map(|address| address.to_canonical()) {
            Some(IpAddr::V4(v4)) => hasher.update(v4.octets()),
            Some(IpAddr::V6(v6)) => hasher.update(&v6.octets()[..8]),
            None => {}
        }
        hex(&hasher.finalize())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The login guard every instance's `log_in` goes through.
pub struct LoginGuard {
    limits: LoginLimits,
    counters: Arc<dyn AttemptCounters>,
}

/// An attempt that was let through: report how it ended with [`Attempt::succeeded`],
/// [`Attempt::failed`] or [`Attempt::abandoned`]. Dropped without a report (the request
/// was cancelled mid-hash), it counts as a failure.
pub struct Attempt {
    id: Uuid,
    /// The account's budgets (one Redis hash tag), then the key's (another).
    groups: [Vec<Budget>; 2],
    counters: Arc<dyn AttemptCounters>,
    settled: bool,
}

impl LoginGuard {
    pub fn new(limits: LoginLimits, redis: Option<&SharedRedis>) -> Self {
        let counters: Arc<dyn AttemptCounters> = match redis {
            Some(redis) => Arc::new(RedisCounters::new(redis.connection(), limits)),
            None => Arc::new(InProcessCounters::new(limits)),
        };
        Self { limits, counters }
    }

    /// Reserves an attempt to log in to `email` from `client`, or refuses it (429) when
    /// a budget is spent by failures in the window. While in-flight attempts fill a
    /// budget, waits for their outcomes (up to a few seconds).
    pub async fn begin(&self, email: &str, client: Client) -> Result<Attempt, ApiError> {
        let account = hex(&Sha256::digest(email.to_lowercase().as_bytes()));
        let budget = |counter: String, limit| Budget { counter, limit };
        let groups = [
            vec![
                budget(
                    format!("login:{{a:{account}}}:all"),
                    self.limits.per_account,
                ),
                budget(
                    format!("login:{{a:{account}}}:c:{}", client.digest()),
                    self.limits.per_client,
                ),
            ],
            vec![budget(
                format!("login:{{k:{}}}", client.key),
                self.limits.per_key,
            )],
        ];
        let id = Uuid::now_v7();
        let deadline = Instant::now() + PATIENCE;
        let mut pause = Duration::from_millis(5);
        loop {
            match self.reserve(&groups, id).await? {
                Verdict::Reserved => {
                    return Ok(Attempt {
                        id,
                        groups,
                        counters: Arc::clone(&self.counters),
                        settled: false,
                    });
                }
                Verdict::Spent { retry_after } => {
                    return Err(ApiError::LoginThrottled {
                        retry_after: seconds(retry_after),
                    });
                }
                Verdict::Busy if Instant::now() + pause < deadline => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                Verdict::Busy => return Err(ApiError::LoginThrottled { retry_after: 1 }),
            }
        }
    }

    /// Reserves in the account's group, then the key's; gives the first back when the
    /// second is not reserved, so that a waiting attempt holds nothing.
    async fn reserve(&self, groups: &[Vec<Budget>; 2], id: Uuid) -> Result<Verdict, ApiError> {
        let [account, key] = groups;
        let verdict = self.counters.reserve(account, id).await?;
        if verdict != Verdict::Reserved {
            return Ok(verdict);
        }
        let verdict = self.counters.reserve(key, id).await;
        if verdict.as_ref().ok() != Some(&Verdict::Reserved) {
            self.counters.settle(account, id, Outcome::Released).await?;
        }
        verdict
    }
}

/// Whole seconds, rounded up, at least one: what `Retry-After` says.
fn seconds(duration: Duration) -> u64 {
    (duration.as_secs() + u64::from(duration.subsec_nanos() > 0)).max(1)
}

impl Attempt {
    /// A correct password: the attempt costs nothing.
    pub async fn succeeded(self) -> Result<(), ApiError> {
        self.settle(Outcome::Released).await
    }

    /// A wrong password (or an unknown email): one failure in every budget.
    pub async fn failed(self) -> Result<(), ApiError> {
        self.settle(Outcome::Failed).await
    }

    /// No password was checked (the database or the hashing slots did not answer): the
    /// reservation is given back.
    pub async fn abandoned(self) -> Result<(), ApiError> {
        self.settle(Outcome::Released).await
    }

    async fn settle(mut self, outcome: Outcome) -> Result<(), ApiError> {
        self.settled = true;
        for group in &self.groups {
            self.counters.settle(group, self.id, outcome).await?;
        }
        Ok(())
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        // The request was dropped after its reservation, maybe mid-hash: a failure. Without
        // a runtime (or if this fails), the lease turns it into one later.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (id, groups, counters) = (self.id, self.groups.clone(), Arc::clone(&self.counters));
            runtime.spawn(async move {
                for group in &groups {
                    let _ = counters.settle(group, id, Outcome::Failed).await;
                }
            });
        }
    }
}

impl std::fmt::Debug for LoginGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginGuard")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(60);
    const LEASE: Duration = Duration::from_secs(5);

    fn limits(per_client: u64, per_account: u64, per_key: u64) -> LoginLimits {
        LoginLimits {
            per_client,
            per_account,
            per_key,
            window: WINDOW,
            lease: LEASE,
        }
    }

    fn client(key: Uuid, address: &str) -> Client {
        Client {
            key,
            address: Some(address.parse().expect("an address")),
        }
    }

    #[test]
    fn clients_are_a_key_and_an_address_and_ipv6_counts_by_its_64() {
        let key = Uuid::now_v7();
        let digest = |address| client(key, address).digest();
        assert_eq!(digest("2001:db8:1:2::1"), digest("2001:db8:1:2:ffff::9"));
        assert_ne!(digest("2001:db8:1:2::1"), digest("2001:db8:1:3::1"));
        assert_eq!(digest("192.0.2.7"), digest("::ffff:192.0.2.7"));
        assert_ne!(digest("192.0.2.7"), digest("192.0.2.8"));
        assert_ne!(
            digest("192.0.2.7"),
            client(Uuid::now_v7(), "192.0.2.7").digest()
        );
    }

    #[tokio::test]
    async fn an_attackers_failures_leave_the_owners_client_its_own_budget() {
        let guard = LoginGuard::new(limits(2, 5, 100), None);
        let (attacker, owner) = (
            client(Uuid::now_v7(), "192.0.2.1"),
            client(Uuid::now_v7(), "198.51.100.1"),
        );
        for _ in 0..2 {
            let attempt = guard.begin("Ada@example.com", attacker).await;
            attempt.expect("heard").failed().await.expect("counted");
        }
        let refused = guard.begin("ada@EXAMPLE.com", attacker).await;
        assert!(matches!(
            refused,
            Err(ApiError::LoginThrottled { retry_after }) if retry_after > 0
        ));
        let owner = guard.begin("ada@example.com", owner).await;
        owner.expect("heard").succeeded().await.expect("released");
    }

    #[tokio::test]
    async fn the_account_bound_holds_whatever_the_number_of_clients() {
        let guard = LoginGuard::new(limits(2, 5, 100), None);
        let mut heard = 0;
        for n in 0..20 {
            let attacker = client(Uuid::now_v7(), &format!("192.0.2.{n}"));
            if let Ok(attempt) = guard.begin("ada@example.com", attacker).await {
                heard += 1;
                attempt.failed().await.expect("counted");
            }
        }
        assert_eq!(heard, 5);
        // Even the owner, from a client of its own: the account's budget is spent.
        let owner = client(Uuid::now_v7(), "198.51.100.1");
        assert!(matches!(
            guard.begin("ada@example.com", owner).await,
            Err(ApiError::LoginThrottled { retry_after }) if retry_after > 0
        ));
    }

    #[tokio::test]
    async fn a_key_is_bounded_across_accounts() {
        let guard = LoginGuard::new(limits(5, 20, 3), None);
        let sprayer = client(Uuid::now_v7(), "192.0.2.1");
        for n in 0..3 {
            let attempt = guard.begin(&format!("user{n}@example.com"), sprayer).await;
            attempt.expect("heard").failed().await.expect("counted");
        }
        assert!(matches!(
            guard.begin("user9@example.com", sprayer).await,
            Err(ApiError::LoginThrottled { retry_after }) if retry_after > 0
        ));
        let other = client(Uuid::now_v7(), "192.0.2.1");
        guard
            .begin("user9@example.com", other)
            .await
            .expect("another key has a budget of its own")
            .abandoned()
            .await
            .expect("released");
    }

    #[tokio::test]
    async fn an_attempt_waits_for_reservations_in_flight_instead_of_being_refused() {
        let guard = LoginGuard::new(limits(1, 5, 100), None);
        let owner = client(Uuid::now_v7(), "198.51.100.1");
        let first = guard.begin("ada@example.com", owner).await.expect("heard");
        let release = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            first.succeeded().await
        };
        let (second, released) = tokio::join!(guard.begin("ada@example.com", owner), release);
        released.expect("released");
        second
            .expect("heard once the first succeeded")
            .succeeded()
            .await
            .expect("released");
    }

    #[tokio::test]
    async fn a_dropped_attempt_counts_as_a_failure() {
        let guard = LoginGuard::new(limits(1, 5, 100), None);
        let owner = client(Uuid::now_v7(), "198.51.100.1");
        drop(guard.begin("ada@example.com", owner).await.expect("heard"));
        tokio::task::yield_now().await;
        assert!(matches!(
            guard.begin("ada@example.com", owner).await,
            Err(ApiError::LoginThrottled { .. })
        ));
    }
}
