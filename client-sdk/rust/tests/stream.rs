//! The realtime stream against the real server (in this process, port 0, fresh SQLite):
//! a tweet posted through REST arrives typed; a socket cut by the network (a TCP relay
//! between SDK and server, cut and restored) and sockets closed by the server (4000,
//! 1001) are reopened and resume with `since`, so that the tweets posted meanwhile come
//! exactly once; a disabled key (4001) and a refused ticket end the stream; a
//! subscription to a user who does not exist is refused alone.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use minitter_client::stream::{Backoff, Disconnect, Event, Stream, StreamError, Topic};
use minitter_client::{Client, ClientBuilder, types};
use support::Server;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use uuid::Uuid;

/// How long any one event may take to come.
const PATIENCE: Duration = Duration::from_secs(15);

/// Short waits between reconnects, so that a test is not slowed by the real backoff.
fn quick() -> Backoff {
    Backoff::new(Duration::from_millis(20), Duration::from_millis(100))
}

fn client(base_url: &str, api_key: &str, token: &str) -> Client {
    ClientBuilder::new(base_url)
        .api_key(api_key)
        .bearer_token(token)
        .build()
        .expect("a client")
}

/// The next item, which must come in time.
async fn next(stream: &mut Stream) -> Option<Result<Event, StreamError>> {
    tokio::time::timeout(PATIENCE, stream.next())
        .await
        .expect("the stream yields within its patience")
}

/// Reads events until `done` says so; every event read, that one last.
async fn read_until(stream: &mut Stream, mut done: impl FnMut(&Event) -> bool) -> Vec<Event> {
    let mut events = Vec::new();
    loop {
        let event = next(stream)
            .await
            .expect("the stream goes on")
            .expect("no error");
        let last = done(&event);
        events.push(event);
        if last {
            return events;
        }
    }
}

async fn subscribed(stream: &mut Stream, topic: &Topic) -> Vec<Event> {
    read_until(
        stream,
        |event| matches!(event, Event::Subscribed { topic: t, .. } if t == topic),
    )
    .await
}

async fn post(author: &Client, text: &str) -> types::Tweet {
    author
        .create_tweet()
        .body_map(|b| b.text(text))
        .send()
        .await
        .expect("a tweet")
        .into_inner()
}

/// The tweets among `events`, in order.
fn tweets(events: &[Event]) -> Vec<Uuid> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::TweetCreated { tweet, .. } => Some(tweet.id.0),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_tweet_posted_through_rest_arrives_typed_on_every_topic_it_belongs_to() {
    let server = Server::start().await;
    let (ada_id, token) = server.user("ada").await;
    let ada = client(&server.base_url, &server.api_key, &token);
    let mine = Topic::user(ada_id);
    let mut stream = ada
        .stream()
        .subscribe(Topic::home())
        .subscribe(mine.clone())
        .build();

    let opening = read_until(
        &mut stream,
        |event| matches!(event, Event::Subscribed { topic, .. } if *topic == mine),
    )
    .await;
    assert_eq!(opening.first(), Some(&Event::Connected));
    let live: BTreeSet<&Topic> = opening
        .iter()
        .filter_map(|event| match event {
            Event::Subscribed {
                topic,
                replayed: None,
                newest: None,
            } => Some(topic),
            _ => None,
        })
        .collect();
    assert_eq!(live, BTreeSet::from([&Topic::home(), &mine]));

    let posted = post(&ada, "Hello, stream!").await;
    let mut seen = BTreeSet::new();
    for _ in 0..2 {
        match next(&mut stream)
            .await
            .expect("an event")
            .expect("no error")
        {
            Event::TweetCreated { topic, tweet } => {
                assert_eq!(tweet, posted, "the REST tweet, typed, on {topic}");
                seen.insert(topic);
            }
            other => panic!("expected the tweet, got {other:?}"),
        }
    }
    assert_eq!(seen, BTreeSet::from([Topic::home(), mine]));
}

