//! The typed RFC 9457 problem of an error response, without matching on
//! `Error::ErrorResponse` at every call site.

use crate::{Error, types::Problem};

/// The typed RFC 9457 problem of an error response.
pub trait ProblemExt {
    /// The problem document, when the server answered with a declared error status.
    fn problem(&self) -> Option<&Problem>;
}

impl ProblemExt for Error<Problem> {
    fn problem(&self) -> Option<&Problem> {
        match self {
            Error::ErrorResponse(response) => Some(response.as_ref()),
            _ => None,
        }
    }
}
