//! The realtime stream, run by CI against a live server (`run-against-server.sh`):
//!
//! ```sh
//! MINITTER_URL=http://127.0.0.1:8080 MINITTER_API_KEY=mk_... \
//!     cargo run -p minitter-client --example stream
//! ```
//!
//! It signs a new user up, opens a stream of their home timeline and their own tweets,
//! posts three tweets through REST and prints them as they arrive; then, as an app would
//! after a restart, it posts one more with no stream open and opens a new stream from the
//! last tweet it saw (`subscribe_since`), which replays the one it missed. It ends once
//! all of that happened, and fails if anything takes longer than 20 seconds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use minitter_client::prelude::*;
use minitter_client::stream::{Event, Stream, Topic};
use uuid::Uuid;

const PASSWORD: &str = "correct horse battery staple";
const DEADLINE: Duration = Duration::from_secs(20);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tokio::time::timeout(DEADLINE, run())
        .await
        .map_err(|_| format!("the stream did not deliver within {DEADLINE:?}"))?
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("MINITTER_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let api_key = std::env::var("MINITTER_API_KEY").map_err(|_| "set MINITTER_API_KEY")?;
    let client = ClientBuilder::new(&url).api_key(&api_key).build()?;

    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let username = format!("streamer_{stamp}");
    let email = format!("{username}@example.com");
    let user = client
        .sign_up()
        .body_map(|b| {
            b.username(username.as_str())
                .email(email.as_str())
                .password(PASSWORD)
        })
        .send()
        .await?;
    let token = client
        .log_in()
        .body_map(|b| b.email(email.as_str()).password(PASSWORD))
        .send()
        .await?;
    let me = client.with_bearer_token(token.access_token.as_str())?;
    let mine = Topic::user(*user.id);

    // A stream of two topics; the SDK gets the ticket, connects and subscribes.
    let mut stream = me
        .stream()
        .subscribe(Topic::home())
        .subscribe(mine.clone())
        .build();
    wait_until_live(&mut stream, &mine).await?;

    let mut last_seen = None;
    for n in 1..=3 {
        let posted = me
            .create_tweet()
            .body_map(|b| b.text(format!("streamed tweet {n}")))
            .send()
            .await?;
        // Once on `home` and once on `user:<id>`: wait for the second.
        let tweet = next_tweet_on(&mut stream, &mine).await?;
        if tweet.id != posted.id {
            return Err(format!("expected tweet {}, got {}", *posted.id, *tweet.id).into());
        }
        last_seen = Some(*tweet.id);
    }
    drop(stream); // closes the socket

    // Offline: a tweet is posted that no stream sees.
    let missed = me
        .create_tweet()
        .body_map(|b| b.text("posted while offline"))
        .send()
        .await?;
    let since: Uuid = last_seen.ok_or("no tweet was streamed")?;
    let mut resumed = me
        .stream()
        .subscribe_since(mine.clone(), since.to_string())
        .build();
    let replayed = next_tweet_on(&mut resumed, &mine).await?;
    if replayed.id != missed.id {
        return Err("the missed tweet was not replayed".into());
    }
    println!("replayed: {}", replayed.text.as_str());
    match wait_until_live(&mut resumed, &mine).await? {
        Some(1) => println!("resumed from {since}, one tweet replayed"),
        other => return Err(format!("expected one replayed tweet, got {other:?}").into()),
    }
    Ok(())
}

/// Prints events until `topic` is live; how many tweets were replayed for it.
async fn wait_until_live(
    stream: &mut Stream,
    topic: &Topic,
) -> Result<Option<u32>, Box<dyn std::error::Error>> {
    while let Some(event) = stream.next().await {
        match event? {
            Event::Subscribed {
                topic: live,
                replayed,
                ..
            } if live == *topic => {
                println!("live on {live}");
                return Ok(replayed);
            }
            Event::Reconnecting { delay, cause, .. } => {
                println!("reconnecting in {delay:?} ({cause:?})");
            }
            other => println!("{other:?}"),
        }
    }
    Err("the stream ended".into())
}

/// The next tweet that arrives on `topic`, printing the others.
async fn next_tweet_on(
    stream: &mut Stream,
    topic: &Topic,
) -> Result<types::Tweet, Box<dyn std::error::Error>> {
    while let Some(event) = stream.next().await {
        match event? {
            Event::TweetCreated { topic: on, tweet } => {
                println!("{on}: {}", tweet.text.as_str());
                if on == *topic {
                    return Ok(tweet);
                }
            }
            Event::Gap { topic } => println!("{topic}: more missed than replayed"),
            other => println!("{other:?}"),
        }
    }
    Err("the stream ended".into())
}