/// A TCP relay between the SDK and the server, whose connections can be cut (and new
/// ones refused) and then allowed again: a network that drops, with no change to the
/// server.
struct Relay {
    base_url: String,
    open: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Relay {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let base_url = format!("http://{}", listener.local_addr().expect("an address"));
        let open = Arc::new(AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (accepting, tasks) = (Arc::clone(&open), Arc::clone(&connections));
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !accepting.load(Ordering::SeqCst) {
                    drop(inbound); // the network is down: closed at once
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().expect("the relay's lock").push(task);
            }
        });
        Self {
            base_url,
            open,
            connections,
        }
    }

    /// Drops every connection and refuses new ones.
    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for task in self.connections.lock().expect("the relay's lock").drain(..) {
            task.abort();
        }
    }

    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_dropped_connection_resumes_with_since_and_neither_misses_nor_repeats_a_tweet() {
    let server = Server::start().await;
    let (ada_id, token) = server.user("ada").await;
    let ada = client(&server.base_url, &server.api_key, &token);
    let upstream: SocketAddr = server
        .base_url
        .trim_start_matches("http://")
        .parse()
        .expect("the server's address");
    let relay = Relay::start(upstream).await;
    // The stream reaches the server only through the relay; tweets are posted directly.
    let topic = Topic::user(ada_id);
    let mut stream = client(&relay.base_url, &server.api_key, &token)
        .stream()
        .subscribe(topic.clone())
        .backoff(quick())
        .build();
    let mut events = subscribed(&mut stream, &topic).await;

    let first = post(&ada, "before the cut").await;
    events.extend(
        read_until(&mut stream, |event| {
            matches!(event, Event::TweetCreated { .. })
        })
        .await,
    );

    relay.cut();
    events.extend(
        read_until(&mut stream, |event| {
            matches!(event, Event::Reconnecting { .. })
        })
        .await,
    );
    let meanwhile = [
        post(&ada, "while cut off, one").await,
        post(&ada, "while cut off, two").await,
    ];
    relay.restore();
    let resumed = subscribed(&mut stream, &topic).await;
    let last = post(&ada, "after the reconnect").await;
    events.extend(resumed.iter().cloned());
    events.extend(
        read_until(&mut stream, |event| {
            matches!(event, Event::TweetCreated { .. })
        })
        .await,
    );

    assert_eq!(
        tweets(&events),
        [first.id.0, meanwhile[0].id.0, meanwhile[1].id.0, last.id.0],
        "every tweet once, in order"
    );
    // The two came as the replay of a subscription resumed from the first tweet.
    assert_eq!(
        resumed.last(),
        Some(&Event::Subscribed {
            topic: topic.clone(),
            replayed: Some(2),
            newest: Some(meanwhile[1].id.0),
        }),
    );
    // The cut was a lost connection; a refused ticket and refused connections may follow
    // while the relay is down, each backing off within the (quick) policy's bounds.
    let reconnects: Vec<(u32, Duration, &Disconnect)> = events
        .iter()
        .chain(&resumed)
        .filter_map(|event| match event {
            Event::Reconnecting {
                attempt,
                delay,
                cause,
            } => Some((*attempt, *delay, cause)),
            _ => None,
        })
        .collect();
    assert!(
        matches!(reconnects.first(), Some((0, _, Disconnect::Lost { .. }))),
        "{reconnects:?}"
    );
    for (attempt, delay, _) in &reconnects {
        assert!(*delay <= quick().ceiling(*attempt), "{reconnects:?}");
    }
}

