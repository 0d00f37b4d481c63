//! The OpenAPI document as everything that walks it sees it: its operations (with method,
//! path, `operationId` and tags), their parameters, request bodies and responses with
//! every `$ref` followed, and the component schemas translated to JSON Schema.
//!
//! This is the one walker of the document. The server generator builds its own richer
//! model on top of it (`server::model`), and the contract tests and the spec's house rules
//! (`contract-tests/`) walk the document through it too, so that "which keys of a path item
//! are operations", "how a reference resolves" and "which parameters an operation has"
//! are answered once.
//!
//! Everything here borrows the raw JSON ([`Document::raw`](crate::Document)): schemas
//! keep every keyword exactly as written, and a consumer that wants a schema as JSON
//! Schema translates it with [`to_json_schema`] (or takes [`json_schema_definitions`]).

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::schema::to_json_schema;

/// The keys of a path item that are operations, in the order operations are read.
pub const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// One operation of the document, borrowed from its raw JSON.
#[derive(Debug, Clone, Copy)]
pub struct Operation<'a> {
    /// The path template, such as `/v1/users/{user_id}`.
    pub path: &'a str,
    /// The method in lowercase, as the document writes it (`get`).
    pub method: &'static str,
    /// The Operation Object.
    pub value: &'a Value,
    /// The Path Item Object it belongs to (its `$ref` followed).
    pub item: &'a Value,
    /// The whole document, for references.
    pub document: &'a Value,
}

/// One parameter of an operation, its `$ref` followed.
#[derive(Debug, Clone, Copy)]
pub struct Parameter<'a> {
    pub name: &'a str,
    /// `path`, `query`, `header` or `cookie`.
    pub location: &'a str,
    /// The Parameter Object.
    pub value: &'a Value,
}

/// The document's operations: its paths in document order, and on each path the methods
/// in [`METHODS`] order.
pub fn operations(document: &Value) -> Result<Vec<Operation<'_>>> {
    let mut operations = Vec::new();
    let paths = document.get("paths").and_then(Value::as_object);
    for (path, item) in paths.into_iter().flatten() {
        let item = resolve(document, item)?;
        for method in METHODS {
            if let Some(value) = item.get(method) {
                operations.push(Operation {
                    path,
                    method,
                    value,
                    item,
                    document,
                });
            }
        }
    }
    Ok(operations)
}

/// Follows a local `$ref` (and the references it leads to) to the value it names.
pub fn resolve<'a>(document: &'a Value, value: &'a Value) -> Result<&'a Value> {
    let mut current = value;
    for _ in 0..16 {
        match current.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let pointer = reference
                    .strip_prefix('#')
                    .with_context(|| format!("only local references are supported: {reference}"))?;
                current = document
                    .pointer(pointer)
                    .with_context(|| format!("unresolved reference {reference}"))?;
            }
            None => return Ok(current),
        }
    }
    bail!("reference cycle")
}

/// The component schemas (`#/components/schemas`), each translated to JSON Schema.
pub fn json_schema_definitions(document: &Value) -> BTreeMap<String, Value> {
    document
        .pointer("/components/schemas")
        .and_then(Value::as_object)
        .map(|schemas| {
            schemas
                .iter()
                .map(|(name, schema)| (name.clone(), to_json_schema(schema)))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a media type is JSON (`application/json`, or any `+json` type), parameters
/// such as `; charset=utf-8` aside.
pub fn is_json(media_type: &str) -> bool {
    let essence = media_type.split(';').next().unwrap_or_default().trim();
    essence == "application/json" || essence.ends_with("+json")
}

/// Whether a Media Type Object carries raw bytes (`format: binary`), which no schema
/// describes and no example shows.
pub fn is_binary(media: &Value) -> bool {
    media.pointer("/schema/format").and_then(Value::as_str) == Some("binary")
}

impl<'a> Operation<'a> {
    /// The `operationId`, if the document gives one.
    pub fn id(&self) -> Option<&'a str> {
        self.value.get("operationId").and_then(Value::as_str)
    }

    /// The `operationId`, or `METHOD path` when there is none: how errors name it.
    pub fn label(&self) -> String {
        match self.id() {
            Some(id) => id.to_owned(),
            None => format!("{} {}", self.method.to_ascii_uppercase(), self.path),
        }
    }

    /// The tags, in document order.
    pub fn tags(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        self.value
            .get("tags")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
    }

    /// The parameters: the path item's, then the operation's own, each resolved. An
    /// operation's parameter replaces a path-level one of the same name and location (and
    /// then comes after the path-level ones).
    pub fn parameters(&self) -> Result<Vec<Parameter<'a>>> {
        let shared = self.item.get("parameters").and_then(Value::as_array);
        let own = self.value.get("parameters").and_then(Value::as_array);
        let mut parameters: Vec<Parameter<'a>> = Vec::new();
        for value in shared
            .into_iter()
            .flatten()
            .chain(own.into_iter().flatten())
        {
            let value = resolve(self.document, value)?;
            let field = |field: &str| {
                value
                    .get(field)
                    .and_then(Value::as_str)
                    .with_context(|| format!("{}: a parameter without {field}", self.label()))
            };
            let (name, location) = (field("name")?, field("in")?);
            parameters.retain(|p| !(p.name == name && p.location == location));
            parameters.push(Parameter {
                name,
                location,
                value,
            });
        }
        Ok(parameters)
    }

    /// The Request Body Object, resolved, if the operation takes a body.
    pub fn request_body(&self) -> Result<Option<&'a Value>> {
        self.value
            .get("requestBody")
            .map(|body| resolve(self.document, body))
            .transpose()
    }

    /// The responses, by status key (`201`, `4XX`, `default`) in document order, each
    /// Response Object resolved.
    pub fn responses(&self) -> Result<Vec<(&'a str, &'a Value)>> {
        let declared = self
            .value
            .get("responses")
            .and_then(Value::as_object)
            .with_context(|| format!("{}: no responses", self.label()))?;
        declared
            .iter()
            .map(|(status, response)| Ok((status.as_str(), resolve(self.document, response)?)))
            .collect()
    }
}

