//! Rundown protection for the engine's callbacks: unload must not free what
//! a classifyFn or notifyFn already running still uses (whether the engine
//! can still be inside one after unregistering is not documented, so the
//! driver does not rely on it).
//!
//! Each callback enters on its processor's own counter (one cache line per
//! processor, so the classify path shares no written line) and leaves on the
//! same one; unload closes the gate and waits until every counter is zero.
//! The gate is a bit in every counter, not a separate word: entering is one
//! interlocked add whose result says whether the gate was closed, so the
//! hot path reads no other line. Lookup mode (the driver cannot trust
//! `filter->context`, `callbacks::state`) is a bit in every counter too,
//! which only the classify fast path's entry ([`Rundown::enter_fast_on`])
//! heeds: the same one add tells it both, and the sign bit is set whenever
//! either is, so the test is the add's own flags.
#![forbid(unsafe_code)]

use crate::platform::kernel::current_processor_low_byte;
use crate::platform::sync::{AtomicUsize, Ordering, fence};

/// Counters kept: one per processor up to 256 (four processor groups),
/// so a processor finds its line from the low byte of its index
/// ([`current_processor_low_byte`], one `movzx`). Processors beyond share
/// them (modulo). Sharing only costs contention: a callback leaves on the
/// counter it entered on, and unload sums them all.
#[cfg(not(loom))]
const SLOTS: usize = 256;
/// Under loom, few enough that its model stays small (each wait reads
/// every counter).
#[cfg(loom)]
const SLOTS: usize = 4;

/// Set in a counter whenever [`CLOSED`] or [`LOOKUP`] is: the fast path's
/// entry tests this one bit (the sign of the count it added to).
const REFUSE_FAST: usize = 1 << (usize::BITS - 1);
/// The gate's bit in each counter (set: closed). Counts stay far below it.
const CLOSED: usize = 1 << (usize::BITS - 2);
/// Lookup mode's bit in each counter: the fast path does not enter.
const LOOKUP: usize = 1 << (usize::BITS - 3);
/// The bits of a counter that are not the count.
const FLAGS: usize = REFUSE_FAST | CLOSED | LOOKUP;

/// Counter lines: [`Rundown::idle_lines`] answers with one bit per line.
pub const LINES: usize = SLOTS;
const _: () = assert!(SLOTS.is_power_of_two() && SLOTS <= 256);

/// Words of a [`LineSet`].
const SET_WORDS: usize = SLOTS.div_ceil(64);

/// A set of the rundown's lines, one bit each (bit `i % 64` of word
/// `i / 64`: line `i`): which lines a grace period has seen idle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LineSet([u64; SET_WORDS]);

impl LineSet {
    /// No line.
    pub const NONE: Self = Self([0; SET_WORDS]);
    /// Every line (what [`Rundown::idle_lines`] answers when all were idle).
    // Evaluated by the compiler: an index out of bounds fails the build.
    #[allow(clippy::indexing_slicing)]
    pub const ALL: Self = {
        let mut words = [0u64; SET_WORDS];
        let mut line = 0;
        while line < SLOTS {
            words[line / 64] |= 1 << (line % 64);
            line += 1;
        }
        Self(words)
    };

    /// Adds line `line` (a line of the rundown: others are ignored).
    fn insert(&mut self, line: usize) {
        if let Some(word) = self.0.get_mut(line / 64)
            && line < SLOTS
        {
            *word |= 1 << (line % 64);
        }
    }

    /// Whether line `line` is in the set.
    pub fn contains(self, line: usize) -> bool {
        self.0.get(line / 64).is_some_and(|word| word & (1 << (line % 64)) != 0)
    }

    /// The lines in either set.
    #[must_use]
    pub fn union(self, other: Self) -> Self {
        let mut words = self.0;
        for (word, theirs) in words.iter_mut().zip(other.0) {
            *word |= theirs;
        }
        Self(words)
    }

