//! The README's walk-through as one program, run by CI against a live server:
//!
//! ```sh
//! MINITTER_URL=http://127.0.0.1:8080 MINITTER_API_KEY=mk_... \
//!     cargo run -p minitter-client --example quickstart
//! ```
//!
//! It signs a new user up, logs in, posts, reads the timeline page by page, reads a
//! profile conditionally, prints the key's rate limits and shows an error's `Problem`.
//! It exits with an error if anything does not behave as the README says.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::TryStreamExt;
use minitter_client::prelude::*;

const PASSWORD: &str = "correct horse battery staple";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("MINITTER_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let api_key = std::env::var("MINITTER_API_KEY").map_err(|_| "set MINITTER_API_KEY")?;

    // One client per partner: the API key, a timeout per attempt, retries by default.
    let client = ClientBuilder::new(&url)
        .api_key(&api_key)
        .timeout(Duration::from_secs(10))
        .build()?;

    // Sign up and log in (a fresh name each run).
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let username = format!("example_{stamp}");
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
    // Acting as the user: the same connection pool, another bearer token.
    let me = client.with_bearer_token(token.access_token.as_str())?;

    // A body as a typed value (or `.body_map(|b| b.text(…))`, as above). Posting is
    // retried safely: the SDK adds an Idempotency-Key, so a retry makes one tweet.
    let body = types::NewTweet {
        text: "Hello from the Rust SDK".parse()?,
    };
    let tweet = me.create_tweet().body(body).send().await?;
    println!("posted {} at {}", *tweet.id, tweet.created_at);

    // Every page of the timeline, each page retried on 429/503.
    let timeline: Vec<types::Tweet> = me
        .get_timeline()
        .limit(20u32)
        .stream()
        .try_collect()
        .await?;
    if !timeline.iter().any(|t| t.id == tweet.id) {
        return Err("the new tweet is not on the timeline".into());
    }

    // A conditional read: the ETag of the copy we have, and a 304 as a typed outcome.
    let first = client
        .get_user()
        .user_id(user.id.clone())
        .send_conditional()
        .await?;
    let etag = first.etag().ok_or("no ETag")?.to_owned();
    if let Some(quota) = first.rate_limit().as_ref().and_then(|l| l.quota()) {
        println!("quota: {:?} of {:?} left", quota.remaining, quota.limit);
    }
    match client
        .get_user()
        .user_id(user.id.clone())
        .if_none_match(etag)
        .send_conditional()
        .await?
    {
        Conditional::NotModified(_) => println!("{username}: unchanged"),
        Conditional::Modified(_) => return Err("a current ETag was not answered with 304".into()),
    }

    // Errors: a declared error status carries the server's Problem.
    let missing = client
        .get_tweet()
        .tweet_id("01936c4e-7a9b-7cc3-a2d5-4f0e8c1b2a3d")
        .send()
        .await;
    match missing {
        Err(error) => match error.problem() {
            Some(problem) => println!("{} {}", problem.status, problem.code),
            None => return Err(error.into()),
        },
        Ok(_) => return Err("an unknown tweet was found".into()),
    }

    // An overall deadline, across every attempt: wrap the call.
    let profile = tokio::time::timeout(Duration::from_secs(30), me.get_me().send()).await??;
    println!("signed in as {}", profile.username.as_str());
    Ok(())
}
