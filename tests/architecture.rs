//! The shape of `src/`, checked: no import cycle between modules, and the wings depend on each
//! other in one direction only.
//!
//! ```text
//!   server/ (loop, plumbing) ──► services/contract ◄── services/* (protocols)
//!   client/ (blocking clients)     (the door)
//! ```
//!
//! The graph is read from the source text: every `crate::a::b` path and every
//! `use crate::{a, b}` group outside `#[cfg(test)]` code is an edge from the file's module to
//! the longest module prefix it names; `super::` paths are resolved against the file's module.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/server/udp.rs` → `server::udp`; `src/services/mod.rs` → `services`; `lib.rs` → `crate`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    match parts.as_slice() {
        [only] if only == "lib" => "crate".into(),
        [init @ .., last] if last == "mod" => init.join("::"),
        all => all.join("::"),
    }
}

/// The module graph of the library (binaries are leaves and are left out).
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.retain(|f| !f.starts_with(src.join("bin")));
    let modules: BTreeMap<String, PathBuf> = files
        .iter()
        .map(|f| (module_of(&src, f), f.clone()))
        .collect();
    let mut edges = BTreeMap::new();
    for (module, file) in &modules {
        let text = fs::read_to_string(file).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let mut targets = BTreeSet::new();
        for path in paths_named(code, module) {
            // The longest prefix of the path that is a module of ours.
            let parts: Vec<&str> = path.split("::").collect();
            let found = (1..=parts.len())
                .rev()
                .map(|n| parts[..n].join("::"))
                .find(|candidate| modules.contains_key(candidate));
            if let Some(target) = found {
                let related = target == *module
                    || module.starts_with(&format!("{target}::"))
                    || target.starts_with(&format!("{module}::"));
                if !related {
                    targets.insert(target);
                }
            }
        }
        edges.insert(module.clone(), targets);
    }
    edges
}

/// Every `crate::…` path in `code`, with `super::…` resolved from `module`, and each member of
/// a `crate::x::{a, b::c}` group expanded.
fn paths_named(code: &str, module: &str) -> Vec<String> {
    let parent = module.rsplit_once("::").map_or("", |(p, _)| p);
    let code = code.replace(
        "super::",
        &format!("crate::{parent}::").replace("crate::::", "crate::"),
    );
    let mut paths = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        let path = rest[..end].trim_end_matches(':').to_string();
        if rest[end..].starts_with('{') {
            let close = rest[end..].find('}').map_or(rest.len(), |i| end + i);
            for member in rest[end + 1..close].split(',') {
                let member = member.trim().split(" as ").next().unwrap_or("").trim();
                paths.push(
                    format!("{path}::{member}")
                        .trim_end_matches(':')
                        .to_string(),
                );
            }
        }
        paths.push(path);
    }
    paths
}

#[test]
fn no_module_of_the_library_is_part_of_an_import_cycle() {
    let edges = graph();
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_string()];
        while let Some(m) = stack.pop() {
            for next in edges.get(&m).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let mut cycles = Vec::new();
    for a in edges.keys() {
        for b in reach(a) {
            if *a < b && reach(&b).contains(a) {
                cycles.push(format!("{a} <-> {b}"));
            }
        }
    }
    assert!(cycles.is_empty(), "import cycles: {cycles:?}");
    assert!(edges.len() > 20, "the graph was read: {edges:?}");
}

#[test]
fn the_wings_depend_in_one_direction_and_the_contract_imports_nothing_of_the_loop() {
    let edges = graph();
    let wing = |m: &str| m.split("::").next().unwrap_or("").to_string();
    let mut wrong = Vec::new();
    for (module, targets) in &edges {
        for target in targets {
            let (from, to) = (wing(module), wing(target));
            let allowed = match from.as_str() {
                // The protocols see the contract and their own helpers, never a socket owner.
                "services" => !matches!(to.as_str(), "server" | "client"),
                // The clients never use the loop.
                "client" => to != "server",
                _ => true,
            };
            if !allowed {
                wrong.push(format!("{module} -> {target}"));
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the grain: {wrong:?}");
    let contract = &edges["services::contract"];
    assert!(
        contract
            .iter()
            .all(|t| t == "services::clock" || t == "services::output"),
        "the contract imports {contract:?}"
    );
    assert!(
        edges["server::handler"].contains("services::contract"),
        "the graph sees the plumbing's use of the contract"
    );
}
