//! A named set of global counters declared once: the struct, its const
//! constructor (the driver's state is a static) and the list that resets
//! and enumerates them all come from the one field list, so adding a
//! counter cannot leave a reset or a report behind.
#![forbid(unsafe_code)]

/// Declares `pub struct $name` with one `AtomicU64` per field (each with its
/// doc comment), `const fn new()`, `all()` (every counter, in declaration
/// order) and `reset()`.
#[macro_export]
macro_rules! counter_set {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$doc:meta])* $field:ident,)* }) => {
        $(#[$meta])*
        pub struct $name {
            $($(#[$doc])* pub $field: core::sync::atomic::AtomicU64,)*
        }

        impl $name {
            /// Every counter at zero.
            pub const fn new() -> Self {
                Self { $($field: core::sync::atomic::AtomicU64::new(0),)* }
            }

            /// Every counter, in declaration order.
            pub fn all(&self) -> impl Iterator<Item = &core::sync::atomic::AtomicU64> {
                [$(&self.$field),*].into_iter()
            }

            /// Zeroes every counter (a fresh load).
            pub fn reset(&self) {
                for counter in self.all() {
                    counter.store(0, core::sync::atomic::Ordering::Relaxed);
                }
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }
    };
}

#[cfg(test)]
mod tests {
    crate::counter_set! {
        /// Two counters.
        pub struct Pair {
            /// The first.
            first,
            /// The second.
            second,
        }
    }

    #[test]
    fn all_lists_every_counter_and_reset_zeroes_them() {
        use core::sync::atomic::Ordering;
        let pair = Pair::new();
        pair.first.store(3, Ordering::Relaxed);
        pair.second.store(4, Ordering::Relaxed);
        assert_eq!(pair.all().map(|c| c.load(Ordering::Relaxed)).sum::<u64>(), 7);
        pair.reset();
        assert!(pair.all().all(|c| c.load(Ordering::Relaxed) == 0));
    }
}
