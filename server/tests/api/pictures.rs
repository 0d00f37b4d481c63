//! Profile pictures, on the local directory always and on a real S3-compatible server
//! when `MINITTER_TEST_S3_ENDPOINT` is set (`.ci/run` starts moto for it).

use std::io::Write;

use serde_json::Value;

use minitter_test_support::{Backend, Relay, needs_s3, on_every_backend};

use crate::helpers::{TestApp, assert_problem, spawn_app, spawn_app_with};

/// A valid PNG of `width` × `height` red pixels.
pub fn png(width: u32, height: u32) -> Vec<u8> {
    // Each row: filter byte 0, then RGB pixels.
    let row: Vec<u8> = std::iter::once(0u8)
        .chain(std::iter::repeat_n([255u8, 0, 0], width as usize).flatten())
        .collect();
    let raw = row.repeat(height as usize);
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(&raw).expect("deflate");
    let data = encoder.finish().expect("deflate");
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, body) in [
        (&b"IHDR"[..], ihdr),
        (&b"IDAT"[..], data),
        (&b"IEND"[..], Vec::new()),
    ] {
        out.extend_from_slice(&u32::try_from(body.len()).expect("small").to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(&body);
        out.extend_from_slice(kind);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc.sum().to_be_bytes());
    }
    out
}

struct Ada {
    id: String,
    auth: String,
}

async fn ada(app: &TestApp) -> Ada {
    let id = app.sign_up("ada_l", "ada@example.com").await;
    let token = app.log_in("ada@example.com").await;
    Ada {
        id,
        auth: format!("Bearer {token}"),
    }
}

async fn upload(app: &TestApp, who: &Ada, bytes: Vec<u8>) -> reqwest::Response {
    app.http
        .put(app.url("/v1/me/picture"))
        .header("authorization", &who.auth)
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .expect("request")
}

/// Every object in the local picture store.
fn stored_files(app: &TestApp) -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.path().is_dir() {
                walk(&entry.path(), out);
            } else {
                out.push(entry.path());
            }
        }
    }
    let mut out = Vec::new();
    walk(&app.data_dir.join("blobs"), &mut out);
    out
}

async fn a_picture_round_trips_and_replacing_it_removes_the_old_one(backend: Backend) {
    let app = spawn_app(backend).await;
    let ada = ada(&app).await;
    let first = png(40, 30);
    let stored: Value = upload(&app, &ada, first.clone())
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        (stored["width"].as_u64(), stored["height"].as_u64()),
        (Some(40), Some(30))
    );
    assert_eq!(stored["content_type"], "image/png");

    let url = app.url(stored["url"].as_str().expect("url"));
    let got = app.http.get(&url).send().await.expect("request");
    assert_eq!(got.headers()["content-type"], "image/png");
    assert!(
        got.headers()["cache-control"]
            .to_str()
            .expect("ascii")
            .contains("max-age")
    );
    let etag = got.headers()["etag"].to_str().expect("ascii").to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "a strong ETag"
    );
    assert_eq!(got.bytes().await.expect("body").to_vec(), first);

    let again = app
        .http
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("request");
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"], etag.as_str());

    let profile: Value = app
        .http
        .get(app.url(&format!("/v1/users/{}", ada.id)))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(profile["picture_url"], stored["url"]);

    assert_eq!(stored_files(&app).len(), 1);
    let second = png(10, 10);
    assert_eq!(upload(&app, &ada, second.clone()).await.status(), 200);
    assert_eq!(
        app.http
            .get(&url)
            .send()
            .await
            .expect("request")
            .bytes()
            .await
            .expect("body")
            .to_vec(),
        second
    );
    assert_eq!(stored_files(&app).len(), 1, "the old object was removed");
    let stale = app
        .http
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("request");
    assert_eq!(stale.status(), 200);
}

