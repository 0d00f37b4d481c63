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
//!
//! A client of the channel gets the same schemas through the same path
//! ([`generate_client`]), seen from the other end: the messages the server *sends* (the
//! `send` operations' messages and the `receive` operations' replies) as one enum tagged
//! by their discriminating property (`type`), which a client decodes every message into,
//! and the messages it receives as one enum tagged by the route property, which a client
//! encodes. There the tag belongs to the enum, so it is taken out of each message's
//! struct; the references into the OpenAPI document name the client's REST types
//! (`crate::types::Tweet`, progenitor's). Nothing is validated on that side: as with the
//! REST client, the server is the one validator.

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

/// A message, and the name its discriminating property gives it: for a message the
/// server receives, the route that property selects.
struct Route {
    /// The property's value: `subscribe`, `tweet.created`.
    name: String,
    /// The component schema of its payload: `SubscribeMessage`.
    schema: String,
}

/// The AsyncAPI document as both generators read it: its raw JSON, its own component
/// schemas (translated, references into the OpenAPI document made local), the OpenAPI
/// document's schemas, and the names of those its own schemas reach.
struct Contract {
    raw: Value,
    own: BTreeMap<String, Value>,
    rest: BTreeMap<String, Value>,
    borrowed: BTreeSet<String>,
}

impl Contract {
    /// Reads `asyncapi` (YAML or JSON), whose references into the OpenAPI document are
    /// resolved against `openapi`.
    fn read(asyncapi: &str, openapi: &Document) -> Result<Self> {
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
        Ok(Self {
            raw,
            own,
            rest,
            borrowed,
        })
    }

    /// The Rust types of the document's own schemas (typify), with every borrowed
    /// OpenAPI schema replaced by `{types_path}::{name}`.
    fn types(
        &self,
        own: &BTreeMap<String, Value>,
        types_path: &str,
        settings: &mut TypeSpaceSettings,
    ) -> Result<proc_macro2::TokenStream> {
        for name in &self.borrowed {
            settings.with_replacement(name, format!("{types_path}::{name}"), std::iter::empty());
        }
        let mut types = TypeSpace::new(settings);
        let definitions = own
            .iter()
            .chain(self.borrowed.iter().map(|name| (name, &self.rest[name])))
            .map(|(name, schema)| {
                let schema = serde_json::from_value(without_value_constraints(schema))
                    .with_context(|| format!("{name} is not a JSON Schema"))?;
                Ok((name.clone(), schema))
            })
            .collect::<Result<Vec<_>>>()?;
        types
            .add_ref_types(definitions)
            .context("typify refused a schema of the AsyncAPI document")?;
        Ok(types.to_stream())
    }
}

/// Generates `stream.rs` and `stream_schemas.json` from `asyncapi` (YAML or JSON), whose
/// references into the OpenAPI document are resolved against `openapi`. `route_by` is the
/// property that selects a received message's route.
pub fn generate(asyncapi: &str, openapi: &Document, route_by: &str) -> Result<Vec<GeneratedFile>> {
    let contract = Contract::read(asyncapi, openapi)?;
    let Contract {
        own,
        rest,
        borrowed,
        ..
    } = &contract;
    let routes = messages(&contract.raw, own, Direction::Received, route_by)?;

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
            contents: rust_file(&contract, &routes, route_by)?,
        },
        GeneratedFile {
            name: "stream_schemas.json".to_owned(),
            contents: serde_json::to_string_pretty(&schemas)? + "\n",
        },
    ])
}

/// Generates a client's message types from `asyncapi` as one Rust file: every schema
/// (typify, as for the server, with the OpenAPI document's schemas named
/// `{types_path}::{name}`), `ServerMessage`, an enum of the messages the server sends
/// tagged by their `tag_by` property (with a unit `Other` for a tag the document does not
/// know, so a newer server's message is skipped rather than fatal), and `ClientMessage`,
/// an enum of the messages the server receives tagged by their `route_by` property. The
/// tag properties are taken out of those messages' structs, since the enum writes and
/// reads them.
pub fn generate_client(
    asyncapi: &str,
    openapi: &Document,
    route_by: &str,
    tag_by: &str,
    types_path: &str,
) -> Result<String> {
    let contract = Contract::read(asyncapi, openapi)?;
    let received = messages(&contract.raw, &contract.own, Direction::Received, route_by)?;
    let sent = messages(&contract.raw, &contract.own, Direction::Sent, tag_by)?;
    let mut own = contract.own.clone();
    for (messages, property) in [(&received, route_by), (&sent, tag_by)] {
        for message in messages {
            if let Some(schema) = own.get_mut(&message.schema) {
                without_property(schema, property);
            }
        }
    }
    let mut settings = TypeSpaceSettings::default();
    settings.with_derive("PartialEq".to_owned());
    let types = contract.types(&own, types_path, &mut settings)?;
    let mut file: syn::File = syn::parse2(types).context("typify's output is not Rust")?;
    crate::client::add_str_conversions_to(&mut file.items);

    let client_enum = tagged_enum(
        "ClientMessage",
        &format!(" A message a client sends, tagged by its `{route_by}`."),
        route_by,
        &received,
        false,
    );
    let server_enum = tagged_enum(
        "ServerMessage",
        &format!(
            " A message the server sends, tagged by its `{tag_by}`; `Other` is one whose \
             `{tag_by}` this document does not name (a newer server's)."
        ),
        tag_by,
        &sent,
        true,
    );
    render(quote! {
        //! The AsyncAPI document's messages as a client's types (typify, as the server's
        //! are): `ServerMessage`, which every message the server sends decodes into, and
        //! `ClientMessage`, which every message a client sends is encoded from.
        #![allow(clippy::all, clippy::pedantic, clippy::unwrap_used, unused_imports, dead_code, missing_docs)]

        #client_enum
        #server_enum
        #file
    })
}

