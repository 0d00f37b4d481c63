//! Runtime support for the generated routes: extracting a request's parameters and body
//! and validating them against the JSON Schemas translated from the OpenAPI document.
//!
//! It is generic — the generated `api.rs` describes each operation with an [`Operation`]
//! and this module does the rest — and it reports *every* violation at once, each with
//! the part of the request it concerns and a JSON pointer, so a client can fix all of
//! its mistakes in one round trip. Violation messages never echo the offending value:
//! it may be a password.

use std::collections::HashMap;

use poem::http::{Method, StatusCode, header};
use serde_json::{Map, Value};

/// The part of a request a [`Violation`] is found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Location {
    Body,
    Path,
    Query,
    Header,
}

/// One way in which a request breaks the document.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    /// The part of the request `pointer` points into.
    pub location: Location,
    /// An RFC 6901 JSON pointer into the body, or into the object of parameters.
    pub pointer: String,
    /// What is wrong, without the offending value.
    pub message: String,
}

/// A request that the document does not allow: 400 (violations), 413 or 415.
///
/// Routes return it as a `poem::Error`; the server's error middleware finds it with
/// `downcast_ref` and renders it in the server's own error format.
#[derive(Debug)]
pub struct RejectedRequest {
    pub status: StatusCode,
    pub detail: String,
    pub violations: Vec<Violation>,
}

impl std::fmt::Display for RejectedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for RejectedRequest {}

impl poem::error::ResponseError for RejectedRequest {
    fn status(&self) -> StatusCode {
        self.status
    }
}

impl RejectedRequest {
    fn invalid(mut violations: Vec<Violation>) -> Self {
        // Validators report in no fixed order; clients and tests deserve a stable one.
        violations.sort_by(|a, b| (a.location as u8, &a.pointer).cmp(&(b.location as u8, &b.pointer)));
        let mut fields: Vec<(Location, &str)> =
            violations.iter().map(|v| (v.location, v.pointer.as_str())).collect();
        fields.sort_by_key(|(location, pointer)| (*location as u8, *pointer));
        fields.dedup();
        let detail = match fields.len() {
            1 => "The request has 1 invalid field.".to_owned(),
            n => format!("The request has {n} invalid fields."),
        };
        Self { status: StatusCode::BAD_REQUEST, detail, violations }
    }

    fn with_status(status: StatusCode, detail: String) -> Self {
        Self { status, detail, violations: Vec::new() }
    }
}

/// A method the path does not declare: 405 with the `Allow` header.
#[derive(Debug)]
pub struct MethodNotAllowed {
    pub allow: &'static [&'static str],
}

impl std::fmt::Display for MethodNotAllowed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "This path allows only {}.", self.allow.join(", "))
    }
}

impl std::error::Error for MethodNotAllowed {}

impl poem::error::ResponseError for MethodNotAllowed {
    fn status(&self) -> StatusCode {
        StatusCode::METHOD_NOT_ALLOWED
    }
}

/// Limits applied to every request before it is validated.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bodies larger than this are refused with 413 before they are read in full.
    pub max_body_bytes: usize,
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
    pub fn optional_json_body<T: serde::de::DeserializeOwned>(&mut self) -> poem::Result<Option<T>> {
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
        let violation = Violation {
            location: Location::Body,
            pointer: String::new(),
            message: error.to_string(),
        };
        RejectedRequest::invalid(vec![violation]).into()
    })
}

/// The compiled validators of every operation, built once at start-up.
pub struct Validators {
    operations: HashMap<String, OperationValidators>,
}

#[derive(Default)]
struct OperationValidators {
    by_location: Vec<(Location, jsonschema::Validator)>,
}

impl Validators {
    /// Compiles the generated `request_schemas.json`.
    ///
    /// # Panics
    /// If the generated document is not valid JSON Schema: a bug in the generator, found
    /// the first time the server starts.
    pub fn compile(document: &str) -> Self {
        let document: Value =
            serde_json::from_str(document).expect("BUG: generated request schemas are not JSON");
        let definitions = document.get("definitions").cloned().unwrap_or(Value::Null);
        let mut operations = HashMap::new();
        let ops = document.get("operations").and_then(Value::as_object);
        for (id, schemas) in ops.into_iter().flatten() {
            let mut compiled = OperationValidators::default();
            for (location, key) in [
                (Location::Path, "path"),
                (Location::Query, "query"),
                (Location::Header, "header"),
                (Location::Body, "body"),
            ] {
                if let Some(schema) = schemas.get(key) {
                    let mut schema = schema.clone();
                    if let Value::Object(object) = &mut schema {
                        object.insert("definitions".to_owned(), definitions.clone());
                    }
                    let validator = options().build(&schema).unwrap_or_else(|error| {
                        panic!("BUG: generated schema for {id}/{key} does not compile: {error}")
                    });
                    compiled.by_location.push((location, validator));
                }
            }
            operations.insert(id.clone(), compiled);
        }
        Self { operations }
    }

    fn validate(&self, operation: &str, location: Location, value: &Value, out: &mut Vec<Violation>) {
        let Some(compiled) = self.operations.get(operation) else {
            return;
        };
        for (_, validator) in compiled.by_location.iter().filter(|(l, _)| *l == location) {
            for error in validator.iter_errors(value) {
                out.extend(violations_of(location, &error));
            }
        }
    }
}

