//! The Rust half of the SDK facts: a `pub mod operations` appended to the progenitor
//! client (see the parent module's documentation for what it holds and why).

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use heck::ToShoutySnakeCase;
use proc_macro2::{Ident, Span, TokenStream, TokenTree};
use quote::{ToTokens, quote};

use super::OperationFacts;

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
pub fn module(facts: &[OperationFacts], client: &syn::File) -> Result<TokenStream> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Document;
    use crate::sdk::TEST_SPEC;

    #[test]
    fn the_rust_client_gets_the_facts_and_a_trait_impl_per_builder() {
        let document = Document::parse(TEST_SPEC).expect("a document");
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
