//! The server skeleton: types, the `Api` trait, response enums, params structs and routes.
//!
//! The shape is chosen so that the compiler enforces the contract: the trait has one
//! method per operationId and no default bodies, so an operation added to the document
//! does not compile until it is implemented; and each method returns its own response
//! enum, so a handler can only answer with a status the document declares.
//!
//! Generation is two steps, one module each: `model` reads what the server needs from
//! the document (operations, parameters, bodies, responses, with references resolved and
//! schemas translated) and refuses what it cannot serve; `emit` turns that model into
//! tokens. This module runs both and assembles the four output files.

mod emit;
mod model;

use anyhow::{Context, Result};
use quote::quote;
use serde_json::Value;
use typify::{TypeSpace, TypeSpaceSettings};

use self::emit::emit_routes;
use self::model::Model;
use crate::schema::without_value_constraints;
use crate::security::{self, Scheme};
use crate::{Document, GeneratedFile, HEADER, open_enum, render};

/// Generates the server files for `document`.
pub fn generate(document: &Document) -> Result<Vec<GeneratedFile>> {
    let model = Model::read(&document.raw)?;
    let open_enums = open_enum::read(&document.raw)?;
    let mut settings = TypeSpaceSettings::default();
    settings.with_type_mod("types");
    // typify would make each open enum a string newtype; the enum emitted below (in the
    // same file, so a bare name resolves) takes its place.
    for open in &open_enums {
        settings.with_replacement(&open.name, &open.name, std::iter::empty());
    }
    let mut types = TypeSpace::new(&settings);
    let definitions = model
        .definitions
        .iter()
        .map(|(name, schema)| Ok((name.clone(), to_schemars(schema)?)))
        .collect::<Result<Vec<_>>>()?;
    types
        .add_ref_types(definitions)
        .context("typify refused a component schema")?;

    let mut items = Vec::new();
    let mut by_tag = security::ByTag::new();
    for operation in &model.operations {
        let emitted = operation.emit(&mut types, &model.definitions, &model.schemes)?;
        items.push(emitted.items);
        by_tag
            .entry(operation.tag.clone())
            .or_default()
            .push(emitted.method);
    }
    let routes = emit_routes(&model.operations);
    // Only the schemes some operation requires need a verifier.
    let used: Vec<&Scheme> = model
        .schemes
        .iter()
        .filter(|scheme| {
            model.operations.iter().any(|op| {
                op.requirement
                    .alternatives
                    .iter()
                    .flatten()
                    .any(|n| *n == scheme.name)
            })
        })
        .collect();
    let server_trait = security::emit_server_trait(&used);
    let tag_traits = by_tag.iter().map(|(tag, methods)| {
        let ident = security::tag_trait(tag);
        let doc = format!(" The operations tagged `{tag}`.");
        quote! {
            #[doc = #doc]
            pub trait #ident: Server {
                #(#methods)*
            }
        }
    });
    let tag_idents: Vec<_> = by_tag.keys().map(|tag| security::tag_trait(tag)).collect();

    let type_stream = types.to_stream();
    let open_enum_items = open_enums.iter().map(open_enum::rust);
    let types_file = render(quote! {
        //! The document's schemas as Rust types (typify).
        #![allow(clippy::all, clippy::pedantic, clippy::unwrap_used, unused_imports, dead_code, missing_docs)]
        #type_stream

        #(#open_enum_items)*
    })?;

    let api_file = render(quote! {
        //! The contract as a trait, with a params struct and a response enum per
        //! operation, and the routes that validate requests and dispatch to the trait.
        #![allow(clippy::all, clippy::pedantic, clippy::unwrap_used, unused_mut, dead_code, missing_docs)]

        use std::future::Future;
        use std::sync::{Arc, LazyLock};

        use codegen_runtime as runtime;

        use super::types;

        static VALIDATORS: LazyLock<runtime::Validators> =
            LazyLock::new(|| runtime::Validators::compile(include_str!("request_schemas.json")));

        #server_trait

        #(#tag_traits)*

        /// The whole contract: the server and one trait per tag, with one method per
        /// operation and no default bodies, so an operation added to the document fails
        /// to compile until it is implemented.
        pub trait Api: Server #(+ #tag_idents)* {}

        impl<T: Server #(+ #tag_idents)*> Api for T {}

        #(#items)*

        #routes
    })?;

    let schemas = serde_json::to_string_pretty(&model.request_schemas())? + "\n";

    Ok(vec![
        mod_file(&["api", "types"]),
        file("api.rs", api_file),
        file("types.rs", types_file),
        file("request_schemas.json", schemas),
    ])
}

/// The `mod.rs` of a server directory holding `modules` (the skeleton's `api` and `types`,
/// and `stream` when an AsyncAPI document joins them).
pub fn mod_file(modules: &[&str]) -> GeneratedFile {
    let declarations: String = modules
        .iter()
        .map(|module| format!("pub mod {module};\n"))
        .collect();
    file(
        "mod.rs",
        format!(
            "{HEADER}\n\n//! Generated from the OpenAPI document. The crate needs `codegen-runtime`, \
             `poem`,\n//! `serde`, `serde_json`, and what the types use (`chrono`, `uuid`).\n\n\
             {declarations}\npub use api::*;\n"
        ),
    )
}

fn file(name: &str, contents: String) -> GeneratedFile {
    GeneratedFile {
        name: name.to_owned(),
        contents,
    }
}

fn to_schemars(schema: &Value) -> Result<schemars::schema::Schema> {
    serde_json::from_value(without_value_constraints(schema)).context("not a JSON Schema")
}
