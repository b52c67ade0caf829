//! The per-filter context: the policy notifyFn decoded, the rate limiter and
//! the counters, shared by reference count between the filter itself and
//! anything that outlives a classify (pended requests, flow contexts).
//!
//! The count and the freeing are the pool layer's [`PoolArc`]: a
//! [`ContextRef`] is one counted reference, and a borrowed
//! [`&FilterContext`](FilterContext) can take a new one.
#![forbid(unsafe_code)]

use crate::filters::context_slots::{HandleSlots, SlotHandle};
use crate::filters::fast_path::FastPath;
use crate::filters::filter_counters::{Counter, CounterSnapshot, FilterCounters};
use crate::filters::rate_limiter::RateLimiter;
use crate::platform::pool::{Counted, PoolArc, PoolTag, TAG_FILTER_CONTEXT, Tagged};
use crate::platform::rundown::{Drained, Rundown, RundownGuard};
use crate::platform::status::{NtStatus, Result};
use crate::platform::sync::{AtomicU64, Ordering};
use wfpcallout_wire::{PolicyAction, PolicyRepr};

/// How the context came to exist: told by notifyFn, or found by enumeration
/// at registration (a filter that predates the callout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Built on `FWPS_CALLOUT_NOTIFY_ADD_FILTER`; `filter->context` holds
    /// the handle of its slot.
    Notified,
    /// Adopted from `FwpmFilterEnum0`; the filter's `context` is not ours.
    Adopted,
}

/// A filter's context as code borrows it: its data ([`FilterContextData`],
/// reached through `Deref`) and its reference count, so a borrow can take
/// a counted reference ([`Counted::acquire`]) for whatever outlives it.
pub type FilterContext = Counted<FilterContextData>;

/// A counted reference to a filter's context; the last one frees it, at
/// whatever IRQL (<= DISPATCH_LEVEL) that happens.
pub type ContextRef = PoolArc<FilterContextData>;

/// The slots whose handles `filter->context` carries, each keeping a
/// reference to its context until the grace period after DELETE released
/// it (`HandleSlots::reclaim`).
pub type ContextSlots = HandleSlots<FilterContextData>;

/// Everything classify needs about one filter.
#[repr(align(16))]
pub struct FilterContextData {
    /// The key of its slot (`SlotHandle::key`: generation, index, tag), 0
    /// without one (adopted, or not in the table yet). Set once by the
    /// table before the handle is given out.
    slot: AtomicU64,
    filter_id: u64,
    layer_id: u16,
    origin: Origin,
    policy: PolicyRepr,
    fast_path: FastPath,
    rate_limiter: RateLimiter,
    counters: FilterCounters,
    live_flows: AtomicU64,
    flows_total: AtomicU64,
}

impl Tagged for FilterContextData {
    const TAG: PoolTag = TAG_FILTER_CONTEXT;
}

impl FilterContextData {
    /// The slot the context word's handle names, if it has one.
    pub fn slot(&self) -> Option<SlotHandle> {
        let packed = self.slot.load(Ordering::Relaxed);
        (packed != 0).then_some(SlotHandle::from_key(packed))
    }

    /// The run-time filter id this context belongs to.
    pub fn filter_id(&self) -> u64 {
        self.filter_id
    }

    /// The run-time layer id of the filter.
    pub fn layer_id(&self) -> u16 {
        self.layer_id
    }

    /// Whether notifyFn or enumeration created it.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// The decoded policy.
    pub fn policy(&self) -> &PolicyRepr {
        &self.policy
    }

    /// What classify can decide from this context alone, worked out once at
    /// ADD: notifyFn folds it into the context word, and code that found the
    /// context another way (the locked-map benchmark baselines) reads it here.
    #[inline]
    pub fn fast_path(&self) -> FastPath {
        self.fast_path
    }

    /// The rate-limit policy's bucket (unused by other policies).
    pub fn rate_limiter(&self) -> &RateLimiter {
        &self.rate_limiter
    }

