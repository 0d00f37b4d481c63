//! House rules for `openapi.yaml` that linters do not check, so that a later change
//! cannot quietly break them: bounds on every value, closed request objects, complete
//! operations, and errors that progenitor can type.

use codegen::Document;
use codegen::model::{self, is_binary};
use serde_json::Value;

fn document() -> Document {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.yaml"))
        .expect("spec");
    Document::parse(&text).expect("an OpenAPI 3.0 document")
}

/// A media type needs an example unless it is raw bytes (an image has none to write).
fn needs_example(media: &Value) -> bool {
    !is_binary(media) && media.get("example").is_none() && media.get("examples").is_none()
}

fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    model::resolve(doc, value).expect("reference resolves")
}

/// Calls `visit(path, schema)` on `schema` and every schema nested in it, following refs
/// when `follow_refs` (to check what a request body really admits).
fn walk(
    doc: &Value,
    path: &str,
    schema: &Value,
    follow_refs: bool,
    visit: &mut dyn FnMut(&str, &Value),
) {
    let schema = if follow_refs {
        resolve(doc, schema)
    } else {
        schema
    };
    visit(path, schema);
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            walk(doc, &format!("{path}/{name}"), property, follow_refs, visit);
        }
    }
    for key in ["items", "additionalProperties", "not"] {
        if let Some(child) = schema.get(key).filter(|c| c.is_object()) {
            walk(doc, &format!("{path}/{key}"), child, follow_refs, visit);
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        for (i, child) in schema
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            walk(doc, &format!("{path}/{key}/{i}"), child, follow_refs, visit);
        }
    }
}

/// Every schema written in the document: components, parameters, bodies, headers.
fn every_schema(doc: &Value) -> Vec<(String, Value)> {
    let mut found = Vec::new();
    let mut collect = |path: String, value: &Value| {
        if let Value::Object(map) = value {
            for (key, child) in map {
                if key == "schema" {
                    found.push((format!("{path}/schema"), child.clone()));
                }
            }
        }
    };
    fn recurse(path: String, value: &Value, collect: &mut dyn FnMut(String, &Value)) {
        collect(path.clone(), value);
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    if k != "schema" && k != "example" && k != "examples" {
                        recurse(format!("{path}/{k}"), v, collect);
                    }
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    recurse(format!("{path}/{i}"), v, collect);
                }
            }
            _ => {}
        }
    }
    recurse(String::new(), &doc["paths"], &mut collect);
    recurse(
        "/components".into(),
        &doc["components"]["parameters"],
        &mut collect,
    );
    recurse(
        "/components".into(),
        &doc["components"]["headers"],
        &mut collect,
    );
    recurse(
        "/components".into(),
        &doc["components"]["responses"],
        &mut collect,
    );
    for (name, schema) in doc["components"]["schemas"].as_object().expect("schemas") {
        found.push((format!("/components/schemas/{name}"), schema.clone()));
    }
    found
}

#[test]
fn every_string_array_and_integer_is_bounded() {
    let doc = document();
    let mut unbounded = Vec::new();
    for (path, schema) in every_schema(&doc.raw) {
        walk(&doc.raw, &path, &schema, false, &mut |path, schema| {
            let missing = match schema.get("type").and_then(Value::as_str) {
                Some("string")
                    if schema.get("format").and_then(Value::as_str) == Some("binary") =>
                {
                    None
                }
                // progenitor pages only when `next_page` and `page_token` are plain
                // strings; the server refuses any token it did not issue.
                Some("string")
                    if path.ends_with("/next_page") || path.ends_with("/PageToken/schema") =>
                {
                    None
                }
                Some("string") => schema.get("maxLength").is_none().then_some("maxLength"),
                Some("array") => schema.get("maxItems").is_none().then_some("maxItems"),
                Some("integer") if schema.get("minimum").is_none() => Some("minimum"),
                Some("integer") => schema.get("maximum").is_none().then_some("maximum"),
                _ => None,
            };
            if let Some(keyword) = missing {
                unbounded.push(format!("{path}: no {keyword}"));
            }
        });
    }
    assert!(
        unbounded.is_empty(),
        "unbounded values:\n{}",
        unbounded.join("\n")
    );
}

#[test]
fn objects_that_clients_send_admit_no_unknown_properties() {
    let doc = document();
    let mut open = Vec::new();
    for op in doc.operations().expect("operations") {
        let Some(body) = op.request_body().expect("request body") else {
            continue;
        };
        for (media, content) in body["content"].as_object().expect("content") {
            let Some(schema) = content.get("schema") else {
                continue;
            };
            walk(
                &doc.raw,
                &format!("{} {} {media}", op.method, op.path),
                schema,
                true,
                &mut |at, schema| {
                    let is_object = schema.get("type").and_then(Value::as_str) == Some("object");
                    if is_object && schema.get("additionalProperties") != Some(&Value::Bool(false))
                    {
                        open.push(at.to_owned());
                    }
                },
            );
        }
    }
    assert!(
        open.is_empty(),
        "request objects without additionalProperties: false:\n{}",
        open.join("\n")
    );
}

#[test]
fn every_operation_is_complete() {
    let doc = document();
    let mut gaps = Vec::new();
    for op in doc.operations().expect("operations") {
        let at = format!("{} {}", op.method.to_uppercase(), op.path);
        for field in ["operationId", "summary", "tags", "security"] {
            if op.value.get(field).is_none() {
                gaps.push(format!("{at}: no {field}"));
            }
        }
        for (status, response) in op.responses().expect("responses") {
            if status == "201" && response.pointer("/headers/Location").is_none() {
                gaps.push(format!("{at} 201: no Location header"));
            }
            if status.starts_with(['4', '5']) {
                let content = response["content"].as_object().cloned().unwrap_or_default();
                let problem = serde_json::json!({"$ref": "#/components/schemas/Problem"});
                for media in ["application/problem+json", "application/json"] {
                    if content.get(media).and_then(|m| m.get("schema")) != Some(&problem) {
                        gaps.push(format!("{at} {status}: {media} is not the Problem schema"));
                    }
                }
            }
            if status.starts_with('2')
                && let Some(content) = response.get("content").and_then(Value::as_object)
                && content.values().any(needs_example)
            {
                gaps.push(format!("{at} {status}: no example"));
            }
        }
        if let Some(body) = op.request_body().expect("request body") {
            let content = body["content"].as_object().cloned().unwrap_or_default();
            if content.len() != 1 {
                gaps.push(format!("{at}: a request body needs exactly one media type"));
            }
            if content.values().any(needs_example) {
                gaps.push(format!("{at}: request body has no example"));
            }
        }
    }
    assert!(
        gaps.is_empty(),
        "incomplete operations:\n{}",
        gaps.join("\n")
    );
}
