//! `x-minitter-version: <crate version>+<git revision>` on every response, Problems and
//! panics included: which build answered. A canary release is told from the stable one by
//! it (a load test counts the answers of each), and a bug report can name the build.
//!
//! The revision is captured when the crate is built (`server/build.rs`: the
//! `MINITTER_GIT_REVISION` build variable, else `git rev-parse --short HEAD`, else
//! `unknown`), and kept to characters valid in a header value there.

use poem::http::{HeaderName, HeaderValue};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response};

/// The header's name.
pub const HEADER: &str = "x-minitter-version";

/// The serving build: the crate's version, `+`, the git revision it was built from
/// (SemVer build metadata), such as `0.1.0+1a2b3c4`.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "+",
    env!("MINITTER_BUILD_REVISION")
);

/// Middleware: the header above, on every response. A `Middleware` rather than an
/// `around` function, for the reason [`crate::http::security_headers::Harden`] gives.
pub struct Stamp;

impl<E: Endpoint> Middleware<E> for Stamp {
    type Output = Stamped<E>;

    fn transform(&self, inner: E) -> Self::Output {
        Stamped {
            inner,
            name: HeaderName::from_static(HEADER),
            value: HeaderValue::from_static(VERSION),
        }
    }
}

/// The endpoint [`Stamp`] makes.
pub struct Stamped<E> {
    inner: E,
    name: HeaderName,
    value: HeaderValue,
}

impl<E: Endpoint> Endpoint for Stamped<E> {
    type Output = Response;

    async fn call(&self, request: Request) -> poem::Result<Response> {
        let mut response = match self.inner.call(request).await {
            Ok(response) => response.into_response(),
            Err(error) => error.into_response(),
        };
        response
            .headers_mut()
            .insert(self.name.clone(), self.value.clone());
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_the_crate_version_with_the_revision_as_build_metadata() {
        // Valid as a header value (`from_static` panics otherwise).
        let _ = HeaderValue::from_static(VERSION);
        let (crate_version, revision) = VERSION.split_once('+').expect("a `+`");
        assert_eq!(crate_version, env!("CARGO_PKG_VERSION"));
        assert!(!revision.is_empty());
        assert!(
            revision
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.')),
            "{revision}"
        );
    }
}
