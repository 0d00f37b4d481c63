//! Extraction: what the generated code declares about an operation's request
//! ([`Operation`], [`Param`], [`Body`], [`Limits`]) and [`extract`], which reads the
//! parameters and the body, converts parameter text to its declared JSON type, checks the
//! body's media type and size, and validates everything before the handler runs.
//!
//! Every violation is collected before the request is refused, so one answer reports all
//! of them; a refusal of the body's media type or size (415, 413) ends the reading early.

use poem::http::{StatusCode, header};
use serde_json::{Map, Value};

use crate::problem::{Location, RejectedRequest, Violation};
use crate::validation::Validators;

/// Limits applied to every request before it is validated.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// JSON bodies larger than this are refused with 413 before they are read in full.
    pub max_body_bytes: usize,
    /// The same for bodies that are not JSON (uploads).
    pub max_binary_body_bytes: usize,
}

/// The JSON type a parameter's string value is converted to before validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar {
    String,
    Integer,
    Number,
    Boolean,
}

/// A parameter as the document declares it.
#[derive(Debug)]
pub struct Param {
    pub name: &'static str,
    pub location: Location,
    pub scalar: Scalar,
    /// An array parameter, sent as repeated `name=value` pairs (`form`, `explode: true`).
    pub array: bool,
}

/// A request body as the document declares it.
#[derive(Debug)]
pub struct Body {
    pub media_type: &'static str,
    /// A JSON body is parsed and validated; any other is passed on as bytes.
    pub json: bool,
    pub required: bool,
}

/// Everything the document says about one operation's request.
#[derive(Debug)]
pub struct Operation {
    pub id: &'static str,
    pub params: &'static [Param],
    pub body: Option<Body>,
}

/// A request's parameters and body, validated.
#[derive(Debug)]
pub struct Input {
    params: Value,
    body: Option<Vec<u8>>,
    json: Option<Value>,
}

impl Input {
    /// The parameters, deserialized into the operation's params struct.
    pub fn params<T: serde::de::DeserializeOwned>(&mut self) -> poem::Result<T> {
        deserialize(self.params.take())
    }

    /// The JSON body, deserialized into the operation's body type.
    pub fn json_body<T: serde::de::DeserializeOwned>(&mut self) -> poem::Result<T> {
        deserialize(self.json.take().unwrap_or(Value::Null))
    }

    /// The JSON body of an operation whose body is optional.
    pub fn optional_json_body<T: serde::de::DeserializeOwned>(
        &mut self,
    ) -> poem::Result<Option<T>> {
        self.json.take().map(deserialize).transpose()
    }

    /// The raw body of an operation whose body is not JSON.
    pub fn bytes_body(&mut self) -> Vec<u8> {
        self.body.take().unwrap_or_default()
    }

    /// The raw body of an operation whose non-JSON body is optional.
    pub fn optional_bytes_body(&mut self) -> Option<Vec<u8>> {
        self.body.take()
    }
}

/// Deserializes validated input. The schema and the type come from the same document, so
/// a failure here means the two disagree: it is still answered as a bad request.
fn deserialize<T: serde::de::DeserializeOwned>(value: Value) -> poem::Result<T> {
    serde_json::from_value(value).map_err(|error| {
        // serde quotes the offending value ("invalid type: string \"…\", expected u32"),
        // which may be a password: keep only what was expected.
        let text = error.to_string();
        let message = if text.starts_with("missing field ") {
            text
        } else if let Some((_, expected)) = text.rsplit_once(", expected ") {
            format!("must be {expected}")
        } else {
            "does not have the type the server expects".to_owned()
        };
        let violation = Violation {
            location: Location::Body,
            pointer: String::new(),
            message,
        };
        RejectedRequest::invalid(vec![violation]).into()
    })
}