impl crate::Document {
    /// The document's operations; see [`operations`].
    pub fn operations(&self) -> Result<Vec<Operation<'_>>> {
        operations(&self.raw)
    }

    /// Follows a `$ref` in this document; see [`resolve`].
    pub fn resolve<'a>(&'a self, value: &'a Value) -> Result<&'a Value> {
        resolve(&self.raw, value)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn document() -> Value {
        json!({
            "paths": {
                "/pets/{id}": {
                    "parameters": [
                        {"$ref": "#/components/parameters/Id"},
                        {"name": "trace", "in": "header"}
                    ],
                    "post": {"operationId": "touch", "responses": {"204": {}}},
                    "get": {
                        "operationId": "get_pet",
                        "tags": ["pets", "reads"],
                        "parameters": [{"name": "id", "in": "path", "description": "own"}],
                        "responses": {"200": {"$ref": "#/components/responses/Pet"}}
                    },
                    "summary": "not an operation"
                }
            },
            "components": {
                "parameters": {"Id": {"$ref": "#/components/parameters/RealId"},
                               "RealId": {"name": "id", "in": "path"}},
                "responses": {"Pet": {"description": "a pet"}},
                "schemas": {"Name": {"type": "string", "nullable": true}}
            }
        })
    }

    #[test]
    fn operations_are_the_method_keys_in_method_order() {
        let doc = document();
        let operations = operations(&doc).expect("operations");
        let found: Vec<(&str, Option<&str>)> =
            operations.iter().map(|op| (op.method, op.id())).collect();
        assert_eq!(found, [("get", Some("get_pet")), ("post", Some("touch"))]);
        assert_eq!(operations[0].tags().collect::<Vec<_>>(), ["pets", "reads"]);
    }

    #[test]
    fn an_own_parameter_replaces_a_shared_one_and_references_are_followed() {
        let doc = document();
        let get = operations(&doc).expect("operations")[0];
        let parameters = get.parameters().expect("parameters");
        let names: Vec<(&str, &str)> = parameters.iter().map(|p| (p.name, p.location)).collect();
        assert_eq!(names, [("trace", "header"), ("id", "path")]);
        assert_eq!(parameters[1].value["description"], "own");
        let responses = get.responses().expect("responses");
        assert_eq!(responses[0].0, "200");
        assert_eq!(responses[0].1["description"], "a pet");
    }

    #[test]
    fn references_that_lead_nowhere_or_in_circles_are_errors() {
        let doc = json!({"a": {"$ref": "#/b"}, "b": {"$ref": "#/a"}});
        assert!(resolve(&doc, &json!({"$ref": "#/missing"})).is_err());
        assert!(resolve(&doc, &json!({"$ref": "other.yaml#/x"})).is_err());
        assert!(resolve(&doc, &doc["a"]).is_err());
        let definitions = json_schema_definitions(&document());
        assert_eq!(definitions["Name"]["type"], json!(["string", "null"]));
    }
}
