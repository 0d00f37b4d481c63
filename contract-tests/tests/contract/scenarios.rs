//! One function per spec tag, each driving its operations through the SDK.

use std::num::NonZeroU32;

use futures::TryStreamExt;

use minitter_client::{Client, ProblemExt, types};
use reqwest::StatusCode;

use crate::harness::{ADMIN_TOKEN, TestServer};

pub const PASSWORD: &str = "correct horse battery staple";

/// Two users, each with a logged-in SDK client, and the clients to reach the server.
pub struct Context<'a> {
    pub server: &'a TestServer,
    pub raw: reqwest::Client,
    pub anonymous: Client,
    pub ada: types::User,
    pub ada_token: String,
    pub as_ada: Client,
    pub bob: types::User,
    pub as_bob: Client,
    pub as_admin: Client,
}

impl<'a> Context<'a> {
    pub async fn new(server: &'a TestServer) -> Self {
        let anonymous = server.client();
        let ada = sign_up(&anonymous, "ada_l", "ada@example.com").await;
        let bob = sign_up(&anonymous, "bob_b", "bob@example.com").await;
        let ada_token = log_in(&anonymous, "ada@example.com").await;
        let bob_token = log_in(&anonymous, "bob@example.com").await;
        Self {
            server,
            raw: keyed_http(&server.api_key),
            as_ada: server.client_with_token(&ada_token),
            as_bob: server.client_with_token(&bob_token),
            as_admin: server.client_with_token(ADMIN_TOKEN),
            anonymous,
            ada,
            ada_token,
            bob,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.base_url)
    }

    /// Sends a raw request and returns its status.
    async fn raw_status(&self, request: reqwest::RequestBuilder) -> u16 {
        request.send().await.expect("send").status().as_u16()
    }

    async fn oversized_and_mistyped(&self, path: &str) {
        self.oversized_and_mistyped_with("POST", path).await;
    }

    /// A body over the limit is 413 and a body of the wrong type 415, before it is read
    /// (once the operation's credentials are good: they are checked first).
    async fn oversized_and_mistyped_with(&self, method: &str, path: &str) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let url = self.url(path);
        let token = if path.starts_with("/admin/") {
            crate::harness::ADMIN_TOKEN
        } else {
            self.ada_token.as_str()
        };
        let auth = format!("Bearer {token}");
        let request = || {
            self.raw
                .request(method.clone(), &url)
                .header("authorization", &auth)
        };
        let too_large = request()
            .header("content-type", "application/json")
            .body(vec![b' '; 70_000]);
        assert_eq!(self.raw_status(too_large).await, 413);
        let wrong_type = request().header("content-type", "text/plain").body("{}");
        assert_eq!(self.raw_status(wrong_type).await, 415);
    }
}

/// A plain HTTP client that sends the API key, for requests the SDK cannot make.
fn keyed_http(api_key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-api-key", api_key.parse().expect("a header value"));
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("http client")
}

pub fn new_user(username: &str, email: &str) -> types::NewUser {
    types::NewUser {
        username: username.parse().expect("valid username"),
        email: email.parse().expect("valid email"),
        password: PASSWORD.parse().expect("valid password"),
        display_name: Some("Ada Lovelace".parse().expect("valid display name")),
    }
}

fn credentials(email: &str, password: &str) -> types::Credentials {
    types::Credentials {
        email: email.parse().expect("valid email"),
        password: password.parse().expect("valid password"),
    }
}

fn new_tweet(text: &str) -> types::NewTweet {
    types::NewTweet {
        text: text.parse().expect("valid tweet text"),
    }
}

async fn sign_up(client: &Client, username: &str, email: &str) -> types::User {
    client
        .sign_up()
        .body(new_user(username, email))
        .send()
        .await
        .expect("sign up")
        .into_inner()
}

async fn log_in(client: &Client, email: &str) -> String {
    let token = client
        .create_token()
        .body(credentials(email, PASSWORD))
        .send()
        .await
        .expect("log in");
    token.into_inner().access_token.to_string()
}

/// The status of an SDK error, and its problem's `code` when it has one.
fn refusal<T>(result: Result<T, minitter_client::Error<types::Problem>>) -> (u16, String) {
    let Err(error) = result else {
        panic!("the request should fail");
    };
    let status = error.status().map(|s| s.as_u16()).unwrap_or_default();
    let code = error
        .problem()
        .map(|p| p.code.to_string())
        .unwrap_or_default();
    (status, code)
}

