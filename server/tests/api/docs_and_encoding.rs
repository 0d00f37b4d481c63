//! The published document, Swagger UI, and content codings.

use std::io::{Read, Write};

use serde_json::json;

use minitter_test_support::{Backend, on_every_backend};

use crate::helpers::{PASSWORD, spawn_app};

const SPEC: &str = include_str!("../../../openapi.yaml");

async fn the_spec_is_served_byte_for_byte(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .http
        .get(app.url("/openapi.yaml"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/yaml");
    assert_eq!(response.text().await.expect("text"), SPEC);
}

async fn swagger_ui_is_served_for_the_spec(backend: Backend) {
    let app = spawn_app(backend).await;
    let redirect = app
        .http
        .get(app.url("/docs"))
        .send()
        .await
        .expect("request");
    assert_eq!(redirect.status(), 303);
    assert_eq!(redirect.headers()["location"], "/docs/");

    let page = app
        .http
        .get(app.url("/docs/"))
        .send()
        .await
        .expect("request");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.expect("html").contains("swagger-ui"));

    let init = app
        .http
        .get(app.url("/docs/swagger-initializer.js"))
        .send()
        .await
        .expect("request");
    let script = init.text().await.expect("js");
    assert!(script.contains("/openapi.yaml"), "{script}");

    let missing = app
        .http
        .get(app.url("/docs/nothing.js"))
        .send()
        .await
        .expect("request");
    assert_eq!(missing.status(), 404);
}

async fn responses_are_gzipped_when_asked_and_vary_on_accept_encoding(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .http
        .get(app.url("/openapi.yaml"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("request");
    assert_eq!(response.headers()["content-encoding"], "gzip");
    assert_eq!(response.headers()["vary"], "accept-encoding");
    let compressed = response.bytes().await.expect("body");
    assert!(compressed.len() < SPEC.len() / 2);
    let mut text = String::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_string(&mut text)
        .expect("gunzip");
    assert_eq!(text, SPEC);
}

async fn brotli_is_preferred_when_equally_acceptable_and_identity_means_none(backend: Backend) {
    let app = spawn_app(backend).await;
    let get = |encoding: &'static str| {
        app.http
            .get(app.url("/openapi.yaml"))
            .header("accept-encoding", encoding)
            .send()
    };
    let br = get("gzip, br").await.expect("request");
    assert_eq!(br.headers()["content-encoding"], "br");
    let identity = get("identity").await.expect("request");
    assert!(identity.headers().get("content-encoding").is_none());
}

async fn a_gzipped_request_body_is_accepted(backend: Backend) {
    let app = spawn_app(backend).await;
    let body =
        json!({"username": "ada_l", "email": "ada@example.com", "password": PASSWORD}).to_string();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(body.as_bytes()).expect("gzip");
    let gzipped = encoder.finish().expect("gzip");

    let response = app
        .http
        .post(app.url("/v1/users"))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gzipped)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 201);
}

async fn an_unknown_content_encoding_is_415(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .http
        .post(app.url("/v1/users"))
        .header("content-type", "application/json")
        .header("content-encoding", "compress")
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 415);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
}

async fn swagger_ui_runs_under_a_policy_of_its_own_origin_and_cannot_be_framed(backend: Backend) {
    let app = spawn_app(backend).await;
    for file in [
        "/docs/",
        "/docs/swagger-ui-bundle.js",
        "/docs/swagger-initializer.js",
    ] {
        let response = app.http.get(app.url(file)).send().await.expect("request");
        assert_eq!(response.status(), 200, "{file}");
        let headers = response.headers();
        assert_eq!(headers["x-frame-options"], "DENY", "{file}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{file}");
        let policy = headers["content-security-policy"].to_str().expect("ascii");
        let directives: Vec<&str> = policy.split(';').map(str::trim).collect();
        for expected in [
            "default-src 'none'",
            "script-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(directives.contains(&expected), "{file}: {policy}");
        }
        // Inline style only by its hash, inline script not at all.
        assert!(
            directives.iter().any(|d| d.starts_with("style-src 'self'")),
            "{file}: {policy}"
        );
        assert!(!policy.contains("unsafe"), "{file}: {policy}");
    }
    // The online validator badge would load an image from swagger.io (and tell it the
    // document's address): it is off.
    let init = app
        .http
        .get(app.url("/docs/swagger-initializer.js"))
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("js");
    assert!(init.contains(r#""validatorUrl": "none""#), "{init}");
}

async fn every_other_answer_is_nosniff_data_that_loads_nothing_and_cannot_be_framed(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let answers = [
        app.http.get(app.url("/healthz")).send(),
        app.http.get(app.url("/openapi.yaml")).send(),
        app.http.get(app.url("/v1/nothing-here")).send(),
        app.http.get(app.url("/v1/me")).send(),
        app.http.delete(app.url("/v1/users")).send(),
        app.http.get(app.url("/docs")).send(),
    ];
    for answer in answers {
        let response = answer.await.expect("request");
        let what = format!("{} {}", response.url().path(), response.status());
        let headers = response.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff", "{what}");
        assert_eq!(
            headers["content-security-policy"],
            "default-src 'none'; frame-ancestors 'none'; sandbox",
            "{what}"
        );
    }
}

on_every_backend!(
    the_spec_is_served_byte_for_byte,
    swagger_ui_is_served_for_the_spec,
    swagger_ui_runs_under_a_policy_of_its_own_origin_and_cannot_be_framed,
    every_other_answer_is_nosniff_data_that_loads_nothing_and_cannot_be_framed,
    responses_are_gzipped_when_asked_and_vary_on_accept_encoding,
    brotli_is_preferred_when_equally_acceptable_and_identity_means_none,
    a_gzipped_request_body_is_accepted,
    an_unknown_content_encoding_is_415,
);
