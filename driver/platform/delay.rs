//! Waiting at PASSIVE_LEVEL (unload's bounded retries).
#![allow(unsafe_code)]

/// Sleeps for `interval` 100-ns units. PASSIVE_LEVEL only.
pub fn sleep_100ns(interval: i64) {
    // A negative interval is relative time.
    let relative = -interval.abs();
    // SAFETY: `relative` is valid for the call; KernelMode (0), not
    // alertable; callers run at PASSIVE_LEVEL (unload).
    let _ = unsafe { crate::platform::kernel::KeDelayExecutionThread(0, 0, &relative) };
}
