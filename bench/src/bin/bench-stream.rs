//! The client side of `bench/stream.py`: many realtime stream sockets.
//!
//! - `hold --sockets 10000` opens that many sockets (a ticket each, tokens taken in turn),
//!   each subscribed to `home`, prints `{"open": N, "seconds": S}` and holds them, reading
//!   whatever comes, until its standard input closes: the script meanwhile measures the
//!   server's memory and its REST throughput beside them.
//! - `fanout --sockets 1000 --tweets 50` opens that many sockets subscribed to one
//!   author's topic, posts tweets as that author (one every 100 ms), and reports the time
//!   from each tweet's `created_at` to its receipt on each socket, p50 and p99.
//!
//! Both run on the server's machine, so the two clocks are one.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use futures::{SinkExt, StreamExt, TryStreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Sockets opened at once.
const OPENING_CONCURRENCY: usize = 64;

#[derive(Parser)]
struct Args {
    /// The server's base URL (`http://127.0.0.1:8080`).
    #[arg(long)]
    server: String,
    #[arg(long)]
    api_key: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Holds idle sockets subscribed to `home` until standard input closes.
    Hold {
        /// A file of bearer tokens, one a line; the sockets take them in turn.
        #[arg(long)]
        tokens: std::path::PathBuf,
        #[arg(long, default_value_t = 10_000)]
        sockets: usize,
    },
    /// Measures push latency from one author to many sockets; prints one JSON line.
    Fanout {
        /// The bearer token the sockets are opened with.
        #[arg(long)]
        listener_token: String,
        /// The author's bearer token and id.
        #[arg(long)]
        author_token: String,
        #[arg(long)]
        author_id: String,
        #[arg(long, default_value_t = 1_000)]
        sockets: usize,
        #[arg(long, default_value_t = 50)]
        tweets: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let http = reqwest::Client::new();
    match args.command {
        Command::Hold { tokens, sockets } => {
            let tokens: Vec<String> = std::fs::read_to_string(&tokens)
                .with_context(|| format!("reading {}", tokens.display()))?
                .lines()
                .map(str::to_owned)
                .collect();
            if tokens.is_empty() {
                bail!("no tokens");
            }
            let started = Instant::now();
            let opened = open_all(&http, &args.server, &args.api_key, sockets, |n| {
                (tokens[n % tokens.len()].clone(), "home".to_owned())
            })
            .await?;
            let seconds = started.elapsed().as_secs_f64();
            println!("{}", json!({"open": opened.len(), "seconds": seconds}));
            for mut socket in opened {
                tokio::spawn(async move { while let Some(Ok(_)) = socket.next().await {} });
            }
            // Until the script closes our standard input (a blocking read, off the runtime).
            tokio::task::spawn_blocking(|| {
                let mut rest = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut rest)
            })
            .await??;
            Ok(())
        }
        Command::Fanout {
            listener_token,
            author_token,
            author_id,
            sockets,
            tweets,
        } => {
            let topic = format!("user:{author_id}");
            let opened = open_all(&http, &args.server, &args.api_key, sockets, |_| {
                (listener_token.clone(), topic.clone())
            })
            .await?;
            let latencies: Arc<Mutex<Vec<f64>>> = Arc::default();
            let readers: Vec<_> = opened
                .into_iter()
                .map(|socket| tokio::spawn(receive(socket, tweets, Arc::clone(&latencies))))
                .collect();
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            for n in 0..tweets {
                tick.tick().await;
                let response = http
                    .post(format!("{}/v1/tweets", args.server))
                    .header("x-api-key", &args.api_key)
                    .header("authorization", format!("Bearer {author_token}"))
                    .json(&json!({"text": format!("fan-out {n}")}))
                    .send()
                    .await?;
                if response.status() != 201 {
                    bail!("posting answered {}", response.status());
                }
            }
            let _ =
                tokio::time::timeout(Duration::from_secs(10), futures::future::join_all(readers))
                    .await;
            let mut latencies = latencies
                .lock()
                .map_or_else(|e| e.into_inner().clone(), |l| l.clone());
            latencies.sort_by(f64::total_cmp);
            let at = |q: f64| {
                #[allow(
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    clippy::cast_precision_loss
                )]
                let index = ((latencies.len() as f64 - 1.0) * q).round() as usize;
                latencies.get(index).copied()
            };
            println!(
                "{}",
                json!({
                    "sockets": sockets, "tweets": tweets,
                    "expected": sockets * tweets, "received": latencies.len(),
                    "p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": latencies.last(),
                })
            );
            Ok(())
        }
    }
}

/// Opens `count` sockets, socket `n` with the token and topic `of(n)`, each subscribed.
async fn open_all(
    http: &reqwest::Client,
    server: &str,
    api_key: &str,
    count: usize,
    of: impl Fn(usize) -> (String, String),
) -> anyhow::Result<Vec<Socket>> {
    futures::stream::iter((0..count).map(|n| {
        let (token, topic) = of(n);
        open(http, server, api_key, token, topic)
    }))
    .buffer_unordered(OPENING_CONCURRENCY)
    .try_collect()
    .await
}

/// One socket: a ticket, the upgrade, the subscription and its answer.
async fn open(
    http: &reqwest::Client,
    server: &str,
    api_key: &str,
    token: String,
    topic: String,
) -> anyhow::Result<Socket> {
    let ticket: Value = http
        .post(format!("{server}/v1/stream/tickets"))
        .header("x-api-key", api_key)
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let path = ticket["url"].as_str().context("a ticket without a url")?;
    let url = format!("{}{path}", server.replacen("http://", "ws://", 1));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await?;
    socket
        .send(Message::text(
            json!({"action": "subscribe", "topic": topic}).to_string(),
        ))
        .await?;
    match socket.next().await {
        Some(Ok(Message::Text(text))) if text.contains("\"subscribed\"") => Ok(socket),
        other => bail!("subscribing answered {other:?}"),
    }
}

/// Records, for each tweet a socket receives, the time since the tweet's `created_at`;
/// ends after `expected` tweets or when the socket closes.
async fn receive(mut socket: Socket, expected: usize, latencies: Arc<Mutex<Vec<f64>>>) {
    let mut seen = 0;
    while seen < expected {
        let Some(Ok(Message::Text(text))) = socket.next().await else {
            return;
        };
        let received = Utc::now();
        let message: Value = serde_json::from_str(&text).unwrap_or_default();
        let created = message["data"]["created_at"]
            .as_str()
            .and_then(|at| DateTime::parse_from_rfc3339(at).ok());
        if let Some(created) = created {
            let micros = (received - created.with_timezone(&Utc))
                .num_microseconds()
                .unwrap_or(i64::MAX);
            #[allow(clippy::cast_precision_loss)] // microseconds fit an f64 exactly here
            let millis = micros as f64 / 1000.0;
            if let Ok(mut all) = latencies.lock() {
                all.push(millis);
            }
            seen += 1;
        }
    }
}
