//! Per-filter counters split by processor, so classify on one CPU never
//! writes a cache line another CPU writes (no shared hot line on the fast
//! path). Readers add the slots up.
#![allow(unsafe_code)]

use crate::ffi::{ALL_PROCESSOR_GROUPS, KeGetCurrentProcessorNumberEx, KeQueryActiveProcessorCountEx};
use crate::pool::{PoolSlice, TAG_COUNTERS};
use crate::status::NtStatus;
use crate::status::Result;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

/// What classify counts per filter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// Classifications that reached this filter's context. Not stored:
    /// every one ends in exactly one of permitted, blocked or pended, so it
    /// is their sum (and classify counts one word, not two).
    pub matched: u64,
    /// Verdicts PERMIT (including audit and rate-limit passes).
    pub permitted: u64,
    /// Verdicts BLOCK (including rate-limit drops).
    pub blocked: u64,
    /// Audit-policy classifications (a subset of `permitted`).
    pub audited: u64,
    /// Rate-limit drops (a subset of `blocked`).
    pub rate_limited: u64,
    /// Ask-policy classifications answered with the default verdict.
    pub defaulted: u64,
    /// Ask-policy classifications pended for an agent.
    pub pended: u64,
}

/// Which counter to bump.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// See [`CounterSnapshot::permitted`].
    Permitted = 0,
    /// See [`CounterSnapshot::blocked`].
    Blocked = 1,
    /// See [`CounterSnapshot::audited`].
    Audited = 2,
    /// See [`CounterSnapshot::rate_limited`].
    RateLimited = 3,
    /// See [`CounterSnapshot::defaulted`].
    Defaulted = 4,
    /// See [`CounterSnapshot::pended`].
    Pended = 5,
}

/// Words per processor slot: one 64-byte cache line.
const SLOT_WORDS: usize = 8;

/// One processor's counters, alone on their cache line.
#[repr(C, align(64))]
struct Line([AtomicU64; SLOT_WORDS]);

/// Counters with one cache line per processor.
///
/// # Invariants
/// `slots` is at least 1, `words` holds `(slots + 1) * SLOT_WORDS`
/// zero-initialised words, and
/// `lines` is the first 64-byte aligned address inside it; `slots` whole
/// lines start there (the spare line absorbs the alignment).
pub struct PerCpuCounters {
    /// Owns the storage `lines` points into (freed with it).
    _words: PoolSlice<AtomicU64>,
    lines: NonNull<Line>,
    slots: usize,
}

// SAFETY: `lines` points into `words`, which this value owns; only atomics
// are reached through it, so sharing and sending are as safe as for the slice.
unsafe impl Send for PerCpuCounters {}
// SAFETY: as above.
unsafe impl Sync for PerCpuCounters {}

/// How many processor slots to allocate: every active processor, at least one.
pub fn processor_count() -> usize {
    // SAFETY: no preconditions; callable at any IRQL.
    let count = unsafe { KeQueryActiveProcessorCountEx(ALL_PROCESSOR_GROUPS) };
    (count as usize).max(1)
}

/// The current processor's index (the slot of every per-processor array).
#[inline]
pub fn current_processor() -> usize {
    // SAFETY: a NULL PROCESSOR_NUMBER pointer is allowed; callable at any IRQL.
    unsafe { KeGetCurrentProcessorNumberEx(core::ptr::null_mut()) as usize }
}

impl PerCpuCounters {
    /// Allocates zeroed counters for `slots` processors.
    pub fn try_new(slots: usize) -> Result<Self> {
        let slots = slots.max(1);
        let words = PoolSlice::try_zeroed((slots + 1) * SLOT_WORDS, TAG_COUNTERS)?;
        let misalign = (words.as_ptr() as usize % 64) / 8;
        let offset = (SLOT_WORDS - misalign) % SLOT_WORDS;
        let first = words.get(offset).ok_or(NtStatus::INSUFFICIENT_RESOURCES)?;
        // INVARIANT: `first` is 64-byte aligned by construction, and the
        // spare line leaves `slots` whole lines after it inside `words`.
        let lines = NonNull::from(first).cast::<Line>();
        Ok(Self { _words: words, lines, slots })
    }

    /// Bumps one counter in the current processor's slot. Relaxed: counters
    /// order nothing.
    #[inline]
    pub fn add(&self, counter: Counter) {
        self.add_on(current_processor(), counter);
    }

    /// Bumps one counter in `processor`'s slot: classify looks its
    /// processor up once and passes it to the rundown and here.
    #[inline(always)]
    pub fn add_on(&self, processor: usize, counter: Counter) {
        if let Some(word) = self.line(processor).get(counter as usize) {
            word.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `processor`'s cache line. Processors added after the allocation
    /// (hot-add) share lines; the common case needs no division.
    #[inline(always)]
    fn line(&self, processor: usize) -> &[AtomicU64; SLOT_WORDS] {
        let slot = if processor < self.slots { processor } else { processor.checked_rem(self.slots).unwrap_or(0) };
        // SAFETY: slot < slots, and `slots` whole lines start at `lines`
        // inside `words` (invariant), so the offset stays in the allocation.
        let line = unsafe { self.lines.add(slot) };
        // SAFETY: that line is aligned, zero-initialised, only ever accessed
        // through atomics, and lives as long as `self` (invariant).
        unsafe { &line.as_ref().0 }
    }

    /// Sums every processor's slot.
    pub fn snapshot(&self) -> CounterSnapshot {
        let mut total = [0u64; 6];
        for slot in 0..self.slots {
            for (sum, word) in total.iter_mut().zip(self.line(slot)) {
                *sum += word.load(Ordering::Relaxed);
            }
        }
        let [permitted, blocked, audited, rate_limited, defaulted, pended] = total;
        let matched = permitted.wrapping_add(blocked).wrapping_add(pended);
        CounterSnapshot { matched, permitted, blocked, audited, rate_limited, defaulted, pended }
    }
}
