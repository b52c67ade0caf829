//! The Driver-Verifier-like checker: every rule the simulated kernel
//! enforces reports here. A violation does not abort the driver's call (a
//! panic cannot unwind through `extern "system"`); it is recorded with the
//! bugcheck name Windows would use, and [`crate::Kernel::assert_clean`]
//! fails the test with the full report.

use std::fmt;
use std::sync::Mutex;

/// What kind of rule was broken, named after the bugcheck Windows raises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViolationKind {
    /// A call made at an IRQL it does not allow (`IRQL_NOT_LESS_OR_EQUAL`,
    /// `DRIVER_VERIFIER_DETECTED_VIOLATION`).
    Irql,
    /// Freeing a block twice or an address that is not a pool block
    /// (`BAD_POOL_CALLER` 0x7).
    DoubleFree,
    /// Freeing with a tag other than the allocation's (`BAD_POOL_CALLER` 0x0A).
    WrongTag,
    /// A write past the end of a block (`DRIVER_CORRUPTED_EXPOOL`,
    /// special pool).
    PoolCorruption,
    /// Pool still allocated at unload (`DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS`
    /// / `DRIVER_VERIFIER_DETECTED_VIOLATION` 0x60 pool leak).
    Leak,
    /// A WFP API used against its contract (bad handle, NULL argument,
    /// unmatched transaction, a pended operation never completed).
    ApiMisuse,
    /// A lock released at the wrong IRQL or by a thread that does not hold it.
    Lock,
}

/// One recorded violation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The rule broken.
    pub kind: ViolationKind,
    /// What happened, with the values involved.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:?}] {}", self.kind, self.message)
    }
}

static VIOLATIONS: Mutex<Vec<Violation>> = Mutex::new(Vec::new());

fn violations_lock() -> std::sync::MutexGuard<'static, Vec<Violation>> {
    VIOLATIONS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Records a violation (and prints it at once, as a debugger would).
pub fn report(kind: ViolationKind, message: impl Into<String>) {
    let violation = Violation { kind, message: message.into() };
    eprintln!("simulated kernel: VERIFIER VIOLATION {violation}");
    violations_lock().push(violation);
}

/// Every violation recorded since the kernel booted (or the last `take`).
pub fn violations() -> Vec<Violation> {
    violations_lock().clone()
}

/// Removes and returns the recorded violations (for tests that provoke
/// one on purpose).
pub fn take() -> Vec<Violation> {
    std::mem::take(&mut *violations_lock())
}

pub(crate) fn reset() {
    violations_lock().clear();
}
