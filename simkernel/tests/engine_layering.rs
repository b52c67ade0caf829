//! The simulated engine's modules depend one way: no import cycle among
//! the files of `src/engine/`, and no file using one of a higher layer
//! (the layers are the folders, `src/engine/mod.rs` describes them). The
//! reader is in `layering/mod.rs`; the last tests check the reader itself
//! on small made-up sources, so a reader that sees nothing cannot pass.
#![allow(clippy::indexing_slicing)]

mod layering;

use layering::ModuleGraph;
use std::path::Path;

/// The engine's layers, bottom first.
const ENGINE_LAYERS: &[(&str, &[&str])] = &[
    ("model", &["crate::engine::model"]),
    ("state", &["crate::engine::state"]),
    ("classification", &["crate::engine::classification"]),
    ("api", &["crate::engine::api"]),
    ("public surface", &["crate::engine"]),
];

fn engine() -> ModuleGraph {
    ModuleGraph::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src/engine"), "crate::engine")
}

#[test]
fn the_engine_has_no_import_cycle() {
    if let Some(cycle) = engine().cycle() {
        panic!("import cycle in src/engine: {}", cycle.join(" -> "));
    }
}

#[test]
fn every_engine_module_uses_only_its_own_layer_or_lower_ones() {
    let problems = engine().layer_violations(ENGINE_LAYERS);
    assert!(problems.is_empty(), "src/engine against its layer order:\n  {}", problems.join("\n  "));
}

#[test]
fn the_reader_sees_the_engines_modules_and_references() {
    let graph = engine();
    for module in ["crate::engine", "crate::engine::state::packets", "crate::engine::classification::client"] {
        assert!(graph.modules.contains(module), "{module} not found: {:?}", graph.modules);
    }
    let uses = |from: &str, to: &str| graph.edges.get(from).is_some_and(|targets| targets.contains(to));
    // Through a `use` of a sibling, of a path from `crate::`, inside a
    // `use` group, and from the root's facade modules.
    assert!(uses("crate::engine::state::pending", "crate::engine::state::packets"));
    assert!(uses("crate::engine::api::injection", "crate::engine::classification::client"));
    assert!(uses("crate::engine::classification::client", "crate::engine::state::reauthorization"));
    assert!(uses("crate::engine", "crate::engine::api::completion"));
}

fn sources(files: &[(&str, &str)]) -> Vec<(String, String)> {
    files.iter().map(|(path, text)| (path.to_string(), text.to_string())).collect()
}

#[test]
fn the_reader_finds_a_cycle_through_groups_and_folders_and_names_it() {
    let graph = ModuleGraph::from_sources(
        "crate::engine",
        &sources(&[
            ("mod.rs", "mod a; mod low;\npub use a::thing;"),
            ("a.rs", "use super::{b, low::{deep::Deep, other}};\nfn f() { b::g(); }"),
            // A comment, a string and `super` inside an inline module are
            // not references to another module.
            (
                "b.rs",
                "// super::c\nconst S: &str = \"super::c\";\nfn g() { let x = 'c'; super::c::h(); }\n\
                 #[cfg(test)] mod tests { use super::*; }",
            ),
            ("c.rs", "pub(in crate::engine) fn h() { crate::engine::a::f(); }"),
            ("low/mod.rs", "pub mod deep; pub mod other;"),
            ("low/deep.rs", "pub struct Deep;"),
            ("low/other.rs", "use super::deep::Deep;"),
        ]),
    );
    let edges = |from: &str| graph.edges[from].iter().cloned().collect::<Vec<_>>();
    assert_eq!(edges("crate::engine"), ["crate::engine::a"]);
    assert_eq!(
        edges("crate::engine::a"),
        ["crate::engine::b", "crate::engine::low::deep", "crate::engine::low::other"]
    );
    assert_eq!(edges("crate::engine::b"), ["crate::engine::c"]);
    assert_eq!(edges("crate::engine::c"), ["crate::engine::a"]);
    assert_eq!(edges("crate::engine::low::other"), ["crate::engine::low::deep"]);
    assert_eq!(
        graph.cycle(),
        Some(
            ["crate::engine::a", "crate::engine::b", "crate::engine::c", "crate::engine::a"].map(String::from).to_vec()
        )
    );
}

#[test]
fn the_reader_reports_a_reference_up_the_layers_and_a_module_in_no_layer() {
    let graph = ModuleGraph::from_sources(
        "crate",
        &sources(&[
            ("lib.rs", "mod low; mod high; mod loose;"),
            ("low.rs", "fn f() { crate::high::g(); }"),
            ("high.rs", "use crate::low;"),
            ("loose.rs", ""),
        ]),
    );
    assert_eq!(graph.cycle().map(|c| c.len()), Some(3));
    let layers: &[(&str, &[&str])] = &[("bottom", &["crate::low"]), ("top", &["crate::high"])];
    assert_eq!(
        graph.layer_violations(layers),
        [
            "crate is in no layer",
            "crate::loose is in no layer",
            "crate::low (layer bottom) uses crate::high (layer top, above it)",
        ]
    );
}
