//! `codegen` on documents other than Minitter's.
//!
//! The Petstore fixture crate (`tests/petstore`, a workspace member) holds a server
//! generated from the classic Petstore document (`src/generated`), and one generated from
//! the same document with `createPets`' `security` deleted (`src/generated_open`);
//! building the workspace compiles both and the crate's own tests serve requests through
//! them. This test keeps that output current: `CODEGEN_BLESS=1 cargo nextest run -p
//! codegen` rewrites it.

use std::path::Path;

use codegen::{Document, server};

const PETSTORE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/petstore");

fn petstore() -> serde_json::Value {
    let text = std::fs::read_to_string(Path::new(PETSTORE).join("petstore.yaml")).expect("fixture");
    serde_yaml_ng::from_str(&text).expect("yaml")
}

/// The Petstore document with the security of `createPets` deleted.
fn open_petstore() -> serde_json::Value {
    let mut raw = petstore();
    raw["paths"]["/pets"]["post"]
        .as_object_mut()
        .expect("createPets")
        .remove("security")
        .expect("createPets declares security");
    raw
}

#[test]
fn the_petstore_fixtures_are_what_codegen_generates() {
    check_fixture(&petstore(), "src/generated");
    check_fixture(&open_petstore(), "src/generated_open");
}

fn check_fixture(raw: &serde_json::Value, dir: &str) {
    let document = Document::parse(&serde_json::to_string(raw).expect("json")).expect("valid");
    let files = server::generate(&document).expect("generates");
    let out = Path::new(PETSTORE).join(dir);
    let bless = std::env::var_os("CODEGEN_BLESS").is_some();
    if bless {
        std::fs::create_dir_all(&out).expect("fixture dir");
        for file in files {
            std::fs::write(out.join(&file.name), &file.contents).expect("write fixture");
        }
        return;
    }
    let mut committed_names: Vec<String> = std::fs::read_dir(&out)
        .expect("fixture output")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let mut generated_names: Vec<String> = files.iter().map(|f| f.name.clone()).collect();
    committed_names.sort();
    generated_names.sort();
    assert_eq!(
        committed_names, generated_names,
        "the fixture holds other files than codegen writes"
    );
    for file in files {
        let path = out.join(&file.name);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == file.contents,
            "{} is stale; run `CODEGEN_BLESS=1 cargo nextest run -p codegen`",
            path.display()
        );
    }
}

#[test]
fn every_operation_becomes_a_trait_method_without_a_default_body() {
    let mut raw = petstore();
    raw["paths"]["/pets/{petId}"]["delete"] = serde_json::json!({
        "operationId": "deletePet",
        "parameters": [{"name": "petId", "in": "path", "required": true, "schema": {"type": "string"}}],
        "responses": {"204": {"description": "Deleted"}}
    });
    let document =
        Document::parse(&serde_json::to_string(&raw).expect("json")).expect("valid document");
    let files = server::generate(&document).expect("generates");
    let api = &files
        .iter()
        .find(|f| f.name == "api.rs")
        .expect("api.rs")
        .contents;

    let method = api
        .split("fn delete_pet(")
        .nth(1)
        .expect("a delete_pet method");
    let signature = method.split(';').next().expect("declaration");
    assert!(
        !signature.contains('{'),
        "the method has a default body: {signature}"
    );
    assert!(api.contains("pub enum DeletePetResponse"));
    assert!(api.contains(r#""DELETE" => handle_delete_pet"#));
}

#[test]
fn documents_other_than_openapi_3_0_are_refused() {
    let error = Document::parse("openapi: 3.1.0\ninfo: {title: t, version: '1'}\npaths: {}\n")
        .err()
        .expect("refused");
    assert!(error.to_string().contains("3.0.x"), "{error}");
}

#[test]
fn a_security_scheme_codegen_cannot_check_is_an_error_naming_it() {
    let mut raw = petstore();
    raw["components"]["securitySchemes"]["oauth"] = serde_json::json!({
        "type": "oauth2",
        "flows": {"clientCredentials": {"tokenUrl": "https://example.com/token", "scopes": {}}}
    });
    raw["paths"]["/pets"]["get"]["security"] = serde_json::json!([{"oauth": []}]);
    let document = Document::parse(&serde_json::to_string(&raw).expect("json")).expect("valid");
    let error = server::generate(&document).expect_err("refused");
    assert!(error.to_string().contains("oauth"), "{error}");
}

#[test]
fn security_naming_an_undeclared_scheme_is_an_error() {
    let mut raw = petstore();
    raw["paths"]["/pets"]["get"]["security"] = serde_json::json!([{"nope": []}]);
    let document = Document::parse(&serde_json::to_string(&raw).expect("json")).expect("valid");
    let error = server::generate(&document).expect_err("refused");
    assert!(error.to_string().contains("nope"), "{error}");
}
