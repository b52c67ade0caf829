//! A filter's counters: one group of words inside its context, so that
//! classify counts with one interlocked add at a fixed offset from the
//! context it already holds, and a filter costs the same few bytes on any
//! machine.
//!
//! Why not one copy per processor: a cache line per processor costs 64
//! bytes a filter a processor (4 KiB a filter on 64 processors, 400 MiB of
//! non-paged pool for 100,000 filters), and any bounded number of copies
//! is shared by many processors on a big machine anyway. A filter that is
//! hot on many processors at once pays contention on its one line; a
//! connect-layer classification is one per connection, not per packet.
//!
//! Why the padding: the words are written on every classify, and the
//! context's other fields (the policy, the filter id) are read by other
//! processors' classifications. [`FilterCounters`] keeps 48 bytes of
//! nothing on each side of its 48 bytes of words: at any 16-byte-aligned
//! address (what the pool gives), every cache line that holds a counter
//! holds nothing but the counters and that padding (checked below).
#![forbid(unsafe_code)]

use crate::platform::pool::POOL_ALIGNMENT;
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

/// Which counter to bump (its word's index).
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

/// Words stored (every [`Counter`]).
const WORDS: usize = 6;
/// Bytes in a cache line (x64 and arm64).
const CACHE_LINE: usize = 64;
/// Padding on each side of the words: a cache line that reaches a word
/// starts at most this far before the words (both are multiples of the
/// pool's alignment) and ends at most this far after them.
const GUARD: usize = CACHE_LINE - POOL_ALIGNMENT;

/// A filter's counters, kept inside its context.
///
/// # Invariants
/// Nothing but padding shares a cache line with `words` while the value
/// sits at a [`POOL_ALIGNMENT`]-aligned address (its alignment: inside a
/// pool block, or anywhere else Rust puts it).
#[repr(C, align(16))]
pub struct FilterCounters {
    _before: [u8; GUARD],
    words: [AtomicU64; WORDS],
    _after: [u8; GUARD],
}

// Every line that reaches a word lies within the value: the words start
// GUARD bytes in, and the first line that reaches them starts at most
// CACHE_LINE - POOL_ALIGNMENT bytes before them; the same after.
const _: () = {
    assert!(core::mem::align_of::<FilterCounters>() == POOL_ALIGNMENT);
    assert!(core::mem::offset_of!(FilterCounters, words) == GUARD);
    assert!(GUARD + POOL_ALIGNMENT >= CACHE_LINE);
    assert!(
        core::mem::size_of::<FilterCounters>() - core::mem::offset_of!(FilterCounters, _after) + POOL_ALIGNMENT
            >= CACHE_LINE
    );
    assert!(core::mem::size_of::<[AtomicU64; WORDS]>().is_multiple_of(POOL_ALIGNMENT));
};

impl FilterCounters {
    /// Every counter at zero.
    pub const fn new() -> Self {
        Self { _before: [0; GUARD], words: [const { AtomicU64::new(0) }; WORDS], _after: [0; GUARD] }
    }

    /// Bumps one counter. Relaxed: counters order nothing.
    #[inline(always)]
    pub fn add(&self, counter: Counter) {
        if let Some(word) = self.words.get(counter as usize) {
            word.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Every counter now.
    pub fn snapshot(&self) -> CounterSnapshot {
        let [permitted, blocked, audited, rate_limited, defaulted, pended] =
            self.words.each_ref().map(|word| word.load(Ordering::Relaxed));
        let matched = permitted.wrapping_add(blocked).wrapping_add(pended);
        CounterSnapshot { matched, permitted, blocked, audited, rate_limited, defaulted, pended }
    }
}

impl Default for FilterCounters {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_counter_has_its_own_word_and_matched_is_their_sum() {
        let counters = FilterCounters::new();
        for (counter, times) in [
            (Counter::Permitted, 5),
            (Counter::Blocked, 3),
            (Counter::Audited, 2),
            (Counter::RateLimited, 1),
            (Counter::Defaulted, 4),
            (Counter::Pended, 7),
        ] {
            for _ in 0..times {
                counters.add(counter);
            }
        }
        let snapshot = counters.snapshot();
        assert_eq!(
            snapshot,
            CounterSnapshot {
                matched: 5 + 3 + 7,
                permitted: 5,
                blocked: 3,
                audited: 2,
                rate_limited: 1,
                defaulted: 4,
                pended: 7
            }
        );
    }

    #[test]
    fn adds_from_many_threads_at_once_are_all_kept() {
        const THREADS: u64 = 4;
        const EACH: u64 = 1_000_000;
        let counters = FilterCounters::new();
        // All start together, so their adds overlap.
        let start = std::sync::Barrier::new(THREADS as usize);
        std::thread::scope(|scope| {
            for _ in 0..THREADS {
                scope.spawn(|| {
                    start.wait();
                    for _ in 0..EACH {
                        counters.add(Counter::Permitted);
                    }
                });
            }
        });
        assert_eq!(counters.snapshot().permitted, THREADS * EACH);
    }

    #[test]
    fn every_line_that_holds_a_counter_lies_inside_the_value_at_any_pool_address() {
        let words_from = core::mem::offset_of!(FilterCounters, words);
        let words_to = words_from + size_of::<[AtomicU64; WORDS]>();
        for start in (0..CACHE_LINE).step_by(POOL_ALIGNMENT) {
            let first_line = (start + words_from) / CACHE_LINE * CACHE_LINE;
            let last_line_end = (start + words_to).div_ceil(CACHE_LINE) * CACHE_LINE;
            assert!(first_line >= start, "at {start}: a line before the value reaches a counter");
            assert!(last_line_end <= start + size_of::<FilterCounters>(), "at {start}: a line after it does");
        }
        // And no more padding than that needs: 48 bytes of words, 48 on
        // each side (a filter's memory is budgeted).
        assert_eq!(size_of::<FilterCounters>(), 3 * 48);
    }
}
