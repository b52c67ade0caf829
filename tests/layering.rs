//! The driver's dependencies run one way: each folder under `driver/` is a
//! layer, a file may import only from its own layer or the ones below, and
//! no files import each other in a cycle. Read from the source, so a `use`
//! that breaks the design fails here, naming the files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, lowest first (README "Layout", DESIGN notes).
const LAYERS: [&str; 8] = ["platform", "wfp", "filters", "connections", "verdicts", "callbacks", "control", "glue"];

/// Every module file of the driver as `layer::file`, with its source
/// (comments dropped, so prose naming a module is not an import).
fn modules(root: &Path) -> BTreeMap<String, String> {
    let mut modules = BTreeMap::new();
    for layer in LAYERS {
        for entry in std::fs::read_dir(root.join(layer)).expect("a layer folder") {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
            if path.extension().is_some_and(|e| e == "rs") && name != "mod" {
                let source = std::fs::read_to_string(&path).unwrap();
                let code: String =
                    source.lines().map(|line| line.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
                modules.insert(format!("{layer}::{name}"), code);
            }
        }
    }
    modules
}

/// The modules `code` names through `crate::layer::file`, in a path or in a
/// `use crate::layer::{file, ...}` group.
fn imports(code: &str, known: &BTreeMap<String, String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let layer: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        let after = &rest[layer.len()..];
        let Some(after) = after.strip_prefix("::") else { continue };
        let names: Vec<String> = if let Some(group) = after.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            group.split(',').map(|item| item.trim().split("::").next().unwrap_or("").trim().to_owned()).collect()
        } else {
            vec![after.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()]
        };
        for name in names {
            let module = format!("{layer}::{name}");
            if known.contains_key(&module) {
                found.insert(module);
            }
        }
    }
    found
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("driver");
    let modules = modules(&root);
    modules
        .iter()
        .map(|(name, code)| (name.clone(), imports(code, &modules).into_iter().filter(|m| m != name).collect()))
        .collect()
}

fn rank(module: &str) -> usize {
    LAYERS.iter().position(|layer| module.starts_with(&format!("{layer}::"))).expect("a known layer")
}

/// Edges that point up the layers.
fn upward(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    graph
        .iter()
        .flat_map(|(from, to)| to.iter().filter(|to| rank(to) > rank(from)).map(move |to| format!("{from} -> {to}")))
        .collect()
}

/// One import cycle, as the path around it, if there is any.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, done, path) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|node| visit(node, graph, &mut done, &mut Vec::new()))
}

#[test]
fn every_layer_imports_only_from_itself_and_below() {
    let graph = graph();
    assert!(graph.len() > 30, "the driver's modules were found: {graph:?}");
    assert!(
        graph["callbacks::classify"].contains("callbacks::state"),
        "imports are read: {:?}",
        graph["callbacks::classify"]
    );
    let upward = upward(&graph);
    assert!(upward.is_empty(), "imports that point up the layers {LAYERS:?}:\n{}", upward.join("\n"));
}

#[test]
fn no_modules_import_each_other_in_a_cycle() {
    let graph = graph();
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_checks_see_a_back_edge_and_a_cycle() {
    let mut graph = graph();
    graph.get_mut("platform::pool").unwrap().insert("callbacks::state".to_owned());
    assert_eq!(upward(&graph), ["platform::pool -> callbacks::state"]);
    let cycle = find_cycle(&graph).expect("state imports pool: a cycle");
    assert!(cycle.first() == cycle.last() && cycle.len() > 2, "{cycle:?}");
}

#[test]
fn the_global_state_is_named_only_from_the_callbacks_up() {
    let graph = graph();
    let below: Vec<_> = graph
        .iter()
        .filter(|(from, to)| rank(from) < rank("callbacks::state") && to.contains("callbacks::state"))
        .map(|(from, _)| from.clone())
        .collect();
    assert!(below.is_empty(), "{below:?} reach the global state from below");
}