#[tokio::test]
async fn sockets_closed_by_the_server_are_reopened_as_the_policy_says_and_resume() {
    let server = Server::start().await;
    let (_, token) = server.user("ada").await;
    let (bob_id, bob_token) = server.user("bob").await;
    let ada = client(&server.base_url, &server.api_key, &token);
    let bob = client(&server.base_url, &server.api_key, &bob_token);
    let old = post(&bob, "before the stream").await;
    let (home, bobs) = (Topic::home(), Topic::user(bob_id));
    let mut stream = ada
        .stream()
        .subscribe(home.clone())
        .subscribe(bobs.clone())
        .backoff(quick())
        .build();
    subscribed(&mut stream, &bobs).await;
    let mut posted = vec![post(&ada, "one").await.id.0];
    let mut events = read_until(&mut stream, |event| {
        matches!(event, Event::TweetCreated { .. })
    })
    .await;

    // Lagged: at once, without waiting.
    server.state.realtime.close_all(4000, "lagged");
    let lagged = read_until(&mut stream, |event| {
        matches!(event, Event::Reconnecting { .. })
    })
    .await;
    assert_eq!(
        lagged.last(),
        Some(&Event::Reconnecting {
            attempt: 0,
            delay: Duration::ZERO,
            cause: Disconnect::Closed {
                code: 4000,
                reason: "lagged".to_owned()
            },
        })
    );
    events.extend(lagged);
    posted.push(post(&ada, "two").await.id.0);
    let resumed = subscribed(&mut stream, &bobs).await;
    // No tweet came on bob's topic: it resumed from the `newest` of its `subscribed`, so
    // his old tweet was not replayed (from the nil UUID it would have been).
    assert!(
        resumed.contains(&Event::Subscribed {
            topic: bobs.clone(),
            replayed: Some(0),
            newest: Some(old.id.0),
        }),
        "{resumed:?}"
    );
    events.extend(resumed);

    // Going away: after a backoff, the attempts counted afresh since the last good socket.
    server.state.realtime.close_all(1001, "shutting down");
    let going = read_until(&mut stream, |event| {
        matches!(event, Event::Reconnecting { .. })
    })
    .await;
    match going.last() {
        Some(Event::Reconnecting {
            attempt: 0,
            delay,
            cause: Disconnect::Closed { code: 1001, .. },
        }) => assert!(*delay <= quick().ceiling(0)),
        other => panic!("expected a reconnect after 1001, got {other:?}"),
    }
    events.extend(going);
    posted.push(post(&ada, "three").await.id.0);
    events.extend(subscribed(&mut stream, &bobs).await);
    let four = post(&ada, "four").await.id.0;
    posted.push(four);
    events.extend(
        read_until(
            &mut stream,
            |event| matches!(event, Event::TweetCreated { tweet, .. } if tweet.id.0 == four),
        )
        .await,
    );

    assert_eq!(tweets(&events), posted, "every tweet once, in order");
}

#[tokio::test]
async fn a_disabled_key_ends_the_stream_with_unauthorized() {
    let server = Server::start().await;
    let (key_id, key) = server.key_with_id().await;
    let (_, token) = server.user("ada").await;
    let ada = client(&server.base_url, &key, &token);
    let mut stream = ada
        .stream()
        .subscribe(Topic::home())
        .backoff(quick())
        .build();
    subscribed(&mut stream, &Topic::home()).await;

    server.disable_key(key_id).await;

    match next(&mut stream).await {
        Some(Err(StreamError::Unauthorized { .. })) => {}
        other => panic!("expected the end for 4001, got {other:?}"),
    }
    assert!(next(&mut stream).await.is_none(), "the stream has ended");
}

#[tokio::test]
async fn a_refused_ticket_ends_the_stream_with_the_problem() {
    let server = Server::start().await;
    let stranger = client(&server.base_url, &server.api_key, "not-a-token");
    let mut stream = stranger.stream().subscribe(Topic::home()).build();

    match next(&mut stream).await {
        Some(Err(error @ StreamError::Ticket(_))) => {
            let problem = error.problem().expect("the problem document");
            assert_eq!(problem.status, 401);
            assert_eq!(problem.code, types::ProblemCode::Unauthorized);
        }
        other => panic!("expected the ticket's 401, got {other:?}"),
    }
    assert!(next(&mut stream).await.is_none(), "the stream has ended");
}

