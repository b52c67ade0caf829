//! A reader/writer spin lock over the kernel's `EX_SPIN_LOCK`, usable up to
//! DISPATCH_LEVEL. Acquiring raises to DISPATCH_LEVEL; the guard lowers it
//! back. Guards are RAII and cannot be sent to another thread, so acquire
//! and release can never be paired by hand.
#![allow(unsafe_code)]

use crate::ffi::{
    EX_SPIN_LOCK, ExAcquireSpinLockExclusive, ExAcquireSpinLockShared, ExReleaseSpinLockExclusive,
    ExReleaseSpinLockShared, KIRQL,
};
use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};

/// Data guarded by an `EX_SPIN_LOCK`.
///
/// # Invariants
/// `data` is only accessed through a guard: shared guards give `&T`, the
/// exclusive guard gives `&mut T`, and the kernel lock excludes writers from
/// everyone else.
pub struct SpinLock<T> {
    lock: UnsafeCell<EX_SPIN_LOCK>,
    data: UnsafeCell<T>,
}

// SAFETY: the lock serializes all access to `data` (type invariant), so
// sharing the lock across threads is sound when T may be sent between them.
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: moving the lock moves the T.
unsafe impl<T: Send> Send for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// An unlocked lock around `data`; const so it can sit in a static.
    pub const fn new(data: T) -> Self {
        Self { lock: UnsafeCell::new(0), data: UnsafeCell::new(data) }
    }

    /// Takes the lock exclusively (raises to DISPATCH_LEVEL).
    pub fn lock(&self) -> ExclusiveGuard<'_, T> {
        // SAFETY: the pointer is to our own EX_SPIN_LOCK, valid for &self.
        let old_irql = unsafe { ExAcquireSpinLockExclusive(self.lock.get()) };
        ExclusiveGuard { owner: self, old_irql, _not_send: PhantomData }
    }

    /// Takes the lock shared (raises to DISPATCH_LEVEL).
    pub fn read(&self) -> SharedGuard<'_, T> {
        // SAFETY: the pointer is to our own EX_SPIN_LOCK, valid for &self.
        let old_irql = unsafe { ExAcquireSpinLockShared(self.lock.get()) };
        SharedGuard { owner: self, old_irql, _not_send: PhantomData }
    }
}

/// Exclusive access; releases and restores the IRQL on drop.
pub struct ExclusiveGuard<'a, T> {
    owner: &'a SpinLock<T>,
    old_irql: KIRQL,
    _not_send: PhantomData<*mut ()>,
}

impl<T> Deref for ExclusiveGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: we hold the lock exclusively (type invariant of SpinLock).
        unsafe { &*self.owner.data.get() }
    }
}

impl<T> DerefMut for ExclusiveGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: we hold the lock exclusively and &mut self is unique.
        unsafe { &mut *self.owner.data.get() }
    }
}

impl<T> Drop for ExclusiveGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: this guard holds the lock exclusively at the IRQL the
        // acquire returned; old_irql is what it returned.
        unsafe { ExReleaseSpinLockExclusive(self.owner.lock.get(), self.old_irql) };
    }
}

/// Shared access; releases and restores the IRQL on drop.
pub struct SharedGuard<'a, T> {
    owner: &'a SpinLock<T>,
    old_irql: KIRQL,
    _not_send: PhantomData<*mut ()>,
}

impl<T> Deref for SharedGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: we hold the lock shared: no writer exists.
        unsafe { &*self.owner.data.get() }
    }
}

impl<T> Drop for SharedGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: this guard holds the lock shared; old_irql is what the
        // acquire returned.
        unsafe { ExReleaseSpinLockShared(self.owner.lock.get(), self.old_irql) };
    }
}
