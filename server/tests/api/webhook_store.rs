//! The webhook store on every backend: the limit of subscriptions per key, scoping by key,
//! updates, event matching, idempotent queueing, leases, attempts and their breaker,
//! requeueing and pruning.
//!
//! These tests open the store alone (as `feeds.rs` does) rather than a whole server: a
//! server runs the delivery worker, which would lease the subscriptions and send their
//! deliveries while a test looks at them.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use minitter_server::domain::webhooks::{
    AttemptRecord, DISABLED_GONE, DeliveryStatus, NewDelivery, NewWebhook, WebhookChanges,
    WebhookCreation, WebhookRecord,
};
use minitter_server::infra::store::{KeySettings, KeyWrite, PlanSettings, SharedStore, now_millis};
use minitter_test_support::{Backend, TestDatabase, on_every_backend};

/// A store of its own, with nothing running on it.
struct World {
    store: SharedStore,
    _database: TestDatabase,
    _dir: tempfile::TempDir,
}

impl World {
    async fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("a data directory");
        let database = TestDatabase::create(backend).await;
        let store =
            minitter_server::infra::store::open(database.url(), dir.path(), &Default::default())
                .await
                .expect("open the store");
        Self {
            store,
            _database: database,
            _dir: dir,
        }
    }

    /// A key (a real `api_keys` row) in a plan that allows `limit` subscriptions per key.
    async fn key(&self, limit: u32) -> Uuid {
        let plan = self
            .store
            .create_plan(PlanSettings {
                webhook_limit: limit,
                ..PlanSettings::named("webhooks")
            })
            .await
            .expect("plan");
        match self
            .store
            .create_key(KeySettings::new("partner", plan.id))
            .await
            .expect("key")
        {
            KeyWrite::Done(key) => key.record.id,
            other => panic!("no key: {other:?}"),
        }
    }

    /// A subscription of `key` to `event_types`, which must be created.
    async fn webhook(&self, key: Uuid, event_types: &[&str]) -> WebhookRecord {
        match self
            .store
            .create_webhook(&new_webhook(key, event_types), 100)
            .await
            .expect("create")
        {
            WebhookCreation::Created(webhook) => webhook,
            WebhookCreation::LimitReached => panic!("limit reached"),
        }
    }

    /// Queues a delivery to `webhook`, created (and due) at `at`; returns its id.
    async fn delivery(&self, webhook: Uuid, outbox_id: Option<i64>, at: DateTime<Utc>) -> Uuid {
        self.add(new_delivery(webhook, outbox_id, at)).await
    }

    /// A delivery queued at `at` (its UUIDv7 id made then, as the queue makes it), which
    /// may be long ago.
    async fn delivery_queued_at(
        &self,
        webhook: Uuid,
        outbox_id: Option<i64>,
        at: DateTime<Utc>,
    ) -> Uuid {
        let millis = u64::try_from(at.timestamp_millis()).expect("after 1970");
        let id = uuid::Builder::from_unix_timestamp_millis(millis, &rand::random()).into_uuid();
        self.add(NewDelivery {
            id,
            ..new_delivery(webhook, outbox_id, at)
        })
        .await
    }

    async fn add(&self, delivery: NewDelivery) -> Uuid {
        self.store
            .add_deliveries(std::slice::from_ref(&delivery))
            .await
            .expect("add");
        delivery.id
    }

    /// Applies `changes` to `key`'s subscription `webhook`, which must exist.
    async fn update(&self, key: Uuid, webhook: Uuid, changes: WebhookChanges) -> WebhookRecord {
        self.store
            .update_webhook(key, webhook, &changes)
            .await
            .expect("update")
            .expect("found")
    }

    /// The ids of the subscriptions leased at `now` for 30 s.
    async fn lease(&self, now: DateTime<Utc>) -> Vec<Uuid> {
        self.store
            .lease_webhooks(now, now + Duration::seconds(30), 10)
            .await
            .expect("lease")
            .into_iter()
            .map(|webhook| webhook.id)
            .collect()
    }
}

