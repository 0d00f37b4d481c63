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
//! - Rust ([`rust_module`]): a `pub mod operations` appended to the progenitor client,
//!   with an `Operation` struct, one constant per operation, `ALL` and `find(id)` (the
//!   client's hooks receive only the operation id), and an `OperationBuilder` trait
//!   implemented for every generated builder: its `Operation`, its success and error
//!   types, and its `send`. Builders of operations that take `If-None-Match` also
//!   implement the `ConditionalBuilder` marker, so an SDK can offer a conditional send
//!   only where the document allows one. The builders' names and types are read from
//!   progenitor's own output rather than re-derived, so they cannot disagree with it.
//! - TypeScript ([`typescript`]): the same facts as a `readonly` array, for a client
//!   whose middleware sees the method and the path template of each request.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use heck::ToShoutySnakeCase;
use openapiv3::{OpenAPI, Parameter, ReferenceOr};
use proc_macro2::{Ident, Span, TokenStream, TokenTree};
use quote::{ToTokens, quote};

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
/// order progenitor visits them).
pub fn operations(document: &Document) -> Result<Vec<OperationFacts>> {
    let spec = &document.typed;
    let mut facts = Vec::new();
    for (path, item) in &spec.paths.paths {
        let item = item
            .as_item()
            .with_context(|| format!("path {path}: only inline path items are supported"))?;
        for (method, operation) in item.iter() {
            let id = operation
                .operation_id
                .clone()
                .with_context(|| format!("{method} {path} has no operationId"))?;
            let mut idempotency_key = None;
            let mut if_none_match = false;
            for parameter in item.parameters.iter().chain(&operation.parameters) {
                let Parameter::Header { parameter_data, .. } =
                    resolve(spec, parameter).with_context(|| format!("operation {id}"))?
                else {
                    continue;
                };
                let name = &parameter_data.name;
                if name.eq_ignore_ascii_case(IDEMPOTENCY_KEY) {
                    idempotency_key = Some(name.clone());
                } else if name.eq_ignore_ascii_case(IF_NONE_MATCH) {
                    if_none_match = true;
                }
            }
            facts.push(OperationFacts {
                id,
                method: method.to_ascii_uppercase(),
                path: path.clone(),
                idempotency_key,
                if_none_match,
                paginated: operation.extensions.contains_key("x-dropshot-pagination"),
            });
        }
    }
    Ok(facts)
}

/// Follows `#/components/parameters/…` references.
fn resolve<'a>(spec: &'a OpenAPI, parameter: &'a ReferenceOr<Parameter>) -> Result<&'a Parameter> {
    let mut current = parameter;
    for _ in 0..16 {
        match current {
            ReferenceOr::Item(parameter) => return Ok(parameter),
            ReferenceOr::Reference { reference } => {
                let name = reference
                    .strip_prefix("#/components/parameters/")
                    .with_context(|| format!("unsupported parameter reference {reference}"))?;
                current = spec
                    .components
                    .as_ref()
                    .and_then(|components| components.parameters.get(name))
                    .with_context(|| format!("unresolved reference {reference}"))?;
            }
        }
    }
    bail!("parameter reference cycle")
}

/// A builder in progenitor's output: its name and the types its `send` returns.
struct Builder {
    ident: Ident,
    ok: TokenStream,
    err: TokenStream,
}

/// The builders of progenitor's `pub mod builder`, by the operation id each one sends
/// (read from the `OperationInfo { operation_id: "…" }` in its `send`).
fn builders(client: &syn::File) -> Result<BTreeMap<String, Builder>> {
    let module = client
        .items
        .iter()
        .find_map(|item| match item {
            syn::Item::Mod(module) if module.ident == "builder" => module.content.as_ref(),
            _ => None,
        })
        .context("progenitor's output has no `builder` module (builder interface style?)")?;
    let mut found = BTreeMap::new();
    for item in &module.1 {
        let syn::Item::Impl(block) = item else {
            continue;
        };
        let syn::Type::Path(self_ty) = block.self_ty.as_ref() else {
            continue;
        };
        if block.trait_.is_some() {
            continue;
        }
        let Some(segment) = self_ty.path.segments.last() else {
            continue;
        };
        for item in &block.items {
            let syn::ImplItem::Fn(function) = item else {
                continue;
            };
            if function.sig.ident != "send" {
                continue;
            }
            let syn::ReturnType::Type(_, output) = &function.sig.output else {
                bail!("{}::send returns nothing", segment.ident);
            };
            let (ok, err) = result_types(output)
                .with_context(|| format!("{}::send: unexpected return type", segment.ident))?;
            let id = operation_id(function.block.to_token_stream())
                .with_context(|| format!("{}::send names no operation id", segment.ident))?;
            found.insert(
                id,
                Builder {
                    ident: segment.ident.clone(),
                    ok,
                    err,
                },
            );
        }
    }
    Ok(found)
}

