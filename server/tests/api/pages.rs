//! The portal and the console: `web/dist/` served as built, under the pages' policy.
//! (What the pages do is tested in a browser by `web/test/`.)

use minitter_test_support::Backend;

use crate::helpers::spawn_app;

const DIST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../web/dist");

#[tokio::test]
async fn the_pages_are_the_built_files_under_a_strict_policy() {
    let app = spawn_app(Backend::Sqlite).await;
    for page in ["portal", "console"] {
        let redirect = app
            .http
            .get(app.url(&format!("/{page}")))
            .send()
            .await
            .expect("request");
        assert_eq!(redirect.status(), 303);
        assert_eq!(redirect.headers()["location"], format!("/{page}/"));

        for (path, file, content_type) in [
            ("", "index.html", "text/html; charset=utf-8"),
            ("main.js", "main.js", "text/javascript; charset=utf-8"),
            ("style.css", "style.css", "text/css; charset=utf-8"),
        ] {
            let url = format!("/{page}/{path}");
            // No API key: the pages are public; what they show needs the partner's key.
            let response = app.http.get(app.url(&url)).send().await.expect("request");
            assert_eq!(response.status(), 200, "{url}");
            let headers = response.headers().clone();
            assert_eq!(headers["content-type"], content_type, "{url}");
            assert_eq!(headers["x-frame-options"], "DENY", "{url}");
            assert_eq!(headers["referrer-policy"], "no-referrer", "{url}");
            let policy = headers["content-security-policy"].to_str().expect("ascii");
            let directives: Vec<&str> = policy.split(';').map(str::trim).collect();
            for expected in [
                "default-src 'none'",
                "script-src 'self'",
                "style-src 'self'",
                "connect-src 'self'",
                "frame-ancestors 'none'",
            ] {
                assert!(directives.contains(&expected), "{url}: {policy}");
            }
            assert!(!policy.contains("unsafe"), "{url}: {policy}");
            let on_disk = std::fs::read(format!("{DIST}/{page}/{file}")).expect("built file");
            assert_eq!(response.bytes().await.expect("body"), on_disk, "{url}");
        }

        let missing = app
            .http
            .get(app.url(&format!("/{page}/nothing.js")))
            .send()
            .await
            .expect("request");
        assert_eq!(missing.status(), 404);
        assert_eq!(
            missing.headers()["content-type"],
            "application/problem+json"
        );
    }
}
