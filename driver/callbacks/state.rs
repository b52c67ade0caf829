//! The driver's one piece of global state. WFP callbacks carry no driver
//! context argument, so notifyFn and classifyFn find everything here.
#![forbid(unsafe_code)]

use crate::connections::flows::Flows;
use crate::filters::filter_context::ContextTable;
use crate::platform::pool::TAG_CONTEXT_TABLE;
use crate::platform::rundown::{Drained, Rundown};
use crate::platform::spin_lock::SpinLock;
use crate::platform::status::{NtStatus, Result};
use crate::verdicts::agent::Agents;
use crate::verdicts::pending::Pending;
use crate::wfp::callout_table::{CALLOUT_COUNT, CALLOUTS};
use crate::wfp::management::EngineSlot;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

crate::counter_set! {
    /// Global counters that are not per filter: things that went wrong or
    /// happened outside any context. Rarely written, so plain shared atomics.
    pub struct GlobalStats {
        /// ADD notifications accepted.
        filters_added,
        /// DELETE notifications that released a context.
        filters_deleted,
        /// DELETE notifications for filters we never saw (harmless).
        deletes_unknown,
        /// ADDs vetoed because the policy blob was malformed.
        policies_rejected,
        /// ADDs vetoed because the pool was exhausted.
        allocation_failures,
        /// Notify calls of a type we do not handle.
        notify_unknown_type,
        /// Filters adopted at registration.
        filters_adopted,
        /// Adopted filters whose policy was malformed (given the default policy).
        adopted_policies_rejected,
        /// Classifications that found no context for their filter (a static
        /// filter still answers with its own verdict, any other with the
        /// default policy), counted on no filter.
        classify_without_context,
        /// Classifications that arrived with malformed arguments.
        classify_bad_arguments,
    }
}

/// Bytes in a cache line (x64).
pub const CACHE_LINE: usize = 64;

/// A value alone on its cache line(s): nothing else is placed on the line
/// it starts on. For words every classify reads and almost nothing writes,
/// so that writes to their neighbours (a lock word, a counter) do not
/// invalidate them in every processor's cache.
#[repr(C, align(64))]
pub struct CacheLine<T>(T);

impl<T> CacheLine<T> {
    /// Wraps `value` (const for the driver's static state).
    pub const fn new(value: T) -> Self {
        Self(value)
    }

    /// The value (const, for statics that point into the driver's state:
    /// the classifyFn entry point's `ContextWords`).
    pub const fn get(&self) -> &T {
        &self.0
    }
}

impl<T> core::ops::Deref for CacheLine<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

const _: () = assert!(core::mem::align_of::<CacheLine<u8>>() == CACHE_LINE);

/// `lookup_mode` bit: adoption has not finished.
const ADOPTION_IN_PROGRESS: usize = 1;
/// `lookup_mode` increment per adopted filter alive.
const ONE_ADOPTED: usize = 2;

/// Proof that bit 0 of the lookup word is set, made only by
/// [`DriverState::begin_adoption`] and consumed by
/// [`DriverState::end_adoption`]: the callouts are registered with one in
/// hand, and adoption alone can end it. Neither `Clone` nor `Copy`.
pub struct Adopting {
    _private: (),
}

