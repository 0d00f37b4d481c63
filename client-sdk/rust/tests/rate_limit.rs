//! `rate_limit()` against the real server: a plan's quota and its throttle, as a
//! success and a refusal report them.

mod support;

use minitter_client::{ClientBuilder, RateLimitExt, RetryPolicy};
use std::time::Duration;
use support::Server;

#[tokio::test]
async fn every_response_reports_the_quota_that_is_left() {
    let server = Server::start().await;
    let (user, _) = server.user("metered").await;
    let key = server.plan_key(None, Some((3, "DAY"))).await;
    let client = ClientBuilder::new(&server.base_url)
        .api_key(&key)
        .build()
        .expect("a client");

    let mut remaining = Vec::new();
    for _ in 0..3 {
        let response = client
            .get_user()
            .user_id(user)
            .send()
            .await
            .expect("within the quota");
        let limits = response.rate_limit().expect("rate limits");
        let quota = limits.quota().expect("the plan's quota");
        assert_eq!(quota.limit, Some(3));
        assert_eq!(quota.window, Some(Duration::from_secs(86_400)));
        assert!(
            quota
                .reset
                .is_some_and(|t| t <= Duration::from_secs(86_400))
        );
        remaining.push(quota.remaining);
        assert_eq!(limits.throttle(), None, "the plan has no throttle");
    }
    assert_eq!(remaining, [Some(2), Some(1), Some(0)]);

    // A refusal reports them too (and is not retried: the quota resets tomorrow).
    let refused = client
        .get_user()
        .user_id(user)
        .send()
        .await
        .expect_err("the quota is spent");
    assert_eq!(refused.status().map(|s| s.as_u16()), Some(429));
    let quota = refused.rate_limit().and_then(|l| l.quota().cloned());
    assert_eq!(quota.and_then(|q| q.remaining), Some(0));
}

#[tokio::test]
async fn a_throttled_plan_reports_its_bucket() {
    let server = Server::start().await;
    let (user, _) = server.user("throttled").await;
    let key = server.key(Some((1.0, 2))).await;
    let client = ClientBuilder::new(&server.base_url)
        .api_key(&key)
        .retry_policy(RetryPolicy::disabled())
        .build()
        .expect("a client");

    let response = client
        .get_user()
        .user_id(user)
        .send()
        .await
        .expect("a user");

    let limits = response.rate_limit().expect("rate limits");
    let throttle = limits.throttle().expect("the plan's throttle");
    assert_eq!(throttle.limit, Some(2), "the bucket holds the burst");
    assert_eq!(throttle.remaining, Some(1));
    assert_eq!(limits.quota(), None);
    // Unkeyed operations report none.
    let health = client.get_health().send().await.expect("health");
    assert_eq!(health.rate_limit(), None);
}
