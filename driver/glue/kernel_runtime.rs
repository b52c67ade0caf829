//! What the kernel image needs besides the driver's code: with the WDK
//! (feature `kmdf`), wdk-alloc's allocator and wdk-panic's panic handler;
//! without it (the cross-check's image), a panic handler that bugchecks the
//! same way and the C memory functions LLVM emits calls to, imported from
//! ntoskrnl.
#![allow(unsafe_code)]

/// Kernel pool behind `alloc` (`ExAllocatePool2`, non-paged, tag 'rust').
#[cfg(all(not(test), feature = "kmdf"))]
#[global_allocator]
static GLOBAL_ALLOCATOR: wdk_alloc::WdkAllocator = wdk_alloc::WdkAllocator;

// wdk-panic's `#[panic_handler]` bugchecks with code 'RPNC'.
#[cfg(all(not(test), feature = "kmdf"))]
use wdk_panic as _;

#[cfg(not(feature = "kmdf"))]
use core::ffi::c_void;

// The C memory functions that LLVM emits calls to (struct copies, zeroing,
// `copy_from_slice`). compiler-builtins does not define them for MSVC
// targets, where the C runtime is expected to; for a kernel driver that is
// ntoskrnl.exe, which exports all four. Declaring them here puts them in the
// raw-dylib import library rustc generates, so the image imports them from
// the kernel and the link needs no import library. `+verbatim`: the DLL name
// goes into the import table as written (without it rustc appends ".dll").
#[cfg(not(feature = "kmdf"))]
#[allow(dead_code, reason = "called by LLVM-generated code, never by name")]
#[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
unsafe extern "C" {
    fn memcpy(dest: *mut c_void, src: *const c_void, count: usize) -> *mut c_void;
    fn memmove(dest: *mut c_void, src: *const c_void, count: usize) -> *mut c_void;
    fn memset(dest: *mut c_void, c: i32, count: usize) -> *mut c_void;
    fn memcmp(lhs: *const c_void, rhs: *const c_void, count: usize) -> i32;
}

/// Bugcheck code of a Rust panic, the one wdk-panic uses: 'RPNC'.
#[cfg(not(feature = "kmdf"))]
const RUST_PANIC_BUGCHECK: u32 = 0x5250_4E43;

#[cfg(not(feature = "kmdf"))]
#[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
unsafe extern "system" {
    /// Stops the system with a bugcheck; never returns.
    fn KeBugCheckEx(BugCheckCode: u32, P1: usize, P2: usize, P3: usize, P4: usize);
}

/// A panic in kernel mode stops the system.
#[cfg(all(not(test), not(feature = "kmdf")))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // SAFETY: KeBugCheckEx may be called at any IRQL and takes no pointers.
    unsafe { KeBugCheckEx(RUST_PANIC_BUGCHECK, 0, 0, 0, 0) };
    // KeBugCheckEx does not return; the loop gives the `!` without relying
    // on the foreign declaration.
    loop {
        core::hint::spin_loop();
    }
}
