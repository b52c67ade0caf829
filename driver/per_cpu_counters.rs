//! Per-filter counters split by processor, so classify on one CPU never
//! writes a cache line another CPU writes (no shared hot line on the fast
//! path). Readers add the slots up.
#![allow(unsafe_code)]

use crate::ffi::{ALL_PROCESSOR_GROUPS, KeGetCurrentProcessorNumberEx, KeQueryActiveProcessorCountEx};
use crate::pool::{PoolSlice, TAG_COUNTERS};
use crate::status::Result;
use core::sync::atomic::{AtomicU64, Ordering};

/// What classify counts per filter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// Classifications that reached this filter's context.
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
    /// See [`CounterSnapshot::matched`].
    Matched = 0,
    /// See [`CounterSnapshot::permitted`].
    Permitted = 1,
    /// See [`CounterSnapshot::blocked`].
    Blocked = 2,
    /// See [`CounterSnapshot::audited`].
    Audited = 3,
    /// See [`CounterSnapshot::rate_limited`].
    RateLimited = 4,
    /// See [`CounterSnapshot::defaulted`].
    Defaulted = 5,
    /// See [`CounterSnapshot::pended`].
    Pended = 6,
}

/// Words per processor slot: one 64-byte cache line.
const SLOT_WORDS: usize = 8;

/// Counters with one cache line per processor.
///
/// # Invariants
/// `words.len()` is `(slots + 1) * SLOT_WORDS` and slot `i` starts at word
/// `offset + i * SLOT_WORDS`, where `offset` makes it 64-byte aligned.
pub struct PerCpuCounters {
    words: PoolSlice<AtomicU64>,
    offset: usize,
    slots: usize,
}

/// How many processor slots to allocate: every active processor, at least one.
pub fn processor_count() -> usize {
    // SAFETY: no preconditions; callable at any IRQL.
    let count = unsafe { KeQueryActiveProcessorCountEx(ALL_PROCESSOR_GROUPS) };
    (count as usize).max(1)
}

pub(crate) fn current_processor() -> usize {
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
        // INVARIANT: one spare slot absorbs the alignment offset.
        Ok(Self { words, offset, slots })
    }

    /// Bumps one counter in the current processor's slot. Relaxed: counters
    /// order nothing.
    #[inline]
    pub fn add(&self, counter: Counter) {
        let slot = current_processor() % self.slots;
        let index = self.offset + slot * SLOT_WORDS + counter as usize;
        if let Some(word) = self.words.get(index) {
            word.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Bumps two counters with one processor lookup (matched + verdict on
    /// the classify path).
    #[inline]
    pub fn add_pair(&self, first: Counter, second: Counter) {
        let base = self.offset + (current_processor() % self.slots) * SLOT_WORDS;
        for counter in [first, second] {
            if let Some(word) = self.words.get(base + counter as usize) {
                word.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Sums every processor's slot.
    pub fn snapshot(&self) -> CounterSnapshot {
        let mut total = [0u64; 7];
        for slot in 0..self.slots {
            let base = self.offset + slot * SLOT_WORDS;
            for (i, sum) in total.iter_mut().enumerate() {
                if let Some(word) = self.words.get(base + i) {
                    *sum += word.load(Ordering::Relaxed);
                }
            }
        }
        let [matched, permitted, blocked, audited, rate_limited, defaulted, pended] = total;
        CounterSnapshot { matched, permitted, blocked, audited, rate_limited, defaulted, pended }
    }
}
