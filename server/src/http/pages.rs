//! The partner portal (`/portal/`) and the operator console (`/console/`): static pages
//! built from `web/` (Preact on the TypeScript SDK) into `web/dist/`, which is committed
//! and compiled into the binary here, so `cargo run` serves them without Node. (In a
//! debug build rust-embed reads `web/dist/` from disk instead, so a rebuilt page shows on
//! reload; a release build carries the files.)
//!
//! The pages hold secrets (a partner's API key, the admin token) and show strings that
//! partners and users wrote, so they are served under the strictest policy they work
//! under ([`PAGES_POLICY`]): their own script and style sheet only, no inline script or
//! style, fetches and the WebSocket to this origin only, no plugins, no framing
//! (`frame-ancestors 'none'`, and `X-Frame-Options: DENY` for older browsers), no
//! `<base>`, and forms that post nowhere. `Referrer-Policy: no-referrer` keeps the page's
//! address out of other sites' logs. The browser tests (`web/test/`) fail on any console
//! error, which is how a refusal by the policy shows.

use poem::http::HeaderValue;
use poem::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_FRAME_OPTIONS,
};
use poem::web::Redirect;
use poem::{Response, Route, get};
use rust_embed::Embed;

/// The content security policy of the pages' files.
pub const PAGES_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'none'; base-uri 'none'; \
     frame-ancestors 'none'";

/// `web/dist/`: `portal/` and `console/`, each an `index.html`, a `main.js` and a
/// `style.css`.
#[derive(Embed)]
#[folder = "../web/dist/"]
struct Pages;

/// The pages, by the path they are served at.
const PAGES: [&str; 2] = ["portal", "console"];

/// Adds `/portal/` and `/console/` (and their files) to `route`.
pub fn mount(route: Route) -> Route {
    PAGES.iter().fold(route, |route, page| {
        route.at(format!("/{page}"), get(PageRoot(page))).at(
            format!("/{page}/*path"),
            get(poem::endpoint::make_sync(move |request| {
                let path = request.raw_path_param("path").unwrap_or_default();
                page_file(page, path)
            })),
        )
    })
}

/// `/portal` redirects to `/portal/`, so that the page's relative links resolve.
struct PageRoot(&'static str);

impl poem::Endpoint for PageRoot {
    type Output = Redirect;

    async fn call(&self, _request: poem::Request) -> poem::Result<Redirect> {
        Ok(Redirect::see_other(format!("/{}/", self.0)))
    }
}

fn page_file(page: &str, path: &str) -> poem::Result<Response> {
    let path = if path.is_empty() { "index.html" } else { path };
    let file = Pages::get(&format!("{page}/{path}")).ok_or(poem::error::NotFoundError)?;
    Ok(Response::builder()
        .content_type(content_type(path))
        .header(
            CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(PAGES_POLICY),
        )
        .header(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"))
        .header(REFERRER_POLICY, HeaderValue::from_static("no-referrer"))
        // The files' names do not change with their contents: a browser asks again
        // (cheaply, by ETag) rather than run a page older than the server it talks to.
        .header(CACHE_CONTROL, HeaderValue::from_static("no-cache"))
        .body(file.data.into_owned()))
}

/// The type of one of the pages' files, by its extension (the build writes only these).
fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, extension)| extension) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}