fn status(code: u16, name: &str) -> (u16, String) {
    (code, name.to_owned())
}

fn limit(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("non-zero")
}

pub async fn health(ctx: &Context<'_>) {
    let health = ctx.anonymous.get_health().send().await.expect("healthz");
    assert_eq!(health.status(), StatusCode::OK);
    let ready = ctx.anonymous.get_readiness().send().await.expect("readyz");
    assert_eq!(ready.status(), StatusCode::OK);
}

pub async fn users(ctx: &Context<'_>) {
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
    let unknown = types::Id(uuid::Uuid::now_v7());
    assert_eq!(
        refusal(sdk.get_user().user_id(unknown).send().await),
        status(404, "not_found")
    );
    assert_eq!(
        ctx.raw_status(ctx.raw.get(ctx.url("/v1/users/not-a-uuid")))
            .await,
        400
    );
}

pub async fn auth(ctx: &Context<'_>) {
    let sdk = &ctx.anonymous;
    let token = sdk
        .create_token()
        .body(credentials("ada@example.com", PASSWORD))
        .send()
        .await
        .expect("log in");
    assert_eq!(
        token.into_inner().token_type,
        types::AccessTokenTokenType::Bearer
    );
    let wrong = sdk
        .create_token()
        .body(credentials("ada@example.com", "wrong password"))
        .send()
        .await;
    assert_eq!(refusal(wrong), status(401, "unauthorized"));
    let invalid = sdk
        .create_token()
        .body(credentials("nobody", PASSWORD))
        .send()
        .await;
    assert_eq!(refusal(invalid), status(400, "invalid_request"));
    ctx.oversized_and_mistyped("/v1/auth/token").await;

    let me = ctx.as_ada.get_me().send().await.expect("me").into_inner();
    assert_eq!(
        (me.id, me.email.as_str()),
        (ctx.ada.id.clone(), "ada@example.com")
    );
    assert_eq!(
        refusal(sdk.get_me().send().await),
        status(401, "unauthorized")
    );
}

pub async fn follows(ctx: &Context<'_>) {
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
    let nobody = types::Id(uuid::Uuid::now_v7());
    assert_eq!(
        refusal(
            ctx.as_ada
                .follow_user()
                .user_id(nobody.clone())
                .send()
                .await
        ),
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
    let auth = format!("Bearer {}", ctx.ada_token);
    let bad_id = ctx
        .raw
        .put(ctx.url("/v1/me/following/42"))
        .header("authorization", &auth);
    assert_eq!(ctx.raw_status(bad_id).await, 400);

    // Followers and following, through the SDK's streams, one item per page.
    ctx.as_bob
        .follow_user()
        .user_id(ada.id.clone())
        .send()
        .await
        .expect("bob follows ada");
    sign_up(&ctx.anonymous, "cy_3", "cy3@example.com").await;
    let cy_client = ctx
        .server
        .client_with_token(&log_in(&ctx.anonymous, "cy3@example.com").await);
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
        refusal(
            ctx.anonymous
                .list_following()
                .user_id(nobody.clone())
                .send()
                .await
        ),
        status(404, "not_found")
    );

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
        refusal(cy_client.unfollow_user().user_id(nobody).send().await),
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
        .header("authorization", &auth);
    assert_eq!(ctx.raw_status(bad_id).await, 400);
}

