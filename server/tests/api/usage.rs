//! A partner's own key: its requests per day by outcome, as the partner
//! (`GET /v1/usage/history`) and the operator (`GET /admin/v1/usage-plans/{id}/history`)
//! see them (admitted, of those answered with a 4xx, and refused with 429; every day of
//! the range, the quiet ones as zeros), and the rotation of its secret.

use serde_json::{Value, json};

use minitter_test_support::{Backend, on_every_backend};

use crate::helpers::{PartnerKey, TestApp, http_client, spawn_app, user};

async fn get(client: &reqwest::Client, url: String) -> (u16, Value) {
    let response = client.get(url).send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn requests_are_counted_by_outcome(backend: Backend) {
    let app = spawn_app(backend).await;
    let (alice, _) = user(&app, "alice").await;
    let PartnerKey { client, key, plan } = PartnerKey::new(
        &app,
        json!({"name": "four a day", "quota": {"limit": 4, "period": "DAY"}}),
    )
    .await;
    let today = chrono::Utc::now().date_naive();
    let range = format!(
        "start_date={}&end_date={today}",
        today - chrono::Duration::days(2)
    );

    // Two answered, one client error, then the history itself: four admitted.
    for user_id in [
        alice.as_str(),
        alice.as_str(),
        &uuid::Uuid::now_v7().to_string(),
    ] {
        client
            .get(app.url(&format!("/v1/users/{user_id}")))
            .send()
            .await
            .expect("request");
    }
    let (status, history) = get(&client, app.url(&format!("/v1/usage/history?{range}"))).await;
    assert_eq!(status, 200, "{history}");
    let zero = json!({"used": 0, "client_errors": 0, "throttled": 0});
    let day = |date: chrono::NaiveDate, counts: &Value| {
        let mut day = counts.clone();
        day["date"] = json!(date.to_string());
        day
    };
    assert_eq!(
        history["days"],
        json!([
            day(today - chrono::Duration::days(2), &zero),
            day(today - chrono::Duration::days(1), &zero),
            day(
                today,
                &json!({"used": 4, "client_errors": 1, "throttled": 0})
            ),
        ])
    );

    // The quota is spent: two more are refused, and counted as such.
    for _ in 0..2 {
        let (status, _) = get(&client, app.url(&format!("/v1/users/{alice}"))).await;
        assert_eq!(status, 429);
    }
    let admin = reqwest::Client::new();
    let url = app.url(&format!(
        "/admin/v1/usage-plans/{}/history?{range}",
        plan["id"].as_str().expect("plan id")
    ));
    let response = admin
        .get(url)
        .header("authorization", app.admin_authorization())
        .send()
        .await
        .expect("history");
    assert_eq!(response.status(), 200);
    let history: Value = response.json().await.expect("json");
    assert_eq!(
        history["days"][2],
        day(
            today,
            &json!({"used": 4, "client_errors": 1, "throttled": 2})
        )
    );
    assert_eq!(
        history["days"][0],
        day(today - chrono::Duration::days(2), &zero)
    );
    assert_eq!(
        history["top_keys"],
        json!([{"key_id": key["id"], "used": 4}])
    );
}

/// Another plan's keys are not in a plan's history.
async fn a_plans_history_holds_only_its_keys(backend: Backend) {
    let app: TestApp = spawn_app(backend).await;
    user(&app, "alice").await;
    let plan = app
        .admin_post("/admin/v1/usage-plans", &json!({"name": "quiet"}))
        .await;
    let today = chrono::Utc::now().date_naive();
    let url = app.url(&format!(
        "/admin/v1/usage-plans/{}/history?start_date={today}&end_date={today}",
        plan["id"].as_str().expect("plan id")
    ));
    let history: Value = reqwest::Client::new()
        .get(url)
        .header("authorization", app.admin_authorization())
        .send()
        .await
        .expect("history")
        .json()
        .await
        .expect("json");
    assert_eq!(history["days"][0]["used"], 0, "{history}");
    assert_eq!(history["top_keys"], json!([]));
}

/// A partner rotates its own key: the new secret works at once, with the same key and
/// its usage, and the old one is refused at once.
async fn a_partner_rotates_its_own_key(backend: Backend) {
    let app = spawn_app(backend).await;
    let PartnerKey {
        client: old, key, ..
    } = PartnerKey::new(&app, json!({"name": "rotating"})).await;
    let (status, _) = get(&old, app.url("/v1/usage")).await;
    assert_eq!(status, 200);

    let response = old
        .post(app.url("/v1/api-key/rotate"))
        .send()
        .await
        .expect("rotate");
    assert_eq!(response.status(), 200);
    let rotated: Value = response.json().await.expect("json");
    assert_eq!(rotated["id"], key["id"]);
    let secret = rotated["secret"].as_str().expect("a new secret");
    assert_ne!(secret, key["secret"].as_str().expect("secret"));
    assert_eq!(rotated["prefix"].as_str(), secret.get(..8));

    let (status, problem) = get(&old, app.url("/v1/usage")).await;
    assert_eq!((status, &problem["code"]), (403, &json!("forbidden")));
    let (status, usage) = get(&http_client(secret), app.url("/v1/usage")).await;
    assert_eq!(status, 200);
    assert_eq!(usage["key_id"], key["id"]);
    assert_eq!(
        usage["used"], 3,
        "the usage before the rotation is the key's still"
    );
}

on_every_backend!(
    requests_are_counted_by_outcome,
    a_plans_history_holds_only_its_keys,
    a_partner_rotates_its_own_key,
);
