//! Build script of the `wfpcallout` driver package.
//!
//! Two very different builds share this package:
//!
//! * **Everywhere but Windows, or with feature `kmdf` off**: the crate is an
//!   rlib linked against the simulated kernel (or, for the Windows-target
//!   cross-check, a staticlib linked by hand). There is nothing to configure.
//! * **Windows target with feature `kmdf`**: the crate is the KMDF 1.33 driver.
//!   wdk-build reads `[package.metadata.wdk]`, emits the kernel link arguments
//!   (`/DRIVER /SUBSYSTEM:NATIVE /KERNEL /ENTRY:FxDriverEntry ...`) and the
//!   `driver_model__driver_type` cfg the wdk crates key on; this script adds
//!   the WFP import library. With feature `fwpsk-bindgen-check` it also
//!   generates bindings to the WDK's `fwpsk.h` into `$OUT_DIR/fwpsk.rs`, which
//!   `driver/glue/fwpsk_layout_check.rs` compares with the hand-written layouts of
//!   the `fwps-types` crate at compile time.
//!
//! The script itself is compiled for the *host*, so `cfg(windows)` below is
//! the host's OS; the target's OS and the package features are read from the
//! environment Cargo sets when it runs the script. The `wdk-build` (and
//! `bindgen`) build-dependencies only exist when the target is Windows and the
//! feature is on, and wdk-build only builds on a Windows host, hence the
//! `cfg(all(windows, feature = ...))` gates.

use std::env;
use std::error::Error;

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo::rerun-if-changed=build.rs");

    let target_is_windows = env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "windows");
    let kmdf = env::var_os("CARGO_FEATURE_KMDF").is_some();
    if !(target_is_windows && kmdf) {
        // Portable build: no WDK, nothing to link beyond what the crates
        // declare themselves.
        return Ok(());
    }
    kmdf_driver::configure()
}

/// The KMDF driver build: only reachable on a Windows host, where the
/// `wdk-build` build-dependency exists.
#[cfg(all(windows, feature = "kmdf"))]
mod kmdf_driver {
    use std::error::Error;

    /// Configures the link of the `.sys` and, with `fwpsk-bindgen-check`,
    /// generates the `fwpsk.h` bindings.
    pub fn configure() -> Result<(), Box<dyn Error>> {
        // `wdk_build::configure_wdk_binary_build()` is exactly
        // `Config::from_env_auto()?.configure_binary_build()`; the `Config`
        // is kept here because the bindgen step needs it too (building it
        // runs `cargo metadata`, so it is done once).
        let config = wdk_build::Config::from_env_auto()?;
        config.configure_binary_build()?;

        // The WFP callout API (FwpsCalloutRegister2, FwpsPendOperation0,
        // FwpmFilterAdd0, ...) is exported by fwpkclnt.sys; its import
        // library is in the WDK's km\<arch> directory, which
        // configure_binary_build has just put on the link search path. The
        // FFI module also declares these imports with `raw-dylib`; the import
        // library covers any declaration that does not. ntoskrnl, hal,
        // wmilib, WdfLdr, WdfDriverEntry and BufferOverflowFastFailK are
        // linked by wdk-sys. The driver uses nothing from netio.sys or
        // ndis.sys directly, so neither is linked.
        println!("cargo::rustc-link-lib=fwpkclnt");

        fwpsk_bindings::generate(&config)
    }

    /// Bindings to `fwpsk.h` for the compile-time layout cross-check.
    #[cfg(feature = "fwpsk-bindgen-check")]
    mod fwpsk_bindings {
        use std::env;
        use std::error::Error;
        use std::path::PathBuf;

        use wdk_build::{ApiSubset, BuilderExt as _, Config};

        /// The kernel-only WFP structures the driver defines by hand in the
        /// `fwps-types` crate. Each C struct is `typedef struct NAME_ {..}
        /// NAME;`, so both spellings are allowed; the types they reference
        /// (FWP_VALUE0, FWPM_PROVIDER_CONTEXT2, SCOPE_ID, ...) come along
        /// because bindgen allowlists recursively.
        const CHECKED_TYPES: &[&str] = &[
            "FWPS_FILTER2",
            "FWPS_CALLOUT2",
            "FWPS_CLASSIFY_OUT0",
            "FWPS_INCOMING_VALUES0",
            "FWPS_INCOMING_VALUE0",
            "FWPS_INCOMING_METADATA_VALUES0",
            "FWPS_ACTION0",
            "FWPS_FILTER_CONDITION0",
            "FWPS_DISCARD_METADATA0",
            "FWPS_INBOUND_FRAGMENT_METADATA0",
        ];

        /// What the WFP headers need on top of the WDK base headers
        /// (`ntifs.h`, `ntddk.h`, `ntstrsafe.h`). `NDIS630` selects the
        /// NDIS 6.30 declarations, under which `FWPS_INCOMING_METADATA_VALUES0`
        /// has its `vSwitch*` fields instead of `padding0..2`; `ndis.h` must
        /// precede `fwpsk.h` (NET_BUFFER_LIST and friends).
        const WFP_HEADERS: &str = "\
#define NDIS630 1
#include <ndis.h>
#include <fwpsk.h>
#include <fwpmk.h>
";

        /// Writes `$OUT_DIR/fwpsk.rs`.
        pub fn generate(config: &Config) -> Result<(), Box<dyn Error>> {
            let mut header = config.bindgen_header_contents([ApiSubset::Base])?;
            header.push_str(WFP_HEADERS);

            let mut builder = bindgen::Builder::wdk_default(config)?
                .header_contents("fwpsk-input.h", &header)
                // Structures only: no functions, no global variables.
                .with_codegen_config(bindgen::CodegenConfig::TYPES)
                // The workspace forbids unsafe operations outside `unsafe`
                // blocks, and an `allow` cannot lift a `forbid`.
                .wrap_unsafe_ops(true)
                // NET_BUFFER_HEADER's nameless union is more than bindgen
                // can express. None of the checked types reaches it today;
                // if one ever does, an opaque blob of the right size keeps
                // the bindings compiling.
                .opaque_type("_?NET_BUFFER_HEADER");
            for name in CHECKED_TYPES {
                builder = builder.allowlist_type(format!("{name}_?"));
            }

            let out_path = PathBuf::from(env::var("OUT_DIR")?).join("fwpsk.rs");
            builder.generate()?.write_to_file(&out_path)?;
            Ok(())
        }
    }

    /// Without `fwpsk-bindgen-check` nothing is generated (and `bindgen` is
    /// not a build-dependency).
    #[cfg(not(feature = "fwpsk-bindgen-check"))]
    mod fwpsk_bindings {
        use std::error::Error;

        pub fn generate(_config: &wdk_build::Config) -> Result<(), Box<dyn Error>> {
            Ok(())
        }
    }
}

/// A Windows target with `kmdf` on a host that is not Windows: wdk-build
/// cannot run here (it needs the WDK and refuses to build off Windows), so
/// say what to do instead of failing obscurely.
#[cfg(not(all(windows, feature = "kmdf")))]
mod kmdf_driver {
    use std::error::Error;

    pub fn configure() -> Result<(), Box<dyn Error>> {
        Err("the KMDF driver (feature `kmdf`) can only be built on a Windows host with the WDK \
             (run `cargo make` there); to check the Windows target from this host, build with \
             `--no-default-features`"
            .into())
    }
}
