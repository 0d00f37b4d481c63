//! Tag `webhooks`: a partner's subscriptions, which belong to the calling API key (another
//! key's are 404), and their deliveries. URLs must reach a public address; the test server
//! admits 127.0.0.1 besides (see `harness.rs`), where [`Receiver`] listens, so that pings
//! really arrive and can be checked with the SDK's verifier. A URL on loopback with
//! nothing behind it ([`NOWHERE`]) is for subscriptions that are never sent anything.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use minitter_client::webhooks::WebhookVerifier;
use minitter_client::{Client, types};
use poem::http::HeaderMap;
use poem::listener::TcpAcceptor;
use reqwest::StatusCode;

use crate::helpers::{Context, limit, new_key, refusal, scenarios, status, unknown_id};

scenarios! {
    create_and_list: [
        "create_webhook 201 400 413 415 422",
        "list_webhooks 200 400",
    ],
    webhook_limit: ["create_webhook 201 409"],
    get_webhook: ["get_webhook 200 400 404"],
    update_webhook: ["update_webhook 200 400 404 413 415 422"],
    delete_webhook: ["delete_webhook 204 400 404"],
    rotate_webhook_secret: ["rotate_webhook_secret 200 400 404"],
    test_webhook: ["test_webhook 202 400 404"],
    deliveries: [
        "list_webhook_deliveries 200 400 404",
        "redeliver_webhook 202 400 404",
    ],
}

/// A loopback URL nothing listens on (the discard port).
pub const NOWHERE: &str = "http://127.0.0.1:9/hooks";

/// How long a delivery to the local receiver may take to arrive and be recorded.
const PATIENCE: Duration = Duration::from_secs(15);

/// The prefix of every signing secret.
const SECRET_PREFIX: &str = "whsec_";

/// Addresses that are not public (the cloud metadata service, a private network, IPv6
/// loopback), and a loopback URL with userinfo: the SSRF guard refuses them all.
const REFUSED_URLS: [&str; 4] = [
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/hooks",
    "http://[::1]/hooks",
    "http://user:pass@127.0.0.1:9/hooks",
];

/// A subscription of `url` to two events, for everyone.
pub fn new_webhook(url: &str) -> types::NewWebhook {
    types::NewWebhook {
        url: url.to_owned().into(),
        event_types: vec![
            types::WebhookEventType::TweetCreated,
            types::WebhookEventType::UserFollowed,
        ]
        .into(),
        user_ids: None,
        description: Some("contract tests".to_owned().into()),
        enabled: None,
    }
}

/// Subscribes `url` through `client`'s key.
async fn subscribe(client: &Client, url: &str) -> types::CreatedWebhook {
    client
        .create_webhook()
        .body(new_webhook(url))
        .send()
        .await
        .expect("create webhook")
        .into_inner()
}

/// Sends each of the nine webhook operations through `client`, for subscription `id`,
/// and returns how each was refused: the gateway's and the outage's scenarios check that
/// every operation answers alike.
pub async fn refusals(client: &Client, id: &types::Id) -> Vec<(u16, String)> {
    let url = NOWHERE.to_owned();
    vec![
        refusal(client.create_webhook().body(new_webhook(&url)).send().await),
        refusal(client.list_webhooks().send().await),
        refusal(client.get_webhook().webhook_id(id.clone()).send().await),
        refusal(
            client
                .update_webhook()
                .webhook_id(id.clone())
                .body(types::WebhookUpdate {
                    enabled: Some(false),
                    ..Default::default()
                })
                .send()
                .await,
        ),
        refusal(client.delete_webhook().webhook_id(id.clone()).send().await),
        refusal(
            client
                .rotate_webhook_secret()
                .webhook_id(id.clone())
                .send()
                .await,
        ),
        refusal(client.test_webhook().webhook_id(id.clone()).send().await),
        refusal(
            client
                .list_webhook_deliveries()
                .webhook_id(id.clone())
                .send()
                .await,
        ),
        refusal(
            client
                .redeliver_webhook()
                .webhook_id(id.clone())
                .delivery_id(id.clone())
                .send()
                .await,
        ),
    ]
}

/// A plan without throttle or quota, holding `webhook_limit` subscriptions a key (the
/// default when `None`), made through the operator API.
async fn partner_plan(ctx: &Context, webhook_limit: Option<i32>) -> types::UsagePlan {
    let input = types::UsagePlanInput {
        name: "partners".parse().expect("valid plan name"),
        description: None,
        throttle: None,
        quota: None,
        allow_cache_refresh: false,
        ip_policy: None,
        webhook_limit,
        stream_connection_limit: None,
    };
    ctx.as_admin
        .create_usage_plan()
        .body(input)
        .send()
        .await
        .expect("create plan")
        .into_inner()
}

