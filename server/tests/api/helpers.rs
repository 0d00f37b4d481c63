//! A server per test, on port 0 with a fresh data directory and database (SQLite or a
//! PostgreSQL schema, see `minitter_test_support`), and typed helpers to talk to it over
//! real HTTP.

use std::sync::Arc;
use std::time::{Duration, Instant};

use minitter_server::config::Config;
use minitter_server::infra::store::{KeySettings, KeyWrite, PlanSettings, Store};
use minitter_server::startup::Application;
use minitter_server::state::AppState;
use minitter_test_support::{Backend, TestDatabase};
use serde_json::{Value, json};

pub const PASSWORD: &str = "correct horse battery staple";

pub struct TestApp {
    pub address: String,
    pub http: reqwest::Client,
    pub data_dir: std::path::PathBuf,
    /// The key `http` sends.
    pub api_key: String,
    /// The server's state, when it runs in this process.
    pub state: Option<Arc<AppState>>,
    /// The test's database, shared by every server the test starts on it.
    pub database: Arc<TestDatabase>,
    /// Removes the data directory when the test ends.
    _temp: Arc<tempfile::TempDir>,
}

/// An HTTP client that sends `api_key` with every request.
pub fn http_client(api_key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-api-key", api_key.parse().expect("a header value"));
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .build()
        .expect("http client")
}

/// A user signed up and logged in as `name` (`name@example.com`): their id and the
/// `Authorization` value of their token.
pub async fn user(app: &TestApp, name: &str) -> (String, String) {
    let email = format!("{name}@example.com");
    let id = app.sign_up(name, &email).await;
    (id, format!("Bearer {}", app.log_in(&email).await))
}

/// Posts a tweet as the user `authorization` names; returns its id.
pub async fn post_tweet(app: &TestApp, authorization: &str, text: &str) -> String {
    let response = app
        .http
        .post(app.url("/v1/tweets"))
        .header("authorization", authorization)
        .json(&json!({ "text": text }))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 201);
    let tweet: Value = response.json().await.expect("json");
    tweet["id"].as_str().expect("id").to_owned()
}

/// A key in a plan with the given limits, made through the store.
pub async fn api_key(
    store: &dyn Store,
    throttle: Option<(f64, i64)>,
    quota: Option<(i64, &str)>,
) -> String {
    let settings = PlanSettings {
        throttle,
        quota: quota.map(|(limit, period)| (limit, period.to_owned())),
        ..PlanSettings::named("tests")
    };
    key_in_plan(store, settings).await
}

/// A key in a new plan with `settings`, made through the store.
pub async fn key_in_plan(store: &dyn Store, settings: PlanSettings) -> String {
    let plan = store.create_plan(settings).await.expect("plan");
    match store
        .create_key(KeySettings::new("tests", plan.id))
        .await
        .expect("key")
    {
        KeyWrite::Done(key) => key.secret,
        other => panic!("no key: {other:?}"),
    }
}

/// A key made through the operator API in a new plan with `plan`'s fields.
pub struct PartnerKey {
    /// A client that sends the key.
    pub client: reqwest::Client,
    /// The key as created, its secret included.
    pub key: Value,
    pub plan: Value,
}

impl PartnerKey {
    pub async fn new(app: &TestApp, plan: Value) -> Self {
        let plan = app.admin_post("/admin/v1/usage-plans", &plan).await;
        let key = app
            .admin_post(
                "/admin/v1/api-keys",
                &json!({"name": "partner", "plan_id": plan["id"]}),
            )
            .await;
        let client = http_client(key["secret"].as_str().expect("secret"));
        Self { client, key, plan }
    }

    pub fn id(&self) -> &str {
        self.key["id"].as_str().expect("key id")
    }

    pub fn plan_id(&self) -> &str {
        self.plan["id"].as_str().expect("plan id")
    }
}

/// A server on `backend` with a fresh database and data directory, and a key without
/// limits.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// Like [`spawn_app`], with the configuration changed by `configure` first.
pub async fn spawn_app_with(backend: Backend, configure: impl FnOnce(&mut Config)) -> TestApp {
    let database = Arc::new(TestDatabase::create(backend).await);
    let data_dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let (address, state) = start(&database, data_dir.path(), configure).await;
    let key = api_key(state.store.as_ref(), None, None).await;
    TestApp {
        address,
        http: http_client(&key),
        api_key: key,
        data_dir: data_dir.path().to_owned(),
        state: Some(state),
        database,
        _temp: data_dir,
    }
}

