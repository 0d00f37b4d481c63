//! What every scenario starts from: a server of its own with two signed-up users, the
//! clients to reach it, and the builders and assertions the scenarios share.

use std::num::NonZeroU32;

use minitter_client::{Client, ProblemExt, types};
use minitter_test_support::Backend;

use crate::coverage;
use crate::harness::{ADMIN_TOKEN, TestServer};

pub const PASSWORD: &str = "correct horse battery staple";

/// A 1 × 1 red PNG.
pub const PIXEL_PNG: [u8; 69] = [
    137, 80, 78, 71, 13, 10, 26, 10, 0, 0, 0, 13, 73, 72, 68, 82, 0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0,
    0, 0, 144, 119, 83, 222, 0, 0, 0, 12, 73, 68, 65, 84, 120, 156, 99, 248, 207, 192, 0, 0, 3, 1,
    1, 0, 201, 254, 146, 239, 0, 0, 0, 0, 73, 69, 78, 68, 174, 66, 96, 130,
];

/// A fresh server, two users (Ada and Bob), each with a logged-in SDK client, and the
/// clients to reach the server.
pub struct Context {
    pub server: TestServer,
    pub raw: reqwest::Client,
    pub anonymous: Client,
    pub ada: types::User,
    pub ada_token: String,
    pub as_ada: Client,
    pub bob: types::User,
    pub as_bob: Client,
    pub as_admin: Client,
}

impl Context {
    pub async fn start(backend: Backend) -> Self {
        let server = TestServer::start(backend).await;
        let anonymous = server.client();
        let ada = sign_up(&anonymous, "ada_l", "ada@example.com").await;
        let bob = sign_up(&anonymous, "bob_b", "bob@example.com").await;
        let ada_token = log_in(&anonymous, "ada@example.com").await;
        let bob_token = log_in(&anonymous, "bob@example.com").await;
        Self {
            raw: keyed_http(&server.api_key),
            as_ada: server.client_with_token(&ada_token),
            as_bob: server.client_with_token(&bob_token),
            as_admin: server.client_with_token(ADMIN_TOKEN),
            anonymous,
            ada,
            ada_token,
            bob,
            server,
        }
    }

    /// Checks everything the server answered against the document, and that the scenario
    /// exercised every (operation, status) it claims; see [`coverage`].
    pub fn finish(self, claims: &[&str]) {
        coverage::check_scenario(&self.server.exchanges(), claims);
    }

    /// The run's key's plan and usage, as `GET /v1/usage` tells the partner.
    pub async fn own_usage(&self) -> types::KeyUsage {
        self.anonymous
            .get_usage()
            .send()
            .await
            .expect("usage")
            .into_inner()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.base_url)
    }

    /// Sends a raw request and returns its status.
    pub async fn raw_status(&self, request: reqwest::RequestBuilder) -> u16 {
        request.send().await.expect("send").status().as_u16()
    }

    pub async fn oversized_and_mistyped(&self, path: &str) {
        self.oversized_and_mistyped_with("POST", path).await;
    }

    /// A body over the limit is 413 and a body of the wrong type 415, before it is read
    /// (once the operation's credentials are good: they are checked first).
    pub async fn oversized_and_mistyped_with(&self, method: &str, path: &str) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let url = self.url(path);
        let token = if path.starts_with("/admin/") {
            ADMIN_TOKEN
        } else {
            self.ada_token.as_str()
        };
        let auth = format!("Bearer {token}");
        let request = || {
            self.raw
                .request(method.clone(), &url)
                .header("authorization", &auth)
        };
        let too_large = request()
            .header("content-type", "application/json")
            .body(vec![b' '; 70_000]);
        assert_eq!(self.raw_status(too_large).await, 413);
        let wrong_type = request().header("content-type", "text/plain").body("{}");
        assert_eq!(self.raw_status(wrong_type).await, 415);
    }

    /// Ada's `Authorization` header value, for raw requests.
    pub fn ada_auth(&self) -> String {
        format!("Bearer {}", self.ada_token)
    }

    /// Signs up another user and returns their logged-in client.
    pub async fn another_user(&self, username: &str, email: &str) -> (types::User, Client) {
        let user = sign_up(&self.anonymous, username, email).await;
        let token = log_in(&self.anonymous, email).await;
        (user, self.server.client_with_token(&token))
    }
}