fn new_webhook(key: Uuid, event_types: &[&str]) -> NewWebhook {
    NewWebhook {
        id: Uuid::now_v7(),
        api_key_id: key,
        url: "https://partner.example/hooks".into(),
        event_types: event_types.iter().map(|&t| t.to_owned()).collect(),
        user_ids: None,
        description: Some("first".into()),
        enabled: true,
        secret: "whsec_first".into(),
        created_at: now_millis(),
    }
}

fn new_delivery(webhook: Uuid, outbox_id: Option<i64>, at: DateTime<Utc>) -> NewDelivery {
    NewDelivery {
        id: Uuid::now_v7(),
        webhook_id: webhook,
        event_type: "tweet.created".into(),
        payload: r#"{"type":"tweet.created"}"#.into(),
        outbox_id,
        created_at: at,
    }
}

/// An attempt at `at` that failed with a 500, to be retried at `next`.
fn failure(at: DateTime<Utc>, next: DateTime<Utc>, failures: u32) -> AttemptRecord {
    AttemptRecord {
        sent_at: at,
        at,
        status_code: Some(500),
        error: Some("HTTP 500".into()),
        latency_ms: 120,
        excerpt: "oops".into(),
        status: DeliveryStatus::Pending,
        next_attempt_at: Some(next),
        consecutive_failures: failures,
        open_until: None,
        disable: false,
    }
}

async fn a_key_holds_no_more_webhooks_than_its_limit(backend: Backend) {
    let world = World::new(backend).await;
    let store = &world.store;
    let key = world.key(2).await;
    let other = world.key(2).await;
    let none_allowed = world.key(0).await;

    let mut created = Vec::new();
    for _ in 0..2 {
        match store
            .create_webhook(&new_webhook(key, &["tweet.created"]), 2)
            .await
            .expect("create")
        {
            WebhookCreation::Created(webhook) => created.push(webhook),
            WebhookCreation::LimitReached => panic!("refused below the limit"),
        }
    }
    let third = store
        .create_webhook(&new_webhook(key, &["tweet.created"]), 2)
        .await
        .expect("create");

    assert!(matches!(third, WebhookCreation::LimitReached));
    let listed = store.webhooks(key, None, 10).await.expect("list");
    assert_eq!(listed.items.len(), 2, "the refused one was not stored");
    // Another key's subscriptions do not count against this one's limit.
    assert!(matches!(
        store
            .create_webhook(&new_webhook(other, &["tweet.created"]), 2)
            .await
            .expect("create"),
        WebhookCreation::Created(_)
    ));
    assert!(matches!(
        store
            .create_webhook(&new_webhook(none_allowed, &["tweet.created"]), 0)
            .await
            .expect("create"),
        WebhookCreation::LimitReached
    ));
    // Deleting one frees its place.
    assert!(
        store
            .delete_webhook(key, created[0].id)
            .await
            .expect("delete")
    );
    assert!(matches!(
        store
            .create_webhook(&new_webhook(key, &["tweet.created"]), 2)
            .await
            .expect("create"),
        WebhookCreation::Created(_)
    ));
}

async fn a_webhook_is_stored_and_listed_newest_first(backend: Backend) {
    let world = World::new(backend).await;
    let store = &world.store;
    let key = world.key(10).await;
    let user = Uuid::now_v7();
    let mut new = new_webhook(key, &["tweet.created", "user.followed"]);
    new.user_ids = Some(vec![user]);

    let WebhookCreation::Created(created) = store.create_webhook(&new, 10).await.expect("create")
    else {
        panic!("limit reached");
    };
    let second = world.webhook(key, &["tweet.deleted"]).await;
    let third = world.webhook(key, &["tweet.deleted"]).await;

    assert_eq!(created.id, new.id);
    assert_eq!(created.api_key_id, key);
    assert_eq!(created.url, new.url);
    assert_eq!(created.event_types, vec!["tweet.created", "user.followed"]);
    assert_eq!(created.user_ids, Some(vec![user]));
    assert_eq!(created.description.as_deref(), Some("first"));
    assert!(created.enabled);
    assert_eq!(created.consecutive_failures, 0);
    assert_eq!(created.open_until, None);
    assert_eq!(created.previous_secret_expires_at, None);
    assert_eq!(created.created_at, new.created_at);
    assert_eq!(
        store.webhook(key, created.id).await.expect("read"),
        Some(created.clone())
    );
    let first_page = store.webhooks(key, None, 2).await.expect("list");
    let ids: Vec<Uuid> = first_page.items.iter().map(|w| w.id).collect();
    assert_eq!(ids, vec![third.id, second.id]);
    assert_eq!(first_page.next, Some(second.id));
    let last_page = store.webhooks(key, first_page.next, 2).await.expect("list");
    assert_eq!(last_page.items, vec![created]);
    assert_eq!(last_page.next, None);
}

