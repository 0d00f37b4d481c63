//! Across tags: the gateway in front of every `/v1` operation answers 403 without a valid
//! key or from an address the key's IP policy refuses, and 429 once the key's quota is
//! spent.

use minitter_client::Client;

use crate::helpers::{
    Context, PASSWORD, PIXEL_PNG, credentials, new_key, new_tweet, new_user, refusal, scenarios,
    status,
};

scenarios! {
    no_key: ["* 403"],
    unknown_key: ["* 403"],
    refused_address: ["* 403"],
    spent_quota: ["* 429"],
}

/// A client with the API key and bearer token given, that sends each request once.
fn client(ctx: &Context, key: Option<&str>) -> Client {
    let mut builder = minitter_client::ClientBuilder::new(&ctx.server.base_url)
        .retry_policy(minitter_client::RetryPolicy::disabled())
        .bearer_token(&ctx.ada_token);
    if let Some(key) = key {
        builder = builder.api_key(key);
    }
    builder.build().expect("client")
}

async fn no_key(ctx: &Context) {
    every_operation_refuses(ctx, &client(ctx, None), status(403, "forbidden")).await;
}

async fn unknown_key(ctx: &Context) {
    let client = client(ctx, Some("mk_not-a-key"));
    every_operation_refuses(ctx, &client, status(403, "forbidden")).await;
}

/// A key made through the operator API to be used only from a network the tests are not
/// in (they call from 127.0.0.1).
async fn refused_address(ctx: &Context) {
    let plan = crate::admin::gold_plan(ctx).await;
    let mut body = new_key("elsewhere", &plan.id);
    body.ip_policy = Some(minitter_client::types::IpPolicy {
        allow: vec!["2001:db8::/32".parse().expect("a network")],
        deny: Vec::new(),
    });
    let key = ctx
        .as_admin
        .create_api_key()
        .body(body)
        .send()
        .await
        .expect("create key")
        .into_inner();
    assert_eq!(key.ip_policy.allow.len(), 1);
    let elsewhere = client(ctx, Some(&key.secret));
    every_operation_refuses(ctx, &elsewhere, status(403, "ip_not_allowed")).await;
}

async fn spent_quota(ctx: &Context) {
    use minitter_server::infra::store::{KeySettings, KeyWrite, NewKey, PlanSettings};
    let store = &ctx.server.state.store;
    let settings = PlanSettings {
        quota: Some((1, "DAY".into())),
        ..PlanSettings::named("one a day")
    };
    let plan = store.create_plan(settings).await.expect("plan");
    let KeyWrite::Done(NewKey { secret, .. }) = store
        .create_key(KeySettings::new("spent", plan.id))
        .await
        .expect("key")
    else {
        panic!("no key");
    };
    let spent = client(ctx, Some(&secret));
    // The one request of the day.
    spent
        .get_health()
        .send()
        .await
        .expect("health is not metered");
    spent
        .get_user()
        .user_id(ctx.ada.id.clone())
        .send()
        .await
        .expect("the one request");
    every_operation_refuses(ctx, &spent, status(429, "quota_exceeded")).await;
}

/// Sends every `/v1` operation through `client` and expects each to be refused so.
async fn every_operation_refuses(ctx: &Context, client: &Client, expected: (u16, String)) {
    let (ada, bob, tweet) = (ctx.ada.id.clone(), ctx.bob.id.clone(), ctx.ada.id.clone());
    assert_eq!(
        refusal(
            client
                .sign_up()
                .body(new_user("gw_user", "gw@example.com"))
                .send()
                .await
        ),
        expected
    );
    assert_eq!(
        refusal(
            client
                .log_in()
                .body(credentials("ada@example.com", PASSWORD))
                .send()
                .await
        ),
        expected
    );
    assert_eq!(
        refusal(client.get_user().user_id(ada.clone()).send().await),
        expected
    );
    assert_eq!(refusal(client.get_me().send().await), expected);
    assert_eq!(
        refusal(client.follow_user().user_id(bob.clone()).send().await),
        expected
    );
    assert_eq!(
        refusal(client.unfollow_user().user_id(bob.clone()).send().await),
        expected
    );
    assert_eq!(
        refusal(client.list_followers().user_id(ada.clone()).send().await),
        expected
    );
    assert_eq!(
        refusal(client.list_following().user_id(ada.clone()).send().await),
        expected
    );
    assert_eq!(
        refusal(
            client
                .create_tweet()
                .body(new_tweet("metered"))
                .send()
                .await
        ),
        expected
    );
    assert_eq!(
        refusal(client.get_tweet().tweet_id(tweet.clone()).send().await),
        expected
    );
    assert_eq!(
        refusal(client.delete_tweet().tweet_id(tweet.clone()).send().await),
        expected
    );
    assert_eq!(
        refusal(client.list_user_tweets().user_id(ada.clone()).send().await),
        expected
    );
    assert_eq!(refusal(client.get_timeline().send().await), expected);
    assert_eq!(refusal(client.get_usage().send().await), expected);
    assert_eq!(refusal(client.rotate_own_api_key().send().await), expected);
    let today = chrono::Utc::now().date_naive();
    let history = client.get_usage_history().start_date(today).end_date(today);
    assert_eq!(refusal(history.send().await), expected);
    assert_eq!(
        refusal(client.create_stream_ticket().send().await),
        expected
    );
    assert_eq!(
        refusal(client.put_picture().body(PIXEL_PNG.to_vec()).send().await),
        expected
    );
    assert_eq!(
        refusal(client.get_picture().user_id(ada.clone()).send().await),
        expected
    );
    for refused in crate::webhooks::refusals(client, &ada).await {
        assert_eq!(refused, expected);
    }
}