/// A client sending a new key of `plan`, made through the operator API.
async fn partner_key(ctx: &Context, plan: &types::UsagePlan) -> Client {
    let key = ctx
        .as_admin
        .create_api_key()
        .body(new_key("partner", &plan.id))
        .send()
        .await
        .expect("create key")
        .into_inner();
    minitter_client::ClientBuilder::new(&ctx.server.base_url)
        .api_key(key.secret.as_str())
        .retry_policy(minitter_client::RetryPolicy::disabled())
        .build()
        .expect("client")
}

/// Another partner: a client with a key of its own.
async fn other_partner(ctx: &Context) -> Client {
    partner_key(ctx, &partner_plan(ctx, None).await).await
}

/// The body of a raw `GET` with the tests' key, as text.
async fn raw_text(ctx: &Context, path: &str) -> String {
    let response = ctx.raw.get(ctx.url(path)).send().await.expect("send");
    assert_eq!(response.status(), StatusCode::OK, "GET {path}");
    response.text().await.expect("a body")
}

/// Secrets are shown at creation and rotation only.
fn assert_no_secret(body: &str, secret: &str) {
    assert!(
        !body.contains(secret) && !body.contains("\"secret\""),
        "a secret is shown: {body}"
    );
}

/// Queues a ping to subscription `id`.
async fn ping(client: &Client, id: &types::Id) -> types::WebhookDelivery {
    client
        .test_webhook()
        .webhook_id(id.clone())
        .send()
        .await
        .expect("test webhook")
        .into_inner()
}