/// `T` and `E` of `Result<ResponseValue<T>, Error<E>>`.
fn result_types(output: &syn::Type) -> Option<(TokenStream, TokenStream)> {
    let [value, error] = generic_args(output, "Result")?.try_into().ok()?;
    let [ok] = generic_args(&value, "ResponseValue")?.try_into().ok()?;
    let [err] = generic_args(&error, "Error")?.try_into().ok()?;
    Some((ok.to_token_stream(), err.to_token_stream()))
}

fn generic_args(ty: &syn::Type, name: &str) -> Option<Vec<syn::Type>> {
    let syn::Type::Path(path) = ty else {
        return None;
    };
    let segment = path.path.segments.last()?;
    if segment.ident != name {
        return None;
    }
    let syn::PathArguments::AngleBracketed(arguments) = &segment.arguments else {
        return None;
    };
    Some(
        arguments
            .args
            .iter()
            .filter_map(|argument| match argument {
                syn::GenericArgument::Type(ty) => Some(ty.clone()),
                _ => None,
            })
            .collect(),
    )
}

/// The string after `operation_id :` anywhere in `tokens`.
fn operation_id(tokens: TokenStream) -> Option<String> {
    let trees: Vec<TokenTree> = tokens.into_iter().collect();
    for (i, tree) in trees.iter().enumerate() {
        match tree {
            TokenTree::Group(group) => {
                if let Some(id) = operation_id(group.stream()) {
                    return Some(id);
                }
            }
            TokenTree::Ident(ident) if ident == "operation_id" => {
                if let (Some(TokenTree::Punct(colon)), Some(TokenTree::Literal(literal))) =
                    (trees.get(i + 1), trees.get(i + 2))
                    && colon.as_char() == ':'
                    && let Ok(text) = syn::parse_str::<syn::LitStr>(&literal.to_string())
                {
                    return Some(text.value());
                }
            }
            _ => {}
        }
    }
    None
}

