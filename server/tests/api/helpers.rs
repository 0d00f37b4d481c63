//! A server per test, on port 0 with a fresh data directory, and typed helpers to talk
//! to it over real HTTP.

use minitter_server::config::Config;
use minitter_server::startup::Application;
use minitter_server::store::{KeyWrite, PlanSettings, Store};
use serde_json::{Value, json};

pub const PASSWORD: &str = "correct horse battery staple";

pub struct TestApp {
    pub address: String,
    pub http: reqwest::Client,
    pub data_dir: std::path::PathBuf,
    /// The key `http` sends.
    pub api_key: String,
    /// Removes the data directory when the test ends, if the test made it.
    _temp: Option<tempfile::TempDir>,
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

/// A key in a plan with the given limits, made through the store.
pub async fn api_key(
    store: &Store,
    throttle: Option<(f64, i64)>,
    quota: Option<(i64, &str)>,
) -> String {
    let settings = PlanSettings {
        name: "tests".into(),
        description: None,
        throttle,
        quota: quota.map(|(limit, period)| (limit, period.to_owned())),
    };
    let plan = store.create_plan(settings).await.expect("plan");
    match store
        .create_key("tests", &plan.id, true)
        .await
        .expect("key")
    {
        KeyWrite::Done((_, secret)) => secret,
        other => panic!("no key: {other:?}"),
    }
}

pub async fn spawn_app() -> TestApp {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let app = Application::build(test_config(data_dir.path()))
        .await
        .expect("server builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let key = api_key(&app.state().store, None, None).await;
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        http: http_client(&key),
        api_key: key.clone(),
        data_dir: data_dir.path().to_owned(),
        _temp: Some(data_dir),
    }
}

pub fn test_config(data_dir: &std::path::Path) -> Config {
    let mut config = Config::for_data_dir(data_dir);
    config.bind = "127.0.0.1:0".parse().expect("address");
    config.jwt_secret = None;
    config.admin_token = None;
    config.s3_bucket = None;
    config.s3_presign = false;
    config.production = false;
    config
}

impl TestApp {
    /// A server started elsewhere (such as a child process) on `port`.
    pub fn at(port: u16, data_dir: &std::path::Path, api_key: &str) -> Self {
        let address = format!("http://127.0.0.1:{port}");
        TestApp {
            address,
            http: http_client(api_key),
            data_dir: data_dir.to_owned(),
            api_key: api_key.to_owned(),
            _temp: None,
        }
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

/// Runs `minitter-server admin <args>` on `data_dir` and returns what it printed.
pub fn admin_cli(data_dir: &std::path::Path, args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_minitter-server"))
        .arg("--data-dir")
        .arg(data_dir)
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

/// An unlimited key made with `minitter-server admin` in `data_dir`.
pub fn cli_key(data_dir: &std::path::Path) -> String {
    let plan = admin_cli(data_dir, &["create-plan", "--name", "tests"]);
    let plan_id = plan.split_whitespace().nth(2).expect("plan id").to_owned();
    let key = admin_cli(
        data_dir,
        &["create-key", "--name", "tests", "--plan", &plan_id],
    );
    key.lines()
        .find_map(|l| l.strip_prefix("x-api-key: "))
        .expect("secret")
        .to_owned()
}
