//! A live Minitter server for the SDK's tests: the real application, in this process on
//! port 0 with a fresh SQLite database, and helpers that make plans, keys and users.

#![allow(dead_code)] // each test binary uses some of the helpers

use std::sync::Arc;

use minitter_client::ClientBuilder;
use minitter_server::config::Config;
use minitter_server::domain::events::Event;
use minitter_server::domain::records::KeyChanges;
use minitter_server::infra::store::{KeySettings, KeyWrite, PlanSettings};
use minitter_server::startup::Application;
use minitter_server::state::AppState;

pub const PASSWORD: &str = "correct horse battery staple";

pub struct Server {
    pub base_url: String,
    pub state: Arc<AppState>,
    /// A key of a plan without limits.
    pub api_key: String,
    _data_dir: tempfile::TempDir,
}

impl Server {
    pub async fn start() -> Self {
        let data_dir = tempfile::tempdir().expect("a temporary directory");
        let mut config = Config::for_data_dir(data_dir.path());
        config.bind = "127.0.0.1:0".parse().expect("an address");
        config.database_url = None;
        config.redis_url = None;
        config.jwt_secret = None;
        config.admin_token = None;
        config.s3_bucket = None;
        config.production = false;
        let app = Application::build(config).await.expect("the server builds");
        let base_url = format!("http://127.0.0.1:{}", app.port());
        let state = app.state();
        tokio::spawn(app.run_until_stopped());
        let mut server = Self {
            base_url,
            state,
            api_key: String::new(),
            _data_dir: data_dir,
        };
        server.api_key = server.key(None).await;
        server
    }

    /// A key of a new plan with this throttle (requests per second, burst).
    pub async fn key(&self, throttle: Option<(f64, i64)>) -> String {
        self.plan_key(throttle, None).await
    }

    /// A key of a new plan with this throttle and quota (requests per `DAY`, `WEEK` or
    /// `MONTH`).
    pub async fn plan_key(
        &self,
        throttle: Option<(f64, i64)>,
        quota: Option<(i64, &str)>,
    ) -> String {
        let store = self.state.store.as_ref();
        let settings = PlanSettings {
            throttle,
            quota: quota.map(|(limit, period)| (limit, period.to_owned())),
            ..PlanSettings::named("sdk tests")
        };
        let plan = store.create_plan(settings).await.expect("a plan");
        match store
            .create_key(KeySettings::new("sdk tests", plan.id))
            .await
            .expect("a key")
        {
            KeyWrite::Done(key) => key.secret,
            other => panic!("no key: {other:?}"),
        }
    }

    /// A key of a new plan without limits: its id (for [`Server::disable_key`]) and secret.
    pub async fn key_with_id(&self) -> (uuid::Uuid, String) {
        let store = self.state.store.as_ref();
        let plan = store
            .create_plan(PlanSettings::named("sdk tests"))
            .await
            .expect("a plan");
        match store
            .create_key(KeySettings::new("sdk tests", plan.id))
            .await
            .expect("a key")
        {
            KeyWrite::Done(key) => (key.record.id, key.secret),
            other => panic!("no key: {other:?}"),
        }
    }

    /// Disables a key as the operator API's `update_api_key` does: the change, then the
    /// event that tells every part of the server (the stream's sockets too).
    pub async fn disable_key(&self, id: uuid::Uuid) {
        let changes = KeyChanges {
            enabled: Some(false),
            ..KeyChanges::default()
        };
        match self
            .state
            .store
            .update_key(id, changes)
            .await
            .expect("the key is updated")
        {
            KeyWrite::Done(_) => {}
            other => panic!("the key was not disabled: {other:?}"),
        }
        self.state.events.publish(Event::KeyChanged).await;
    }

    /// Signs a user up and logs them in: their id and bearer token.
    pub async fn user(&self, username: &str) -> (uuid::Uuid, String) {
        let client = ClientBuilder::new(&self.base_url)
            .api_key(&self.api_key)
            .build()
            .expect("a client");
        let email = format!("{username}@example.com");
        let user = client
            .sign_up()
            .body_map(|b| {
                b.username(username)
                    .email(email.as_str())
                    .password(PASSWORD)
            })
            .send()
            .await
            .expect("sign-up");
        let token = client
            .log_in()
            .body_map(|b| b.email(email.as_str()).password(PASSWORD))
            .send()
            .await
            .expect("log-in");
        (*user.id, token.access_token.as_str().to_owned())
    }

    pub async fn tweet_count(&self, user: uuid::Uuid) -> i64 {
        let client = ClientBuilder::new(&self.base_url)
            .api_key(&self.api_key)
            .build()
            .expect("a client");
        let user = client
            .get_user()
            .user_id(user)
            .send()
            .await
            .expect("the user");
        user.tweet_count
    }
}
