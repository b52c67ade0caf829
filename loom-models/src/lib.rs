//! Loom models of the wfpcallout driver's concurrency algorithms.
//!
//! [loom](https://docs.rs/loom) runs a closure under every interleaving of
//! its threads (bounded by a preemption count) with the C++11 memory model,
//! and fails on a data race (an `UnsafeCell` access not ordered by
//! happens-before), a deadlock or a panicking assertion. The driver's own
//! code cannot run under loom (it is `no_std` and calls kernel functions),
//! so these are models: the same algorithms, step for step, over loom's
//! atomics, mutexes and cells. Every model names the driver function it
//! mirrors; a change there must be carried over here.
//!
//! - [`context_ref`]: the filter context's reference count
//!   (`driver/filter_context.rs`, `ContextRef`): clone with `Relaxed`,
//!   release with `Release` and, on the last reference, an `Acquire` fence
//!   before the free. Also the classify fast path, which borrows
//!   `filter->context` without a reference and relies on the engine's
//!   rundown of the filter before DELETE.
//! - [`pending`]: the pended-request table (`driver/pending.rs`): requests
//!   Queued → Delivered → Answered under one lock, finished by the agent's
//!   verdict, a timeout, the agent going away, the filter's deletion or
//!   unload, each completion made exactly once with the lock released.
//!
//! The memory the models share is kept alive by `std::sync::Arc`, whose
//! atomics loom does not see: it adds no ordering that could hide a
//! missing one in the model. What the driver frees is modelled as a
//! poisoning write (the simulated pool poisons freed blocks) plus a count.
//!
//! Run: `cargo test -p wfpcallout-loom-models --release`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "models: a panic is the model reporting a violated invariant"
)]

pub mod context_ref;
pub mod pending;

/// Counts the interleavings a model explored (loom runs the model's
/// closure once per interleaving).
pub struct Iterations(std::sync::atomic::AtomicUsize);

impl Iterations {
    /// Zero.
    pub const fn new() -> Self {
        Self(std::sync::atomic::AtomicUsize::new(0))
    }

    /// One more interleaving.
    pub fn count(&self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Interleavings so far.
    pub fn get(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Default for Iterations {
    fn default() -> Self {
        Self::new()
    }
}

/// The loom configuration the models use: exhaustive up to `preemptions`
/// forced thread switches (loom's recommended way to bound the larger
/// models, whose full exploration would take hours).
pub fn builder(preemptions: usize) -> loom::model::Builder {
    builder_with(Some(preemptions))
}

/// [`builder`] with an optional bound: `None` explores every interleaving.
pub fn builder_with(preemptions: Option<usize>) -> loom::model::Builder {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = preemptions;
    builder
}