async fn another_keys_webhook_is_not_found_changed_or_deleted(backend: Backend) {
    let world = World::new(backend).await;
    let store = &world.store;
    let owner = world.key(10).await;
    let stranger = world.key(10).await;
    let webhook = world.webhook(owner, &["tweet.created"]).await;
    let changes = WebhookChanges {
        url: Some("https://attacker.example/".into()),
        enabled: Some(false),
        ..WebhookChanges::default()
    };

    let read = store.webhook(stranger, webhook.id).await.expect("read");
    let listed = store.webhooks(stranger, None, 10).await.expect("list");
    let updated = store
        .update_webhook(stranger, webhook.id, &changes)
        .await
        .expect("update");
    let rotated = store
        .rotate_webhook_secret(stranger, webhook.id, "whsec_mine", now_millis())
        .await
        .expect("rotate");
    let deleted = store
        .delete_webhook(stranger, webhook.id)
        .await
        .expect("delete");

    assert_eq!(read, None);
    assert!(listed.items.is_empty());
    assert_eq!(updated, None);
    assert_eq!(rotated, None);
    assert!(!deleted);
    assert_eq!(
        store.webhook(owner, webhook.id).await.expect("read"),
        Some(webhook),
        "the owner's subscription is untouched"
    );
}

async fn an_update_changes_only_what_it_names(backend: Backend) {
    let world = World::new(backend).await;
    let store = &world.store;
    let key = world.key(10).await;
    let user = Uuid::now_v7();
    let webhook = world.webhook(key, &["tweet.created"]).await;

    let renamed = world
        .update(
            key,
            webhook.id,
            WebhookChanges {
                url: Some("https://partner.example/v2".into()),
                user_ids: Some(Some(vec![user])),
                ..WebhookChanges::default()
            },
        )
        .await;
    let retyped = world
        .update(
            key,
            webhook.id,
            WebhookChanges {
                event_types: Some(vec!["tweet.deleted".into(), "user.unfollowed".into()]),
                description: Some("second".into()),
                ..WebhookChanges::default()
            },
        )
        .await;
    let everyone = world
        .update(
            key,
            webhook.id,
            WebhookChanges {
                user_ids: Some(None),
                ..WebhookChanges::default()
            },
        )
        .await;

    assert_eq!(renamed.url, "https://partner.example/v2");
    assert_eq!(renamed.user_ids, Some(vec![user]));
    assert_eq!(renamed.event_types, webhook.event_types);
    assert_eq!(renamed.description, webhook.description);
    assert_eq!(retyped.url, "https://partner.example/v2");
    assert_eq!(retyped.user_ids, Some(vec![user]), "left as it was");
    assert_eq!(
        retyped.event_types,
        vec!["tweet.deleted", "user.unfollowed"]
    );
    assert_eq!(retyped.description.as_deref(), Some("second"));
    assert_eq!(everyone.user_ids, None, "Some(None): every user again");
    assert_eq!(everyone.event_types, retyped.event_types);
    assert_eq!(
        store
            .update_webhook(key, Uuid::now_v7(), &WebhookChanges::default())
            .await
            .expect("update"),
        None
    );
}

