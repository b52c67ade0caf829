//! Model of the filter context's reference count (`driver/filter_context.rs`).
//!
//! | model                         | driver                                                        |
//! |-------------------------------|---------------------------------------------------------------|
//! | [`ContextRef::try_new`]        | `ContextRef::try_new`: one reference                          |
//! | [`FilterContext::acquire`]     | `FilterContext::acquire`: `fetch_add(1, Relaxed)`             |
//! | `Clone for ContextRef`         | `Clone for ContextRef`: `fetch_add(1, Relaxed)`               |
//! | `Drop for ContextRef`          | `Drop for ContextRef`: `fetch_sub(1, Release)`, last one: `fence(Acquire)`, free |
//! | [`ContextTable`]               | `ContextTable` (`IdTable<ContextRef>`): the filter's reference under the table's spin lock; `get` = `with(id, acquire)` |
//! | [`FilterContext::use_contents`] | anything read through a reference: the policy, the counters, the rate limiter |
//! | [`EngineFilter`]               | the rundown of a filter: classify holds it; DELETE (or, with the proposed fix, unload's release) waits until nobody does |
//!
//! The free is the poisoning of the contents and a count: a use after it
//! fails the `LIVE` check when ordered after it, and is a loom data race
//! when not ordered at all.

use loom::cell::UnsafeCell;
use loom::sync::Mutex;
use loom::sync::atomic::{AtomicU32, AtomicUsize, Ordering, fence};
use std::sync::Arc as Memory;

/// What a live context holds (the model's stand-in for the policy and the
/// counters).
pub const LIVE: u64 = 0x600D_C0DE;
/// What the simulated pool writes over a freed block.
pub const POISON: u64 = 0xD5D5_D5D5_D5D5_D5D5;

/// Everything classify needs about one filter.
///
/// # Invariants
/// `refs` counts the live [`ContextRef`]s; the contents are freed (poisoned)
/// exactly once, when the last one drops.
pub struct FilterContext {
    refs: AtomicU32,
    contents: UnsafeCell<u64>,
    frees: AtomicUsize,
}

// SAFETY: every access of `contents` goes through loom's `UnsafeCell`,
// which checks it against the model's happens-before order (that is what
// the model is for); the other fields are atomics. This mirrors the
// driver's `unsafe impl Send/Sync for ContextRef`.
unsafe impl Sync for FilterContext {}

impl FilterContext {
    /// Reads the contents through a reference (what classify, statistics,
    /// flows and pended requests do). Panics if the context was freed.
    pub fn use_contents(&self) {
        let value = self.contents.with(|contents| {
            // SAFETY: loom checks this read against every write of the
            // cell; the free's write must happen after it.
            unsafe { *contents }
        });
        assert_eq!(value, LIVE, "a filter context was used after it was freed");
    }

    /// [`FilterContext::use_contents`] through a borrowed pointer (classify's
    /// fast path reading `filter->context`).
    pub fn use_contents_of(this: &Memory<Self>) {
        this.use_contents();
    }

    /// Takes a new counted reference (`FilterContext::acquire`): the
    /// caller's borrow proves the count is at least one.
    pub fn acquire(this: &Memory<Self>) -> ContextRef {
        this.refs.fetch_add(1, Ordering::Relaxed);
        ContextRef { ptr: this.clone() }
    }

    /// How many times the context was freed (the model's pool accounting).
    pub fn frees(&self) -> usize {
        self.frees.load(Ordering::Relaxed)
    }

    /// The current number of references.
    pub fn reference_count(&self) -> u32 {
        self.refs.load(Ordering::Relaxed)
    }

    fn free(&self) {
        self.contents.with_mut(|contents| {
            // SAFETY: loom checks this write against every access of the
            // cell: all of them must happen before it.
            unsafe { *contents = POISON }
        });
        self.frees.fetch_add(1, Ordering::Relaxed);
    }
}

/// A counted reference: the last one frees the context.
pub struct ContextRef {
    ptr: Memory<FilterContext>,
}

impl ContextRef {
    /// A new context with one reference (`ContextRef::try_new`).
    pub fn try_new() -> Self {
        let context =
            FilterContext { refs: AtomicU32::new(1), contents: UnsafeCell::new(LIVE), frees: AtomicUsize::new(0) };
        Self { ptr: Memory::new(context) }
    }

    /// A handle to the context's memory that holds no reference: what the
    /// test reads the pool accounting through after every reference went.
    pub fn observer(&self) -> Memory<FilterContext> {
        self.ptr.clone()
    }

    /// The memory behind this reference (to borrow it as `filter->context`).
    pub fn memory(&self) -> &Memory<FilterContext> {
        &self.ptr
    }

