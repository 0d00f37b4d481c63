//! Across tags: every operation that needs the database answers 503 once it is gone.

use minitter_client::types;

use crate::helpers::{
    Context, PASSWORD, PIXEL_PNG, credentials, new_key, new_tweet, new_user, plan_input, refusal,
    scenarios, status,
};

scenarios! {
    unavailable: ["* 503"],
}

/// Every operation that needs the database answers 503 once it is gone. (Warm caches and
/// home feeds answer some reads without it, so they are dropped and kept no more first, as
/// when events may be missed.)
async fn unavailable(ctx: &Context) {
    use minitter_server::services::events::Subscriber;
    let (ada, bob, id) = (&ctx.ada, &ctx.bob, ctx.ada.id.clone());
    let state = &ctx.server.state;
    state.store.close().await;
    state.profiles.set_in_sync(false);
    state.timelines.set_in_sync(false);
    state.response_cache.set_in_sync(false);
    state.timelines.drop_feeds().await.expect("drop the feeds");
    let down = status(503, "unavailable");
    let sdk = &ctx.anonymous;
    assert_eq!(refusal(sdk.get_readiness().send().await), down);
    assert_eq!(
        refusal(
            sdk.sign_up()
                .body(new_user("ed_e", "ed@example.com"))
                .send()
                .await
        ),
        down
    );
    assert_eq!(
        refusal(sdk.get_user().user_id(id.clone()).send().await),
        down
    );
    assert_eq!(
        refusal(
            sdk.log_in()
                .body(credentials("ada@example.com", PASSWORD))
                .send()
                .await
        ),
        down
    );
    assert_eq!(refusal(ctx.as_ada.get_me().send().await), down);
    assert_eq!(
        refusal(
            ctx.as_ada
                .follow_user()
                .user_id(bob.id.clone())
                .send()
                .await
        ),
        down
    );
    assert_eq!(
        refusal(
            ctx.as_ada
                .unfollow_user()
                .user_id(bob.id.clone())
                .send()
                .await
        ),
        down
    );
    assert_eq!(
        refusal(sdk.list_followers().user_id(id.clone()).send().await),
        down
    );
    assert_eq!(
        refusal(sdk.list_following().user_id(id.clone()).send().await),
        down
    );
    assert_eq!(
        refusal(
            ctx.as_ada
                .create_tweet()
                .body(new_tweet("down"))
                .send()
                .await
        ),
        down
    );
    assert_eq!(
        refusal(sdk.get_tweet().tweet_id(id.clone()).send().await),
        down
    );
    assert_eq!(
        refusal(ctx.as_ada.delete_tweet().tweet_id(id.clone()).send().await),
        down
    );
    assert_eq!(
        refusal(sdk.list_user_tweets().user_id(ada.id.clone()).send().await),
        down
    );
    assert_eq!(refusal(ctx.as_ada.get_timeline().send().await), down);
    let admin = &ctx.as_admin;
    assert_eq!(
        refusal(
            admin
                .create_usage_plan()
                .body(plan_input("down", 1.0))
                .send()
                .await
        ),
        down
    );
    assert_eq!(refusal(admin.list_usage_plans().send().await), down);
    assert_eq!(
        refusal(admin.get_usage_plan().plan_id(id.clone()).send().await),
        down
    );
    assert_eq!(
        refusal(
            admin
                .update_usage_plan()
                .plan_id(id.clone())
                .body(plan_input("down", 1.0))
                .send()
                .await
        ),
        down
    );
    assert_eq!(
        refusal(admin.delete_usage_plan().plan_id(id.clone()).send().await),
        down
    );
    assert_eq!(
        refusal(
            admin
                .create_api_key()
                .body(new_key("down", &id))
                .send()
                .await
        ),
        down
    );
    assert_eq!(refusal(admin.list_api_keys().send().await), down);
    assert_eq!(
        refusal(admin.get_api_key().key_id(id.clone()).send().await),
        down
    );
    let enable = types::ApiKeyUpdate {
        enabled: Some(true),
        name: None,
        plan_id: None,
        ip_policy: None,
    };
    assert_eq!(
        refusal(
            admin
                .update_api_key()
                .key_id(id.clone())
                .body(enable)
                .send()
                .await
        ),
        down
    );
    assert_eq!(
        refusal(admin.rotate_api_key().key_id(id.clone()).send().await),
        down
    );
    assert_eq!(
        refusal(admin.delete_api_key().key_id(id.clone()).send().await),
        down
    );
    assert_eq!(
        refusal(admin.delete_user().user_id(id.clone()).send().await),
        down
    );
    assert_eq!(refusal(ctx.anonymous.get_usage().send().await), down);
    assert_eq!(
        refusal(ctx.anonymous.rotate_own_api_key().send().await),
        down
    );
    assert_eq!(
        refusal(ctx.as_ada.create_stream_ticket().send().await),
        down
    );
    assert_eq!(
        refusal(
            ctx.as_ada
                .put_picture()
                .body(PIXEL_PNG.to_vec())
                .send()
                .await
        ),
        down
    );
    assert_eq!(
        refusal(ctx.anonymous.get_picture().user_id(id.clone()).send().await),
        down
    );
    let today = chrono::Utc::now().date_naive();
    let report = admin
        .get_usage_report()
        .plan_id(id.clone())
        .start_date(today)
        .end_date(today);
    assert_eq!(refusal(report.send().await), down);
    let history = ctx
        .anonymous
        .get_usage_history()
        .start_date(today)
        .end_date(today);
    assert_eq!(refusal(history.send().await), down);
    let plan_history = admin
        .get_plan_usage_history()
        .plan_id(id.clone())
        .start_date(today)
        .end_date(today);
    assert_eq!(refusal(plan_history.send().await), down);
    for refused in crate::webhooks::refusals(&ctx.anonymous, &id).await {
        assert_eq!(refused, down);
    }
}