async fn enabling_a_webhook_closes_its_breaker(backend: Backend) {
    let world = World::new(backend).await;
    let store = &world.store;
    let key = world.key(10).await;
    let webhook = world.webhook(key, &["tweet.created"]).await;
    let now = now_millis();
    let delivery = world.delivery(webhook.id, Some(1), now).await;
    let gone = AttemptRecord {
        status_code: Some(410),
        error: None,
        status: DeliveryStatus::Failed,
        next_attempt_at: None,
        consecutive_failures: 3,
        open_until: Some(now + Duration::seconds(60)),
        disable: true,
        ..failure(now, now, 3)
    };
    store
        .record_attempts(webhook.id, &[(delivery, gone.clone())])
        .await
        .expect("record");
    let disabled = store
        .webhook(key, webhook.id)
        .await
        .expect("read")
        .expect("found");

    let enabled = world
        .update(
            key,
            webhook.id,
            WebhookChanges {
                enabled: Some(true),
                ..WebhookChanges::default()
            },
        )
        .await;
    let paused = world
        .update(
            key,
            webhook.id,
            WebhookChanges {
                enabled: Some(false),
                ..WebhookChanges::default()
            },
        )
        .await;

    assert!(!disabled.enabled);
    assert_eq!(disabled.disabled_reason.as_deref(), Some(DISABLED_GONE));
    assert_eq!(disabled.consecutive_failures, 3);
    assert_eq!(disabled.open_until, Some(now + Duration::seconds(60)));
    assert!(enabled.enabled);
    assert_eq!(enabled.disabled_reason, None);
    assert_eq!(enabled.consecutive_failures, 0);
    assert_eq!(enabled.open_until, None);
    assert!(!paused.enabled);
    assert_eq!(paused.disabled_reason, None, "the partner paused it");
}

async fn subscriptions_match_whole_event_type_names(backend: Backend) {
    let world = World::new(backend).await;
    let store = &world.store;
    let key = world.key(10).await;
    let user = Uuid::now_v7();
    let mut filtered = new_webhook(key, &["user.followed", "tweet.created"]);
    filtered.user_ids = Some(vec![user]);
    let WebhookCreation::Created(both) = store.create_webhook(&filtered, 10).await.expect("create")
    else {
        panic!("limit reached");
    };
    let deleted_only = world.webhook(key, &["tweet.deleted"]).await;
    let mut off = new_webhook(key, &["tweet.created"]);
    off.enabled = false;
    store.create_webhook(&off, 10).await.expect("create");

    let created = store.subscriptions("tweet.created").await.expect("match");
    let followed = store.subscriptions("user.followed").await.expect("match");
    let deleted = store.subscriptions("tweet.deleted").await.expect("match");
    let partial = store.subscriptions("tweet").await.expect("match");
    let unfollowed = store.subscriptions("user.unfollowed").await.expect("match");

    let ids = |subscriptions: &[minitter_server::domain::webhooks::Subscription]| {
        subscriptions.iter().map(|s| s.id).collect::<Vec<_>>()
    };
    assert_eq!(ids(&created), vec![both.id], "the disabled one is left out");
    assert_eq!(created[0].user_ids, Some(vec![user]));
    assert_eq!(ids(&followed), vec![both.id]);
    assert_eq!(ids(&deleted), vec![deleted_only.id]);
    assert_eq!(deleted[0].user_ids, None);
    assert!(partial.is_empty(), "part of a name matches nothing");
    assert!(unfollowed.is_empty());
}

