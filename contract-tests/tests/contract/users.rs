//! Tag `users`: signing up and public profiles.

use reqwest::StatusCode;

use crate::helpers::{Context, new_user, refusal, scenarios, status, unknown_id};

scenarios! {
    sign_up: ["sign_up 201 400 409 413 415", "get_user 200"],
    get_user: ["get_user 200 400 404"],
}

/// A sign-up answers 201 with the profile and its `Location`; the same email (in any
/// case) is 409; a malformed one 400; the body limits apply.
async fn sign_up(ctx: &Context) {
    let sdk = &ctx.anonymous;
    let created = sdk
        .sign_up()
        .body(new_user("cy_c", "cy@example.com"))
        .send()
        .await
        .expect("sign up");
    assert_eq!(created.status(), StatusCode::CREATED);
    let location = created
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert_eq!(location, format!("/v1/users/{}", *created.id));
    let cy = created.into_inner();
    assert_eq!(
        (cy.username.as_str(), cy.display_name.as_str()),
        ("cy_c", "Ada Lovelace")
    );
    assert_eq!(
        (cy.follower_count, cy.following_count, cy.tweet_count),
        (0, 0, 0)
    );

    let duplicate = sdk
        .sign_up()
        .body(new_user("cy_2", "CY@example.com"))
        .send()
        .await;
    assert_eq!(refusal(duplicate), status(409, "conflict"));
    let bad_email = sdk
        .sign_up()
        .body(new_user("dee_d", "not-an-email"))
        .send()
        .await;
    assert_eq!(refusal(bad_email), status(400, "invalid_request"));
    ctx.oversized_and_mistyped("/v1/users").await;

    let fetched = sdk
        .get_user()
        .user_id(cy.id.clone())
        .send()
        .await
        .expect("get user");
    assert_eq!(fetched.into_inner(), cy);
}

/// A profile is what sign-up returned; an unknown id is 404, a malformed one 400.
async fn get_user(ctx: &Context) {
    let sdk = &ctx.anonymous;
    let fetched = sdk
        .get_user()
        .user_id(ctx.ada.id.clone())
        .send()
        .await
        .expect("get user");
    assert_eq!(fetched.into_inner(), ctx.ada);
    assert_eq!(
        refusal(sdk.get_user().user_id(unknown_id()).send().await),
        status(404, "not_found")
    );
    assert_eq!(
        ctx.raw_status(ctx.raw.get(ctx.url("/v1/users/not-a-uuid")))
            .await,
        400
    );
}