/// An enum of `messages`, internally tagged by `property` with each message's name, one
/// newtype variant per message (named after it in upper camel case); with `other`, a
/// unit `Other` for any other tag.
fn tagged_enum(
    name: &str,
    doc: &str,
    property: &str,
    messages: &[Route],
    other: bool,
) -> proc_macro2::TokenStream {
    let ident = Ident::new(name, Span::call_site());
    let variants = messages.iter().map(|message| {
        let variant = Ident::new(&message.name.to_upper_camel_case(), Span::call_site());
        let schema = Ident::new(&message.schema, Span::call_site());
        let tag = &message.name;
        quote! {
            #[serde(rename = #tag)]
            #variant(#schema),
        }
    });
    let other = other.then(|| {
        quote! {
            /// A message whose tag this document does not name.
            #[serde(other)]
            Other,
        }
    });
    quote! {
        #[doc = #doc]
        #[derive(::serde::Deserialize, ::serde::Serialize, Clone, Debug, PartialEq)]
        #[serde(tag = #property)]
        pub enum #ident {
            #(#variants)*
            #other
        }
    }
}

/// Takes `property` out of an object schema's `properties` and `required`.
fn without_property(schema: &mut Value, property: &str) {
    if let Some(Value::Object(properties)) = schema.get_mut("properties") {
        properties.remove(property);
    }
    if let Some(Value::Array(required)) = schema.get_mut("required") {
        required.retain(|name| name.as_str() != Some(property));
    }
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

/// Which end of the channel a message goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// The server receives it: the messages of the `receive` operations.
    Received,
    /// The server sends it: the messages of the `send` operations, and the replies of
    /// the `receive` operations.
    Sent,
}

