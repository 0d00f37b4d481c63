//! The hub without sockets: queues, closes and indexes, on a SQLite store in a temporary
//! directory.

use super::*;
use crate::services::gateway::limits::Period;

async fn hub() -> (Arc<Hub>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = crate::infra::store::open(None, dir.path(), &Default::default())
        .await
        .expect("store");
    let gateway = Arc::new(Gateway::in_process(Arc::clone(&store)));
    (Hub::new(store, gateway, None), dir)
}

/// A holder of an unlimited key.
fn holder(user_id: Uuid) -> Holder {
    Holder {
        user_id,
        key_id: Uuid::now_v7(),
        plan_id: Uuid::now_v7(),
        limits: PlanLimits {
            throttle: None,
            quota: None,
        },
        connection_limit: 10,
    }
}

async fn connect(hub: &Hub, holder: Holder) -> Connection {
    let slot = hub
        .slots
        .take(holder.key_id, holder.connection_limit)
        .await
        .expect("slots")
        .expect("a slot");
    hub.connect(holder, slot, "request")
}

fn tweet(author_id: Uuid, n: usize) -> Event {
    Event::TweetCreated {
        tweet: TweetRecord {
            id: Uuid::now_v7(),
            author_id,
            text: format!("tweet {n}"),
            created_at: chrono::Utc::now(),
        },
    }
}

#[tokio::test]
async fn a_full_queue_closes_the_socket_as_lagged() {
    let (hub, _dir) = hub().await;
    let mut connection = connect(&hub, holder(Uuid::now_v7())).await;
    for _ in 0..QUEUE_CAPACITY {
        hub.send(connection.id, "{}");
    }
    assert!(connection.closed.try_recv().is_err(), "full, not over");
    hub.send(connection.id, "{}");
    let close = connection.closed.await.expect("closed");
    assert_eq!(close.code, CLOSE_LAGGED);
    assert_eq!(close.last_message.as_deref(), Some(r#"{"type":"lagged"}"#));
}

#[tokio::test]
async fn a_socket_that_stops_reading_does_not_hold_up_the_others() {
    let (hub, _dir) = hub().await;
    let author = Uuid::now_v7();
    let stuck = connect(&hub, holder(author)).await;
    let mut reading = connect(&hub, holder(author)).await;
    hub.subscribe(stuck.id, Topic::Home, false)
        .await
        .expect("home");
    hub.subscribe(reading.id, Topic::Home, false)
        .await
        .expect("home");
    let total = QUEUE_CAPACITY * 2;
    let mut received = 0;
    for n in 0..total {
        hub.on_event(&tweet(author, n), Origin::Local).await;
        while reading.queue.try_recv().is_ok() {
            received += 1;
        }
    }
    assert_eq!(received, total, "the reading socket got every tweet");
    let close = stuck.closed.await.expect("the stuck socket is closed");
    assert_eq!(close.code, CLOSE_LAGGED);
    let lagged: serde_json::Value =
        serde_json::from_str(&close.last_message.expect("lagged")).expect("JSON");
    assert_eq!(lagged["type"], "lagged");
    assert!(lagged["last_tweet_id"].is_string(), "{lagged}");
    assert!(reading.closed.try_recv().is_err(), "still open");
}

#[tokio::test]
async fn missing_other_instances_events_closes_every_socket_as_lagged() {
    let (hub, _dir) = hub().await;
    let first = connect(&hub, holder(Uuid::now_v7())).await;
    let second = connect(&hub, holder(Uuid::now_v7())).await;
    hub.set_in_sync(false);
    for connection in [first, second] {
        assert_eq!(connection.closed.await.expect("closed").code, CLOSE_LAGGED);
    }
}

#[tokio::test]
async fn disconnecting_forgets_the_socket_everywhere() {
    let (hub, _dir) = hub().await;
    let author = Uuid::now_v7();
    let connection = connect(&hub, holder(author)).await;
    hub.subscribe(connection.id, Topic::Home, false)
        .await
        .expect("home");
    hub.disconnect(connection.id);
    assert_eq!(hub.connections(), 0);
    let registry = hub.lock();
    assert!(registry.homes_by_author.is_empty());
    assert!(registry.by_user.is_empty());
}

#[tokio::test]
async fn messages_sent_are_charged_to_the_quota_and_a_spent_quota_closes_the_keys_sockets() {
    let (hub, _dir) = hub().await;
    let spending = Holder {
        limits: PlanLimits {
            throttle: None,
            quota: Some((5, Period::Day)),
        },
        ..holder(Uuid::now_v7())
    };
    let mut first = connect(&hub, spending).await;
    let second = connect(&hub, spending).await;
    let other = connect(&hub, holder(Uuid::now_v7())).await;
    for _ in 0..2 {
        hub.send(first.id, "{}");
    }
    hub.meter().await;
    assert!(first.closed.try_recv().is_err(), "2 of 5 spent");
    assert_eq!(
        hub.admit_message(&spending).await.expect("metered"),
        Verdict::Admitted,
        "3 of 5"
    );
    hub.send(second.id, "{}");
    hub.send(other.id, "{}");
    hub.disconnect(other.id);
    hub.send(first.id, "{}");
    hub.meter().await;
    for connection in [first, second] {
        let close = connection.closed.await.expect("closed");
        assert_eq!(close.code, CLOSE_QUOTA);
        let error: serde_json::Value =
            serde_json::from_str(&close.last_message.expect("an error first")).expect("JSON");
        assert_eq!(error["problem"]["code"], "quota_exceeded", "{error}");
        assert_eq!(error["problem"]["request_id"], "request");
    }
    assert!(matches!(
        hub.admit_message(&spending).await.expect("metered"),
        Verdict::QuotaExceeded { .. }
    ));
}

#[tokio::test]
async fn a_key_holds_no_more_sockets_than_its_plan_allows() {
    let (hub, _dir) = hub().await;
    let holder = Holder {
        connection_limit: 1,
        ..holder(Uuid::now_v7())
    };
    let connection = connect(&hub, holder).await;
    let refused = hub.slots.take(holder.key_id, 1).await.expect("slots");
    assert!(refused.is_none(), "the second socket is refused");
    hub.disconnect(connection.id);
    assert!(
        hub.slots
            .take(holder.key_id, 1)
            .await
            .expect("slots")
            .is_some(),
        "a socket that went gave its slot back"
    );
}

#[test]
fn topics_parse_from_their_wire_names() {
    let id = Uuid::now_v7();
    assert_eq!(Topic::parse("home"), Some(Topic::Home));
    assert_eq!(Topic::parse(&format!("user:{id}")), Some(Topic::User(id)));
    assert_eq!(Topic::parse("user:x"), None);
    assert_eq!(Topic::User(id).name(), format!("user:{id}"));
}
