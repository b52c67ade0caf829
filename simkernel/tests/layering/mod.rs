//! A module dependency graph read from a crate's source files, to check in
//! a test that dependencies run one way: no import cycle, and no module
//! using one of a higher layer.
//!
//! Use it from any integration test of a crate (copy or `#[path]` it into
//! another crate's `tests/`):
//!
//! ```ignore
//! mod layering;
//! let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
//! // `dir` holds the module `crate` (its lib.rs); for a sub-module's folder
//! // pass its path instead, e.g. `src/engine` and "crate::engine".
//! let graph = layering::ModuleGraph::read(&dir, "crate");
//! if let Some(cycle) = graph.cycle() {
//!     panic!("import cycle: {}", cycle.join(" -> "));
//! }
//! // Bottom layer first; a module belongs to the layer that lists it or
//! // its nearest listed ancestor.
//! let layers: &[(&str, &[&str])] = &[("platform", &["crate::pool", "crate::sync"]), ("top", &["crate"])];
//! assert_eq!(graph.layer_violations(layers), Vec::<String>::new());
//! ```
//!
//! What counts as a reference from a file: every path that starts with
//! `crate::`, `super::` or `self::`, or with the name of one of the file's
//! own child modules, including each leaf of a `use` group
//! (`use super::{a, b::{c, d}}`) and paths in code. A path names the longest
//! module it reaches (`super::packets::incoming` names `packets`; an item
//! of the parent, `super::lock`, names the parent). Comments, string and
//! character literals and `pub(in path)` visibilities are skipped; `super`
//! inside an inline `mod tests { .. }` is the file's own module. A module
//! is a file: `x.rs` and `x/mod.rs` are `x`, the top folder's `mod.rs`,
//! `lib.rs` or `main.rs` is the folder's module. Not seen: `#[path]`
//! attributes, paths built by macros, and bare names of modules imported
//! earlier (the `use` that imported them is seen).

#![allow(clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Modules by crate path, and which modules each one references.
#[derive(Debug, Default)]
pub struct ModuleGraph {
    /// Every module found, e.g. `crate::engine::state::packets`.
    pub modules: BTreeSet<String>,
    /// Module -> modules it references (never itself).
    pub edges: BTreeMap<String, BTreeSet<String>>,
}

impl ModuleGraph {
    /// Reads every `.rs` file under `dir` (recursively); `prefix` is the
    /// crate path of the module `dir` holds ("crate", "crate::engine").
    pub fn read(dir: &Path, prefix: &str) -> Self {
        let mut files = Vec::new();
        collect(dir, dir, &mut files);
        assert!(!files.is_empty(), "no .rs files under {}", dir.display());
        Self::from_sources(prefix, &files)
    }

    /// Builds the graph from (path relative to the folder, source text)
    /// pairs: what `read` does after reading, and what a test of the reader
    /// itself feeds it.
    pub fn from_sources(prefix: &str, files: &[(String, String)]) -> Self {
        let base: Vec<String> = prefix.split("::").map(str::to_string).collect();
        let named: Vec<(Vec<String>, &str)> =
            files.iter().map(|(path, text)| (module_of(&base, path), text.as_str())).collect();
        let known: BTreeSet<Vec<String>> = named.iter().map(|(module, _)| module.clone()).collect();
        let mut graph = ModuleGraph::default();
        for (module, text) in &named {
            let name = module.join("::");
            graph.modules.insert(name.clone());
            let targets = graph.edges.entry(name).or_default();
            for path in references(&tokens(text), module, &known) {
                let Some(target) = (1..=path.len()).rev().map(|n| &path[..n]).find(|p| known.contains(*p)) else {
                    continue;
                };
                if target != module.as_slice() {
                    targets.insert(target.join("::"));
                }
            }
        }
        graph
    }

