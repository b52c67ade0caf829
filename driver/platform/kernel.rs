//! Every ntoskrnl function the driver calls (pool, spin locks, clock,
//! processors, MDLs, debug output, ETW), declared once, with the safe
//! wrappers the rest of the driver uses where no other module owns the
//! call: the clock, debug output, an ETW provider's registration and
//! writes (`EtwRegistration`, `EventData`), and, in the image built without
//! the WDK, the C memory functions it imports and `bugcheck`.
//!
//! On Windows these resolve to ntoskrnl.exe through `raw-dylib` imports (no
//! import libraries needed, which is also what lets the Linux cross-check
//! link a PE image). Everywhere else the simulated kernel crate defines the
//! same `extern "system"` symbols, so the driver's code is identical on both
//! sides of the boundary. The filter engine's functions are in `wfp::ffi`.
#![allow(unsafe_code, non_snake_case, non_camel_case_types, missing_docs)]

use core::ffi::c_void;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicU64, Ordering};
pub use fwps_types::{
    DPFLTR_ERROR_LEVEL, DPFLTR_IHVNETWORK_ID, DPFLTR_INFO_LEVEL, DPFLTR_TRACE_LEVEL, DPFLTR_WARNING_LEVEL, GUID,
    NTSTATUS, POOL_FLAG_NON_PAGED,
};

/// `HANDLE`.
pub type HANDLE = *mut c_void;
/// `EX_SPIN_LOCK`: a reader/writer spin lock is one `LONG`.
pub type EX_SPIN_LOCK = i32;
/// `KIRQL`.
pub type KIRQL = u8;

#[cfg_attr(windows, link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim"))]
unsafe extern "system" {
    /// Pool allocation; zeroed unless `POOL_FLAG_UNINITIALIZED`. NULL on failure.
    pub fn ExAllocatePool2(Flags: u64, NumberOfBytes: usize, Tag: u32) -> *mut c_void;
    /// Frees a block from `ExAllocatePool2`; the tag must match.
    pub fn ExFreePoolWithTag(P: *mut c_void, Tag: u32);
    /// Raises to DISPATCH_LEVEL and takes the lock exclusively.
    pub fn ExAcquireSpinLockExclusive(SpinLock: *mut EX_SPIN_LOCK) -> KIRQL;
    /// Releases an exclusive hold and restores the IRQL.
    pub fn ExReleaseSpinLockExclusive(SpinLock: *mut EX_SPIN_LOCK, OldIrql: KIRQL);
    /// Raises to DISPATCH_LEVEL and takes the lock shared.
    pub fn ExAcquireSpinLockShared(SpinLock: *mut EX_SPIN_LOCK) -> KIRQL;
    /// Releases a shared hold and restores the IRQL.
    pub fn ExReleaseSpinLockShared(SpinLock: *mut EX_SPIN_LOCK, OldIrql: KIRQL);
    /// Monotonic time in 100 ns units, excluding sleep: the token bucket's clock.
    pub fn KeQueryUnbiasedInterruptTime() -> u64;
    /// The current processor's index across all groups.
    pub fn KeGetCurrentProcessorNumberEx(ProcNumber: *mut c_void) -> u32;
    /// Waits at PASSIVE_LEVEL; `Interval` negative = relative, 100-ns units.
    pub fn KeDelayExecutionThread(WaitMode: i8, Alertable: u8, Interval: *const i64) -> NTSTATUS;
    /// An MDL describing `Length` bytes at `VirtualAddress` (<= DISPATCH_LEVEL).
    pub fn IoAllocateMdl(
        VirtualAddress: *mut c_void,
        Length: u32,
        SecondaryBuffer: u8,
        ChargeQuota: u8,
        Irp: *mut c_void,
    ) -> *mut c_void;
    /// Fills in an MDL over non-paged pool (<= DISPATCH_LEVEL).
    pub fn MmBuildMdlForNonPagedPool(MemoryDescriptorList: *mut c_void);
    /// Frees an MDL from `IoAllocateMdl` (<= DISPATCH_LEVEL).
    pub fn IoFreeMdl(Mdl: *mut c_void);
}

