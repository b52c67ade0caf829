//! Per-filter counters split by processor into at most
//! [`MAX_COUNTER_LINES`] cache lines, so a filter's memory is bounded
//! whatever the machine: one line per processor would cost 64 bytes per
//! filter per processor (4 KiB a filter on 64 processors, 400 MiB of
//! non-paged pool for 100,000 filters). On up to that many processors each
//! has its own line, and classify on one never writes a line another
//! writes; beyond, processors share lines by index (`processor mod
//! lines`), which bounds memory at the price of some contention on a filter
//! that is hot on many processors at once. Readers add the lines up.
#![forbid(unsafe_code)]

use crate::platform::kernel::{active_processor_count, current_processor_slot};
use crate::platform::pool::{PoolRing, TAG_COUNTERS};
use crate::platform::status::Result;
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

/// The most counter lines a filter gets (a power of two): with the room
/// the pool block needs to align them, 176 bytes a filter on any machine.
pub const MAX_COUNTER_LINES: usize = 2;

/// How many counter lines a filter gets on a machine with `processors`
/// processors: one each up to [`MAX_COUNTER_LINES`], never more; always a
/// power of two, so a processor finds its line with a mask.
pub fn counter_lines(processors: usize) -> usize {
    processors.clamp(1, MAX_COUNTER_LINES).next_power_of_two().min(MAX_COUNTER_LINES)
}

const _: () = assert!(MAX_COUNTER_LINES.is_power_of_two());

/// One processor's counters, alone on their cache line.
#[repr(C, align(64))]
#[derive(Default)]
struct CounterLine([AtomicU64; SLOT_WORDS]);

/// Counters with one cache line per processor, up to
/// [`MAX_COUNTER_LINES`] lines.
///
/// # Invariants
/// `lines` has a power-of-two number of lines ([`counter_lines`]), each
/// 64-byte aligned (the pool ring aligns them); processor `p` counts on
/// line `p mod lines` (the ring's index).
pub struct PerCpuCounters {
    lines: PoolRing<CounterLine>,
}

/// Every active processor (across all groups), at least one: what
/// [`PerCpuCounters::try_new`] is told.
pub fn processor_count() -> usize {
    (active_processor_count() as usize).max(1)
}

/// The current processor's index (the slot of every per-processor array).
#[inline]
pub fn current_processor() -> usize {
    current_processor_slot()
}

impl PerCpuCounters {
    /// Allocates zeroed counters for a machine with `processors`
    /// processors ([`counter_lines`] of them).
    pub fn try_new(processors: usize) -> Result<Self> {
        let lines = PoolRing::try_new_with(counter_lines(processors), TAG_COUNTERS, |_| CounterLine::default())?;
        Ok(Self { lines })
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

    /// `processor`'s cache line: `processor mod lines`, a mask since
    /// the line count is a power of two (processors added later share
    /// lines too).
    #[inline(always)]
    fn line(&self, processor: usize) -> &[AtomicU64; SLOT_WORDS] {
        &self.lines.get(processor).0
    }

    /// Sums every processor's slot.
    pub fn snapshot(&self) -> CounterSnapshot {
        let mut total = [0u64; 6];
        for line in self.lines.as_slice() {
            for (sum, word) in total.iter_mut().zip(&line.0) {
                *sum += word.load(Ordering::Relaxed);
            }
        }
        let [permitted, blocked, audited, rate_limited, defaulted, pended] = total;
        let matched = permitted.wrapping_add(blocked).wrapping_add(pended);
        CounterSnapshot { matched, permitted, blocked, audited, rate_limited, defaulted, pended }
    }
}
