//! Emission: the model turned into tokens for `api.rs`: per operation its trait method,
//! response enum, credentials type, `runtime::Operation` description and route handler,
//! and for the whole document the `routes()` function and its tables.
//!
//! It reads only the `model`, never the raw document, so what the generated code looks
//! like can change without touching how the document is read.

use std::collections::BTreeMap;

use anyhow::Result;
use heck::{ToShoutySnakeCase, ToSnakeCase, ToUpperCamelCase};
use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use serde_json::Value;
use typify::TypeSpace;

use super::model::{Operation, Param, is_json, object_schema, scalar_of};
use super::to_schemars;
use crate::security::{self, Scheme};

impl Operation {
    fn camel(&self) -> String {
        self.id.to_upper_camel_case()
    }

    pub(super) fn emit(
        &self,
        types: &mut TypeSpace,
        definitions: &BTreeMap<String, Value>,
        schemes: &[Scheme],
    ) -> Result<Emitted> {
        let camel = self.camel();
        let method_ident = format_ident!("{}", self.id.to_snake_case());
        let handler_ident = format_ident!("handle_{}", self.id.to_snake_case());
        let spec_ident = format_ident!("{}", self.id.to_shouty_snake_case());
        let response_ident = format_ident!("{camel}Response");
        let op_id = &self.id;
        let doc = doc_lines(&format!("`{} {}`\n\n{}", self.method, self.path, self.doc));

        let mut args = Vec::new();
        let mut arg_names = Vec::new();
        let mut extract = Vec::new();
        let auth = security::emit(&camel, &self.requirement, schemes);
        if let Some(arg) = &auth.arg {
            args.push(arg.clone());
            arg_names.push(quote! { auth });
        }

        if !self.params.is_empty() {
            let refs: Vec<&Param> = self.params.iter().collect();
            let schema = to_schemars(&object_schema(&refs))?;
            let id = types.add_type_with_name(&schema, Some(format!("{camel}Params")))?;
            let ty = types.get_type(&id)?.ident();
            args.push(quote! { params: #ty });
            arg_names.push(quote! { params });
            extract.push(quote! { let params: #ty = input.params()?; });
        }
        let mut body_spec = quote! { None };
        if let Some(body) = &self.body {
            let media_type = &body.media_type;
            let json = is_json(media_type);
            let required = body.required;
            body_spec = quote! {
                Some(runtime::Body { media_type: #media_type, json: #json, required: #required })
            };
            let ty = match (&body.schema, json) {
                (Some(schema), true) => {
                    let id = types
                        .add_type_with_name(&to_schemars(schema)?, Some(format!("{camel}Body")))?;
                    types.get_type(&id)?.ident()
                }
                (None, true) => quote! { serde_json::Value },
                (_, false) => quote! { Vec<u8> },
            };
            let (ty, getter) = match (required, json) {
                (true, true) => (ty, quote! { input.json_body()? }),
                (false, true) => (
                    quote! { Option<#ty> },
                    quote! { input.optional_json_body()? },
                ),
                (true, false) => (ty, quote! { input.bytes_body() }),
                (false, false) => (
                    quote! { Option<#ty> },
                    quote! { input.optional_bytes_body() },
                ),
            };
            args.push(quote! { body: #ty });
            arg_names.push(quote! { body });
            extract.push(quote! { let body: #ty = #getter; });
        }

        let param_specs = self.params.iter().map(|p| {
            let name = &p.name;
            let location = format_ident!("{}", p.location.to_upper_camel_case());
            let (scalar, array) = scalar_of(&p.schema, definitions);
            let scalar = format_ident!("{scalar}");
            quote! {
                runtime::Param { name: #name, location: runtime::Location::#location, scalar: runtime::Scalar::#scalar, array: #array }
            }
        });

        let bind_input = if extract.is_empty() {
            quote! { let _ = }
        } else {
            quote! { let mut input = }
        };
        let (variants, arms) = self.emit_responses(types)?;
        let response_doc = format!(" The responses `{}` may answer with.", self.id);

        let auth_items = &auth.items;
        let auth_check = &auth.check;
        // A cached answer is served only to a request whose credentials were verified and
        // that the document allows (the same path and query may come with bad headers),
        // and it is named by the parameters as the handler receives them, never by the URI.
        let params_ref = if self.params.is_empty() {
            quote! { &() }
        } else {
            quote! { &params }
        };
        let stored_answer = self.cache_ttl_seconds.map(|_| {
            quote! {
                if let Some(response) = runtime::stored_response(&request, &#spec_ident, #params_ref).await {
                    return Ok(response);
                }
            }
        });
        let items = quote! {
            #auth_items

            static #spec_ident: runtime::Operation = runtime::Operation {
                id: #op_id,
                params: &[#(#param_specs),*],
                body: #body_spec,
            };

            #[doc = #response_doc]
            #[derive(Debug)]
            pub enum #response_ident {
                #(#variants)*
            }

            impl poem::IntoResponse for #response_ident {
                fn into_response(self) -> poem::Response {
                    match self {
                        #(#arms)*
                    }
                }
            }

            async fn #handler_ident<A: Api>(
                api: &A,
                mut request: poem::Request,
                limits: runtime::Limits,
            ) -> poem::Result<poem::Response> {
                runtime::announce_operation(&request, #op_id);
                #auth_check
                #bind_input runtime::extract(&mut request, &VALIDATORS, &#spec_ident, limits).await?;
                #(#extract)*
                #stored_answer
                let response = api.#method_ident(&request, #(#arg_names),*).await.map_err(Into::into)?;
                Ok(poem::IntoResponse::into_response(response))
            }
        };
        let method = quote! {
            #(#[doc = #doc])*
            fn #method_ident(
                &self,
                request: &poem::Request,
                #(#args),*
            ) -> impl Future<Output = Result<#response_ident, Self::Error>> + Send;
        };
        Ok(Emitted { items, method })
    }

    fn emit_responses(
        &self,
        types: &mut TypeSpace,
    ) -> Result<(Vec<TokenStream>, Vec<TokenStream>)> {
        let camel = self.camel();
        let mut variants = Vec::new();
        let mut arms = Vec::new();
        for response in &self.responses {
            let variant_name = variant_name(&response.status);
            let variant = format_ident!("{variant_name}");
            let doc = format!(" {}: {}", response.status, response.description);
            let fixed_status: Option<u16> = response.status.parse().ok();

            let mut fields = Vec::new();
            let mut bindings = Vec::new();
            let mut body_ty = None;
            if fixed_status.is_none() {
                fields.push(quote! { status: u16 });
                bindings.push(quote! { status });
            }
            let status_expr = match fixed_status {
                Some(code) => quote! { #code },
                None => quote! { status },
            };
            let build = match (&response.media_type, &response.schema) {
                (Some(media_type), schema) if is_json(media_type) => {
                    let ty = match schema {
                        Some(schema) => {
                            let name = format!("{camel}{variant_name}");
                            let id = types.add_type_with_name(&to_schemars(schema)?, Some(name))?;
                            types.get_type(&id)?.ident()
                        }
                        None => quote! { serde_json::Value },
                    };
                    body_ty = Some(ty.clone());
                    fields.push(quote! { body: #ty });
                    bindings.push(quote! { body });
                    quote! { runtime::json_response(#status_expr, #media_type, &body) }
                }
                (Some(_), _) if response.chosen_media_type => {
                    fields.push(quote! { content_type: String });
                    bindings.push(quote! { content_type });
                    fields.push(quote! { body: poem::Body });
                    bindings.push(quote! { body });
                    quote! { runtime::body_response(#status_expr, &content_type, body) }
                }
                (Some(media_type), _) => {
                    body_ty = Some(quote! { poem::Body });
                    fields.push(quote! { body: poem::Body });
                    bindings.push(quote! { body });
                    quote! { runtime::body_response(#status_expr, #media_type, body) }
                }
                (None, _) => quote! { runtime::empty_response(#status_expr) },
            };
            let mut set_headers = Vec::new();
            for header in &response.headers {
                let field = format_ident!("{}", header.name.to_snake_case());
                let name = &header.name;
                let type_name =
                    format!("{camel}{variant_name}{}", header.name.to_upper_camel_case());
                let id =
                    types.add_type_with_name(&to_schemars(&header.schema)?, Some(type_name))?;
                let ty = types.get_type(&id)?.ident();
                if header.required {
                    fields.push(quote! { #field: #ty });
                    set_headers
                        .push(quote! { runtime::set_header(&mut response, #name, &#field); });
                } else {
                    fields.push(quote! { #field: Option<#ty> });
                    set_headers.push(quote! {
                        if let Some(value) = &#field { runtime::set_header(&mut response, #name, value); }
                    });
                }
                bindings.push(quote! { #field });
            }

            // A bare body is a tuple variant; anything more gets named fields.
            let (declaration, pattern) = match (&body_ty, fields.len()) {
                (None, 0) => (quote! { #variant, }, quote! { Self::#variant }),
                (Some(ty), 1) => (quote! { #variant(#ty), }, quote! { Self::#variant(body) }),
                _ => (
                    quote! { #variant { #(#fields),* }, },
                    quote! { Self::#variant { #(#bindings),* } },
                ),
            };
            variants.push(quote! { #[doc = #doc] #declaration });
            arms.push(quote! {
                #pattern => {
                    let mut response = #build;
                    #(#set_headers)*
                    response
                }
            });
        }
        Ok((variants, arms))
    }
}

pub(super) struct Emitted {
    pub(super) items: TokenStream,
    pub(super) method: TokenStream,
}

pub(super) fn emit_routes(operations: &[Operation]) -> TokenStream {
    let mut by_path: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for operation in operations {
        by_path.entry(&operation.path).or_default().push(operation);
    }
    let routes = by_path.iter().map(|(path, operations)| {
        let poem_path = poem_path(path);
        let allow: Vec<&str> = operations.iter().map(|o| o.method.as_str()).collect();
        let arms = operations.iter().map(|o| {
            let method = &o.method;
            let handler = format_ident!("handle_{}", o.id.to_snake_case());
            quote! { #method => #handler(&*api, request, limits).await, }
        });
        quote! {
            let route = route.at(#poem_path, {
                let api = Arc::clone(&api);
                poem::endpoint::make(move |request: poem::Request| {
                    let api = Arc::clone(&api);
                    async move {
                        match request.method().as_str() {
                            #(#arms)*
                            _ => Err(runtime::method_not_allowed(&[#(#allow),*])),
                        }
                    }
                })
            });
        }
    });
    let declared = operations
        .iter()
        .filter(|o| !o.middleware_headers.is_empty())
        .map(|o| {
            let id = &o.id;
            let headers = o.middleware_headers.iter();
            quote! { (#id, &[#(#headers),*]), }
        });
    let cached = operations.iter().filter_map(|o| {
        let id = &o.id;
        o.cache_ttl_seconds.map(|ttl| quote! { (#id, #ttl), })
    });
    quote! {
        /// Per operationId, the response headers the document says a middleware sets
        /// (`x-set-by`), so that middleware acts on exactly the operations that declare them.
        pub static MIDDLEWARE_HEADERS: &[(&str, &[&str])] = &[#(#declared)*];

        /// Per operationId, how many seconds a response cache may keep the operation's 200
        /// answer (`x-minitter-cache`); operations not listed are never cached.
        pub static RESPONSE_CACHE: &[(&str, u64)] = &[#(#cached)*];

        /// Every path of the document. A request is validated against its operation
        /// before the trait method runs; a method the path does not declare is a 405.
        pub fn routes<A: Api>(api: Arc<A>, limits: runtime::Limits) -> poem::Route {
            LazyLock::force(&VALIDATORS);
            let route = poem::Route::new();
            #(#routes)*
            route
        }
    }
}

/// `/users/{id}` in OpenAPI is `/users/:id` in poem.
fn poem_path(path: &str) -> String {
    path.split('/')
        .map(
            |segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => format!(":{name}"),
                None => segment.to_owned(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

/// The variant for a status: its reason phrase (`201` → `Created`), `Status4xx` for a
/// range, `Default` for `default`.
fn variant_name(status: &str) -> String {
    if status == "default" {
        return "Default".to_owned();
    }
    if let Some(class) = status.strip_suffix("XX") {
        return format!("Status{class}xx");
    }
    status
        .parse::<u16>()
        .ok()
        .and_then(|code| http::StatusCode::from_u16(code).ok())
        .and_then(|code| code.canonical_reason())
        .map(|reason| reason.replace(['\'', '-'], " ").to_upper_camel_case())
        .unwrap_or_else(|| format!("Status{status}"))
}

/// Doc attributes, one per line, so that prettyplease renders `///` comments.
fn doc_lines(text: &str) -> Vec<String> {
    text.trim_end()
        .lines()
        .map(|line| format!(" {line}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_use_poem_parameters() {
        assert_eq!(
            poem_path("/v1/users/{user_id}/tweets"),
            "/v1/users/:user_id/tweets"
        );
    }

    #[test]
    fn variants_are_named_after_reason_phrases() {
        assert_eq!(variant_name("201"), "Created");
        assert_eq!(variant_name("413"), "PayloadTooLarge");
        assert_eq!(variant_name("4XX"), "Status4xx");
        assert_eq!(variant_name("default"), "Default");
        assert_eq!(variant_name("299"), "Status299");
    }
}
