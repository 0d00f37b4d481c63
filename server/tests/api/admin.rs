//! The operator API: the admin token, secrets shown once, and the development bootstrap.

use minitter_server::infra::store::secret_hash;
use minitter_server::startup::Application;
use serde_json::{Value, json};

use minitter_test_support::{Backend, TestDatabase, on_every_backend};

use crate::helpers::{assert_problem, spawn_app, test_config};

async fn a_key_secret_is_shown_at_creation_and_rotation_only(backend: Backend) {
    let app = spawn_app(backend).await;
    let auth = app.admin_authorization();
    let plan: Value = app
        .http
        .post(app.url("/admin/v1/usage-plans"))
        .header("authorization", &auth)
        .json(&json!({"name": "p", "throttle": {"rate_limit": 0.5, "burst_limit": 1}}))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let created: Value = app
        .http
        .post(app.url("/admin/v1/api-keys"))
        .header("authorization", &auth)
        .json(&json!({"name": "k", "plan_id": plan["id"]}))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let secret = created["secret"].as_str().expect("secret").to_owned();
    let key_path = format!("/admin/v1/api-keys/{}", created["id"].as_str().expect("id"));
    let rotated: Value = app
        .http
        .post(app.url(&format!("{key_path}/rotate")))
        .header("authorization", &auth)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let new_secret = rotated["secret"].as_str().expect("secret").to_owned();
    assert_ne!(new_secret, secret);

    for path in ["/admin/v1/api-keys", key_path.as_str()] {
        let body = app
            .http
            .get(app.url(path))
            .header("authorization", &auth)
            .send()
            .await
            .expect("request");
        let text = body.text().await.expect("text");
        assert!(
            !text.contains(&secret) && !text.contains(&new_secret),
            "{path} shows a secret"
        );
        assert!(!text.contains("secret"), "{path} has a secret field");
    }
    // Stored as a hash only: the new secret's hash finds the key, the old one's nothing.
    let store = app.store();
    let (_, _, stored) = store
        .key_by_secret_hash(&secret_hash(&new_secret))
        .await
        .expect("lookup")
        .expect("the key");
    assert!(stored.len() == 64 && !stored.contains(&new_secret));
    let old = store.key_by_secret_hash(&secret_hash(&secret)).await;
    assert!(old.expect("lookup").is_none());
    if backend != Backend::Sqlite {
        return;
    }
    let db = std::fs::read(app.data_dir.join("minitter.db")).expect("db");
    let wal = std::fs::read(app.data_dir.join("minitter.db-wal")).unwrap_or_default();
    for file in [&db, &wal] {
        assert!(
            !file
                .windows(new_secret.len())
                .any(|w| w == new_secret.as_bytes()),
            "a plaintext secret on disk"
        );
    }
}

async fn the_operator_api_needs_the_admin_token_exactly(backend: Backend) {
    let app = spawn_app(backend).await;
    let authorization = app.admin_authorization();
    let token = authorization
        .strip_prefix("Bearer ")
        .expect("a bearer token")
        .to_owned();
    app.sign_up("ada", "ada@example.com").await;
    let user_token = app.log_in("ada@example.com").await;
    for auth in [
        None,
        Some(format!("Bearer {user_token}")),
        Some(format!("Bearer {token}x")),
        Some(token.clone()),
    ] {
        let mut request = app.http.get(app.url("/admin/v1/usage-plans"));
        if let Some(auth) = &auth {
            request = request.header("authorization", auth);
        }
        assert_problem(request.send().await.expect("request"), 401, "unauthorized").await;
    }
    let ok = app
        .http
        .get(app.url("/admin/v1/usage-plans"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(ok.status(), 200);
}

async fn a_first_development_start_creates_a_default_plan_and_a_demo_key_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let auth = app.admin_authorization();
    let get = |path: &'static str| {
        app.http
            .get(app.url(path))
            .header("authorization", &auth)
            .send()
    };
    let plans: Value = get("/admin/v1/usage-plans")
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let default = plans["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|p| p["name"] == "default");
    let default = default.expect("a default plan");
    assert_eq!(default["quota"], json!({"limit": 10000, "period": "DAY"}));
    let keys: Value = get("/admin/v1/api-keys")
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let demo = keys["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|k| k["name"] == "demo")
        .expect("a demo key");
    assert_eq!(demo["plan_id"], default["id"]);

    // A restart finds the plans and creates nothing more.
    let before = plans["items"].as_array().expect("items").len();
    let again = app.restart().await;
    assert_eq!(
        again
            .store()
            .plans(None, 100)
            .await
            .expect("plans")
            .items
            .len(),
        before
    );
}

#[tokio::test]
async fn production_needs_an_admin_token() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(dir.path(), &TestDatabase::create(Backend::Sqlite).await);
    config.production = true;
    config.jwt_secret = Some("a-production-secret-of-at-least-32-bytes".to_owned().into());
    let error = Application::build(config).await.err().expect("refused");
    assert!(
        error.to_string().contains("MINITTER_ADMIN_TOKEN"),
        "{error}"
    );
}

async fn the_admin_commands_create_plans_and_keys_from_the_shell(backend: Backend) {
    let app = spawn_app(backend).await;
    let run = |args: &[&str]| app.admin_cli(args);
    let created = run(&[
        "create-plan",
        "--name",
        "gold",
        "--rate",
        "0.5",
        "--burst",
        "2",
        "--stream-connections",
        "7",
    ]);
    let plan_id = created
        .split_whitespace()
        .nth(2)
        .expect("the plan id")
        .to_owned();
    assert!(run(&["list-plans"]).contains("gold"));
    let plan = app
        .http
        .get(app.url(&format!("/admin/v1/usage-plans/{plan_id}")))
        .header("authorization", app.admin_authorization())
        .send()
        .await
        .expect("plan")
        .json::<serde_json::Value>()
        .await
        .expect("json");
    assert_eq!(plan["stream_connection_limit"], 7);

    let key = run(&["create-key", "--name", "acme", "--plan", &plan_id]);
    let secret = key
        .lines()
        .find_map(|l| l.strip_prefix("x-api-key: "))
        .expect("the secret")
        .to_owned();
    let listed = run(&["list-keys"]);
    assert!(listed.contains("acme") && !listed.contains(&secret));
    let key_id = listed
        .split_whitespace()
        .next()
        .expect("the key id")
        .to_owned();
    assert!(run(&["set-key-enabled", &key_id, "false"]).contains("disabled"));
    let rotated = run(&["rotate-key", &key_id]);
    assert!(rotated.contains("x-api-key: mk_") && !rotated.contains(&secret));
}

on_every_backend!(
    a_key_secret_is_shown_at_creation_and_rotation_only,
    the_operator_api_needs_the_admin_token_exactly,
    a_first_development_start_creates_a_default_plan_and_a_demo_key_once,
    the_admin_commands_create_plans_and_keys_from_the_shell,
);