/// Everything the callbacks share.
pub struct DriverState {
    /// Every live filter context by filter id.
    pub table: ContextTable,
    /// Run-time ids of our registered callouts (0 = not registered).
    pub callout_ids: [AtomicU32; CALLOUT_COUNT],
    /// The `FwpmEngineOpen0` session handle (NULL when closed).
    pub engine: EngineSlot,
    /// Why classify cannot trust `filter->context`: bit 0 is set from
    /// before registration until adoption has finished, the rest counts
    /// adopted filters still alive (whose `context` is not ours). See
    /// [`DriverState::classify_needs_lookup`]. The classify fast path does
    /// not read it: every change is mirrored, under `lookup_lock`, into
    /// the rundown's lookup bit (nonzero: on), which the fast path's one
    /// entry into the rundown reads (`Rundown::enter_fast_on`). Written
    /// only as adoption changes: alone on its cache line (checked below).
    ///
    /// # Invariants
    /// While it is 0, every live filter that calls our callouts was added
    /// through our notifyFn, whose ADD stored in its `context` a handle to
    /// the claim of `table`'s slots that keeps its context. Bit 0 is set
    /// before the callouts are registered (so before any filter that
    /// predates them can be classified) and cleared only once every such
    /// filter is adopted, each adopted filter alive counts, and the word is
    /// reset only once no callout is registered (unload's and a failed
    /// load's order), the table is empty and the rundown has drained and
    /// stays closed (checked: [`DriverState::clear_lookup_mode`] asks for
    /// the rundown's proof; no classify can borrow until initialize
    /// reopens it, which sets bit 0 again before it registers the
    /// callouts). The rundown's lookup bit is on whenever the word is
    /// nonzero: set, in every line, before any change that makes the word
    /// nonzero returns, cleared only once a change made it 0 (all under
    /// `lookup_lock`). The classifyFn entry point relies on this
    /// (`trampolines::CONTEXT_WORDS`): a fast entry into the rundown that
    /// reads the lookup bit clear while a filter is classified lets
    /// classify borrow the context its word names. So only this layer sees
    /// the word; the rest of the driver changes it through the methods
    /// below.
    pub(in crate::callbacks) lookup_mode: CacheLine<AtomicUsize>,
    /// Serializes every change of `lookup_mode` with its mirror in the
    /// rundown, so the two never disagree once a change has returned.
    lookup_lock: SpinLock<()>,
    /// Set between a successful initialize and unload.
    pub loaded: AtomicBool,
    /// Global counters.
    pub stats: GlobalStats,
    /// Classifications pended for ask filters.
    pub pending: Pending,
    /// The user-mode agents answering them.
    pub agents: Agents,
    /// Live flow contexts and their counters.
    pub flows: Flows,
    /// Callbacks running now; unload waits for them.
    pub rundown: Rundown,
}

impl DriverState {
    const fn new() -> Self {
        Self {
            table: ContextTable::new(TAG_CONTEXT_TABLE),
            callout_ids: [const { AtomicU32::new(0) }; CALLOUT_COUNT],
            engine: EngineSlot::new(),
            lookup_mode: CacheLine::new(AtomicUsize::new(0)),
            lookup_lock: SpinLock::new(()),
            loaded: AtomicBool::new(false),
            stats: GlobalStats::new(),
            pending: Pending::new(),
            agents: Agents::new(),
            flows: Flows::new(),
            rundown: Rundown::new(),
        }
    }

    /// The run-time layer of one of our callouts, by its run-time id
    /// (`None` for 0, or before `FwpsCalloutRegister2` returned it).
    pub fn layer_of_callout(&self, callout_id: u32) -> Option<u16> {
        if callout_id == 0 {
            return None;
        }
        self.callout_ids
            .iter()
            .zip(CALLOUTS.iter())
            .find(|(id, _)| id.load(Ordering::Relaxed) == callout_id)
            .map(|(_, spec)| spec.layer_id)
    }

    /// Whether classify must find contexts through the table: only while
    /// filters exist whose `filter->context` we did not write. In the
    /// common case this is false and classify does no lookup at all.
    #[inline]
    pub fn classify_needs_lookup(&self) -> bool {
        self.lookup_mode.load(Ordering::Acquire) != 0
    }

    /// Adoption starts: classify must use the table from here until it
    /// has finished. The proof it returns is what registering the callouts
    /// asks for (`registration::register_all`), so the bit is set before
    /// any filter that predates them can be classified, and the one thing
    /// that clears the bit again ([`Self::end_adoption`]) consumes it.
    pub(in crate::callbacks) fn begin_adoption(&self) -> Adopting {
        // INVARIANT: bit 0 set (and the rundown's lookup bit, before this
        // returns); it stays set until `end_adoption`, whose caller has
        // adopted every filter naming our callouts.
        self.change_lookup_mode(|word| word.fetch_or(ADOPTION_IN_PROGRESS, Ordering::AcqRel));
        Adopting { _private: () }
    }

    /// Adoption finished: every filter naming our callouts that predates
    /// them has its context in the table (`adoption::adopt_existing_filters`
    /// calls it, and only on success).
    pub(in crate::callbacks) fn end_adoption(&self, _adopting: Adopting) {
        // INVARIANT: the caller adopted every filter (see above); adopted
        // filters alive keep the word nonzero through their count.
        self.change_lookup_mode(|word| word.fetch_and(!ADOPTION_IN_PROGRESS, Ordering::AcqRel));
    }

