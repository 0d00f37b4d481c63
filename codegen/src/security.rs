//! Security from the document: `components.securitySchemes` and each operation's
//! `security` (or the document's global one) decide which credentials the generated
//! route demands before the handler runs.
//!
//! The generated code finds a scheme's credential in the request and refuses a request
//! that presents none of an operation's required sets; how a credential is *verified*
//! (a key lookup, a JWT check, a token comparison) is the server's, one method per scheme
//! of the generated `Server` trait, whose verified value the handler receives typed. A
//! scheme the generator cannot find in a request (OAuth 2 flows, OpenID Connect, mutual
//! TLS, HTTP schemes other than bearer and basic) is a generation error naming it:
//! silently skipping it would leave the operation open.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use heck::{ToShoutySnakeCase, ToSnakeCase, ToUpperCamelCase};
use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use serde_json::Value;

/// A security scheme the generated code can find a credential for.
pub struct Scheme {
    /// The name in `components.securitySchemes`.
    pub name: String,
    kind: Kind,
}

enum Kind {
    /// `type: apiKey`: the named header, query parameter or cookie.
    ApiKey { location: &'static str, key: String },
    /// `type: http, scheme: bearer`: `Authorization: Bearer <token>`.
    Bearer,
    /// `type: http, scheme: basic`: `Authorization: Basic <base64>`.
    Basic,
}

impl Scheme {
    /// Every scheme of the document, in its order.
    pub fn read_all(raw: &Value) -> Result<Vec<Self>> {
        let schemes = raw
            .pointer("/components/securitySchemes")
            .and_then(Value::as_object);
        let mut all = Vec::new();
        for (name, scheme) in schemes.into_iter().flatten() {
            let field = |f: &str| scheme.get(f).and_then(Value::as_str).unwrap_or_default();
            let kind = match (field("type"), field("scheme").to_ascii_lowercase().as_str()) {
                ("apiKey", _) => Kind::ApiKey {
                    location: match field("in") {
                        "header" => "Header",
                        "query" => "Query",
                        "cookie" => "Cookie",
                        other => {
                            bail!("security scheme {name}: apiKey in {other:?} is not supported")
                        }
                    },
                    key: field("name").to_owned(),
                },
                ("http", "bearer") => Kind::Bearer,
                ("http", "basic") => Kind::Basic,
                (kind, http_scheme) => bail!(
                    "security scheme {name}: {kind}{} is not supported by codegen \
                     (apiKey, http bearer and http basic are)",
                    if http_scheme.is_empty() {
                        String::new()
                    } else {
                        format!(" {http_scheme}")
                    }
                ),
            };
            all.push(Self {
                name: name.clone(),
                kind,
            });
        }
        Ok(all)
    }

    fn snake(&self) -> String {
        self.name.to_snake_case()
    }

    fn camel(&self) -> String {
        self.name.to_upper_camel_case()
    }

