//! A user-mode model of the Windows kernel and the WFP filter engine, for
//! running the wfpcallout driver's real callbacks in tests.
//!
//! It defines, as `extern "system"` symbols, every kernel function the
//! driver imports (pool, spin locks, IRQL, time, `Fwps*`, `Fwpm*`), so the
//! driver links against it on any non-Windows host. The engine side calls
//! the driver's notifyFn on filter add/delete and its classifyFn at a
//! simulated DISPATCH_LEVEL, from as many threads as a test likes. A
//! Driver-Verifier-like checker watches IRQL rules, pool tags, double and
//! wrong-tag frees, overruns and leaks; faults can be injected into any
//! allocation or engine call.
//!
//! Global state, like a kernel's: one test at a time owns it through
//! [`Kernel::boot`], which serializes tests in a process and resets
//! everything.
#![allow(clippy::indexing_slicing, non_snake_case)]

mod choice;
pub mod clock;
pub mod debug_print;
pub mod engine;
pub mod etw;
pub mod faults;
pub mod inspect;
pub mod irql;
pub mod mdl;
pub mod pool;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub mod processor_block;
pub mod spin_lock;
pub mod sync_points;
pub mod vendor;
pub mod verifier;
pub mod wdf;

use std::sync::{Mutex, MutexGuard};

static OWNER: Mutex<()> = Mutex::new(());

/// A booted simulated kernel. Holding it gives the test exclusive use of
/// the (global) kernel state; dropping it lets the next test boot.
pub struct Kernel {
    _owner: MutexGuard<'static, ()>,
    device_object: Box<[u8; 336]>,
}

impl Kernel {
    /// Boots a fresh kernel: empty pool, engine, verifier log and faults,
    /// clock at one hour, the calling thread at PASSIVE_LEVEL.
    pub fn boot() -> Self {
        let owner = OWNER.lock().unwrap_or_else(|e| e.into_inner());
        while irql::current() > fwps_types::PASSIVE_LEVEL {
            irql::lower(fwps_types::PASSIVE_LEVEL);
        }
        // Before anything is reset: a completion still being delivered (at
        // DISPATCH_LEVEL it may need this thread's processor) finishes.
        engine::quiesce();
        irql::reset();
        pool::reset();
        mdl::reset();
        engine::reset();
        verifier::reset();
        faults::reset();
        clock::reset();
        debug_print::reset();
        sync_points::reset();
        wdf::reset();
        etw::reset();
        Kernel { _owner: owner, device_object: Box::new([0; 336]) }
    }

    /// The `DEVICE_OBJECT` the driver registers its callouts with (opaque:
    /// the engine only checks it is not NULL).
    pub fn device_object(&mut self) -> *mut core::ffi::c_void {
        self.device_object.as_mut_ptr().cast()
    }

    /// Fails the test with the verifier's report if any rule was broken.
    pub fn assert_clean(&self) {
        let violations = verifier::violations();
        if !violations.is_empty() {
            let report: Vec<String> = violations.iter().map(ToString::to_string).collect();
            panic!("simulated kernel: {} verifier violation(s):\n  {}", violations.len(), report.join("\n  "));
        }
    }

    /// After the driver's unload: reports every pool block and engine
    /// object still held as a leak, then fails the test if anything was
    /// found (or any other rule was broken).
    pub fn assert_unloaded_clean(&self) {
        pool::report_leaks();
        engine::report_leaks();
        mdl::report_leaks();
        etw::report_leaks();
        self.assert_clean();
    }
}
