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

on_every_backend!(
    sign_up_answers_201_with_location_and_the_profile,
    emails_and_usernames_are_unique_whatever_their_case,
    the_display_name_defaults_to_the_username,
    an_unknown_user_is_a_404_problem,
    the_password_is_stored_only_as_an_argon2id_hash,
);
