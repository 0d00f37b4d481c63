//! Refusals: the RFC 9457 Problem document a generated server answers with, and the
//! errors that carry a refusal out of a route ([`RejectedRequest`], [`MethodNotAllowed`])
//! together with the [`Violation`]s they report.
//!
//! They live apart from extraction and validation because they are the part a server
//! consumes: its error middleware finds these types with `downcast_ref` and may render
//! them in its own format, so their shape is public API while the checks that build them
//! are not.

use poem::http::{StatusCode, header};
use serde_json::{Value, json};

/// An RFC 9457 `application/problem+json` response: what a generated server answers for
/// a request it refuses (a server with its own error format renders these errors itself,
/// finding them with `downcast_ref`). `errors` lists every violation with its pointer.
pub fn problem_response(
    status: StatusCode,
    code: &str,
    detail: &str,
    violations: &[Violation],
) -> poem::Response {
    let errors: Vec<Value> = violations
        .iter()
        .map(|v| json!({"in": v.location, "pointer": v.pointer, "detail": v.message}))
        .collect();
    let body = json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
        "code": code,
        "errors": errors,
    });
    poem::Response::builder()
        .status(status)
        .content_type("application/problem+json")
        .body(body.to_string())
}

/// The part of a request a [`Violation`] is found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Location {
    Body,
    Path,
    Query,
    Header,
}

/// One way in which a request breaks the document.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    /// The part of the request `pointer` points into.
    pub location: Location,
    /// An RFC 6901 JSON pointer into the body, or into the object of parameters.
    pub pointer: String,
    /// What is wrong, without the offending value.
    pub message: String,
}

/// The most violations a rejection lists (the Problem schema's `errors` has `maxItems:
/// 100`): an array of a thousand wrong items is one mistake made a thousand times, and the
/// answer must stay small. The detail still counts every invalid field.
pub const MAX_LISTED_VIOLATIONS: usize = 100;

/// A request that the document does not allow: 400 (violations), 413 or 415.
///
/// Routes return it as a `poem::Error`; the server's error middleware finds it with
/// `downcast_ref` and renders it in the server's own error format.
#[derive(Debug)]
pub struct RejectedRequest {
    pub status: StatusCode,
    pub detail: String,
    pub violations: Vec<Violation>,
}

impl std::fmt::Display for RejectedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for RejectedRequest {}

impl poem::error::ResponseError for RejectedRequest {
    fn status(&self) -> StatusCode {
        self.status
    }

    fn as_response(&self) -> poem::Response {
        let code = match self.status {
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            _ => "invalid_request",
        };
        problem_response(self.status, code, &self.detail, &self.violations)
    }
}

impl RejectedRequest {
    pub(crate) fn invalid(mut violations: Vec<Violation>) -> Self {
        // Validators report in no fixed order; clients and tests deserve a stable one.
        violations
            .sort_by(|a, b| (a.location as u8, &a.pointer).cmp(&(b.location as u8, &b.pointer)));
        let mut fields: Vec<(Location, &str)> = violations
            .iter()
            .map(|v| (v.location, v.pointer.as_str()))
            .collect();
        fields.sort_by_key(|(location, pointer)| (*location as u8, *pointer));
        fields.dedup();
        let detail = match fields.len() {
            1 => "The request has 1 invalid field.".to_owned(),
            n => format!("The request has {n} invalid fields."),
        };
        violations.truncate(MAX_LISTED_VIOLATIONS);
        Self {
            status: StatusCode::BAD_REQUEST,
            detail,
            violations,
        }
    }

    pub(crate) fn with_status(status: StatusCode, detail: String) -> Self {
        Self {
            status,
            detail,
            violations: Vec::new(),
        }
    }
}

/// A method the path does not declare: 405 with the `Allow` header.
#[derive(Debug)]
pub struct MethodNotAllowed {
    pub allow: &'static [&'static str],
}

impl std::fmt::Display for MethodNotAllowed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "This path allows only {}.", self.allow.join(", "))
    }
}

impl std::error::Error for MethodNotAllowed {}

impl poem::error::ResponseError for MethodNotAllowed {
    fn status(&self) -> StatusCode {
        StatusCode::METHOD_NOT_ALLOWED
    }

    fn as_response(&self) -> poem::Response {
        let mut response =
            problem_response(self.status(), "method_not_allowed", &self.to_string(), &[]);
        if let Ok(allow) = header::HeaderValue::from_str(&self.allow.join(", ")) {
            response.headers_mut().insert(header::ALLOW, allow);
        }
        response
    }
}

/// The error for a method the path does not declare.
pub fn method_not_allowed(allow: &'static [&'static str]) -> poem::Error {
    MethodNotAllowed { allow }.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rejection_lists_at_most_a_hundred_violations_and_counts_every_field() {
        let violations = (0..150)
            .map(|n| Violation {
                location: Location::Body,
                pointer: format!("/items/{n:03}"),
                message: "must be of type string".to_owned(),
            })
            .collect();

        let rejected = RejectedRequest::invalid(violations);

        assert_eq!(rejected.violations.len(), MAX_LISTED_VIOLATIONS);
        assert_eq!(rejected.violations[0].pointer, "/items/000");
        assert_eq!(rejected.detail, "The request has 150 invalid fields.");
    }
}
