//! Tag `pictures`: uploading a profile picture and downloading it. (Presigned redirects,
//! `get_picture 307`, need S3: see `uncovered.txt`.)

use futures::TryStreamExt;

use crate::helpers::{Context, PIXEL_PNG, refusal, scenarios, status};

scenarios! {
    put_picture: ["put_picture 200 400 401 413 415 422"],
    get_picture: ["get_picture 200 304 400 404"],
}

/// An upload is 200 with the image's size; without a token 401; not an image 415; too
/// many pixels 422; too many bytes 413; no body 400.
async fn put_picture(ctx: &Context) {
    let stored = ctx
        .as_ada
        .put_picture()
        .body(PIXEL_PNG.to_vec())
        .send()
        .await
        .expect("upload")
        .into_inner();
    assert_eq!((stored.width.get(), stored.height.get()), (1, 1));
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
    let auth = ctx.ada_auth();
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

/// A download is the bytes uploaded, with an `ETag` that makes the next one a 304; a user
/// without a picture is 404, a malformed id 400.
async fn get_picture(ctx: &Context) {
    ctx.as_ada
        .put_picture()
        .body(PIXEL_PNG.to_vec())
        .send()
        .await
        .expect("upload");
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
}
