//! Open enums: string schemas whose known values are listed in `x-extensible-enum`.
//!
//! An error code is the usual case. A closed `enum` in the document would make every
//! client refuse a whole response the day the server learns a new value; a plain string
//! gives callers nothing to match on and lets the server use values the document never
//! lists. `x-extensible-enum` (Zalando's API guidelines) keeps the JSON Schema a string
//! and lists the values known today. From it codegen emits one Rust enum for the server
//! and the client — a variant per known value plus `Other(String)` for the rest — and
//! tells typify/progenitor to use it in place of the string newtype they would make, so
//! a server that writes a value the document does not list fails to compile; and a
//! TypeScript union of the known values, open to any other string.

use anyhow::{Context, Result, ensure};
use heck::ToUpperCamelCase;
use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use serde_json::Value;

/// The extension that lists an open enum's known values.
pub const EXTENSION: &str = "x-extensible-enum";

/// A component schema that is a string with known values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenEnum {
    /// The component's name, which is the Rust type's name.
    pub name: String,
    pub description: Option<String>,
    /// The known values, in document order.
    pub values: Vec<String>,
}

/// Every component schema of `raw` (the document as JSON) with an `x-extensible-enum`.
pub fn read(raw: &Value) -> Result<Vec<OpenEnum>> {
    let Some(schemas) = raw
        .pointer("/components/schemas")
        .and_then(Value::as_object)
    else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    for (name, schema) in schemas {
        let Some(listed) = schema.get(EXTENSION) else {
            continue;
        };
        ensure!(
            schema.get("type").and_then(Value::as_str) == Some("string"),
            "{name}: {EXTENSION} needs `type: string`"
        );
        ensure!(
            schema.get("enum").is_none(),
            "{name}: {EXTENSION} and `enum` exclude each other (an `enum` is closed)"
        );
        let values = listed
            .as_array()
            .with_context(|| format!("{name}: {EXTENSION} is not a list"))?
            .iter()
            .map(|value| {
                value
                    .as_str()
                    .map(str::to_owned)
                    .with_context(|| format!("{name}: {EXTENSION} lists a non-string"))
            })
            .collect::<Result<Vec<_>>>()?;
        ensure!(!values.is_empty(), "{name}: {EXTENSION} is empty");
        let mut variants: Vec<String> = values.iter().map(|v| v.to_upper_camel_case()).collect();
        variants.sort();
        variants.dedup();
        ensure!(
            variants.len() == values.len()
                && !variants.iter().any(|v| v == "Other" || v.is_empty()),
            "{name}: {EXTENSION} values must map to distinct Rust variants other than `Other`"
        );
        found.push(OpenEnum {
            name: name.clone(),
            description: schema
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_owned),
            values,
        });
    }
    Ok(found)
}

/// The Rust enum for `open`: a variant per known value and `Other(String)`, converted from
/// and to its string (so serde sees a string, as the document says).
pub fn rust(open: &OpenEnum) -> TokenStream {
    let ident = format_ident!("{}", open.name);
    let doc = open
        .description
        .as_deref()
        .unwrap_or("A string with known values.");
    let variants: Vec<_> = open
        .values
        .iter()
        .map(|value| format_ident!("{}", value.to_upper_camel_case()))
        .collect();
    let values = &open.values;
    let variant_docs = values.iter().map(|value| format!("`{value}`"));
    quote! {
        #[doc = #doc]
        ///
        /// The values the document lists are variants; any other value (one added to the
        /// API after this code was generated) is kept in `Other`. Make one from a string
        /// with `From`, so that a listed value always becomes its variant.
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum #ident {
            #( #[doc = #variant_docs] #variants, )*
            /// A value the document does not list.
            Other(::std::string::String),
        }

        impl #ident {
            /// Every value the document lists.
            pub const KNOWN: &'static [&'static str] = &[#(#values),*];

            /// The value as written on the wire.
            pub fn as_str(&self) -> &str {
                match self {
                    #( Self::#variants => #values, )*
                    Self::Other(value) => value,
                }
            }

            /// Whether the document lists this value.
            pub fn is_known(&self) -> bool {
                !matches!(self, Self::Other(_))
            }
        }

        impl ::std::convert::From<&str> for #ident {
            fn from(value: &str) -> Self {
                match value {
                    #( #values => Self::#variants, )*
                    other => Self::Other(other.to_owned()),
                }
            }
        }

        impl ::std::convert::From<::std::string::String> for #ident {
            fn from(value: ::std::string::String) -> Self {
                Self::from(value.as_str())
            }
        }

        impl ::std::str::FromStr for #ident {
            type Err = ::std::convert::Infallible;

            fn from_str(value: &str) -> ::std::result::Result<Self, Self::Err> {
                Ok(Self::from(value))
            }
        }

        impl ::std::fmt::Display for #ident {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::serde::Serialize for #ident {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> ::std::result::Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for #ident {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> ::std::result::Result<Self, D::Error> {
                ::std::string::String::deserialize(deserializer).map(Self::from)
            }
        }
    }
}

