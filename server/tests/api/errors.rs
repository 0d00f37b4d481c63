//! Every error is a Problem document, and bad input changes nothing.

use serde_json::{Value, json};

use minitter_test_support::{Backend, on_every_backend};

use crate::helpers::{assert_problem, spawn_app};

async fn sign_up_with_three_invalid_fields_lists_all_three_with_pointers(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = json!({"username": "a", "email": "nope", "password": "short"});

    let problem = assert_problem(
        app.post_json("/v1/users", &body).await,
        400,
        "invalid_request",
    )
    .await;

    let mut pointers: Vec<&str> = problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| {
            assert_eq!(e["in"], "body");
            e["pointer"].as_str().expect("pointer")
        })
        .collect();
    pointers.dedup();
    assert_eq!(pointers, ["/email", "/password", "/username"]);
    assert_eq!(problem["detail"], "The request has 3 invalid fields.");
    // Messages never echo the offending value: it may be a password.
    assert!(!problem.to_string().contains("short"));
}

async fn a_rejected_sign_up_creates_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let bad =
        json!({"username": "ada_l", "email": "nope", "password": "correct horse battery staple"});
    assert_eq!(app.post_json("/v1/users", &bad).await.status(), 400);

    // The username is still free.
    app.sign_up("ada_l", "ada@example.com").await;
}

async fn unknown_and_missing_properties_are_named(backend: Backend) {
    let app = spawn_app(backend).await;
    let body =
        json!({"username": "ada_l", "password": "correct horse battery staple", "admin": true});

    let problem = assert_problem(
        app.post_json("/v1/users", &body).await,
        400,
        "invalid_request",
    )
    .await;

    let errors: Vec<(String, String)> = problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| {
            (
                e["pointer"].as_str().unwrap_or_default().to_owned(),
                e["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert!(
        errors.contains(&("/admin".into(), "is not a known property".into())),
        "{errors:?}"
    );
    assert!(
        errors.contains(&("/email".into(), "is required".into())),
        "{errors:?}"
    );
}

async fn invalid_json_is_a_400_problem(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .http
        .post(app.url("/v1/users"))
        .header("content-type", "application/json")
        .body("{\"username\": ")
        .send()
        .await
        .expect("request");
    assert_problem(response, 400, "invalid_request").await;
}

async fn a_path_parameter_that_is_not_a_uuid_is_a_400_naming_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .http
        .get(app.url("/v1/users/123"))
        .send()
        .await
        .expect("request");
    let problem = assert_problem(response, 400, "invalid_request").await;
    assert_eq!(problem["errors"][0]["in"], "path");
    assert_eq!(problem["errors"][0]["pointer"], "/user_id");
}

async fn an_unknown_route_is_a_404_problem(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .http
        .get(app.url("/v1/nothing-here"))
        .send()
        .await
        .expect("request");
    assert_problem(response, 404, "not_found").await;
}

async fn undeclared_methods_are_405_with_allow(backend: Backend) {
    let app = spawn_app(backend).await;
    for method in ["TRACE", "QUERY", "DELETE", "PATCH", "GET"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let response = app
            .http
            .request(method.clone(), app.url("/v1/users"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.headers()["allow"], "POST", "{method}");
        assert_problem(response, 405, "method_not_allowed").await;
    }
}

async fn a_body_over_the_limit_is_413_even_without_a_content_length(backend: Backend) {
    let app = spawn_app(backend).await;
    let big = format!("{{\"username\": \"{}\"}}", "a".repeat(100_000));

    let sized = app
        .http
        .post(app.url("/v1/users"))
        .header("content-type", "application/json")
        .body(big.clone());
    assert_problem(
        sized.send().await.expect("request"),
        413,
        "payload_too_large",
    )
    .await;

    let stream = futures::stream::iter(
        big.into_bytes()
            .chunks(1000)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let chunked = app
        .http
        .post(app.url("/v1/users"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream));
    assert_problem(
        chunked.send().await.expect("request"),
        413,
        "payload_too_large",
    )
    .await;
}

async fn a_wrong_content_type_is_415(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .http
        .post(app.url("/v1/users"))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_problem(response, 415, "unsupported_media_type").await;
}

async fn every_response_carries_a_request_id_and_a_well_formed_incoming_one_is_kept(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let fresh = app
        .http
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("request");
    let id = fresh.headers()["x-request-id"].to_str().expect("ascii");
    assert_eq!(
        uuid::Uuid::parse_str(id).expect("a uuid").get_version_num(),
        7
    );

    let kept = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "trace-42")
        .send()
        .await
        .expect("request");
    assert_eq!(kept.headers()["x-request-id"], "trace-42");

    let replaced = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "a b")
        .send()
        .await
        .expect("request");
    assert_ne!(replaced.headers()["x-request-id"], "a b");
}

async fn readiness_reports_the_database(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .http
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body, json!({"status": "ok"}));
}

on_every_backend!(
    sign_up_with_three_invalid_fields_lists_all_three_with_pointers,
    a_rejected_sign_up_creates_nothing,
    unknown_and_missing_properties_are_named,
    invalid_json_is_a_400_problem,
    a_path_parameter_that_is_not_a_uuid_is_a_400_naming_it,
    an_unknown_route_is_a_404_problem,
    undeclared_methods_are_405_with_allow,
    a_body_over_the_limit_is_413_even_without_a_content_length,
    a_wrong_content_type_is_415,
    every_response_carries_a_request_id_and_a_well_formed_incoming_one_is_kept,
    readiness_reports_the_database,
);
