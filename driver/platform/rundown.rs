//! Rundown protection for the engine's callbacks: unload must not free what
//! a classifyFn or notifyFn already running still uses (whether the engine
//! can still be inside one after unregistering is not documented, so the
//! driver does not rely on it).
//!
//! Each callback enters on its processor's own counter (one cache line per
//! processor, so the classify path shares no written line) and leaves on the
//! same one; unload closes the gate and waits until every counter is zero.
#![forbid(unsafe_code)]

use crate::platform::per_cpu_counters::current_processor;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Counters kept; processors beyond this (a second processor group and
/// up: `KeGetCurrentProcessorNumberEx` numbers across groups) share them
/// (modulo). Sharing only costs contention: a callback leaves on the
/// counter it entered on, and unload sums them all.
const SLOTS: usize = 64;

/// How many callbacks are inside the rundown on the processors that share
/// one slot, alone on its cache line.
#[repr(align(64))]
struct InsideCount(AtomicUsize);

/// The gate and its per-processor counters.
///
/// `closed` is read by every callback and written twice per load: it sits
/// alone on the last cache line, after the counters each processor writes
/// (checked at compile time below).
#[repr(C)]
pub struct Rundown {
    lines: [InsideCount; SLOTS],
    closed: AtomicBool,
}

const _: () = {
    let line = core::mem::align_of::<InsideCount>();
    assert!(line == 64);
    // `closed` starts a line and nothing follows it on that line.
    assert!(core::mem::offset_of!(Rundown, closed) % line == 0);
    assert!(core::mem::size_of::<Rundown>() == core::mem::offset_of!(Rundown, closed) + line);
};

/// Proof of entry; leaves the rundown on drop, on the counter it entered.
pub struct RundownGuard<'a> {
    line: &'a AtomicUsize,
}

impl Rundown {
    /// Open, nobody inside (const for the driver's static state).
    pub const fn new() -> Self {
        Self { lines: [const { InsideCount(AtomicUsize::new(0)) }; SLOTS], closed: AtomicBool::new(false) }
    }

    fn line(&self, slot: usize) -> Option<&AtomicUsize> {
        self.lines.get(slot).map(|line| &line.0)
    }

    /// Enters, unless unload has closed the gate.
    #[inline]
    pub fn enter(&self) -> Option<RundownGuard<'_>> {
        self.enter_on(current_processor())
    }

    /// Enters on `processor`'s counter (classify looks its processor up once
    /// for the rundown and its statistics). Any index is safe: leaving uses
    /// the same counter, whichever processor the caller has moved to.
    #[inline]
    pub fn enter_on(&self, processor: usize) -> Option<RundownGuard<'_>> {
        let slot = processor % SLOTS;
        let line = self.line(slot)?;
        // SeqCst pairs with `close_and_wait`: either it sees our count, or we
        // see the gate closed.
        line.fetch_add(1, Ordering::SeqCst);
        if self.closed.load(Ordering::SeqCst) {
            line.fetch_sub(1, Ordering::Release);
            return None;
        }
        Some(RundownGuard { line })
    }

    /// Closes the gate and waits (PASSIVE_LEVEL, sleeping 1 ms at a time)
    /// until no callback is inside.
    pub fn close_and_wait(&self) {
        self.closed.store(true, Ordering::SeqCst);
        while self.inside() != 0 {
            crate::platform::kernel::sleep_100ns(10_000);
        }
    }

    /// Callbacks inside now, over every processor's counter.
    fn inside(&self) -> usize {
        self.lines.iter().map(|line| line.0.load(Ordering::SeqCst)).sum()
    }

    /// Opens the gate again (initialize).
    pub fn reopen(&self) {
        self.closed.store(false, Ordering::SeqCst);
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