#[cfg(windows)]
#[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
unsafe extern "C" {
    /// Debug output filtered by component and level.
    pub fn DbgPrintEx(ComponentId: u32, Level: u32, Format: *const u8, ...) -> u32;
}

#[cfg(not(windows))]
unsafe extern "system" {
    /// The simulated kernel's debug output: what `DbgPrintEx("%s", msg)`
    /// would print, without a C variadic (which stable Rust cannot define).
    pub fn WfpSimDbgPrint(ComponentId: u32, Level: u32, Message: *const u8, Length: usize);
}

// ETW (ntoskrnl), for the TraceLogging provider in `etw`.
#[cfg_attr(windows, link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim"))]
unsafe extern "system" {
    /// Registers an ETW provider (PASSIVE_LEVEL); `*RegHandle` is the handle.
    pub fn EtwRegister(
        ProviderId: *const GUID,
        EnableCallback: ETWENABLECALLBACK,
        CallbackContext: *mut c_void,
        RegHandle: *mut REGHANDLE,
    ) -> NTSTATUS;
    /// Unregisters it (PASSIVE_LEVEL); required before the image unloads.
    pub fn EtwUnregister(RegHandle: REGHANDLE) -> NTSTATUS;
    /// Sets provider information, here the TraceLogging traits
    /// (`EventProviderSetTraits`, PASSIVE_LEVEL).
    pub fn EtwSetInformation(
        RegHandle: REGHANDLE,
        InformationClass: u32,
        EventInformation: *const c_void,
        InformationLength: u32,
    ) -> NTSTATUS;
    /// Whether any session wants events of this level and keyword (any IRQL).
    pub fn EtwProviderEnabled(RegHandle: REGHANDLE, Level: u8, Keyword: u64) -> u8;
    /// Writes one event (any IRQL; our data is on the stack or static).
    pub fn EtwWriteTransfer(
        RegHandle: REGHANDLE,
        EventDescriptor: *const EVENT_DESCRIPTOR,
        ActivityId: *const GUID,
        RelatedActivityId: *const GUID,
        UserDataCount: u32,
        UserData: *const EVENT_DATA_DESCRIPTOR,
    ) -> NTSTATUS;
}

/// `REGHANDLE`: an ETW provider registration (a `ULONGLONG` on every
/// architecture; 0 is never a valid registration).
pub type REGHANDLE = u64;

/// `PETWENABLECALLBACK`; we pass none (we ask `EtwProviderEnabled` instead).
pub type ETWENABLECALLBACK =
    Option<unsafe extern "system" fn(*const GUID, u32, u8, u64, u64, *const c_void, *mut c_void)>;

/// `EVENT_DESCRIPTOR` (evntprov.h): what identifies an event to ETW.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EVENT_DESCRIPTOR {
    pub Id: u16,
    pub Version: u8,
    pub Channel: u8,
    pub Level: u8,
    pub Opcode: u8,
    pub Task: u16,
    pub Keyword: u64,
}

/// `EVENT_DATA_DESCRIPTOR` (evntprov.h): one block of an event's data;
/// `Type` says whether it is provider traits, event metadata or field data.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EVENT_DATA_DESCRIPTOR {
    pub Ptr: u64,
    pub Size: u32,
    pub Type: u8,
    pub Reserved1: u8,
    pub Reserved2: u16,
}

const _: () = assert!(core::mem::size_of::<EVENT_DESCRIPTOR>() == 16);
const _: () = assert!(core::mem::offset_of!(EVENT_DESCRIPTOR, Keyword) == 8);
const _: () = assert!(core::mem::size_of::<EVENT_DATA_DESCRIPTOR>() == 16);
const _: () = assert!(core::mem::offset_of!(EVENT_DATA_DESCRIPTOR, Type) == 12);