/// Builds and runs a server; returns its address and state.
async fn start(
    database: &TestDatabase,
    data_dir: &std::path::Path,
    configure: impl FnOnce(&mut Config),
) -> (String, Arc<AppState>) {
    let mut config = test_config(data_dir, database);
    configure(&mut config);
    let app = Application::build(config).await.expect("server builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    tokio::spawn(app.run_until_stopped());
    (address, state)
}

/// The configuration of a test server in `data_dir` on `database`.
pub fn test_config(data_dir: &std::path::Path, database: &TestDatabase) -> Config {
    let mut config = Config::for_data_dir(data_dir);
    config.bind = "127.0.0.1:0".parse().expect("address");
    config.database_url = database.url().map(|url| url.to_owned().into());
    config.jwt_secret = None;
    config.admin_token = None;
    config.s3_bucket = None;
    config.s3_presign = false;
    config.production = false;
    config
}

impl TestApp {
    /// Another server on this one's database and data directory (as after a restart).
    pub async fn restart(&self) -> TestApp {
        self.sibling(|_| {}).await
    }

    /// Another instance on this one's database and data directory (so with the same
    /// development secrets), configured by `configure`.
    pub async fn sibling(&self, configure: impl FnOnce(&mut Config)) -> TestApp {
        let (address, state) = start(&self.database, &self.data_dir, configure).await;
        TestApp {
            address,
            state: Some(state),
            ..self.at_port(0)
        }
    }

    /// The same test's server, started elsewhere (such as a child process), on `port`.
    pub fn at_port(&self, port: u16) -> TestApp {
        TestApp {
            address: format!("http://127.0.0.1:{port}"),
            http: self.http.clone(),
            data_dir: self.data_dir.clone(),
            api_key: self.api_key.clone(),
            state: None,
            database: Arc::clone(&self.database),
            _temp: Arc::clone(&self._temp),
        }
    }

    /// The store of the server running in this process.
    pub fn store(&self) -> &dyn Store {
        self.state
            .as_ref()
            .expect("a server in this process")
            .store
            .as_ref()
    }

    /// The environment a `minitter-server` child process needs to use this test's data
    /// directory and database.
    pub fn server_command(&self) -> std::process::Command {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_minitter-server"));
        command.env("MINITTER_DATA_DIR", &self.data_dir);
        match self.database.url() {
            Some(url) => command.env("MINITTER_DATABASE_URL", url),
            None => command.env_remove("MINITTER_DATABASE_URL"),
        };
        command
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// Signs up a user and returns their id.
    pub async fn sign_up(&self, username: &str, email: &str) -> String {
        let body = json!({"username": username, "email": email, "password": PASSWORD});
        let response = self.post_json("/v1/users", &body).await;
        assert_eq!(response.status(), 201, "sign-up failed");
        let user: Value = response.json().await.expect("json");
        user["id"].as_str().expect("id").to_owned()
    }

    /// Logs in and returns the bearer token.
    pub async fn log_in(&self, email: &str) -> String {
        let body = json!({"email": email, "password": PASSWORD});
        let response = self.post_json("/v1/auth/token", &body).await;
        assert_eq!(response.status(), 200, "login failed");
        let token: Value = response.json().await.expect("json");
        token["access_token"].as_str().expect("token").to_owned()
    }

    pub async fn get_me(&self, authorization: Option<&str>) -> reqwest::Response {
        let mut request = self.http.get(self.url("/v1/me"));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        request.send().await.expect("request")
    }

    /// GET `path` (with `authorization`, if any), asserting a 200; its JSON body.
    pub async fn get_json(&self, path: &str, authorization: Option<&str>) -> Value {
        let mut request = self.http.get(self.url(path));
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        let response = request.send().await.expect("request");
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.expect("json")
    }

    /// `GET /metrics` with the admin token: the Prometheus text.
    pub async fn scrape_metrics(&self) -> String {
        let response = self
            .http
            .get(self.url("/metrics"))
            .header("authorization", self.admin_authorization())
            .send()
            .await
            .expect("scrape");
        assert_eq!(response.status(), 200, "GET /metrics");
        response.text().await.expect("text")
    }

    /// POSTs `body` to the operator API at `path` with the admin token; the JSON answer.
    pub async fn admin_post(&self, path: &str, body: &Value) -> Value {
        self.http
            .post(self.url(path))
            .header("authorization", self.admin_authorization())
            .json(body)
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json")
    }

    /// `Bearer <the development admin token>`, for the operator API.
    pub fn admin_authorization(&self) -> String {
        let token = std::fs::read_to_string(self.data_dir.join("admin-token"))
            .expect("the development admin token");
        format!("Bearer {}", token.trim())
    }

    /// The development JWT secret the server made in its data directory.
    pub fn jwt_secret(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("jwt-secret"))
            .expect("jwt secret file")
            .trim()
            .to_owned()
    }
}

/// Asserts a response is a Problem document with this status and code, and returns it.
pub async fn assert_problem(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status(), status);
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let problem: Value = response.json().await.expect("problem json");
    assert_eq!(problem["status"], status);
    assert_eq!(problem["code"], code);
    assert_eq!(problem["request_id"], request_id.as_str());
    problem
}

