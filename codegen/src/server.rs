//! The server skeleton: types, the `Api` trait, response enums, params structs and routes.
//!
//! The shape is chosen so that the compiler enforces the contract: the trait has one
//! method per operationId and no default bodies, so an operation added to the document
//! does not compile until it is implemented; and each method returns its own response
//! enum, so a handler can only answer with a status the document declares.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use heck::{ToShoutySnakeCase, ToSnakeCase, ToUpperCamelCase};
use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use serde_json::{Map, Value, json};
use typify::{TypeSpace, TypeSpaceSettings};

use crate::response_cache;
use crate::schema::{DEFINITIONS, to_json_schema, without_value_constraints};
use crate::security::{self, Requirement, Scheme};
use crate::{Document, GeneratedFile, HEADER, render};

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Generates the server files for `document`.
pub fn generate(document: &Document) -> Result<Vec<GeneratedFile>> {
    let model = Model::read(&document.raw)?;
    let mut types = TypeSpace::new(TypeSpaceSettings::default().with_type_mod("types"));
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
    let types_file = render(quote! {
        //! The document's schemas as Rust types (typify).
        #![allow(clippy::all, clippy::pedantic, clippy::unwrap_used, unused_imports, dead_code, missing_docs)]
        #type_stream
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

    let mod_file = format!(
        "{HEADER}\n\n//! Generated from the OpenAPI document. The crate needs `codegen-runtime`, \
         `poem`,\n//! `serde`, `serde_json`, and what the types use (`chrono`, `uuid`).\n\n\
         pub mod api;\npub mod types;\n\npub use api::*;\n"
    );
    let schemas = serde_json::to_string_pretty(&model.request_schemas())? + "\n";

    Ok(vec![
        file("mod.rs", mod_file),
        file("api.rs", api_file),
        file("types.rs", types_file),
        file("request_schemas.json", schemas),
    ])
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

/// The parts of the document the server needs, with every `$ref` outside schemas resolved
/// and every schema translated to JSON Schema.
struct Model {
    definitions: BTreeMap<String, Value>,
    schemes: Vec<Scheme>,
    operations: Vec<Operation>,
}

struct Operation {
    id: String,
    /// The tag whose trait the operation's method belongs to.
    tag: String,
    requirement: Requirement,
    /// Response headers the document says a middleware sets (`x-set-by`), lowercase.
    middleware_headers: std::collections::BTreeSet<String>,
    /// Seconds a response cache may keep the 200 answer (`x-minitter-cache`), if it may.
    cache_ttl_seconds: Option<u64>,
    method: String,
    path: String,
    doc: String,
    params: Vec<Param>,
    body: Option<Body>,
    responses: Vec<Response>,
}

struct Param {
    name: String,
    location: &'static str,
    required: bool,
    schema: Value,
}

struct Body {
    media_type: String,
    required: bool,
    schema: Option<Value>,
}

struct Response {
    /// `201`, `4XX` or `default`.
    status: String,
    description: String,
    media_type: Option<String>,
    /// The handler chooses among several media types (or a wildcard) at run time.
    chosen_media_type: bool,
    schema: Option<Value>,
    headers: Vec<Header>,
}

struct Header {
    name: String,
    required: bool,
    schema: Value,
}

impl Model {
    fn read(raw: &Value) -> Result<Self> {
        let definitions = raw
            .pointer("/components/schemas")
            .and_then(Value::as_object)
            .map(|schemas| {
                schemas
                    .iter()
                    .map(|(name, schema)| (name.clone(), to_json_schema(schema)))
                    .collect()
            })
            .unwrap_or_default();
        let schemes = Scheme::read_all(raw)?;
        let mut operations = Vec::new();
        let paths = raw.get("paths").and_then(Value::as_object);
        for (path, item) in paths.into_iter().flatten() {
            let item = resolve(raw, item)?;
            let shared = item.get("parameters").and_then(Value::as_array);
            for method in METHODS {
                let Some(operation) = item.get(*method) else {
                    continue;
                };
                operations.push(Operation::read(
                    raw, path, method, operation, shared, &schemes,
                )?);
            }
        }
        Ok(Self {
            definitions,
            schemes,
            operations,
        })
    }

    /// The JSON Schemas requests are validated against, per operation and location.
    fn request_schemas(&self) -> Value {
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
fn object_schema(params: &[&Param]) -> Value {
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
    fn read(
        raw: &Value,
        path: &str,
        method: &str,
        op: &Value,
        shared: Option<&Vec<Value>>,
        schemes: &[Scheme],
    ) -> Result<Self> {
        let id = op
            .get("operationId")
            .and_then(Value::as_str)
            .with_context(|| format!("{method} {path} has no operationId"))?
            .to_owned();
        let requirement = Requirement::read(raw, op, &id, schemes)?;
        let tag = security::tag_of(op);
        let method = method.to_ascii_uppercase();
        let cache_ttl_seconds = response_cache::ttl_seconds(op, &id, &method)?;
        let doc = [op.get("summary"), op.get("description")]
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("\n\n");

        let mut params: Vec<Param> = Vec::new();
        let own = op.get("parameters").and_then(Value::as_array);
        for param in shared
            .into_iter()
            .flatten()
            .chain(own.into_iter().flatten())
        {
            let param = resolve(raw, param)?;
            let name = str_field(param, "name")?.to_owned();
            let location = match str_field(param, "in")? {
                "path" => "path",
                "query" => "query",
                "header" => "header",
                other => bail!("{id}: parameters in {other} are not supported"),
            };
            let schema = param
                .get("schema")
                .with_context(|| format!("{id}: parameter {name} has no schema"))?;
            let required = location == "path" || param.get("required") == Some(&Value::Bool(true));
            // An operation's own parameter overrides a path-level one of the same name.
            params.retain(|p| !(p.name == name && p.location == location));
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

        let body = match op.get("requestBody") {
            None => None,
            Some(body) => {
                let body = resolve(raw, body)?;
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
        let declared = op
            .get("responses")
            .and_then(Value::as_object)
            .with_context(|| format!("{id}: no responses"))?;
        for (status, response) in declared {
            let response = resolve(raw, response)?;
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
                status: status.clone(),
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

    fn camel(&self) -> String {
        self.id.to_upper_camel_case()
    }

    fn emit(
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

struct Emitted {
    items: TokenStream,
    method: TokenStream,
}

fn emit_routes(operations: &[Operation]) -> TokenStream {
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

fn is_json(media_type: &str) -> bool {
    let essence = media_type.split(';').next().unwrap_or_default().trim();
    essence == "application/json" || essence.ends_with("+json")
}

/// The JSON type a parameter's text converts to, and whether it is an array.
fn scalar_of(schema: &Value, definitions: &BTreeMap<String, Value>) -> (&'static str, bool) {
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

/// Follows a `$ref` to a component (parameter, response, request body, header, path).
fn resolve<'a>(raw: &'a Value, value: &'a Value) -> Result<&'a Value> {
    let mut current = value;
    for _ in 0..16 {
        match current.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let pointer = reference
                    .strip_prefix('#')
                    .with_context(|| format!("only local references are supported: {reference}"))?;
                current = raw
                    .pointer(pointer)
                    .with_context(|| format!("unresolved reference {reference}"))?;
            }
            None => return Ok(current),
        }
    }
    bail!("reference cycle")
}

fn str_field<'a>(value: &'a Value, field: &str) -> Result<&'a str> {
    value
        .get(field)
        .and_then(Value::as_str)
        .with_context(|| format!("missing {field}"))
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