/// `EVENT_DATA_DESCRIPTOR_TYPE_NONE`: field data.
pub const EVENT_DATA_DESCRIPTOR_TYPE_NONE: u8 = 0;
/// `EVENT_DATA_DESCRIPTOR_TYPE_EVENT_METADATA`: TraceLogging event metadata.
pub const EVENT_DATA_DESCRIPTOR_TYPE_EVENT_METADATA: u8 = 1;
/// `EVENT_DATA_DESCRIPTOR_TYPE_PROVIDER_METADATA`: the provider traits.
pub const EVENT_DATA_DESCRIPTOR_TYPE_PROVIDER_METADATA: u8 = 2;
/// `EventProviderSetTraits` (`EVENT_INFO_CLASS`).
pub const EVENT_PROVIDER_SET_TRAITS: u32 = 2;

/// An ETW provider's registration, kept where every IRQL can read it: the
/// one way the driver calls `EtwRegister`, `EtwSetInformation`,
/// `EtwProviderEnabled`, `EtwWriteTransfer` and `EtwUnregister`, so no
/// other code holds a `REGHANDLE`.
///
/// # Invariants
/// The handle is 0 or a registration `EtwRegister` returned and
/// `EtwUnregister` has not been given: only [`EtwRegistration::register`]
/// stores one, and [`EtwRegistration::unregister`] clears it before it
/// unregisters it. Register and unregister run at PASSIVE_LEVEL in load and
/// unload, when no event can be written (the driver's lifecycle: nothing
/// that writes runs before load registers or after unload's rundown).
pub struct EtwRegistration(AtomicU64);

impl EtwRegistration {
    /// Not registered (const: it lives in a static).
    pub const fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    /// Whether a registration is held.
    pub fn is_registered(&self) -> bool {
        self.0.load(Ordering::Acquire) != 0
    }

    /// `EtwRegister` for `provider`, without an enable callback (writers
    /// ask [`EtwRegistration::enabled`] instead), keeping the handle. A
    /// registration held already is kept: success, nothing called.
    /// PASSIVE_LEVEL.
    pub fn register(&self, provider: &'static GUID) -> NTSTATUS {
        if self.is_registered() {
            return 0;
        }
        let mut handle: REGHANDLE = 0;
        // SAFETY: `provider` is a static GUID, no callback is given (so no
        // context either), and `handle` is a writable REGHANDLE on this
        // stack frame for the call.
        let status = unsafe { EtwRegister(provider, None, core::ptr::null_mut(), &mut handle) };
        if status >= 0 && handle != 0 {
            // INVARIANT: a registration EtwRegister just returned.
            self.0.store(handle, Ordering::Release);
        }
        status
    }

    /// `EtwSetInformation(EventProviderSetTraits)`: the TraceLogging traits
    /// (`traits`, a static blob) for the registration held; `STATUS_INVALID_HANDLE`
    /// without one. PASSIVE_LEVEL.
    pub fn set_traits(&self, traits: &'static [u8]) -> NTSTATUS {
        let handle = self.0.load(Ordering::Acquire);
        if handle == 0 {
            return STATUS_INVALID_HANDLE;
        }
        let Ok(len) = u32::try_from(traits.len()) else { return STATUS_INVALID_PARAMETER };
        // SAFETY: `handle` is registered (the type's invariant); `len`
        // readable bytes at `traits`, a static.
        unsafe { EtwSetInformation(handle, EVENT_PROVIDER_SET_TRAITS, traits.as_ptr().cast(), len) }
    }

    /// `EtwUnregister` of the registration held, if any (its status); the
    /// handle is dropped first, so nothing uses it afterwards. PASSIVE_LEVEL,
    /// last in unload (and on a failed load).
    pub fn unregister(&self) -> Option<NTSTATUS> {
        // INVARIANT: cleared before the handle is given back.
        let handle = self.0.swap(0, Ordering::AcqRel);
        if handle == 0 {
            return None;
        }
        // SAFETY: a registration EtwRegister returned (the type's
        // invariant), unregistered once: the swap above took it.
        Some(unsafe { EtwUnregister(handle) })
    }

    /// `EtwProviderEnabled`: whether a session wants events of `level` and
    /// `keyword` (false when not registered). Any IRQL.
    #[inline]
    pub fn enabled(&self, level: u8, keyword: u64) -> bool {
        let handle = self.0.load(Ordering::Acquire);
        if handle == 0 {
            return false;
        }
        // SAFETY: a registered handle (the type's invariant); plain values;
        // callable at any IRQL.
        unsafe { EtwProviderEnabled(handle, level, keyword) != 0 }
    }

