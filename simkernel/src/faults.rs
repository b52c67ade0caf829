//! Fault injection: make the Nth pool allocation, or the Nth call of a
//! named engine API, fail. Counts start when the fault is armed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
struct Faults {
    /// Fail the allocation when the countdown reaches zero.
    allocation_countdown: Option<u64>,
    /// Fail every allocation while set.
    fail_all_allocations: bool,
    /// API name -> (calls left before failing, failures left, status).
    calls: HashMap<&'static str, (u64, u64, i32)>,
}

static FAULTS: Mutex<Option<Faults>> = Mutex::new(None);
static ALLOCATIONS_SEEN: AtomicU64 = AtomicU64::new(0);
static INJECTED: AtomicU64 = AtomicU64::new(0);

fn with<R>(f: impl FnOnce(&mut Faults) -> R) -> R {
    let mut guard = FAULTS.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(Faults::default))
}

/// Fails the `nth` allocation from now (0 = the next one), once.
pub fn fail_allocation(nth: u64) {
    with(|f| f.allocation_countdown = Some(nth));
}

/// Fails every allocation until [`clear`].
pub fn fail_all_allocations(on: bool) {
    with(|f| f.fail_all_allocations = on);
}

/// Fails the `nth` call (0 = the next) of `api` with `status`, once.
pub fn fail_call(api: &'static str, nth: u64, status: i32) {
    fail_calls(api, nth, 1, status);
}

/// Fails `times` consecutive calls of `api`, starting with the `nth`.
pub fn fail_calls(api: &'static str, nth: u64, times: u64, status: i32) {
    with(|f| {
        f.calls.insert(api, (nth, times, status));
    });
}

/// Disarms every fault.
pub fn clear() {
    with(|f| *f = Faults::default());
}

/// Allocations attempted since boot (to size a sweep over every site).
pub fn allocations_seen() -> u64 {
    ALLOCATIONS_SEEN.load(Ordering::Relaxed)
}

/// Faults injected since boot.
pub fn injected() -> u64 {
    INJECTED.load(Ordering::Relaxed)
}

pub(crate) fn allocation_should_fail() -> bool {
    ALLOCATIONS_SEEN.fetch_add(1, Ordering::Relaxed);
    let fail = with(|f| {
        if f.fail_all_allocations {
            return true;
        }
        match f.allocation_countdown {
            Some(0) => {
                f.allocation_countdown = None;
                true
            }
            Some(n) => {
                f.allocation_countdown = Some(n - 1);
                false
            }
            None => false,
        }
    });
    if fail {
        INJECTED.fetch_add(1, Ordering::Relaxed);
    }
    fail
}

/// The status an armed fault makes `api` return now, if any.
pub(crate) fn call_should_fail(api: &'static str) -> Option<i32> {
    let status = with(|f| match f.calls.get_mut(api) {
        Some((0, times, status)) => {
            let status = *status;
            *times -= 1;
            if *times == 0 {
                f.calls.remove(api);
            }
            Some(status)
        }
        Some((n, _, _)) => {
            *n -= 1;
            None
        }
        None => None,
    });
    if status.is_some() {
        INJECTED.fetch_add(1, Ordering::Relaxed);
    }
    status
}

pub(crate) fn reset() {
    clear();
    ALLOCATIONS_SEEN.store(0, Ordering::Relaxed);
    INJECTED.store(0, Ordering::Relaxed);
}