    /// An import cycle, if there is one: the modules in order, the first
    /// repeated at the end (`a -> b -> a`).
    pub fn cycle(&self) -> Option<Vec<String>> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            OnPath,
            Done,
        }
        fn visit(
            graph: &ModuleGraph,
            node: &str,
            marks: &mut BTreeMap<String, Mark>,
            path: &mut Vec<String>,
        ) -> Option<Vec<String>> {
            marks.insert(node.to_string(), Mark::OnPath);
            path.push(node.to_string());
            for next in graph.edges.get(node).into_iter().flatten() {
                match marks.get(next).copied().unwrap_or(Mark::New) {
                    Mark::OnPath => {
                        let start = path.iter().position(|n| n == next).unwrap_or(0);
                        let mut cycle = path[start..].to_vec();
                        cycle.push(next.clone());
                        return Some(cycle);
                    }
                    Mark::New => {
                        if let Some(cycle) = visit(graph, next, marks, path) {
                            return Some(cycle);
                        }
                    }
                    Mark::Done => {}
                }
            }
            path.pop();
            marks.insert(node.to_string(), Mark::Done);
            None
        }
        let mut marks = BTreeMap::new();
        for node in &self.modules {
            if marks.get(node).copied().unwrap_or(Mark::New) == Mark::New
                && let Some(cycle) = visit(self, node, &mut marks, &mut Vec::new())
            {
                return Some(cycle);
            }
        }
        None
    }

    /// Checks a layer order, bottom layer first: (name, module paths). A
    /// module belongs to the layer listing it or its nearest listed
    /// ancestor. Returns one message per module without a layer and per
    /// reference from a lower layer to a higher one (references within a
    /// layer are allowed; `cycle` checks those).
    pub fn layer_violations(&self, layers: &[(&str, &[&str])]) -> Vec<String> {
        let layer_of = |module: &str| -> Option<usize> {
            layers
                .iter()
                .enumerate()
                .flat_map(|(index, (_, roots))| roots.iter().map(move |root| (index, *root)))
                .filter(|(_, root)| module == *root || module.starts_with(&format!("{root}::")))
                .max_by_key(|(_, root)| root.len())
                .map(|(index, _)| index)
        };
        let mut problems = Vec::new();
        for module in &self.modules {
            let Some(from) = layer_of(module) else {
                problems.push(format!("{module} is in no layer"));
                continue;
            };
            for target in self.edges.get(module).into_iter().flatten() {
                if let Some(to) = layer_of(target).filter(|&to| to > from) {
                    problems.push(format!(
                        "{module} (layer {}) uses {target} (layer {}, above it)",
                        layers[from].0, layers[to].0
                    ));
                }
            }
        }
        problems
    }
}

/// Every `.rs` file under `dir`, as (path relative to `top` with `/`, text).
fn collect(top: &Path, dir: &Path, files: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(top, &path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(top).expect("under the top folder");
            let name = relative.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            files.push((name, text));
        }
    }
}

/// The crate path of the module a file holds.
fn module_of(base: &[String], relative: &str) -> Vec<String> {
    let mut parts: Vec<&str> = relative.trim_end_matches(".rs").split('/').collect();
    let top_level = parts.len() == 1;
    if parts.last().is_some_and(|last| *last == "mod" || (top_level && (*last == "lib" || *last == "main"))) {
        parts.pop();
    }
    base.iter().cloned().chain(parts.into_iter().map(str::to_string)).collect()
}

fn is_ident(token: &str) -> bool {
    token.starts_with(|c: char| c.is_alphabetic() || c == '_')
}

/// The source as identifiers (raw identifiers without `r#`), `::` and
/// single punctuation characters; comments dropped, each literal one `"`
/// or `'` token, each number one `0` token.
pub fn tokens(source: &str) -> Vec<String> {
    let c: Vec<char> = source.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if let Some(end) = raw_string_end(&c, i) {
            out.push("\"".to_string());
            i = end;
        } else if matches!((ch, at(i + 1)), ('b' | 'c', '"') | ('b', '\'')) {
            // The prefix of a byte or C string or a byte: the literal follows.
            i += 1;
        } else if ch == '"' {
            i += 1;
            while i < c.len() && c[i] != '"' {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push("\"".to_string());
        } else if ch == '\'' {
            if at(i + 1) == '\\' {
                // The backslash and the escaped character, then up to the
                // closing quote (`'\u{..}'`).
                i += 3;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
                out.push("'".to_string());
            } else if at(i + 2) == '\'' {
                i += 3;
                out.push("'".to_string());
            } else {
                // A lifetime or label: its name follows as an identifier.
                i += 1;
            }
        } else if ch == 'r' && at(i + 1) == '#' && (at(i + 2).is_alphabetic() || at(i + 2) == '_') {
            i += 2;
        } else if ch.is_alphabetic() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push(c[start..i].iter().collect());
        } else if ch.is_ascii_digit() {
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push("0".to_string());
        } else if ch == ':' && at(i + 1) == ':' {
            out.push("::".to_string());
            i += 2;
        } else {
            out.push(ch.to_string());
            i += 1;
        }
    }
    out
}