pub async fn tweets(ctx: &Context<'_>) {
    let posted = ctx
        .as_bob
        .create_tweet()
        .body(new_tweet("hello from bob"))
        .send()
        .await
        .expect("post");
    assert_eq!(posted.status(), StatusCode::CREATED);
    let location = posted
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bobs = posted.into_inner();
    assert_eq!(location, format!("/v1/tweets/{}", *bobs.id));

    // Idempotency: a retry replays; another body is 422; a retry in flight is 409.
    let first = ctx
        .as_ada
        .create_tweet()
        .idempotency_key("key-1")
        .body(new_tweet("once"))
        .send()
        .await
        .expect("post");
    let again = ctx
        .as_ada
        .create_tweet()
        .idempotency_key("key-1")
        .body(new_tweet("once"))
        .send()
        .await
        .expect("replay");
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.into_inner(), first.into_inner());
    let other = ctx
        .as_ada
        .create_tweet()
        .idempotency_key("key-1")
        .body(new_tweet("twice"))
        .send()
        .await;
    assert_eq!(refusal(other), status(422, "idempotency_key_reused"));
    ctx.server
        .state
        .store
        .claim_idempotency_key(*ctx.ada.id, "key-2", "running")
        .await
        .expect("claim");
    let in_flight = ctx
        .as_ada
        .create_tweet()
        .idempotency_key("key-2")
        .body(new_tweet("x"))
        .send()
        .await;
    assert_eq!(refusal(in_flight), status(409, "request_in_flight"));

    assert_eq!(
        refusal(
            ctx.anonymous
                .create_tweet()
                .body(new_tweet("hi"))
                .send()
                .await
        ),
        status(401, "unauthorized")
    );
    let auth = format!("Bearer {}", ctx.ada_token);
    let empty = ctx
        .raw
        .post(ctx.url("/v1/tweets"))
        .header("authorization", &auth)
        .json(&serde_json::json!({"text": ""}));
    assert_eq!(ctx.raw_status(empty).await, 400);
    ctx.oversized_and_mistyped("/v1/tweets").await;

    let fetched = ctx
        .anonymous
        .get_tweet()
        .tweet_id(bobs.id.clone())
        .send()
        .await
        .expect("get tweet");
    assert_eq!(fetched.into_inner(), bobs);
    let nothing = types::Id(uuid::Uuid::now_v7());
    assert_eq!(
        refusal(
            ctx.anonymous
                .get_tweet()
                .tweet_id(nothing.clone())
                .send()
                .await
        ),
        status(404, "not_found")
    );
    assert_eq!(
        ctx.raw_status(ctx.raw.get(ctx.url("/v1/tweets/nope")))
            .await,
        400
    );

    // Ada follows Bob: her timeline has both, newest first, across pages.
    let timeline: Vec<types::Tweet> = ctx
        .as_ada
        .get_timeline()
        .limit(limit(1))
        .stream()
        .try_collect()
        .await
        .expect("timeline");
    let texts: Vec<&str> = timeline.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(texts, ["once", "hello from bob"]);
    let bobs_tweets: Vec<types::Tweet> = ctx
        .anonymous
        .list_user_tweets()
        .user_id(ctx.bob.id.clone())
        .limit(limit(1))
        .stream()
        .try_collect()
        .await
        .expect("tweets");
    assert_eq!(bobs_tweets, std::slice::from_ref(&bobs));
    assert_eq!(
        refusal(ctx.as_ada.get_timeline().page_token("forged").send().await),
        status(400, "invalid_request")
    );
    assert_eq!(
        refusal(ctx.anonymous.get_timeline().send().await),
        status(401, "unauthorized")
    );
    let forged = ctx
        .anonymous
        .list_user_tweets()
        .user_id(ctx.bob.id.clone())
        .page_token("x.y")
        .send()
        .await;
    assert_eq!(refusal(forged), status(400, "invalid_request"));
    assert_eq!(
        refusal(
            ctx.anonymous
                .list_user_tweets()
                .user_id(nothing.clone())
                .send()
                .await
        ),
        status(404, "not_found")
    );

    // Only the author may delete; afterwards the tweet is gone everywhere.
    assert_eq!(
        refusal(
            ctx.as_ada
                .delete_tweet()
                .tweet_id(bobs.id.clone())
                .send()
                .await
        ),
        status(403, "forbidden")
    );
    assert_eq!(
        refusal(
            ctx.anonymous
                .delete_tweet()
                .tweet_id(bobs.id.clone())
                .send()
                .await
        ),
        status(401, "unauthorized")
    );
    let deleted = ctx
        .as_bob
        .delete_tweet()
        .tweet_id(bobs.id.clone())
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        refusal(
            ctx.as_bob
                .delete_tweet()
                .tweet_id(bobs.id.clone())
                .send()
                .await
        ),
        status(404, "not_found")
    );
    assert_eq!(
        refusal(
            ctx.anonymous
                .get_tweet()
                .tweet_id(bobs.id.clone())
                .send()
                .await
        ),
        status(404, "not_found")
    );
    let timeline = ctx
        .as_ada
        .get_timeline()
        .send()
        .await
        .expect("timeline")
        .into_inner();
    assert!(timeline.items.iter().all(|t| t.id != bobs.id));
    let bad_id = ctx
        .raw
        .delete(ctx.url("/v1/tweets/nope"))
        .header("authorization", &auth);
    assert_eq!(ctx.raw_status(bad_id).await, 400);
}

