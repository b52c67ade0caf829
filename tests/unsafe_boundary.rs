//! `unsafe` stays at the boundary: the crate root denies `unsafe_code`, and
//! only the files below may allow it. Each is a boundary with one concept:
//! the KMDF glue and the image's entry stub, the kernel's exports, owned pool
//! memory, the spin lock, the filter engine's functions, the views over the
//! engine's structures, and the entry points the engine calls. Read from the
//! source (comments and literals skipped), so a new `unsafe` anywhere else
//! fails here, naming the file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "../simkernel/tests/layering/mod.rs"]
#[allow(dead_code)]
mod layering;

use std::collections::BTreeSet;
use std::path::Path;

/// The files that may hold `unsafe`, relative to `driver/` (at most 8: issue
/// "unsafe only at the boundary").
const BOUNDARY: [&str; 8] = [
    "callbacks/trampolines.rs",
    "glue/fx_driver_entry.rs",
    "glue/kmdf.rs",
    "platform/kernel.rs",
    "platform/pool.rs",
    "platform/spin_lock.rs",
    "wfp/ffi.rs",
    "wfp/filter_view.rs",
];

/// Every `.rs` file under `dir`, as a path relative to `top` with `/`.
fn sources(top: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(top, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(top).unwrap().to_str().unwrap().replace('\\', "/");
            out.push((relative, std::fs::read_to_string(&path).unwrap()));
        }
    }
}

/// The files among `files` whose code (not comments or literals) says
/// `unsafe`.
fn files_with_unsafe(files: &[(String, String)]) -> BTreeSet<String> {
    files
        .iter()
        .filter(|(_, source)| layering::tokens(source).iter().any(|token| token == "unsafe"))
        .map(|(name, _)| name.clone())
        .collect()
}

fn driver_files() -> Vec<(String, String)> {
    let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("driver");
    let mut files = Vec::new();
    sources(&top, &top, &mut files);
    files
}

#[test]
fn unsafe_appears_only_in_the_boundary_files() {
    let allowed: BTreeSet<String> = BOUNDARY.iter().map(|s| (*s).to_owned()).collect();
    let outside: Vec<String> = files_with_unsafe(&driver_files()).difference(&allowed).cloned().collect();
    assert!(outside.is_empty(), "unsafe outside the boundary files: {outside:?}");
}

#[test]
fn every_boundary_file_exists_and_needs_its_place_on_the_list() {
    let files = driver_files();
    let with_unsafe = files_with_unsafe(&files);
    for name in BOUNDARY {
        assert!(files.iter().any(|(f, _)| f == name), "{name} is on the list but does not exist");
        assert!(with_unsafe.contains(name), "{name} no longer uses unsafe: take it off the list");
    }
}

/// A file that lifts the lint only for bindings it includes from the build
/// (bindgen's reading of the WDK headers, compared with our layouts at
/// compile time, Windows with feature `fwpsk-bindgen-check` only): it has
/// no `unsafe` of its own, which the first test checks.
const INCLUDES_GENERATED_BINDINGS: &str = "glue/fwpsk_layout_check.rs";

#[test]
fn only_the_crate_root_decides_the_unsafe_lint() {
    // Outside the boundary a file may tighten the lint (deny or forbid),
    // never lift it.
    let mut boundary: BTreeSet<&str> = BOUNDARY.into_iter().collect();
    boundary.insert(INCLUDES_GENERATED_BINDINGS);
    let mut lifted = Vec::new();
    for (name, source) in driver_files() {
        let tokens = layering::tokens(&source);
        let lifts = tokens.windows(3).any(|w| w[0] == "allow" && w[1] == "(" && w[2] == "unsafe_code");
        if lifts && !boundary.contains(name.as_str()) {
            lifted.push(name);
        }
    }
    assert!(lifted.is_empty(), "allow(unsafe_code) outside the boundary files: {lifted:?}");
}

#[test]
fn the_check_sees_unsafe_in_code_and_not_in_comments_or_strings() {
    let files = [
        ("a.rs".to_owned(), "// unsafe in a comment\nfn f() { let s = \"unsafe\"; }".to_owned()),
        ("b.rs".to_owned(), "fn g(p: *const u8) -> u8 { unsafe { *p } }".to_owned()),
        ("c.rs".to_owned(), "/* unsafe */ #![deny(unsafe_code)]".to_owned()),
    ];
    assert_eq!(files_with_unsafe(&files), BTreeSet::from(["b.rs".to_owned()]));
}
