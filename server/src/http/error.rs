//! Errors, and how every one of them becomes an RFC 9457 Problem document.
//!
//! Handlers return [`ApiError`] for every failure; store and auth errors convert into it
//! at the handler boundary. [`render_problems`] is the one place that turns any error —
//! ours, the generated validator's (400, 413, 415), the request limits' (414, 431), or
//! poem's own 404/405 — into an
//! `application/problem+json` response carrying the request id, so that a client sees
//! the same shape whatever went wrong. Internal causes are logged once, here, and never
//! shown to the client.

use poem::http::{HeaderValue, StatusCode, header};
use poem::{Endpoint, IntoResponse, Request, Response};

use crate::generated::types::{Problem, ProblemCode, Violation as ProblemViolation, ViolationIn};
use crate::http::request_id::RequestId;
use codegen_runtime::{Location, MethodNotAllowed, RejectedRequest, Unauthenticated, Violation};

/// Seconds a client is told to wait when a dependency is unavailable.
pub const RETRY_AFTER_SECONDS: u64 = 1;

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// Every failure a handler can report.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: a `page_token` that this server did not issue for this list.
    #[error("The page token is not one this list issued.")]
    InvalidPageToken,
    /// 401: the bearer token or the credentials are missing or wrong.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 403: the caller may not do this.
    #[error("{0}")]
    Forbidden(&'static str),
    /// 403: the key's or its plan's IP policy refuses the request's address.
    #[error("This API key may not be used from this address.")]
    IpNotAllowed,
    /// 404: the resource does not exist.
    #[error("{0}")]
    NotFound(&'static str),
    /// 409: a unique value is taken; names the field.
    #[error("This {field} is already taken.")]
    Conflict { field: &'static str },
    /// 409: the resource is in use and cannot be deleted.
    #[error("{0}")]
    InUse(&'static str),
    /// 409: the first request with this Idempotency-Key is still being processed.
    #[error("A request with this Idempotency-Key is still being processed; retry later.")]
    RequestInFlight,
    /// 429: the key's plan throttles it; retry after `retry_after` seconds.
    #[error("This API key is over its plan's rate; retry after {retry_after} s.")]
    Throttled { retry_after: u64 },
    /// 429: the key's plan quota is spent until the period ends.
    #[error("This API key's quota is spent; it resets in {retry_after} s.")]
    QuotaExceeded { retry_after: u64 },
    /// 429: too many failed logins for this account or through this key.
    #[error("Too many failed logins for this account; retry after {retry_after} s.")]
    LoginThrottled { retry_after: u64 },
    /// 429: the key holds as many stream sockets open as its plan allows.
    #[error("This API key holds {limit} stream sockets open, as many as its plan allows.")]
    TooManyConnections { limit: u32, retry_after: u64 },
    /// 409: the key holds as many webhook subscriptions as its plan allows.
    #[error("This API key holds {limit} webhook subscriptions, as many as its plan allows.")]
    TooManyWebhooks { limit: u32 },
    /// 422: a webhook URL the SSRF guard refuses; the reason names the rule, not a secret.
    #[error("This webhook URL is refused: {0}.")]
    WebhookUrlRefused(String),
    /// 415: the body is not of a kind the operation takes.
    #[error("{0}")]
    UnsupportedMedia(&'static str),
    /// 422: well-formed, but it cannot be done.
    #[error("{detail}")]
    Unprocessable {
        code: ProblemCode,
        detail: &'static str,
    },
    /// 503: a dependency is down; the client should retry after `Retry-After`.
    #[error("A dependency is unavailable.")]
    Unavailable(#[source] anyhow::Error),
    /// 503: a dependency is known to be down for `retry_after` seconds more (a circuit
    /// breaker is open), so the client is told that rather than a second.
    #[error("A dependency is unavailable.")]
    UnavailableFor {
        retry_after: u64,
        #[source]
        cause: anyhow::Error,
    },
    /// 500: a bug. The cause is logged, never shown.
    #[error("An internal error occurred.")]
    Internal(#[source] anyhow::Error),
}

impl poem::error::ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::InvalidPageToken => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::IpNotAllowed => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict { .. }
            | Self::InUse(_)
            | Self::RequestInFlight
            | Self::TooManyWebhooks { .. } => StatusCode::CONFLICT,
            Self::Unprocessable { .. } | Self::WebhookUrlRefused(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::UnsupportedMedia(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Throttled { .. }
            | Self::QuotaExceeded { .. }
            | Self::LoginThrottled { .. }
            | Self::TooManyConnections { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) | Self::UnavailableFor { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl ApiError {
    /// A bearer token that is missing, malformed, expired, or whose user no longer exists.
    pub const BAD_TOKEN: Self = Self::Unauthorized("The bearer token is missing or invalid.");
    /// An operator API call without the right admin token.
    pub const BAD_ADMIN_TOKEN: Self = Self::Unauthorized("The admin token is missing or wrong.");
    /// A `/v1` call without an enabled API key.
    pub const NO_KEY: Self = Self::Forbidden("A valid, enabled x-api-key is required.");

    fn code(&self) -> ProblemCode {
        match self {
            Self::InvalidPageToken => ProblemCode::InvalidRequest,
            Self::Unauthorized(_) => ProblemCode::Unauthorized,
            Self::Forbidden(_) => ProblemCode::Forbidden,
            Self::IpNotAllowed => ProblemCode::IpNotAllowed,
            Self::NotFound(_) => ProblemCode::NotFound,
            Self::Conflict { .. } => ProblemCode::Conflict,
            Self::InUse(_) => ProblemCode::InUse,
            Self::RequestInFlight => ProblemCode::RequestInFlight,
            Self::Unprocessable { code, .. } => code.clone(),
            Self::TooManyWebhooks { .. } => ProblemCode::TooManyWebhooks,
            Self::WebhookUrlRefused(_) => ProblemCode::WebhookUrlRefused,
            Self::UnsupportedMedia(_) => ProblemCode::UnsupportedMediaType,
            Self::Throttled { .. } => ProblemCode::Throttled,
            Self::LoginThrottled { .. } => ProblemCode::LoginThrottled,
            Self::QuotaExceeded { .. } => ProblemCode::QuotaExceeded,
            Self::TooManyConnections { .. } => ProblemCode::TooManyConnections,
            Self::Unavailable(_) | Self::UnavailableFor { .. } => ProblemCode::Unavailable,
            Self::Internal(_) => ProblemCode::Internal,
        }
    }
}

/// Builds a Problem document for `status`.
pub fn problem(status: StatusCode, code: ProblemCode, detail: String, request_id: &str) -> Problem {
    Problem {
        type_: "about:blank".to_owned(),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: i32::from(status.as_u16()),
        detail: Some(detail),
        instance: None,
        code,
        request_id: request_id.to_owned(),
        errors: Vec::new(),
    }
}

/// Renders a Problem as its own media type.
pub fn problem_response(problem: &Problem) -> Response {
    let status = u16::try_from(problem.status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match serde_json::to_vec(problem) {
        Ok(body) => Response::builder()
            .status(status)
            .content_type("application/problem+json")
            .body(body),
        Err(_) => Response::builder().status(status).finish(),
    }
}

/// Middleware: every error leaving the routes becomes a Problem response.
pub async fn render_problems<E: Endpoint>(next: E, request: Request) -> poem::Result<Response> {
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .map(|id| id.0.clone())
        .unwrap_or_default();
    match next.call(request).await {
        Ok(response) => Ok(response.into_response()),
        Err(error) => Ok(error_to_response(error, &request_id)),
    }
}

/// The Problem of a request (or a stream message) the document does not allow.
pub fn rejection_problem(rejected: &RejectedRequest, request_id: &str) -> Problem {
    let code = match rejected.status {
        StatusCode::PAYLOAD_TOO_LARGE => ProblemCode::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ProblemCode::UnsupportedMediaType,
        // The limits on the request's head (`crate::http::request_limits`).
        StatusCode::URI_TOO_LONG => ProblemCode::UriTooLong,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => ProblemCode::HeaderFieldsTooLarge,
        _ => ProblemCode::InvalidRequest,
    };
    let mut problem = problem(rejected.status, code, rejected.detail.clone(), request_id);
    problem.errors = rejected
        .violations
        .iter()
        .map(to_problem_violation)
        .collect();
    problem
}

/// The Problem response for any error: ours, the generated validator's, or poem's.
pub fn error_to_response(error: poem::Error, request_id: &str) -> Response {
    if let Some(rejected) = error.downcast_ref::<RejectedRequest>() {
        return problem_response(&rejection_problem(rejected, request_id));
    }
    if let Some(not_allowed) = error.downcast_ref::<MethodNotAllowed>() {
        let status = StatusCode::METHOD_NOT_ALLOWED;
        let problem = problem(
            status,
            ProblemCode::MethodNotAllowed,
            not_allowed.to_string(),
            request_id,
        );
        let mut response = problem_response(&problem);
        if let Ok(allow) = HeaderValue::from_str(&not_allowed.allow.join(", ")) {
            response.headers_mut().insert(header::ALLOW, allow);
        }
        return response;
    }
    if let Some(api_error) = error.downcast_ref::<ApiError>() {
        return render_api_error(api_error, request_id);
    }
    if let Some(unauthenticated) = error.downcast_ref::<Unauthenticated>() {
        return render_api_error(&missing_credentials(unauthenticated), request_id);
    }
    // poem's own errors: unknown route, unreadable body, and the like.
    let status = error.status();
    let (code, detail) = match status {
        StatusCode::NOT_FOUND => (
            ProblemCode::NotFound,
            "No route matches this path.".to_owned(),
        ),
        s if s.is_server_error() => {
            tracing::error!(request_id, error = %error, "internal error");
            (
                ProblemCode::Internal,
                "An internal error occurred.".to_owned(),
            )
        }
        _ => (ProblemCode::InvalidRequest, error.to_string()),
    };
    problem_response(&problem(status, code, detail, request_id))
}

/// What a request without an operation's credentials is told, per the document: 403
/// without an API key (as API Gateway answers), else 401 for the missing token.
fn missing_credentials(unauthenticated: &Unauthenticated) -> ApiError {
    let missing = |scheme: &str| unauthenticated.missing.contains(&scheme);
    if missing("apiKey") {
        ApiError::NO_KEY
    } else if missing("adminAuth") {
        ApiError::BAD_ADMIN_TOKEN
    } else {
        ApiError::BAD_TOKEN
    }
}

fn to_problem_violation(violation: &Violation) -> ProblemViolation {
    ProblemViolation {
        in_: match violation.location {
            Location::Body => ViolationIn::Body,
            Location::Path => ViolationIn::Path,
            Location::Query => ViolationIn::Query,
            Location::Header => ViolationIn::Header,
        },
        pointer: violation.pointer.clone(),
        message: violation.message.clone(),
    }
}

impl From<crate::infra::store::StoreError> for ApiError {
    fn from(error: crate::infra::store::StoreError) -> Self {
        use crate::infra::store::StoreError;
        match error {
            StoreError::Conflict { field } => Self::Conflict { field },
            StoreError::Unavailable(cause) => Self::Unavailable(cause.into()),
            StoreError::Other(cause) => Self::Internal(cause.into()),
        }
    }
}

/// The Problem response for a handler's error; internal causes are logged here, once.
pub fn render_api_error(api_error: &ApiError, request_id: &str) -> Response {
    let status = poem::error::ResponseError::status(api_error);
    match api_error {
        ApiError::Unavailable(cause) | ApiError::UnavailableFor { cause, .. } => {
            tracing::warn!(
                request_id,
                error = format!("{cause:#}"),
                "dependency unavailable"
            );
        }
        ApiError::Internal(cause) => {
            tracing::error!(request_id, error = format!("{cause:#}"), "internal error");
        }
        _ => {}
    }
    let mut problem = problem(status, api_error.code(), api_error.to_string(), request_id);
    let violation = match api_error {
        ApiError::Conflict { field } => {
            Some((ViolationIn::Body, format!("/{field}"), "is already taken"))
        }
        ApiError::InvalidPageToken => Some((
            ViolationIn::Query,
            "/page_token".to_owned(),
            "is not a page token of this list",
        )),
        _ => None,
    };
    if let Some((in_, pointer, message)) = violation {
        problem.errors.push(ProblemViolation {
            in_,
            pointer,
            message: message.to_owned(),
        });
    }
    let mut response = problem_response(&problem);
    match api_error {
        ApiError::Unavailable(_) => {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, RETRY_AFTER_SECONDS.into());
        }
        ApiError::Unauthorized(_) => {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        ApiError::Throttled { retry_after }
        | ApiError::UnavailableFor { retry_after, .. }
        | ApiError::QuotaExceeded { retry_after }
        | ApiError::LoginThrottled { retry_after }
        | ApiError::TooManyConnections { retry_after, .. } => {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, (*retry_after).into());
        }
        _ => {}
    }
    response
}

/// A failed picture-store call is a 503 counted in `minitter_blob_errors_total`; a call the
/// circuit breaker refused never reached the store (it is counted as rejected there) and
/// says how long the breaker stays open.
impl From<crate::infra::blob::BlobError> for ApiError {
    fn from(error: crate::infra::blob::BlobError) -> Self {
        use crate::infra::blob::breaker::Refusal;
        if let Some(refusal) = error.0.downcast_ref::<Refusal>() {
            return Self::UnavailableFor {
                retry_after: refusal.retry_after_seconds(),
                cause: error.into(),
            };
        }
        metrics::counter!(crate::infra::metrics::BLOB_ERRORS).increment(1);
        Self::Unavailable(error.into())
    }
}
