//! What the kernel image needs besides the driver's code: with the WDK
//! (feature `kmdf`), wdk-alloc's allocator and wdk-panic's panic handler;
//! without it (the cross-check's image), a panic handler that bugchecks the
//! same way (`platform::kernel::bugcheck`; the C memory functions LLVM
//! emits calls to are imported from ntoskrnl there too).
#![forbid(unsafe_code)]

/// Kernel pool behind `alloc` (`ExAllocatePool2`, non-paged, tag 'rust').
#[cfg(all(not(test), feature = "kmdf"))]
#[global_allocator]
static GLOBAL_ALLOCATOR: wdk_alloc::WdkAllocator = wdk_alloc::WdkAllocator;

// wdk-panic's `#[panic_handler]` bugchecks with code 'RPNC'.
#[cfg(all(not(test), feature = "kmdf"))]
use wdk_panic as _;

/// Bugcheck code of a Rust panic, the one wdk-panic uses: 'RPNC'.
#[cfg(not(feature = "kmdf"))]
const RUST_PANIC_BUGCHECK: u32 = 0x5250_4E43;

/// A panic in kernel mode stops the system.
#[cfg(all(not(test), not(feature = "kmdf")))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    crate::platform::kernel::bugcheck(RUST_PANIC_BUGCHECK)
}
