//! IP policies: a plan and a key may each say which client addresses their requests may
//! come from; a request must pass both (a key narrows its plan), a refusal is a 403
//! `ip_not_allowed` that spends no quota, the lists are validated and bounded, and the
//! client address is read from forwarding headers only when a trusted proxy sends them.
//!
//! The clients connect from other loopback addresses (127.0.0.2, 127.0.0.3, …: all of
//! 127.0.0.0/8 is this machine's), so the server sees real, distinct peers.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use minitter_test_support::{Backend, needs_cluster, on_every_backend, required_env};

use crate::helpers::{TestApp, assert_problem, spawn_app, spawn_app_with};

/// A client that sends `key` from the loopback address `source`.
fn client_from(source: &str, key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-api-key", key.parse().expect("a header value"));
    let source: IpAddr = source.parse().expect("an address");
    reqwest::Client::builder()
        .local_address(source)
        .default_headers(headers)
        .build()
        .expect("http client")
}

fn some_user(app: &TestApp) -> String {
    app.url(&format!("/v1/users/{}", uuid::Uuid::now_v7()))
}

/// A plan and a key in it with these bodies' extra fields; the key's secret.
async fn plan_and_key(app: &TestApp, plan: Value, key: Value) -> (Value, Value) {
    let mut plan_body = json!({"name": "office"});
    merge(&mut plan_body, plan);
    let plan = app.admin_post("/admin/v1/usage-plans", &plan_body).await;
    let mut key_body = json!({"name": "office key", "plan_id": plan["id"]});
    merge(&mut key_body, key);
    let key = app.admin_post("/admin/v1/api-keys", &key_body).await;
    (plan, key)
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(into), Value::Object(from)) = (into.as_object_mut(), from) {
        into.extend(from);
    }
}

fn secret(key: &Value) -> &str {
    key["secret"].as_str().expect("a secret")
}

async fn a_key_is_usable_only_from_addresses_both_policies_admit(backend: Backend) {
    let app = spawn_app(backend).await;
    let (plan, key) = plan_and_key(
        &app,
        json!({
            "quota": {"limit": 2, "period": "DAY"},
            "ip_policy": {"allow": ["127.0.0.0/29"], "deny": ["127.0.0.3"]},
        }),
        json!({"ip_policy": {"allow": ["127.0.0.2", "127.0.0.3", "127.0.0.9"]}}),
    )
    .await;
    // Kept as networks, host bits cleared.
    assert_eq!(
        plan["ip_policy"],
        json!({"allow": ["127.0.0.0/29"], "deny": ["127.0.0.3/32"]})
    );
    assert_eq!(
        key["ip_policy"]["allow"],
        json!(["127.0.0.2/32", "127.0.0.3/32", "127.0.0.9/32"])
    );

    for (source, why) in [
        ("127.0.0.1", "the plan allows it, the key narrows it away"),
        ("127.0.0.3", "both allow it, the plan denies it"),
        (
            "127.0.0.9",
            "the key allows it, but a key cannot widen its plan",
        ),
    ] {
        let response = client_from(source, secret(&key))
            .get(some_user(&app))
            .send()
            .await
            .expect("request");
        let problem = assert_problem(response, 403, "ip_not_allowed").await;
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|d| d.contains("address")),
            "{source}: {why}: {problem}"
        );
    }
    // The refusals spent none of the quota of 2: both requests from the one address
    // that passes are admitted, the third is over the quota.
    let allowed = client_from("127.0.0.2", secret(&key));
    for status in [404, 404, 429] {
        let response = allowed.get(some_user(&app)).send().await.expect("request");
        assert_eq!(response.status(), status);
    }
    let metrics = app.scrape_metrics().await;
    assert!(
        metrics.contains(r#"outcome="ip_not_allowed""#),
        "refusals are counted: {metrics}"
    );
}