async fn queueing_is_idempotent_and_skips_deleted_webhooks(backend: Backend) {
    let world = World::new(backend).await;
    let store = &world.store;
    let key = world.key(10).await;
    let webhook = world.webhook(key, &["tweet.created"]).await;
    let doomed = world.webhook(key, &["tweet.created"]).await;
    let now = now_millis();
    let first = new_delivery(webhook.id, Some(7), now);
    let ping = new_delivery(webhook.id, None, now);
    store
        .add_deliveries(&[first.clone(), ping.clone()])
        .await
        .expect("add");
    assert!(store.delete_webhook(key, doomed.id).await.expect("delete"));

    let again = new_delivery(webhook.id, Some(7), now);
    let second_ping = new_delivery(webhook.id, None, now);
    let for_deleted = new_delivery(doomed.id, Some(8), now);
    let next = new_delivery(webhook.id, Some(8), now);
    store
        .add_deliveries(&[
            again.clone(),
            second_ping.clone(),
            for_deleted.clone(),
            next.clone(),
        ])
        .await
        .expect("a deleted webhook does not fail the batch");
    store.add_deliveries(&[]).await.expect("nothing to add");

    let listed = store.deliveries(webhook.id, None, 10).await.expect("list");
    let ids: Vec<Uuid> = listed.items.iter().map(|d| d.id).collect();
    assert_eq!(
        ids,
        vec![next.id, second_ping.id, ping.id, first.id],
        "newest first, without the second copy of outbox event 7"
    );
    assert_eq!(
        store.delivery(webhook.id, again.id).await.expect("read"),
        None
    );
    assert_eq!(
        store
            .delivery(doomed.id, for_deleted.id)
            .await
            .expect("read"),
        None
    );
    let stored = store
        .delivery(webhook.id, first.id)
        .await
        .expect("read")
        .expect("found");
    assert_eq!(stored.status, DeliveryStatus::Pending);
    assert_eq!(stored.attempts, 0);
    assert_eq!(stored.next_attempt_at, Some(now), "due at once");
    assert_eq!(stored.created_at, now);
    assert_eq!(stored.payload, first.payload);
    assert_eq!(stored.event_type, first.event_type);
    assert_eq!(stored.last_attempt_at, None);
    assert_eq!(stored.delivered_at, None);
    // Scoped by the subscription: another one's id finds nothing.
    assert_eq!(
        store.delivery(doomed.id, first.id).await.expect("read"),
        None
    );
    let page = store.deliveries(webhook.id, None, 3).await.expect("list");
    assert_eq!(page.next, Some(ping.id));
    let rest = store
        .deliveries(webhook.id, page.next, 3)
        .await
        .expect("list");
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.next, None);
}

async fn a_leased_webhook_is_not_leased_again_until_its_lease_ends(backend: Backend) {
    let world = World::new(backend).await;
    let store = &world.store;
    let key = world.key(10).await;
    let webhook = world.webhook(key, &["tweet.created"]).await;
    let idle = world.webhook(key, &["tweet.created"]).await;
    let now = now_millis();
    world.delivery(webhook.id, Some(1), now).await;
    // Not due yet: its subscription has nothing to send.
    world
        .delivery(idle.id, Some(1), now + Duration::seconds(300))
        .await;

    let leased = store
        .lease_webhooks(now, now + Duration::seconds(30), 10)
        .await
        .expect("lease");
    assert_eq!(leased.len(), 1);
    let lease = &leased[0];
    assert_eq!(lease.id, webhook.id);
    assert_eq!(lease.url, webhook.url);
    assert_eq!(lease.secrets, vec!["whsec_first".to_owned()]);
    assert_eq!(lease.consecutive_failures, 0);
    assert_eq!(lease.open_until, None);

    assert!(
        world.lease(now).await.is_empty(),
        "held until its lease ends"
    );
    assert!(
        !store
            .renew_webhook_lease(webhook.id, Uuid::now_v7(), now + Duration::seconds(60))
            .await
            .expect("renew"),
        "another token renews nothing"
    );
    assert!(
        store
            .renew_webhook_lease(webhook.id, lease.lease, now + Duration::seconds(60))
            .await
            .expect("renew")
    );
    assert!(
        world.lease(now + Duration::seconds(45)).await.is_empty(),
        "the renewal holds it past the first end"
    );
    let taken_over = world.lease(now + Duration::seconds(60)).await;
    assert_eq!(taken_over, vec![webhook.id], "a lease runs out on its own");
    assert!(
        !store
            .renew_webhook_lease(webhook.id, lease.lease, now + Duration::seconds(120))
            .await
            .expect("renew"),
        "the first worker lost it"
    );
    // Releasing under the lost token leaves the new lease in place.
    store
        .release_webhook(webhook.id, lease.lease)
        .await
        .expect("release");
    assert!(world.lease(now + Duration::seconds(61)).await.is_empty());

    let later = now + Duration::seconds(61);
    let current = store
        .lease_webhooks(
            later + Duration::seconds(30),
            later + Duration::seconds(60),
            10,
        )
        .await
        .expect("lease");
    assert_eq!(current.len(), 1);
    store
        .release_webhook(webhook.id, current[0].lease)
        .await
        .expect("release");
    assert_eq!(
        world.lease(later + Duration::seconds(30)).await,
        vec![webhook.id],
        "released: free at once"
    );
    assert_eq!(
        world.lease(now + Duration::seconds(300)).await,
        vec![webhook.id, idle.id],
        "due later, leased later (and the first one's lease has run out again)"
    );
}

