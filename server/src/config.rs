//! Configuration: command-line flags, `MINITTER_*` environment variables, and an optional
//! config file, in that order of precedence, with defaults that run on a laptop.
//!
//! The config file holds the same `MINITTER_*=value` lines as the environment (dotenv
//! syntax), so there is one name per setting to learn. It is read before the flags are
//! parsed and never overrides a variable that is already set.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use secrecy::SecretString;

/// The server's settings (the binary's command line flattens them beside its commands).
#[derive(Debug, Clone, Parser)]
pub struct Config {
    /// A file of `MINITTER_*=value` lines, read before flags and environment.
    #[arg(long, env = "MINITTER_CONFIG")]
    pub config: Option<PathBuf>,

    /// The address to listen on; port 0 picks a free port.
    #[arg(long, env = "MINITTER_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// The directory for the SQLite database (`minitter.db`), local pictures and the
    /// development secrets.
    #[arg(long, env = "MINITTER_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// The database: unset for `minitter.db` in the data directory, or a `sqlite://…` or
    /// `postgres://…` URL. A secret: it may hold a password.
    #[arg(long, env = "MINITTER_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<SecretString>,

    /// A Redis that several instances share (`redis://host:6379`): throttle and quota are
    /// then decided there, exactly across instances, and key changes reach every instance
    /// at once. Unset: decided in this process (one instance). A secret: it may hold a
    /// password.
    #[arg(long, env = "MINITTER_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<SecretString>,

    /// How many days outbox events are kept once every consumer has handled them.
    #[arg(long, env = "MINITTER_OUTBOX_RETENTION_DAYS", default_value_t = 7,
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub outbox_retention_days: u32,

    /// Authors with more followers than this are not copied into every follower's home
    /// feed; their tweets are merged in when a follower reads.
    #[arg(long, env = "MINITTER_FEED_FAN_OUT_LIMIT", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub feed_fan_out_limit: u32,

    /// MiB of memory for home feeds kept in this process (without Redis); the feeds of
    /// users who stopped reading are evicted first.
    #[arg(long, env = "MINITTER_FEED_MEMORY_MIB", default_value_t = 128,
          value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub feed_memory_mib: u64,

    /// MiB of memory for the cache of tweets by id.
    #[arg(long, env = "MINITTER_TWEET_CACHE_MIB", default_value_t = 32,
          value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub tweet_cache_mib: u64,

    /// MiB of memory for the cache of each author's followers (the fan-out of posts).
    #[arg(long, env = "MINITTER_FOLLOWER_CACHE_MIB", default_value_t = 16,
          value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub follower_cache_mib: u64,

    /// MiB of memory for the cache of users by id.
    #[arg(long, env = "MINITTER_USER_CACHE_MIB", default_value_t = 16,
          value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub user_cache_mib: u64,

