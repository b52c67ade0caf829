//! The one clock the driver reads: interrupt time in 100-ns ticks, which is
//! monotonic and callable at any IRQL.
#![allow(unsafe_code)]

/// Now, in 100-ns ticks since boot (excluding sleep).
#[inline]
pub fn now_ticks() -> u64 {
    // SAFETY: no preconditions; callable at any IRQL.
    unsafe { crate::platform::kernel::KeQueryUnbiasedInterruptTime() }
}