async fn webhooks_with_an_open_breaker_or_disabled_are_not_leased(backend: Backend) {
    let world = World::new(backend).await;
    let store = &world.store;
    let key = world.key(10).await;
    let broken = world.webhook(key, &["tweet.created"]).await;
    let off = world.webhook(key, &["tweet.created"]).await;
    let now = now_millis();
    let delivery = world.delivery(broken.id, Some(1), now).await;
    world.delivery(off.id, Some(1), now).await;
    let open_until = now + Duration::seconds(60);
    let tripped = AttemptRecord {
        open_until: Some(open_until),
        ..failure(now, now, 5)
    };
    store
        .record_attempts(broken.id, &[(delivery, tripped)])
        .await
        .expect("record");
    world
        .update(
            key,
            off.id,
            WebhookChanges {
                enabled: Some(false),
                ..WebhookChanges::default()
            },
        )
        .await;

    assert!(world.lease(now).await.is_empty());
    assert_eq!(store.open_breakers(now).await.expect("count"), 1);
    assert_eq!(store.open_breakers(open_until).await.expect("count"), 0);
    let probe = store
        .lease_webhooks(open_until, open_until + Duration::seconds(30), 10)
        .await
        .expect("lease");
    assert_eq!(probe.len(), 1, "the breaker's cool-down is over: a probe");
    assert_eq!(probe[0].id, broken.id);
    assert_eq!(probe[0].consecutive_failures, 5);
    assert_eq!(probe[0].open_until, Some(open_until));
}

