//! Translation of OpenAPI 3.0 Schema Objects into JSON Schema (draft 4).
//!
//! OpenAPI 3.0 schemas are a dialect of JSON Schema draft wright-00: `nullable` stands
//! where JSON Schema uses a `null` type, and a few keywords (`example`, `discriminator`,
//! `xml`, `externalDocs`, `readOnly`, `writeOnly`, `deprecated`) are annotations that
//! validators do not know. Both typify (for the Rust types) and the runtime validator
//! (jsonschema) want plain JSON Schema, so every schema goes through [`to_json_schema`]
//! exactly once, here, and both consumers see the same translation.

use serde_json::{Map, Value};

/// Where component schemas live in the generated validation document; `$ref`s to
/// `#/components/schemas/X` are rewritten to point here.
pub const DEFINITIONS: &str = "definitions";

const ANNOTATIONS: &[&str] = &[
    "example",
    "discriminator",
    "xml",
    "externalDocs",
    "readOnly",
    "writeOnly",
    "deprecated",
];

/// Translates one OpenAPI 3.0 schema (as JSON) into JSON Schema draft 4.
pub fn to_json_schema(schema: &Value) -> Value {
    let Value::Object(object) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (key, value) in object {
        if ANNOTATIONS.contains(&key.as_str()) || key.starts_with("x-") || key == "nullable" {
            continue;
        }
        let translated = match key.as_str() {
            "$ref" => Value::String(rewrite_ref(value.as_str().unwrap_or_default())),
            "properties" | "patternProperties" => map_values(value, to_json_schema),
            "items" | "not" => to_json_schema(value),
            "additionalProperties" if value.is_object() => to_json_schema(value),
            "allOf" | "anyOf" | "oneOf" => map_items(value, to_json_schema),
            _ => value.clone(),
        };
        out.insert(key.clone(), translated);
    }
    if object.get("nullable") == Some(&Value::Bool(true)) {
        return make_nullable(out);
    }
    Value::Object(out)
}

/// The same schema without the keywords that only constrain values (lengths, patterns).
///
/// The server's Rust types are generated from these: requests are validated against the
/// full schema before they are deserialized, so the server needs no constrained newtypes,
/// only the shape. Keywords that choose a Rust type (`type`, `format`, integer bounds,
/// `enum`) stay.
pub fn without_value_constraints(schema: &Value) -> Value {
    let Value::Object(object) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (key, value) in object {
        let translated = match key.as_str() {
            "minLength" | "maxLength" | "pattern" | "minItems" | "maxItems" | "uniqueItems"
            | "minProperties" | "maxProperties" => continue,
            "properties" | "patternProperties" => map_values(value, without_value_constraints),
            "items" | "not" => without_value_constraints(value),
            "additionalProperties" if value.is_object() => without_value_constraints(value),
            "allOf" | "anyOf" | "oneOf" => map_items(value, without_value_constraints),
            "definitions" => map_values(value, without_value_constraints),
            _ => value.clone(),
        };
        out.insert(key.clone(), translated);
    }
    Value::Object(out)
}

fn rewrite_ref(reference: &str) -> String {
    match reference.strip_prefix("#/components/schemas/") {
        Some(name) => format!("#/{DEFINITIONS}/{name}"),
        None => reference.to_owned(),
    }
}

fn make_nullable(mut schema: Map<String, Value>) -> Value {
    if let Some(Value::Array(values)) = schema.get_mut("enum")
        && !values.contains(&Value::Null)
    {
        values.push(Value::Null);
    }
    match schema.get("type").cloned() {
        Some(Value::String(single)) => {
            schema.insert(
                "type".into(),
                Value::Array(vec![single.into(), "null".into()]),
            );
            Value::Object(schema)
        }
        _ => {
            let mut wrapper = Map::new();
            let null = Value::Object(Map::from_iter([("type".to_owned(), "null".into())]));
            wrapper.insert(
                "anyOf".into(),
                Value::Array(vec![Value::Object(schema), null]),
            );
            Value::Object(wrapper)
        }
    }
}

fn map_values(value: &Value, f: fn(&Value) -> Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), f(v))).collect()),
        other => other.clone(),
    }
}

fn map_items(value: &Value, f: fn(&Value) -> Value) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.iter().map(f).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nullable_becomes_a_null_type() {
        let schema = json!({"type": "string", "nullable": true, "maxLength": 3});
        assert_eq!(
            to_json_schema(&schema),
            json!({"type": ["string", "null"], "maxLength": 3})
        );
    }

    #[test]
    fn nullable_enum_admits_null() {
        let schema = json!({"type": "string", "enum": ["a"], "nullable": true});
        assert_eq!(
            to_json_schema(&schema),
            json!({"type": ["string", "null"], "enum": ["a", null]})
        );
    }

    #[test]
    fn component_refs_point_at_definitions_and_annotations_are_dropped() {
        let schema = json!({
            "type": "object",
            "example": {"a": 1},
            "properties": {"a": {"$ref": "#/components/schemas/A", "readOnly": true}},
        });
        assert_eq!(
            to_json_schema(&schema),
            json!({"type": "object", "properties": {"a": {"$ref": "#/definitions/A"}}})
        );
    }

    #[test]
    fn a_property_named_like_a_keyword_is_kept() {
        let schema = json!({"type": "object", "properties": {"example": {"type": "string"}}});
        assert_eq!(to_json_schema(&schema), schema);
    }

    #[test]
    fn value_constraints_are_stripped_but_type_choices_stay() {
        let schema = json!({
            "type": "object",
            "properties": {"n": {"type": "integer", "minimum": 1, "maxLength": 2},
                           "s": {"type": "string", "format": "uuid", "pattern": "x"}},
        });
        assert_eq!(
            without_value_constraints(&schema),
            json!({"type": "object", "properties": {"n": {"type": "integer", "minimum": 1},
                                                      "s": {"type": "string", "format": "uuid"}}})
        );
    }
}
