//! wfpcallout: a Windows Filtering Platform callout driver.
//!
//! notifyFn attaches a per-filter context when a filter naming one of our
//! callouts is added and releases it when the filter is deleted; classifyFn
//! uses that context directly at DISPATCH_LEVEL. Everything here except the
//! KMDF glue (`glue::kmdf`, which only calls: `control::device` decides) is
//! portable: on Windows it links against ntoskrnl and fwpkclnt, elsewhere
//! against the simulated kernel, which calls these very callbacks in tests.
//!
//! The modules are layers, lowest first, and a module imports only from its
//! own layer and those below (`tests/layering.rs` fails on an upward import
//! or a cycle): `platform` (kernel services), `wfp` (the engine's boundary),
//! `filters` (per-filter state and policy), `connections` (flows, kept
//! verdicts), `verdicts` (pended classifications, agents), `callbacks`
//! (what the engine calls, and the one global state they share), `control`
//! (load/unload, IOCTLs, the control device's decisions), `glue` (KMDF and
//! the simulated framework).
//!
//! `unsafe` is confined to eight boundary files (`tests/unsafe_boundary.rs`
//! fails on any other; the crate denies `unsafe_code` and only they allow
//! it): the kernel's exports and their safe wrappers (`platform::kernel`),
//! every block of pool the driver owns behind safe types (`platform::pool`:
//! boxes, arrays, reference-counted blocks, the
//! generation-checked handle slots), the spin lock (`platform::spin_lock`),
//! the filter engine's functions and the owned types over them
//! (`wfp::ffi`: device object, injection handle, packet copies, management
//! session), the views over what the engine lends or returns
//! (`wfp::filter_view`: classify-scoped filter, output, values, metadata
//! and packet; the pended operation, completed once by value; objects read
//! by key), the entry points the engine calls (`callbacks::trampolines`),
//! and the KMDF glue with the image's loader stub (`glue::kmdf`,
//! `glue::fx_driver_entry`). Each `unsafe` constructor states its
//! invariant once; every other file is under the crate's
//! `deny(unsafe_code)`, most `forbid` it. classify borrows the
//! context a `filter->context` word names without `unsafe`: the entry
//! point's promises travel as types (`wfp::filter_view`: the matched
//! filter's word does not change during the call, outside lookup mode it is
//! the one our ADD stored, and the borrow happens inside the rundown). The
//! borrow does not depend on when the engine delivers DELETE (undocumented
//! relative to classifies in flight): DELETE makes the word stop matching
//! at once, but the handle's slot keeps its reference to the context until
//! every rundown line has been seen idle since (`HandleSlots::reclaim`,
//! after each DELETE, from the timer, and at unload once the rundown has
//! drained), so a classify that matched before the DELETE never sees it
//! freed.
#![no_std]
#![deny(unsafe_code)]

#[cfg(not(windows))]
extern crate std;
// The simulated kernel provides every kernel symbol the driver imports.
#[cfg(not(windows))]
extern crate wfpcallout_simkernel as _;

pub mod callbacks;
pub mod connections;
pub mod control;
pub mod filters;
pub mod glue;
pub mod platform;
pub mod verdicts;
pub mod wfp;

// The WDF names the KMDF glue uses: wdk-sys's, generated from the WDK's
// headers, on a Windows build host; else the project's own declarations,
// asserted against Microsoft's KMDF headers (the cross-check).
#[cfg(all(windows, feature = "wdf-declarations", not(feature = "kmdf")))]
use wdf_types as wdf_api;
#[cfg(all(windows, feature = "kmdf"))]
use wdk_sys as wdf_api;
