//! The server's layers, checked on every test run (issue 18): dependencies point one way
//! and no group of modules imports itself in a circle.
//!
//! Every `crate::…` path in the crate's own sources (`use` items, expressions and macro
//! arguments alike: the files are read as tokens, so nothing hides in a macro) is an edge
//! from the *unit* that contains it to the unit it names. A unit is a module at the root
//! of the crate (`startup`, `handlers`) or a module one level inside a layer folder
//! (`infra::store`, `services::timeline`). Test code (`#[cfg(test)]` items) is left out:
//! a test may reach anywhere.
//!
//! The layers, lowest first; a unit may use its own layer and those below it, never one
//! above (see `docs/architecture.md`):
//! `domain` < `infra` < `http` < `services` < `state` < `handlers` < the composition root
//! (`startup`, `config`, `bootstrap`, the CLI), and `generated` beside `domain` (it uses
//! nothing of ours). `http` is plumbing that knows no service, so services may use it
//! (they decide API outcomes such as a 429); `state` is what the handlers are handed.
//! Within a layer, units may use each other, but not in a cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use proc_macro2::{Delimiter, TokenStream, TokenTree};
use quote::ToTokens;

/// The layers and their rank; any other root module belongs to the composition root.
const LAYERS: &[(&str, u8)] = &[
    ("generated", 0),
    ("domain", 0),
    ("infra", 1),
    ("http", 2),
    ("services", 3),
    ("state", 4),
    ("handlers", 5),
];
const ROOT_RANK: u8 = 6;

fn rank(unit: &str) -> u8 {
    let top = unit.split("::").next().unwrap_or(unit);
    LAYERS
        .iter()
        .find(|(name, _)| *name == top)
        .map_or(ROOT_RANK, |(_, rank)| *rank)
}

/// Whether a root module is a layer folder, whose children are units of their own.
fn is_folder(top: &str) -> bool {
    LAYERS
        .iter()
        .any(|(name, _)| *name == top && matches!(*name, "domain" | "infra" | "http" | "services"))
}

/// The unit a module path (`["infra", "store", "sqlite"]`) belongs to.
fn unit_of(segments: &[String]) -> Option<String> {
    let top = segments.first()?;
    if is_folder(top) {
        let child = segments.get(1)?;
        Some(format!("{top}::{child}"))
    } else {
        Some(top.clone())
    }
}

/// The module path of a source file relative to `src/`.
fn module_of(relative: &Path) -> Vec<String> {
    let mut segments: Vec<String> = relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if segments
        .last()
        .is_some_and(|last| matches!(last.as_str(), "mod" | "lib" | "main"))
    {
        segments.pop();
    }
    segments
}

/// The first segments of every `crate::…` path in `tokens`: `crate::a::b` gives `[a, b]`,
/// `crate::{a::b, c}` gives `[a, b]` and `[c]`.
fn crate_paths(tokens: TokenStream, out: &mut Vec<Vec<String>>) {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    let mut i = 0;
    while i < tokens.len() {
        if let TokenTree::Group(group) = &tokens[i] {
            crate_paths(group.stream(), out);
        }
        let is_crate = matches!(&tokens[i], TokenTree::Ident(ident) if ident == "crate");
        if is_crate && is_path_separator(&tokens, i + 1) {
            out.extend(path_after(&tokens[i + 3..]));
            i += 3;
            continue;
        }
        i += 1;
    }
}

fn is_path_separator(tokens: &[TokenTree], at: usize) -> bool {
    matches!(
        (tokens.get(at), tokens.get(at + 1)),
        (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b))) if a.as_char() == ':' && b.as_char() == ':'
    )
}

/// The paths that start at `tokens` (just after a `::`): a chain of idents, or a braced
/// list of them.
fn path_after(tokens: &[TokenTree]) -> Vec<Vec<String>> {
    match tokens.first() {
        Some(TokenTree::Ident(ident)) => {
            let mut path = vec![ident.to_string()];
            let mut at = 1;
            while is_path_separator(tokens, at) {
                match tokens.get(at + 2) {
                    Some(TokenTree::Ident(next)) => {
                        path.push(next.to_string());
                        at += 3;
                    }
                    Some(TokenTree::Group(group)) if group.delimiter() == Delimiter::Brace => {
                        return use_list(group.stream())
                            .into_iter()
                            .map(|tail| path.iter().cloned().chain(tail).collect())
                            .collect();
                    }
                    _ => break,
                }
            }
            vec![path]
        }
        Some(TokenTree::Group(group)) if group.delimiter() == Delimiter::Brace => {
            use_list(group.stream())
        }
        _ => Vec::new(),
    }
}