/// If a raw string (`r"…"`, `r#"…"#`, `br…`, `cr…`) starts at `i`: the
/// index after it.
fn raw_string_end(c: &[char], i: usize) -> Option<usize> {
    let mut j = i;
    if matches!(c.get(j), Some('b' | 'c')) {
        j += 1;
    }
    if c.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let hashes = c[j..].iter().take_while(|&&h| h == '#').count();
    j += hashes;
    if c.get(j) != Some(&'"') {
        return None;
    }
    j += 1;
    while j < c.len() {
        if c[j] == '"' && c[j + 1..].iter().take(hashes).filter(|&&h| h == '#').count() == hashes {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
    Some(c.len())
}

/// Absolute paths (segments from `crate`) the tokens of `module`'s file
/// reference.
fn references(tokens: &[String], module: &[String], known: &BTreeSet<Vec<String>>) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    // Inline modules open in this file: (name, brace depth outside them).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let token = |i: usize| tokens.get(i).map(String::as_str).unwrap_or("");
    let mut i = 0;
    while i < tokens.len() {
        let t = token(i);
        if t == "{" {
            depth += 1;
        } else if t == "}" {
            depth = depth.saturating_sub(1);
            if inline.last().is_some_and(|(_, d)| *d == depth) {
                inline.pop();
            }
        } else if t == "mod" && is_ident(token(i + 1)) && token(i + 2) == "{" {
            inline.push((token(i + 1).to_string(), depth));
            depth += 1;
            i += 3;
            continue;
        } else if is_ident(t) && token(i + 1) == "::" && (i == 0 || !matches!(token(i - 1), "::" | "in")) {
            let here: Vec<String> = module.iter().cloned().chain(inline.iter().map(|(name, _)| name.clone())).collect();
            let child = || {
                let mut path = here.clone();
                path.push(t.to_string());
                known.contains(&path)
            };
            if matches!(t, "crate" | "super" | "self") || child() {
                let (paths, next) = tree(tokens, i, here);
                out.extend(paths);
                i = next.max(i + 1);
                continue;
            }
        }
        i += 1;
    }
    out
}

/// Parses a path or `use` tree starting at `i`, relative to `base`; returns
/// the paths it names (one per group leaf) and the index after it.
fn tree(tokens: &[String], mut i: usize, base: Vec<String>) -> (Vec<Vec<String>>, usize) {
    let token = |i: usize| tokens.get(i).map(String::as_str).unwrap_or("");
    let mut path = base;
    let mut out = Vec::new();
    loop {
        match token(i) {
            "{" => {
                i += 1;
                loop {
                    match token(i) {
                        "" => return (out, i),
                        "}" => return (out, i + 1),
                        "," => i += 1,
                        "as" => i += 2,
                        _ => {
                            let (paths, next) = tree(tokens, i, path.clone());
                            out.extend(paths);
                            i = next.max(i + 1);
                        }
                    }
                }
            }
            "*" => {
                out.push(path);
                return (out, i + 1);
            }
            t if is_ident(t) => {
                match t {
                    "crate" => path = vec!["crate".to_string()],
                    "super" => {
                        path.pop();
                    }
                    "self" => {}
                    _ => path.push(t.to_string()),
                }
                i += 1;
            }
            _ => break,
        }
        if token(i) == "::" {
            i += 1;
        } else {
            break;
        }
    }
    out.push(path);
    (out, i)
}
