//! The processor control region a driver reads through GS, on x86-64
//! Linux hosts: one block per virtual processor whose `Number` sits at
//! `0x1a4`, as the PRCB's does on x64 Windows (wdm.h's inline
//! `KeGetCurrentProcessorIndex` reads `gs:[0x1a4]`). Each thread's GS
//! base names its processor's block, so the driver reads its processor
//! with the very instruction its Windows build runs: no thread-local
//! access, whose host code (a call to `__tls_get_addr` in position-
//! independent code) would make the simulated classify path cost what the
//! kernel's does not.
//!
//! glibc and Rust's runtime leave GS alone on x86-64 Linux (thread-locals
//! live behind FS). A new thread inherits its creator's GS base, so every
//! thread reads some virtual processor's block from its first instruction:
//! the main thread's is set before `main` (an `.init_array` entry), and a
//! thread moved to a processor ([`install`]) gets that processor's block.
#![allow(unsafe_code)]

use crate::irql::PROCESSOR_COUNT;

/// Where wdm.h's AMD64 `KeGetCurrentProcessorIndex` reads the PRCB's
/// `Number` (`__readgsdword(0x1a4)`).
pub const NUMBER_OFFSET: usize = 0x1a4;

/// One virtual processor's block: only `Number` is meaningful.
#[repr(C, align(64))]
struct ProcessorBlock {
    _before: [u8; NUMBER_OFFSET],
    number: u32,
}

const _: () = assert!(core::mem::offset_of!(ProcessorBlock, number) == NUMBER_OFFSET);

/// The blocks, never written after build: block `i` says `Number = i`.
static BLOCKS: [ProcessorBlock; PROCESSOR_COUNT] = {
    let mut blocks = [const { ProcessorBlock { _before: [0; NUMBER_OFFSET], number: 0 } }; PROCESSOR_COUNT];
    let mut index = 0;
    while index < PROCESSOR_COUNT {
        blocks[index].number = index as u32;
        index += 1;
    }
    blocks
};

/// `arch_prctl(2)`'s system call number on x86-64 Linux.
const SYS_ARCH_PRCTL: usize = 158;
/// `ARCH_SET_GS` (asm/prctl.h).
const ARCH_SET_GS: usize = 0x1001;

/// Points the calling thread's GS base at `processor`'s block (modulo the
/// processor count). A host that refuses it (no `arch_prctl`: a seccomp
/// policy) cannot run the simulated kernel: every processor read would
/// fault, so the process stops here saying why.
pub fn install(processor: usize) {
    let block = &BLOCKS[processor % PROCESSOR_COUNT];
    let address = core::ptr::from_ref(block) as usize;
    let result: isize;
    // SAFETY: the `arch_prctl(ARCH_SET_GS, address)` system call: it sets
    // this thread's GS base and touches no memory; `syscall` clobbers rcx
    // and r11 (declared). The block is a static, valid and never written
    // for the life of the process, so every later GS-relative read of its
    // first `size_of::<ProcessorBlock>()` bytes is in bounds.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL as isize => result,
            in("rdi") ARCH_SET_GS,
            in("rsi") address,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack, preserves_flags),
        );
    }
    if result != 0 {
        eprintln!("simkernel: arch_prctl(ARCH_SET_GS) failed ({result}): the driver's processor reads need it");
        std::process::abort();
    }
}

/// The calling thread's processor `Number`, read as the driver reads it.
#[inline(always)]
pub fn number() -> u32 {
    let number: u32;
    // SAFETY: every thread's GS base names one of `BLOCKS` (set before main
    // for the main thread, inherited by every thread it or its threads
    // create, changed only by `install`), each `ProcessorBlock`, static and
    // never written: a 4-byte read at its `number`. No stack, no flags.
    unsafe {
        core::arch::asm!(
            "mov {number:e}, dword ptr gs:[0x1a4]",
            number = out(reg) number,
            options(nostack, readonly, preserves_flags),
        );
    }
    number
}

/// Runs before `main` (and before any thread exists): the main thread is
/// on processor 0's block until the simulated kernel moves it.
extern "C" fn install_on_main_thread() {
    install(0);
}

/// The `.init_array` entry. Referenced from [`crate::irql`] (so the linker
/// keeps this object whenever the simulated IRQL is linked: an unreferenced
/// object of a library is not pulled in, and its entry with it).
#[used]
#[unsafe(link_section = ".init_array")]
pub(crate) static INSTALL_ON_MAIN_THREAD: extern "C" fn() = install_on_main_thread;
