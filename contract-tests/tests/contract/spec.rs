//! Checks a recorded exchange against `openapi.yaml`: is the status declared for the
//! operation, is the content type one it declares, does the body match the schema, are
//! the required headers there?

use std::collections::BTreeSet;

use codegen::Document;
use codegen::model::{is_binary, is_json, json_schema_definitions};
use codegen::schema::{DEFINITIONS, to_json_schema};
use serde_json::{Map, Value};

use crate::harness::Exchange;

pub struct Contract {
    document: Document,
    definitions: Value,
    operations: Vec<Operation>,
}

struct Operation {
    id: String,
    method: String,
    segments: Vec<String>,
    /// The responses by status key, each resolved.
    responses: Map<String, Value>,
}

impl Contract {
    pub fn load() -> Self {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.yaml");
        let text = std::fs::read_to_string(path).expect("openapi.yaml");
        let document = Document::parse(&text).expect("openapi.yaml is an OpenAPI document");
        let definitions = json_schema_definitions(&document.raw).into_iter().collect();
        let operations = document
            .operations()
            .expect("operations")
            .iter()
            .filter_map(|op| {
                let responses = op.responses().expect("responses");
                Some(Operation {
                    id: op.id()?.to_owned(),
                    method: op.method.to_ascii_uppercase(),
                    segments: op.path.split('/').map(str::to_owned).collect(),
                    responses: responses
                        .into_iter()
                        .map(|(status, response)| (status.to_owned(), response.clone()))
                        .collect(),
                })
            })
            .collect();
        Self {
            document,
            definitions: Value::Object(definitions),
            operations,
        }
    }

    /// Every (operationId, status) pair the document declares.
    pub fn declared(&self) -> BTreeSet<(String, String)> {
        self.operations
            .iter()
            .flat_map(|op| {
                op.responses
                    .keys()
                    .map(|status| (op.id.clone(), status.clone()))
            })
            .collect()
    }

    /// The (operationId, status) an exchange exercised, or everything wrong with it.
    /// Exchanges outside the document's paths (such as `/docs`) give `Ok(None)`.
    pub fn check(&self, exchange: &Exchange) -> Result<Option<(String, String)>, Vec<String>> {
        let segments: Vec<&str> = exchange.path.split('/').collect();
        let on_path: Vec<&Operation> = self
            .operations
            .iter()
            .filter(|op| matches(&op.segments, &segments))
            .collect();
        let Some(op) = on_path.iter().find(|op| op.method == exchange.method) else {
            return Ok(None);
        };
        let status = exchange.status.to_string();
        let range = format!("{}XX", &status[..1]);
        let Some((key, response)) = [status.as_str(), range.as_str(), "default"]
            .iter()
            .find_map(|key| op.responses.get(*key).map(|r| (key.to_string(), r)))
        else {
            return Err(vec![format!(
                "{} answered {status}, which it does not declare",
                op.id
            )]);
        };
        let mut problems = Vec::new();
        let content_type = exchange
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase());
        match (
            response.get("content").and_then(Value::as_object),
            &content_type,
        ) {
            (None, _) if !exchange.body.is_empty() => {
                problems.push(format!("{} {key}: a body where none is declared", op.id));
            }
            (None, _) => {}
            (Some(_), None) => problems.push(format!("{} {key}: no Content-Type", op.id)),
            (Some(content), Some(content_type)) => match content.get(content_type) {
                None => problems.push(format!(
                    "{} {key}: undeclared Content-Type {content_type}",
                    op.id
                )),
                Some(media) => {
                    if let Some(schema) = media.get("schema").filter(|_| !is_binary(media)) {
                        let instance = if is_json(content_type) {
                            serde_json::from_slice(&exchange.body)
                                .map_err(|e| format!("{} {key}: body is not JSON: {e}", op.id))
                        } else {
                            // A text body is validated as the string it is.
                            String::from_utf8(exchange.body.clone())
                                .map(Value::String)
                                .map_err(|e| format!("{} {key}: body is not UTF-8: {e}", op.id))
                        };
                        match instance {
                            Ok(instance) => {
                                problems
                                    .extend(self.validate_body(&op.id, &key, schema, &instance));
                            }
                            Err(problem) => problems.push(problem),
                        }
                    }
                }
            },
        }
        for (name, header) in response
            .get("headers")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let header = self.document.resolve(header).expect("header reference");
            if header.get("required") == Some(&Value::Bool(true))
                && !exchange.headers.contains_key(name.as_str())
            {
                problems.push(format!(
                    "{} {key}: required header {name} is missing",
                    op.id
                ));
            }
        }
        if problems.is_empty() {
            Ok(Some((op.id.clone(), key)))
        } else {
            Err(problems)
        }
    }

    fn validate_body(&self, id: &str, key: &str, schema: &Value, instance: &Value) -> Vec<String> {
        let mut schema = to_json_schema(schema);
        schema[DEFINITIONS] = self.definitions.clone();
        let validator = codegen_runtime::validation_options()
            .build(&schema)
            .expect("response schema compiles");
        validator
            .iter_errors(instance)
            .map(|error| format!("{id} {key}: {} at {}", error, error.instance_path()))
            .collect()
    }
}

fn matches(template: &[String], path: &[&str]) -> bool {
    template.len() == path.len()
        && template
            .iter()
            .zip(path)
            .all(|(t, p)| (t.starts_with('{') && t.ends_with('}') && !p.is_empty()) || t == p)
}
