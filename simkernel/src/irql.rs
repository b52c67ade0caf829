//! IRQL per thread, and virtual processors.
//!
//! A thread at DISPATCH_LEVEL owns its virtual processor exclusively, as a
//! real CPU at DISPATCH cannot be preempted: another thread assigned to the
//! same processor waits to raise. So per-processor data that relies on that
//! exclusion is tested honestly.

use crate::verifier::{ViolationKind, report};
use fwps_types::{DISPATCH_LEVEL, PASSIVE_LEVEL};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

/// Processors the simulated machine has.
pub const PROCESSOR_COUNT: usize = 2;

struct Processor {
    busy: Mutex<bool>,
    freed: Condvar,
}

static PROCESSORS: [Processor; PROCESSOR_COUNT] =
    [const { Processor { busy: Mutex::new(false), freed: Condvar::new() } }; PROCESSOR_COUNT];
static NEXT_PROCESSOR: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static IRQL: Cell<u8> = const { Cell::new(PASSIVE_LEVEL) };
    static PROCESSOR: Cell<Option<usize>> = const { Cell::new(None) };
}

// Elsewhere than x86-64 Linux, the processor control block's `Number` is a
// thread-local (on x86-64 Linux it is the block GS names,
// `processor_block`).
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
thread_local! {
    /// What the thread's processor control block says its `Number` is (the
    /// driver's inline read, [`processor_index`]): the processor assigned
    /// to the thread, or 0 before the simulated kernel has assigned one (a
    /// thread that never ran at DISPATCH_LEVEL, as a thread at PASSIVE may
    /// be anywhere).
    static PCR_NUMBER: Cell<u32> = const { Cell::new(0) };
}

/// The calling thread's IRQL.
pub fn current() -> u8 {
    IRQL.with(Cell::get)
}

/// The processor the calling thread runs on (assigned round-robin on first
/// use, or pinned with [`pin_thread_to_processor`]).
#[inline]
pub fn current_processor() -> usize {
    PROCESSOR.with(|p| match p.get() {
        Some(index) => index,
        None => assign_processor(),
    })
}

/// The processor index as a driver reads it inline on x64 Windows (wdm.h's
/// `KeGetCurrentProcessorIndex`: the PRCB's `Number`, `gs:[0x1a4]`): the
/// same value as the `KeGetCurrentProcessorNumberEx` export once the
/// thread has a processor. On x86-64 Linux it is that very instruction
/// (`processor_block`); elsewhere a thread-local read. Before the
/// simulated kernel assigned the thread a processor it reads the block the
/// thread inherited (processor 0 on x86-64 Linux's main thread, and on
/// other hosts everywhere): a thread at PASSIVE may be anywhere.
#[inline(always)]
pub fn processor_index() -> u32 {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        crate::processor_block::number()
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    {
        PCR_NUMBER.with(Cell::get)
    }
}

/// First use on this thread: the next processor, round-robin. Out of line,
/// so the simulated `KeGetCurrentProcessorNumberEx` costs the few
/// instructions of a per-processor read, not the assignment's.
#[cold]
#[inline(never)]
fn assign_processor() -> usize {
    let index = NEXT_PROCESSOR.fetch_add(1, Ordering::Relaxed) % PROCESSOR_COUNT;
    set_processor(index);
    index
}

fn set_processor(index: usize) {
    PROCESSOR.with(|p| p.set(Some(index)));
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        // Keeps the object with the `.init_array` entry that gives the main
        // thread its block linked wherever the simulated IRQL is.
        std::hint::black_box(&crate::processor_block::INSTALL_ON_MAIN_THREAD);
        crate::processor_block::install(index);
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    PCR_NUMBER.with(|n| n.set(index as u32));
}

/// Pins the calling thread to a processor (must be at PASSIVE_LEVEL).
pub fn pin_thread_to_processor(index: usize) {
    set_processor(index % PROCESSOR_COUNT);
}

fn claim_processor() {
    let processor = &PROCESSORS[current_processor()];
    let mut busy = processor.busy.lock().unwrap_or_else(|e| e.into_inner());
    while *busy {
        busy = processor.freed.wait(busy).unwrap_or_else(|e| e.into_inner());
    }
    *busy = true;
}

