//! The hub without sockets: queues, closes and indexes, on a SQLite store in a temporary
//! directory.

use super::*;

async fn hub() -> (Arc<Hub>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = crate::infra::store::open(None, dir.path(), &Default::default())
        .await
        .expect("store");
    (Hub::new(store), dir)
}

fn holder(user_id: Uuid) -> Holder {
    Holder {
        user_id,
        key_id: Uuid::now_v7(),
    }
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
    let mut connection = hub.connect(holder(Uuid::now_v7()));
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
    let stuck = hub.connect(holder(author));
    let mut reading = hub.connect(holder(author));
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
    let first = hub.connect(holder(Uuid::now_v7()));
    let second = hub.connect(holder(Uuid::now_v7()));
    hub.set_in_sync(false);
    for connection in [first, second] {
        assert_eq!(connection.closed.await.expect("closed").code, CLOSE_LAGGED);
    }
}

#[tokio::test]
async fn disconnecting_forgets_the_socket_everywhere() {
    let (hub, _dir) = hub().await;
    let author = Uuid::now_v7();
    let connection = hub.connect(holder(author));
    hub.subscribe(connection.id, Topic::Home, false)
        .await
        .expect("home");
    hub.disconnect(connection.id);
    assert_eq!(hub.connections(), 0);
    let registry = hub.lock();
    assert!(registry.homes_by_author.is_empty());
    assert!(registry.by_user.is_empty());
}

#[test]
fn topics_parse_from_their_wire_names() {
    let id = Uuid::now_v7();
    assert_eq!(Topic::parse("home"), Some(Topic::Home));
    assert_eq!(Topic::parse(&format!("user:{id}")), Some(Topic::User(id)));
    assert_eq!(Topic::parse("user:x"), None);
    assert_eq!(Topic::User(id).name(), format!("user:{id}"));
}
