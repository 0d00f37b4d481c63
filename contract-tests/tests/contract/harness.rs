//! A live server on port 0 with a fresh database (SQLite, or a PostgreSQL schema), and a
//! record of every exchange it had.
//!
//! The recorder wraps the whole app, so it sees exactly what a client receives: the
//! status, the headers and the body bytes of every response, error responses included.

use std::sync::{Arc, Mutex};

use minitter_server::config::Config;
use minitter_server::startup::Application;
use minitter_server::state::AppState;
use minitter_test_support::{Backend, TestDatabase};
use poem::{Body, Endpoint, EndpointExt, IntoResponse, Request, Response};

/// One request and the response it got.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub headers: poem::http::HeaderMap,
    pub body: Vec<u8>,
}

pub type Log = Arc<Mutex<Vec<Exchange>>>;

/// The operator's token the test server is configured with.
pub const ADMIN_TOKEN: &str = "contract-tests-admin-token-0123456789abcdef";

pub struct TestServer {
    pub base_url: String,
    /// A key of a plan without limits, which every client sends.
    pub api_key: String,
    pub log: Log,
    pub state: Arc<AppState>,
    _data_dir: tempfile::TempDir,
    _database: TestDatabase,
}

impl TestServer {
    pub async fn start(backend: Backend) -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let database = TestDatabase::create(backend).await;
        let mut config = Config::for_data_dir(data_dir.path());
        config.database_url = database.url().map(|url| url.to_owned().into());
        config.bind = "127.0.0.1:0".parse().expect("address");
        config.admin_token = Some(ADMIN_TOKEN.to_owned().into());
        // Webhook receivers in the tests listen on loopback, which the SSRF guard refuses.
        config.webhook_allowed_networks = vec!["127.0.0.1/32".parse().expect("a network")];
        let log: Log = Arc::default();
        let recorder_log = Arc::clone(&log);
        let app = Application::build_with(config, move |app| {
            app.around(move |next, request| record(next, request, Arc::clone(&recorder_log)))
                .boxed()
        })
        .await
        .expect("the server builds");
        let base_url = format!("http://127.0.0.1:{}", app.port());
        let state = app.state();
        let api_key = unlimited_key(&state).await;
        tokio::spawn(app.run_until_stopped());
        Self {
            base_url,
            api_key,
            log,
            state,
            _data_dir: data_dir,
            _database: database,
        }
    }

    /// A client that sends each request once: the SDK retries 429/503 by default, and a
    /// contract test must see every answer the server gives.
    pub fn client(&self) -> minitter_client::Client {
        minitter_client::ClientBuilder::new(&self.base_url)
            .api_key(&self.api_key)
            .retry_policy(minitter_client::RetryPolicy::disabled())
            .build()
            .expect("client")
    }

    pub fn client_with_token(&self, token: &str) -> minitter_client::Client {
        self.client()
            .with_bearer_token(token)
            .expect("a token is a header value")
    }

    pub fn exchanges(&self) -> Vec<Exchange> {
        self.log.lock().expect("log lock").clone()
    }
}

/// A key in a plan without throttle or quota, made through the store.
pub async fn unlimited_key(state: &AppState) -> String {
    use minitter_server::infra::store::{KeySettings, KeyWrite, PlanSettings};
    let settings = PlanSettings::named("contract tests");
    let plan = state.store.create_plan(settings).await.expect("plan");
    match state
        .store
        .create_key(KeySettings::new("contract tests", plan.id))
        .await
        .expect("key")
    {
        KeyWrite::Done(key) => key.secret,
        other => panic!("no key: {other:?}"),
    }
}

async fn record<E: Endpoint>(next: Arc<E>, request: Request, log: Log) -> poem::Result<Response> {
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let response = next.call(request).await?.into_response();
    let (parts, body) = response.into_parts();
    let bytes = body.into_vec().await?;
    log.lock().expect("log lock").push(Exchange {
        method,
        path,
        status: parts.status.as_u16(),
        headers: parts.headers.clone(),
        body: bytes.clone(),
    });
    Ok(Response::from_parts(parts, Body::from(bytes)))
}