    /// The runtime's description of where the credential is.
    fn locator(&self) -> TokenStream {
        match &self.kind {
            Kind::ApiKey { location, key } => {
                let location = format_ident!("{location}");
                quote! { runtime::Credential::ApiKey { location: runtime::CredentialIn::#location, name: #key } }
            }
            Kind::Bearer => quote! { runtime::Credential::Bearer },
            Kind::Basic => quote! { runtime::Credential::Basic },
        }
    }
}

/// The sets of schemes an operation accepts: it is admitted if it presents every scheme
/// of at least one set. No set at all means public; an empty set among others means the
/// credentials are optional.
pub struct Requirement {
    pub alternatives: Vec<Vec<String>>,
}

impl Requirement {
    /// The operation's own `security`, else the document's, checked against the schemes.
    pub fn read(raw: &Value, operation: &Value, id: &str, schemes: &[Scheme]) -> Result<Self> {
        let declared = operation
            .get("security")
            .or_else(|| raw.get("security"))
            .and_then(Value::as_array);
        let mut alternatives = Vec::new();
        for set in declared.into_iter().flatten() {
            let Some(set) = set.as_object() else {
                bail!("{id}: a security requirement must be an object");
            };
            let mut names = Vec::new();
            for name in set.keys() {
                if !schemes.iter().any(|s| &s.name == name) {
                    bail!("{id}: security names {name:?}, which components.securitySchemes lacks");
                }
                names.push(name.clone());
            }
            alternatives.push(names);
        }
        Ok(Self { alternatives })
    }

    fn is_public(&self) -> bool {
        self.alternatives.is_empty()
    }

    fn optional(&self) -> bool {
        self.alternatives.iter().any(Vec::is_empty)
    }

    fn required_sets(&self) -> Vec<&Vec<String>> {
        self.alternatives.iter().filter(|s| !s.is_empty()).collect()
    }
}

/// The `Server` trait: the error type handlers return, and per scheme the type of a
/// verified credential and the method that verifies one.
pub fn emit_server_trait(schemes: &[&Scheme]) -> TokenStream {
    let items = schemes.iter().map(|scheme| {
        let ty = format_ident!("{}", scheme.camel());
        let verify = format_ident!("verify_{}", scheme.snake());
        let name = &scheme.name;
        let type_doc = format!(" A credential of the `{name}` scheme, verified.");
        let verify_doc = format!(
            " Verifies the credential the request presents for `{name}` (the raw text: the \
             key, or the token after `Bearer `). An error refuses the request."
        );
        quote! {
            #[doc = #type_doc]
            type #ty: Send + Sync + 'static;
            #[doc = #verify_doc]
            fn #verify(
                &self,
                request: &poem::Request,
                credential: &str,
            ) -> impl Future<Output = Result<Self::#ty, Self::Error>> + Send;
        }
    });
    let statics = schemes.iter().map(|scheme| {
        let ident = scheme_static(scheme);
        let locator = scheme.locator();
        let doc = format!(" Where a `{}` credential is.", scheme.name);
        quote! { #[doc = #doc] static #ident: runtime::Credential = #locator; }
    });
    quote! {
        #(#statics)*

        /// What the server provides besides its operations: the error type they return,
        /// and how each of the document's security schemes is verified. The generated
        /// routes call these before any handler, for the operations that require them.
        pub trait Server: Send + Sync + 'static {
            /// What a handler returns for a failure its response enum does not model
            /// (a dependency down, a bug, a refused credential).
            type Error: Into<poem::Error> + Send;

            #(#items)*
        }
    }
}

/// What an operation's security adds to the generated code.
pub struct Emitted {
    /// The credentials type, if any (a struct per set, an enum for several sets).
    pub items: TokenStream,
    /// The handler's argument (`auth: FooAuth<Self>`), if any.
    pub arg: Option<TokenStream>,
    /// Statements that find and verify the credentials into `auth`, or refuse.
    pub check: TokenStream,
}

pub fn emit(operation_camel: &str, requirement: &Requirement, schemes: &[Scheme]) -> Emitted {
    if requirement.is_public() {
        return Emitted {
            items: TokenStream::new(),
            arg: None,
            check: TokenStream::new(),
        };
    }
    let scheme = |name: &str| {
        schemes
            .iter()
            .find(|s| s.name == name)
            .expect("BUG: requirements are checked against the schemes when read")
    };
    let auth_ident = format_ident!("{operation_camel}Auth");
    let sets = requirement.required_sets();
    let mut all_names: Vec<&str> = Vec::new();
    for name in sets.iter().flat_map(|s| s.iter()) {
        if !all_names.contains(&name.as_str()) {
            all_names.push(name);
        }
    }
    let all_statics = all_names.iter().map(|name| scheme_static(scheme(name)));

    // One struct of verified credentials per set; several sets make an enum of them.
    let several = sets.len() > 1;
    let mut defs = Vec::new();
    let mut variants = Vec::new();
    let mut branches = Vec::new();
    for (i, set) in sets.iter().enumerate() {
        let set_ident = if several {
            format_ident!("{operation_camel}Auth{}", i + 1)
        } else {
            auth_ident.clone()
        };
        let fields: Vec<_> = set
            .iter()
            .map(|name| format_ident!("{}", scheme(name).snake()))
            .collect();
        let types = set
            .iter()
            .map(|name| format_ident!("{}", scheme(name).camel()));
        let statics = set.iter().map(|name| scheme_static(scheme(name)));
        let verifies = set
            .iter()
            .map(|name| format_ident!("verify_{}", scheme(name).snake()));
        defs.push(quote! {
            pub struct #set_ident<S: Server + ?Sized> { #(pub #fields: S::#types,)* }
        });
        let verified = quote! {
            #set_ident { #(#fields: api.#verifies(request, #fields).await.map_err(Into::into)?,)* }
        };
        let value = if several {
            let variant = format_ident!(
                "{}",
                set.iter().map(|n| scheme(n).camel()).collect::<String>()
            );
            variants.push(quote! { #variant(#set_ident<S>), });
            quote! { #auth_ident::#variant(#verified) }
        } else {
            verified
        };
        // The first set the request presents in full is the one verified.
        branches.push(quote! {
            if let (#(Some(#fields),)*) = (#(runtime::credential(request, &#statics),)*) {
                break 'auth Some(#value);
            }
        });
    }
    let doc = format!(" The verified credentials of `{operation_camel}`.");
    let items = if several {
        quote! {
            #(#defs)*
            #[doc = #doc]
            pub enum #auth_ident<S: Server + ?Sized> { #(#variants)* }
        }
    } else {
        quote! { #[doc = #doc] #(#defs)* }
    };
    let found = quote! {
        let auth = 'auth: {
            let request = &request;
            #(#branches)*
            None
        };
    };
    let (arg, check) = if requirement.optional() {
        (quote! { auth: Option<#auth_ident<Self>> }, found)
    } else {
        (
            quote! { auth: #auth_ident<Self> },
            quote! {
                #found
                let Some(auth) = auth else {
                    let schemes = [#((#all_names, &#all_statics)),*];
                    return Err(runtime::Unauthenticated::new(&request, &schemes).into());
                };
            },
        )
    };
    Emitted {
        items,
        arg: Some(arg),
        check,
    }
}

/// The static that says where a scheme's credential is.
fn scheme_static(scheme: &Scheme) -> proc_macro2::Ident {
    format_ident!("{}_SCHEME", scheme.name.to_shouty_snake_case())
}

/// Operations by the tag that groups them (their first tag, or `default`).
pub fn tag_of(operation: &Value) -> String {
    operation
        .get("tags")
        .and_then(Value::as_array)
        .and_then(|tags| tags.first())
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_owned()
}

/// The trait of a tag: `users` → `UsersApi`.
pub fn tag_trait(tag: &str) -> proc_macro2::Ident {
    format_ident!("{}Api", tag.to_upper_camel_case())
}

/// Methods grouped by tag, in tag order.
pub type ByTag = BTreeMap<String, Vec<TokenStream>>;