    /// `EtwWriteTransfer` of one event: `descriptor` and the blocks of
    /// `data`, all borrowed for the call (no activity ids). Nothing is
    /// written when not registered. Any IRQL.
    pub fn write(&self, descriptor: &EVENT_DESCRIPTOR, data: &[EventData<'_>]) -> NTSTATUS {
        let handle = self.0.load(Ordering::Acquire);
        if handle == 0 {
            return STATUS_INVALID_HANDLE;
        }
        let Ok(count) = u32::try_from(data.len()) else { return STATUS_INVALID_PARAMETER };
        // SAFETY: a registered handle (the type's invariant); `descriptor`
        // and the `count` data descriptors are borrowed for the call, and
        // each descriptor describes bytes borrowed for as long as it lives
        // (`EventData`'s invariant), so for the call; `EventData` is
        // `repr(transparent)` over `EVENT_DATA_DESCRIPTOR`.
        unsafe {
            EtwWriteTransfer(
                handle,
                descriptor,
                core::ptr::null(),
                core::ptr::null(),
                count,
                data.as_ptr().cast::<EVENT_DATA_DESCRIPTOR>(),
            )
        }
    }
}

impl Default for EtwRegistration {
    fn default() -> Self {
        Self::new()
    }
}

/// `STATUS_INVALID_HANDLE`: no registration.
const STATUS_INVALID_HANDLE: NTSTATUS = 0xC000_0008_u32 as i32;
/// `STATUS_INVALID_PARAMETER`: a length past a `ULONG`.
const STATUS_INVALID_PARAMETER: NTSTATUS = 0xC000_000D_u32 as i32;

/// One block of an event's data: an `EVENT_DATA_DESCRIPTOR` that can only be
/// built over bytes borrowed for `'a`, so what [`EtwRegistration::write`]
/// hands ETW is readable for the call, and safe code never passes a pointer.
///
/// # Invariants
/// `raw.Ptr` and `raw.Size` describe bytes readable for `'a` (or are 0).
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EventData<'a> {
    raw: EVENT_DATA_DESCRIPTOR,
    _bytes: PhantomData<&'a [u8]>,
}

impl<'a> EventData<'a> {
    /// `bytes` as a block of `kind` (`EVENT_DATA_DESCRIPTOR_TYPE_*`); past
    /// 4 GiB only the first 4 GiB (ETW's limit is far lower).
    pub fn bytes(bytes: &'a [u8], kind: u8) -> Self {
        let size = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        // INVARIANT: `size` bytes of `bytes`, borrowed for 'a.
        Self {
            raw: EVENT_DATA_DESCRIPTOR {
                Ptr: bytes.as_ptr() as usize as u64,
                Size: size,
                Type: kind,
                Reserved1: 0,
                Reserved2: 0,
            },
            _bytes: PhantomData,
        }
    }

    /// A field value: its bytes in place (little-endian, as ETW records
    /// them).
    pub fn scalar<T: EventScalar>(value: &'a T) -> Self {
        // INVARIANT: the value's bytes, borrowed for 'a (`EventScalar`
        // types have no padding, so all of them are initialized).
        Self {
            raw: EVENT_DATA_DESCRIPTOR {
                Ptr: core::ptr::from_ref(value) as usize as u64,
                Size: size_of::<T>() as u32,
                Type: EVENT_DATA_DESCRIPTOR_TYPE_NONE,
                Reserved1: 0,
                Reserved2: 0,
            },
            _bytes: PhantomData,
        }
    }
}

/// Integer types whose every byte is data (no padding), the only values
/// [`EventData::scalar`] describes; sealed, so no other type can claim it.
pub trait EventScalar: Copy + sealed::Scalar {}
impl EventScalar for u8 {}
impl EventScalar for u16 {}
impl EventScalar for u32 {}
impl EventScalar for u64 {}

