//! The contract as published: `GET /openapi.yaml` serves the authored document byte for
//! byte, and `GET /docs/` serves Swagger UI for it. Swagger UI's files are compiled into
//! the binary (utoipa-swagger-ui, feature `vendored`), so nothing is fetched at build or
//! run time.

use std::sync::Arc;

use poem::http::StatusCode;
use poem::web::Redirect;
use poem::{Response, Route, get, handler};
use utoipa_swagger_ui::Config;

/// The OpenAPI document, exactly as written.
pub const OPENAPI_YAML: &str = include_str!("../../openapi.yaml");

/// Adds the routes for `/openapi.yaml` and `/docs` to `route`.
pub fn mount(route: Route) -> Route {
    let config = Arc::new(
        Config::new(["/openapi.yaml"])
            .try_it_out_enabled(true)
            .persist_authorization(true)
            .display_request_duration(true),
    );
    route
        .at("/openapi.yaml", get(openapi_yaml))
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
fn docs_root() -> Redirect {
    Redirect::see_other("/docs/")
}

fn swagger_file(path: &str, config: &Arc<Config<'static>>) -> poem::Result<Response> {
    let path = if path.is_empty() { "index.html" } else { path };
    match utoipa_swagger_ui::serve(path, Arc::clone(config)) {
        Ok(Some(file)) => Ok(Response::builder()
            .content_type(file.content_type)
            .body(file.bytes.into_owned())),
        Ok(None) => Err(poem::error::NotFoundError.into()),
        Err(error) => Err(poem::Error::from_string(
            error.to_string(),
            StatusCode::INTERNAL_SERVER_ERROR,
        )),
    }
}
