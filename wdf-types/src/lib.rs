//! The KMDF declarations wfpcallout's glue (`driver/glue/kmdf.rs`) uses, spelled
//! as wdk-sys spells them, so the same glue builds against wdk-sys on a
//! Windows build host (bindings generated from the WDK) and against these
//! everywhere else: the cross-check compiles the glue that ships.
//!
//! Every structure has compile-time size and offset assertions and every
//! method its function-table index, all taken from `LAYOUTS.md`, which
//! `gen/gen.sh` generates with an MS-ABI compiler from Microsoft's published
//! KMDF 1.33 headers (microsoft/Windows-Driver-Frameworks). Only what the
//! glue uses is declared: a new WDF call means a new row in `gen.sh`'s
//! lists, a regenerated table, and a declaration here.
#![cfg_attr(not(test), no_std)]
#![allow(non_camel_case_types, non_snake_case, non_upper_case_globals, missing_docs)]

mod functions;
mod layout;
mod types;

pub use functions::*;
pub use types::*;
