//! The model: the parts of the OpenAPI document the server is generated from, read once.
//! The document is walked through the shared [`crate::model`] (operations, parameters,
//! bodies and responses with their references followed); this adds what the server needs.
//!
//! Every `$ref` outside schemas is resolved here and every schema translated to JSON
//! Schema, so that emission never looks at the raw document again; and every shape the
//! generator cannot serve (no `operationId`, cookie parameters, a body with several media
//! types, parameters whose names collide) is refused here, with the operation named. The
//! model also yields `request_schemas.json`, which is data rather than code.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use heck::ToSnakeCase;
use serde_json::{Map, Value, json};

pub(super) use crate::model::is_json;
use crate::model::{self, json_schema_definitions, resolve};
use crate::response_cache;
use crate::schema::{DEFINITIONS, to_json_schema};
use crate::security::{self, Requirement, Scheme};

/// The parts of the document the server needs, with every `$ref` outside schemas resolved
/// and every schema translated to JSON Schema.
pub(super) struct Model {
    pub(super) definitions: BTreeMap<String, Value>,
    pub(super) schemes: Vec<Scheme>,
    pub(super) operations: Vec<Operation>,
}

pub(super) struct Operation {
    pub(super) id: String,
    /// The tag whose trait the operation's method belongs to.
    pub(super) tag: String,
    pub(super) requirement: Requirement,
    /// Response headers the document says a middleware sets (`x-set-by`), lowercase.
    pub(super) middleware_headers: std::collections::BTreeSet<String>,
    /// Seconds a response cache may keep the 200 answer (`x-minitter-cache`), if it may.
    pub(super) cache_ttl_seconds: Option<u64>,
    pub(super) method: String,
    pub(super) path: String,
    pub(super) doc: String,
    pub(super) params: Vec<Param>,
    pub(super) body: Option<Body>,
    pub(super) responses: Vec<Response>,
}

pub(super) struct Param {
    pub(super) name: String,
    pub(super) location: &'static str,
    pub(super) required: bool,
    pub(super) schema: Value,
}

pub(super) struct Body {
    pub(super) media_type: String,
    pub(super) required: bool,
    pub(super) schema: Option<Value>,
}

pub(super) struct Response {
    /// `201`, `4XX` or `default`.
    pub(super) status: String,
    pub(super) description: String,
    pub(super) media_type: Option<String>,
    /// The handler chooses among several media types (or a wildcard) at run time.
    pub(super) chosen_media_type: bool,
    pub(super) schema: Option<Value>,
    pub(super) headers: Vec<Header>,
}

pub(super) struct Header {
    pub(super) name: String,
    pub(super) required: bool,
    pub(super) schema: Value,
}

impl Model {
    pub(super) fn read(raw: &Value) -> Result<Self> {
        let definitions = json_schema_definitions(raw);
        let schemes = Scheme::read_all(raw)?;
        let operations = model::operations(raw)?
            .iter()
            .map(|operation| Operation::read(raw, operation, &schemes))
            .collect::<Result<_>>()?;
        Ok(Self {
            definitions,
            schemes,
            operations,
        })
    }

    /// The JSON Schemas requests are validated against, per operation and location.
    pub(super) fn request_schemas(&self) -> Value {
        let mut operations = Map::new();
        for operation in &self.operations {
            let mut schemas = Map::new();
            for location in ["path", "query", "header"] {
                let params: Vec<&Param> = operation
                    .params
                    .iter()
                    .filter(|p| p.location == location)
                    .collect();
                if !params.is_empty() {
                    schemas.insert(location.to_owned(), object_schema(&params));
                }
            }
            if let Some(Body {
                schema: Some(schema),
                media_type,
                ..
            }) = &operation.body
                && is_json(media_type)
            {
                schemas.insert("body".to_owned(), schema.clone());
            }
            operations.insert(operation.id.clone(), Value::Object(schemas));
        }
        json!({ DEFINITIONS: self.definitions, "operations": operations })
    }
}

/// The schema of the object of `params`. Parameters the document does not declare are
/// ignored rather than refused: HTTP clients and proxies add their own.
pub(super) fn object_schema(params: &[&Param]) -> Value {
    let properties: Map<String, Value> = params
        .iter()
        .map(|p| (p.name.clone(), p.schema.clone()))
        .collect();
    let required: Vec<&str> = params
        .iter()
        .filter(|p| p.required)
        .map(|p| p.name.as_str())
        .collect();
    let mut schema = json!({ "type": "object", "properties": properties });
    // Draft 4 forbids an empty `required`.
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    schema
}

