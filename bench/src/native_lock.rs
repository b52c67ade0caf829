//! A plain atomic reader/writer spin lock for the locked-map baselines.
//!
//! The baselines stand for "find the context in a locked map on every
//! classify". Taking the simulated kernel's `EX_SPIN_LOCK` there would
//! measure the simulator's own bookkeeping (its verifier keeps a list of
//! held locks per thread), not the design, so they use this instead: one
//! 32-bit word, a reader adds one and takes it back, a writer swaps 0 for
//! [`WRITER`]. It is what `ExAcquireSpinLockSharedAtDpcLevel` and
//! `ExReleaseSpinLockSharedFromDpcLevel` cost on Windows at best (the
//! baselines already run at DISPATCH_LEVEL, so there is no IRQL to raise).

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU32, Ordering};

/// The lock word's writer bit; the low bits count readers.
const WRITER: u32 = 1 << 31;

/// Data behind a native reader/writer spin lock.
///
/// # Invariants
/// `data` is only reached through a guard: while `state` has [`WRITER`]
/// set exactly one `WriteGuard` exists and no `ReadGuard`; otherwise the
/// low bits count the `ReadGuard`s alive.
pub struct NativeRwSpinLock<T> {
    state: AtomicU32,
    data: UnsafeCell<T>,
}

// SAFETY: the lock serialises writers against everyone (type invariant).
unsafe impl<T: Send + Sync> Sync for NativeRwSpinLock<T> {}

impl<T> NativeRwSpinLock<T> {
    /// An unlocked lock around `data`.
    pub const fn new(data: T) -> Self {
        Self { state: AtomicU32::new(0), data: UnsafeCell::new(data) }
    }

    /// Shared access: one interlocked add (and a retry while a writer holds it).
    #[inline(always)]
    pub fn read(&self) -> ReadGuard<'_, T> {
        loop {
            let before = self.state.fetch_add(1, Ordering::Acquire);
            if before & WRITER == 0 {
                return ReadGuard { owner: self };
            }
            self.state.fetch_sub(1, Ordering::Relaxed);
            let mut spins = 0;
            while self.state.load(Ordering::Relaxed) & WRITER != 0 {
                back_off(&mut spins);
            }
        }
    }

    /// Exclusive access (setup only: filling and clearing the maps).
    pub fn write(&self) -> WriteGuard<'_, T> {
        let mut spins = 0;
        while self.state.compare_exchange_weak(0, WRITER, Ordering::Acquire, Ordering::Relaxed).is_err() {
            back_off(&mut spins);
        }
        WriteGuard { owner: self }
    }
}

/// Shared access; leaves on drop.
pub struct ReadGuard<'a, T> {
    owner: &'a NativeRwSpinLock<T>,
}

impl<T> Deref for ReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a reader is counted, so no writer exists (invariant).
        unsafe { &*self.owner.data.get() }
    }
}

impl<T> Drop for ReadGuard<'_, T> {
    #[inline(always)]
    fn drop(&mut self) {
        self.owner.state.fetch_sub(1, Ordering::Release);
    }
}

/// Exclusive access; leaves on drop.
pub struct WriteGuard<'a, T> {
    owner: &'a NativeRwSpinLock<T>,
}

impl<T> Deref for WriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the writer bit is ours (invariant).
        unsafe { &*self.owner.data.get() }
    }
}

impl<T> DerefMut for WriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the writer bit is ours and `&mut self` is unique.
        unsafe { &mut *self.owner.data.get() }
    }
}

/// The contended path only (the measured classifications never contend):
/// spin, and every 64 rounds give the processor up, so that a holder
/// preempted on a busy machine gets to run and release the lock.
#[cold]
fn back_off(spins: &mut u32) {
    *spins = spins.wrapping_add(1);
    if spins.is_multiple_of(64) {
        std::thread::yield_now();
    } else {
        std::hint::spin_loop();
    }
}

impl<T> Drop for WriteGuard<'_, T> {
    fn drop(&mut self) {
        // Only the writer bit: a reader that saw it may still be between
        // its increment and its decrement, and storing 0 would lose the
        // increment (the decrement then wraps the word and every later
        // acquire spins for ever, which this lock's own test hit on a busy
        // machine).
        self.owner.state.fetch_sub(WRITER, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_backing_off_across_a_write_release_leaves_the_lock_free() {
        let lock = NativeRwSpinLock::new(0u32);
        let write = lock.write();
        // A reader's optimistic increment lands while the writer holds it...
        lock.state.fetch_add(1, Ordering::Acquire);
        drop(write);
        // ...and its decrement after the release.
        lock.state.fetch_sub(1, Ordering::Relaxed);
        assert_eq!(lock.state.load(Ordering::Relaxed), 0, "free, not wrapped");
        *lock.write() += 1;
        assert_eq!(*lock.read(), 1);
    }

    #[test]
    fn readers_share_and_a_writer_excludes_them() {
        let lock = NativeRwSpinLock::new(5u32);
        {
            let a = lock.read();
            let b = lock.read();
            assert_eq!(*a + *b, 10);
            assert_eq!(lock.state.load(Ordering::Relaxed), 2);
        }
        *lock.write() += 1;
        assert_eq!(lock.state.load(Ordering::Relaxed), 0);
        assert_eq!(*lock.read(), 6);
        let threads: u32 = 2;
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        *lock.write() += 1;
                        let _shared = lock.read();
                    }
                });
            }
        });
        assert_eq!(*lock.read(), 6 + threads * 10_000);
    }
}