fn plan_input(name: &str, rate_limit: f64) -> types::UsagePlanInput {
    types::UsagePlanInput {
        name: name.parse().expect("valid plan name"),
        description: None,
        throttle: Some(types::Throttle {
            rate_limit,
            burst_limit: std::num::NonZeroU64::new(5).expect("non-zero"),
        }),
        quota: Some(types::Quota {
            limit: std::num::NonZeroU64::new(100).expect("non-zero"),
            period: types::QuotaPeriod::Day,
        }),
        allow_cache_refresh: false,
    }
}

fn new_key(name: &str, plan_id: &types::Id) -> types::NewApiKey {
    types::NewApiKey {
        name: name.parse().expect("valid key name"),
        plan_id: plan_id.clone(),
        enabled: None,
    }
}

pub async fn admin(ctx: &Context<'_>) {
    let admin = &ctx.as_admin;
    let created = admin
        .create_usage_plan()
        .body(plan_input("gold", 2.5))
        .send()
        .await
        .expect("create plan");
    assert_eq!(created.status(), StatusCode::CREATED);
    let plan = created.into_inner();
    assert_eq!(plan.throttle.as_ref().map(|t| t.rate_limit), Some(2.5));
    assert_eq!(
        refusal(
            admin
                .create_usage_plan()
                .body(plan_input("bad", 0.0))
                .send()
                .await
        ),
        status(400, "invalid_request")
    );
    // Only the admin token opens the operator API: not a user's token, not nothing.
    assert_eq!(
        refusal(
            ctx.as_ada
                .create_usage_plan()
                .body(plan_input("x", 1.0))
                .send()
                .await
        ),
        status(401, "unauthorized")
    );
    assert_eq!(
        refusal(ctx.anonymous.list_usage_plans().send().await),
        status(401, "unauthorized")
    );
    ctx.oversized_and_mistyped("/admin/v1/usage-plans").await;

    let plans: Vec<types::UsagePlan> = admin
        .list_usage_plans()
        .limit(limit(1))
        .stream()
        .try_collect()
        .await
        .expect("plans");
    assert!(plans.iter().any(|p| p.id == plan.id));
    assert_eq!(
        refusal(admin.list_usage_plans().page_token("forged").send().await),
        status(400, "invalid_request")
    );
    let fetched = admin
        .get_usage_plan()
        .plan_id(plan.id.clone())
        .send()
        .await
        .expect("get plan");
    assert_eq!(fetched.into_inner(), plan);
    let nothing = types::Id(uuid::Uuid::now_v7());
    assert_eq!(
        refusal(admin.get_usage_plan().plan_id(nothing.clone()).send().await),
        status(404, "not_found")
    );
    assert_eq!(
        refusal(
            ctx.anonymous
                .get_usage_plan()
                .plan_id(plan.id.clone())
                .send()
                .await
        ),
        status(401, "unauthorized")
    );
    assert_eq!(
        ctx.raw_status(
            ctx.raw
                .get(ctx.url("/admin/v1/usage-plans/nope"))
                .bearer_auth(crate::harness::ADMIN_TOKEN)
        )
        .await,
        400
    );
    let updated = admin
        .update_usage_plan()
        .plan_id(plan.id.clone())
        .body(plan_input("platinum", 50.0))
        .send()
        .await;
    assert_eq!(
        updated.expect("update plan").into_inner().name.as_str(),
        "platinum"
    );
    assert_eq!(
        refusal(
            admin
                .update_usage_plan()
                .plan_id(nothing.clone())
                .body(plan_input("x", 1.0))
                .send()
                .await
        ),
        status(404, "not_found")
    );
    assert_eq!(
        refusal(
            admin
                .update_usage_plan()
                .plan_id(plan.id.clone())
                .body(plan_input("x", 0.0))
                .send()
                .await
        ),
        status(400, "invalid_request")
    );
    assert_eq!(
        refusal(
            ctx.anonymous
                .update_usage_plan()
                .plan_id(plan.id.clone())
                .body(plan_input("x", 1.0))
                .send()
                .await
        ),
        status(401, "unauthorized")
    );
    ctx.oversized_and_mistyped_with("PUT", &format!("/admin/v1/usage-plans/{}", *plan.id))
        .await;

    // Keys: the secret appears once, at creation and at rotation.
    let created = admin
        .create_api_key()
        .body(new_key("acme", &plan.id))
        .send()
        .await
        .expect("create key");
    assert_eq!(created.status(), StatusCode::CREATED);
    let key = created.into_inner();
    assert!(key.secret.starts_with(key.prefix.as_str()) && key.secret.len() > 40);
    assert_eq!(
        refusal(
            admin
                .create_api_key()
                .body(new_key("x", &nothing))
                .send()
                .await
        ),
        status(422, "unknown_plan")
    );
    assert_eq!(
        refusal(
            ctx.anonymous
                .create_api_key()
                .body(new_key("x", &plan.id))
                .send()
                .await
        ),
        status(401, "unauthorized")
    );
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let empty_name = ctx
        .raw
        .post(ctx.url("/admin/v1/api-keys"))
        .header("authorization", &auth);
    let empty_name =
        empty_name.json(&serde_json::json!({"name": "", "plan_id": plan.id.to_string()}));
    assert_eq!(ctx.raw_status(empty_name).await, 400);
    ctx.oversized_and_mistyped("/admin/v1/api-keys").await;

    let keys: Vec<types::ApiKey> = admin
        .list_api_keys()
        .limit(limit(1))
        .stream()
        .try_collect()
        .await
        .expect("keys");
    let listed = keys
        .iter()
        .find(|k| k.id == key.id)
        .expect("the key is listed");
    assert_eq!(listed.prefix.as_str(), key.prefix.as_str());
    assert_eq!(
        refusal(admin.list_api_keys().page_token("forged").send().await),
        status(400, "invalid_request")
    );
    assert_eq!(
        refusal(ctx.anonymous.list_api_keys().send().await),
        status(401, "unauthorized")
    );
    let fetched = admin
        .get_api_key()
        .key_id(key.id.clone())
        .send()
        .await
        .expect("get key")
        .into_inner();
    assert_eq!((fetched.name.as_str(), fetched.enabled), ("acme", true));
    assert_eq!(
        refusal(admin.get_api_key().key_id(nothing.clone()).send().await),
        status(404, "not_found")
    );
    assert_eq!(
        refusal(
            ctx.anonymous
                .get_api_key()
                .key_id(key.id.clone())
                .send()
                .await
        ),
        status(401, "unauthorized")
    );
    assert_eq!(
        ctx.raw_status(
            ctx.raw
                .get(ctx.url("/admin/v1/api-keys/nope"))
                .bearer_auth(crate::harness::ADMIN_TOKEN)
        )
        .await,
        400
    );

    let disable = types::ApiKeyUpdate {
        enabled: Some(false),
        name: None,
        plan_id: None,
    };
    let disabled = admin
        .update_api_key()
        .key_id(key.id.clone())
        .body(disable.clone())
        .send()
        .await
        .expect("disable");
    assert!(!disabled.into_inner().enabled);
    let to_nowhere = types::ApiKeyUpdate {
        enabled: None,
        name: None,
        plan_id: Some(nothing.clone()),
    };
    assert_eq!(
        refusal(
            admin
                .update_api_key()
                .key_id(key.id.clone())
                .body(to_nowhere)
                .send()
                .await
        ),
        status(422, "unknown_plan")
    );
    assert_eq!(
        refusal(
            admin
                .update_api_key()
                .key_id(nothing.clone())
                .body(disable.clone())
                .send()
                .await
        ),
        status(404, "not_found")
    );
    assert_eq!(
        refusal(
            ctx.anonymous
                .update_api_key()
                .key_id(key.id.clone())
                .body(disable)
                .send()
                .await
        ),
        status(401, "unauthorized")
    );
    let rename = ctx
        .raw
        .patch(ctx.url(&format!("/admin/v1/api-keys/{}", *key.id)))
        .header("authorization", &auth);
    assert_eq!(
        ctx.raw_status(rename.json(&serde_json::json!({"name": ""})))
            .await,
        400
    );
    ctx.oversized_and_mistyped_with("PATCH", &format!("/admin/v1/api-keys/{}", *key.id))
        .await;

    let rotated = admin
        .rotate_api_key()
        .key_id(key.id.clone())
        .send()
        .await
        .expect("rotate")
        .into_inner();
    assert_ne!(rotated.secret, key.secret);
    assert_eq!(
        refusal(admin.rotate_api_key().key_id(nothing.clone()).send().await),
        status(404, "not_found")
    );
    assert_eq!(
        refusal(
            ctx.anonymous
                .rotate_api_key()
                .key_id(key.id.clone())
                .send()
                .await
        ),
        status(401, "unauthorized")
    );
    let bad = ctx
        .raw
        .post(ctx.url("/admin/v1/api-keys/nope/rotate"))
        .header("authorization", &auth);
    assert_eq!(ctx.raw_status(bad).await, 400);

    // A plan in use cannot be deleted; once its key is gone it can.
    assert_eq!(
        refusal(
            admin
                .delete_usage_plan()
                .plan_id(plan.id.clone())
                .send()
                .await
        ),
        status(409, "in_use")
    );
    assert_eq!(
        refusal(
            ctx.anonymous
                .delete_api_key()
                .key_id(key.id.clone())
                .send()
                .await
        ),
        status(401, "unauthorized")
    );
    let deleted = admin
        .delete_api_key()
        .key_id(key.id.clone())
        .send()
        .await
        .expect("delete key");
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        refusal(admin.delete_api_key().key_id(key.id.clone()).send().await),
        status(404, "not_found")
    );
    assert_eq!(
        ctx.raw_status(
            ctx.raw
                .delete(ctx.url("/admin/v1/api-keys/nope"))
                .header("authorization", &auth)
        )
        .await,
        400
    );
    assert_eq!(
        refusal(
            ctx.anonymous
                .delete_usage_plan()
                .plan_id(plan.id.clone())
                .send()
                .await
        ),
        status(401, "unauthorized")
    );
    let deleted = admin
        .delete_usage_plan()
        .plan_id(plan.id.clone())
        .send()
        .await
        .expect("delete plan");
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        refusal(
            admin
                .delete_usage_plan()
                .plan_id(plan.id.clone())
                .send()
                .await
        ),
        status(404, "not_found")
    );
    assert_eq!(
        ctx.raw_status(
            ctx.raw
                .delete(ctx.url("/admin/v1/usage-plans/nope"))
                .header("authorization", &auth)
        )
        .await,
        400
    );

    // Deleting a user: their token is refused from then on.
    let gone = sign_up(&ctx.anonymous, "del_d", "del@example.com").await;
    let gone_token = log_in(&ctx.anonymous, "del@example.com").await;
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
        refusal(
            ctx.server
                .client_with_token(&gone_token)
                .get_me()
                .send()
                .await
        ),
        status(401, "unauthorized")
    );
    assert_eq!(
        ctx.raw_status(
            ctx.raw
                .delete(ctx.url("/admin/v1/users/nope"))
                .header("authorization", &auth)
        )
        .await,
        400
    );
}

