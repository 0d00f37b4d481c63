//! The one startup path: the binary, the tests and the benchmarks all build the server
//! through [`Application::build`], and [`app`] assembles every route and middleware.
//!
//! Middleware, outermost first (in poem a later `.with()` wraps the earlier ones):
//! 0. the serving build's version, `x-minitter-version`, on every response
//!    ([`version::Stamp`]);
//! 1. `nosniff` and a default content security policy on every response, whatever made
//!    it ([`security_headers::Harden`]);
//! 2. the client's address, from the peer or a trusted proxy's forwarding headers
//!    ([`client_address::Resolve`]);
//! 3. request id, tracing span, access log, panic catcher ([`telemetry::request_context`]);
//! 4. errors to Problem documents ([`error::render_problems`]);
//! 5. the documented limits on the request target and header fields, 414 and 431
//!    ([`request_limits::Enforce`]), before anything reads the request;
//! 6. the response cache, which keeps answers as sent ([`response_cache::serve`]);
//! 7. compression, both ways ([`compression::compression`]);
//! 8. `ETag` and 304s on the GETs the document declares them for ([`etag::conditional_get`]);
//! 9. rate-limit headers from the gateway's decision ([`gateway::rate_limit_headers`]);
//! 10. routes: the generated API routes, which check each operation's credentials as the
//!     document's `security` says (the API key through the gateway) and then take a kept
//!     answer if the response cache offers one, `/openapi.yaml` and `/docs`.
//!
//! The connections are served by [`serve::serve`] rather than poem's `Server`, so that
//! hyper's own parse limits sit far above those of step 5 (see there why).
//!
//! Stopping ([`Application::run_until_stopped`]): the first SIGTERM or SIGINT turns
//! `/readyz` to 503 at once while the instance goes on serving and accepting for
//! `MINITTER_DRAIN_SECONDS`, so that load balancers stop sending it requests; then it stops
//! accepting, lets the requests in flight finish, writes the usage counts, closes the
//! database and returns (the binary then writes its last log lines and exits 0). All of
//! it within `MINITTER_SHUTDOWN_TIMEOUT_SECONDS` of the signal: requests still running
//! near the end are cut, and if the end is reached anyway, or a second signal comes, it
//! returns an error at once (exit status 1), without waiting for anything more.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine;
use poem::endpoint::BoxEndpoint;
use poem::listener::{Acceptor, Listener, TcpAcceptor, TcpListener};
use poem::{Endpoint, EndpointExt, Response};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};

use crate::config::Config;
use crate::handlers::Handlers;
use crate::http::pagination::PageTokens;
use crate::http::{
    client_address, compression, docs, error, etag, pages, request_limits, security_headers, serve,
    telemetry, version,
};
use crate::infra::blob::BlobStore;
use crate::infra::blob::breaker::{BreakerSettings, CircuitBreaker};
use crate::infra::blob::local::LocalDir;
use crate::infra::blob::s3::{self, S3, S3Settings};
use crate::infra::redis::SharedRedis;
use crate::services::auth::Tokens;
use crate::services::events::{Events, Subscriber};
use crate::services::gateway;
use crate::services::gateway::Gateway;
use crate::services::login::{Hashing, LoginGuard};
use crate::services::profiles::Profiles;
use crate::services::realtime::tickets::Tickets;
use crate::services::realtime::{CLOSE_GOING_AWAY, Hub, slots};
use crate::services::response_cache::{self, RecordsById, ResponseCache};
use crate::services::timeline::Timelines;
use crate::services::timeline::feed::FeedStore;
use crate::services::timeline::memory::MemoryFeeds;
use crate::services::timeline::redis::RedisFeeds;
use crate::services::webhooks::Webhooks;
use crate::state::AppState;
use crate::stopping::{Stopping, cut_short, first_signal, stop_signals};
use crate::{bootstrap, generated};
use codegen_runtime::Limits;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

/// The shortest secret accepted: 256 bits, the size of the HS256 key.
const MIN_SECRET_BYTES: usize = 32;