/// The paths of a `{a::b, c, d::{e, f}}` list.
fn use_list(tokens: TokenStream) -> Vec<Vec<String>> {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    tokens
        .split(|t| matches!(t, TokenTree::Punct(p) if p.as_char() == ','))
        .flat_map(path_after)
        .collect()
}

/// The sources of `src`, as tokens without their `#[cfg(test)]` items.
fn sources(src: &Path) -> Vec<(PathBuf, TokenStream)> {
    let mut files = Vec::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).expect("read the source folder");
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read a source file");
                let file = syn::parse_file(&text).expect("a source file parses");
                let mut tokens = TokenStream::new();
                for item in file.items.iter().filter(|item| !is_test_only(item)) {
                    item.to_tokens(&mut tokens);
                }
                let relative = path.strip_prefix(src).expect("under src").to_path_buf();
                files.push((relative, tokens));
            }
        }
    }
    files
}

fn is_test_only(item: &syn::Item) -> bool {
    let attrs = match item {
        syn::Item::Mod(item) => &item.attrs,
        syn::Item::Fn(item) => &item.attrs,
        syn::Item::Impl(item) => &item.attrs,
        syn::Item::Use(item) => &item.attrs,
        _ => return false,
    };
    attrs.iter().any(|attr| {
        attr.path().is_ident("cfg") && attr.to_token_stream().to_string().contains("test")
    })
}

/// The edges between units: who uses whom.
fn edges(files: Vec<(PathBuf, TokenStream)>) -> BTreeMap<String, BTreeSet<String>> {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (relative, tokens) in files {
        let module = module_of(&relative);
        // The crate root and the generated code are not units that use anything.
        let Some(from) = unit_of(&module) else {
            continue;
        };
        if from == "generated" {
            continue;
        }
        let mut paths = Vec::new();
        crate_paths(tokens, &mut paths);
        for path in paths {
            if let Some(to) = unit_of(&path)
                && to != from
            {
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    edges
}

/// Each edge that points from a lower layer to a higher one.
fn upward(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    edges
        .iter()
        .flat_map(|(from, tos)| tos.iter().map(move |to| (from, to)))
        .filter(|(from, to)| rank(from) < rank(to))
        .map(|(from, to)| format!("{from} -> {to}"))
        .collect()
}

/// The groups of units that reach each other (strongly connected, more than one).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Units reachable from each unit, then groups of mutual reachability: the graph is a
    // few dozen nodes, so the simple way is plenty.
    let reach = |start: &String| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![start.clone()];
        while let Some(unit) = stack.pop() {
            for next in edges.get(&unit).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> =
        edges.keys().map(|unit| (unit, reach(unit))).collect();
    let mut groups: Vec<Vec<String>> = Vec::new();
    for (unit, reached) in &reaches {
        if !reached.contains(*unit) || groups.iter().any(|g| g.contains(unit)) {
            continue;
        }
        let group = reaches
            .iter()
            .filter(|(other, back)| reached.contains(**other) && back.contains(*unit))
            .map(|(other, _)| (*other).clone())
            .collect();
        groups.push(group);
    }
    groups
}

#[test]
fn the_server_has_no_import_cycle_and_no_upward_dependency() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = edges(sources(&src));
    assert!(edges.len() > 10, "the sources were read: {edges:?}");
    let cycles = cycles(&edges);
    assert!(
        cycles.is_empty(),
        "import cycles between modules: {cycles:?}"
    );
    let upward = upward(&edges);
    assert!(
        upward.is_empty(),
        "dependencies that point up the layers (docs/architecture.md): {upward:?}"
    );
}

#[test]
fn the_check_sees_cycles_and_upward_dependencies_even_inside_macros() {
    let file = |path: &str, text: &str| {
        let tokens: TokenStream = text.parse().expect("tokens");
        (PathBuf::from(path), tokens)
    };
    let edges = edges(vec![
        file(
            "infra/store/mod.rs",
            "use crate::{domain::Event, services::timeline::Feed};",
        ),
        file(
            "services/timeline/read.rs",
            "fn f() { tracing::info!(\"{}\", crate::infra::store::X); }",
        ),
        file("domain/mod.rs", "use std::fmt;"),
        file(
            "handlers/tweets.rs",
            "use crate::services::{timeline, gateway::Key};",
        ),
    ]);
    assert_eq!(
        cycles(&edges),
        vec![vec![
            "infra::store".to_owned(),
            "services::timeline".to_owned()
        ]]
    );
    assert_eq!(upward(&edges), vec!["infra::store -> services::timeline"]);
    assert!(edges["handlers"].contains("services::gateway"));
}