/// Every `/v1` operation answers 403 without a valid key, and 429 once the key's quota
/// is spent.
pub async fn gateway(ctx: &Context<'_>) {
    use minitter_server::infra::store::{KeyWrite, NewKey, PlanSettings};
    let store = &ctx.server.state.store;
    let settings = PlanSettings {
        name: "one a day".into(),
        description: None,
        throttle: None,
        quota: Some((1, "DAY".into())),
        allow_cache_refresh: false,
    };
    let plan = store.create_plan(settings).await.expect("plan");
    let KeyWrite::Done(NewKey { secret, .. }) =
        store.create_key("spent", plan.id, true).await.expect("key")
    else {
        panic!("no key");
    };
    let build = |key: Option<&str>, bearer: Option<&str>| {
        let mut builder = minitter_client::ClientBuilder::new(&ctx.server.base_url)
            .retry_policy(minitter_client::RetryPolicy::disabled());
        if let Some(key) = key {
            builder = builder.api_key(key);
        }
        if let Some(bearer) = bearer {
            builder = builder.bearer_token(bearer);
        }
        builder.build().expect("client")
    };
    let spent = build(Some(&secret), Some(&ctx.ada_token));
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

    for (client, expected) in [
        (build(None, Some(&ctx.ada_token)), status(403, "forbidden")),
        (
            build(Some("mk_not-a-key"), Some(&ctx.ada_token)),
            status(403, "forbidden"),
        ),
        (spent, status(429, "quota_exceeded")),
    ] {
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
                    .create_token()
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
        assert_eq!(
            refusal(client.put_picture().body(PIXEL_PNG.to_vec()).send().await),
            expected
        );
        assert_eq!(
            refusal(client.get_picture().user_id(ada.clone()).send().await),
            expected
        );
    }
}