/// A built server, bound and ready to run.
pub struct Application {
    acceptor: TcpAcceptor,
    port: u16,
    endpoint: BoxEndpoint<'static, Response>,
    state: Arc<AppState>,
    stopping: Stopping,
}

impl Application {
    /// Opens the database, resolves secrets and binds the listener.
    pub async fn build(config: Config) -> Result<Self> {
        Self::build_with(config, |endpoint| endpoint).await
    }

    /// Like [`Application::build`], with `wrap` placed around the whole app (contract
    /// tests use it to record every exchange).
    pub async fn build_with(
        config: Config,
        wrap: impl FnOnce(BoxEndpoint<'static, Response>) -> BoxEndpoint<'static, Response>,
    ) -> Result<Self> {
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!("creating the data directory {}", config.data_dir.display())
        })?;
        if config.production && config.benchmark_without_gateway {
            bail!("--benchmark-without-gateway cannot be used in production");
        }
        if config.production && config.benchmark_without_telemetry {
            bail!("--benchmark-without-telemetry cannot be used in production");
        }
        let stopping = Stopping::from_config(&config)?;
        let secret = configured_secret(
            &config,
            config.jwt_secret.as_ref(),
            "MINITTER_JWT_SECRET",
            "jwt-secret",
        )?;
        let admin_token = configured_secret(
            &config,
            config.admin_token.as_ref(),
            "MINITTER_ADMIN_TOKEN",
            "admin-token",
        )?;
        let store = config.open_store().await?;
        if !config.production {
            bootstrap::first_start(store.as_ref(), &config.data_dir).await?;
        }
        // Installed before the first request, so that nothing served goes uncounted. Without
        // telemetry nothing is installed, so that every metric of the process (the gateway's
        // and the caches' too) records into the facade's no-op recorder.
        if !config.benchmark_without_telemetry {
            crate::infra::metrics::handle();
        }
        let gateway = match &config.redis_url {
            None => Gateway::in_process(Arc::clone(&store)),
            Some(url) => Gateway::shared(
                Arc::clone(&store),
                SharedRedis::connect(url.expose_secret()).await?,
            ),
        };
        let login = LoginGuard::new(config.login_limits(), gateway.redis());
        let gateway = Arc::new(gateway);
        let timeline_settings = config.timeline_settings();
        let feeds: Arc<dyn FeedStore> = match gateway.redis() {
            Some(redis) => Arc::new(RedisFeeds::new(
                redis.clone(),
                timeline_settings.feed_capacity,
            )),
            None => Arc::new(MemoryFeeds::new(
                timeline_settings.feed_capacity,
                timeline_settings.feed_memory_bytes,
            )),
        };
        let timelines = Timelines::start(Arc::clone(&store), feeds, &timeline_settings);
        let webhooks = Webhooks::start(Arc::clone(&store), config.webhook_settings());
        let profiles = Arc::new(Profiles::new(config.user_cache_mib << 20));
        let response_cache = Arc::new(ResponseCache::new(
            config.response_cache_mib << 20,
            gateway.redis().cloned(),
            vec![
                Arc::clone(&profiles) as Arc<dyn RecordsById>,
                Arc::clone(&timelines) as Arc<dyn RecordsById>,
            ],
        ));
        let realtime = Hub::new(
            Arc::clone(&store),
            Arc::clone(&gateway),
            gateway.redis().cloned(),
        );
        let tickets = Tickets::new(gateway.redis().cloned());
        let events = Arc::new(Events::new(
            vec![
                Arc::clone(&realtime) as Arc<dyn Subscriber>,
                Arc::clone(&gateway) as Arc<dyn Subscriber>,
                Arc::clone(&profiles) as Arc<dyn Subscriber>,
                Arc::clone(&timelines) as Arc<dyn Subscriber>,
                Arc::clone(&response_cache) as Arc<dyn Subscriber>,
                Arc::clone(&webhooks) as Arc<dyn Subscriber>,
            ],
            gateway.redis().cloned(),
        ));
        let state = Arc::new(AppState {
            store: Arc::clone(&store),
            tokens: Tokens::new(&secret, u64::from(config.jwt_ttl_seconds)),
            page_tokens: PageTokens::new(&secret),
            admin_token_hash: Sha256::digest(admin_token.expose_secret().as_bytes()).into(),
            gateway,
            login,
            hashing: Hashing::per_core(),
            gateway_enabled: !config.benchmark_without_gateway,
            telemetry_enabled: !config.benchmark_without_telemetry,
            trusted_proxies: config.trusted_proxies.clone().unwrap_or_default(),
            pictures: picture_store(&config).await,
            profiles,
            timelines,
            webhooks,
            realtime,
            tickets,
            response_cache,
            events,
            draining: Arc::default(),
        });
        tokio::spawn(crate::handlers::sweep_orphan_pictures_hourly(
            Arc::downgrade(&state),
        ));
        tokio::spawn(flush_usage_every_second(Arc::downgrade(&state)));
        tokio::spawn(crate::services::outbox::prune_periodically(
            Arc::downgrade(&state.store),
            chrono::Duration::days(i64::from(config.outbox_retention_days)),
        ));
        tokio::spawn(ResponseCache::write_versions_every_second(Arc::downgrade(
            &state.response_cache,
        )));
        if state.gateway.redis().is_some() {
            tokio::spawn(Events::relay_from_redis(Arc::downgrade(&state.events)));
        }
        let limits = Limits {
            max_body_bytes: config.max_body_bytes,
            max_binary_body_bytes: config.max_picture_bytes,
        };
        let endpoint = wrap(app(Arc::clone(&state), limits).boxed());
        let acceptor = TcpListener::bind(config.bind)
            .into_acceptor()
            .await
            .with_context(|| format!("binding {}", config.bind))?;
        let port = acceptor
            .local_addr()
            .first()
            .and_then(|addr| addr.as_socket_addr().map(|a| a.port()))
            .context("the listener has no TCP address")?;
        Ok(Self {
            acceptor,
            port,
            endpoint,
            state,
            stopping,
        })
    }

    /// The port the server listens on (useful when the configured port was 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The shared state, for tests that need to reach behind the API.
    pub fn state(&self) -> Arc<AppState> {
        Arc::clone(&self.state)
    }

    /// Serves until SIGTERM or SIGINT (Ctrl-C), then drains and stops as the module's
    /// documentation says. An error if the stop was cut short (a second signal, or the
    /// shutdown bound reached).
    pub async fn run_until_stopped(self) -> Result<()> {
        // Before anything is announced: a signal sent once the port is known must find
        // the handlers in place, not the default action (which kills the process).
        let signals = stop_signals();
        let stopping = self.stopping;
        tracing::info!(port = self.port, version = version::VERSION, "listening");
        tokio::select! {
            () = self.serve_until(signals.clone()) => Ok(()),
            cause = cut_short(signals, stopping.timeout) => {
                tracing::error!(cause, "stopping at once: the requests in flight are cut and \
                    the usage counts of the last second may be lost");
                bail!("stopped at once: {cause}")
            }
        }
    }

    /// Serves until the first stop signal, then drains, finishes and cleans up.
    async fn serve_until(self, mut signals: watch::Receiver<u32>) {
        let Self {
            acceptor,
            endpoint,
            state,
            stopping,
            ..
        } = self;
        let draining = Arc::clone(&state.draining);
        let realtime = Arc::clone(&state.realtime);
        let shutdown = async move {
            first_signal(&mut signals).await;
            draining.start();
            tracing::info!(
                drain_seconds = stopping.drain.as_secs(),
                shutdown_timeout_seconds = stopping.timeout.as_secs(),
                "stopping: /readyz answers 503, serving on for the drain period; \
                 a second SIGTERM or Ctrl-C stops at once"
            );
            tokio::time::sleep(stopping.drain).await;
            tracing::info!(
                "drain period over: accepting no more connections, finishing the requests \
                 in flight and closing the stream's sockets"
            );
            realtime.close_all(CLOSE_GOING_AWAY, "the server is stopping; reconnect");
        };
        serve::serve(
            acceptor,
            endpoint,
            Arc::clone(&state.draining),
            shutdown,
            stopping.grace(),
        )
        .await;
        // The sockets were told to close; their close frames go out before the exit.
        state.realtime.closed(stopping.grace()).await;
        state.realtime.meter().await;
        match state.gateway.flush().await {
            Ok(()) => tracing::info!("usage counts written"),
            Err(error) => tracing::error!(%error, "usage counts could not be written at shutdown"),
        }
        state.store.close().await;
        tracing::info!("stopped");
    }
}