    /// Whether every line of the rundown is in the set.
    pub fn is_all(self) -> bool {
        self == Self::ALL
    }

    /// Every line but `line`.
    #[must_use]
    pub fn all_but(line: usize) -> Self {
        let mut set = Self::ALL;
        if let Some(word) = set.0.get_mut(line / 64) {
            *word &= !(1 << (line % 64));
        }
        set
    }
}

/// How many callbacks are inside the rundown on the processors that share
/// one slot, and the gate bit ([`CLOSED`]), alone on its cache line.
#[repr(align(64))]
struct InsideCount(AtomicUsize);

/// The per-processor counters, each carrying the gate.
#[repr(C)]
pub struct Rundown {
    lines: [InsideCount; SLOTS],
}

const _: () = assert!(core::mem::align_of::<InsideCount>() == 64);

/// Proof of entry; leaves the rundown on drop, on the counter it entered.
pub struct RundownGuard<'a> {
    line: &'a AtomicUsize,
}

/// Proof that unload's wait is over: what frees memory that callbacks
/// read without a lock (the context slots' storage,
/// [`crate::platform::pool::HandleSlots::release_storage`]) or ends a mode
/// classify relies on asks for one, so freeing before the wait is not a
/// call that can be written. Neither `Clone` nor `Copy`, and its field is
/// private, so one exists only after [`Rundown::close_and_wait`] returned.
///
/// # Invariants
/// `rundown` is the rundown whose `close_and_wait` made this value, and
/// when it returned every line's gate was closed and nobody was inside.
/// The borrow cannot stop [`Rundown::reopen`] (it takes `&self`: the
/// rundown lives in a static), so [`Drained::proves`] also checks that the
/// gate is still closed: then nobody has entered since, as long as no
/// reopen and second `close_and_wait` came in between (the driver closes
/// and reopens only in load and unload, which do not overlap).
#[must_use = "teardown that must follow the wait asks for this proof"]
pub struct Drained<'a> {
    rundown: &'a Rundown,
}

// A proof that could be cloned would outlive what it proves (a copy kept
// past a reopen, handed on): fails to build if `Drained` is ever `Clone`
// (then the item is found through both impls and the path is ambiguous).
const _: fn() = || {
    trait AmbiguousIfClone<A> {
        fn item() {}
    }
    impl<T> AmbiguousIfClone<()> for T {}
    impl<T: Clone> AmbiguousIfClone<u8> for T {}
    <Drained<'static> as AmbiguousIfClone<_>>::item();
};

impl Drained<'_> {
    /// Whether this proves that nobody is inside `rundown` nor can enter it:
    /// it was made by `rundown`'s own wait (the same rundown, by address:
    /// a proof about another one says nothing of `rundown`'s callbacks),
    /// and the gate has not been reopened since.
    pub fn proves(&self, rundown: &Rundown) -> bool {
        core::ptr::eq(self.rundown, rundown) && rundown.is_closed()
    }
}

impl Rundown {
    /// Open, nobody inside (const for the driver's static state).
    pub const fn new() -> Self {
        Self { lines: [const { InsideCount(AtomicUsize::new(0)) }; SLOTS] }
    }

    fn line(&self, slot: usize) -> Option<&AtomicUsize> {
        self.lines.get(slot).map(|line| &line.0)
    }