async fn only_images_by_their_bytes_are_accepted(backend: Backend) {
    let app = spawn_app(backend).await;
    let ada = ada(&app).await;
    let svg = b"<svg xmlns='http://www.w3.org/2000/svg'/>".to_vec();
    assert_problem(upload(&app, &ada, svg).await, 415, "unsupported_media_type").await;
    // A PNG signature with a broken header is not an image either.
    assert_problem(
        upload(&app, &ada, b"\x89PNG\r\n\x1a\n".to_vec()).await,
        415,
        "unsupported_media_type",
    )
    .await;
    // Claiming to be an image in the headers changes nothing.
    let lying = app
        .http
        .put(app.url("/v1/me/picture"))
        .header("authorization", &ada.auth)
        .header("content-type", "image/png")
        .body("not a png")
        .send()
        .await
        .expect("request");
    assert_eq!(lying.status(), 415);
    assert!(stored_files(&app).is_empty());
    let none = app
        .http
        .get(app.url(&format!("/v1/users/{}/picture", ada.id)))
        .send()
        .await
        .expect("request");
    assert_problem(none, 404, "not_found").await;
}

async fn oversized_pictures_are_refused_by_bytes_and_by_pixels(backend: Backend) {
    let app = spawn_app_with(backend, |config| config.max_picture_bytes = 4096).await;
    let ada = ada(&app).await;

    // Noise does not compress: this PNG is well over 4 KiB.
    let mut big = png(64, 64);
    big.extend(std::iter::repeat_n(7u8, 8192));
    assert_problem(upload(&app, &ada, big).await, 413, "payload_too_large").await;

    // A tiny file whose header claims 5000 × 5000 pixels (a decompression bomb's shape).
    let mut bomb = png(1, 1);
    bomb[16..20].copy_from_slice(&5000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&5000u32.to_be_bytes());
    assert_problem(upload(&app, &ada, bomb).await, 422, "image_too_large").await;
    assert!(stored_files(&app).is_empty());
}

async fn a_picture_of_no_pixels_is_refused_as_no_image(backend: Backend) {
    let app = spawn_app(backend).await;
    let ada = ada(&app).await;
    for (width, height) in [(0, 0), (0, 10), (10, 0)] {
        let problem = assert_problem(
            upload(&app, &ada, png(width, height)).await,
            415,
            "unsupported_media_type",
        )
        .await;
        assert_eq!(
            problem["detail"], "The image has no pixels.",
            "{width} × {height}"
        );
    }
    assert!(stored_files(&app).is_empty());
}

async fn a_picture_is_served_so_that_no_browser_runs_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let ada = ada(&app).await;
    // A valid GIF header (1 × 1) followed by a page: accepted by its first bytes.
    let mut polyglot = b"GIF89a\x01\x00\x01\x00".to_vec();
    polyglot.extend_from_slice(b"<html><body><script>alert(document.domain)</script></html>");
    let stored = upload(&app, &ada, polyglot.clone()).await;
    assert_eq!(stored.status(), 200);

    let served = app
        .http
        .get(app.url(&format!("/v1/users/{}/picture", ada.id)))
        .send()
        .await
        .expect("request");
    let headers = served.headers();
    assert_eq!(headers["content-type"], "image/gif");
    // The declared type is final: no browser sniffs the HTML in it.
    assert_eq!(headers["x-content-type-options"], "nosniff");
    // Opened as a page anyway, it loads and runs nothing, in an origin of its own.
    let policy = headers["content-security-policy"].to_str().expect("ascii");
    let directives: Vec<&str> = policy.split(';').map(str::trim).collect();
    for expected in ["default-src 'none'", "sandbox", "frame-ancestors 'none'"] {
        assert!(directives.contains(&expected), "{policy}");
    }
    assert_eq!(served.bytes().await.expect("body").to_vec(), polyglot);
}

/// A server storing pictures in a fresh bucket of the test S3 server, through a relay.
async fn s3_app(presign: bool) -> (TestApp, Relay) {
    let endpoint = minitter_test_support::required_env("MINITTER_TEST_S3_ENDPOINT");
    let target = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let relay = Relay::to(target).await;
    let bucket = format!("minitter-{}", uuid::Uuid::now_v7());
    // Moto accepts any credentials; the bucket is made with a plain request.
    let created = reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .expect("create bucket");
    assert!(
        created.status().is_success(),
        "creating the bucket: {}",
        created.status()
    );

    let port = relay.port();
    let app = spawn_app_with(Backend::Sqlite, |config| {
        config.s3_bucket = Some(bucket);
        config.s3_endpoint = Some(format!("http://127.0.0.1:{port}"));
        config.s3_access_key_id = Some("test".into());
        config.s3_secret_access_key = Some("test".to_owned().into());
        config.s3_presign = presign;
    })
    .await;
    (app, relay)
}

