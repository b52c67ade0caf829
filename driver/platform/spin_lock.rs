//! A reader/writer spin lock over the kernel's `EX_SPIN_LOCK`, usable up to
//! DISPATCH_LEVEL. Acquiring raises to DISPATCH_LEVEL; the guard lowers it
//! back. Guards are RAII and cannot be sent to another thread, so acquire
//! and release can never be paired by hand.
//!
//! Under `cfg(loom)` (the loom tests, see `sync.rs`) the kernel lock is
//! replaced by loom's reader/writer lock, so that loom schedules around it
//! and orders what it guards; the API is the same and no kernel function is
//! called.
#![allow(unsafe_code)]

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
    lock: raw::RawLock,
    data: UnsafeCell<T>,
}

// SAFETY: writers are serialized with everyone (type invariant), so an
// exclusive guard hands `&mut T` to one thread at a time (T: Send); shared
// guards hand `&T` to several threads at once, which needs T: Sync (as
// std's RwLock).
unsafe impl<T: Send + Sync> Sync for SpinLock<T> {}
// SAFETY: moving the lock moves the T.
unsafe impl<T: Send> Send for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// An unlocked lock around `data`; const so it can sit in a static.
    pub const fn new(data: T) -> Self {
        Self { lock: raw::RawLock::new(), data: UnsafeCell::new(data) }
    }

    /// Takes the lock exclusively (raises to DISPATCH_LEVEL).
    pub fn lock(&self) -> ExclusiveGuard<'_, T> {
        ExclusiveGuard { owner: self, _held: self.lock.exclusive(), _not_send: PhantomData }
    }

    /// Takes the lock shared (raises to DISPATCH_LEVEL).
    pub fn read(&self) -> SharedGuard<'_, T> {
        SharedGuard { owner: self, _held: self.lock.shared(), _not_send: PhantomData }
    }
}

/// Exclusive access; releases and restores the IRQL on drop.
pub struct ExclusiveGuard<'a, T> {
    owner: &'a SpinLock<T>,
    /// Releases the lock when dropped.
    _held: raw::Exclusive<'a>,
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

/// Shared access; releases and restores the IRQL on drop.
pub struct SharedGuard<'a, T> {
    owner: &'a SpinLock<T>,
    /// Releases the lock when dropped.
    _held: raw::Shared<'a>,
    _not_send: PhantomData<*mut ()>,
}

impl<T> Deref for SharedGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: we hold the lock shared: no writer exists.
        unsafe { &*self.owner.data.get() }
    }
}

/// The kernel's `EX_SPIN_LOCK`.
#[cfg(not(loom))]
mod raw {
    use crate::platform::kernel::{
        EX_SPIN_LOCK, ExAcquireSpinLockExclusive, ExAcquireSpinLockShared, ExReleaseSpinLockExclusive,
        ExReleaseSpinLockShared, KIRQL,
    };
    use core::cell::UnsafeCell;

    /// The lock word, only ever passed to the `Ex*SpinLock*` functions.
    pub struct RawLock(UnsafeCell<EX_SPIN_LOCK>);

    impl RawLock {
        /// Unlocked (`EX_SPIN_LOCK` is initialised to zero).
        pub const fn new() -> Self {
            Self(UnsafeCell::new(0))
        }

        /// Acquires exclusively; released when the result drops.
        pub fn exclusive(&self) -> Exclusive<'_> {
            // SAFETY: the pointer is to our own EX_SPIN_LOCK, valid for &self.
            let old_irql = unsafe { ExAcquireSpinLockExclusive(self.0.get()) };
            Exclusive { lock: self, old_irql }
        }

        /// Acquires shared; released when the result drops.
        pub fn shared(&self) -> Shared<'_> {
            // SAFETY: the pointer is to our own EX_SPIN_LOCK, valid for &self.
            let old_irql = unsafe { ExAcquireSpinLockShared(self.0.get()) };
            Shared { lock: self, old_irql }
        }
    }

    /// The lock held exclusively at DISPATCH_LEVEL.
    pub struct Exclusive<'a> {
        lock: &'a RawLock,
        old_irql: KIRQL,
    }

    impl Drop for Exclusive<'_> {
        fn drop(&mut self) {
            // SAFETY: this value holds the lock exclusively at the IRQL the
            // acquire returned; old_irql is what it returned.
            unsafe { ExReleaseSpinLockExclusive(self.lock.0.get(), self.old_irql) };
        }
    }

    /// The lock held shared at DISPATCH_LEVEL.
    pub struct Shared<'a> {
        lock: &'a RawLock,
        old_irql: KIRQL,
    }

    impl Drop for Shared<'_> {
        fn drop(&mut self) {
            // SAFETY: this value holds the lock shared; old_irql is what the
            // acquire returned.
            unsafe { ExReleaseSpinLockShared(self.lock.0.get(), self.old_irql) };
        }
    }
}

/// Loom's reader/writer lock, created on first use so that `new` stays
/// const (see `sync.rs`): a lock must be built and used inside one model
/// execution.
#[cfg(loom)]
mod raw {
    use std::sync::OnceLock;

    /// The lock.
    pub struct RawLock(OnceLock<loom::sync::RwLock<()>>);

    impl RawLock {
        /// Unlocked.
        pub const fn new() -> Self {
            Self(OnceLock::new())
        }

        fn lock(&self) -> &loom::sync::RwLock<()> {
            self.0.get_or_init(|| loom::sync::RwLock::new(()))
        }

        /// Acquires exclusively; released when the result drops.
        pub fn exclusive(&self) -> Exclusive<'_> {
            // A poisoned lock means a model already failed: go on, the
            // failure is what loom reports.
            Exclusive(self.lock().write().unwrap_or_else(|poisoned| poisoned.into_inner()))
        }

        /// Acquires shared; released when the result drops.
        pub fn shared(&self) -> Shared<'_> {
            Shared(self.lock().read().unwrap_or_else(|poisoned| poisoned.into_inner()))
        }
    }

    /// The lock held exclusively.
    pub struct Exclusive<'a>(#[allow(dead_code, reason = "held for its drop")] loom::sync::RwLockWriteGuard<'a, ()>);

    /// The lock held shared.
    pub struct Shared<'a>(#[allow(dead_code, reason = "held for its drop")] loom::sync::RwLockReadGuard<'a, ()>);
}
