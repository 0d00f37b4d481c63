//! Fills a database (the data directory's SQLite file, or the PostgreSQL database
//! `--database-url` names) with a realistic graph through the store layer (not HTTP):
//! users, follows with power-law popularity, and tweets whose authors follow a power law
//! too, spread over the last 30 days. Every user's password is `bench password`.

use std::path::PathBuf;

use anyhow::Result;
use chrono::{Duration, Utc};
use clap::Parser;
use minitter_server::infra::store::{NewUserRecord, PoolSettings, TweetRecord};
use rand::distr::Distribution;
use rand::distr::weighted::WeightedIndex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Debug, Parser)]
struct Args {
    /// The data directory to create (its `minitter.db` must not exist yet).
    #[arg(long)]
    data_dir: PathBuf,
    /// A PostgreSQL URL to fill instead of the data directory's SQLite file; the database
    /// must be empty.
    #[arg(long)]
    database_url: Option<String>,
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    #[arg(long, default_value_t = 100)]
    follows_per_user: usize,
    #[arg(long, default_value_t = 1_000_000)]
    tweets: usize,
    /// Zipf exponent of popularity: who is followed and who tweets.
    #[arg(long, default_value_t = 0.9)]
    skew: f64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

const BATCH: usize = 20_000;

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.data_dir)?;
    let path = args.data_dir.join("minitter.db");
    anyhow::ensure!(!path.exists(), "{} exists already", path.display());
    let store = minitter_server::infra::store::open_bulk(
        args.database_url.as_deref(),
        &args.data_dir,
        &PoolSettings::default(),
    )
    .await?;
    anyhow::ensure!(!store.has_plans().await?, "the database is not empty");
    let rng = StdRng::seed_from_u64(args.seed);
    let started = std::time::Instant::now();

    let hash =
        minitter_server::services::auth::hash_password("bench password".to_owned().into()).await?;
    let ids: Vec<uuid::Uuid> = (0..args.users).map(|_| uuid::Uuid::now_v7()).collect();
    let users: Vec<(uuid::Uuid, NewUserRecord)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let user = NewUserRecord {
                username: format!("user{i}"),
                email: format!("user{i}@bench.test"),
                display_name: format!("User {i}"),
                password_hash: hash.clone(),
            };
            (*id, user)
        })
        .collect();
    // Indexes are built once at the end (a sort) rather than row by row.
    let deferred = store.begin().await?;
    for chunk in users.chunks(BATCH) {
        store.import_users(chunk).await?;
    }
    println!("{} users in {:.1?}", ids.len(), started.elapsed());

    // The graph and the tweets are drawn on a thread of their own and handed over a
    // batch at a time, so that drawing the next batch overlaps the database's writing of
    // this one (sqlx runs SQLite on a thread of its own too): both cores work.
    let (batches, mut received) = tokio::sync::mpsc::channel(2);
    let drawing = std::thread::spawn({
        let ids = ids.clone();
        move || draw(&args, &ids, rng, &batches)
    });
    let (mut follows, mut tweets) = (0, 0);
    let mut drawing_tweets = false;
    while let Some(batch) = received.recv().await {
        match batch {
            Batch::Follows(edges) => {
                follows += edges.len();
                store.import_follows(&edges).await?;
            }
            Batch::Tweets(batch) => {
                if !drawing_tweets {
                    drawing_tweets = true;
                    println!("{follows} follows in {:.1?}", started.elapsed());
                }
                tweets += batch.len();
                store.import_tweets(&batch).await?;
            }
        }
    }
    drawing
        .join()
        .map_err(|_| anyhow::anyhow!("the drawing thread panicked"))??;
    println!("{tweets} tweets in {:.1?}", started.elapsed());
    store.finish(deferred).await?;
    store.close().await;
    // The rate counts the indexes and counters built at the end: the load's whole cost.
    let rows = ids.len() + follows + tweets;
    println!(
        "{rows} rows, indexes and counters in {:.1?}: {:.0} rows/s",
        started.elapsed(),
        rows as f64 / started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A batch of rows for the store.
enum Batch {
    Follows(Vec<(uuid::Uuid, uuid::Uuid)>),
    Tweets(Vec<TweetRecord>),
}

/// Draws the follows (popularity: user i has weight 1 / (i + 1)^skew), then the tweets
/// (authors by the same popularity, spread evenly over the last 30 days), and sends them
/// in batches of [`BATCH`]. Stops early when the receiver has gone.
fn draw(
    args: &Args,
    ids: &[uuid::Uuid],
    mut rng: StdRng,
    batches: &tokio::sync::mpsc::Sender<Batch>,
) -> Result<()> {
    let send = |batch| {
        batches
            .blocking_send(batch)
            .map_err(|_| anyhow::anyhow!("the loader stopped"))
    };
    let weights: Vec<f64> = (0..ids.len())
        .map(|i| 1.0 / ((i + 1) as f64).powf(args.skew))
        .collect();
    let popular = WeightedIndex::new(&weights)?;
    let mut edges = Vec::with_capacity(BATCH);
    for (follower, follower_id) in ids.iter().enumerate() {
        let mut chosen = std::collections::HashSet::new();
        while chosen.len() < args.follows_per_user.min(ids.len() - 1) {
            let followee = popular.sample(&mut rng);
            if followee != follower && chosen.insert(followee) {
                edges.push((*follower_id, ids[followee]));
            }
        }
        if edges.len() >= BATCH {
            send(Batch::Follows(std::mem::replace(
                &mut edges,
                Vec::with_capacity(BATCH),
            )))?;
        }
    }
    send(Batch::Follows(edges))?;

    let span_ms = Duration::days(30).num_milliseconds();
    let start = Utc::now() - Duration::days(30);
    let mut batch = Vec::with_capacity(BATCH);
    for n in 0..args.tweets {
        let offset = (n as i64 * span_ms) / args.tweets as i64;
        let created_at = start + Duration::milliseconds(offset);
        let millis = u64::try_from(created_at.timestamp_millis())?;
        let ts = uuid::Timestamp::from_unix(
            uuid::NoContext,
            millis / 1000,
            ((millis % 1000) * 1_000_000) as u32,
        );
        let author = &ids[popular.sample(&mut rng)];
        let words = rng.random_range(3..30);
        batch.push(TweetRecord {
            id: uuid::Uuid::new_v7(ts),
            author_id: *author,
            text: format!("tweet {n}: {}", "lorem ipsum ".repeat(words / 2))
                .trim_end()
                .to_owned(),
            created_at,
        });
        if batch.len() == BATCH {
            send(Batch::Tweets(std::mem::replace(
                &mut batch,
                Vec::with_capacity(BATCH),
            )))?;
        }
    }
    send(Batch::Tweets(batch))
}