/// OpenAPI 3.0 schemas are draft 4 JSON Schema (boolean `exclusiveMinimum`), with the
/// formats of the OpenAPI registry checked as assertions.
fn options() -> jsonschema::ValidationOptions<'static> {
    jsonschema::draft4::options()
        .should_validate_formats(true)
        .with_format("uuid", |s: &str| {
            s.len() == 36 && s.parse::<uuid::Uuid>().is_ok()
        })
        .with_format("date", |s: &str| {
            chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
        })
}

fn violations_of(location: Location, error: &jsonschema::ValidationError<'_>) -> Vec<Violation> {
    use jsonschema::error::ValidationErrorKind as Kind;
    let at = error.instance_path().to_string();
    let child = |name: &str| format!("{at}/{}", name.replace('~', "~0").replace('/', "~1"));
    let one = |pointer: String, message: String| vec![Violation { location, pointer, message }];
    match error.kind() {
        Kind::Required { property } => {
            let name = property.as_str().unwrap_or_default();
            one(child(name), "is required".to_owned())
        }
        Kind::AdditionalProperties { unexpected } => unexpected
            .iter()
            .map(|name| Violation {
                location,
                pointer: child(name),
                message: "is not a known property".to_owned(),
            })
            .collect(),
        kind => one(at, describe(kind)),
    }
}

fn describe(kind: &jsonschema::error::ValidationErrorKind) -> String {
    use jsonschema::error::ValidationErrorKind as Kind;
    match kind {
        Kind::Type { kind } => format!("must be of type {}", type_names(kind)),
        Kind::MinLength { limit } => format!("must be at least {limit} characters long"),
        Kind::MaxLength { limit } => format!("must be at most {limit} characters long"),
        Kind::Pattern { pattern } => format!("must match the pattern {pattern}"),
        Kind::Format { format } => format!("must be a valid {format}"),
        Kind::Minimum { limit } => format!("must be at least {limit}"),
        Kind::Maximum { limit } => format!("must be at most {limit}"),
        Kind::ExclusiveMinimum { limit } => format!("must be greater than {limit}"),
        Kind::ExclusiveMaximum { limit } => format!("must be less than {limit}"),
        Kind::MinItems { limit } => format!("must have at least {limit} items"),
        Kind::MaxItems { limit } => format!("must have at most {limit} items"),
        Kind::Enum { options } => format!("must be one of {options}"),
        Kind::UniqueItems => "must not contain duplicate items".to_owned(),
        other => format!("does not satisfy `{}`", other.keyword()),
    }
}

fn type_names(kind: &jsonschema::error::TypeKind) -> String {
    use jsonschema::error::TypeKind;
    match kind {
        TypeKind::Single(t) => t.to_string(),
        TypeKind::Multiple(ts) => {
            let names: Vec<String> = ts.iter().map(|t| t.to_string()).collect();
            names.join(" or ")
        }
    }
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
                Location::Path => request.raw_path_param(param.name).map(str::to_owned).into_iter().collect(),
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

    let mut input = Input { params: Value::Object(params), body: None, json: None };
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
    let too_large = || {
        RejectedRequest::with_status(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("The request body is larger than {} bytes.", limits.max_body_bytes),
        )
    };
    if declared_length.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return Err(too_large().into());
    }
    let bytes = request
        .take_body()
        .into_bytes_limit(limits.max_body_bytes)
        .await
        .map_err(|error| match error {
            poem::error::ReadBodyError::PayloadTooLarge => poem::Error::from(too_large()),
            other => RejectedRequest::with_status(StatusCode::BAD_REQUEST, other.to_string()).into(),
        })?;
    Ok(if bytes.is_empty() && declared.json { None } else { Some(bytes.to_vec()) })
}

fn query_pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes()).into_owned().collect()
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

/// The error for a method the path does not declare.
pub fn method_not_allowed(allow: &'static [&'static str]) -> poem::Error {
    MethodNotAllowed { allow }.into()
}

/// Whether `method` is `expected`.
pub fn is(method: &Method, expected: &str) -> bool {
    method.as_str() == expected
}

/// A response with a JSON body.
pub fn json_response<T: serde::Serialize>(status: u16, content_type: &str, body: &T) -> poem::Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => poem::Response::builder()
            .status(status_code(status))
            .content_type(content_type)
            .body(bytes),
        Err(error) => {
            tracing::error!(%error, "a response body could not be serialized");
            poem::Response::builder()
                .status(StatusCode::INTERNAL_SERVER_ERROR)
                .finish()
        }
    }
}

/// A response with a non-JSON body.
pub fn body_response(status: u16, content_type: &str, body: poem::Body) -> poem::Response {
    poem::Response::builder()
        .status(status_code(status))
        .content_type(content_type)
        .body(body)
}

/// A response with no body.
pub fn empty_response(status: u16) -> poem::Response {
    poem::Response::builder().status(status_code(status)).finish()
}

/// Sets a declared response header. A value that is not a valid header value is a bug in
/// the handler; it is logged and the header left out rather than the response lost.
pub fn set_header(response: &mut poem::Response, name: &'static str, value: &dyn std::fmt::Display) {
    match poem::http::HeaderValue::from_str(&value.to_string()) {
        Ok(value) => {
            response.headers_mut().insert(name, value);
        }
        Err(error) => tracing::error!(%error, header = name, "invalid response header value"),
    }
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}