/// The messages going in `direction`, each with the name its payload's `property` holds
/// (an `enum` of one string); sorted by name. Two received messages may not share a
/// route; a sent message may appear under several operations, but two different ones may
/// not share a name.
fn messages(
    raw: &Value,
    own: &BTreeMap<String, Value>,
    direction: Direction,
    property: &str,
) -> Result<Vec<Route>> {
    let mut routes: Vec<Route> = Vec::new();
    let operations = raw.get("operations").and_then(Value::as_object);
    for (id, operation) in operations.into_iter().flatten() {
        let action = operation.get("action").and_then(Value::as_str);
        let lists = match (direction, action) {
            (Direction::Received, Some("receive")) | (Direction::Sent, Some("send")) => {
                vec!["/messages"]
            }
            (Direction::Sent, Some("receive")) => vec!["/reply/messages"],
            _ => continue,
        };
        let listed = lists
            .into_iter()
            .filter_map(|pointer| operation.pointer(pointer).and_then(Value::as_array))
            .flatten();
        for message in listed {
            let message = follow(raw, message)?;
            let schema = message
                .pointer("/payload/$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/components/schemas/"))
                .with_context(|| {
                    format!("operation {id}: a message's payload must be a component schema")
                })?;
            let name = own
                .get(schema)
                .and_then(|payload| payload.pointer(&format!("/properties/{property}/enum")))
                .and_then(Value::as_array)
                .filter(|values| values.len() == 1)
                .and_then(|values| values[0].as_str())
                .with_context(|| {
                    format!("{schema}: its `{property}` property must be an enum of one string")
                })?;
            if let Some(known) = routes.iter().find(|route| route.name == name) {
                if direction == Direction::Sent && known.schema == schema {
                    continue;
                }
                match direction {
                    Direction::Received => bail!("two received messages select the route {name:?}"),
                    Direction::Sent => bail!("two sent messages are named {name:?}"),
                }
            }
            routes.push(Route {
                name: name.to_owned(),
                schema: schema.to_owned(),
            });
        }
    }
    anyhow::ensure!(
        !routes.is_empty(),
        "the document {} no message",
        match direction {
            Direction::Received => "receives",
            Direction::Sent => "sends",
        }
    );
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
fn rust_file(contract: &Contract, routes: &[Route], route_by: &str) -> Result<String> {
    let mut settings = TypeSpaceSettings::default();
    settings.with_type_mod("stream");
    let type_stream = contract.types(&contract.own, "super::types", &mut settings)?;

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

#[cfg(test)]
mod tests {
    use super::*;

    /// The OpenAPI document the channel borrows `Pet` from.
    const PETS: &str = r"
openapi: 3.0.3
info: {title: pets, version: '1'}
paths: {}
components:
  schemas:
    Pet:
      type: object
      required: [id, name]
      properties:
        id: {type: integer, format: int64}
        name: {type: string}
";

    /// A pet shop's channel: the server receives `watch` and answers `watching`; it
    /// sends `pet.added`, whose pet is the OpenAPI document's `Pet` (and `watching`
    /// again, which a client's enum has once).
    const PET_CHANNEL: &str = r##"
asyncapi: 3.0.0
info: {title: pets, version: '1'}
channels:
  pets:
    address: /pets/stream
    messages:
      watch: {$ref: '#/components/messages/watch'}
      watching: {$ref: '#/components/messages/watching'}
      petAdded: {$ref: '#/components/messages/petAdded'}
operations:
  receiveWatch:
    action: receive
    channel: {$ref: '#/channels/pets'}
    messages: [{$ref: '#/channels/pets/messages/watch'}]
    reply:
      channel: {$ref: '#/channels/pets'}
      messages: [{$ref: '#/channels/pets/messages/watching'}]
  sendPets:
    action: send
    channel: {$ref: '#/channels/pets'}
    messages:
      - {$ref: '#/channels/pets/messages/petAdded'}
      - {$ref: '#/channels/pets/messages/watching'}
components:
  messages:
    watch: {payload: {$ref: '#/components/schemas/Watch'}}
    watching: {payload: {$ref: '#/components/schemas/Watching'}}
    petAdded: {payload: {$ref: '#/components/schemas/PetAdded'}}
  schemas:
    Watch:
      type: object
      additionalProperties: false
      required: [action, kind]
      properties:
        action: {type: string, enum: [watch]}
        kind: {type: string, maxLength: 10}
    Watching:
      type: object
      required: [type]
      properties:
        type: {type: string, enum: [watching]}
    PetAdded:
      type: object
      required: [type, pet]
      properties:
        type: {type: string, enum: [pet.added]}
        pet: {$ref: './openapi.yaml#/components/schemas/Pet'}
"##;

    #[test]
    fn a_clients_stream_types_are_tagged_enums_over_the_rest_clients_types() {
        let document = Document::parse(PETS).expect("valid");
        let file = generate_client(PET_CHANNEL, &document, "action", "type", "crate::types")
            .expect("generates");
        // Received messages, to encode, by their route; sent ones (sends and replies, each
        // once), to decode, by their type, with a fallback for a newer server's.
        assert!(
            file.contains("#[serde(tag = \"action\")]\npub enum ClientMessage"),
            "{file}"
        );
        assert!(
            file.contains("#[serde(rename = \"watch\")]\n    Watch(Watch)"),
            "{file}"
        );
        assert!(
            file.contains("#[serde(tag = \"type\")]\npub enum ServerMessage"),
            "{file}"
        );
        assert!(
            file.contains("#[serde(rename = \"pet.added\")]\n    PetAdded(PetAdded)"),
            "{file}"
        );
        assert_eq!(file.matches("Watching(Watching)").count(), 1, "{file}");
        assert!(file.contains("#[serde(other)]\n    Other"), "{file}");
        // The REST type is named, not generated again; the tags belong to the enums.
        assert!(file.contains("pub pet: crate::types::Pet"), "{file}");
        assert!(!file.contains("pub struct Pet "), "{file}");
        assert!(!file.contains("type_"), "{file}");
        assert!(!file.contains("pub action"), "{file}");
    }

    #[test]
    fn two_sent_messages_of_one_name_are_an_error() {
        let document = Document::parse(PETS).expect("valid");
        let clash = PET_CHANNEL.replace("enum: [pet.added]", "enum: [watching]");
        let error = generate_client(&clash, &document, "action", "type", "crate::types")
            .expect_err("refused");
        assert!(error.to_string().contains("watching"), "{error}");
    }
}