mod sealed {
    /// Implemented here only.
    pub trait Scalar {}
    impl Scalar for u8 {}
    impl Scalar for u16 {}
    impl Scalar for u32 {}
    impl Scalar for u64 {}
}

// The C memory functions that LLVM emits calls to (struct copies, zeroing,
// `copy_from_slice`) in the image built without the WDK. compiler-builtins
// does not define them for MSVC targets, where the C runtime is expected
// to; for a kernel driver that is ntoskrnl.exe, which exports all four.
// Declaring them here puts them in the raw-dylib import library rustc
// generates, so the image imports them from the kernel and the link needs
// no import library. `+verbatim`: the DLL name goes into the import table
// as written (without it rustc appends ".dll").
#[cfg(all(windows, not(feature = "kmdf")))]
#[allow(dead_code, reason = "called by LLVM-generated code, never by name")]
#[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
unsafe extern "C" {
    fn memcpy(dest: *mut c_void, src: *const c_void, count: usize) -> *mut c_void;
    fn memmove(dest: *mut c_void, src: *const c_void, count: usize) -> *mut c_void;
    fn memset(dest: *mut c_void, c: i32, count: usize) -> *mut c_void;
    fn memcmp(lhs: *const c_void, rhs: *const c_void, count: usize) -> i32;
}

#[cfg(all(windows, not(feature = "kmdf")))]
#[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
unsafe extern "system" {
    /// Stops the system with a bugcheck; never returns.
    fn KeBugCheckEx(BugCheckCode: u32, P1: usize, P2: usize, P3: usize, P4: usize);
}

/// Stops the system with bugcheck `code` (no parameters): what a panic in
/// the image built without the WDK does (with it, wdk-panic does the same).
#[cfg(all(windows, not(feature = "kmdf")))]
pub fn bugcheck(code: u32) -> ! {
    // SAFETY: KeBugCheckEx may be called at any IRQL and takes no pointers.
    unsafe { KeBugCheckEx(code, 0, 0, 0, 0) };
    // KeBugCheckEx does not return; the loop gives the `!` without relying
    // on the foreign declaration.
    loop {
        core::hint::spin_loop();
    }
}

/// Now, in 100-ns ticks since boot (excluding sleep): the one clock the
/// driver reads (monotonic, callable at any IRQL).
#[inline]
pub fn now_ticks() -> u64 {
    // SAFETY: no preconditions; callable at any IRQL.
    unsafe { KeQueryUnbiasedInterruptTime() }
}

/// Sleeps for `interval` 100-ns units. PASSIVE_LEVEL only (unload's waits).
pub fn sleep_100ns(interval: i64) {
    // A negative interval is relative time.
    let relative = -interval.abs();
    // SAFETY: `relative` is valid for the call; KernelMode (0), not
    // alertable; callers run at PASSIVE_LEVEL (unload).
    let _ = unsafe { KeDelayExecutionThread(0, 0, &relative) };
}

/// Prints `line` (NUL-terminated; its bytes before the NUL are the text)
/// to the debugger through `DbgPrintEx(component, level, "%s", line)`.
/// A line without a NUL is not printed.
pub fn debug_print(component: u32, level: u32, line: &[u8]) {
    let Some(len) = line.iter().position(|&b| b == 0) else { return };
    #[cfg(windows)]
    {
        let _ = len;
        // SAFETY: "%s" consumes exactly one NUL-terminated string argument,
        // and `line` holds a NUL (checked above).
        unsafe { DbgPrintEx(component, level, c"%s".as_ptr().cast(), line.as_ptr()) };
    }
    #[cfg(not(windows))]
    // SAFETY: the pointer and length describe initialized bytes of `line`.
    unsafe {
        WfpSimDbgPrint(component, level, line.as_ptr(), len)
    };
}