/// The configured picture store: S3 (behind a circuit breaker) when a bucket is named,
/// else the data directory (no breaker: it fails at once and has no remote to spare).
async fn picture_store(config: &Config) -> Arc<dyn BlobStore> {
    match &config.s3_bucket {
        Some(bucket) => Arc::new(CircuitBreaker::new(
            S3::new(S3Settings {
                bucket: bucket.clone(),
                endpoint: config.s3_endpoint.clone(),
                region: config.s3_region.clone(),
                credentials: config.s3_access_key_id.clone().zip(
                    config
                        .s3_secret_access_key
                        .as_ref()
                        .map(|s| s.expose_secret().to_owned()),
                ),
                path_style: config.s3_endpoint.is_some(),
                presign: config.s3_presign,
            })
            .await,
            BreakerSettings {
                failures: config.s3_breaker_failures,
                cool_down: Duration::from_secs(u64::from(config.s3_breaker_cool_down_seconds)),
                call_timeout: s3::CALL_TIMEOUT,
            },
        )),
        None => Arc::new(LocalDir::new(config.data_dir.join("blobs"))),
    }
}

/// Writes admitted-request counts about once a second, with the stream messages sent
/// meanwhile, until the state is dropped; renews the stream sockets' slots every
/// [`slots::RENEW_EVERY`]. A failed write keeps the counts for the next one.
async fn flush_usage_every_second(state: std::sync::Weak<AppState>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut renewed = tokio::time::Instant::now();
    loop {
        tick.tick().await;
        let Some(state) = state.upgrade() else { return };
        state.realtime.meter().await;
        if renewed.elapsed() >= slots::RENEW_EVERY {
            renewed = tokio::time::Instant::now();
            state.realtime.slots.renew().await;
        }
        if let Err(error) = state.gateway.flush().await {
            tracing::warn!(%error, "usage counts not written yet; retrying");
        }
    }
}

