//! Headers that keep a browser from treating an answer as something else: the outermost
//! middleware puts them on every response, Problems and panics included.
//!
//! - `X-Content-Type-Options: nosniff` on every response, not only pictures: a browser
//!   must take each body as the type we declare. Pictures need it most (their bytes are
//!   an uploader's: a GIF header followed by HTML is a valid upload), but a JSON body
//!   echoes user text too, and with `nosniff` browsers also refuse to run any of our
//!   answers as a script or style sheet from another site. It costs one static header.
//! - `Content-Security-Policy: default-src 'none'; frame-ancestors 'none'; sandbox` on
//!   every response that does not set its own. The API's answers are data, never pages:
//!   if one is opened as a document anyway (a picture opened in a tab, a Problem), it may
//!   load nothing, run nothing, and not be framed, and it is sandboxed into an origin of
//!   its own. GitHub's API and raw file hosts answer the same way. The pages we serve set
//!   their own policy ([`crate::http::docs`] for Swagger UI), which this leaves in place.

use poem::http::HeaderValue;
use poem::http::header::{CONTENT_SECURITY_POLICY, X_CONTENT_TYPE_OPTIONS};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response};

/// The policy of every answer that is not a page of ours.
pub const DATA_POLICY: &str = "default-src 'none'; frame-ancestors 'none'; sandbox";

/// Middleware: the headers above, on every response. A `Middleware` rather than an
/// `around` function: each `around` nests the type of the whole app twice over, and the
/// app's type is already as deep as the compiler takes.
pub struct Harden;

impl<E: Endpoint> Middleware<E> for Harden {
    type Output = Hardened<E>;

    fn transform(&self, inner: E) -> Self::Output {
        Hardened(inner)
    }
}

/// The endpoint [`Harden`] makes.
pub struct Hardened<E>(E);

impl<E: Endpoint> Endpoint for Hardened<E> {
    type Output = Response;

    async fn call(&self, request: Request) -> poem::Result<Response> {
        let mut response = match self.0.call(request).await {
            Ok(response) => response.into_response(),
            Err(error) => error.into_response(),
        };
        let headers = response.headers_mut();
        headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        headers
            .entry(CONTENT_SECURITY_POLICY)
            .or_insert(HeaderValue::from_static(DATA_POLICY));
        Ok(response)
    }
}