    /// Enters, unless unload has closed the gate.
    #[inline]
    pub fn enter(&self) -> Option<RundownGuard<'_>> {
        self.enter_on(current_processor_low_byte())
    }

    /// Enters on `processor`'s counter (`processor` modulo the lines: the
    /// low byte of a processor's index, [`current_processor_low_byte`],
    /// names its own line). Any index is safe: leaving uses
    /// the same counter, whichever processor the caller has moved to.
    #[inline]
    pub fn enter_on(&self, processor: usize) -> Option<RundownGuard<'_>> {
        self.enter_unless(processor, CLOSED)
    }

    /// Enters on `processor`'s counter as [`Self::enter_on`] does, unless
    /// unload has closed the gate or lookup mode is on (either: `None`, and
    /// [`Self::lookup_on`] tells which): the classify fast path's entry,
    /// whose one add also tells it that the driver trusts context words
    /// (the lookup bit read clear by the add, which reads the counter's
    /// latest value: every [`Self::set_lookup`] that happened before is
    /// seen). REFUSE_FAST is the sign bit, set whenever either reason is,
    /// so the test is the add's own sign.
    #[inline(always)]
    pub fn enter_fast_on(&self, processor: usize) -> Option<RundownGuard<'_>> {
        self.enter_unless(processor, REFUSE_FAST)
    }

    /// Both entries: one add on `processor`'s counter, left at once if the
    /// count it added to had any of `refused` set.
    #[inline(always)]
    fn enter_unless(&self, processor: usize, refused: usize) -> Option<RundownGuard<'_>> {
        let slot = processor % SLOTS;
        let line = self.line(slot)?;
        // One word: either `close_and_wait`'s fetch_or on this counter comes
        // after our add (it sees our count), or before (we see its bit).
        // SeqCst (on x86-64 the same `lock xadd` as Acquire): the first half
        // of the Dekker pattern `idle_lines` completes, see there.
        if line.fetch_add(1, Ordering::SeqCst) & refused != 0 {
            line.fetch_sub(1, Ordering::Release);
            return None;
        }
        // Loom treats SeqCst accesses as AcqRel (its documented limit) but
        // models SeqCst fences: the fence the SeqCst add stands for, so
        // that the loom tests check the same Dekker pattern.
        #[cfg(loom)]
        fence(Ordering::SeqCst);
        Some(RundownGuard { line })
    }

    /// Whether lookup mode is on now (every line carries the bit: one is
    /// read). A refused [`Self::enter_fast_on`] asks, to tell lookup mode
    /// from unload.
    pub fn lookup_on(&self) -> bool {
        self.lines.first().is_some_and(|line| line.0.load(Ordering::Acquire) & LOOKUP != 0)
    }

    /// Sets `flag` (and [`REFUSE_FAST`]) in every counter.
    fn set_flag(&self, flag: usize) {
        for line in &self.lines {
            line.0.fetch_or(flag | REFUSE_FAST, Ordering::AcqRel);
        }
    }

    /// Clears `flag` in every counter, and [`REFUSE_FAST`] with it where no
    /// other reason is left: one compare-exchange per counter, so a
    /// concurrent [`Self::set_flag`] of the other reason cannot lose its
    /// [`REFUSE_FAST`] (callbacks entering and leaving meanwhile only make
    /// it retry).
    fn clear_flag(&self, flag: usize) {
        for line in &self.lines {
            let mut current = line.0.load(Ordering::Acquire);
            loop {
                let mut next = current & !flag;
                if next & (CLOSED | LOOKUP) == 0 {
                    next &= !REFUSE_FAST;
                }
                match line.0.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => break,
                    Err(seen) => current = seen,
                }
            }
        }
    }

    /// Turns lookup mode on or off: [`Self::enter_fast_on`] refuses while it
    /// is on. The driver's lookup word decides it (`DriverState`, which
    /// calls this under its own lock, so settings never cross).
    pub fn set_lookup(&self, on: bool) {
        if on {
            self.set_flag(LOOKUP);
        } else {
            self.clear_flag(LOOKUP);
        }
    }

    /// Closes the gate and waits (PASSIVE_LEVEL, sleeping 1 ms at a time)
    /// until no callback is inside; returns the proof that teardown steps
    /// which must follow the wait ask for.
    pub fn close_and_wait(&self) -> Drained<'_> {
        self.set_flag(CLOSED);
        while self.inside() != 0 {
            #[cfg(not(loom))]
            crate::platform::kernel::sleep_100ns(10_000);
            #[cfg(loom)]
            loom::thread::yield_now();
        }
        // INVARIANT: every gate closed above, and nobody inside now.
        Drained { rundown: self }
    }

    /// Whether every line's gate is closed (no entry can succeed).
    fn is_closed(&self) -> bool {
        self.lines.iter().all(|line| line.0.load(Ordering::Acquire) & CLOSED != 0)
    }

    /// Callbacks inside now, over every processor's counter.
    fn inside(&self) -> usize {
        self.lines.iter().map(|line| line.0.load(Ordering::Acquire) & !FLAGS).sum()
    }

    /// The lines on which nobody but the caller (`own`, a guard of this
    /// rundown, if it is inside) is inside now ([`LineSet::ALL`] when all
    /// are). What a grace period is
    /// made of ([`crate::platform::pool::HandleSlots::reclaim`]): lines need
    /// not be idle at the same moment. The gate and lookup bits are ignored.
    ///
    /// Why a bit set here proves that a callback which entered on that
    /// line before some write W (a slot's key moving on) has left, if W
    /// happens before this call: a Dekker pattern. The callback does
    /// `fetch_add` on its line, then loads the key, both SeqCst; this call
    /// does a SeqCst fence, then SeqCst loads of the lines. If the
    /// callback's key load read the value before W, it precedes W's
    /// happens-after fence in the single total order S (C++20
    /// [atomics.order] p4.2), its `fetch_add` precedes the load (sequenced
    /// before), and the fence precedes the line load: so the line load
    /// follows the `fetch_add` in S and reads it or a later value (p4.1):
    /// a count without the callback's entry is one written by its leaving
    /// `fetch_sub` (Release) or later in the line's chain of read-modify-
    /// writes, which this Acquire-or-stronger load synchronizes with, so
    /// every use the callback made happens before what the caller does
    /// next. Otherwise the callback read W's key, which no handle matches.
    pub fn idle_lines(&self, own: Option<&RundownGuard<'_>>) -> LineSet {
        fence(Ordering::SeqCst);
        let mut idle = LineSet::NONE;
        for (index, line) in self.lines.iter().enumerate() {
            let mine = usize::from(own.is_some_and(|own| core::ptr::eq(own.line, &line.0)));
            // The caller's own entry (if on this line) happened before, in
            // its own thread: a count of exactly it means nobody else.
            if line.0.load(Ordering::SeqCst) & !FLAGS == mine {
                idle.insert(index);
            }
        }
        idle
    }

    /// Whether `guard` was entered on one of this rundown's lines.
    pub fn guards(&self, guard: &RundownGuard<'_>) -> bool {
        self.lines.iter().any(|line| core::ptr::eq(guard.line, &line.0))
    }

    /// Opens the gate again (initialize); lookup mode stays as it is.
    pub fn reopen(&self) {
        self.clear_flag(CLOSED);
    }
}

