//! Canary support (issue 21): every answer names the build that served it,
//! `x-minitter-version: <crate version>+<git revision>`, whatever made the answer.

use minitter_server::http::version::VERSION;
use minitter_test_support::Backend;

use crate::helpers::{assert_problem, spawn_app};

/// The revision the server was built from, as the build script found it: the build's
/// `MINITTER_GIT_REVISION`, else the checkout's `HEAD` (checked to be a commit of this
/// repository rather than compared with `HEAD`, which may have moved since the build),
/// else `unknown` outside a checkout.
fn assert_is_this_build(version: &str) {
    assert_eq!(version, VERSION);
    let (crate_version, revision) = version.split_once('+').expect("a `+`");
    assert_eq!(crate_version, env!("CARGO_PKG_VERSION"));
    if let Some(given) = option_env!("MINITTER_GIT_REVISION") {
        assert_eq!(revision, given);
        return;
    }
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .is_ok_and(|output| output.status.success())
    };
    if git(&["rev-parse", "--git-dir"]) {
        assert!(
            git(&["cat-file", "-e", &format!("{revision}^{{commit}}")]),
            "{revision} is not a commit of this checkout"
        );
    } else {
        assert_eq!(revision, "unknown");
    }
}

#[tokio::test]
async fn every_answer_names_the_build_that_served_it() {
    let app = spawn_app(Backend::Sqlite).await;
    let anonymous = reqwest::Client::new();

    let ok = app
        .http
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("sent");
    assert_eq!(ok.status(), 200);
    let version = ok.headers()["x-minitter-version"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    assert_is_this_build(&version);

    let spec = anonymous
        .get(app.url("/openapi.yaml"))
        .send()
        .await
        .expect("sent");
    assert_eq!(spec.status(), 200);
    assert_eq!(spec.headers()["x-minitter-version"], version.as_str());

    // Problems: poem's 404, the gateway's 403, a validation 400.
    let not_found = app
        .http
        .get(app.url("/v1/nope"))
        .send()
        .await
        .expect("sent");
    assert_eq!(not_found.headers()["x-minitter-version"], version.as_str());
    assert_problem(not_found, 404, "not_found").await;

    let no_key = anonymous
        .get(app.url(&format!("/v1/users/{}", uuid::Uuid::now_v7())))
        .send()
        .await
        .expect("sent");
    assert_eq!(no_key.status(), 403);
    assert_eq!(no_key.headers()["x-minitter-version"], version.as_str());

    let invalid = app
        .http
        .get(app.url("/v1/users/not-a-uuid"))
        .send()
        .await
        .expect("sent");
    assert_eq!(invalid.status(), 400);
    assert_eq!(invalid.headers()["x-minitter-version"], version.as_str());
}
