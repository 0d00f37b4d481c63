//! An AsyncAPI 3.0 document's messages as Rust: the message types, and the schemas the
//! messages a server receives are validated against before they are routed.
//!
//! A realtime channel is built the way the REST API is: its contract is written first,
//! and the server's types come from it through the same path as the REST types (the
//! schemas translated by [`crate::schema`], then typify), so that a message and the REST
//! resource it carries cannot disagree. The document may reference the OpenAPI
//! document's component schemas (`./openapi.yaml#/components/schemas/Tweet`): those are
//! not generated again but name the REST type (`super::types::Tweet`), and their schemas
//! join the validation document.
//!
//! Routing follows the API-gateway pattern of WebSocket APIs (a route selected by a field
//! of the message): every message the server *receives* is an object whose route
//! property (`action`, say) holds a single `enum` value naming its route. The output:
//! - `stream.rs`: the types, a `Route` enum (one variant per received message, carrying
//!   its type) and `route(&str)`, which parses a message, picks the route by the property, validates the
//!   message against that route's schema and deserializes it, reporting every violation
//!   with its JSON pointer as a REST 400 does;
//! - `stream_schemas.json`: those schemas, per route, in the format of
//!   `request_schemas.json` (a route is an "operation" whose body is the message).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, bail};
use heck::ToUpperCamelCase;
use proc_macro2::{Ident, Span};
use quote::quote;
use serde_json::{Map, Value, json};
use typify::{TypeSpace, TypeSpaceSettings};

use crate::schema::{DEFINITIONS, to_json_schema, without_value_constraints};
use crate::{Document, GeneratedFile, render};

/// How the AsyncAPI document names the OpenAPI document it takes schemas from.
const OPENAPI_REF: &str = "./openapi.yaml#/components/schemas/";

/// A message the server receives, and the route its property selects.
struct Route {
    /// The route property's value: `subscribe`.
    name: String,
    /// The component schema of its payload: `SubscribeMessage`.
    schema: String,
}

/// Generates `stream.rs` and `stream_schemas.json` from `asyncapi` (YAML or JSON), whose
/// references into the OpenAPI document are resolved against `openapi`. `route_by` is the
/// property that selects a received message's route.
pub fn generate(asyncapi: &str, openapi: &Document, route_by: &str) -> Result<Vec<GeneratedFile>> {
    let raw: Value =
        serde_yaml_ng::from_str(asyncapi).context("the AsyncAPI document is not YAML")?;
    let version = raw
        .get("asyncapi")
        .and_then(Value::as_str)
        .unwrap_or_default();
    anyhow::ensure!(
        version.starts_with("3."),
        "only AsyncAPI 3.x is supported, found {version:?}"
    );
    let own = own_schemas(&raw)?;
    let rest = crate::model::json_schema_definitions(&openapi.raw);
    if let Some(name) = own.keys().find(|name| rest.contains_key(*name)) {
        bail!("schema {name} is defined in both documents; rename one");
    }
    let borrowed = borrowed_schemas(&own, &rest)?;
    let routes = routes(&raw, &own, route_by)?;

    let mut definitions: BTreeMap<String, Value> = own.clone();
    definitions.extend(
        borrowed
            .iter()
            .map(|name| (name.clone(), rest[name].clone())),
    );
    let operations: Map<String, Value> = routes
        .iter()
        .map(|route| {
            let body = json!({ "$ref": format!("#/{DEFINITIONS}/{}", route.schema) });
            (route.name.clone(), json!({ "body": body }))
        })
        .collect();
    let schemas = json!({ DEFINITIONS: definitions, "operations": operations });

    Ok(vec![
        GeneratedFile {
            name: "stream.rs".to_owned(),
            contents: rust_file(&own, &borrowed, &rest, &routes, route_by)?,
        },
        GeneratedFile {
            name: "stream_schemas.json".to_owned(),
            contents: serde_json::to_string_pretty(&schemas)? + "\n",
        },
    ])
}

/// The document's own component schemas, translated to JSON Schema, with references into
/// the OpenAPI document made local (`#/definitions/Tweet`).
fn own_schemas(raw: &Value) -> Result<BTreeMap<String, Value>> {
    let schemas = raw
        .pointer("/components/schemas")
        .and_then(Value::as_object)
        .context("the AsyncAPI document has no components.schemas")?;
    Ok(schemas
        .iter()
        .map(|(name, schema)| (name.clone(), to_json_schema(&local_refs(schema))))
        .collect())
}