async fn changing_a_policy_takes_effect_at_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let (plan, key) = plan_and_key(&app, json!({}), json!({})).await;
    let client = client_from("127.0.0.4", secret(&key));
    assert_eq!(
        client
            .get(some_user(&app))
            .send()
            .await
            .expect("get")
            .status(),
        404
    );

    let admin = app.admin_authorization();
    let key_path = format!("/admin/v1/api-keys/{}", key["id"].as_str().expect("id"));
    let updated: Value = app
        .http
        .patch(app.url(&key_path))
        .header("authorization", &admin)
        .json(&json!({"ip_policy": {"deny": ["127.0.0.4"]}}))
        .send()
        .await
        .expect("patch")
        .json()
        .await
        .expect("json");
    assert_eq!(updated["ip_policy"]["deny"], json!(["127.0.0.4/32"]));
    let response = client.get(some_user(&app)).send().await.expect("get");
    assert_problem(response, 403, "ip_not_allowed").await;

    // A PATCH without `ip_policy` keeps it; one with an empty policy lifts it.
    for (body, status) in [
        (json!({"name": "renamed"}), 403),
        (json!({"ip_policy": {}}), 404),
    ] {
        let patched = app
            .http
            .patch(app.url(&key_path))
            .header("authorization", &admin)
            .json(&body)
            .send()
            .await
            .expect("patch");
        assert_eq!(patched.status(), 200);
        let response = client.get(some_user(&app)).send().await.expect("get");
        assert_eq!(response.status(), status, "after {body}");
    }

    // The plan's policy is replaced with the plan (PUT).
    let plan_path = format!("/admin/v1/usage-plans/{}", plan["id"].as_str().expect("id"));
    let replaced = app
        .http
        .put(app.url(&plan_path))
        .header("authorization", &admin)
        .json(&json!({"name": "office", "ip_policy": {"allow": ["2001:db8::/32"]}}))
        .send()
        .await
        .expect("put");
    assert_eq!(replaced.status(), 200);
    let response = client.get(some_user(&app)).send().await.expect("get");
    assert_problem(response, 403, "ip_not_allowed").await;
}

async fn bad_or_too_long_lists_are_refused_with_pointers_and_change_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin_authorization();
    let plans_before = app
        .store()
        .plans(None, 100)
        .await
        .expect("plans")
        .items
        .len();
    let too_many: Vec<String> = (0..101).map(|i| format!("10.0.{i}.0/24")).collect();
    for (policy, pointer) in [
        (
            json!({"allow": ["10.0.0.0/8", "10.0.0.0/33"]}),
            "/ip_policy/allow/1",
        ),
        (json!({"deny": ["example.com"]}), "/ip_policy/deny/0"),
        (json!({"allow": ["300.1.1.1"]}), "/ip_policy/allow/0"),
        (json!({"allow": too_many}), "/ip_policy/allow"),
        (json!({"allow": [], "block": []}), "/ip_policy/block"),
    ] {
        let response = app
            .http
            .post(app.url("/admin/v1/usage-plans"))
            .header("authorization", &admin)
            .json(&json!({"name": "bad", "ip_policy": policy}))
            .send()
            .await
            .expect("post");
        let problem = assert_problem(response, 400, "invalid_request").await;
        let pointers: Vec<&str> = problem["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .filter_map(|e| e["pointer"].as_str())
            .collect();
        assert!(pointers.contains(&pointer), "{policy}: {problem}");
    }
    let plans_after = app
        .store()
        .plans(None, 100)
        .await
        .expect("plans")
        .items
        .len();
    assert_eq!(plans_after, plans_before, "nothing was created");
}