    /// The driver's release with the `Acquire` fence left out: a negative
    /// control that the model must catch. (The memory handle is leaked,
    /// which only costs the test a few bytes.)
    pub fn release_without_fence(self) {
        let ptr = self.ptr.clone();
        core::mem::forget(self);
        if ptr.refs.fetch_sub(1, Ordering::Release) == 1 {
            ptr.free();
        }
    }
}

impl core::ops::Deref for ContextRef {
    type Target = FilterContext;
    fn deref(&self) -> &FilterContext {
        &self.ptr
    }
}

impl Clone for ContextRef {
    fn clone(&self) -> Self {
        // As in the driver (and Arc::clone): the caller holds a reference.
        self.ptr.refs.fetch_add(1, Ordering::Relaxed);
        Self { ptr: self.ptr.clone() }
    }
}

impl Drop for ContextRef {
    fn drop(&mut self) {
        if self.ptr.refs.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        fence(Ordering::Acquire);
        self.ptr.free();
    }
}

/// The filter's own reference, in the context table under its lock
/// (`ContextTable`, one filter id).
pub struct ContextTable {
    slot: Mutex<Option<ContextRef>>,
}

impl ContextTable {
    /// The table holding the filter's reference (`notify::on_add`).
    pub fn new(filter: ContextRef) -> Self {
        Self { slot: Mutex::new(Some(filter)) }
    }

    /// A new reference to the filter's context, if it is still in the
    /// table (`ContextTable::get` = `with(id, FilterContext::acquire)`).
    pub fn get(&self) -> Option<ContextRef> {
        self.slot.lock().unwrap().as_ref().map(|filter| FilterContext::acquire(filter.memory()))
    }

    /// Takes the filter's reference out (`IdTable::remove`, `pop_any`).
    pub fn remove(&self) -> Option<ContextRef> {
        self.slot.lock().unwrap().take()
    }
}

/// The rundown that keeps a borrowed `filter->context` valid while
/// classify runs: the engine's guarantee that no classify uses a filter
/// after its DELETE notification (simkernel `run_filter`/`delete_filter`),
/// and the protection the proposed unload fix adds on the driver's side.
///
/// Modelled as a single-word rundown reference, the way
/// `ExAcquireRundownProtection` / `ExWaitForRundownProtectionRelease` work:
/// bit 0 says "rundown started", the rest counts holders. (The simulated
/// engine uses two `SeqCst` atomics instead, in the style of Dekker's
/// algorithm; loom models `SeqCst` no stronger than `AcqRel`, so it would
/// report that protocol as racy. The single-word protocol is equivalent
/// and loom checks it exactly.)
pub struct EngineFilter {
    rundown: AtomicUsize,
    /// `filter->context`: a borrowed pointer to the context the table
    /// holds the reference of.
    context: Memory<FilterContext>,
}

/// The "rundown started" bit.
const RUNDOWN_ACTIVE: usize = 1;
/// One holder.
const RUNDOWN_HOLDER: usize = 2;

impl EngineFilter {
    /// The filter as published after its ADD notification.
    pub fn new(context: &ContextRef) -> Self {
        Self { rundown: AtomicUsize::new(0), context: context.observer() }
    }

    fn acquire_rundown(&self) -> bool {
        let mut current = self.rundown.load(Ordering::Relaxed);
        loop {
            if current & RUNDOWN_ACTIVE != 0 {
                return false;
            }
            match self.rundown.compare_exchange(current, current + RUNDOWN_HOLDER, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => current = now,
            }
        }
    }

    fn release_rundown(&self) {
        self.rundown.fetch_sub(RUNDOWN_HOLDER, Ordering::Release);
    }

    /// Runs classify for this filter unless its rundown has started: `f`
    /// gets `filter->context` borrowed, without a reference (the fast path
    /// of `classify::classify_fn`). Returns whether classify ran.
    pub fn classify(&self, f: impl FnOnce(&Memory<FilterContext>)) -> bool {
        if !self.acquire_rundown() {
            return false;
        }
        f(&self.context);
        self.release_rundown();
        true
    }

    /// Deletes the filter: no new classify reaches it, the ones in flight
    /// finish, then `notify` (the DELETE notification) runs.
    pub fn delete(&self, notify: impl FnOnce()) {
        self.rundown.fetch_or(RUNDOWN_ACTIVE, Ordering::Relaxed);
        while self.rundown.load(Ordering::Acquire) != RUNDOWN_ACTIVE {
            loom::thread::yield_now();
        }
        notify();
    }

    /// Unregisters the callout as the simulated engine does: no new
    /// classify starts, but nothing waits for the ones already running
    /// (whether Windows waits is not documented); then `release` (unload's
    /// `release_contexts`) runs.
    pub fn unregister_without_rundown(&self, release: impl FnOnce()) {
        self.rundown.fetch_or(RUNDOWN_ACTIVE, Ordering::Relaxed);
        release();
    }
}
