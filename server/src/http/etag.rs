//! `ETag` and `If-None-Match` on the resource GETs whose responses declare an `ETag` set by
//! middleware (`x-set-by` in `openapi.yaml`, listed by the generated
//! `MIDDLEWARE_HEADERS`), so that which operations are conditional is the document's call.
//!
//! The validator is a hash of the JSON body the handler produced, computed here rather
//! than by each handler, so every such GET gets the same, correct behaviour: a matching
//! `If-None-Match` (weak comparison, `*` included, RFC 9110 §13.1.2) turns the 200 into a
//! 304 with no body and the same headers. The tag is weak (`W/"…"`) because compression,
//! outside this middleware, changes the bytes but not the representation's meaning. A 304
//! still costs the handler's work; what it saves is the transfer.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use poem::http::{HeaderValue, Method, StatusCode, header};
use poem::{Endpoint, IntoResponse, Request, Response};
use sha2::{Digest, Sha256};

use crate::generated::MIDDLEWARE_HEADERS;

/// Middleware: validators and conditional GETs.
pub async fn conditional_get<E: Endpoint>(next: E, request: Request) -> poem::Result<Response> {
    let is_get = request.method() == Method::GET;
    let if_none_match = request.header(header::IF_NONE_MATCH).map(str::to_owned);
    let operation = request
        .extensions()
        .get::<codegen_runtime::OperationSlot>()
        .cloned();
    let response = next.call(request).await?.into_response();
    let declared = operation
        .and_then(|slot| slot.get())
        .is_some_and(declares_etag);
    if !is_get || !declared || response.status() != StatusCode::OK {
        return Ok(response);
    }
    let (mut parts, body) = response.into_parts();
    // An answer from the response cache carries the tag it was given when it was kept
    // (its body may be compressed already, so it is not hashed again).
    let kept_tag = parts
        .headers
        .get(header::ETAG)
        .and_then(|tag| tag.to_str().ok())
        .map(str::to_owned);
    let (tag, body) = match kept_tag {
        Some(tag) => (tag, body),
        None => {
            let bytes = body.into_bytes().await?;
            let tag = weak_tag(&bytes);
            if let Ok(value) = HeaderValue::from_str(&tag) {
                parts.headers.insert(header::ETAG, value);
            }
            (tag, poem::Body::from(bytes))
        }
    };
    if if_none_match.is_some_and(|tags| matches(&tags, &tag)) {
        parts.status = StatusCode::NOT_MODIFIED;
        for representation in [
            header::CONTENT_TYPE,
            header::CONTENT_LENGTH,
            header::CONTENT_ENCODING,
        ] {
            parts.headers.remove(representation);
        }
        return Ok(Response::from_parts(parts, poem::Body::empty()));
    }
    Ok(Response::from_parts(parts, body))
}

fn declares_etag(operation: &str) -> bool {
    MIDDLEWARE_HEADERS
        .iter()
        .any(|(id, headers)| *id == operation && headers.contains(&"etag"))
}

/// `W/"<128 bits of SHA-256 of the body, base64url>"`.
fn weak_tag(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    format!("W/\"{}\"", URL_SAFE_NO_PAD.encode(&digest[..16]))
}

/// Whether an `If-None-Match` list names `tag`, comparing weakly (`W/` ignored).
fn matches(list: &str, tag: &str) -> bool {
    let opaque = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    list.split(',')
        .any(|candidate| candidate.trim() == "*" || opaque(candidate) == opaque(tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_weak_stable_and_compared_weakly() {
        let tag = weak_tag(b"{\"id\":1}");
        assert!(tag.starts_with("W/\"") && tag.ends_with('"'));
        assert_eq!(tag, weak_tag(b"{\"id\":1}"));
        assert_ne!(tag, weak_tag(b"{\"id\":2}"));
        let strong = tag.trim_start_matches("W/");
        assert!(matches(strong, &tag));
        assert!(matches(&format!("\"x\", {tag}"), &tag));
        assert!(matches("*", &tag));
        assert!(!matches("\"other\"", &tag));
    }

    #[test]
    fn only_operations_that_declare_an_etag_get_one() {
        assert!(declares_etag("get_user"));
        assert!(!declares_etag("get_timeline"));
    }
}