    /// Bumps a counter (one interlocked add in the context itself).
    #[inline(always)]
    pub fn count(&self, counter: Counter) {
        self.counters.add(counter);
    }

    /// Counts a classification's verdict (which also counts it as matched,
    /// see [`CounterSnapshot::matched`]).
    #[inline(always)]
    pub fn count_verdict(&self, decision: crate::filters::decision::Decision) {
        let verdict = match decision {
            crate::filters::decision::Decision::Block => Counter::Blocked,
            _ => Counter::Permitted,
        };
        self.counters.add(verdict);
    }

    /// The counters now.
    pub fn counters(&self) -> CounterSnapshot {
        self.counters.snapshot()
    }

    /// A flow context now holds a reference to this filter.
    pub fn flow_started(&self) {
        self.live_flows.fetch_add(1, Ordering::Relaxed);
        self.flows_total.fetch_add(1, Ordering::Relaxed);
    }

    /// A flow context of this filter was freed.
    pub fn flow_ended(&self) {
        self.live_flows.fetch_sub(1, Ordering::Relaxed);
    }

    /// A flow counted by [`Self::flow_started`] was not tracked after all
    /// (the association failed): it does not count as tracked ever.
    pub fn flow_not_tracked(&self) {
        self.flows_total.fetch_sub(1, Ordering::Relaxed);
    }

    /// Connections tracked now, and ever.
    pub fn flows(&self) -> (u64, u64) {
        (self.live_flows.load(Ordering::Relaxed), self.flows_total.load(Ordering::Relaxed))
    }
}

impl FilterContext {
    /// References held on the context as the statistics report them: the
    /// table's and those of whatever outlives a classify (pended requests,
    /// flows). The one its handle slot keeps (until the grace period after
    /// DELETE) is not counted, so the number means what it always did.
    pub fn references(&self) -> u32 {
        self.reference_count().saturating_sub(u32::from(self.slot().is_some()))
    }
}

impl ContextRef {
    /// Builds a context with one reference.
    pub fn try_new(filter_id: u64, layer_id: u16, origin: Origin, policy: PolicyRepr) -> Result<Self> {
        let (rate, burst) = match policy.action {
            PolicyAction::RateLimit { rate_per_sec, burst } => (rate_per_sec, burst),
            _ => (1, 1),
        };
        let context = FilterContextData {
            slot: AtomicU64::new(0),
            filter_id,
            layer_id,
            origin,
            fast_path: FastPath::for_filter(&policy, layer_id),
            policy,
            rate_limiter: RateLimiter::new(rate, burst),
            counters: FilterCounters::new(),
            live_flows: AtomicU64::new(0),
            flows_total: AtomicU64::new(0),
        };
        PoolArc::try_new_with(|| context)
    }
}

/// Every live filter context by filter id (the filter's own reference),
/// and the slots that the handles in `filter->context` name.
pub struct ContextTable {
    entries: crate::platform::id_table::IdTable<ContextRef>,
    slots: ContextSlots,
}

impl ContextTable {
    /// An empty table; const for the driver's static state.
    pub const fn new(tag: PoolTag) -> Self {
        Self { entries: crate::platform::id_table::IdTable::new(tag), slots: ContextSlots::new(tag) }
    }

    /// Adds the context of `filter_id` without a slot (an adopted filter,
    /// whose `filter->context` is not ours). On failure the context comes
    /// back.
    pub fn insert(&self, filter_id: u64, context: ContextRef) -> core::result::Result<(), (NtStatus, ContextRef)> {
        self.entries.insert(filter_id, context)
    }

