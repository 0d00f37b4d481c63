//! Messages on a realtime channel (an AsyncAPI document's): routing a received message by
//! one of its properties, then validating it against its route's schema, as a request is
//! validated against its operation's.
//!
//! A generated `stream.rs` calls these with its routes; a refused message is the same
//! [`RejectedRequest`] a refused request is (400, every violation with a JSON pointer
//! into the message, location `body`), so a server words both alike.

use serde_json::Value;

use crate::problem::{Location, RejectedRequest, Violation};
use crate::validation::Validators;

/// Parses a text message as JSON.
pub fn parse_message(text: &str) -> Result<Value, RejectedRequest> {
    serde_json::from_str(text).map_err(|_| refuse("", "must be a JSON object".to_owned()))
}

/// The route `message` selects by its `route_by` property, one of `routes`, once the
/// message satisfies that route's schema (in `validators`, an "operation" per route).
pub fn select_route(
    validators: &Validators,
    message: &Value,
    route_by: &str,
    routes: &'static [&'static str],
) -> Result<&'static str, RejectedRequest> {
    let known = || format!("must be one of: {}", routes.join(", "));
    let Value::Object(object) = message else {
        return Err(refuse("", "must be a JSON object".to_owned()));
    };
    let pointer = format!("/{}", route_by.replace('~', "~0").replace('/', "~1"));
    let Some(selector) = object.get(route_by) else {
        return Err(refuse(&pointer, format!("is required ({})", known())));
    };
    let Some(route) = selector
        .as_str()
        .and_then(|name| routes.iter().find(|route| **route == name))
    else {
        return Err(refuse(&pointer, known()));
    };
    let mut violations = Vec::new();
    validators.validate(route, Location::Body, message, &mut violations);
    if violations.is_empty() {
        Ok(route)
    } else {
        Err(RejectedRequest::invalid(violations))
    }
}

/// A message that satisfies its route's schema, as the route's type.
pub fn decode_message<T: serde::de::DeserializeOwned>(
    message: Value,
) -> Result<T, RejectedRequest> {
    // The schema was checked first; a type that still refuses the message is stricter
    // than its schema, and the client is told what the type said.
    serde_json::from_value(message).map_err(|error| refuse("", error.to_string()))
}

fn refuse(pointer: &str, message: String) -> RejectedRequest {
    RejectedRequest::invalid(vec![Violation {
        location: Location::Body,
        pointer: pointer.to_owned(),
        message,
    }])
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ROUTES: &[&str] = &["ping", "subscribe"];

    fn validators() -> Validators {
        Validators::compile(
            &json!({
                "definitions": {},
                "operations": {
                    "ping": {"body": {
                        "type": "object", "required": ["action"], "additionalProperties": false,
                        "properties": {"action": {"enum": ["ping"]}}}},
                    "subscribe": {"body": {
                        "type": "object", "required": ["action", "topic"],
                        "additionalProperties": false,
                        "properties": {"action": {"enum": ["subscribe"]},
                                       "topic": {"type": "string", "maxLength": 4}}}}
                }
            })
            .to_string(),
        )
    }

    fn pointers(error: &RejectedRequest) -> Vec<(&str, &str)> {
        error
            .violations
            .iter()
            .map(|v| (v.pointer.as_str(), v.message.as_str()))
            .collect()
    }

    #[test]
    fn a_valid_message_selects_its_route() {
        let message = json!({"action": "subscribe", "topic": "home"});
        let route = select_route(&validators(), &message, "action", ROUTES).expect("valid");
        assert_eq!(route, "subscribe");
    }

    #[test]
    fn an_unknown_or_missing_route_names_the_routes_that_exist() {
        for message in [json!({"action": "dance"}), json!({"action": 7}), json!({})] {
            let error =
                select_route(&validators(), &message, "action", ROUTES).expect_err("refused");
            assert_eq!(error.status, 400);
            let [(pointer, text)] = pointers(&error)[..] else {
                panic!("one violation: {error:?}")
            };
            assert_eq!(pointer, "/action");
            assert!(text.contains("ping, subscribe"), "{text}");
        }
    }

    #[test]
    fn every_violation_of_the_route_schema_is_listed() {
        let message = json!({"action": "subscribe", "topic": "far too long", "extra": 1});
        let error = select_route(&validators(), &message, "action", ROUTES).expect_err("refused");
        assert_eq!(
            pointers(&error),
            vec![
                ("/extra", "is not a known property"),
                ("/topic", "must be at most 4 characters long")
            ]
        );
    }

    #[test]
    fn text_that_is_not_a_json_object_is_refused() {
        assert!(parse_message("{not json").is_err());
        let array = parse_message("[1]").expect("JSON");
        let error = select_route(&validators(), &array, "action", ROUTES).expect_err("refused");
        assert_eq!(pointers(&error), vec![("", "must be a JSON object")]);
    }
}
