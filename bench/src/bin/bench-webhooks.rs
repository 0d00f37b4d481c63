//! The webhook side of `bench/webhooks.py`: a receiver that can hang, and an open-loop
//! load generator that measures delivery latency.
//!
//! - `receive --hang-seconds 10` answers every delivery after 10 s: the dead endpoint
//!   whose cost to `POST /v1/tweets` the script measures with wrk.
//! - `latency --rate 1000` subscribes a receiver of its own to `tweet.created`, posts
//!   tweets at a fixed rate (open loop: a request starts on every tick, whether or not the
//!   last one has answered, as wrk cannot), and reports, from the deliveries that arrive,
//!   the time from the event's commit (the payload's `timestamp`) to receipt.
//!
//! Both run on the server's machine, so the two clocks are one.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use poem::listener::TcpListener;
use poem::web::Data;
use poem::{EndpointExt, Route, Server, handler, post};
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Answers every request with 204 after a delay, until killed.
    Receive {
        #[arg(long)]
        bind: SocketAddr,
        #[arg(long, default_value_t = 0)]
        hang_seconds: u64,
    },
    /// Measures delivery latency at a fixed rate of tweets; prints one JSON line.
    Latency {
        /// The server's base URL.
        #[arg(long)]
        server: String,
        #[arg(long)]
        api_key: String,
        /// A file of bearer tokens, one a line; tweets go out as them in turn.
        #[arg(long)]
        tokens: std::path::PathBuf,
        /// Tweets a second.
        #[arg(long, default_value_t = 1000)]
        rate: u32,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
    },
}

/// Commit-to-receipt latencies, in milliseconds, in order of arrival.
type Latencies = Arc<Mutex<Vec<f64>>>;

#[handler]
async fn hang(Data(delay): Data<&Duration>) -> poem::http::StatusCode {
    tokio::time::sleep(*delay).await;
    poem::http::StatusCode::NO_CONTENT
}

#[handler]
async fn record(body: poem::Body, Data(latencies): Data<&Latencies>) -> poem::http::StatusCode {
    let received = Utc::now();
    let Ok(bytes) = body.into_bytes().await else {
        return poem::http::StatusCode::BAD_REQUEST;
    };
    let event: Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let written = event["timestamp"]
        .as_str()
        .and_then(|at| DateTime::parse_from_rfc3339(at).ok());
    if let Some(written) = written {
        let millis = (received - written.with_timezone(&Utc)).num_microseconds();
        #[allow(clippy::cast_precision_loss)] // microseconds fit an f64 exactly here
        let millis = millis.unwrap_or(i64::MAX) as f64 / 1000.0;
        latencies.lock().expect("not poisoned").push(millis);
    }
    poem::http::StatusCode::NO_CONTENT
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::Receive { bind, hang_seconds } => {
            let app = Route::new()
                .at("/hook", post(hang))
                .data(Duration::from_secs(hang_seconds));
            Server::new(TcpListener::bind(bind)).run(app).await?;
            Ok(())
        }
        Command::Latency {
            server,
            api_key,
            tokens,
            rate,
            seconds,
        } => {
            let tokens: Vec<String> = std::fs::read_to_string(&tokens)
                .context("reading the tokens")?
                .lines()
                .map(str::to_owned)
                .collect();
            if tokens.is_empty() || rate == 0 {
                bail!("no tokens, or a rate of 0");
            }
            let report = latency(&server, &api_key, &tokens, rate, seconds).await?;
            println!("{report}");
            Ok(())
        }
    }
}

/// Runs the latency scenario; returns its result as JSON.
async fn latency(
    server: &str,
    api_key: &str,
    tokens: &[String],
    rate: u32,
    seconds: u64,
) -> anyhow::Result<Value> {
    let latencies = Latencies::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    drop(listener);
    let receiver = Route::new()
        .at("/hook", post(record))
        .data(Arc::clone(&latencies));
    tokio::spawn(Server::new(TcpListener::bind(("127.0.0.1", port))).run(receiver));

    let http = reqwest::Client::new();
    let subscription: Value = http
        .post(format!("{server}/v1/webhooks"))
        .header("x-api-key", api_key)
        .json(&json!({"url": format!("http://127.0.0.1:{port}/hook"), "event_types": ["tweet.created"]}))
        .send()
        .await?
        .error_for_status()
        .context("subscribing (is 127.0.0.1 in MINITTER_WEBHOOK_ALLOWED_NETWORKS?)")?
        .json()
        .await?;

    // Ticks of 10 ms, each starting its share of the second's tweets.
    let per_tick = rate.div_ceil(100);
    let ticks = seconds * 100;
    let mut interval = tokio::time::interval(Duration::from_millis(10));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut posts = tokio::task::JoinSet::new();
    let mut sent = 0usize;
    for _ in 0..ticks {
        interval.tick().await;
        for _ in 0..per_tick {
            let request = http
                .post(format!("{server}/v1/tweets"))
                .header("x-api-key", api_key)
                .bearer_auth(&tokens[sent % tokens.len()])
                .json(&json!({"text": format!("latency {sent}")}));
            posts.spawn(async move { request.send().await.map(|r| r.status().is_success()) });
            sent += 1;
        }
    }
    let mut created = 0usize;
    while let Some(answer) = posts.join_next().await {
        if matches!(answer, Ok(Ok(true))) {
            created += 1;
        }
    }
    // Deliveries still on their way: wait until a second passes without one (at most 60 s).
    let mut seen = 0;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = latencies.lock().expect("not poisoned").len();
        if now >= created || now == seen {
            break;
        }
        seen = now;
    }
    if let Some(id) = subscription["id"].as_str() {
        http.delete(format!("{server}/v1/webhooks/{id}"))
            .header("x-api-key", api_key)
            .send()
            .await?;
    }

    let mut sorted = latencies.lock().expect("not poisoned").clone();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
        sorted.get(index).copied()
    };
    Ok(json!({
        "rate": rate,
        "seconds": seconds,
        "sent": sent,
        "created": created,
        "delivered": sorted.len(),
        "p50_ms": at(0.5),
        "p99_ms": at(0.99),
        "max_ms": sorted.last(),
    }))
}
