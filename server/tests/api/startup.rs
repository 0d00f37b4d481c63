//! Start-up refuses unsafe configurations and keeps development secrets stable.

use minitter_server::startup::Application;
use secrecy::SecretString;

use minitter_test_support::{Backend, TestDatabase, on_every_backend};
use sqlx::Connection;

use crate::helpers::{TestApp, spawn_app, test_config};

/// The configuration of a server in `dir` on its SQLite default.
async fn config_in(dir: &std::path::Path) -> minitter_server::config::Config {
    test_config(dir, &TestDatabase::create(Backend::Sqlite).await)
}

#[tokio::test]
async fn production_without_a_jwt_secret_refuses_to_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = config_in(dir.path()).await;
    config.production = true;
    let error = Application::build(config).await.err().expect("refused");
    assert_eq!(
        error.to_string(),
        "MINITTER_JWT_SECRET must be set in production"
    );
    // Nothing was generated in its place.
    assert!(!dir.path().join("jwt-secret").exists());
}

#[tokio::test]
async fn a_short_jwt_secret_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = config_in(dir.path()).await;
    config.jwt_secret = Some(SecretString::from(
        "31 bytes, one short of 256 bits".to_owned(),
    ));
    let error = Application::build(config).await.err().expect("refused");
    assert_eq!(
        error.to_string(),
        "MINITTER_JWT_SECRET must be at least 32 bytes"
    );
    // At the minimum it is accepted.
    let mut config = config_in(dir.path()).await;
    config.jwt_secret = Some(SecretString::from(
        "32 bytes: exactly 256 bits long!".to_owned(),
    ));
    Application::build(config)
        .await
        .expect("a 32-byte secret is enough");
}

#[tokio::test]
async fn the_development_secret_is_random_private_and_kept_across_restarts() {
    let first = tempfile::tempdir().expect("temp dir");
    let second = tempfile::tempdir().expect("temp dir");
    Application::build(config_in(first.path()).await)
        .await
        .expect("build");
    let secret = std::fs::read_to_string(first.path().join("jwt-secret")).expect("secret");
    Application::build(config_in(first.path()).await)
        .await
        .expect("rebuild");
    assert_eq!(
        std::fs::read_to_string(first.path().join("jwt-secret")).expect("secret"),
        secret
    );

    Application::build(config_in(second.path()).await)
        .await
        .expect("build");
    assert_ne!(
        std::fs::read_to_string(second.path().join("jwt-secret")).expect("secret"),
        secret
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(first.path().join("jwt-secret"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[tokio::test]
async fn a_malformed_or_unknown_database_url_is_an_error_naming_the_variable() {
    for url in [
        "mysql://127.0.0.1/minitter",
        "minitter.db",
        "postgres://ada:hunter2@127.0.0.1:not-a-port/minitter",
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = config_in(dir.path()).await;
        config.database_url = Some(SecretString::from(url.to_owned()));
        let error = Application::build(config).await.err().expect("refused");
        let message = format!("{error:#}");
        assert!(
            message.contains("MINITTER_DATABASE_URL"),
            "{url}: {message}"
        );
        assert!(!message.contains("hunter2"), "the password is not repeated");
    }
}

on_every_backend!(a_database_a_newer_build_migrated_still_opens);

/// During a rolling or canary release the previous build restarts against a schema the
/// next one has migrated further: it must start and serve, not refuse the version it does
/// not know.
async fn a_database_a_newer_build_migrated_still_opens(backend: Backend) {
    let app = spawn_app(backend).await;
    record_a_newer_builds_migration(&app).await;
    let restarted = app.restart().await;
    restarted.sign_up("ada_m", "ada_m@example.com").await;
}

/// A row in sqlx's ledger for a migration this build has never heard of.
async fn record_a_newer_builds_migration(app: &TestApp) {
    const INSERT: &str = "INSERT INTO _sqlx_migrations \
        (version, description, success, checksum, execution_time) VALUES ($1, $2, TRUE, $3, 0)";
    let (version, description, checksum) = (99_990_101_i64, "a newer build's", vec![0_u8; 48]);
    match app.database.url() {
        Some(url) => {
            let mut connection = sqlx::PgConnection::connect(url).await.expect("connect");
            sqlx::query(INSERT)
                .bind(version)
                .bind(description)
                .bind(checksum)
                .execute(&mut connection)
                .await
                .expect("insert");
        }
        None => {
            let file = app.data_dir.join("minitter.db");
            let url = format!("sqlite://{}", file.display());
            let mut connection = sqlx::SqliteConnection::connect(&url)
                .await
                .expect("connect");
            sqlx::query(INSERT)
                .bind(version)
                .bind(description)
                .bind(checksum)
                .execute(&mut connection)
                .await
                .expect("insert");
        }
    }
}