    /// MiB of memory for the response cache of the operations the document lets be cached
    /// (`x-minitter-cache`); 0 turns it off.
    #[arg(long, env = "MINITTER_RESPONSE_CACHE_MIB", default_value_t = 16,
          value_parser = clap::value_parser!(u64).range(0..=65_536))]
    pub response_cache_mib: u64,

    /// Failed logins one client (API key and address) may have on an account in a window
    /// before its further attempts on it get 429; other clients are not affected.
    #[arg(long, env = "MINITTER_LOGIN_MAX_FAILURES_PER_CLIENT", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub login_max_failures_per_client: u64,

    /// Failed logins an account may have in a window from every client together before
    /// every attempt on it gets 429: the bound on guesses at one password. Above the
    /// per-client limit, so that one client cannot shut the owner out.
    #[arg(long, env = "MINITTER_LOGIN_MAX_FAILURES_PER_ACCOUNT", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub login_max_failures_per_account: u64,

    /// Failed logins one API key may make in a window, whatever the accounts.
    #[arg(long, env = "MINITTER_LOGIN_MAX_FAILURES_PER_KEY", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub login_max_failures_per_key: u64,

    /// The sliding window failed logins are counted in, in seconds.
    #[arg(long, env = "MINITTER_LOGIN_WINDOW_SECONDS", default_value_t = 900,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub login_window_seconds: u64,

    /// The most database connections each instance opens.
    #[arg(long, env = "MINITTER_DATABASE_MAX_CONNECTIONS", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub database_max_connections: u32,

    /// How long a request waits for a free database connection before it gets a 503.
    #[arg(long, env = "MINITTER_DATABASE_ACQUIRE_TIMEOUT_SECONDS", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=600))]
    pub database_acquire_timeout_seconds: u32,

    /// The longest one SQL statement may run (PostgreSQL's `statement_timeout`; on SQLite,
    /// the longest a write waits for the database lock).
    #[arg(long, env = "MINITTER_DATABASE_STATEMENT_TIMEOUT_SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub database_statement_timeout_seconds: u32,

    /// After SIGTERM or SIGINT, how many seconds the instance keeps serving, and accepting
    /// connections, while `/readyz` answers 503, so that load balancers stop sending it
    /// requests before it stops accepting them. 0 stops accepting at once.
    #[arg(long, env = "MINITTER_DRAIN_SECONDS", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(0..=3600))]
    pub drain_seconds: u32,

    /// The longest a stop may take, from the first SIGTERM or SIGINT to the exit: the drain
    /// period, then the requests still in flight, then writing the usage counts (requests
    /// still running 2 s before the end are cut, to leave that time for the counts). Must
    /// exceed `MINITTER_DRAIN_SECONDS`. When it is reached, or a second signal comes, the
    /// process exits at once with status 1.
    #[arg(long, env = "MINITTER_SHUTDOWN_TIMEOUT_SECONDS", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub shutdown_timeout_seconds: u32,

    /// The secret (at least 32 bytes) that signs bearer tokens. Unset in development: a
    /// random one is made and kept in the data directory. Required with --production.
    #[arg(long, env = "MINITTER_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<SecretString>,

    /// The bearer token of the operator API (`/admin/v1`). Unset in development: a random
    /// one is made, kept in the data directory and printed once. Required with --production.
    #[arg(long, env = "MINITTER_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<SecretString>,

    /// How long a bearer token lives, in seconds.
    #[arg(long, env = "MINITTER_JWT_TTL_SECONDS", default_value_t = 3600,
          value_parser = clap::value_parser!(u32).range(60..=86_400))]
    pub jwt_ttl_seconds: u32,

    /// Requests with a larger body are refused with 413.
    #[arg(long, env = "MINITTER_MAX_BODY_BYTES", default_value_t = 65_536)]
    pub max_body_bytes: usize,

    /// Uploaded pictures larger than this are refused with 413.
    #[arg(long, env = "MINITTER_MAX_PICTURE_BYTES", default_value_t = 5 * 1024 * 1024)]
    pub max_picture_bytes: usize,

    /// Store pictures in this S3 bucket instead of `pictures/` in the data directory.
    #[arg(long, env = "MINITTER_S3_BUCKET")]
    pub s3_bucket: Option<String>,

    /// An S3-compatible endpoint (MinIO, Ceph, …); unset for AWS. Implies path-style URLs.
    #[arg(long, env = "MINITTER_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,

    /// The S3 region.
    #[arg(long, env = "MINITTER_S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,

    /// The S3 access key id; unset uses the standard AWS credential chain.
    #[arg(
        long,
        env = "MINITTER_S3_ACCESS_KEY_ID",
        requires = "s3_secret_access_key"
    )]
    pub s3_access_key_id: Option<String>,

    /// The S3 secret access key.
    #[arg(long, env = "MINITTER_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<SecretString>,

    /// Answer picture downloads with a 307 to a short-lived presigned S3 URL.
    #[arg(long, env = "MINITTER_S3_PRESIGN")]
    pub s3_presign: bool,

    /// Consecutive failed or timed-out S3 calls after which the picture store's circuit
    /// breaker opens: picture operations then get 503 at once, without calling S3.
    #[arg(long, env = "MINITTER_S3_BREAKER_FAILURES", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub s3_breaker_failures: u32,

    /// Seconds an open circuit breaker waits before it lets one probe call through to S3;
    /// the probe's success closes it, its failure opens it for another cool-down.
    #[arg(long, env = "MINITTER_S3_BREAKER_COOL_DOWN_SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub s3_breaker_cool_down_seconds: u32,

    /// The load balancers or reverse proxies in front of this instance: networks or
    /// addresses, comma-separated (`127.0.0.1,10.0.0.0/8,::1`). A request whose TCP peer is
    /// one of them is attributed to the client address they forward (`Forwarded`, else
    /// `X-Forwarded-For`, read from the right past trusted hops), for IP policies, the
    /// login throttle and the access log; from any other peer those headers are ignored.
    /// Unset: every request is attributed to its TCP peer.
    #[arg(long, env = "MINITTER_TRUSTED_PROXIES")]
    pub trusted_proxies: Option<crate::http::client_address::TrustedProxies>,

    /// Networks webhook URLs may reach although they are not public, comma-separated CIDRs
    /// (`127.0.0.1/32,10.1.0.0/16`): for on-premise receivers, and tests on loopback.
    /// Everything else reserved (loopback, private, link-local, CGNAT, ...) is refused.
    #[arg(long, env = "MINITTER_WEBHOOK_ALLOWED_NETWORKS", value_delimiter = ',')]
    pub webhook_allowed_networks: Vec<ipnet::IpNet>,

    /// Seconds a webhook attempt may take before it counts as failed.
    #[arg(long, env = "MINITTER_WEBHOOK_TIMEOUT_SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=60))]
    pub webhook_timeout_seconds: u32,

    /// Seconds a webhook endpoint's open breaker waits before a probe.
    #[arg(long, env = "MINITTER_WEBHOOK_BREAKER_COOL_DOWN_SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u32).range(1..=86400))]
    pub webhook_breaker_cool_down_seconds: u32,

    /// Seconds an instance's lease on a subscription lasts unless renewed: after a crash,
    /// how long that subscription's deliveries wait for another instance to take over.
    #[arg(long, env = "MINITTER_WEBHOOK_LEASE_SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(2..=600))]
    pub webhook_lease_seconds: u32,

    /// Refuse to start with development defaults (such as a generated JWT secret).
    #[arg(long, env = "MINITTER_PRODUCTION")]
    pub production: bool,

    /// Serve /v1 without checking API keys or usage plans: only to measure what the gateway
    /// costs (`bench/run.py`). Refused together with --production.
    #[arg(long, env = "MINITTER_BENCHMARK_WITHOUT_GATEWAY", hide = true)]
    pub benchmark_without_gateway: bool,

    /// Serve without Prometheus metrics or the access log line per request (request ids and
    /// the panic catcher stay): only to measure what they cost (`bench/run.py`). Refused
    /// together with --production.
    #[arg(long, env = "MINITTER_BENCHMARK_WITHOUT_TELEMETRY", hide = true)]
    pub benchmark_without_telemetry: bool,

    /// Log lines as JSON objects rather than text. The filter is `MINITTER_LOG`.
    #[arg(long, env = "MINITTER_LOG_JSON")]
    pub log_json: bool,

    /// An OpenTelemetry collector's OTLP/HTTP base URL (`http://collector:4318`, plain
    /// HTTP): each request's span, with its request id, is exported to `<URL>/v1/traces`.
    /// Unset: nothing is exported. Batching and headers follow the standard `OTEL_BSP_*`
    /// and `OTEL_EXPORTER_OTLP_HEADERS` variables.
    #[arg(long, env = "MINITTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<crate::infra::otel::OtlpEndpoint>,
}

