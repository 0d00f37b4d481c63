//! The documented limits on a request's target and header section, refused with a
//! Problem document: 414 for a long target, 431 for too many or too large header fields.
//!
//! HTTP servers must bound a request's head before they read it all; hyper does, and
//! answers what is over its bounds itself with an empty body. So the connection loop
//! ([`crate::http::serve`]) gives hyper bounds far above these, and this middleware, just inside
//! the one that renders Problems (so that the answer carries the request id and an access
//! line), refuses what is over the documented ones before any cache, credential or route
//! looks at the request.
//!
//! The values are what common servers and proxies accept, so that no real client meets
//! them: a request target of 8 KiB (nginx's default line buffer; RFC 9110 §4.1 asks for at
//! least 8000 octets), 100 header fields (hyper's and Apache's default), and 16 KiB of
//! header names and values together (Node's default, and what poem allowed HTTP/2 clients
//! before). They are the same for HTTP/1 and HTTP/2.

use poem::http::{StatusCode, Uri};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response};

use codegen_runtime::{Location, RejectedRequest, Violation};

/// The longest request target (path and query; with scheme and authority in the absolute
/// form) served, in bytes.
pub const MAX_TARGET_BYTES: usize = 8 * 1024;
/// The most header fields a request may carry (a repeated name counts each time).
pub const MAX_HEADER_FIELDS: usize = 100;
/// The most bytes of header names and values a request may carry, all fields together.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Middleware: refuses a request over the limits with 414 or 431. A `Middleware` rather
/// than an `around` function: each `around` nests the type of the whole app twice over,
/// and the app's type is already as deep as the compiler takes.
pub struct Enforce;

impl<E: Endpoint> Middleware<E> for Enforce {
    type Output = Enforced<E>;

    fn transform(&self, inner: E) -> Self::Output {
        Enforced(inner)
    }
}

/// The endpoint [`Enforce`] makes.
pub struct Enforced<E>(E);

impl<E: Endpoint> Endpoint for Enforced<E> {
    type Output = Response;

    async fn call(&self, request: Request) -> poem::Result<Response> {
        match over_limits(&request) {
            Some(rejected) => Err(rejected.into()),
            None => Ok(self.0.call(request).await?.into_response()),
        }
    }
}

/// Why `request` is over the limits, if it is.
fn over_limits(request: &Request) -> Option<RejectedRequest> {
    if target_len(request.uri()) > MAX_TARGET_BYTES {
        return Some(rejected(
            StatusCode::URI_TOO_LONG,
            format!("The request target (path and query) is longer than {MAX_TARGET_BYTES} bytes."),
            Vec::new(),
        ));
    }
    let headers = request.headers();
    if headers.len() > MAX_HEADER_FIELDS {
        return Some(rejected(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("The request has more than {MAX_HEADER_FIELDS} header fields."),
            Vec::new(),
        ));
    }
    let mut total = 0usize;
    let mut largest: Option<(&str, usize)> = None;
    for (name, value) in headers {
        let size = name.as_str().len() + value.len();
        total += size;
        if largest.is_none_or(|(_, most)| size > most) {
            largest = Some((name.as_str(), size));
        }
    }
    if total > MAX_HEADER_BYTES {
        // RFC 6585 §5: the answer should say which field is too large. The name only:
        // a value is never echoed.
        let violations = largest
            .map(|(name, _)| Violation {
                location: Location::Header,
                pointer: format!("/{name}"),
                message: "is the largest header field".to_owned(),
            })
            .into_iter()
            .collect();
        return Some(rejected(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "The request's header fields are larger than {MAX_HEADER_BYTES} bytes together."
            ),
            violations,
        ));
    }
    None
}

/// The length of the request target as the client sent it.
fn target_len(uri: &Uri) -> usize {
    let path_and_query = uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => {
            scheme.len() + "://".len() + authority.as_str().len() + path_and_query
        }
        _ => path_and_query,
    }
}

fn rejected(status: StatusCode, detail: String, violations: Vec<Violation>) -> RejectedRequest {
    RejectedRequest {
        status,
        detail,
        violations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str, headers: &[(&str, String)]) -> Request {
        let mut builder = Request::builder().uri(uri.parse::<Uri>().expect("a uri"));
        for (name, value) in headers {
            builder = builder.header(*name, value.as_str());
        }
        builder.finish()
    }

    #[test]
    fn a_request_at_every_limit_passes() {
        let path = format!("/{}", "a".repeat(MAX_TARGET_BYTES - 1));
        assert!(over_limits(&request(&path, &[])).is_none());
        let fields: Vec<(&str, String)> = (0..MAX_HEADER_FIELDS)
            .map(|_| ("x-a", "b".into()))
            .collect();
        assert!(over_limits(&request("/", &fields)).is_none());
        let big = "v".repeat(MAX_HEADER_BYTES - "x-big".len());
        assert!(over_limits(&request("/", &[("x-big", big)])).is_none());
    }

    #[test]
    fn one_byte_or_field_more_is_refused_with_its_status() {
        let path = format!("/{}", "a".repeat(MAX_TARGET_BYTES));
        let refused = over_limits(&request(&path, &[])).expect("refused");
        assert_eq!(refused.status, StatusCode::URI_TOO_LONG);

        let query = format!("/?q={}", "a".repeat(MAX_TARGET_BYTES));
        let refused = over_limits(&request(&query, &[])).expect("refused");
        assert_eq!(refused.status, StatusCode::URI_TOO_LONG);

        let fields: Vec<(&str, String)> = (0..=MAX_HEADER_FIELDS)
            .map(|_| ("x-a", "b".into()))
            .collect();
        let refused = over_limits(&request("/", &fields)).expect("refused");
        assert_eq!(refused.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);

        let big = "v".repeat(MAX_HEADER_BYTES - "x-big".len() - "x-a".len());
        let refused =
            over_limits(&request("/", &[("x-a", "bc".into()), ("x-big", big)])).expect("refused");
        assert_eq!(refused.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert_eq!(refused.violations.len(), 1);
        assert_eq!(refused.violations[0].pointer, "/x-big");
    }

    #[test]
    fn the_absolute_form_counts_scheme_and_authority() {
        let uri: Uri = "http://example.com/abc?d".parse().expect("a uri");
        assert_eq!(target_len(&uri), "http://example.com/abc?d".len());
        let uri: Uri = "/abc?d".parse().expect("a uri");
        assert_eq!(target_len(&uri), "/abc?d".len());
    }
}