/// `schema` with `./openapi.yaml#/components/schemas/X` written `#/components/schemas/X`
/// (which the translation then points at the definitions).
fn local_refs(schema: &Value) -> Value {
    match schema {
        Value::Object(object) => Value::Object(
            object
                .iter()
                .map(|(key, value)| match (key.as_str(), value.as_str()) {
                    ("$ref", Some(reference)) => (
                        key.clone(),
                        Value::String(reference.replace(OPENAPI_REF, "#/components/schemas/")),
                    ),
                    _ => (key.clone(), local_refs(value)),
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(local_refs).collect()),
        other => other.clone(),
    }
}

/// The OpenAPI schemas the document's own schemas reach, directly or through each other.
fn borrowed_schemas(
    own: &BTreeMap<String, Value>,
    rest: &BTreeMap<String, Value>,
) -> Result<BTreeSet<String>> {
    let mut borrowed = BTreeSet::new();
    let mut pending: Vec<String> = own.values().flat_map(references).collect();
    while let Some(name) = pending.pop() {
        if own.contains_key(&name) || borrowed.contains(&name) {
            continue;
        }
        let schema = rest
            .get(&name)
            .with_context(|| format!("#/components/schemas/{name} is in neither document"))?;
        pending.extend(references(schema));
        borrowed.insert(name);
    }
    Ok(borrowed)
}

/// The definitions a translated schema references.
fn references(schema: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![schema];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(object) => {
                if let Some(name) = object
                    .get("$ref")
                    .and_then(Value::as_str)
                    .and_then(|r| r.strip_prefix(&format!("#/{DEFINITIONS}/")))
                {
                    found.push(name.to_owned());
                }
                stack.extend(object.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    found
}

/// The messages of the `receive` operations, each with the route its payload's
/// `route_by` property selects; sorted by route.
fn routes(raw: &Value, own: &BTreeMap<String, Value>, route_by: &str) -> Result<Vec<Route>> {
    let mut routes: Vec<Route> = Vec::new();
    let operations = raw.get("operations").and_then(Value::as_object);
    for (id, operation) in operations.into_iter().flatten() {
        if operation.get("action").and_then(Value::as_str) != Some("receive") {
            continue;
        }
        for message in operation
            .get("messages")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let message = follow(raw, message)?;
            let schema = message
                .pointer("/payload/$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/components/schemas/"))
                .with_context(|| {
                    format!(
                        "operation {id}: a received message's payload must be a component schema"
                    )
                })?;
            let name = own[schema]
                .pointer(&format!("/properties/{route_by}/enum"))
                .and_then(Value::as_array)
                .filter(|values| values.len() == 1)
                .and_then(|values| values[0].as_str())
                .with_context(|| {
                    format!("{schema}: its `{route_by}` property must be an enum of one string")
                })?;
            if routes.iter().any(|route| route.name == name) {
                bail!("two received messages select the route {name:?}");
            }
            routes.push(Route {
                name: name.to_owned(),
                schema: schema.to_owned(),
            });
        }
    }
    anyhow::ensure!(!routes.is_empty(), "the document receives no message");
    routes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(routes)
}

/// The object a local `$ref` points at (followed through further references).
fn follow<'a>(raw: &'a Value, value: &'a Value) -> Result<&'a Value> {
    let mut value = value;
    for _ in 0..8 {
        let Some(reference) = value.get("$ref").and_then(Value::as_str) else {
            return Ok(value);
        };
        let pointer = reference
            .strip_prefix('#')
            .with_context(|| format!("only local references are followed: {reference}"))?;
        value = raw
            .pointer(pointer)
            .with_context(|| format!("{reference} does not exist"))?;
    }
    bail!("references nest too deep")
}

/// `stream.rs`: the types, the `Route` enum and `route`.
fn rust_file(
    own: &BTreeMap<String, Value>,
    borrowed: &BTreeSet<String>,
    rest: &BTreeMap<String, Value>,
    routes: &[Route],
    route_by: &str,
) -> Result<String> {
    let mut settings = TypeSpaceSettings::default();
    settings.with_type_mod("stream");
    for name in borrowed {
        settings.with_replacement(name, format!("super::types::{name}"), std::iter::empty());
    }
    let mut types = TypeSpace::new(&settings);
    let definitions = own
        .iter()
        .chain(borrowed.iter().map(|name| (name, &rest[name])))
        .map(|(name, schema)| {
            let schema = serde_json::from_value(without_value_constraints(schema))
                .with_context(|| format!("{name} is not a JSON Schema"))?;
            Ok((name.clone(), schema))
        })
        .collect::<Result<Vec<_>>>()?;
    types
        .add_ref_types(definitions)
        .context("typify refused a schema of the AsyncAPI document")?;
    let type_stream = types.to_stream();

    let variants: Vec<Ident> = routes
        .iter()
        .map(|route| Ident::new(&route.name.to_upper_camel_case(), Span::call_site()))
        .collect();
    let schemas: Vec<Ident> = routes
        .iter()
        .map(|route| Ident::new(&route.schema, Span::call_site()))
        .collect();
    let names: Vec<&str> = routes.iter().map(|route| route.name.as_str()).collect();
    let route_doc = format!(
        " A received message, by the route its `{route_by}` selects (validated against its \
         schema)."
    );
    render(quote! {
        //! The AsyncAPI document's schemas as Rust types (typify), and the routing of the
        //! messages the server receives.
        #![allow(clippy::all, clippy::pedantic, clippy::unwrap_used, unused_imports, dead_code, missing_docs)]

        use std::sync::LazyLock;

        use codegen_runtime as runtime;

        static VALIDATORS: LazyLock<runtime::Validators> =
            LazyLock::new(|| runtime::Validators::compile(include_str!("stream_schemas.json")));

        /// The property that selects a received message's route.
        pub const ROUTE_BY: &str = #route_by;

        /// Every route, in order.
        pub const ROUTES: &[&str] = &[#(#names),*];

        #[doc = #route_doc]
        #[derive(Debug, Clone)]
        pub enum Route {
            #(#variants(#schemas),)*
        }

        /// Routes a received text message: by its route property to the route's schema,
        /// which it must satisfy, into that route's type. A message that is not a JSON
        /// object, has no known route or breaks its route's schema is a 400
        /// [`runtime::RejectedRequest`] listing every violation.
        pub fn route(text: &str) -> Result<Route, runtime::RejectedRequest> {
            let message = runtime::parse_message(text)?;
            let name = runtime::select_route(&VALIDATORS, &message, ROUTE_BY, ROUTES)?;
            Ok(match name {
                #(#names => Route::#variants(runtime::decode_message(message)?),)*
                _ => unreachable!("select_route returns one of ROUTES"),
            })
        }

        #type_stream
    })
}