impl Config {
    /// The database connection pool's settings.
    pub fn pool_settings(&self) -> crate::infra::store::PoolSettings {
        let seconds = |s: u32| std::time::Duration::from_secs(u64::from(s));
        crate::infra::store::PoolSettings {
            max_connections: self.database_max_connections,
            acquire_timeout: seconds(self.database_acquire_timeout_seconds),
            statement_timeout: seconds(self.database_statement_timeout_seconds),
        }
    }

    /// How webhooks are delivered.
    pub fn webhook_settings(&self) -> crate::services::webhooks::WebhookSettings {
        let defaults = crate::services::webhooks::WebhookSettings::default();
        crate::services::webhooks::WebhookSettings {
            allowed_networks: self.webhook_allowed_networks.clone(),
            timeout: std::time::Duration::from_secs(self.webhook_timeout_seconds.into()),
            breaker: crate::services::webhooks::schedule::BreakerSettings {
                cool_down: std::time::Duration::from_secs(
                    self.webhook_breaker_cool_down_seconds.into(),
                ),
                ..defaults.breaker
            },
            // Renewed with half of it left before each attempt, so it must outlast an
            // attempt twice over, or it could run out while an attempt is in flight.
            lease: std::time::Duration::from_secs(
                self.webhook_lease_seconds
                    .max(2 * self.webhook_timeout_seconds + 1)
                    .into(),
            ),
            ..defaults
        }
    }