impl Operation {
    fn read(raw: &Value, operation: &model::Operation<'_>, schemes: &[Scheme]) -> Result<Self> {
        let (path, op) = (operation.path, operation.value);
        let id = operation
            .id()
            .with_context(|| format!("{} {path} has no operationId", operation.method))?
            .to_owned();
        let requirement = Requirement::read(raw, op, &id, schemes)?;
        let tag = security::tag_of(op);
        let method = operation.method.to_ascii_uppercase();
        let cache_ttl_seconds = response_cache::ttl_seconds(op, &id, &method)?;
        let doc = [op.get("summary"), op.get("description")]
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("\n\n");

        let mut params: Vec<Param> = Vec::new();
        for param in operation.parameters()? {
            let name = param.name.to_owned();
            let location = match param.location {
                "path" => "path",
                "query" => "query",
                "header" => "header",
                other => bail!("{id}: parameters in {other} are not supported"),
            };
            let schema = param
                .value
                .get("schema")
                .with_context(|| format!("{id}: parameter {name} has no schema"))?;
            let required =
                location == "path" || param.value.get("required") == Some(&Value::Bool(true));
            params.push(Param {
                name,
                location,
                required,
                schema: to_json_schema(schema),
            });
        }
        let mut seen = std::collections::HashSet::new();
        for param in &params {
            if !seen.insert(param.name.to_snake_case()) {
                bail!("{id}: two parameters are both named {:?}", param.name);
            }
        }

        let body = match operation.request_body()? {
            None => None,
            Some(body) => {
                let content = body
                    .get("content")
                    .and_then(Value::as_object)
                    .with_context(|| format!("{id}: request body without content"))?;
                if content.len() != 1 {
                    bail!("{id}: a request body must have exactly one media type");
                }
                let (media_type, media) = content.iter().next().context("checked above")?;
                Some(Body {
                    media_type: media_type.clone(),
                    required: body.get("required") == Some(&Value::Bool(true)),
                    schema: media.get("schema").map(to_json_schema),
                })
            }
        };

        let mut responses = Vec::new();
        let mut middleware_headers = std::collections::BTreeSet::new();
        for (status, response) in operation.responses()? {
            let content = response.get("content").and_then(Value::as_object);
            let first = content.and_then(|c| c.iter().next());
            let mut headers = Vec::new();
            let declared_headers = response.get("headers").and_then(Value::as_object);
            for (name, header) in declared_headers.into_iter().flatten() {
                if name.eq_ignore_ascii_case("content-type") {
                    continue;
                }
                let header = resolve(raw, header)?;
                // Headers a middleware sets (such as rate-limit headers) are not the
                // handler's to fill: they stay out of the response enum, and the
                // middleware learns from `MIDDLEWARE_HEADERS` which operations declare them.
                if header.get("x-set-by").is_some() {
                    middleware_headers.insert(name.to_ascii_lowercase());
                    continue;
                }
                headers.push(Header {
                    name: name.to_ascii_lowercase(),
                    required: header.get("required") == Some(&Value::Bool(true)),
                    schema: header
                        .get("schema")
                        .map(to_json_schema)
                        .unwrap_or(json!({"type": "string"})),
                });
            }
            responses.push(Response {
                status: status.to_owned(),
                description: response
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                media_type: first.map(|(media_type, _)| media_type.clone()),
                chosen_media_type: content
                    .is_some_and(|c| c.len() > 1 || c.keys().any(|m| m.contains('*'))),
                schema: first
                    .and_then(|(_, media)| media.get("schema"))
                    .map(to_json_schema),
                headers,
            });
        }
        Ok(Self {
            id,
            tag,
            requirement,
            middleware_headers,
            cache_ttl_seconds,
            method,
            path: path.to_owned(),
            doc,
            params,
            body,
            responses,
        })
    }
}

/// The JSON type a parameter's text converts to, and whether it is an array.
pub(super) fn scalar_of(
    schema: &Value,
    definitions: &BTreeMap<String, Value>,
) -> (&'static str, bool) {
    let schema = follow(schema, definitions);
    let ty = |s: &Value| -> &'static str {
        let t = match s.get("type") {
            Some(Value::Array(types)) => types
                .iter()
                .find_map(|t| t.as_str().filter(|t| *t != "null")),
            Some(Value::String(t)) => Some(t.as_str()),
            _ => None,
        };
        match t {
            Some("integer") => "Integer",
            Some("number") => "Number",
            Some("boolean") => "Boolean",
            _ => "String",
        }
    };
    match schema.get("type").and_then(Value::as_str) {
        Some("array") => {
            let items = schema
                .get("items")
                .map(|i| follow(i, definitions))
                .unwrap_or(&Value::Null);
            (ty(items), true)
        }
        _ => (ty(schema), false),
    }
}

fn follow<'a>(schema: &'a Value, definitions: &'a BTreeMap<String, Value>) -> &'a Value {
    let mut current = schema;
    for _ in 0..16 {
        let Some(name) = current.get("$ref").and_then(Value::as_str).and_then(|r| {
            r.strip_prefix(&format!("#/{DEFINITIONS}/"))
                .map(str::to_owned)
        }) else {
            break;
        };
        match definitions.get(&name) {
            Some(next) => current = next,
            None => break,
        }
    }
    current
}
