//! Layer 7, the glue that only calls: KMDF (`kmdf`, over `control::device`'s
//! `Framework`), the loader stub and the image's runtime on Windows, and
//! the simulated framework elsewhere.

#[cfg(all(windows, any(feature = "kmdf", feature = "wdf-declarations")))]
mod kmdf;

#[cfg(all(windows, feature = "kmdf", feature = "fwpsk-bindgen-check"))]
mod fwpsk_layout_check;
#[cfg(all(windows, feature = "wdf-declarations", not(feature = "kmdf")))]
mod fx_driver_entry;
#[cfg(windows)]
mod kernel_runtime;
#[cfg(not(windows))]
pub mod sim_framework;