    /// Adds the context of `filter_id` and claims its slot: the handle
    /// notifyFn ADD puts in the context word. On failure nothing is kept
    /// and the context comes back.
    pub fn insert_with_slot(
        &self,
        filter_id: u64,
        context: ContextRef,
        tag: u8,
    ) -> core::result::Result<SlotHandle, (NtStatus, ContextRef)> {
        let handle = match self.slots.claim_tagged(&context, tag) {
            Ok(handle) => handle,
            Err(status) => return Err((status, context)),
        };
        context.slot.store(handle.key(), Ordering::Relaxed);
        match self.entries.insert(filter_id, context) {
            Ok(()) => Ok(handle),
            Err((status, context)) => {
                self.slots.release(handle);
                context.slot.store(0, Ordering::Relaxed);
                Err((status, context))
            }
        }
    }

    /// Removes the context of `filter_id`, releasing its slot (every word
    /// naming it stops matching) before the table's reference is handed
    /// back. The slot keeps its own reference until [`Self::reclaim`] sees
    /// the grace period pass: a classify that matched the word before the
    /// release may still be using the context.
    pub fn remove(&self, filter_id: u64) -> Option<ContextRef> {
        self.entries.remove(filter_id).inspect(|context| self.release_slot(context))
    }

    /// Removes one arbitrary context (unload), releasing its slot.
    pub fn pop_any(&self) -> Option<ContextRef> {
        self.entries.pop_any().inspect(|context| self.release_slot(context))
    }

    fn release_slot(&self, context: &ContextRef) {
        if let Some(handle) = context.slot() {
            self.slots.release(handle);
        }
    }

    /// Drops the slots' references to contexts whose slot was released
    /// before every rundown line was seen idle (the grace period: no
    /// classify can still be borrowing them), freeing those nothing else
    /// holds. Never waits. `rundown` is the one classify borrows inside,
    /// `inside` the caller's guard of it (see `HandleSlots::reclaim`).
    /// Returns the references dropped.
    pub fn reclaim(&self, rundown: &Rundown, inside: &RundownGuard<'_>) -> usize {
        self.slots.reclaim(rundown, inside)
    }

    /// Contexts of deleted filters whose grace period has not passed yet
    /// (kept by their slots; not counted by [`Self::len`]).
    pub fn retired(&self) -> usize {
        self.slots.retired()
    }

    /// Frees the table's and the slots' storage once empty (end of unload,
    /// after the rundown has drained: the references of released slots
    /// still waiting for their grace period go too). `rundown` is the one
    /// classify borrows inside and reclaims are given, `drained` the proof
    /// its wait returned; a proof that is not of it (or of it reopened
    /// since) frees nothing and answers `STATUS_INVALID_DEVICE_STATE`
    /// (see `HandleSlots::release_storage`).
    pub fn release_storage(&self, rundown: &Rundown, drained: &Drained<'_>) -> Result {
        if !drained.proves(rundown) {
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        self.entries.release_storage();
        if self.entries.is_empty() {
            self.slots.release_storage(rundown, drained)?;
        }
        Ok(())
    }

    /// The slots: statistics, tests, and the classifyFn entry point, whose
    /// `wfp::filter_view::ContextWords` lets classify borrow the context a
    /// context word's handle names (a garbage or stale word is never
    /// dereferenced). Const, for that static.
    pub const fn slots(&self) -> &ContextSlots {
        &self.slots
    }

    /// A new reference to the context of `filter_id`, if any.
    pub fn get(&self, filter_id: u64) -> Option<ContextRef> {
        self.entries.with(filter_id, FilterContext::acquire)
    }

    /// Runs `f` on the context of `filter_id` under the table's shared lock.
    pub fn with<R>(&self, filter_id: u64, f: impl FnOnce(&FilterContext) -> R) -> Option<R> {
        self.entries.with(filter_id, f)
    }

    /// Calls `visit` for every context under the shared lock.
    pub fn for_each(&self, visit: impl FnMut(u64, &FilterContext)) {
        self.entries.for_each(visit);
    }

    /// Number of contexts.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The id table's slot capacity (statistics and tests).
    pub fn capacity(&self) -> usize {
        self.entries.capacity()
    }
}
