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

/// The request head's limits (`minitter_server::http::request_limits`), as a client meets them.
const MAX_TARGET_BYTES: usize = 8 * 1024;
const MAX_HEADER_FIELDS: usize = 100;
const MAX_HEADER_BYTES: usize = 16 * 1024;

async fn a_request_target_over_8_kib_is_a_414_problem(backend: Backend) {
    let app = spawn_app(backend).await;
    // Far below hyper's own limit (64 KiB), which answers with an empty body.
    for target in [
        format!("/healthz?pad={}", "a".repeat(MAX_TARGET_BYTES)),
        format!("/v1/{}", "a".repeat(MAX_TARGET_BYTES)),
        format!("/v1/{}", "a".repeat(40_000)),
    ] {
        let response = app
            .http
            .get(app.url(&target))
            .send()
            .await
            .expect("request");
        let problem = assert_problem(response, 414, "uri_too_long").await;
        assert!(
            problem["detail"].as_str().expect("detail").contains("8192"),
            "{problem}"
        );
    }
}

async fn too_many_header_fields_are_a_431_problem(backend: Backend) {
    let app = spawn_app(backend).await;
    // hyper alone answers more than 100 fields with an empty 431.
    for count in [MAX_HEADER_FIELDS + 1, 500] {
        let mut request = app.http.get(app.url("/healthz"));
        for i in 0..count {
            request = request.header(format!("x-field-{i}"), "1");
        }
        let response = request.send().await.expect("request");
        let problem = assert_problem(response, 431, "header_fields_too_large").await;
        assert!(
            problem["detail"].as_str().expect("detail").contains("100"),
            "{problem}"
        );
    }
}

async fn header_fields_over_16_kib_together_are_a_431_problem_naming_the_largest(backend: Backend) {
    let app = spawn_app(backend).await;
    let one_big = app
        .http
        .get(app.url("/v1/me"))
        .header("x-big", "b".repeat(MAX_HEADER_BYTES))
        .send()
        .await
        .expect("request");
    let problem = assert_problem(one_big, 431, "header_fields_too_large").await;
    assert_eq!(problem["errors"][0]["in"], "header");
    assert_eq!(problem["errors"][0]["pointer"], "/x-big");
    // The value is never echoed.
    assert!(!problem.to_string().contains("bbbb"));

    let mut many = app.http.get(app.url("/healthz"));
    for i in 0..20 {
        many = many.header(format!("x-part-{i}"), "p".repeat(1000));
    }
    let response = many.send().await.expect("request");
    assert_problem(response, 431, "header_fields_too_large").await;
}

async fn a_request_just_within_the_head_limits_is_served(backend: Backend) {
    let app = spawn_app(backend).await;
    // reqwest adds a few fields of its own (host, accept, x-api-key).
    let mut request = app.http.get(app.url("/healthz"));
    for i in 0..90 {
        request = request.header(format!("x-field-{i}"), "v".repeat(150));
    }
    let response = request.send().await.expect("request");
    assert_eq!(response.status(), 200);

    // A target of 8 KiB reaches the router (which has no such route).
    let target = format!("/v1/{}", "a".repeat(MAX_TARGET_BYTES - "/v1/".len()));
    let response = app
        .http
        .get(app.url(&target))
        .send()
        .await
        .expect("request");
    assert_problem(response, 404, "not_found").await;
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
    a_request_target_over_8_kib_is_a_414_problem,
    too_many_header_fields_are_a_431_problem,
    header_fields_over_16_kib_together_are_a_431_problem_naming_the_largest,
    a_request_just_within_the_head_limits_is_served,
);
