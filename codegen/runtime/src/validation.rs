//! Validation: the JSON Schemas of `request_schemas.json`, compiled once, and the
//! translation of the validator's errors into [`Violation`]s.
//!
//! It is kept apart from extraction so that how a schema is compiled (draft 4, formats
//! as assertions) and how its errors are worded (never echoing the offending value) are
//! read and changed in one place, independently of how a request is taken apart.

use std::collections::HashMap;

use serde_json::Value;

use crate::problem::{Location, Violation};

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
        let definitions = document.get("definitions").cloned();
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
                    if let (Value::Object(object), Some(definitions)) = (&mut schema, &definitions)
                    {
                        object.insert("definitions".to_owned(), definitions.clone());
                    }
                    let validator = validation_options().build(&schema).unwrap_or_else(|error| {
                        panic!("BUG: generated schema for {id}/{key} does not compile: {error}")
                    });
                    compiled.by_location.push((location, validator));
                }
            }
            operations.insert(id.clone(), compiled);
        }
        Self { operations }
    }

    pub(crate) fn validate(
        &self,
        operation: &str,
        location: Location,
        value: &Value,
        out: &mut Vec<Violation>,
    ) {
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

/// How schemas translated from OpenAPI 3.0 are compiled: as draft 4 JSON Schema (boolean
/// `exclusiveMinimum`), with formats checked as assertions, `uuid` and `date` included, and
/// `cidr` as Kubernetes' schemas use it: an IPv4 or IPv6 network in CIDR notation, or one
/// address (`10.0.0.0/8`, `2001:db8::/32`, `203.0.113.7`).
pub fn validation_options() -> jsonschema::ValidationOptions<'static> {
    jsonschema::draft4::options()
        .should_validate_formats(true)
        .with_format("uuid", |s: &str| {
            s.len() == 36 && s.parse::<uuid::Uuid>().is_ok()
        })
        .with_format("date", |s: &str| {
            chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
        })
        .with_format("cidr", |s: &str| {
            s.parse::<ipnet::IpNet>().is_ok() || s.parse::<std::net::IpAddr>().is_ok()
        })
}

fn violations_of(location: Location, error: &jsonschema::ValidationError<'_>) -> Vec<Violation> {
    use jsonschema::error::ValidationErrorKind as Kind;
    let at = error.instance_path().to_string();
    let child = |name: &str| format!("{at}/{}", name.replace('~', "~0").replace('/', "~1"));
    let one = |pointer: String, message: String| {
        vec![Violation {
            location,
            pointer,
            message,
        }]
    };
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