/// A plain HTTP client that sends the API key, for requests the SDK cannot make.
fn keyed_http(api_key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-api-key", api_key.parse().expect("a header value"));
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("http client")
}

pub fn new_user(username: &str, email: &str) -> types::NewUser {
    types::NewUser {
        username: username.parse().expect("valid username"),
        email: email.parse().expect("valid email"),
        password: PASSWORD.parse().expect("valid password"),
        display_name: Some("Ada Lovelace".parse().expect("valid display name")),
    }
}

pub fn credentials(email: &str, password: &str) -> types::Credentials {
    types::Credentials {
        email: email.parse().expect("valid email"),
        password: password.parse().expect("valid password"),
    }
}

pub fn new_tweet(text: &str) -> types::NewTweet {
    types::NewTweet {
        text: text.parse().expect("valid tweet text"),
    }
}

pub fn plan_input(name: &str, rate_limit: f64) -> types::UsagePlanInput {
    types::UsagePlanInput {
        name: name.parse().expect("valid plan name"),
        description: None,
        throttle: Some(types::Throttle {
            rate_limit,
            burst_limit: std::num::NonZeroU64::new(5).expect("non-zero"),
        }),
        quota: Some(types::Quota {
            limit: std::num::NonZeroU64::new(100).expect("non-zero"),
            period: types::QuotaPeriod::Day,
        }),
        allow_cache_refresh: false,
        ip_policy: None,
        webhook_limit: None,
        stream_connection_limit: None,
    }
}

pub fn new_key(name: &str, plan_id: &types::Id) -> types::NewApiKey {
    types::NewApiKey {
        name: name.parse().expect("valid key name"),
        plan_id: plan_id.clone(),
        enabled: None,
        ip_policy: None,
    }
}

pub async fn sign_up(client: &Client, username: &str, email: &str) -> types::User {
    client
        .sign_up()
        .body(new_user(username, email))
        .send()
        .await
        .expect("sign up")
        .into_inner()
}

pub async fn log_in(client: &Client, email: &str) -> String {
    let token = client
        .log_in()
        .body(credentials(email, PASSWORD))
        .send()
        .await
        .expect("log in");
    token.into_inner().access_token.to_string()
}

/// The status of an SDK error, and its problem's `code` when it has one.
pub fn refusal<T>(result: Result<T, minitter_client::Error<types::Problem>>) -> (u16, String) {
    let Err(error) = result else {
        panic!("the request should fail");
    };
    let status = error.status().map(|s| s.as_u16()).unwrap_or_default();
    let code = error
        .problem()
        .map(|p| p.code.to_string())
        .unwrap_or_default();
    (status, code)
}

pub fn status(code: u16, name: &str) -> (u16, String) {
    (code, name.to_owned())
}

pub fn limit(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("non-zero")
}

/// An id nothing has.
pub fn unknown_id() -> types::Id {
    types::Id(uuid::Uuid::now_v7())
}

/// Declares a file's scenarios: each `async fn name(ctx: &Context)` listed becomes the
/// tests `name::sqlite` and `name::postgres`, each on a server of its own, and the file's
/// `SCENARIOS` lists what each claims to exercise (see [`coverage`]):
///
/// ```ignore
/// scenarios! {
///     sign_up: ["sign_up 201 400 409 413 415"],
/// }
/// ```
macro_rules! scenarios {
    ($($name:ident: [$($claim:literal),* $(,)?]),+ $(,)?) => {
        /// What each scenario of this file claims to exercise.
        pub const SCENARIOS: &[$crate::coverage::Scenario] = &[$(
            $crate::coverage::Scenario {
                name: concat!(module_path!(), "::", stringify!($name)),
                claims: &[$($claim),*],
            },
        )+];

        $(
            mod $name {
                const CLAIMS: &[&str] = &[$($claim),*];

                #[tokio::test]
                async fn sqlite() {
                    let ctx = $crate::helpers::Context::start(
                        minitter_test_support::Backend::Sqlite,
                    )
                    .await;
                    super::$name(&ctx).await;
                    ctx.finish(CLAIMS);
                }

                minitter_test_support::postgres_test! {
                    async fn postgres() {
                        let ctx = $crate::helpers::Context::start(
                            minitter_test_support::Backend::Postgres,
                        )
                        .await;
                        super::$name(&ctx).await;
                        ctx.finish(CLAIMS);
                    }
                }
            }
        )+
    };
}

pub(crate) use scenarios;
