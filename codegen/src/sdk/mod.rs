//! What an SDK's hand-written runtime needs to know about each operation, read from the
//! document, and emitted for the Rust client (beside progenitor's output) and for a
//! TypeScript client (as a table).
//!
//! # Why
//!
//! An SDK retries a request only when replaying it is safe, and it makes a `POST` safe by
//! sending an `Idempotency-Key` that the server uses to replay its first answer. Which
//! operations accept that key is a fact of the document (a header parameter), so it is
//! read here, once, instead of being kept by hand in each SDK, where a new operation would
//! silently be left out. The same goes for conditional reads (`If-None-Match`) and
//! pagination. The facts are deliberately few and generic: nothing here knows a
//! particular API.
//!
//! # What is emitted
//!
//! - Rust ([`rust::module`], in `rust.rs`): a `pub mod operations` appended to the progenitor client,
//!   with an `Operation` struct, one constant per operation, `ALL` and `find(id)` (the
//!   client's hooks receive only the operation id), and an `OperationBuilder` trait
//!   implemented for every generated builder: its `Operation`, its success and error
//!   types, and its `send`. Builders of operations that take `If-None-Match` also
//!   implement the `ConditionalBuilder` marker, so an SDK can offer a conditional send
//!   only where the document allows one. The builders' names and types are read from
//!   progenitor's own output rather than re-derived, so they cannot disagree with it.
//! - TypeScript ([`typescript::file`], in `typescript.rs`): the same facts as a `readonly` array, for a client
//!   whose middleware sees the method and the path template of each request.

pub mod rust;
pub mod typescript;

use anyhow::{Context, Result};

use crate::Document;

/// The header a client sends so that a retried request is applied once.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
/// The header of a conditional read.
pub const IF_NONE_MATCH: &str = "If-None-Match";

/// The facts about one operation that an SDK's runtime acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationFacts {
    /// The `operationId`.
    pub id: String,
    /// The HTTP method, upper case (`GET`, `POST`, …).
    pub method: String,
    /// The path template, as written in the document (`/v1/users/{user_id}`).
    pub path: String,
    /// The name of the `Idempotency-Key` header parameter, as the document spells it,
    /// when the operation takes one.
    pub idempotency_key: Option<String>,
    /// Whether the operation takes an `If-None-Match` header parameter.
    pub if_none_match: bool,
    /// Whether the operation is paginated (`x-dropshot-pagination`).
    pub paginated: bool,
}

/// Reads the facts of every operation, in document order (paths, then methods in the
/// order progenitor visits them), through the shared model ([`crate::model`]).
pub fn operations(document: &Document) -> Result<Vec<OperationFacts>> {
    let mut facts = Vec::new();
    for operation in document.operations()? {
        let id = operation
            .id()
            .with_context(|| format!("{} has no operationId", operation.label()))?;
        let mut idempotency_key = None;
        let mut if_none_match = false;
        for parameter in operation.parameters()? {
            if parameter.location != "header" {
                continue;
            }
            if parameter.name.eq_ignore_ascii_case(IDEMPOTENCY_KEY) {
                idempotency_key = Some(parameter.name.to_owned());
            } else if parameter.name.eq_ignore_ascii_case(IF_NONE_MATCH) {
                if_none_match = true;
            }
        }
        facts.push(OperationFacts {
            id: id.to_owned(),
            method: operation.method.to_ascii_uppercase(),
            path: operation.path.to_owned(),
            idempotency_key,
            if_none_match,
            paginated: operation.value.get("x-dropshot-pagination").is_some(),
        });
    }
    Ok(facts)
}

/// A small document for the tests of this module and its children.
#[cfg(test)]
pub(crate) const TEST_SPEC: &str = r#"
openapi: 3.0.3
info: { title: Widgets, version: "1" }
paths:
  /widgets:
    parameters:
      - { name: X-Trace, in: header, schema: { type: string } }
    post:
      operationId: create_widget
      parameters:
        - $ref: '#/components/parameters/Key'
      responses: { '201': { description: made } }
    get:
      operationId: list_widgets
      x-dropshot-pagination: { required: [] }
      responses: { '200': { description: listed } }
  /widgets/{id}:
    get:
      operationId: get_widget
      parameters:
        - { name: id, in: path, required: true, schema: { type: string } }
        - { name: if-none-match, in: header, schema: { type: string } }
      responses: { '200': { description: found } }
components:
  parameters:
    Key: { name: Idempotency-Key, in: header, schema: { type: string } }
"#;

#[cfg(test)]
pub(crate) fn test_facts() -> Vec<OperationFacts> {
    operations(&Document::parse(TEST_SPEC).expect("a document")).expect("facts")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_come_from_header_parameters_and_extensions() {
        let facts = test_facts();
        let by_id = |id: &str| {
            facts
                .iter()
                .find(|fact| fact.id == id)
                .expect("an operation")
                .clone()
        };
        let create = by_id("create_widget");
        assert_eq!(create.method, "POST");
        assert_eq!(create.idempotency_key.as_deref(), Some("Idempotency-Key"));
        assert!(!create.if_none_match && !create.paginated);
        let list = by_id("list_widgets");
        assert_eq!(list.idempotency_key, None);
        assert!(list.paginated);
        let get = by_id("get_widget");
        assert_eq!(get.path, "/widgets/{id}");
        assert!(get.if_none_match, "header names are case-insensitive");
    }
}