/// A 1 × 1 red PNG.
const PIXEL_PNG: [u8; 69] = [
    137, 80, 78, 71, 13, 10, 26, 10, 0, 0, 0, 13, 73, 72, 68, 82, 0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0,
    0, 0, 144, 119, 83, 222, 0, 0, 0, 12, 73, 68, 65, 84, 120, 156, 99, 248, 207, 192, 0, 0, 3, 1,
    1, 0, 201, 254, 146, 239, 0, 0, 0, 0, 73, 69, 78, 68, 174, 66, 96, 130,
];

pub async fn pictures(ctx: &Context<'_>) {
    let stored = ctx
        .as_ada
        .put_picture()
        .body(PIXEL_PNG.to_vec())
        .send()
        .await
        .expect("upload")
        .into_inner();
    assert_eq!((stored.width.get(), stored.height.get()), (1, 1));
    let got = ctx
        .anonymous
        .get_picture()
        .user_id(ctx.ada.id.clone())
        .send()
        .await
        .expect("download");
    let etag = got
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes: Vec<u8> = got
        .into_inner()
        .into_inner()
        .map_ok(|b| b.to_vec())
        .try_concat()
        .await
        .expect("bytes");
    assert_eq!(bytes, PIXEL_PNG.to_vec());
    let unchanged = ctx
        .anonymous
        .get_picture()
        .user_id(ctx.ada.id.clone())
        .if_none_match(etag)
        .send()
        .await;
    assert_eq!(
        unchanged
            .map(|r| r.status().as_u16())
            .unwrap_or_else(|e| e.status().map_or(0, |s| s.as_u16())),
        304
    );
    assert_eq!(
        refusal(
            ctx.anonymous
                .get_picture()
                .user_id(ctx.bob.id.clone())
                .send()
                .await
        ),
        status(404, "not_found")
    );
    assert_eq!(
        ctx.raw_status(ctx.raw.get(ctx.url("/v1/users/nope/picture")))
            .await,
        400
    );

    assert_eq!(
        refusal(
            ctx.anonymous
                .put_picture()
                .body(PIXEL_PNG.to_vec())
                .send()
                .await
        ),
        status(401, "unauthorized")
    );
    assert_eq!(
        refusal(
            ctx.as_ada
                .put_picture()
                .body(b"GIF? no".to_vec())
                .send()
                .await
        ),
        status(415, "unsupported_media_type")
    );
    let mut bomb = PIXEL_PNG;
    bomb[16..20].copy_from_slice(&5000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&5000u32.to_be_bytes());
    assert_eq!(
        refusal(ctx.as_ada.put_picture().body(bomb.to_vec()).send().await),
        status(422, "image_too_large")
    );
    let auth = format!("Bearer {}", ctx.ada_token);
    let url = ctx.url("/v1/me/picture");
    let too_large = ctx
        .raw
        .put(&url)
        .header("authorization", &auth)
        .header("content-type", "application/octet-stream");
    assert_eq!(
        ctx.raw_status(too_large.body(vec![0u8; 6 * 1024 * 1024]))
            .await,
        413
    );
    let no_body = ctx.raw.put(&url).header("authorization", &auth);
    assert_eq!(ctx.raw_status(no_body).await, 400);
}

