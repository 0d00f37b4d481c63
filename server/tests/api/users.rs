//! Sign-up and profiles.

use serde_json::{Value, json};

use minitter_test_support::{Backend, on_every_backend};

use crate::helpers::{PASSWORD, assert_problem, spawn_app};

async fn sign_up_answers_201_with_location_and_the_profile(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = json!({"username": "ada_l", "email": "ada@example.com", "password": PASSWORD, "display_name": "Ada"});

    let response = app.post_json("/v1/users", &body).await;

    assert_eq!(response.status(), 201);
    let location = response.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let user: Value = response.json().await.expect("json");
    assert_eq!(
        location,
        format!("/v1/users/{}", user["id"].as_str().expect("id"))
    );
    assert_eq!(user["username"], "ada_l");
    assert_eq!(user["display_name"], "Ada");
    assert!(
        user.get("email").is_none(),
        "the public profile hides the email"
    );
    assert!(user.get("password").is_none() && user.get("password_hash").is_none());

    let fetched: Value = app
        .http
        .get(app.url(&location))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(fetched, user);
}

async fn emails_and_usernames_are_unique_whatever_their_case(backend: Backend) {
    let app = spawn_app(backend).await;
    app.sign_up("ada_l", "ada@example.com").await;

    let same_email = json!({"username": "other", "email": "ADA@Example.com", "password": PASSWORD});
    let problem = assert_problem(
        app.post_json("/v1/users", &same_email).await,
        409,
        "conflict",
    )
    .await;
    assert_eq!(problem["errors"][0]["pointer"], "/email");

    let same_username =
        json!({"username": "ADA_L", "email": "other@example.com", "password": PASSWORD});
    let problem = assert_problem(
        app.post_json("/v1/users", &same_username).await,
        409,
        "conflict",
    )
    .await;
    assert_eq!(problem["errors"][0]["pointer"], "/username");
}

async fn the_display_name_defaults_to_the_username(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.sign_up("ada_l", "ada@example.com").await;
    let user: Value = app
        .http
        .get(app.url(&format!("/v1/users/{id}")))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(user["display_name"], "ada_l");
}

async fn an_unknown_user_is_a_404_problem(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = uuid::Uuid::now_v7();
    let response = app
        .http
        .get(app.url(&format!("/v1/users/{id}")))
        .send()
        .await
        .expect("request");
    assert_problem(response, 404, "not_found").await;
}

async fn the_password_is_stored_only_as_an_argon2id_hash(backend: Backend) {
    let app = spawn_app(backend).await;
    app.sign_up("ada_l", "ada@example.com").await;
    let stored = app
        .store()
        .user_by_email("ada@example.com")
        .await
        .expect("read")
        .expect("the user");
    assert!(stored.password_hash.starts_with("$argon2id$"));
    assert!(!stored.password_hash.contains(PASSWORD));
    if backend != Backend::Sqlite {
        return;
    }
    // Nor anywhere in the database file.
    let db = std::fs::read(app.data_dir.join("minitter.db")).expect("db file");
    let wal = std::fs::read(app.data_dir.join("minitter.db-wal")).unwrap_or_default();
    let contains =
        |haystack: &[u8], needle: &[u8]| haystack.windows(needle.len()).any(|w| w == needle);
    for file in [&db, &wal] {
        assert!(
            !contains(file, PASSWORD.as_bytes()),
            "plaintext password on disk"
        );
    }
}

/// PostgreSQL cannot store a NUL character in text, so the document refuses it in every
/// string that is stored: a 400 naming the field, never a 500, and nothing written, on
/// SQLite as on PostgreSQL.
async fn a_nul_character_in_stored_text_is_a_400_naming_the_field(backend: Backend) {
    let app = spawn_app(backend).await;
    app.sign_up("nul_author", "nul_author@example.com").await;
    let bearer = format!("Bearer {}", app.log_in("nul_author@example.com").await);
    let admin = app.admin_authorization();
    let plan = app
        .admin_post("/admin/v1/usage-plans", &json!({"name": "nul"}))
        .await;
    let plan_id = plan["id"].as_str().expect("plan id").to_owned();
    let nul = "a\u{0}b";
    let cases = [
        (
            "/v1/users",
            None,
            json!({"username": "nul_user", "email": "nul@example.com", "password": PASSWORD, "display_name": nul}),
            "/display_name",
        ),
        (
            "/v1/users",
            None,
            json!({"username": "nul_mail", "email": format!("n{nul}@example.com"), "password": PASSWORD}),
            "/email",
        ),
        (
            "/v1/auth/token",
            None,
            json!({"email": format!("n{nul}@example.com"), "password": PASSWORD}),
            "/email",
        ),
        ("/v1/tweets", Some(&bearer), json!({"text": nul}), "/text"),
        (
            "/admin/v1/usage-plans",
            Some(&admin),
            json!({"name": nul}),
            "/name",
        ),
        (
            "/admin/v1/usage-plans",
            Some(&admin),
            json!({"name": "ok", "description": nul}),
            "/description",
        ),
        (
            "/admin/v1/api-keys",
            Some(&admin),
            json!({"name": nul, "plan_id": plan_id}),
            "/name",
        ),
    ];
    for (path, authorization, body, pointer) in cases {
        let mut request = app.http.post(app.url(path)).json(&body);
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        let problem =
            assert_problem(request.send().await.expect("post"), 400, "invalid_request").await;
        assert_eq!(
            problem["errors"][0]["pointer"], pointer,
            "{path}: {problem}"
        );
    }
    let tweets = app.get_json("/v1/timeline", Some(&bearer)).await;
    assert_eq!(tweets["items"], json!([]), "no tweet was stored");
}

on_every_backend!(
    a_nul_character_in_stored_text_is_a_400_naming_the_field,
    sign_up_answers_201_with_location_and_the_profile,
    emails_and_usernames_are_unique_whatever_their_case,
    the_display_name_defaults_to_the_username,
    an_unknown_user_is_a_404_problem,
    the_password_is_stored_only_as_an_argon2id_hash,
);
