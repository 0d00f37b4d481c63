//! `GET /metrics`: the Prometheus text the operator scrapes, behind the admin token.

use serde_json::json;

use minitter_test_support::{Backend, on_every_backend};

use crate::helpers::{api_key, assert_problem, http_client, metric_sample, spawn_app};

async fn metrics_count_requests_by_operation_and_gateway_decisions_by_plan(backend: Backend) {
    let app = spawn_app(backend).await;
    let refused = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("request");
    assert_problem(refused, 401, "unauthorized").await;

    // A plan with a quota of 2, three reads: two admitted (404s), one refused.
    let quota = api_key(app.store(), None, Some((2, "DAY"))).await;
    let partner = http_client(&quota);
    for _ in 0..3 {
        partner
            .get(app.url(&format!("/v1/users/{}", uuid::Uuid::now_v7())))
            .send()
            .await
            .expect("request");
    }
    app.post_json("/v1/users", &json!({"username": "x"})).await;

    let text = app.scrape_metrics().await;
    let plan = app
        .store()
        .key_by_secret_hash(&minitter_server::infra::store::secret_hash(&quota))
        .await
        .expect("lookup")
        .expect("the key")
        .1
        .id;
    let decisions = |outcome: &str| {
        metric_sample(
            &text,
            &format!("minitter_gateway_decisions_total{{plan=\"{plan}\",outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(decisions("admitted"), Some(2.0), "{text}");
    assert_eq!(decisions("quota_exceeded"), Some(1.0));
    // Labelled by operationId and status class, never by path: the 404s and the 429.
    let requests =
        |labels: &str| metric_sample(&text, &format!("minitter_http_requests_total{{{labels}}}"));
    assert!(requests("operation=\"get_user\",status=\"4xx\"").is_some_and(|n| n >= 3.0));
    assert!(requests("operation=\"sign_up\",status=\"4xx\"").is_some_and(|n| n >= 1.0));
    assert!(!text.contains("/v1/users/"), "no raw path in a label");
    assert!(text.contains(
        "minitter_http_request_duration_seconds_bucket{operation=\"get_user\",le=\"0.005\"}"
    ));
    assert!(text.contains("minitter_http_requests_in_flight"));
    // The pool as it was at the scrape: the handler reads no database, and the pool keeps
    // the connections the requests above opened.
    let pool = |state: &str| {
        metric_sample(
            &text,
            &format!("minitter_db_pool_connections{{state=\"{state}\"}}"),
        )
    };
    assert!(pool("idle").is_some_and(|n| n >= 1.0), "{text}");
    assert!(pool("in_use").is_some());
}

on_every_backend!(metrics_count_requests_by_operation_and_gateway_decisions_by_plan);

/// The Grafana dashboard in `deploy/grafana` queries only metrics the server exports, so a
/// renamed metric cannot leave a panel silently empty.
#[test]
fn the_dashboard_queries_only_metrics_the_server_exports() {
    use minitter_server::infra::metrics;
    let exported = [
        metrics::REQUESTS,
        metrics::LATENCY,
        metrics::IN_FLIGHT,
        metrics::GATEWAY_DECISIONS,
        metrics::CACHE_LOOKUPS,
        metrics::RESPONSE_CACHE,
        metrics::OUTBOX_LAG,
        metrics::TIMELINE_PAGES,
        metrics::FEED_BUILDS,
        metrics::EVENTS_UNANNOUNCED,
        metrics::POOL_CONNECTIONS,
        metrics::BLOB_ERRORS,
        metrics::BLOB_BREAKER_STATE,
        metrics::BLOB_BREAKER_TRANSITIONS,
        metrics::BLOB_BREAKER_REJECTED,
        metrics::WEBHOOK_ATTEMPTS,
        metrics::WEBHOOK_LATENCY,
        metrics::WEBHOOK_BREAKERS_OPEN,
        metrics::WEBHOOK_BREAKER_TRANSITIONS,
        metrics::STREAM_SOCKETS,
        metrics::STREAM_LAGGED,
    ];
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/grafana/minitter.json"
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("the dashboard")).expect("JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(
        panels.len() >= 8,
        "requests, latency, errors, throttles, quota, caches..."
    );
    let mut queried = std::collections::BTreeSet::new();
    for target in panels
        .iter()
        .flat_map(|panel| panel["targets"].as_array().into_iter().flatten())
    {
        let expr = target["expr"].as_str().expect("a PromQL expression");
        for (at, _) in expr.match_indices("minitter_") {
            let name: String = expr[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            queried.insert(name.trim_end_matches("_bucket").to_owned());
        }
    }
    for name in &queried {
        assert!(
            exported.contains(&name.as_str()),
            "the dashboard queries {name}, which the server does not export"
        );
    }
    for name in exported {
        assert!(queried.contains(name), "no panel shows {name}");
    }
}