    /// How timelines are kept.
    pub fn timeline_settings(&self) -> crate::services::timeline::TimelineSettings {
        crate::services::timeline::TimelineSettings {
            feed_capacity: crate::services::timeline::feed::FEED_CAPACITY,
            fan_out_limit: self.feed_fan_out_limit,
            feed_memory_bytes: self.feed_memory_mib << 20,
            tweet_cache_bytes: self.tweet_cache_mib << 20,
            follower_cache_bytes: self.follower_cache_mib << 20,
        }
    }

    /// How failed logins are limited.
    pub fn login_limits(&self) -> crate::services::login::LoginLimits {
        crate::services::login::LoginLimits {
            per_client: self.login_max_failures_per_client,
            per_account: self.login_max_failures_per_account,
            per_key: self.login_max_failures_per_key,
            window: std::time::Duration::from_secs(self.login_window_seconds),
            lease: crate::services::login::IN_FLIGHT_LEASE,
        }
    }

    /// Opens and migrates the configured database.
    pub async fn open_store(&self) -> Result<crate::infra::store::SharedStore> {
        use secrecy::ExposeSecret;
        crate::infra::store::open(
            self.database_url.as_ref().map(|url| url.expose_secret()),
            &self.data_dir,
            &self.pool_settings(),
        )
        .await
    }

    /// Reads the config file named by `--config` or `MINITTER_CONFIG` into the
    /// environment, so that parsing the flags (`Config` alone, or inside the binary's
    /// command line) sees its settings as variables.
    ///
    /// Must run before any other thread starts: it may set environment variables.
    pub fn read_config_file() -> Result<()> {
        let args: Vec<String> = std::env::args().collect();
        let from_flag = args.iter().enumerate().find_map(|(i, arg)| {
            arg.strip_prefix("--config=")
                .map(str::to_owned)
                .or_else(|| {
                    (arg == "--config")
                        .then(|| args.get(i + 1).cloned())
                        .flatten()
                })
        });
        if let Some(path) = from_flag.or_else(|| std::env::var("MINITTER_CONFIG").ok()) {
            dotenvy::from_path(&path).with_context(|| format!("reading config file {path}"))?;
        }
        Ok(())
    }

    /// Defaults for a server in `data_dir`, as if started with no flags.
    pub fn for_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        let mut config = Self::parse_from(["minitter-server"]);
        config.data_dir = data_dir.into();
        config
    }
}