/// A partner's view of their key, and the operator's usage report.
pub async fn usage(ctx: &Context<'_>) {
    let usage = ctx
        .anonymous
        .get_usage()
        .send()
        .await
        .expect("usage")
        .into_inner();
    assert!(usage.used > 0, "this run has made requests");
    assert_eq!(
        (usage.plan.name.as_str(), usage.remaining),
        ("contract tests", None)
    );

    let admin = &ctx.as_admin;
    let today = chrono::Utc::now().date_naive();
    let report = admin
        .get_usage_report()
        .plan_id(usage.plan.id.clone())
        .start_date(today - chrono::Duration::days(1))
        .end_date(today)
        .send()
        .await
        .expect("report")
        .into_inner();
    let series = report
        .items
        .get(&usage.key_id.to_string())
        .expect("the key's series");
    assert_eq!(series.len(), 2);
    assert_eq!(
        series[0],
        vec![0],
        "nothing yesterday, and no quota to report"
    );
    assert!(series[1][0] > 0);

    let backwards = admin
        .get_usage_report()
        .plan_id(usage.plan.id.clone())
        .start_date(today)
        .end_date(today - chrono::Duration::days(1));
    assert_eq!(
        refusal(backwards.send().await),
        status(422, "invalid_date_range")
    );
    let nothing = types::Id(uuid::Uuid::now_v7());
    let unknown = admin
        .get_usage_report()
        .plan_id(nothing)
        .start_date(today)
        .end_date(today);
    assert_eq!(refusal(unknown.send().await), status(404, "not_found"));
    let anonymous = ctx
        .anonymous
        .get_usage_report()
        .plan_id(usage.plan.id.clone())
        .start_date(today)
        .end_date(today);
    assert_eq!(refusal(anonymous.send().await), status(401, "unauthorized"));
    let url = ctx.url(&format!(
        "/admin/v1/usage-plans/{}/usage?start_date=yesterday&end_date=today",
        *usage.plan.id
    ));
    let bad_date = ctx
        .raw
        .get(url)
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"));
    assert_eq!(ctx.raw_status(bad_date).await, 400);
}