    /// Changes the lookup word and mirrors it into the rundown's lookup bit,
    /// both under `lookup_lock` (see `lookup_mode`).
    fn change_lookup_mode(&self, change: impl FnOnce(&AtomicUsize) -> usize) {
        let _serialized = self.lookup_lock.lock();
        change(&self.lookup_mode);
        self.rundown.set_lookup(self.lookup_mode.load(Ordering::Acquire) != 0);
    }

    /// Whether adoption has not finished (it failed or is running).
    pub fn adoption_in_progress(&self) -> bool {
        self.lookup_mode.load(Ordering::Acquire) & ADOPTION_IN_PROGRESS != 0
    }

    /// An adopted filter's context entered the table.
    pub fn adopted_added(&self) {
        self.change_lookup_mode(|word| word.fetch_add(ONE_ADOPTED, Ordering::AcqRel));
    }

    /// An adopted filter was deleted.
    pub fn adopted_removed(&self) {
        self.change_lookup_mode(|word| word.fetch_sub(ONE_ADOPTED, Ordering::AcqRel));
    }

    /// Leaves lookup mode for good: only once no classify can borrow
    /// through a context word, which `drained` proves (the proof of this
    /// state's own rundown, still closed: classify borrows only inside it,
    /// and the next initialize sets bit 0 again, through
    /// [`Self::begin_adoption`], before it registers the callouts), and the
    /// table is empty (the end of unload, or of a failed load). Otherwise
    /// the word stays as it is and the answer is
    /// `STATUS_INVALID_DEVICE_STATE`.
    pub(crate) fn clear_lookup_mode(&self, drained: &Drained<'_>) -> Result {
        if !drained.proves(&self.rundown) || !self.table.is_empty() {
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        // INVARIANT: no classify can borrow until the rundown reopens, and
        // bit 0 is set again before the callouts are registered.
        self.change_lookup_mode(|word| word.swap(0, Ordering::AcqRel));
        Ok(())
    }

    /// Adopted filters still alive.
    pub fn adopted_alive(&self) -> usize {
        self.lookup_mode.load(Ordering::Acquire) / ONE_ADOPTED
    }

    /// Clears counters for a fresh load (the static outlives a load/unload
    /// cycle in tests and across `initialize` retries).
    pub fn reset_stats(&self) {
        self.stats.reset();
        self.flows.stats.reset();
    }
}

// The classify hot path reads no shared word of this state but its own
// processor's rundown line, whose gate and lookup bits it reads with its
// entry (rundown.rs): the rundown's lines start on a line of their own, and
// `lookup_mode`, which the rest of classify reads, fills its own line.
const _: () = {
    assert!(core::mem::offset_of!(DriverState, lookup_mode) % CACHE_LINE == 0);
    assert!(core::mem::size_of::<CacheLine<AtomicUsize>>() == CACHE_LINE);
    assert!(core::mem::offset_of!(DriverState, rundown) % CACHE_LINE == 0);
};

/// The driver's state.
pub static STATE: DriverState = DriverState::new();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_mode_ends_only_through_adoptions_proof_and_the_proof_of_this_states_own_drained_rundown() {
        let state = DriverState::new();
        let adopting = state.begin_adoption();
        assert!(state.classify_needs_lookup() && state.adoption_in_progress());
        state.end_adoption(adopting);
        assert!(!state.classify_needs_lookup(), "adoption's own proof ends its lookup mode");

        let _adopting = state.begin_adoption();
        state.adopted_added();
        let other = Rundown::new();
        let other_drained = other.close_and_wait();
        let drained = state.rundown.close_and_wait();
        assert_eq!(
            state.clear_lookup_mode(&other_drained),
            Err(NtStatus::INVALID_DEVICE_STATE),
            "another rundown's proof (this state's drained too)"
        );
        assert_eq!(state.adopted_alive(), 1, "refused: the word stays");
        assert!(state.adoption_in_progress(), "refused: the word stays");
        state.rundown.reopen();
        assert_eq!(state.clear_lookup_mode(&drained), Err(NtStatus::INVALID_DEVICE_STATE), "reopened since");
        assert!(state.classify_needs_lookup());
        let drained = state.rundown.close_and_wait();
        assert_eq!(state.clear_lookup_mode(&drained), Ok(()));
        assert!(!state.classify_needs_lookup());
    }
}
