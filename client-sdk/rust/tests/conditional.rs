//! Conditional reads through the SDK against the real server: a `304 Not Modified` is a
//! typed outcome of `send_conditional()`, with the `ETag` to send next time, and a stale
//! tag gets the current copy.

mod support;

use minitter_client::{ClientBuilder, Conditional, Error, SendConditional};
use support::Server;

#[tokio::test]
async fn a_current_copy_is_a_typed_not_modified_and_a_stale_one_is_replaced() {
    let server = Server::start().await;
    let (user, token) = server.user("etagged").await;
    let client = ClientBuilder::new(&server.base_url)
        .api_key(&server.api_key)
        .build()
        .expect("a client");

    let first = client
        .get_user()
        .user_id(user)
        .send_conditional()
        .await
        .expect("the user");
    let etag = first.etag().expect("an ETag").to_owned();
    let profile = first.into_modified().expect("no If-None-Match: the user");
    assert_eq!(*profile.id, user);

    let again = client
        .get_user()
        .user_id(user)
        .if_none_match(etag.as_str())
        .send_conditional()
        .await
        .expect("a 304 is not an error");
    assert!(again.is_not_modified(), "{again:?}");
    assert_eq!(again.etag(), Some(etag.as_str()));
    // The plain send() is what progenitor makes of a 304: an undeclared response.
    let plain = client
        .get_user()
        .user_id(user)
        .if_none_match(etag.as_str())
        .send()
        .await
        .expect_err("progenitor does not type a 304");
    assert!(
        matches!(&plain, Error::UnexpectedResponse(r) if r.status() == 304),
        "{plain:?}"
    );

    // The user posts (as themselves, on the same pool): the copy is stale now.
    client
        .with_bearer_token(&token)
        .expect("a token")
        .create_tweet()
        .body_map(|b| b.text("news"))
        .send()
        .await
        .expect("a tweet");
    let changed = client
        .get_user()
        .user_id(user)
        .if_none_match(etag.as_str())
        .send_conditional()
        .await
        .expect("the user");
    assert_ne!(changed.etag(), Some(etag.as_str()));
    match changed {
        Conditional::Modified(profile) => assert_eq!(profile.tweet_count, 1),
        Conditional::NotModified(_) => panic!("the copy changed"),
    }
}