async fn an_attempt_moves_the_delivery_and_the_breaker(backend: Backend) {
    let world = World::new(backend).await;
    let store = &world.store;
    let key = world.key(10).await;
    let webhook = world.webhook(key, &["tweet.created"]).await;
    let now = now_millis();
    let delivery = world.delivery(webhook.id, Some(1), now).await;
    let retry_at = now + Duration::seconds(5);

    store
        .record_attempts(webhook.id, &[(delivery, failure(now, retry_at, 1))])
        .await
        .expect("record");
    let failed_once = store
        .delivery(webhook.id, delivery)
        .await
        .expect("read")
        .expect("found");
    let due_now = store
        .due_deliveries(webhook.id, now, 10)
        .await
        .expect("due");
    let due_later = store
        .due_deliveries(webhook.id, retry_at, 10)
        .await
        .expect("due");
    let breaker = store
        .webhook(key, webhook.id)
        .await
        .expect("read")
        .expect("found");

    assert_eq!(failed_once.status, DeliveryStatus::Pending);
    assert_eq!(failed_once.attempts, 1);
    assert_eq!(failed_once.next_attempt_at, Some(retry_at));
    assert_eq!(failed_once.last_attempt_at, Some(now));
    assert_eq!(failed_once.last_status_code, Some(500));
    assert_eq!(failed_once.last_error.as_deref(), Some("HTTP 500"));
    assert_eq!(failed_once.last_latency_ms, Some(120));
    assert_eq!(failed_once.last_response_excerpt.as_deref(), Some("oops"));
    assert_eq!(failed_once.delivered_at, None);
    assert!(due_now.is_empty(), "not due before its retry");
    assert_eq!(due_later.len(), 1);
    assert_eq!(due_later[0].id, delivery);
    assert_eq!(due_later[0].attempts, 1);
    assert_eq!(due_later[0].created_at, now);
    assert_eq!(breaker.consecutive_failures, 1);
    assert!(breaker.enabled);

    let delivered_at = retry_at + Duration::milliseconds(7);
    let success = AttemptRecord {
        sent_at: delivered_at,
        at: delivered_at,
        status_code: Some(204),
        error: None,
        latency_ms: 30,
        excerpt: String::new(),
        status: DeliveryStatus::Delivered,
        next_attempt_at: None,
        consecutive_failures: 0,
        open_until: None,
        disable: false,
    };
    // Attempts on two deliveries, recorded together.
    let next = world.delivery(webhook.id, Some(3), now).await;
    store
        .record_attempts(webhook.id, &[(delivery, success.clone()), (next, success)])
        .await
        .expect("record");
    let next_delivered = store
        .delivery(webhook.id, next)
        .await
        .expect("read")
        .expect("found");
    assert_eq!(next_delivered.status, DeliveryStatus::Delivered);
    assert_eq!(next_delivered.attempts, 1);
    let delivered = store
        .delivery(webhook.id, delivery)
        .await
        .expect("read")
        .expect("found");
    let closed = store
        .webhook(key, webhook.id)
        .await
        .expect("read")
        .expect("found");

    assert_eq!(delivered.status, DeliveryStatus::Delivered);
    assert_eq!(delivered.attempts, 2);
    assert_eq!(delivered.delivered_at, Some(delivered_at));
    assert_eq!(delivered.next_attempt_at, None);
    assert_eq!(delivered.last_status_code, Some(204));
    assert_eq!(delivered.last_error, None);
    assert_eq!(closed.consecutive_failures, 0);
    assert!(
        store
            .due_deliveries(webhook.id, retry_at + Duration::days(1), 10)
            .await
            .expect("due")
            .is_empty()
    );

    let gone_delivery = world.delivery(webhook.id, Some(2), now).await;
    let gone = AttemptRecord {
        status_code: Some(410),
        status: DeliveryStatus::Failed,
        next_attempt_at: None,
        disable: true,
        ..failure(now, now, 1)
    };
    store
        .record_attempts(webhook.id, &[(gone_delivery, gone)])
        .await
        .expect("record");
    let disabled = store
        .webhook(key, webhook.id)
        .await
        .expect("read")
        .expect("found");
    assert!(!disabled.enabled);
    assert_eq!(disabled.disabled_reason.as_deref(), Some(DISABLED_GONE));
    assert_eq!(
        store
            .delivery(webhook.id, gone_delivery)
            .await
            .expect("read")
            .expect("found")
            .status,
        DeliveryStatus::Failed
    );
}

async fn a_requeued_delivery_is_due_again_from_its_first_attempt(backend: Backend) {
    let world = World::new(backend).await;
    let store = &world.store;
    let key = world.key(10).await;
    let webhook = world.webhook(key, &["tweet.created"]).await;
    let other = world.webhook(key, &["tweet.created"]).await;
    let now = now_millis();
    let delivery = world.delivery(webhook.id, Some(1), now).await;
    let exhausted = AttemptRecord {
        status: DeliveryStatus::Failed,
        next_attempt_at: None,
        ..failure(now, now, 1)
    };
    store
        .record_attempts(webhook.id, &[(delivery, exhausted)])
        .await
        .expect("record");
    let later = now + Duration::hours(1);

    let requeued = store
        .requeue_delivery(webhook.id, delivery, later)
        .await
        .expect("requeue")
        .expect("found");
    let elsewhere = store
        .requeue_delivery(other.id, delivery, later)
        .await
        .expect("requeue");

    assert_eq!(requeued.status, DeliveryStatus::Pending);
    assert_eq!(requeued.attempts, 0);
    assert_eq!(requeued.next_attempt_at, Some(later));
    assert_eq!(
        requeued.last_status_code,
        Some(500),
        "the last attempt stays"
    );
    assert_eq!(elsewhere, None, "scoped by the subscription");
    let due = store
        .due_deliveries(webhook.id, later, 10)
        .await
        .expect("due");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].attempts, 0);

    // An attempt sent before the requeue, recorded after it, leaves the requeue standing.
    let stale = AttemptRecord {
        status: DeliveryStatus::Delivered,
        next_attempt_at: None,
        ..failure(later - Duration::seconds(1), later, 0)
    };
    store
        .record_attempts(webhook.id, &[(delivery, stale)])
        .await
        .expect("record");
    let kept = store
        .delivery(webhook.id, delivery)
        .await
        .expect("read")
        .expect("found");
    assert_eq!(kept.status, DeliveryStatus::Pending);
    assert_eq!(kept.attempts, 0);
}