/// Reads and validates a request's parameters and body for `operation`.
pub async fn extract(
    request: &mut poem::Request,
    validators: &Validators,
    operation: &Operation,
    limits: Limits,
) -> poem::Result<Input> {
    let mut violations = Vec::new();
    let query = query_pairs(request.uri().query().unwrap_or_default());
    let mut params = Map::new();
    for location in [Location::Path, Location::Query, Location::Header] {
        let mut object = Map::new();
        for param in operation.params.iter().filter(|p| p.location == location) {
            let raw: Vec<String> = match location {
                Location::Path => request
                    .raw_path_param(param.name)
                    .map(str::to_owned)
                    .into_iter()
                    .collect(),
                Location::Query => query
                    .iter()
                    .filter(|(k, _)| k == param.name)
                    .map(|(_, v)| v.clone())
                    .collect(),
                Location::Header => request
                    .headers()
                    .get_all(param.name)
                    .iter()
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .collect(),
                Location::Body => Vec::new(),
            };
            if raw.is_empty() {
                continue;
            }
            let value = if param.array {
                Value::Array(raw.iter().map(|v| coerce(v, param.scalar)).collect())
            } else {
                coerce(&raw[0], param.scalar)
            };
            object.insert(param.name.to_owned(), value);
        }
        let object = Value::Object(object);
        validators.validate(operation.id, location, &object, &mut violations);
        if let Value::Object(object) = object {
            params.extend(object);
        }
    }

    let mut input = Input {
        params: Value::Object(params),
        body: None,
        json: None,
    };
    if let Some(declared) = &operation.body {
        let bytes = read_body(request, declared, limits).await?;
        match bytes {
            None if declared.required => violations.push(Violation {
                location: Location::Body,
                pointer: String::new(),
                message: format!("a {} body is required", declared.media_type),
            }),
            None => {}
            Some(bytes) if declared.json => match serde_json::from_slice::<Value>(&bytes) {
                Ok(json) => {
                    validators.validate(operation.id, Location::Body, &json, &mut violations);
                    input.json = Some(json);
                }
                Err(error) => violations.push(Violation {
                    location: Location::Body,
                    pointer: String::new(),
                    message: format!("is not valid JSON: {error}"),
                }),
            },
            Some(bytes) => input.body = Some(bytes),
        }
    }
    if violations.is_empty() {
        Ok(input)
    } else {
        Err(RejectedRequest::invalid(violations).into())
    }
}

/// Reads the body if the request has one; `None` when it has none.
async fn read_body(
    request: &mut poem::Request,
    declared: &Body,
    limits: Limits,
) -> poem::Result<Option<Vec<u8>>> {
    let content_type = request.header(header::CONTENT_TYPE);
    let declared_length = request
        .header(header::CONTENT_LENGTH)
        .and_then(|v| v.parse::<u64>().ok());
    let chunked = request.header(header::TRANSFER_ENCODING).is_some();
    if content_type.is_none() && declared_length.unwrap_or(0) == 0 && !chunked {
        return Ok(None);
    }
    let matches = content_type
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(declared.media_type));
    if !matches {
        return Err(RejectedRequest::with_status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Expected a body of type {}.", declared.media_type),
        )
        .into());
    }
    let limit = if declared.json {
        limits.max_body_bytes
    } else {
        limits.max_binary_body_bytes
    };
    let too_large = || {
        RejectedRequest::with_status(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("The request body is larger than {limit} bytes."),
        )
    };
    if declared_length.is_some_and(|n| n > limit as u64) {
        return Err(too_large().into());
    }
    let bytes = request
        .take_body()
        .into_bytes_limit(limit)
        .await
        .map_err(|error| match error {
            poem::error::ReadBodyError::PayloadTooLarge => poem::Error::from(too_large()),
            other => {
                RejectedRequest::with_status(StatusCode::BAD_REQUEST, other.to_string()).into()
            }
        })?;
    Ok(if bytes.is_empty() && declared.json {
        None
    } else {
        Some(bytes.to_vec())
    })
}

fn query_pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// Converts a parameter's text to the JSON type its schema declares. Text that does not
/// convert stays a string, so that validation reports the type error with its pointer.
fn coerce(raw: &str, scalar: Scalar) -> Value {
    let parsed = match scalar {
        Scalar::String => None,
        Scalar::Integer => raw
            .parse::<i64>()
            .map(Value::from)
            .ok()
            .or_else(|| raw.parse::<u64>().map(Value::from).ok()),
        Scalar::Number => raw
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number),
        Scalar::Boolean => match raw {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        },
    };
    parsed.unwrap_or_else(|| Value::String(raw.to_owned()))
}
