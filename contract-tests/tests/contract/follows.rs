//! Tag `follows`: following, unfollowing, and the lists of followers and followed users.

use futures::TryStreamExt;
use minitter_client::types;
use reqwest::StatusCode;

use crate::helpers::{Context, limit, refusal, scenarios, status, unknown_id};

scenarios! {
    follow_user: ["follow_user 204 400 401 404 422"],
    lists: ["list_followers 200 400 404", "list_following 200 400 404"],
    unfollow_user: ["unfollow_user 204 400 401 404"],
}

/// A follow is 204 and idempotent; following yourself is 422, a stranger 404, without a
/// token 401, a malformed id 400.
async fn follow_user(ctx: &Context) {
    let (ada, bob) = (&ctx.ada, &ctx.bob);
    let followed = ctx
        .as_ada
        .follow_user()
        .user_id(bob.id.clone())
        .send()
        .await
        .expect("follow");
    assert_eq!(followed.status(), StatusCode::NO_CONTENT);
    // Idempotent: a second follow changes nothing.
    ctx.as_ada
        .follow_user()
        .user_id(bob.id.clone())
        .send()
        .await
        .expect("follow again");
    let bob_now = ctx
        .anonymous
        .get_user()
        .user_id(bob.id.clone())
        .send()
        .await
        .expect("bob")
        .into_inner();
    assert_eq!(bob_now.follower_count, 1);

    let myself = ctx
        .as_ada
        .follow_user()
        .user_id(ada.id.clone())
        .send()
        .await;
    assert_eq!(refusal(myself), status(422, "cannot_follow_self"));
    assert_eq!(
        refusal(ctx.as_ada.follow_user().user_id(unknown_id()).send().await),
        status(404, "not_found")
    );
    assert_eq!(
        refusal(
            ctx.anonymous
                .follow_user()
                .user_id(bob.id.clone())
                .send()
                .await
        ),
        status(401, "unauthorized")
    );
    let bad_id = ctx
        .raw
        .put(ctx.url("/v1/me/following/42"))
        .header("authorization", ctx.ada_auth());
    assert_eq!(ctx.raw_status(bad_id).await, 400);
}

/// Followers and following, through the SDK's streams, one item per page, most recent
/// follow first; a forged page token is 400, a stranger 404.
async fn lists(ctx: &Context) {
    let (ada, bob) = (&ctx.ada, &ctx.bob);
    for (who, whom) in [(&ctx.as_ada, bob), (&ctx.as_bob, ada)] {
        who.follow_user()
            .user_id(whom.id.clone())
            .send()
            .await
            .expect("follow");
    }
    let (_, cy_client) = ctx.another_user("cy_3", "cy3@example.com").await;
    cy_client
        .follow_user()
        .user_id(bob.id.clone())
        .send()
        .await
        .expect("cy follows bob");
    let followers: Vec<types::User> = ctx
        .anonymous
        .list_followers()
        .user_id(bob.id.clone())
        .limit(limit(1))
        .stream()
        .try_collect()
        .await
        .expect("followers");
    let names: Vec<&str> = followers.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(names, ["cy_3", "ada_l"], "most recent follow first");
    let following: Vec<types::User> = ctx
        .anonymous
        .list_following()
        .user_id(bob.id.clone())
        .limit(limit(1))
        .stream()
        .try_collect()
        .await
        .expect("following");
    let followed: Vec<&types::Id> = following.iter().map(|u| &u.id).collect();
    assert_eq!(followed, [&ada.id]);

    let forged = ctx
        .anonymous
        .list_followers()
        .user_id(bob.id.clone())
        .page_token("forged")
        .send()
        .await;
    assert_eq!(refusal(forged), status(400, "invalid_request"));
    let forged = ctx
        .anonymous
        .list_following()
        .user_id(bob.id.clone())
        .page_token("forged")
        .send()
        .await;
    assert_eq!(refusal(forged), status(400, "invalid_request"));
    let nobody = unknown_id();
    assert_eq!(
        refusal(
            ctx.anonymous
                .list_followers()
                .user_id(nobody.clone())
                .send()
                .await
        ),
        status(404, "not_found")
    );
    assert_eq!(
        refusal(ctx.anonymous.list_following().user_id(nobody).send().await),
        status(404, "not_found")
    );
}

/// An unfollow is 204 and idempotent; a stranger is 404, without a token 401, a
/// malformed id 400.
async fn unfollow_user(ctx: &Context) {
    let bob = &ctx.bob;
    let (_, cy_client) = ctx.another_user("cy_3", "cy3@example.com").await;
    cy_client
        .follow_user()
        .user_id(bob.id.clone())
        .send()
        .await
        .expect("cy follows bob");
    let unfollowed = cy_client
        .unfollow_user()
        .user_id(bob.id.clone())
        .send()
        .await
        .expect("unfollow");
    assert_eq!(unfollowed.status(), StatusCode::NO_CONTENT);
    cy_client
        .unfollow_user()
        .user_id(bob.id.clone())
        .send()
        .await
        .expect("unfollow is idempotent");
    assert_eq!(
        refusal(cy_client.unfollow_user().user_id(unknown_id()).send().await),
        status(404, "not_found")
    );
    assert_eq!(
        refusal(
            ctx.anonymous
                .unfollow_user()
                .user_id(bob.id.clone())
                .send()
                .await
        ),
        status(401, "unauthorized")
    );
    let bad_id = ctx
        .raw
        .delete(ctx.url("/v1/me/following/42"))
        .header("authorization", ctx.ada_auth());
    assert_eq!(ctx.raw_status(bad_id).await, 400);
}
