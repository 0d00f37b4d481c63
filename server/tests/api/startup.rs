//! Start-up refuses unsafe configurations and keeps development secrets stable.

use minitter_server::startup::Application;
use secrecy::SecretString;

use minitter_test_support::{Backend, TestDatabase};

use crate::helpers::test_config;

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
