//! `minitter-server admin …`: usage plans and API keys from the shell, for operators who
//! would rather not reach for curl (and for the first key of a production deployment,
//! before anyone holds one). It works on the configured database (`MINITTER_DATABASE_URL`,
//! or the data directory's), through the same store functions as the operator API.

use anyhow::{Result, bail};
use clap::Subcommand;

use uuid::Uuid;

use crate::config::Config;
use crate::domain::records::DEFAULT_STREAM_CONNECTION_LIMIT;
use crate::infra::store::{KeyChanges, KeySettings, KeyWrite, NewKey, PlanSettings};

#[derive(Debug, Clone, Subcommand)]
pub enum AdminCommand {
    /// Create a usage plan.
    CreatePlan {
        #[arg(long)]
        name: String,
        /// Requests per second (may be fractional); needs --burst.
        #[arg(long, requires = "burst")]
        rate: Option<f64>,
        /// Token bucket size; needs --rate.
        #[arg(long, requires = "rate")]
        burst: Option<i64>,
        /// Requests per period; needs --period.
        #[arg(long, requires = "period")]
        quota: Option<i64>,
        /// DAY (UTC), WEEK (ISO) or MONTH.
        #[arg(long, requires = "quota", value_parser = ["DAY", "WEEK", "MONTH"])]
        period: Option<String>,
        /// Realtime stream sockets each key may hold open at once.
        #[arg(long, default_value_t = DEFAULT_STREAM_CONNECTION_LIMIT,
              value_parser = clap::value_parser!(u32).range(0..=100_000))]
        stream_connections: u32,
    },
    /// List usage plans, newest first.
    ListPlans,
    /// Create an API key in a plan; prints its secret, which is shown this once.
    CreateKey {
        #[arg(long)]
        name: String,
        #[arg(long)]
        plan: Uuid,
    },
    /// List API keys, newest first (never their secrets).
    ListKeys,
    /// Enable or disable an API key.
    SetKeyEnabled {
        key: Uuid,
        #[arg(action = clap::ArgAction::Set)]
        enabled: bool,
    },
    /// Give an API key a new secret; the old one stops working.
    RotateKey { key: Uuid },
}

/// Runs an admin command and prints its result.
pub async fn run(command: AdminCommand, config: &Config) -> Result<()> {
    let store = config.open_store().await?;
    match command {
        AdminCommand::CreatePlan {
            name,
            rate,
            burst,
            quota,
            period,
            stream_connections,
        } => {
            if rate.is_some_and(|r| r <= 0.0)
                || burst.is_some_and(|b| b < 1)
                || quota.is_some_and(|q| q < 1)
            {
                bail!("--rate, --burst and --quota must be positive");
            }
            let settings = PlanSettings {
                throttle: rate.zip(burst),
                quota: quota.zip(period),
                stream_connection_limit: stream_connections,
                ..PlanSettings::named(&name)
            };
            let plan = store.create_plan(settings).await?;
            println!("created plan {} ({})", plan.id, plan.name);
        }
        AdminCommand::ListPlans => {
            for plan in store.plans(None, 100).await?.items {
                let throttle = plan.throttle.map_or("no throttle".to_owned(), |(r, b)| {
                    format!("{r}/s burst {b}")
                });
                let quota = plan
                    .quota
                    .map_or("no quota".to_owned(), |(l, p)| format!("{l} per {p}"));
                println!("{}  {:<20} {throttle}, {quota}", plan.id, plan.name);
            }
        }
        AdminCommand::CreateKey { name, plan } => {
            match store.create_key(KeySettings::new(&name, plan)).await? {
                KeyWrite::Done(NewKey {
                    record: key,
                    secret,
                }) => {
                    println!(
                        "created key {} ({}) in plan {}",
                        key.id, key.name, key.plan_id
                    );
                    println!("x-api-key: {secret}");
                    println!("(the secret is shown this once)");
                }
                KeyWrite::UnknownPlan | KeyWrite::NotFound => {
                    bail!("no usage plan has the id {plan}")
                }
            }
        }
        AdminCommand::ListKeys => {
            for key in store.keys(None, 100).await?.items {
                let state = if key.enabled { "enabled" } else { "disabled" };
                println!(
                    "{}  {:<20} {}…  plan {}  {state}",
                    key.id, key.name, key.prefix, key.plan_id
                );
            }
        }
        AdminCommand::SetKeyEnabled { key, enabled } => {
            let changes = KeyChanges {
                enabled: Some(enabled),
                ..KeyChanges::default()
            };
            match store.update_key(key, changes).await? {
                KeyWrite::Done(key) => println!(
                    "key {} is {}",
                    key.id,
                    if key.enabled { "enabled" } else { "disabled" }
                ),
                KeyWrite::NotFound | KeyWrite::UnknownPlan => bail!("no API key has the id {key}"),
            }
        }
        AdminCommand::RotateKey { key } => match store.rotate_key(key).await? {
            Some(NewKey {
                record: key,
                secret,
            }) => {
                println!("rotated key {} ({})", key.id, key.name);
                println!("x-api-key: {secret}");
            }
            None => bail!("no API key has the id {key}"),
        },
    }
    store.close().await;
    Ok(())
}