impl Default for Rundown {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for RundownGuard<'_> {
    fn drop(&mut self) {
        self.line.fetch_sub(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processors_of_every_group_count_and_leave_on_their_counters_and_close_stops_every_one() {
        let rundown = Rundown::new();
        let processors = [0usize, 5, 63, 64, 69, 127, 128, 200, 255, 256, 300, 1_000];
        let guards = processors.map(|p| rundown.enter_on(p));
        assert!(guards.iter().all(Option::is_some));
        assert_eq!(rundown.inside(), processors.len());
        drop(guards);
        assert_eq!(rundown.inside(), 0, "each left the counter it entered on");
        // Nobody inside: returns at once.
        let _drained = rundown.close_and_wait();
        for processor in processors {
            assert!(rundown.enter_on(processor).is_none(), "processor {processor} entered a closed rundown");
        }
        assert_eq!(rundown.inside(), 0, "a refused entry leaves no count behind");
        rundown.reopen();
        assert!(rundown.enter_on(4_000).is_some());
    }

    #[test]
    fn lookup_mode_refuses_only_the_fast_entry_and_neither_reason_clears_the_other() {
        let rundown = Rundown::new();
        assert!(rundown.enter_fast_on(3).is_some(), "open, no lookup");
        rundown.set_lookup(true);
        assert!(rundown.lookup_on());
        assert!(rundown.enter_fast_on(3).is_none(), "lookup mode refuses the fast entry");
        assert!(rundown.enter_on(3).is_some(), "and no other");
        assert_eq!(rundown.inside(), 0, "refused and left entries leave no count");
        let drained = rundown.close_and_wait();
        rundown.set_lookup(false);
        assert!(!rundown.lookup_on());
        assert!(rundown.enter_fast_on(3).is_none(), "lookup mode ended: still closed");
        assert!(rundown.enter_on(3).is_none());
        assert!(drained.proves(&rundown));
        rundown.set_lookup(true);
        rundown.reopen();
        assert!(rundown.enter_on(70).is_some(), "reopened");
        assert!(rundown.enter_fast_on(70).is_none(), "reopened, but lookup mode stays on");
        rundown.set_lookup(false);
        let inside = rundown.enter_fast_on(70);
        assert!(inside.is_some(), "both reasons gone");
        assert_eq!(rundown.inside(), 1);
        assert_eq!(rundown.idle_lines(inside.as_ref()), LineSet::ALL, "the flags are not counts");
        drop(inside);
        // The fast entry counts on its processor's own line, as `enter_on`.
        let on_one = rundown.enter_fast_on(1);
        assert!(on_one.is_some());
        assert_eq!(rundown.idle_lines(None), LineSet::all_but(1), "processor 1's line, and only it");
    }

    #[test]
    fn each_of_256_processors_enters_on_its_own_line_and_the_next_ones_wrap() {
        let rundown = Rundown::new();
        assert_eq!(LINES, 256);
        for processor in 0..LINES {
            let inside = rundown.enter_fast_on(processor);
            assert!(inside.is_some());
            assert_eq!(rundown.idle_lines(None), LineSet::all_but(processor), "processor {processor}");
            assert!(!rundown.idle_lines(None).contains(processor));
        }
        assert_eq!(rundown.inside(), 0);
        let far = rundown.enter_on(LINES + 3);
        assert_eq!(rundown.idle_lines(None), LineSet::all_but(3), "processor 259 shares processor 3's line");
        assert_eq!(rundown.idle_lines(far.as_ref()), LineSet::ALL, "its own entry is not someone else's");
    }

    #[test]
    fn line_sets_add_up_to_all_only_when_every_line_is_in() {
        let mut seen = LineSet::NONE;
        for line in (0..LINES).rev() {
            assert!(!seen.is_all(), "line {line} still missing");
            let mut one = LineSet::NONE;
            one.insert(line);
            assert!(one.contains(line) && !one.contains((line + 1) % LINES));
            seen = seen.union(one);
        }
        assert!(seen.is_all());
        assert_eq!(seen, LineSet::ALL);
        let mut past = LineSet::NONE;
        past.insert(LINES);
        assert_eq!(past, LineSet::NONE, "not a line of the rundown");
    }

    #[test]
    fn a_drained_proof_is_only_of_its_own_rundown_and_only_while_it_stays_closed() {
        let rundown = Rundown::new();
        let other = Rundown::new();
        let drained = rundown.close_and_wait();
        assert!(drained.proves(&rundown), "the proof of the rundown that waited");
        assert!(!drained.proves(&other), "another rundown, still open");
        let _other_drained = other.close_and_wait();
        assert!(!drained.proves(&other), "another rundown, even closed and drained: not the one that waited");
        rundown.reopen();
        assert!(!drained.proves(&rundown), "reopened since: callbacks may be inside again");
    }
}