/// Every operation that needs the database answers 503 once it is gone. (Warm caches and
/// home feeds answer some reads without it, so they are dropped and kept no more first, as
/// when events may be missed.)
pub async fn unavailable(ctx: &Context<'_>) {
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
            sdk.create_token()
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
}

/// Every resource GET the document declares an `ETag` for answers 200 with one, and 304
/// with no body when that tag comes back as `If-None-Match`.
pub async fn conditional_gets(ctx: &Context<'_>) {
    let admin = format!("Bearer {}", crate::harness::ADMIN_TOKEN);
    let plan: serde_json::Value = ctx
        .raw
        .post(ctx.url("/admin/v1/usage-plans"))
        .header("authorization", &admin)
        .json(&serde_json::json!({"name": "conditional"}))
        .send()
        .await
        .expect("create plan")
        .json()
        .await
        .expect("plan");
    let key: serde_json::Value = ctx
        .raw
        .post(ctx.url("/admin/v1/api-keys"))
        .header("authorization", &admin)
        .json(&serde_json::json!({"name": "conditional", "plan_id": plan["id"]}))
        .send()
        .await
        .expect("create key")
        .json()
        .await
        .expect("key");
    let tweet = ctx
        .as_ada
        .create_tweet()
        .body(new_tweet("worth caching"))
        .send()
        .await
        .expect("tweet")
        .into_inner();
    let as_admin = Some(admin.as_str());
    for (path, authorization) in [
        (format!("/v1/users/{}", *ctx.ada.id), None),
        (format!("/v1/tweets/{}", *tweet.id), None),
        (
            format!(
                "/admin/v1/usage-plans/{}/usage?start_date=2026-01-01&end_date=2026-01-02",
                plan["id"].as_str().expect("id")
            ),
            as_admin,
        ),
        (
            format!("/admin/v1/usage-plans/{}", plan["id"].as_str().expect("id")),
            as_admin,
        ),
        (
            format!("/admin/v1/api-keys/{}", key["id"].as_str().expect("id")),
            as_admin,
        ),
    ] {
        let get = |if_none_match: Option<&str>| {
            let mut request = ctx.raw.get(ctx.url(&path));
            if let Some(authorization) = authorization {
                request = request.header("authorization", authorization);
            }
            if let Some(tag) = if_none_match {
                request = request.header("if-none-match", tag);
            }
            request.send()
        };
        let first = get(None).await.expect("get");
        assert_eq!(first.status(), 200, "{path}");
        let tag = first.headers()["etag"].to_str().expect("ascii").to_owned();
        let again = get(Some(&tag)).await.expect("conditional get");
        assert_eq!(again.status(), 304, "{path}");
        assert_eq!(again.headers()["etag"].to_str().expect("ascii"), tag);
        assert!(
            again.bytes().await.expect("body").is_empty(),
            "{path}: a 304 has no body"
        );
        let other = get(Some("W/\"something else\"")).await.expect("get");
        assert_eq!(other.status(), 200, "{path}: another tag gets the resource");
    }
}

/// The operator's metrics: 200 with the admin token, 401 without.
pub async fn metrics(ctx: &Context<'_>) {
    let text = ctx
        .as_admin
        .get_metrics()
        .send()
        .await
        .expect("metrics")
        .into_inner();
    let bytes: Vec<u8> = text
        .into_inner()
        .map_ok(|chunk| chunk.to_vec())
        .try_concat()
        .await
        .expect("the body");
    assert!(String::from_utf8_lossy(&bytes).contains("minitter_http_requests_total"));
    assert_eq!(ctx.raw_status(ctx.raw.get(ctx.url("/metrics"))).await, 401);
}