impl TestApp {
    /// Runs `minitter-server admin <args>` on this test's database and returns what it
    /// printed.
    pub fn admin_cli(&self, args: &[&str]) -> String {
        let output = self
            .server_command()
            .arg("admin")
            .args(args)
            .env("MINITTER_LOG", "off")
            .output()
            .expect("run the admin command");
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf-8")
    }
}

/// A `minitter-server` child process on a test's data directory and database.
pub struct ChildServer {
    process: std::process::Child,
    /// The server, reached over HTTP with the test's key.
    pub app: TestApp,
    /// What it writes to stdout and stderr, read as it comes so that it never blocks on a
    /// full pipe.
    output: Vec<std::thread::JoinHandle<String>>,
}

impl TestApp {
    /// Starts the server binary on this test's data directory and database, logging JSON
    /// at `log_filter` (at least `info`, which says the port), and waits until it listens.
    pub fn start_child(&self, log_filter: &str) -> ChildServer {
        self.start_child_with_env(log_filter, &[])
    }

    /// Like [`Self::start_child`], with more environment variables.
    pub fn start_child_with_env(&self, log_filter: &str, env: &[(&str, &str)]) -> ChildServer {
        use std::io::{BufRead, Read};
        let mut process = self
            .server_command()
            .envs(env.iter().copied())
            .env("MINITTER_BIND", "127.0.0.1:0")
            .env("MINITTER_LOG", log_filter)
            .env("MINITTER_LOG_JSON", "true")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start the server");
        let mut stdout = std::io::BufReader::new(process.stdout.take().expect("stdout"));
        let mut seen = String::new();
        let port = loop {
            let mut line = String::new();
            let read = stdout.read_line(&mut line).expect("utf-8");
            assert!(read > 0, "the server never said its port: {seen}");
            seen.push_str(&line);
            let json: Value = serde_json::from_str(&line).unwrap_or_default();
            if let Some(port) = json["fields"]["port"].as_u64() {
                break u16::try_from(port).expect("port");
            }
        };
        let mut stderr = process.stderr.take().expect("stderr");
        let output = vec![
            std::thread::spawn(move || {
                let mut rest = String::new();
                let _ = stdout.read_to_string(&mut rest);
                seen + &rest
            }),
            std::thread::spawn(move || {
                let mut all = String::new();
                let _ = stderr.read_to_string(&mut all);
                all
            }),
        ];
        ChildServer {
            process,
            app: self.at_port(port),
            output,
        }
    }
}

impl ChildServer {
    pub fn url(&self, path: &str) -> String {
        self.app.url(path)
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = i32::try_from(self.process.id()).expect("a pid");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).expect("kill");
    }

    /// SIGKILL (no shutdown, no flush, as a crash); returns everything it wrote.
    pub fn kill(mut self) -> String {
        self.process.kill().expect("SIGKILL");
        let _ = self.process.wait();
        self.output()
    }

    /// SIGTERM, as an orchestrator stops it, and its exit, within ten seconds; returns
    /// everything it wrote, its last log lines included.
    pub async fn stop(self) -> String {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let (_, _, output) = self.exit(Instant::now(), Duration::from_secs(10)).await;
        output
    }

    /// Waits until the process has exited, at most `within` from `since`; returns how it
    /// ended and everything it wrote. Kills it if it outlives that.
    pub async fn exit(
        mut self,
        since: Instant,
        within: Duration,
    ) -> (std::process::ExitStatus, Duration, String) {
        let status = loop {
            if let Some(status) = self.process.try_wait().expect("wait") {
                break status;
            }
            if since.elapsed() > within {
                let _ = self.process.kill();
                let _ = self.process.wait();
                panic!(
                    "still running {within:?} after the signal: {}",
                    self.output()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        (status, since.elapsed(), self.output())
    }

    /// Everything it wrote, once it has exited.
    fn output(&mut self) -> String {
        std::mem::take(&mut self.output)
            .into_iter()
            .map(|reader| reader.join().unwrap_or_default())
            .collect()
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        // A failed assertion must not leave a server behind.
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// The value of the sample `name{labels}` in a Prometheus text exposition.
pub fn metric_sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
}
