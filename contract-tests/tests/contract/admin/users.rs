//! Users: the operator deletes one, and their token is refused from then on.

use reqwest::StatusCode;

use crate::harness::ADMIN_TOKEN;
use crate::helpers::{Context, refusal, scenarios, status};

scenarios! {
    delete_user: ["delete_user 204 400 401 404", "get_me 401"],
}

async fn delete_user(ctx: &Context) {
    let admin = &ctx.as_admin;
    let (gone, as_gone) = ctx.another_user("del_d", "del@example.com").await;
    assert_eq!(
        refusal(
            ctx.anonymous
                .delete_user()
                .user_id(gone.id.clone())
                .send()
                .await
        ),
        status(401, "unauthorized")
    );
    let deleted = admin
        .delete_user()
        .user_id(gone.id.clone())
        .send()
        .await
        .expect("delete user");
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        refusal(admin.delete_user().user_id(gone.id.clone()).send().await),
        status(404, "not_found")
    );
    assert_eq!(
        refusal(as_gone.get_me().send().await),
        status(401, "unauthorized")
    );
    assert_eq!(
        ctx.raw_status(
            ctx.raw
                .delete(ctx.url("/admin/v1/users/nope"))
                .bearer_auth(ADMIN_TOKEN)
        )
        .await,
        400
    );
}
