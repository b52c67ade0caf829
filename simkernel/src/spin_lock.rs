//! `EX_SPIN_LOCK` reader/writer spin locks: acquiring raises to
//! DISPATCH_LEVEL (and so takes the thread's virtual processor), releasing
//! restores the IRQL the acquire returned.

use crate::irql;
use crate::verifier::{ViolationKind, report};
use fwps_types::DISPATCH_LEVEL;
use std::sync::atomic::{AtomicI32, Ordering};

/// The exclusive bit; the low bits count shared holders.
const EXCLUSIVE: i32 = i32::MIN;

thread_local! {
    /// Locks the calling thread holds, to catch a recursive acquire, which
    /// on a real machine spins forever at DISPATCH_LEVEL.
    static HELD: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn note_acquire(lock: *mut i32, api: &str) {
    let address = lock as usize;
    let recursive = HELD.with(|held| {
        let mut held = held.borrow_mut();
        let recursive = held.contains(&address);
        held.push(address);
        recursive
    });
    if recursive {
        report(ViolationKind::Lock, format!("{api}: recursive acquire of spin lock {address:#x} (a deadlock)"));
        // Spinning forever is what the machine would do; stop instead.
        eprintln!("simulated kernel: deadlock on spin lock {address:#x}; aborting");
        std::process::abort();
    }
}

fn note_release(lock: *mut i32) {
    let address = lock as usize;
    HELD.with(|held| {
        let mut held = held.borrow_mut();
        if let Some(position) = held.iter().rposition(|&a| a == address) {
            held.remove(position);
        }
    });
}

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
    note_acquire(lock, "ExAcquireSpinLockExclusive");
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
    note_release(lock);
    irql::lower(old_irql);
}

/// `ExAcquireSpinLockShared`.
///
/// # Safety
/// `lock` must point to a live `EX_SPIN_LOCK`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn ExAcquireSpinLockShared(lock: *mut i32) -> u8 {
    irql::require_at_most(DISPATCH_LEVEL, "ExAcquireSpinLockShared");
    note_acquire(lock, "ExAcquireSpinLockShared");
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
    note_release(lock);
    irql::lower(old_irql);
}
