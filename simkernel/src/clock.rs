//! A virtual clock: interrupt time only moves when a test (or a wait)
//! advances it, so rate limits and timeouts are deterministic.

use crate::irql;
use fwps_types::{PASSIVE_LEVEL, STATUS_SUCCESS};
use std::sync::atomic::{AtomicU64, Ordering};

/// 100-ns ticks since the simulated boot. Starts at one hour, so that
/// "time zero" never looks special.
static NOW: AtomicU64 = AtomicU64::new(START);
const START: u64 = 3_600 * 10_000_000;
/// The longest real-time sleep one simulated wait takes.
const MAX_REAL_WAIT: std::time::Duration = std::time::Duration::from_millis(1);

/// Current interrupt time.
pub fn now() -> u64 {
    NOW.load(Ordering::Acquire)
}

/// Moves the clock forward by `ticks` (100 ns each).
pub fn advance(ticks: u64) {
    NOW.fetch_add(ticks, Ordering::AcqRel);
    // Rules that depend on how long something is held are checked as time
    // passes.
    crate::engine::packets::check_held_clones();
}

/// Moves the clock forward by `ms` milliseconds.
pub fn advance_ms(ms: u64) {
    advance(ms.saturating_mul(10_000));
}

/// `KeQueryUnbiasedInterruptTime`.
#[unsafe(no_mangle)]
pub extern "system" fn KeQueryUnbiasedInterruptTime() -> u64 {
    now()
}

/// `KeDelayExecutionThread`: PASSIVE_LEVEL only; advances the virtual
/// clock by a relative interval and sleeps the thread briefly.
///
/// # Safety
/// `interval` must point to a readable `LARGE_INTEGER`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeDelayExecutionThread(_wait_mode: i8, _alertable: u8, interval: *const i64) -> i32 {
    irql::require_at_most(PASSIVE_LEVEL + 1, "KeDelayExecutionThread");
    // SAFETY: the caller guarantees a readable interval.
    let value = unsafe { interval.read() };
    if value < 0 {
        advance(value.unsigned_abs());
    }
    // Let other threads run for a little real time too (at most 1 ms), as
    // a real wait would: the waiter usually waits for one of them.
    let real = std::time::Duration::from_nanos(value.unsigned_abs().saturating_mul(100)).min(MAX_REAL_WAIT);
    std::thread::sleep(real);
    STATUS_SUCCESS
}

pub(crate) fn reset() {
    NOW.store(START, Ordering::Release);
}