/// The current processor's system-wide index, as Microsoft's wdm.h defines
/// `KeGetCurrentProcessorIndex` for x64: an inline read of the processor
/// control block's `Number` (`__readgsdword(0x1a4)`), the same value
/// `KeGetCurrentProcessorNumberEx(NULL)` returns, without a call into
/// ntoskrnl on every classify; as an index (the read zero-extends into the
/// whole register). Callable at any IRQL; at PASSIVE_LEVEL the thread may
/// move on at once, which the callers allow (a rundown line is only a place
/// to count, any index is safe).
#[inline(always)]
pub fn current_processor_slot() -> usize {
    // On x64 Windows, and in the simulated kernel on x86-64 Linux, whose
    // threads' GS names their virtual processor's block with `Number` at
    // the same offset (`wfpcallout_simkernel::processor_block`): the same
    // instruction on both hosts.
    #[cfg(all(target_arch = "x86_64", any(windows, target_os = "linux")))]
    {
        let index: usize;
        // SAFETY: in kernel mode GS holds the current processor's KPCR,
        // whose PRCB `Number` is at 0x1a4: wdm.h's own inline
        // `KeGetCurrentProcessorIndex` for AMD64 reads exactly this (and in
        // the simulated kernel every thread's GS names a block laid out
        // so). A 4-byte read of always-mapped memory into the low half of
        // the register, which clears the upper half; no stack, no flags.
        unsafe {
            core::arch::asm!(
                "mov {index:e}, dword ptr gs:[0x1a4]",
                index = out(reg) index,
                options(nostack, readonly, preserves_flags),
            );
        }
        index
    }
    #[cfg(all(windows, not(target_arch = "x86_64")))]
    // SAFETY: a NULL PROCESSOR_NUMBER pointer is allowed; callable at any IRQL.
    unsafe {
        KeGetCurrentProcessorNumberEx(core::ptr::null_mut()) as usize
    }
    // Other simulated hosts: the simulated kernel's stand-in for the same
    // inline read, its per-thread processor, read without a call.
    #[cfg(all(not(windows), not(all(target_arch = "x86_64", target_os = "linux"))))]
    {
        wfpcallout_simkernel::irql::processor_index() as usize
    }
}

/// The current processor's index modulo 256 (the low byte of
/// [`current_processor_slot`]'s value): what the rundown's 256 lines are
/// indexed by, read with one `movzx` on x64 (the same PRCB field's first
/// byte), so the index needs no mask. Callable at any IRQL, as
/// [`current_processor_slot`].
#[inline(always)]
pub fn current_processor_low_byte() -> usize {
    #[cfg(all(target_arch = "x86_64", any(windows, target_os = "linux")))]
    {
        let index: usize;
        // SAFETY: as in `current_processor_slot`: GS names the processor's
        // control block, `Number` at 0x1a4 (little-endian, so its low byte
        // first); a one-byte read zero-extended into the whole register.
        unsafe {
            core::arch::asm!(
                "movzx {index:e}, byte ptr gs:[0x1a4]",
                index = out(reg) index,
                options(nostack, readonly, preserves_flags),
            );
        }
        // SAFETY: `movzx` of one byte leaves a value below 256; said to
        // the compiler, which then masks nothing (`index % 256`).
        unsafe { core::hint::assert_unchecked(index < 256) };
        index
    }
    #[cfg(not(all(target_arch = "x86_64", any(windows, target_os = "linux"))))]
    {
        current_processor_slot() & 0xff
    }
}

#[cfg(all(test, not(windows)))]
mod tests {
    use super::*;
    use wfpcallout_simkernel::irql;

    /// The per-processor lines (rundown, counters) are only
    /// contention-free if the index read inline is the processor the
    /// caller runs on, the one the export would name.
    #[test]
    fn the_processor_index_is_the_processor_the_caller_runs_on() {
        for processor in 0..irql::PROCESSOR_COUNT {
            let read = std::thread::spawn(move || {
                irql::pin_thread_to_processor(processor);
                irql::at_dispatch(|| {
                    (current_processor_slot() as u32, exported_processor_number(), current_processor_low_byte())
                })
            })
            .join();
            assert_eq!(
                read.ok(),
                Some((processor as u32, processor as u32, processor & 0xff)),
                "processor {processor}"
            );
        }
    }

    fn exported_processor_number() -> u32 {
        // SAFETY: a NULL PROCESSOR_NUMBER pointer is allowed.
        unsafe { KeGetCurrentProcessorNumberEx(core::ptr::null_mut()) }
    }
}