/// Every route and middleware of the server.
pub fn app(state: Arc<AppState>, limits: Limits) -> impl Endpoint<Output = Response> {
    let cache = Arc::clone(&state.response_cache);
    let telemetry_enabled = state.telemetry_enabled;
    let client_address = client_address::Resolve::trusting(&state.trusted_proxies);
    let api = generated::routes(Arc::new(Handlers::new(Arc::clone(&state))), limits);
    crate::handlers::stream::mount(pages::mount(docs::mount(api)), state)
        .around(gateway::rate_limit_headers)
        .around(etag::conditional_get)
        .around(compression::compression)
        .around(move |next, request| response_cache::serve(Arc::clone(&cache), next, request))
        .with(request_limits::Enforce)
        .around(error::render_problems)
        .around(move |next, request| telemetry::request_context(next, request, telemetry_enabled))
        .with(client_address)
        .with(security_headers::Harden)
        .with(version::Stamp)
}

/// A secret from the configuration, or in development a random one kept in the data
/// directory (so that it survives a restart) and announced once. Never a constant.
fn configured_secret(
    config: &Config,
    configured: Option<&SecretString>,
    variable: &str,
    file: &str,
) -> Result<SecretString> {
    if let Some(secret) = configured {
        if secret.expose_secret().len() < MIN_SECRET_BYTES {
            bail!("{variable} must be at least {MIN_SECRET_BYTES} bytes");
        }
        return Ok(secret.clone());
    }
    if config.production {
        bail!("{variable} must be set in production");
    }
    let path = config.data_dir.join(file);
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim().to_owned();
        if existing.len() >= MIN_SECRET_BYTES {
            return Ok(SecretString::from(existing));
        }
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    write_private(&path, &secret).with_context(|| format!("writing {}", path.display()))?;
    tracing::warn!(path = %path.display(), "no {variable}: generated a development secret");
    Ok(SecretString::from(secret))
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents.as_bytes())
}
