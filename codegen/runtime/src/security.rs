//! Finding an operation's credentials in a request, and refusing one that presents none
//! of the sets its document requires. Verifying them is the server's business (the
//! generated `Server` trait); this is only where they are.

use poem::http::StatusCode;

/// Where an `apiKey` scheme's credential is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialIn {
    Header,
    Query,
    Cookie,
}

/// How a security scheme presents its credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// `type: apiKey`: a named header, query parameter or cookie.
    ApiKey {
        location: CredentialIn,
        name: &'static str,
    },
    /// `type: http, scheme: bearer`: `Authorization: Bearer <token>`.
    Bearer,
    /// `type: http, scheme: basic`: `Authorization: Basic <base64>`.
    Basic,
}

/// The credential `scheme` finds in `request` (the key, or the token after the
/// authorization scheme's name), if the request presents a non-empty one.
pub fn credential<'r>(request: &'r poem::Request, scheme: &Credential) -> Option<&'r str> {
    let found = match *scheme {
        Credential::ApiKey {
            location: CredentialIn::Header,
            name,
        } => request.header(name),
        Credential::ApiKey {
            location: CredentialIn::Query,
            name,
        } => request
            .uri()
            .query()
            .and_then(|query| query_value(query, name)),
        Credential::ApiKey {
            location: CredentialIn::Cookie,
            name,
        } => request
            .header("cookie")
            .and_then(|cookies| cookie_value(cookies, name)),
        Credential::Bearer => authorization(request, "bearer"),
        Credential::Basic => authorization(request, "basic"),
    };
    found.filter(|value| !value.is_empty())
}

/// The parameters of `Authorization: <scheme> <parameters>` (the scheme compared
/// case-insensitively, as RFC 9110 says).
fn authorization<'r>(request: &'r poem::Request, scheme: &str) -> Option<&'r str> {
    let value = request.header("authorization")?;
    let (name, rest) = value.split_once(' ')?;
    name.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

fn query_value<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    // Keys are compared raw: a credential's name is a plain token.
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then_some(value)
    })
}

fn cookie_value<'c>(cookies: &'c str, name: &str) -> Option<&'c str> {
    cookies.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name).then_some(value)
    })
}

/// A request that presents none of the credential sets its operation requires: 401.
///
/// It names the schemes (never a credential). A server with its own error format finds it
/// with `downcast_ref` (and may answer per missing scheme); otherwise it renders as an
/// `application/problem+json` document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unauthenticated {
    /// The schemes of the operation's required sets, in the document's order.
    pub schemes: Vec<&'static str>,
    /// Those of them the request presents no credential for.
    pub missing: Vec<&'static str>,
}

impl Unauthenticated {
    /// The refusal of `request`, whose operation requires these `(name, scheme)`s.
    pub fn new(request: &poem::Request, schemes: &[(&'static str, &Credential)]) -> Self {
        Self {
            schemes: schemes.iter().map(|(name, _)| *name).collect(),
            missing: schemes
                .iter()
                .filter(|(_, scheme)| credential(request, scheme).is_none())
                .map(|(name, _)| *name)
                .collect(),
        }
    }
}

impl std::fmt::Display for Unauthenticated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "This operation needs credentials: {} (missing: {}).",
            self.schemes.join(", "),
            self.missing.join(", ")
        )
    }
}

impl std::error::Error for Unauthenticated {}

impl poem::error::ResponseError for Unauthenticated {
    fn status(&self) -> StatusCode {
        StatusCode::UNAUTHORIZED
    }

    fn as_response(&self) -> poem::Response {
        crate::problem_response(self.status(), "unauthenticated", &self.to_string(), &[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)], uri: &str) -> poem::Request {
        let mut builder = poem::Request::builder().uri(uri.parse().expect("a URI"));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.finish()
    }

    #[test]
    fn each_scheme_finds_its_credential_and_nothing_else() {
        let key = Credential::ApiKey {
            location: CredentialIn::Header,
            name: "x-api-key",
        };
        let query = Credential::ApiKey {
            location: CredentialIn::Query,
            name: "key",
        };
        let cookie = Credential::ApiKey {
            location: CredentialIn::Cookie,
            name: "session",
        };
        let r = request(
            &[
                ("x-api-key", "k1"),
                ("authorization", "bEaReR t0ken "),
                ("cookie", "a=1; session=s3"),
            ],
            "/x?other=1&key=q2",
        );
        assert_eq!(credential(&r, &key), Some("k1"));
        assert_eq!(credential(&r, &query), Some("q2"));
        assert_eq!(credential(&r, &cookie), Some("s3"));
        assert_eq!(credential(&r, &Credential::Bearer), Some("t0ken"));
        assert_eq!(credential(&r, &Credential::Basic), None);
    }

    #[test]
    fn an_empty_or_absent_credential_is_none() {
        let r = request(&[("x-api-key", ""), ("authorization", "Bearer")], "/x");
        let key = Credential::ApiKey {
            location: CredentialIn::Header,
            name: "x-api-key",
        };
        assert_eq!(credential(&r, &key), None);
        assert_eq!(credential(&r, &Credential::Bearer), None);
        assert_eq!(credential(&request(&[], "/x"), &Credential::Bearer), None);
    }

    #[test]
    fn unauthenticated_is_a_401_problem_naming_the_missing_schemes() {
        let key = Credential::ApiKey {
            location: CredentialIn::Header,
            name: "x-api-key",
        };
        let r = request(&[("x-api-key", "k")], "/x");
        let error =
            Unauthenticated::new(&r, &[("apiKey", &key), ("bearerAuth", &Credential::Bearer)]);
        assert_eq!(error.missing, ["bearerAuth"]);
        let response = poem::error::ResponseError::as_response(&error);
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.content_type(), Some("application/problem+json"));
        assert!(
            error
                .to_string()
                .contains("apiKey, bearerAuth (missing: bearerAuth)")
        );
    }
}
