//! `cargo regen`: regenerates the server skeleton and the Rust client from an OpenAPI
//! document (and, with an AsyncAPI document, both ends' stream message types), or with
//! `--check` proves that the committed output is current.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Parser;
use codegen::{Document, GeneratedFile, asyncapi, client, sdk, server};

/// Generate a poem server skeleton and a progenitor client from an OpenAPI 3.0 document.
#[derive(Debug, Parser)]
struct Args {
    /// The OpenAPI 3.0.x document (YAML or JSON).
    #[arg(long)]
    spec: PathBuf,
    /// The directory the server skeleton is written to (replaced whole).
    #[arg(long)]
    server_out: Option<PathBuf>,
    /// An AsyncAPI 3 document whose message types and routing join the server skeleton
    /// (`stream.rs`, `stream_schemas.json`); its references to `./openapi.yaml` name the
    /// OpenAPI document's schemas.
    #[arg(long, requires = "server_out")]
    asyncapi: Option<PathBuf>,
    /// The property of a received message that selects its route.
    #[arg(long, default_value = "action")]
    route_by: String,
    /// The property that names a message the server sends (the tag of the client's
    /// `ServerMessage`).
    #[arg(long, default_value = "type")]
    tag_by: String,
    /// The file a client's message types for the `--asyncapi` document are written to,
    /// their references into the OpenAPI document naming the progenitor client's types.
    #[arg(long, requires = "asyncapi")]
    client_stream_out: Option<PathBuf>,
    /// The file the progenitor client is written to.
    #[arg(long)]
    client_out: Option<PathBuf>,
    /// The type every client carries for its hand-written `ClientHooks` (which become
    /// required); an empty value generates the plain progenitor client.
    #[arg(long, default_value = "crate::ClientConfig")]
    client_inner: String,
    /// The file the TypeScript table of operation facts is written to.
    #[arg(long)]
    ts_operations_out: Option<PathBuf>,
    /// Write nothing; fail if any output differs from what is committed.
    #[arg(long)]
    check: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let text = std::fs::read_to_string(&args.spec)
        .with_context(|| format!("reading {}", args.spec.display()))?;
    let document = Document::parse(&text)?;

    let asyncapi_text = args
        .asyncapi
        .as_ref()
        .map(|path| {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
        })
        .transpose()?;

    let mut outputs: Vec<(PathBuf, String)> = Vec::new();
    if let Some(dir) = &args.server_out {
        let mut files = server::generate(&document)?;
        if let Some(text) = &asyncapi_text {
            files.extend(asyncapi::generate(text, &document, &args.route_by)?);
            let modules = server::mod_file(&["api", "stream", "types"]);
            files.retain(|file| file.name != modules.name);
            files.push(modules);
        }
        for GeneratedFile { name, contents } in files {
            outputs.push((dir.join(name), contents));
        }
    }
    if let Some(path) = &args.client_out {
        let options = client::ClientOptions {
            inner_type: Some(args.client_inner.clone()).filter(|inner| !inner.is_empty()),
        };
        outputs.push((path.clone(), client::generate(&document, &options)?));
    }
    if let (Some(path), Some(text)) = (&args.client_stream_out, &asyncapi_text) {
        let file = asyncapi::generate_client(
            text,
            &document,
            &args.route_by,
            &args.tag_by,
            client::TYPES_PATH,
        )?;
        outputs.push((path.clone(), file));
    }
    if let Some(path) = &args.ts_operations_out {
        outputs.push((path.clone(), sdk::typescript::file(&document)?));
    }

    if args.check {
        let stale: Vec<String> = outputs
            .iter()
            .filter(|(path, contents)| {
                std::fs::read_to_string(path).ok().as_ref() != Some(contents)
            })
            .map(|(path, _)| path.display().to_string())
            .chain(extra_files(args.server_out.as_deref(), &outputs))
            .collect();
        if !stale.is_empty() {
            bail!(
                "generated code is out of date with {}: {}\nrun `cargo regen` and commit the result",
                std::iter::once(&args.spec)
                    .chain(&args.asyncapi)
                    .map(|path| path.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" and "),
                stale.join(", ")
            );
        }
        return Ok(());
    }
    if let Some(dir) = &args.server_out
        && dir.exists()
    {
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    for (path, contents) in &outputs {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Files in the server directory that generation would not write (left over from an
/// earlier document).
fn extra_files(dir: Option<&Path>, outputs: &[(PathBuf, String)]) -> Vec<String> {
    let Some(entries) = dir.and_then(|d| std::fs::read_dir(d).ok()) else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| !outputs.iter().any(|(p, _)| p == path))
        .map(|path| path.display().to_string())
        .collect()
}
