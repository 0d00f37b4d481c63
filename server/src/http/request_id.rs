//! The id of the request being served: set by the outermost middleware
//! ([`crate::http::telemetry`]), read by whatever names the request (Problem documents, log
//! lines, the gateway's refusals). A module of its own so that the error type and the
//! telemetry that both need it do not need each other.

/// The id of the request being served.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);
