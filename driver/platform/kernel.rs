//! Every ntoskrnl function the driver calls (pool, spin locks, clock,
//! processors, MDLs, debug output, ETW), declared once.
//!
//! On Windows these resolve to ntoskrnl.exe through `raw-dylib` imports (no
//! import libraries needed, which is also what lets the Linux cross-check
//! link a PE image). Everywhere else the simulated kernel crate defines the
//! same `extern "system"` symbols, so the driver's code is identical on both
//! sides of the boundary. The filter engine's functions are in `wfp::ffi`.
#![allow(unsafe_code, non_snake_case, non_camel_case_types, missing_docs)]

use core::ffi::c_void;
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
    /// Processors in a group, or in all groups with `ALL_PROCESSOR_GROUPS`.
    pub fn KeQueryActiveProcessorCountEx(GroupNumber: u16) -> u32;
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

/// `ALL_PROCESSOR_GROUPS` for `KeQueryActiveProcessorCountEx`.
pub const ALL_PROCESSOR_GROUPS: u16 = 0xFFFF;

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

/// Every active processor, across all groups (`KeQueryActiveProcessorCountEx`
/// with `ALL_PROCESSOR_GROUPS`); callable at any IRQL.
pub fn active_processor_count() -> u32 {
    // SAFETY: no preconditions; callable at any IRQL.
    unsafe { KeQueryActiveProcessorCountEx(ALL_PROCESSOR_GROUPS) }
}

/// The current processor's system-wide index (`KeGetCurrentProcessorNumberEx`
/// without the `PROCESSOR_NUMBER` out-parameter); callable at any IRQL. The
/// classify hot path reads it once per call.
#[inline]
pub fn current_processor_number() -> u32 {
    // SAFETY: a NULL PROCESSOR_NUMBER pointer is allowed; callable at any IRQL.
    unsafe { KeGetCurrentProcessorNumberEx(core::ptr::null_mut()) }
}