/// The `operations` module for a progenitor client (see the module documentation).
/// `client` is progenitor's output, whose builders the module's trait impls name.
pub fn rust_module(facts: &[OperationFacts], client: &syn::File) -> Result<TokenStream> {
    let builders = builders(client)?;
    let mut constants = Vec::new();
    let mut names = Vec::new();
    let mut impls = Vec::new();
    for fact in facts {
        let name = Ident::new(&fact.id.to_shouty_snake_case(), Span::call_site());
        let OperationFacts {
            id,
            method,
            path,
            if_none_match,
            paginated,
            ..
        } = fact;
        let idempotency_key = match &fact.idempotency_key {
            Some(header) => quote! { Some(#header) },
            None => quote! { None },
        };
        let doc = format!(" `{method} {path}` (`{id}`).");
        constants.push(quote! {
            #[doc = #doc]
            pub const #name: Operation = Operation {
                id: #id,
                method: #method,
                path: #path,
                idempotency_key: #idempotency_key,
                if_none_match: #if_none_match,
                paginated: #paginated,
            };
        });
        let Builder { ident, ok, err } = builders
            .get(id)
            .with_context(|| format!("progenitor generated no builder for {id}"))?;
        impls.push(quote! {
            impl<'a> OperationBuilder for builder::#ident<'a> {
                const OPERATION: Operation = #name;
                type Ok = #ok;
                type Err = #err;
                fn send(
                    self,
                ) -> impl ::std::future::Future<
                    Output = Result<ResponseValue<Self::Ok>, Error<Self::Err>>,
                > + Send {
                    builder::#ident::send(self)
                }
            }
        });
        if *if_none_match {
            impls.push(quote! { impl<'a> ConditionalBuilder for builder::#ident<'a> {} });
        }
        names.push(name);
    }
    Ok(quote! {
        /// What the document says about each operation, for the SDK's hand-written
        /// runtime: which operations take an `Idempotency-Key` (and so may be retried
        /// after a lost response), which take `If-None-Match`, which are paginated.
        pub mod operations {
            use super::{builder, types, ByteStream, Error, ResponseValue};

            /// The facts about one operation, read from the document.
            #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
            pub struct Operation {
                /// The `operationId`.
                pub id: &'static str,
                /// The HTTP method, upper case.
                pub method: &'static str,
                /// The path template, as written in the document.
                pub path: &'static str,
                /// The name of the operation's `Idempotency-Key` header parameter, as the
                /// document spells it, when it takes one.
                pub idempotency_key: Option<&'static str>,
                /// Whether the operation takes an `If-None-Match` header parameter.
                pub if_none_match: bool,
                /// Whether the operation is paginated (it has a `stream()`).
                pub paginated: bool,
            }

            #(#constants)*

            /// Every operation, in document order.
            pub const ALL: &[Operation] = &[#(#names),*];

            /// The operation with this `operationId`.
            pub fn find(id: &str) -> Option<&'static Operation> {
                ALL.iter().find(|operation| operation.id == id)
            }

            /// A builder of one operation: the facts about it, and its `send`.
            pub trait OperationBuilder: Sized {
                /// The operation this builder sends.
                const OPERATION: Operation;
                /// The body of a success response.
                type Ok;
                /// The body of a declared error response.
                type Err;
                /// Sends the request (the builder's own `send`).
                fn send(
                    self,
                ) -> impl ::std::future::Future<
                    Output = Result<ResponseValue<Self::Ok>, Error<Self::Err>>,
                > + Send;
            }

            /// The builders of operations that take `If-None-Match`.
            pub trait ConditionalBuilder: OperationBuilder {}

            #(#impls)*
        }
    })
}

/// The header of the TypeScript table.
pub const TYPESCRIPT_HEADER: &str = "// @generated by `codegen` from the OpenAPI document. Do not \
                                     edit: change the document and run `npm run generate`.";

/// The facts as a TypeScript module exporting `operations`.
pub fn typescript(facts: &[OperationFacts]) -> Result<String> {
    let mut out = format!(
        "{TYPESCRIPT_HEADER}\n\n\
         /** The facts about one operation that the SDK's runtime acts on, read from the document. */\n\
         export interface Operation {{\n  \
           /** The `operationId`. */\n  readonly id: string;\n  \
           /** The HTTP method, upper case. */\n  readonly method: string;\n  \
           /** The path template, as written in the document. */\n  readonly path: string;\n  \
           /** The name of the `Idempotency-Key` header parameter, when the operation takes one. */\n  \
           readonly idempotencyKey: string | null;\n  \
           /** Whether the operation takes an `If-None-Match` header parameter. */\n  \
           readonly ifNoneMatch: boolean;\n  \
           /** Whether the operation is paginated. */\n  readonly paginated: boolean;\n\
         }}\n\n\
         /** Every operation, in document order. */\n\
         export const operations: readonly Operation[] = [\n"
    );
    for fact in facts {
        let string = |text: &str| serde_json::to_string(text).context("a JSON string");
        out.push_str(&format!(
            "  {{ id: {}, method: {}, path: {}, idempotencyKey: {}, ifNoneMatch: {}, paginated: {} }},\n",
            string(&fact.id)?,
            string(&fact.method)?,
            string(&fact.path)?,
            match &fact.idempotency_key {
                Some(header) => string(header)?,
                None => "null".to_owned(),
            },
            fact.if_none_match,
            fact.paginated,
        ));
    }
    out.push_str("];\n");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"
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

    fn facts() -> Vec<OperationFacts> {
        operations(&Document::parse(SPEC).expect("a document")).expect("facts")
    }

    #[test]
    fn facts_come_from_header_parameters_and_extensions() {
        let facts = facts();
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

    #[test]
    fn the_typescript_table_lists_every_operation() {
        let table = typescript(&facts()).expect("a table");
        assert!(table.starts_with(TYPESCRIPT_HEADER));
        assert!(table.contains(
            r#"{ id: "create_widget", method: "POST", path: "/widgets", idempotencyKey: "Idempotency-Key", ifNoneMatch: false, paginated: false },"#
        ));
        assert!(table.contains(r#"{ id: "get_widget", method: "GET", path: "/widgets/{id}", idempotencyKey: null, ifNoneMatch: true, paginated: false },"#));
    }

    #[test]
    fn the_rust_client_gets_the_facts_and_a_trait_impl_per_builder() {
        let document = Document::parse(SPEC).expect("a document");
        let options = crate::client::ClientOptions {
            inner_type: Some("crate::Config".into()),
        };
        let client = crate::client::generate(&document, &options).expect("a client");
        let compact: String = client.split_whitespace().collect::<Vec<_>>().join(" ");
        for expected in [
            r#"pub const CREATE_WIDGET: Operation = Operation { id: "create_widget", method: "POST", path: "/widgets", idempotency_key: Some("Idempotency-Key"), if_none_match: false, paginated: false, };"#,
            "impl<'a> OperationBuilder for builder::CreateWidget<'a> { const OPERATION: Operation = CREATE_WIDGET; type Ok = (); type Err = ();",
            "impl<'a> ConditionalBuilder for builder::GetWidget<'a> {}",
            "pub const ALL: &[Operation] = &[LIST_WIDGETS, CREATE_WIDGET, GET_WIDGET];",
            // The hooks are the crate's to write, and forgetting them does not compile.
            "fn assert_client_hooks() where Client: ClientHooks<crate::Config>, {}",
        ] {
            assert!(compact.contains(expected), "missing: {expected}");
        }
        assert!(!compact.contains("ConditionalBuilder for builder::CreateWidget"));
    }

    #[test]
    fn operation_ids_are_read_from_nested_tokens() {
        let tokens: TokenStream = quote! {
            { let x = 1; let info = OperationInfo { operation_id: "get_widget", }; }
        };
        assert_eq!(operation_id(tokens).as_deref(), Some("get_widget"));
        assert_eq!(operation_id(quote! { operation_id = "no" }), None);
    }
}
