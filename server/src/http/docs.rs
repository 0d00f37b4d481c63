//! The contract as published: `GET /openapi.yaml` serves the authored document byte for
//! byte (and `GET /asyncapi.yaml` the realtime stream's), and `GET /docs/` serves Swagger
//! UI for it. Swagger UI's files are compiled into
//! the binary (utoipa-swagger-ui, feature `vendored`), so nothing is fetched at build or
//! run time.
//!
//! Swagger UI is the one page of the API's origin that runs script, and it holds what a
//! partner pastes into "Authorize" (an API key, a bearer token, kept in local storage with
//! `persist_authorization`). So its files carry a policy that allows only what the page
//! is seen to need ([`DOCS_POLICY`]): its own scripts and style sheets (the vendored
//! `index.html` has no inline script or style, React sets styles through the DOM, which
//! a policy does not govern, and the one `<style>` element, in the logo, is allowed by
//! its hash), the `data:` SVG icons of its style sheet, `blob:` images for "Try it out"
//! on a picture, and fetches to this origin only. It may not be framed
//! (`frame-ancestors 'none'`, and `X-Frame-Options: DENY` for browsers that predate it),
//! so no other site can dress it up and click for the partner. The online validator
//! badge is off: it would send the document's URL to swagger.io, and the policy would
//! refuse its image anyway. The browser test of Swagger UI
//! (`client-sdk/typescript/test/swagger.test.ts`) fails on any console error, which is
//! how a policy refusal shows, so a policy that refused something the page needs fails it.

use std::sync::Arc;

use poem::http::header::{CONTENT_SECURITY_POLICY, X_FRAME_OPTIONS};
use poem::http::{HeaderValue, StatusCode};
use poem::web::Redirect;
use poem::{Response, Route, get, handler};
use utoipa_swagger_ui::Config;

/// The OpenAPI document, exactly as written.
pub const OPENAPI_YAML: &str = include_str!("../../../openapi.yaml");

/// The AsyncAPI document of the realtime stream, exactly as written.
pub const ASYNCAPI_YAML: &str = include_str!("../../../asyncapi.yaml");

/// The content security policy of Swagger UI's files. The one inline style is the
/// `<style>` element inside Swagger UI's SVG logo, allowed by its hash and nothing else
/// (a new Swagger UI with another logo fails the browser test until the hash is updated:
/// the browser's console error names the new hash).
pub const DOCS_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self' 'sha256-RL3ie0nH+Lzz2YNqQN83mnU0J1ot4QL7b99vMdIX99w='; \
     img-src 'self' data: blob:; connect-src 'self'; form-action 'self'; base-uri 'none'; \
     frame-ancestors 'none'";

/// Adds the routes for `/openapi.yaml` and `/docs` to `route`.
pub fn mount(route: Route) -> Route {
    let config = Arc::new(
        Config::new(["/openapi.yaml"])
            .try_it_out_enabled(true)
            .persist_authorization(true)
            .display_request_duration(true)
            .validator_url("none"),
    );
    route
        .at("/openapi.yaml", get(openapi_yaml))
        .at("/asyncapi.yaml", get(asyncapi_yaml))
        .at("/docs", get(docs_root))
        .at(
            "/docs/*path",
            get(poem::endpoint::make_sync(move |request| {
                let path = request
                    .raw_path_param("path")
                    .unwrap_or_default()
                    .to_owned();
                swagger_file(&path, &config)
            })),
        )
}

#[handler]
fn openapi_yaml() -> Response {
    Response::builder()
        .content_type("application/yaml")
        .body(OPENAPI_YAML)
}

#[handler]
fn asyncapi_yaml() -> Response {
    Response::builder()
        .content_type("application/yaml")
        .body(ASYNCAPI_YAML)
}

#[handler]
fn docs_root() -> Redirect {
    Redirect::see_other("/docs/")
}

fn swagger_file(path: &str, config: &Arc<Config<'static>>) -> poem::Result<Response> {
    let path = if path.is_empty() { "index.html" } else { path };
    match utoipa_swagger_ui::serve(path, Arc::clone(config)) {
        Ok(Some(file)) => Ok(Response::builder()
            .content_type(file.content_type)
            .header(
                CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(DOCS_POLICY),
            )
            .header(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"))
            .body(file.bytes.into_owned())),
        Ok(None) => Err(poem::error::NotFoundError.into()),
        Err(error) => Err(poem::Error::from_string(
            error.to_string(),
            StatusCode::INTERNAL_SERVER_ERROR,
        )),
    }
}
