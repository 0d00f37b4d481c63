//! `codegen` on documents other than Minitter's.
//!
//! The Petstore fixture crate (`tests/petstore`, a workspace member) holds a server
//! generated from the classic Petstore document; building the workspace compiles it and
//! its own tests serve requests through it. This test keeps that output current:
//! `CODEGEN_BLESS=1 cargo nextest run -p codegen` rewrites it.

use std::path::Path;

use codegen::{Document, server};

const PETSTORE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/petstore");

#[test]
fn the_petstore_fixture_is_what_codegen_generates() {
    let text = std::fs::read_to_string(Path::new(PETSTORE).join("petstore.yaml")).expect("fixture");
    let files =
        server::generate(&Document::parse(&text).expect("valid document")).expect("generates");
    let out = Path::new(PETSTORE).join("src/generated");
    let bless = std::env::var_os("CODEGEN_BLESS").is_some();
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
        if bless {
            std::fs::write(&path, &file.contents).expect("write fixture");
            continue;
        }
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
    let text = std::fs::read_to_string(Path::new(PETSTORE).join("petstore.yaml")).expect("fixture");
    let mut raw: serde_json::Value = serde_yaml_ng::from_str(&text).expect("yaml");
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
