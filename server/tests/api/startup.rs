//! Start-up refuses unsafe configurations and keeps development secrets stable.

use minitter_server::startup::Application;
use secrecy::SecretString;

use crate::helpers::test_config;

#[tokio::test]
async fn production_without_a_jwt_secret_refuses_to_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(dir.path());
    config.production = true;
    let error = Application::build(config).await.err().expect("refused");
    assert!(error.to_string().contains("MINITTER_JWT_SECRET"), "{error}");
}

#[tokio::test]
async fn a_short_jwt_secret_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(dir.path());
    config.jwt_secret = Some(SecretString::from("too short".to_owned()));
    assert!(Application::build(config).await.is_err());
}

#[tokio::test]
async fn the_development_secret_is_random_private_and_kept_across_restarts() {
    let first = tempfile::tempdir().expect("temp dir");
    let second = tempfile::tempdir().expect("temp dir");
    Application::build(test_config(first.path()))
        .await
        .expect("build");
    let secret = std::fs::read_to_string(first.path().join("jwt-secret")).expect("secret");
    Application::build(test_config(first.path()))
        .await
        .expect("rebuild");
    assert_eq!(
        std::fs::read_to_string(first.path().join("jwt-secret")).expect("secret"),
        secret
    );

    Application::build(test_config(second.path()))
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
