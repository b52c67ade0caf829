//! wfpcallout: a Windows Filtering Platform callout driver.
//!
//! notifyFn attaches a per-filter context when a filter naming one of our
//! callouts is added and releases it when the filter is deleted; classifyFn
//! uses that context directly at DISPATCH_LEVEL. Everything here except the
//! KMDF glue (`kmdf`, which only calls: `control_device` decides) is
//! portable: on Windows it links against ntoskrnl and fwpkclnt, elsewhere
//! against the simulated kernel, which calls these very callbacks in tests.
//!
//! `unsafe` is confined to the FFI boundary (`ffi`, `etw`, `pool`, `spin_lock`,
//! `filter_view`, the counters and clock shims, the KMDF glue and the
//! image's runtime) and to the callback trampolines; the policy logic above
//! them denies it.
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