/// Behind a trusted proxy the forwarded address counts, IPv6 included; the same header
/// from any other peer is ignored, and the access line names the address that counted.
async fn forwarding_headers_count_only_from_trusted_proxies(backend: Backend) {
    let app = spawn_app_with(backend, |config| {
        config.trusted_proxies = Some("127.0.0.1".parse().expect("a network"));
    })
    .await;
    let (_, key) = plan_and_key(
        &app,
        json!({}),
        json!({"ip_policy": {"allow": ["2001:db8::/32"], "deny": ["2001:db8:bad::/48"]}}),
    )
    .await;
    let request = |source: &str, header: &'static str, forwarded: &'static str| {
        client_from(source, secret(&key))
            .get(some_user(&app))
            .header(header, forwarded)
    };
    for (source, header, forwarded, status) in [
        // nginx (trusted) forwards an allowed IPv6 client, in either header.
        ("127.0.0.1", "x-forwarded-for", "2001:db8::7", 404),
        ("127.0.0.1", "forwarded", r#"for="[2001:db8::7]:4711""#, 404),
        // The client's own claim, left of what the proxy appended, counts for nothing.
        (
            "127.0.0.1",
            "x-forwarded-for",
            "2001:db8::7, 2001:db9::1",
            403,
        ),
        ("127.0.0.1", "x-forwarded-for", "2001:db8:bad::1", 403),
        // An untrusted peer cannot claim an allowed address.
        ("127.0.0.5", "x-forwarded-for", "2001:db8::7", 403),
        ("127.0.0.5", "forwarded", "for=\"[2001:db8::7]\"", 403),
    ] {
        let response = request(source, header, forwarded)
            .send()
            .await
            .expect("request");
        assert_eq!(
            response.status(),
            status,
            "from {source} with {header}: {forwarded}"
        );
    }

    let server = app.start_child_with_env("info", &[("MINITTER_TRUSTED_PROXIES", "127.0.0.1")]);
    let through = server
        .app
        .url(&format!("/v1/users/{}", uuid::Uuid::now_v7()));
    for (source, forwarded) in [("127.0.0.1", "2001:db8::7"), ("127.0.0.6", "2001:db8::8")] {
        client_from(source, secret(&key))
            .get(&through)
            .header("x-forwarded-for", forwarded)
            .send()
            .await
            .expect("request");
    }
    let logs = server.stop().await;
    let clients: Vec<String> = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["fields"]["message"] == "served")
        .filter_map(|line| line["fields"]["client"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(clients, ["2001:db8::7", "127.0.0.6"], "{logs}");
}

/// A policy changed through one instance holds on every instance within a second.
async fn a_policy_changed_through_one_instance_holds_on_all_within_a_second() {
    let redis_url = required_env("MINITTER_TEST_REDIS_URL");
    let shared = |config: &mut minitter_server::config::Config| {
        config.redis_url = Some(redis_url.clone().into());
    };
    let first = spawn_app_with(Backend::Postgres, shared).await;
    let second = first.sibling(shared).await;
    let (plan, key) = plan_and_key(&first, json!({}), json!({})).await;
    let client = client_from("127.0.0.7", secret(&key));
    for app in [&first, &second] {
        assert_eq!(
            client
                .get(some_user(app))
                .send()
                .await
                .expect("get")
                .status(),
            404
        );
    }
    let plan_path = format!("/admin/v1/usage-plans/{}", plan["id"].as_str().expect("id"));
    let replaced = first
        .http
        .put(first.url(&plan_path))
        .header("authorization", first.admin_authorization())
        .json(&json!({"name": "office", "ip_policy": {"deny": ["127.0.0.0/24"]}}))
        .send()
        .await
        .expect("put");
    assert_eq!(replaced.status(), 200);
    let changed = Instant::now();
    for app in [&first, &second] {
        loop {
            let response = client.get(some_user(app)).send().await.expect("get");
            if response.status() == 403 {
                assert_problem(response, 403, "ip_not_allowed").await;
                break;
            }
            assert!(
                changed.elapsed() < Duration::from_secs(1),
                "{} still admits the denied address",
                app.address
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

on_every_backend!(
    a_key_is_usable_only_from_addresses_both_policies_admit,
    changing_a_policy_takes_effect_at_once,
    bad_or_too_long_lists_are_refused_with_pointers_and_change_nothing,
    forwarding_headers_count_only_from_trusted_proxies,
);

needs_cluster!(a_policy_changed_through_one_instance_holds_on_all_within_a_second);