/// The TypeScript types for `open`: `Known<Name>`, the union of the listed values, and
/// `<Name>`, that union open to any other string (`string & {}` keeps editors offering
/// the known values), with the list itself as a constant.
pub fn typescript(open: &OpenEnum) -> Result<String> {
    let name = &open.name;
    let values = open
        .values
        .iter()
        .map(|value| serde_json::to_string(value).context("a JSON string"))
        .collect::<Result<Vec<_>>>()?;
    let doc: String = open
        .description
        .as_deref()
        .unwrap_or("A string with known values.")
        .trim()
        .lines()
        .map(|line| format!(" * {line}").trim_end().to_owned() + "\n")
        .collect();
    Ok(format!(
        "/** Every value of `{name}` the document lists. */\n\
         export const known{name}s = [{list}] as const;\n\n\
         /** A value of `{name}` the document lists. */\n\
         export type Known{name} = (typeof known{name}s)[number];\n\n\
         /**\n{doc} */\n\
         export type {name} = Known{name} | (string & {{}});\n",
        list = values.join(", "),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(codes: Value) -> Value {
        serde_json::json!({
            "components": { "schemas": {
                "ErrorCode": { "type": "string", "description": "Why.", "x-extensible-enum": codes },
                "Plain": { "type": "string" },
            }}
        })
    }

    #[test]
    fn only_schemas_with_the_extension_are_read() {
        let found = read(&document(serde_json::json!(["not_found", "in_use"]))).expect("read");
        assert_eq!(
            found,
            [OpenEnum {
                name: "ErrorCode".into(),
                description: Some("Why.".into()),
                values: vec!["not_found".into(), "in_use".into()],
            }]
        );
    }

    #[test]
    fn values_that_collide_as_variants_are_refused() {
        let error = read(&document(serde_json::json!(["in_use", "in-use"]))).expect_err("refused");
        assert!(
            error.to_string().contains("distinct Rust variants"),
            "{error}"
        );
        let error = read(&document(serde_json::json!(["other"]))).expect_err("refused");
        assert!(error.to_string().contains("other than `Other`"), "{error}");
    }

    #[test]
    fn the_rust_enum_has_a_variant_per_value_and_other() {
        let open = &read(&document(serde_json::json!(["not_found"]))).expect("read")[0];
        let text = rust(open).to_string();
        assert!(text.contains("pub enum ErrorCode"), "{text}");
        assert!(text.contains("NotFound"), "{text}");
        assert!(text.contains("Other"), "{text}");
        assert!(text.contains("\"not_found\" => Self :: NotFound"), "{text}");
    }

    #[test]
    fn the_typescript_union_is_open() {
        let open = &read(&document(serde_json::json!(["not_found", "in_use"]))).expect("read")[0];
        let text = typescript(open).expect("typescript");
        assert!(
            text.contains("export const knownErrorCodes = [\"not_found\", \"in_use\"] as const;"),
            "{text}"
        );
        assert!(
            text.contains("export type ErrorCode = KnownErrorCode | (string & {});"),
            "{text}"
        );
    }
}
