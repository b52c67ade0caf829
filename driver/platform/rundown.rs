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
//! hot path reads no other line.
#![forbid(unsafe_code)]

use crate::platform::kernel::current_processor_number;
use crate::platform::sync::{AtomicUsize, Ordering};

/// Counters kept; processors beyond this (a second processor group and
/// up: `KeGetCurrentProcessorNumberEx` numbers across groups) share them
/// (modulo). Sharing only costs contention: a callback leaves on the
/// counter it entered on, and unload sums them all.
#[cfg(not(loom))]
const SLOTS: usize = 64;
/// Under loom, few enough that its model stays small (each wait reads
/// every counter).
#[cfg(loom)]
const SLOTS: usize = 4;

/// The gate's bit in each counter (set: closed). Counts stay far below it.
const CLOSED: usize = 1 << (usize::BITS - 1);

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
        self.enter_on(current_processor_number() as usize)
    }

    /// Enters on `processor`'s counter (classify looks its processor up once
    /// for the rundown and its statistics). Any index is safe: leaving uses
    /// the same counter, whichever processor the caller has moved to.
    #[inline]
    pub fn enter_on(&self, processor: usize) -> Option<RundownGuard<'_>> {
        let slot = processor % SLOTS;
        let line = self.line(slot)?;
        // One word: either `close_and_wait`'s fetch_or on this counter comes
        // after our add (it sees our count), or before (we see its bit).
        if line.fetch_add(1, Ordering::Acquire) & CLOSED != 0 {
            line.fetch_sub(1, Ordering::Release);
            return None;
        }
        Some(RundownGuard { line })
    }

    /// Closes the gate and waits (PASSIVE_LEVEL, sleeping 1 ms at a time)
    /// until no callback is inside.
    pub fn close_and_wait(&self) {
        for line in &self.lines {
            line.0.fetch_or(CLOSED, Ordering::AcqRel);
        }
        while self.inside() != 0 {
            #[cfg(not(loom))]
            crate::platform::kernel::sleep_100ns(10_000);
            #[cfg(loom)]
            loom::thread::yield_now();
        }
    }

    /// Callbacks inside now, over every processor's counter.
    fn inside(&self) -> usize {
        self.lines.iter().map(|line| line.0.load(Ordering::Acquire) & !CLOSED).sum()
    }

    /// Opens the gate again (initialize).
    pub fn reopen(&self) {
        for line in &self.lines {
            line.0.fetch_and(!CLOSED, Ordering::AcqRel);
        }
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
    fn processors_past_64_count_and_leave_on_shared_counters_and_close_stops_every_one() {
        let rundown = Rundown::new();
        let processors = [0usize, 5, 63, 64, 69, 127, 128, 200, 1_000];
        let guards = processors.map(|p| rundown.enter_on(p));
        assert!(guards.iter().all(Option::is_some));
        assert_eq!(rundown.inside(), processors.len());
        drop(guards);
        assert_eq!(rundown.inside(), 0, "each left the counter it entered on");
        // Nobody inside: returns at once.
        rundown.close_and_wait();
        for processor in processors {
            assert!(rundown.enter_on(processor).is_none(), "processor {processor} entered a closed rundown");
        }
        assert_eq!(rundown.inside(), 0, "a refused entry leaves no count behind");
        rundown.reopen();
        assert!(rundown.enter_on(4_000).is_some());
    }
}
