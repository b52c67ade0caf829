//! Conformance: the current processor as a driver reads it (row X1 of
//! simkernel/CONFORMANCE.md). On x64 Windows wdm.h defines
//! `KeGetCurrentProcessorIndex` inline, reading the PRCB's `Number`
//! through GS; `KeGetCurrentProcessorNumberEx(NULL)` returns the same
//! index. A thread at DISPATCH_LEVEL cannot be moved to another processor,
//! so the index it reads there stays its own until it lowers the IRQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

use wfpcallout_simkernel::irql::{self, PROCESSOR_COUNT, processor_index};

fn exported_number() -> u32 {
    // SAFETY: a NULL PROCESSOR_NUMBER is allowed.
    unsafe { irql::KeGetCurrentProcessorNumberEx(std::ptr::null_mut()) }
}

#[test]
fn the_inline_index_is_the_exported_number_on_every_processor() {
    for processor in 0..PROCESSOR_COUNT {
        // Read at DISPATCH_LEVEL, checked after lowering (a failed check
        // must not leave the virtual processor claimed).
        let (inline, exported) = std::thread::spawn(move || {
            irql::pin_thread_to_processor(processor);
            irql::at_dispatch(|| (processor_index(), exported_number()))
        })
        .join()
        .unwrap();
        assert_eq!(inline, processor as u32, "inline read on processor {processor}");
        assert_eq!(inline, exported, "inline read and export disagree");
    }
}

#[test]
fn threads_are_spread_over_the_processors_and_each_reads_its_own() {
    let seen: Vec<u32> = (0..PROCESSOR_COUNT * 2)
        .map(|_| std::thread::spawn(|| irql::at_dispatch(|| (processor_index(), exported_number()))))
        .map(|thread| thread.join().unwrap())
        .map(|(inline, exported)| {
            assert_eq!(inline, exported, "inline read and export disagree");
            inline
        })
        .collect();
    for processor in 0..PROCESSOR_COUNT as u32 {
        assert!(seen.contains(&processor), "no thread ran on processor {processor}: {seen:?}");
    }
}

#[test]
fn a_thread_moved_at_passive_reads_its_new_processor() {
    let read = std::thread::spawn(|| {
        irql::pin_thread_to_processor(0);
        let first = irql::at_dispatch(processor_index);
        irql::pin_thread_to_processor(1);
        (first, irql::at_dispatch(processor_index))
    })
    .join()
    .unwrap();
    assert_eq!(read, (0, 1));
}

#[test]
fn a_thread_reads_a_processor_from_its_first_instruction() {
    // A thread the simulated kernel never assigned reads the block it
    // inherited (on x86-64 Linux a GS read that would fault without one).
    let inherited = std::thread::spawn(processor_index).join().unwrap();
    assert!((inherited as usize) < PROCESSOR_COUNT, "read {inherited}");
    // There, a new thread's GS base is its creator's.
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        let nested = std::thread::spawn(|| {
            irql::pin_thread_to_processor(1);
            std::thread::spawn(processor_index).join().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(nested, 1, "a thread starts on its creator's block");
    }
}
