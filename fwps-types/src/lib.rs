//! Kernel-only Windows Filtering Platform types (`fwpsk.h`, `fwpstypes.h`).
//!
//! `windows-sys` carries the user-mode `FWP_*`/`FWPM_*` types and most
//! constants, but not the structures a callout driver receives from the
//! filter engine (`FWPS_FILTER2`, `FWPS_CLASSIFY_OUT0`, ...), and wdk-sys has
//! no WFP bindings at all. These are written from Microsoft's documented
//! definitions and every one carries compile-time size and offset assertions
//! for x64, checked against a table produced by an MS-ABI compiler.
//!
//! The driver and the simulated kernel both use this crate, so the two sides
//! of every call agree on one definition.
#![no_std]
#![allow(non_camel_case_types, non_snake_case)]
#![forbid(unsafe_code)]

mod callout;
mod constants;
mod fields;
mod filter;
mod layout;
mod metadata;
mod values;

pub use callout::*;
pub use constants::*;
pub use fields::*;
pub use filter::*;
pub use metadata::*;
pub use values::*;

/// Re-exported so users of this crate need not name `windows-sys` for the
/// management-side types that appear inside the kernel structures.
pub use windows_sys::Win32::NetworkManagement::WindowsFilteringPlatform as fwp;
pub use windows_sys::core::GUID;

/// The kernel's status code; negative values are failures.
pub type NTSTATUS = i32;
