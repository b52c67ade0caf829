//! `EX_SPIN_LOCK` reader/writer spin locks: acquiring raises to
//! DISPATCH_LEVEL (and so takes the thread's virtual processor), releasing
//! restores the IRQL the acquire returned.

use crate::irql;
use crate::verifier::{ViolationKind, report};
use fwps_types::DISPATCH_LEVEL;
use std::sync::atomic::{AtomicI32, Ordering};

/// The exclusive bit; the low bits count shared holders.
const EXCLUSIVE: i32 = i32::MIN;

/// # Safety
/// `lock` must point to a live, 4-byte aligned `EX_SPIN_LOCK`.
unsafe fn as_atomic<'a>(lock: *mut i32) -> &'a AtomicI32 {
    // SAFETY: the caller guarantees a live aligned i32; AtomicI32 has the
    // same layout, and every access to the lock goes through atomics.
    unsafe { AtomicI32::from_ptr(lock) }
}

/// `ExAcquireSpinLockExclusive`.
///
/// # Safety
/// `lock` must point to a live `EX_SPIN_LOCK`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn ExAcquireSpinLockExclusive(lock: *mut i32) -> u8 {
    irql::require_at_most(DISPATCH_LEVEL, "ExAcquireSpinLockExclusive");
    let old = irql::raise(DISPATCH_LEVEL.max(irql::current()));
    // SAFETY: forwarded from the caller.
    let atomic = unsafe { as_atomic(lock) };
    while atomic.compare_exchange_weak(0, EXCLUSIVE, Ordering::Acquire, Ordering::Relaxed).is_err() {
        std::hint::spin_loop();
    }
    old
}

/// `ExReleaseSpinLockExclusive`.
///
/// # Safety
/// `lock` must point to a live `EX_SPIN_LOCK` held exclusively by the caller.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn ExReleaseSpinLockExclusive(lock: *mut i32, old_irql: u8) {
    // SAFETY: forwarded from the caller.
    let atomic = unsafe { as_atomic(lock) };
    if atomic.compare_exchange(EXCLUSIVE, 0, Ordering::Release, Ordering::Relaxed).is_err() {
        report(ViolationKind::Lock, "ExReleaseSpinLockExclusive on a lock not held exclusively");
    }
    if irql::current() != DISPATCH_LEVEL {
        report(ViolationKind::Lock, format!("spin lock released at IRQL {}", irql::current()));
    }
    irql::lower(old_irql);
}

/// `ExAcquireSpinLockShared`.
///
/// # Safety
/// `lock` must point to a live `EX_SPIN_LOCK`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn ExAcquireSpinLockShared(lock: *mut i32) -> u8 {
    irql::require_at_most(DISPATCH_LEVEL, "ExAcquireSpinLockShared");
    let old = irql::raise(DISPATCH_LEVEL.max(irql::current()));
    // SAFETY: forwarded from the caller.
    let atomic = unsafe { as_atomic(lock) };
    loop {
        let current = atomic.load(Ordering::Relaxed);
        if current >= 0
            && atomic.compare_exchange_weak(current, current + 1, Ordering::Acquire, Ordering::Relaxed).is_ok()
        {
            return old;
        }
        std::hint::spin_loop();
    }
}

/// `ExReleaseSpinLockShared`.
///
/// # Safety
/// `lock` must point to a live `EX_SPIN_LOCK` held shared by the caller.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn ExReleaseSpinLockShared(lock: *mut i32, old_irql: u8) {
    // SAFETY: forwarded from the caller.
    let atomic = unsafe { as_atomic(lock) };
    let previous = atomic.fetch_sub(1, Ordering::Release);
    if previous <= 0 {
        report(ViolationKind::Lock, "ExReleaseSpinLockShared on a lock not held shared");
        atomic.fetch_add(1, Ordering::Relaxed);
    }
    irql::lower(old_irql);
}
