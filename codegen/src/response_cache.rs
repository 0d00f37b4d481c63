//! The `x-minitter-cache` extension: an operation's opt-in to a server-side response cache,
//! read here so that which answers may be kept, and for how long, is the document's call.
//!
//! ```yaml
//! get:
//!   operationId: get_user
//!   x-minitter-cache:
//!     ttl_seconds: 300   # optional: 300 by default, at most 3600 (as API Gateway)
//! ```
//!
//! Only a `GET` may opt in: any other method changes something, and its answer is not a
//! copy of a resource. The generated route of an opted-in operation asks the middleware
//! for a stored answer after the request's credentials are verified and the request is
//! validated, so a cached answer is still authenticated and metered, and the generated
//! `RESPONSE_CACHE` table gives each opted-in operation's time to live.

use anyhow::{Result, bail};
use serde_json::Value;

/// The extension's name in an operation.
pub const EXTENSION: &str = "x-minitter-cache";
/// The time to live of an operation that opts in without saying one.
pub const DEFAULT_TTL_SECONDS: u64 = 300;
/// The longest time to live an operation may ask for.
pub const MAX_TTL_SECONDS: u64 = 3600;

/// The time to live in seconds that operation `id` (`method` in capitals) asks for, or
/// `None` when it does not opt in. A malformed extension is a generation error.
pub fn ttl_seconds(op: &Value, id: &str, method: &str) -> Result<Option<u64>> {
    let Some(extension) = op.get(EXTENSION) else {
        return Ok(None);
    };
    if method != "GET" {
        bail!("{id}: {EXTENSION} is allowed on GET operations only, not {method}");
    }
    let Some(settings) = extension.as_object() else {
        bail!("{id}: {EXTENSION} must be an object such as {{ttl_seconds: 300}}");
    };
    if let Some(unknown) = settings.keys().find(|k| *k != "ttl_seconds") {
        bail!("{id}: {EXTENSION} has no setting {unknown:?}; the only one is ttl_seconds");
    }
    match settings.get("ttl_seconds") {
        None => Ok(Some(DEFAULT_TTL_SECONDS)),
        Some(ttl) => match ttl.as_u64() {
            Some(ttl @ 1..=MAX_TTL_SECONDS) => Ok(Some(ttl)),
            _ => bail!(
                "{id}: {EXTENSION}.ttl_seconds must be a whole number from 1 to \
                 {MAX_TTL_SECONDS}, not {ttl}"
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_operation_opts_in_with_a_ttl_or_the_default() {
        let op = json!({"x-minitter-cache": {"ttl_seconds": 60}});
        assert_eq!(
            ttl_seconds(&op, "op", "GET").expect("well-formed"),
            Some(60)
        );
        let op = json!({"x-minitter-cache": {}});
        assert_eq!(
            ttl_seconds(&op, "op", "GET").expect("well-formed"),
            Some(300)
        );
        assert_eq!(
            ttl_seconds(&json!({}), "op", "GET").expect("well-formed"),
            None
        );
    }

    #[test]
    fn malformed_extensions_are_generation_errors() {
        for (op, method, says) in [
            (
                json!({"x-minitter-cache": {}}),
                "POST",
                "GET operations only",
            ),
            (json!({"x-minitter-cache": 60}), "GET", "must be an object"),
            (
                json!({"x-minitter-cache": {"ttl": 60}}),
                "GET",
                "no setting \"ttl\"",
            ),
            (
                json!({"x-minitter-cache": {"ttl_seconds": 0}}),
                "GET",
                "from 1 to 3600",
            ),
            (
                json!({"x-minitter-cache": {"ttl_seconds": 3601}}),
                "GET",
                "from 1 to 3600",
            ),
            (
                json!({"x-minitter-cache": {"ttl_seconds": "60"}}),
                "GET",
                "from 1 to 3600",
            ),
        ] {
            let error = ttl_seconds(&op, "op", method)
                .expect_err("malformed")
                .to_string();
            assert!(error.contains(says), "{error}");
        }
    }
}