#[tokio::test]
async fn a_subscription_to_a_missing_user_is_refused_alone_and_the_rest_goes_on() {
    let server = Server::start().await;
    let (_, token) = server.user("ada").await;
    let ada = client(&server.base_url, &server.api_key, &token);
    let nobody = Topic::user(Uuid::now_v7());
    let mut stream = ada
        .stream()
        .subscribe(nobody.clone())
        .subscribe(Topic::home())
        .build();

    let (mut home_live, mut refused) = (false, false);
    let events = read_until(&mut stream, |event| {
        match event {
            Event::Subscribed { topic, .. } if topic.is_home() => home_live = true,
            Event::Refused { .. } => refused = true,
            _ => {}
        }
        home_live && refused
    })
    .await;
    let refusal = events
        .iter()
        .find_map(|event| match event {
            Event::Refused {
                topic: Some(topic),
                problem,
            } if *topic == nobody => Some(problem),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no refusal of {nobody} in {events:?}"));
    assert_eq!(refusal.code, types::ProblemCode::NotFound);

    // The other topic goes on.
    let posted = post(&ada, "still here").await;
    match next(&mut stream)
        .await
        .expect("an event")
        .expect("no error")
    {
        Event::TweetCreated { topic, tweet } => {
            assert!(topic.is_home());
            assert_eq!(tweet, posted);
        }
        other => panic!("expected the tweet, got {other:?}"),
    }
}

#[tokio::test]
async fn topics_are_added_and_removed_while_the_stream_runs() {
    let server = Server::start().await;
    let (_, token) = server.user("ada").await;
    let (bob_id, bob_token) = server.user("bob").await;
    let ada = client(&server.base_url, &server.api_key, &token);
    let bob = client(&server.base_url, &server.api_key, &bob_token);
    let mut stream = ada.stream().subscribe(Topic::home()).build();
    subscribed(&mut stream, &Topic::home()).await;

    let bobs = Topic::user(bob_id);
    stream.subscribe(bobs.clone(), None);
    subscribed(&mut stream, &bobs).await;
    let posted = post(&bob, "from bob").await;
    assert_eq!(
        next(&mut stream)
            .await
            .expect("an event")
            .expect("no error"),
        Event::TweetCreated {
            topic: bobs.clone(),
            tweet: posted
        }
    );

    stream.unsubscribe(bobs.clone());
    assert_eq!(
        next(&mut stream)
            .await
            .expect("an event")
            .expect("no error"),
        Event::Unsubscribed {
            topic: bobs.clone()
        }
    );
    post(&bob, "unheard").await;
    let mine = post(&ada, "heard").await;
    match next(&mut stream)
        .await
        .expect("an event")
        .expect("no error")
    {
        Event::TweetCreated { topic, tweet } => {
            assert!(topic.is_home(), "not {topic}");
            assert_eq!(tweet, mine);
        }
        other => panic!("expected ada's tweet, got {other:?}"),
    }
}

#[tokio::test]
async fn many_topics_are_subscribed_without_tripping_the_servers_rate_limit() {
    let server = Server::start().await;
    let (_, token) = server.user("ada").await;
    let ada = client(&server.base_url, &server.api_key, &token);
    // More topics than the server takes at once (bursts of 20, then 10 a second).
    let mut builder = ada.stream().subscribe(Topic::home());
    let mut topics = BTreeSet::from([Topic::home()]);
    for n in 0..29 {
        let (id, _) = server.user(&format!("author{n}")).await;
        builder = builder.subscribe(Topic::user(id));
        topics.insert(Topic::user(id));
    }
    let mut stream = builder.build();

    let mut live = BTreeSet::new();
    let events = read_until(&mut stream, |event| {
        if let Event::Subscribed { topic, .. } = event {
            live.insert(topic.clone());
        }
        live.len() == topics.len()
    })
    .await;
    assert_eq!(live, topics);
    assert!(
        !events
            .iter()
            .any(|event| matches!(event, Event::Refused { .. } | Event::Reconnecting { .. })),
        "{events:?}"
    );
}
