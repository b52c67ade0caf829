//! The atomics whose orderings carry the driver's lifetime protocols (the
//! filter context's reference count, the pended-request table's gate),
//! switchable to [loom](https://docs.rs/loom)'s so that the loom tests
//! (`tests/loom_*.rs`, built with `--cfg loom`) check the driver's own code
//! under every interleaving and the C++ memory model, not a copy of it.
//!
//! Normally these are `core::sync::atomic`'s, re-exported: the Windows build
//! and the ordinary host build never see loom. Under `cfg(loom)` they are
//! thin wrappers over loom's atomics:
//! - The integer ones also model what freeing memory means: dropping one
//!   claims exclusive access to it (loom's `with_mut`), which loom checks
//!   happens after every other access. A free not ordered after another
//!   thread's last use of the memory (say, a reference count released
//!   without its final `Acquire`) is reported as a causality violation.
//!   Their `new` is not const under loom (loom's atomics belong to one model
//!   execution): they are for memory built at run time (the filter
//!   context's).
//! - [`AtomicBool`] and [`AtomicUsize`] keep `const fn new` (the pending
//!   table's gate and the rundown's counters sit in the driver's
//!   `static STATE`) by creating their loom atomic on first use,
//!   which loom counts as a write by the thread that makes it: that first
//!   use must come before the value is shared (`Pending::open` stores the
//!   gate first), and a value must be built and used inside one execution
//!   (the loom tests build their own and never touch `STATE`).
//!
//! Statistics counters keep `core`'s atomics: loom does not see them, and
//! runs its threads one at a time, so they stay exact. The spin lock
//! (`spin_lock.rs`) is switched too, keeping its `const fn new` the same
//! way as [`AtomicBool`].

/// An `AtomicU64` whose `new` is const under loom too (created on first
/// use, as [`AtomicUsize`]): the handle slots' keys, which a `static`
/// holds and which the loom tests must see (the lookup's key load against
/// the release's store). Normally `core`'s.
#[cfg(not(loom))]
pub use core::sync::atomic::AtomicU64 as ConstAtomicU64;
#[cfg(not(loom))]
pub use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence};

#[cfg(loom)]
pub use loom::sync::atomic::fence;
#[cfg(loom)]
pub use loom_atomics::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, ConstAtomicU64};
#[cfg(loom)]
pub use std::sync::atomic::Ordering;

#[cfg(loom)]
mod loom_atomics {
    use std::sync::atomic::Ordering;

    macro_rules! loom_atomic_int {
        ($name:ident, $value:ty) => {
            /// Loom's atomic, which also checks, when dropped, that every
            /// access to it happened before (see the module documentation).
            pub struct $name(loom::sync::atomic::$name);

            impl $name {
                /// An atomic holding `initial`.
                #[track_caller]
                pub fn new(initial: $value) -> Self {
                    Self(loom::sync::atomic::$name::new(initial))
                }

                /// As `core`'s `load`.
                #[track_caller]
                pub fn load(&self, order: Ordering) -> $value {
                    self.0.load(order)
                }

                /// As `core`'s `store`.
                #[track_caller]
                pub fn store(&self, value: $value, order: Ordering) {
                    self.0.store(value, order)
                }

                /// As `core`'s `fetch_add`.
                #[track_caller]
                pub fn fetch_add(&self, value: $value, order: Ordering) -> $value {
                    self.0.fetch_add(value, order)
                }

                /// As `core`'s `fetch_sub`.
                #[track_caller]
                pub fn fetch_sub(&self, value: $value, order: Ordering) -> $value {
                    self.0.fetch_sub(value, order)
                }
            }

            impl Drop for $name {
                /// The memory holding this atomic is going away: loom checks
                /// that every access to it happened before.
                fn drop(&mut self) {
                    // Not while a failed check unwinds (a second panic
                    // would abort the test binary).
                    if !std::thread::panicking() {
                        self.0.with_mut(|_| ());
                    }
                }
            }
        };
    }

    loom_atomic_int!(AtomicU32, u32);
    loom_atomic_int!(AtomicU64, u64);

    /// A loom atomic with only `load` and `store`, created on first use so
    /// that `new` stays const (see the module documentation).
    macro_rules! lazy_loom_atomic {
        ($(#[$doc:meta])* $name:ident, $loom:ident, $value:ty) => {
            $(#[$doc])*
            pub struct $name {
                initial: $value,
                atomic: std::sync::OnceLock<loom::sync::atomic::$loom>,
            }

            impl $name {
                /// An atomic holding `initial`.
                pub const fn new(initial: $value) -> Self {
                    Self { initial, atomic: std::sync::OnceLock::new() }
                }

                fn atomic(&self) -> &loom::sync::atomic::$loom {
                    self.atomic.get_or_init(|| loom::sync::atomic::$loom::new(self.initial))
                }

                /// As `core`'s `load`.
                #[track_caller]
                pub fn load(&self, order: Ordering) -> $value {
                    self.atomic().load(order)
                }

                /// As `core`'s `store`.
                #[track_caller]
                pub fn store(&self, value: $value, order: Ordering) {
                    self.atomic().store(value, order)
                }
            }
        };
    }

    lazy_loom_atomic!(
        /// Loom's `AtomicBool`, created on first use so that `new` stays
        /// const.
        AtomicBool,
        AtomicBool,
        bool
    );
    lazy_loom_atomic!(
        /// Loom's `AtomicU64`, created on first use so that `new` stays
        /// const (the handle slots' keys).
        ConstAtomicU64,
        AtomicU64,
        u64
    );

    /// Loom's `AtomicUsize`, created on first use so that `new` stays const
    /// (the rundown's per-processor counters; see the module documentation).
    pub struct AtomicUsize {
        initial: usize,
        atomic: std::sync::OnceLock<loom::sync::atomic::AtomicUsize>,
    }

    impl AtomicUsize {
        /// An atomic holding `initial`.
        pub const fn new(initial: usize) -> Self {
            Self { initial, atomic: std::sync::OnceLock::new() }
        }

        fn atomic(&self) -> &loom::sync::atomic::AtomicUsize {
            self.atomic.get_or_init(|| loom::sync::atomic::AtomicUsize::new(self.initial))
        }

        /// As `core`'s `load`.
        #[track_caller]
        pub fn load(&self, order: Ordering) -> usize {
            self.atomic().load(order)
        }

        /// As `core`'s `fetch_add`.
        #[track_caller]
        pub fn fetch_add(&self, value: usize, order: Ordering) -> usize {
            self.atomic().fetch_add(value, order)
        }

        /// As `core`'s `fetch_sub`.
        #[track_caller]
        pub fn fetch_sub(&self, value: usize, order: Ordering) -> usize {
            self.atomic().fetch_sub(value, order)
        }

        /// As `core`'s `fetch_or`.
        #[track_caller]
        pub fn fetch_or(&self, value: usize, order: Ordering) -> usize {
            self.atomic().fetch_or(value, order)
        }

        /// As `core`'s `fetch_and`.
        #[track_caller]
        pub fn fetch_and(&self, value: usize, order: Ordering) -> usize {
            self.atomic().fetch_and(value, order)
        }

        /// As `core`'s `compare_exchange_weak` (loom may fail it spuriously
        /// too).
        #[track_caller]
        pub fn compare_exchange_weak(
            &self,
            current: usize,
            new: usize,
            success: Ordering,
            failure: Ordering,
        ) -> Result<usize, usize> {
            self.atomic().compare_exchange_weak(current, new, success, failure)
        }
    }
}