async fn on_s3_a_picture_round_trips_and_an_outage_is_a_503_that_loses_nothing() {
    let (app, relay) = s3_app(false).await;
    let ada = ada(&app).await;
    let first = png(20, 20);
    assert_eq!(upload(&app, &ada, first.clone()).await.status(), 200);
    let url = app.url(&format!("/v1/users/{}/picture", ada.id));
    assert_eq!(
        app.http
            .get(&url)
            .send()
            .await
            .expect("request")
            .bytes()
            .await
            .expect("body")
            .to_vec(),
        first
    );

    relay.cut();
    let failed = upload(&app, &ada, png(30, 30)).await;
    assert!(failed.headers().contains_key("retry-after"));
    assert_problem(failed, 503, "unavailable").await;
    let down = app.http.get(&url).send().await.expect("request");
    assert_problem(down, 503, "unavailable").await;

    relay.restore();
    let back = app.http.get(&url).send().await.expect("request");
    assert_eq!(
        back.bytes().await.expect("body").to_vec(),
        first,
        "the earlier picture is intact"
    );
}

async fn on_s3_with_presigning_a_download_redirects_to_a_url_anyone_can_follow() {
    let (app, _relay) = s3_app(true).await;
    let ada = ada(&app).await;
    let picture = png(12, 8);
    assert_eq!(upload(&app, &ada, picture.clone()).await.status(), 200);
    let url = app.url(&format!("/v1/users/{}/picture", ada.id));
    let redirect = app.http.get(&url).send().await.expect("request");
    assert_eq!(redirect.status(), 307);
    let location = redirect.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(location.contains("X-Amz-Signature"), "{location}");
    // A plain client follows the redirect to the store (the key goes to the API only).
    let followed = reqwest::Client::new()
        .get(&url)
        .header("x-api-key", &app.api_key)
        .send()
        .await
        .expect("request");
    assert_eq!(followed.status(), 200);
    assert_eq!(followed.bytes().await.expect("body").to_vec(), picture);
}

async fn the_sweep_removes_old_objects_no_user_points_at(backend: Backend) {
    let app = spawn_app(backend).await;
    let state = app.state.clone().expect("an in-process server");
    let ada = ada(&app).await;
    assert_eq!(upload(&app, &ada, png(3, 3)).await.status(), 200);

    // An object left by a crash between writing it and pointing a user at it.
    let orphan = app.data_dir.join("blobs/pictures/someone/orphan.png");
    std::fs::create_dir_all(orphan.parent().expect("dir")).expect("mkdir");
    std::fs::write(&orphan, png(1, 1)).expect("write");
    let removed = minitter_server::handlers::sweep_orphans(&state, std::time::Duration::ZERO)
        .await
        .expect("sweep");
    assert_eq!(removed, 1);
    assert!(!orphan.exists());
    let still = app
        .http
        .get(app.url(&format!("/v1/users/{}/picture", ada.id)))
        .send()
        .await
        .expect("request");
    assert_eq!(still.status(), 200, "the picture in use stays");

    // A young orphan may be an upload in progress: it is left alone.
    std::fs::write(&orphan, png(1, 1)).expect("write");
    let removed =
        minitter_server::handlers::sweep_orphans(&state, std::time::Duration::from_secs(3600))
            .await
            .expect("sweep");
    assert_eq!(removed, 0);
}

on_every_backend!(
    a_picture_round_trips_and_replacing_it_removes_the_old_one,
    only_images_by_their_bytes_are_accepted,
    oversized_pictures_are_refused_by_bytes_and_by_pixels,
    the_sweep_removes_old_objects_no_user_points_at,
    a_picture_of_no_pixels_is_refused_as_no_image,
    a_picture_is_served_so_that_no_browser_runs_it,
);

needs_s3!(
    on_s3_a_picture_round_trips_and_an_outage_is_a_503_that_loses_nothing,
    on_s3_with_presigning_a_download_redirects_to_a_url_anyone_can_follow,
);
