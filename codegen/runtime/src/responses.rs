//! Responses: how a generated response enum becomes a `poem::Response` (its status, its
//! body as JSON or as bytes, its declared headers).
//!
//! These are the only calls the generated `IntoResponse` impls make. A handler's mistake
//! here (a body that does not serialize, a header value that is not valid) is logged and
//! answered as well as possible rather than panicking.

use poem::http::StatusCode;

/// The buffer a JSON body is written into starts this large.
const BODY_CAPACITY: usize = 1024;

/// A response with a JSON body.
pub fn json_response<T: serde::Serialize>(
    status: u16,
    content_type: &str,
    body: &T,
) -> poem::Response {
    // Room for a typical body up front (a page of tweets is 3–5 KB): growing from empty
    // reallocated it up to nine times.
    let mut bytes = Vec::with_capacity(BODY_CAPACITY);
    match serde_json::to_writer(&mut bytes, body) {
        Ok(()) => poem::Response::builder()
            .status(status_code(status))
            .content_type(content_type)
            .body(bytes),
        Err(error) => {
            tracing::error!(%error, "a response body could not be serialized");
            poem::Response::builder()
                .status(StatusCode::INTERNAL_SERVER_ERROR)
                .finish()
        }
    }
}

/// A response with a non-JSON body.
pub fn body_response(status: u16, content_type: &str, body: poem::Body) -> poem::Response {
    poem::Response::builder()
        .status(status_code(status))
        .content_type(content_type)
        .body(body)
}

/// A response with no body.
pub fn empty_response(status: u16) -> poem::Response {
    poem::Response::builder()
        .status(status_code(status))
        .finish()
}

/// Sets a declared response header. A value that is not a valid header value is a bug in
/// the handler; it is logged and the header left out rather than the response lost.
pub fn set_header(
    response: &mut poem::Response,
    name: &'static str,
    value: &dyn std::fmt::Display,
) {
    match poem::http::HeaderValue::from_str(&value.to_string()) {
        Ok(value) => {
            response.headers_mut().insert(name, value);
        }
        Err(error) => tracing::error!(%error, header = name, "invalid response header value"),
    }
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}