async fn pruning_keeps_pending_and_recent_deliveries(backend: Backend) {
    let world = World::new(backend).await;
    let store = &world.store;
    let key = world.key(10).await;
    let webhook = world.webhook(key, &["tweet.created"]).await;
    let now = now_millis();
    let old = now - Duration::days(10);
    let delivered = world.delivery_queued_at(webhook.id, Some(1), old).await;
    let failed = world
        .delivery_queued_at(webhook.id, Some(2), old + Duration::seconds(1))
        .await;
    let pending = world.delivery_queued_at(webhook.id, Some(3), old).await;
    let recent = world.delivery_queued_at(webhook.id, Some(4), now).await;
    let done = |status| AttemptRecord {
        status,
        next_attempt_at: None,
        ..failure(now, now, 0)
    };
    for (id, status) in [
        (delivered, DeliveryStatus::Delivered),
        (failed, DeliveryStatus::Failed),
        (recent, DeliveryStatus::Delivered),
    ] {
        store
            .record_attempts(webhook.id, &[(id, done(status))])
            .await
            .expect("record");
    }
    let cutoff = now - Duration::days(1);

    let first = store.prune_deliveries(cutoff, 1).await.expect("prune");
    let second = store.prune_deliveries(cutoff, 10).await.expect("prune");
    let third = store.prune_deliveries(cutoff, 10).await.expect("prune");

    assert_eq!((first, second, third), (1, 1, 0));
    assert_eq!(
        store.delivery(webhook.id, delivered).await.expect("read"),
        None,
        "the oldest went first"
    );
    assert_eq!(
        store.delivery(webhook.id, failed).await.expect("read"),
        None
    );
    let left: Vec<Uuid> = store
        .deliveries(webhook.id, None, 10)
        .await
        .expect("list")
        .items
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(left, vec![recent, pending]);
}

async fn a_rotated_out_secret_signs_until_its_grace_period_ends(backend: Backend) {
    let world = World::new(backend).await;
    let store = &world.store;
    let key = world.key(10).await;
    let webhook = world.webhook(key, &["tweet.created"]).await;
    let now = now_millis();
    let until = now + Duration::hours(24);
    world.delivery(webhook.id, Some(1), now).await;

    let rotated = store
        .rotate_webhook_secret(key, webhook.id, "whsec_second", until)
        .await
        .expect("rotate")
        .expect("found");
    let during = store
        .lease_webhooks(now, now + Duration::seconds(30), 10)
        .await
        .expect("lease");
    store
        .release_webhook(webhook.id, during[0].lease)
        .await
        .expect("release");
    let after = store
        .lease_webhooks(until, until + Duration::seconds(30), 10)
        .await
        .expect("lease");

    assert_eq!(rotated.previous_secret_expires_at, Some(until));
    assert_eq!(
        during[0].secrets,
        vec!["whsec_second".to_owned(), "whsec_first".to_owned()],
        "the current secret first"
    );
    assert_eq!(after[0].secrets, vec!["whsec_second".to_owned()]);
}

on_every_backend!(
    a_key_holds_no_more_webhooks_than_its_limit,
    a_webhook_is_stored_and_listed_newest_first,
    another_keys_webhook_is_not_found_changed_or_deleted,
    an_update_changes_only_what_it_names,
    enabling_a_webhook_closes_its_breaker,
    subscriptions_match_whole_event_type_names,
    queueing_is_idempotent_and_skips_deleted_webhooks,
    a_leased_webhook_is_not_leased_again_until_its_lease_ends,
    webhooks_with_an_open_breaker_or_disabled_are_not_leased,
    an_attempt_moves_the_delivery_and_the_breaker,
    a_requeued_delivery_is_due_again_from_its_first_attempt,
    pruning_keeps_pending_and_recent_deliveries,
    a_rotated_out_secret_signs_until_its_grace_period_ends,
);