fn release_processor() {
    let processor = &PROCESSORS[current_processor()];
    let mut busy = processor.busy.lock().unwrap_or_else(|e| e.into_inner());
    *busy = false;
    processor.freed.notify_one();
}

/// Raises the calling thread to `new` (>= current); returns the old IRQL.
pub fn raise(new: u8) -> u8 {
    let old = current();
    if new < old {
        report(ViolationKind::Irql, format!("KeRaiseIrql to {new} from higher IRQL {old}"));
        return old;
    }
    if old < DISPATCH_LEVEL && new >= DISPATCH_LEVEL {
        claim_processor();
    }
    IRQL.with(|i| i.set(new));
    old
}

/// Lowers the calling thread to `old` (<= current).
pub fn lower(old: u8) {
    let now = current();
    if old > now {
        report(ViolationKind::Irql, format!("KeLowerIrql to {old} above current IRQL {now}"));
        return;
    }
    IRQL.with(|i| i.set(old));
    if now >= DISPATCH_LEVEL && old < DISPATCH_LEVEL {
        release_processor();
    }
}

/// Runs `f` at DISPATCH_LEVEL on this thread's processor (as the engine
/// runs classifyFn from a DPC).
pub fn at_dispatch<R>(f: impl FnOnce() -> R) -> R {
    let old = raise(DISPATCH_LEVEL);
    let result = f();
    lower(old);
    result
}

/// Runs `f` at `level` (raising if needed).
pub fn at_level<R>(level: u8, f: impl FnOnce() -> R) -> R {
    if level <= current() {
        return f();
    }
    let old = raise(level);
    let result = f();
    lower(old);
    result
}

/// Reports a violation unless the caller is at or below `max`.
pub(crate) fn require_at_most(max: u8, api: &str) -> bool {
    let irql = current();
    if irql > max {
        report(ViolationKind::Irql, format!("{api} called at IRQL {irql}; it requires IRQL <= {max}"));
        return false;
    }
    true
}

/// `KeGetCurrentIrql` (an intrinsic on x64 Windows; a function here).
#[unsafe(no_mangle)]
pub extern "system" fn KeGetCurrentIrql() -> u8 {
    current()
}

/// `KeGetCurrentProcessorNumberEx`.
///
/// # Safety
/// `proc_number` must be NULL or point to a writable `PROCESSOR_NUMBER`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeGetCurrentProcessorNumberEx(proc_number: *mut core::ffi::c_void) -> u32 {
    let index = current_processor();
    if !proc_number.is_null() {
        // PROCESSOR_NUMBER { USHORT Group; UCHAR Number; UCHAR Reserved; }
        let bytes = [0u8, 0, index as u8, 0];
        // SAFETY: the caller guarantees 4 writable bytes.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), proc_number.cast::<u8>(), 4) };
    }
    index as u32
}

/// What `KeQueryActiveProcessorCountEx` answers: [`PROCESSOR_COUNT`]
/// unless a test says otherwise ([`report_processor_count`]).
static REPORTED_PROCESSORS: AtomicUsize = AtomicUsize::new(PROCESSOR_COUNT);

/// Makes `KeQueryActiveProcessorCountEx` answer `count` (at least 1) until
/// the next boot: what a driver sizes per-processor data by, to measure
/// what it would allocate on a bigger machine. Threads still run on the
/// [`PROCESSOR_COUNT`] virtual processors.
pub fn report_processor_count(count: usize) {
    REPORTED_PROCESSORS.store(count.max(1), Ordering::Relaxed);
}

/// `KeQueryActiveProcessorCountEx`.
#[unsafe(no_mangle)]
pub extern "system" fn KeQueryActiveProcessorCountEx(_group: u16) -> u32 {
    u32::try_from(REPORTED_PROCESSORS.load(Ordering::Relaxed)).unwrap_or(u32::MAX)
}

pub(crate) fn reset() {
    REPORTED_PROCESSORS.store(PROCESSOR_COUNT, Ordering::Relaxed);
    for processor in &PROCESSORS {
        *processor.busy.lock().unwrap_or_else(|e| e.into_inner()) = false;
    }
}