/// Subscription `id`'s deliveries, newest first, read a page of one at a time, once
/// there are `count` and none is pending (or after [`PATIENCE`]).
async fn settled_deliveries(
    client: &Client,
    id: &types::Id,
    count: usize,
) -> Vec<types::WebhookDelivery> {
    let started = Instant::now();
    loop {
        let deliveries: Vec<types::WebhookDelivery> = client
            .list_webhook_deliveries()
            .webhook_id(id.clone())
            .limit(limit(1))
            .stream()
            .try_collect()
            .await
            .expect("deliveries");
        let pending = deliveries
            .iter()
            .any(|d| d.status == types::WebhookDeliveryStatus::Pending);
        if (deliveries.len() >= count && !pending) || started.elapsed() > PATIENCE {
            return deliveries;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One request a [`Receiver`] got.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

/// A partner's webhook endpoint on 127.0.0.1 that records every request and answers 204.
struct Receiver {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let port = listener.local_addr().expect("bound").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&received);
        let endpoint = poem::endpoint::make(move |mut request: poem::Request| {
            let log = Arc::clone(&log);
            async move {
                let body = request.take_body().into_vec().await.unwrap_or_default();
                log.lock().expect("lock").push(Received {
                    headers: request.headers().clone(),
                    body,
                });
                poem::http::StatusCode::NO_CONTENT
            }
        });
        let acceptor = TcpAcceptor::from_tokio(listener).expect("acceptor");
        tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(endpoint));
        Self {
            url: format!("http://127.0.0.1:{port}/hooks"),
            received,
        }
    }

    /// The requests so far, once there are `count` (it fails after [`PATIENCE`]).
    async fn wait_for(&self, count: usize) -> Vec<Received> {
        let started = Instant::now();
        loop {
            let received = self.received.lock().expect("lock").clone();
            if received.len() >= count {
                return received;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "the receiver got {} requests, not {count}",
                received.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A subscription is 201 with its `Location` and a `whsec_` secret, and listed (without
/// it) page by page, newest first. Non-public URLs are 422; an empty list of events and
/// a URL that is not http(s) are 400; forged page tokens 400; the body limits apply.
async fn create_and_list(ctx: &Context) {
    let sdk = &ctx.anonymous;
    let created = sdk
        .create_webhook()
        .body(new_webhook(NOWHERE))
        .send()
        .await
        .expect("create webhook");
    assert_eq!(created.status(), StatusCode::CREATED);
    let location = created
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let first = created.into_inner();
    assert_eq!(location, format!("/v1/webhooks/{}", *first.id));
    assert!(
        first.secret.starts_with(SECRET_PREFIX) && first.secret.len() > 40,
        "a secret of 32 bytes: {}",
        *first.secret
    );
    assert_eq!(
        (first.url.as_str(), first.enabled, &first.user_ids),
        (NOWHERE, true, &None)
    );
    assert_eq!(
        first.description.as_deref().map(String::as_str),
        Some("contract tests")
    );
    assert_eq!(
        (first.breaker.state, first.breaker.consecutive_failures),
        (types::WebhookBreakerState::Closed, 0)
    );
    let second = subscribe(sdk, "http://127.0.0.1:9/other").await;
    assert_ne!(second.secret, first.secret);

    let listed: Vec<types::Webhook> = sdk
        .list_webhooks()
        .limit(limit(1))
        .stream()
        .try_collect()
        .await
        .expect("webhooks");
    let ids: Vec<&types::Id> = listed.iter().map(|w| &w.id).collect();
    assert_eq!(ids, [&second.id, &first.id]);
    let page = raw_text(ctx, "/v1/webhooks").await;
    assert_no_secret(&page, &first.secret);
    assert_no_secret(&page, &second.secret);
    assert_eq!(
        refusal(sdk.list_webhooks().page_token("forged").send().await),
        status(400, "invalid_request")
    );

    for url in REFUSED_URLS {
        assert_eq!(
            refusal(sdk.create_webhook().body(new_webhook(url)).send().await),
            status(422, "webhook_url_refused"),
            "{url}"
        );
    }
    let no_events = types::NewWebhook {
        event_types: Vec::new().into(),
        ..new_webhook(NOWHERE)
    };
    let not_http = new_webhook("ftp://127.0.0.1/hooks");
    for body in [no_events, not_http] {
        assert_eq!(
            refusal(sdk.create_webhook().body(body).send().await),
            status(400, "invalid_request")
        );
    }
    ctx.oversized_and_mistyped("/v1/webhooks").await;
    let kept: Vec<types::Webhook> = sdk
        .list_webhooks()
        .stream()
        .try_collect()
        .await
        .expect("webhooks");
    assert_eq!(kept.len(), 2, "refused subscriptions are not kept");
}

/// A key holds as many subscriptions as its plan's `webhook_limit`, then 409; the limit
/// is per key, and a deletion frees a place.
async fn webhook_limit(ctx: &Context) {
    let plan = partner_plan(ctx, Some(1)).await;
    assert_eq!(plan.webhook_limit, 1);
    let partner = partner_key(ctx, &plan).await;
    let only = subscribe(&partner, NOWHERE).await;
    assert_eq!(
        refusal(
            partner
                .create_webhook()
                .body(new_webhook(NOWHERE))
                .send()
                .await
        ),
        status(409, "too_many_webhooks")
    );
    let same_plan = partner_key(ctx, &plan).await;
    subscribe(&same_plan, NOWHERE).await;
    partner
        .delete_webhook()
        .webhook_id(only.id.clone())
        .send()
        .await
        .expect("delete webhook");
    let created = partner
        .create_webhook()
        .body(new_webhook(NOWHERE))
        .send()
        .await
        .expect("a place is free again");
    assert_eq!(created.status(), StatusCode::CREATED);
}

/// A subscription reads back as created, without its secret; another key's is 404 (and
/// not listed for it), as is an unknown one; a malformed id is 400.
async fn get_webhook(ctx: &Context) {
    let sdk = &ctx.anonymous;
    let created = subscribe(sdk, NOWHERE).await;
    let fetched = sdk
        .get_webhook()
        .webhook_id(created.id.clone())
        .send()
        .await
        .expect("get webhook")
        .into_inner();
    assert_eq!(
        (
            &fetched.id,
            &fetched.url,
            &fetched.event_types,
            &fetched.description,
            fetched.enabled,
            fetched.created_at
        ),
        (
            &created.id,
            &created.url,
            &created.event_types,
            &created.description,
            created.enabled,
            created.created_at
        )
    );
    let body = raw_text(ctx, &format!("/v1/webhooks/{}", *created.id)).await;
    assert_no_secret(&body, &created.secret);

    let other = other_partner(ctx).await;
    assert_eq!(
        refusal(
            other
                .get_webhook()
                .webhook_id(created.id.clone())
                .send()
                .await
        ),
        status(404, "not_found")
    );
    let theirs = other
        .list_webhooks()
        .send()
        .await
        .expect("webhooks")
        .into_inner();
    assert!(theirs.items.is_empty(), "another key's subscriptions");
    assert_eq!(
        refusal(sdk.get_webhook().webhook_id(unknown_id()).send().await),
        status(404, "not_found")
    );
    assert_eq!(
        ctx.raw_status(ctx.raw.get(ctx.url("/v1/webhooks/nope")))
            .await,
        400
    );
}

/// A patch changes only what it sends: narrowing to users and widening back, disabling,
/// a new URL. Narrowing and widening at once is 422, as is a non-public URL (which
/// leaves the subscription as it was); no events is 400; another key's subscription and
/// an unknown one are 404.
async fn update_webhook(ctx: &Context) {
    let sdk = &ctx.anonymous;
    let created = subscribe(sdk, NOWHERE).await;
    let id = created.id.clone();
    let update = |body: types::WebhookUpdate| {
        sdk.update_webhook()
            .webhook_id(id.clone())
            .body(body)
            .send()
    };
    let moved = "http://127.0.0.1:9/moved";
    let narrowed = update(types::WebhookUpdate {
        user_ids: Some(vec![ctx.ada.id.clone()].into()),
        enabled: Some(false),
        url: Some(moved.to_owned().into()),
        ..Default::default()
    })
    .await
    .expect("narrow")
    .into_inner();
    assert_eq!(
        (narrowed.url.as_str(), narrowed.enabled, &narrowed.user_ids),
        (moved, false, &Some(vec![ctx.ada.id.clone()]))
    );
    assert_eq!(
        (&narrowed.event_types, &narrowed.description),
        (&created.event_types, &created.description)
    );
    let widened = update(types::WebhookUpdate {
        all_users: Some(true),
        ..Default::default()
    })
    .await
    .expect("widen")
    .into_inner();
    assert_eq!(
        (widened.url.as_str(), widened.enabled, &widened.user_ids),
        (moved, false, &None)
    );

    let both = types::WebhookUpdate {
        user_ids: Some(vec![ctx.bob.id.clone()].into()),
        all_users: Some(true),
        ..Default::default()
    };
    assert_eq!(refusal(update(both).await), status(422, "invalid_request"));
    for url in REFUSED_URLS {
        let elsewhere = types::WebhookUpdate {
            url: Some(url.to_owned().into()),
            ..Default::default()
        };
        assert_eq!(
            refusal(update(elsewhere).await),
            status(422, "webhook_url_refused"),
            "{url}"
        );
    }
    let no_events = types::WebhookUpdate {
        event_types: Some(Vec::new().into()),
        ..Default::default()
    };
    assert_eq!(
        refusal(update(no_events).await),
        status(400, "invalid_request")
    );
    let unchanged = sdk
        .get_webhook()
        .webhook_id(id.clone())
        .send()
        .await
        .expect("get webhook")
        .into_inner();
    assert_eq!(unchanged, widened, "refused patches change nothing");

    let enable = types::WebhookUpdate {
        enabled: Some(true),
        ..Default::default()
    };
    let other = other_partner(ctx).await;
    assert_eq!(
        refusal(
            other
                .update_webhook()
                .webhook_id(id.clone())
                .body(enable.clone())
                .send()
                .await
        ),
        status(404, "not_found")
    );
    assert_eq!(
        refusal(
            sdk.update_webhook()
                .webhook_id(unknown_id())
                .body(enable.clone())
                .send()
                .await
        ),
        status(404, "not_found")
    );
    let enabled = update(enable).await.expect("enable").into_inner();
    assert!(enabled.enabled);
    let bad_id = ctx
        .raw
        .patch(ctx.url("/v1/webhooks/nope"))
        .json(&serde_json::json!({"enabled": true}));
    assert_eq!(ctx.raw_status(bad_id).await, 400);
    ctx.oversized_and_mistyped_with("PATCH", &format!("/v1/webhooks/{}", *id))
        .await;
}

/// Another key cannot delete a subscription (404, and it stays); its owner can, and then
/// it is gone: reading or deleting it again is 404. A malformed id is 400.
async fn delete_webhook(ctx: &Context) {
    let sdk = &ctx.anonymous;
    let created = subscribe(sdk, NOWHERE).await;
    let other = other_partner(ctx).await;
    assert_eq!(
        refusal(
            other
                .delete_webhook()
                .webhook_id(created.id.clone())
                .send()
                .await
        ),
        status(404, "not_found")
    );
    sdk.get_webhook()
        .webhook_id(created.id.clone())
        .send()
        .await
        .expect("still there");
    let deleted = sdk
        .delete_webhook()
        .webhook_id(created.id.clone())
        .send()
        .await
        .expect("delete webhook");
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        refusal(
            sdk.get_webhook()
                .webhook_id(created.id.clone())
                .send()
                .await
        ),
        status(404, "not_found")
    );
    assert_eq!(
        refusal(
            sdk.delete_webhook()
                .webhook_id(created.id.clone())
                .send()
                .await
        ),
        status(404, "not_found")
    );
    let left = sdk.list_webhooks().send().await.expect("webhooks");
    assert!(left.into_inner().items.is_empty());
    assert_eq!(
        ctx.raw_status(ctx.raw.delete(ctx.url("/v1/webhooks/nope")))
            .await,
        400
    );
}

/// A rotation gives a new `whsec_` secret; until `previous_secret_expires_at` (a day
/// from now) messages are signed with both, so a receiver knowing either accepts them.
/// Another key's subscription and an unknown one are 404, a malformed id 400.
async fn rotate_webhook_secret(ctx: &Context) {
    let sdk = &ctx.anonymous;
    let receiver = Receiver::start().await;
    let created = subscribe(sdk, &receiver.url).await;
    let rotated = sdk
        .rotate_webhook_secret()
        .webhook_id(created.id.clone())
        .send()
        .await
        .expect("rotate")
        .into_inner();
    assert_eq!(rotated.id, created.id);
    assert!(rotated.secret.starts_with(SECRET_PREFIX));
    assert_ne!(rotated.secret, created.secret);
    let until = rotated
        .previous_secret_expires_at
        .expect("the old secret still signs");
    let from_now = until - chrono::Utc::now();
    assert!(
        from_now > chrono::Duration::hours(23) && from_now <= chrono::Duration::hours(24),
        "the old secret signs for a day, not {from_now}"
    );
    let body = raw_text(ctx, &format!("/v1/webhooks/{}", *created.id)).await;
    assert_no_secret(&body, &rotated.secret);
    assert_no_secret(&body, &created.secret);

    ping(sdk, &created.id).await;
    let received = receiver.wait_for(1).await;
    for secret in [&created.secret, &rotated.secret] {
        WebhookVerifier::new(secret)
            .expect("a valid secret")
            .verify(&received[0].headers, &received[0].body)
            .expect("signed with both secrets");
    }

    let other = other_partner(ctx).await;
    assert_eq!(
        refusal(
            other
                .rotate_webhook_secret()
                .webhook_id(created.id.clone())
                .send()
                .await
        ),
        status(404, "not_found")
    );
    assert_eq!(
        refusal(
            sdk.rotate_webhook_secret()
                .webhook_id(unknown_id())
                .send()
                .await
        ),
        status(404, "not_found")
    );
    let bad_id = ctx.raw.post(ctx.url("/v1/webhooks/nope/rotate-secret"));
    assert_eq!(ctx.raw_status(bad_id).await, 400);
}

/// A test is 202 with a pending `webhook.ping` delivery, whatever the subscription's
/// event types; the receiver gets it signed with the secret, under the delivery's
/// `message_id`. Another key's subscription and an unknown one are 404, a malformed id
/// 400.
async fn test_webhook(ctx: &Context) {
    let sdk = &ctx.anonymous;
    let receiver = Receiver::start().await;
    let created = subscribe(sdk, &receiver.url).await;
    let queued = sdk
        .test_webhook()
        .webhook_id(created.id.clone())
        .send()
        .await
        .expect("test webhook");
    assert_eq!(queued.status(), StatusCode::ACCEPTED);
    let delivery = queued.into_inner();
    assert_eq!(
        (
            delivery.event_type.as_str(),
            delivery.payload.type_.as_str(),
            &delivery.webhook_id
        ),
        ("webhook.ping", "webhook.ping", &created.id)
    );
    assert_eq!(
        delivery.payload.data.get("webhook_id"),
        Some(&serde_json::json!(created.id.to_string()))
    );
    assert_eq!(
        (delivery.status, delivery.attempts),
        (types::WebhookDeliveryStatus::Pending, 0)
    );

    let received = receiver.wait_for(1).await;
    let event: types::WebhookPingEvent = WebhookVerifier::new(&created.secret)
        .expect("a valid secret")
        .verify_event(&received[0].headers, &received[0].body)
        .expect("a genuine ping");
    assert_eq!(event.data.webhook_id, created.id);
    assert_eq!(received[0].header("webhook-id"), delivery.message_id);

    let other = other_partner(ctx).await;
    assert_eq!(
        refusal(
            other
                .test_webhook()
                .webhook_id(created.id.clone())
                .send()
                .await
        ),
        status(404, "not_found")
    );
    assert_eq!(
        refusal(sdk.test_webhook().webhook_id(unknown_id()).send().await),
        status(404, "not_found")
    );
    let bad_id = ctx.raw.post(ctx.url("/v1/webhooks/nope/test"));
    assert_eq!(ctx.raw_status(bad_id).await, 400);
}

/// Deliveries are listed newest first, page by page, with how they went; a redelivery is
/// 202, pending again with its attempts counted from zero, and sends the message again
/// under the same `webhook-id`. An unknown delivery, or
/// another subscription's, is 404, as are another key's subscription and an unknown one;
/// a page token of another list is 400, as are malformed ids.
async fn deliveries(ctx: &Context) {
    let sdk = &ctx.anonymous;
    let receiver = Receiver::start().await;
    let created = subscribe(sdk, &receiver.url).await;
    let id = created.id.clone();
    let first = ping(sdk, &id).await;
    let second = ping(sdk, &id).await;
    let listed = settled_deliveries(sdk, &id, 2).await;
    let ids: Vec<&types::Id> = listed.iter().map(|d| &d.id).collect();
    assert_eq!(ids, [&second.id, &first.id]);
    for delivery in &listed {
        assert_eq!(
            (
                delivery.event_type.as_str(),
                delivery.status,
                delivery.attempts,
                delivery.last_status_code
            ),
            (
                "webhook.ping",
                types::WebhookDeliveryStatus::Delivered,
                1,
                Some(204)
            )
        );
        assert!(delivery.delivered_at.is_some());
    }

    let again = sdk
        .redeliver_webhook()
        .webhook_id(id.clone())
        .delivery_id(first.id.clone())
        .send()
        .await
        .expect("redeliver");
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    let again = again.into_inner();
    assert_eq!(
        (&again.id, &again.message_id, again.status, again.attempts),
        (
            &first.id,
            &first.message_id,
            types::WebhookDeliveryStatus::Pending,
            0
        )
    );
    let received = receiver.wait_for(3).await;
    let message_ids: Vec<&str> = received.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(
        message_ids,
        [
            first.message_id.as_str(),
            second.message_id.as_str(),
            first.message_id.as_str()
        ]
    );

    let elsewhere = subscribe(sdk, NOWHERE).await;
    let theirs = ping(sdk, &elsewhere.id).await;
    for delivery in [unknown_id(), theirs.id] {
        assert_eq!(
            refusal(
                sdk.redeliver_webhook()
                    .webhook_id(id.clone())
                    .delivery_id(delivery)
                    .send()
                    .await
            ),
            status(404, "not_found")
        );
    }
    let other = other_partner(ctx).await;
    assert_eq!(
        refusal(
            other
                .list_webhook_deliveries()
                .webhook_id(id.clone())
                .send()
                .await
        ),
        status(404, "not_found")
    );
    assert_eq!(
        refusal(
            other
                .redeliver_webhook()
                .webhook_id(id.clone())
                .delivery_id(first.id.clone())
                .send()
                .await
        ),
        status(404, "not_found")
    );
    assert_eq!(
        refusal(
            sdk.list_webhook_deliveries()
                .webhook_id(unknown_id())
                .send()
                .await
        ),
        status(404, "not_found")
    );

    let page = sdk
        .list_webhook_deliveries()
        .webhook_id(id.clone())
        .limit(limit(1))
        .send()
        .await
        .expect("deliveries")
        .into_inner();
    let token = page.next_page.expect("a next page");
    assert_eq!(
        refusal(
            sdk.list_webhook_deliveries()
                .webhook_id(elsewhere.id.clone())
                .page_token(token)
                .send()
                .await
        ),
        status(400, "invalid_request")
    );
    assert_eq!(
        refusal(
            sdk.list_webhook_deliveries()
                .webhook_id(id.clone())
                .page_token("forged")
                .send()
                .await
        ),
        status(400, "invalid_request")
    );
    let bad_list = ctx.raw.get(ctx.url("/v1/webhooks/nope/deliveries"));
    assert_eq!(ctx.raw_status(bad_list).await, 400);
    let bad_delivery = ctx
        .raw
        .post(ctx.url(&format!("/v1/webhooks/{}/deliveries/nope/redeliver", *id)));
    assert_eq!(ctx.raw_status(bad_delivery).await, 400);
}
