//! Plain WDM entry point, for a Windows build without the KMDF glue
//! (feature `kmdf` off): the PE image the Windows-target cross-check links
//! on any host, and that the kernel-emulator tests load and run.
//!
//! `DriverEntry` creates the device `\Device\WfpCallout` (the device object
//! `FwpsCalloutRegister` needs), hands it to the portable
//! `lifecycle::initialize`, and sets `DriverObject->DriverUnload`; the unload
//! routine runs the portable `lifecycle::unload` and deletes the device.
//!
//! It also dispatches the control device's IRPs, minimally, so that an agent
//! can connect and answer `ask` requests through this image: CREATE and
//! CLOSE succeed, CLEANUP detaches the handle (`control::file_cleanup`), and
//! DEVICE_CONTROL (METHOD_BUFFERED only) moves the system buffer to
//! `control::agent_get_request` or `control::dispatch_ioctl`. Unlike the
//! KMDF glue, this entry never parks a "get request" IOCTL: when no request
//! is queued it completes it at once with `STATUS_NO_MORE_ENTRIES`, and the
//! agent asks again. The KMDF glue (`kmdf.rs`) parks it in a manual queue
//! and completes it when classify queues a request.
//!
//! Without wdk-panic in this configuration, the panic handler lives here
//! too, and bugchecks the way wdk-panic does.
//!
//! IRQL: `DriverEntry` and `DriverUnload` run at PASSIVE_LEVEL, as
//! `lifecycle` requires.
#![allow(unsafe_code)]

use core::ffi::c_void;
use core::mem::offset_of;
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

use crate::ffi::NTSTATUS;
use crate::status::NtStatus;

/// `UNICODE_STRING`: `Length` and `MaximumLength` count bytes, and
/// `Length` excludes any terminating NUL.
#[repr(C)]
struct UnicodeString {
    length: u16,
    maximum_length: u16,
    buffer: *const u16,
}

/// `PDRIVER_UNLOAD`.
type DriverUnloadFn = unsafe extern "system" fn(driver: *mut DriverObject);

/// `PDRIVER_DISPATCH`.
type DriverDispatchFn = unsafe extern "system" fn(device: *mut c_void, irp: *mut Irp) -> NTSTATUS;

/// `IRP_MJ_MAXIMUM_FUNCTION + 1`: the length of `DRIVER_OBJECT.MajorFunction`.
const IRP_MJ_FUNCTION_COUNT: usize = 0x1C;
/// `IRP_MJ_CREATE`.
const IRP_MJ_CREATE: usize = 0x00;
/// `IRP_MJ_CLOSE`.
const IRP_MJ_CLOSE: usize = 0x02;
/// `IRP_MJ_DEVICE_CONTROL`.
const IRP_MJ_DEVICE_CONTROL: usize = 0x0E;
/// `IRP_MJ_CLEANUP`.
const IRP_MJ_CLEANUP: usize = 0x12;

/// The IRPs this entry dispatches, and to which routine.
const DISPATCH_ROUTINES: [(usize, DriverDispatchFn); 4] = [
    (IRP_MJ_CREATE, dispatch_create_close),
    (IRP_MJ_CLOSE, dispatch_create_close),
    (IRP_MJ_CLEANUP, dispatch_cleanup),
    (IRP_MJ_DEVICE_CONTROL, dispatch_device_control),
];
const _: () = assert!(
    IRP_MJ_CREATE < IRP_MJ_FUNCTION_COUNT
        && IRP_MJ_CLOSE < IRP_MJ_FUNCTION_COUNT
        && IRP_MJ_CLEANUP < IRP_MJ_FUNCTION_COUNT
        && IRP_MJ_DEVICE_CONTROL < IRP_MJ_FUNCTION_COUNT
);

/// `DRIVER_OBJECT` (wdm.h), all of it: the fields up to `DriverUnload`,
/// then the `MajorFunction` dispatch table. Only ever used behind the
/// pointer the I/O manager passes.
#[repr(C)]
pub struct DriverObject {
    type_: i16,
    size: i16,
    device_object: *mut c_void,
    flags: u32,
    driver_start: *mut c_void,
    driver_size: u32,
    driver_section: *mut c_void,
    driver_extension: *mut c_void,
    driver_name: UnicodeString,
    hardware_database: *mut UnicodeString,
    fast_io_dispatch: *mut c_void,
    driver_init: *mut c_void,
    driver_start_io: *mut c_void,
    driver_unload: Option<DriverUnloadFn>,
    major_function: [Option<DriverDispatchFn>; IRP_MJ_FUNCTION_COUNT],
}

// x64 offsets and size of the public DRIVER_OBJECT definition (Microsoft's
// wdm.h as documented on the `DRIVER_OBJECT` DDI page; checked with
// clang -target x86_64-pc-windows-msvc against mingw-w64's ddk/wdm.h,
// where sizeof is 0x150). Same on every 64-bit Windows target.
#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(offset_of!(DriverObject, device_object) == 0x08);
    assert!(offset_of!(DriverObject, driver_extension) == 0x30);
    assert!(offset_of!(DriverObject, driver_name) == 0x38);
    assert!(offset_of!(DriverObject, driver_unload) == 0x68);
    assert!(offset_of!(DriverObject, major_function) == 0x70);
    assert!(size_of::<DriverObject>() == 0x150);
};

/// `IO_STATUS_BLOCK.Status`, which shares its storage with `Pointer`.
#[repr(C)]
union IoStatusValue {
    status: NTSTATUS,
    pointer: *mut c_void,
}

/// `IO_STATUS_BLOCK`.
#[repr(C)]
struct IoStatusBlock {
    value: IoStatusValue,
    information: usize,
}

/// The leading fields of `IRP` (wdm.h), up to and including
/// `Tail.Overlay.CurrentStackLocation`. Unions are declared as the member
/// this file uses, padded to the union's size: `AssociatedIrp` as
/// `SystemBuffer`, `Tail.Overlay`'s first union as `DriverContext`. Only
/// ever used behind the pointer the I/O manager passes.
#[repr(C)]
struct Irp {
    type_: i16,
    size: u16,
    mdl_address: *mut c_void,
    flags: u32,
    /// `AssociatedIrp.SystemBuffer`: METHOD_BUFFERED's kernel copy of the
    /// input, and where the output goes.
    system_buffer: *mut c_void,
    thread_list_entry: [*mut c_void; 2],
    io_status: IoStatusBlock,
    requestor_mode: i8,
    pending_returned: u8,
    stack_count: i8,
    current_location: i8,
    cancel: u8,
    cancel_irql: u8,
    apc_environment: i8,
    allocation_flags: u8,
    user_iosb: *mut c_void,
    user_event: *mut c_void,
    overlay: [*mut c_void; 2],
    cancel_routine: *mut c_void,
    user_buffer: *mut c_void,
    driver_context: [*mut c_void; 4],
    thread: *mut c_void,
    auxiliary_buffer: *mut c_void,
    list_entry: [*mut c_void; 2],
    /// `Tail.Overlay.CurrentStackLocation`: what `IoGetCurrentIrpStackLocation`
    /// returns.
    current_stack_location: *mut IoStackLocation,
}

/// A `ULONG` that wdm.h declares `POINTER_ALIGNMENT`: aligned, and so
/// padded, to a pointer's size on 64-bit targets.
#[cfg_attr(target_pointer_width = "64", repr(C, align(8)))]
#[cfg_attr(not(target_pointer_width = "64"), repr(C))]
#[derive(Clone, Copy)]
struct PointerAlignedU32(u32);

/// `IO_STACK_LOCATION.Parameters.DeviceIoControl` (the union's only member
/// read here, and only for IRP_MJ_DEVICE_CONTROL).
#[repr(C)]
struct DeviceIoControlParameters {
    output_buffer_length: PointerAlignedU32,
    input_buffer_length: PointerAlignedU32,
    io_control_code: PointerAlignedU32,
    type3_input_buffer: *mut c_void,
}

/// The leading fields of `IO_STACK_LOCATION` (wdm.h), up to and including
/// `FileObject`.
#[repr(C)]
struct IoStackLocation {
    major_function: u8,
    minor_function: u8,
    flags: u8,
    control: u8,
    parameters: DeviceIoControlParameters,
    device_object: *mut c_void,
    file_object: *mut c_void,
}

// x64 offsets of the public IRP and IO_STACK_LOCATION definitions
// (Microsoft's wdm.h as shown on the `IRP` and `IO_STACK_LOCATION` DDI
// pages; checked with clang -target x86_64-pc-windows-msvc against
// mingw-w64's ddk/wdm.h).
#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(offset_of!(Irp, system_buffer) == 0x18);
    assert!(offset_of!(Irp, io_status) == 0x30);
    assert!(offset_of!(Irp, io_status) + offset_of!(IoStatusBlock, information) == 0x38);
    assert!(offset_of!(Irp, user_iosb) == 0x48);
    assert!(offset_of!(Irp, user_buffer) == 0x70);
    assert!(offset_of!(Irp, driver_context) == 0x78);
    assert!(offset_of!(Irp, current_stack_location) == 0xB8);
    assert!(offset_of!(IoStackLocation, major_function) == 0x00);
    assert!(
        offset_of!(IoStackLocation, parameters) + offset_of!(DeviceIoControlParameters, output_buffer_length) == 0x08
    );
    assert!(
        offset_of!(IoStackLocation, parameters) + offset_of!(DeviceIoControlParameters, input_buffer_length) == 0x10
    );
    assert!(offset_of!(IoStackLocation, parameters) + offset_of!(DeviceIoControlParameters, io_control_code) == 0x18);
    assert!(offset_of!(IoStackLocation, device_object) == 0x28);
    assert!(offset_of!(IoStackLocation, file_object) == 0x30);
};

/// `METHOD_BUFFERED`, in the low two bits of an I/O control code.
const METHOD_BUFFERED: u32 = 0;
/// The transfer-method bits of an I/O control code.
const METHOD_MASK: u32 = 0x3;
/// `IO_NO_INCREMENT`: no priority boost for the requester.
const IO_NO_INCREMENT: i8 = 0;
/// `STATUS_INTERNAL_ERROR`.
const STATUS_INTERNAL_ERROR: NTSTATUS = 0xC000_00E5_u32 as i32;

/// `FILE_DEVICE_NETWORK`.
const FILE_DEVICE_NETWORK: u32 = 0x12;
/// `FILE_DEVICE_SECURE_OPEN`: the device's ACL also guards its namespace.
const FILE_DEVICE_SECURE_OPEN: u32 = 0x100;
/// `FALSE` as a `BOOLEAN`: not an exclusive device.
const NOT_EXCLUSIVE: u8 = 0;

/// The device's NT name, NUL-terminated UTF-16.
const DEVICE_NAME: &[u16] = crate::wide!(r"\Device\WfpCallout");
/// `DEVICE_NAME`'s `MaximumLength` (bytes, with the NUL) and `Length`
/// (bytes, without it); the assertion keeps both within a `USHORT`.
const DEVICE_NAME_MAX_BYTES: u16 = {
    assert!(DEVICE_NAME.len() * 2 <= u16::MAX as usize);
    (DEVICE_NAME.len() * 2) as u16
};
const DEVICE_NAME_BYTES: u16 = DEVICE_NAME_MAX_BYTES - 2;

/// The device object `DriverEntry` created, for the unload routine.
static DEVICE: AtomicPtr<c_void> = AtomicPtr::new(ptr::null_mut());

// `+verbatim`: the DLL name goes into the import table as written. Without
// it rustc appends ".dll", and the image would import from
// "ntoskrnl.exe.dll", which the kernel's loader cannot resolve.
#[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
unsafe extern "system" {
    /// Creates a device object (PASSIVE_LEVEL); `*DeviceObject` is set on success.
    fn IoCreateDevice(
        DriverObject: *mut DriverObject,
        DeviceExtensionSize: u32,
        DeviceName: *const UnicodeString,
        DeviceType: u32,
        DeviceCharacteristics: u32,
        Exclusive: u8,
        DeviceObject: *mut *mut c_void,
    ) -> NTSTATUS;
    /// Deletes a device object created by `IoCreateDevice`.
    fn IoDeleteDevice(DeviceObject: *mut c_void);
    /// Completes an IRP (`IoCompleteRequest` is a macro for it); the IRP
    /// belongs to the I/O manager again once it returns. IRQL <= DISPATCH.
    /// FASTCALL in wdm.h, which is the one x64 convention (`system`); a
    /// 32-bit x86 build would need `fastcall` here.
    fn IofCompleteRequest(Irp: *mut Irp, PriorityBoost: i8);
}

// The C memory functions that LLVM emits calls to (struct copies, zeroing,
// `copy_from_slice`). compiler-builtins does not define them for MSVC
// targets, where the C runtime is expected to; for a kernel driver that is
// ntoskrnl.exe, which exports all four (the WDK's ntoskrnl.lib resolves
// them for C drivers). Declaring them here makes rustc put them in the
// raw-dylib import library it generates, so the image imports them from
// the kernel rather than carrying compiler-builtins' copies
// (`-Zbuild-std-features=compiler-builtins-mem`), and the link needs no
// import library. Nothing in Rust calls them by name.
#[allow(dead_code, reason = "called by LLVM-generated code, never by name")]
#[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
unsafe extern "C" {
    fn memcpy(dest: *mut c_void, src: *const c_void, count: usize) -> *mut c_void;
    fn memmove(dest: *mut c_void, src: *const c_void, count: usize) -> *mut c_void;
    fn memset(dest: *mut c_void, c: i32, count: usize) -> *mut c_void;
    fn memcmp(lhs: *const c_void, rhs: *const c_void, count: usize) -> i32;
}

/// The image's entry point (`/ENTRY:DriverEntry`), called by the I/O
/// manager at PASSIVE_LEVEL. Returns `STATUS_SUCCESS`, or the failure status
/// of `IoCreateDevice` or `lifecycle::initialize`, in which case nothing
/// created here is left behind.
///
/// # Safety
///
/// Called only by the I/O manager (or a loader acting as one), once, with
/// a valid, writable `DRIVER_OBJECT`.
#[allow(non_snake_case)]
#[unsafe(no_mangle)]
pub unsafe extern "system" fn DriverEntry(driver: *mut DriverObject, _registry_path: *const c_void) -> NTSTATUS {
    let name = UnicodeString {
        length: DEVICE_NAME_BYTES,
        maximum_length: DEVICE_NAME_MAX_BYTES,
        buffer: DEVICE_NAME.as_ptr(),
    };
    let mut device: *mut c_void = ptr::null_mut();
    // SAFETY: `driver` is the I/O manager's driver object (caller contract);
    // `name` and `device` are valid for the call, and the I/O manager copies
    // the name. We are at PASSIVE_LEVEL.
    let status = unsafe {
        IoCreateDevice(driver, 0, &name, FILE_DEVICE_NETWORK, FILE_DEVICE_SECURE_OPEN, NOT_EXCLUSIVE, &mut device)
    };
    if !NtStatus::from_raw(status).is_success() {
        return status;
    }
    DEVICE.store(device, Ordering::Release);

    if let Err(status) = crate::lifecycle::initialize(device) {
        // `initialize` undid its own work: no callout references the device.
        DEVICE.store(ptr::null_mut(), Ordering::Release);
        // SAFETY: `device` came from the successful IoCreateDevice above and
        // nothing else holds it.
        unsafe { IoDeleteDevice(device) };
        return status.raw();
    }

    // SAFETY: `driver` is valid and writable during DriverEntry (caller
    // contract), and no other reference to it exists here (IoCreateDevice,
    // which also wrote to it, has returned).
    let driver = unsafe { &mut *driver };
    for (major, routine) in DISPATCH_ROUTINES {
        if let Some(slot) = driver.major_function.get_mut(major) {
            *slot = Some(routine);
        }
    }
    driver.driver_unload = Some(driver_unload);
    NtStatus::SUCCESS.raw()
}

/// IRP_MJ_CREATE and IRP_MJ_CLOSE, at PASSIVE_LEVEL: opening and closing a
/// handle always succeed (the device's security descriptor has already
/// decided who may open it).
///
/// # Safety
///
/// Called only by the I/O manager, with an IRP for our device that is ours
/// until completed.
unsafe extern "system" fn dispatch_create_close(_device: *mut c_void, irp: *mut Irp) -> NTSTATUS {
    // SAFETY: the IRP is ours and not yet completed (caller contract).
    unsafe { complete(irp, NtStatus::SUCCESS, 0) }
}

/// IRP_MJ_CLEANUP, at PASSIVE_LEVEL: the last handle to a file object is
/// closing. If it was an agent's, it is detached (the last agent's going
/// gives every pending request its default verdict).
///
/// # Safety
///
/// As for [`dispatch_create_close`].
unsafe extern "system" fn dispatch_cleanup(_device: *mut c_void, irp: *mut Irp) -> NTSTATUS {
    // SAFETY: the IRP is ours and not yet completed (caller contract).
    let file = unsafe { current_stack_location(irp) }.map_or(0, |location| location.file_object as u64);
    crate::control::file_cleanup(file);
    // SAFETY: the IRP is ours and not yet completed (caller contract).
    unsafe { complete(irp, NtStatus::SUCCESS, 0) }
}

/// IRP_MJ_DEVICE_CONTROL, at PASSIVE_LEVEL: answers the control IOCTLs in
/// portable code and completes the IRP. "Get request" with nothing queued
/// completes with `STATUS_NO_MORE_ENTRIES` (see the module documentation).
///
/// # Safety
///
/// As for [`dispatch_create_close`].
unsafe extern "system" fn dispatch_device_control(_device: *mut c_void, irp: *mut Irp) -> NTSTATUS {
    // SAFETY: the IRP is ours and not yet completed (caller contract); its
    // buffers are not used after this call returns.
    let (status, written) = match unsafe { answer_device_control(irp) } {
        Ok(written) => (NtStatus::SUCCESS, written),
        Err(status) => (status, 0),
    };
    // SAFETY: the IRP is ours and not yet completed; nothing refers to its
    // buffers any more.
    unsafe { complete(irp, status, written) }
}

/// Moves one METHOD_BUFFERED IOCTL's buffers through the portable control
/// code. Returns the number of output bytes written (never more than the
/// output length), or the status to complete with.
///
/// # Safety
///
/// `irp` is an IRP_MJ_DEVICE_CONTROL IRP for our device, ours and not yet
/// completed; it is not completed before this function returns.
unsafe fn answer_device_control(irp: *mut Irp) -> Result<usize, NtStatus> {
    // SAFETY: the IRP is ours and not yet completed (this function's contract).
    let location = unsafe { current_stack_location(irp) }.ok_or(NtStatus::INVALID_PARAMETER)?;
    let parameters = &location.parameters;
    let code = parameters.io_control_code.0;
    if code & METHOD_MASK != METHOD_BUFFERED {
        return Err(NtStatus::INVALID_DEVICE_REQUEST);
    }
    let file = location.file_object as u64;
    let input_length = parameters.input_buffer_length.0 as usize;
    let output_length = parameters.output_buffer_length.0 as usize;
    // SAFETY: the IRP is ours and not yet completed (this function's contract).
    let system_buffer = unsafe { (*irp).system_buffer }.cast::<u8>();
    if system_buffer.is_null() && (input_length != 0 || output_length != 0) {
        return Err(NtStatus::INVALID_PARAMETER);
    }

    // The input is copied first: with METHOD_BUFFERED the input and the
    // output are one system buffer, which is then cleared for the output.
    let mut input_copy = [0u8; crate::control::MAX_INPUT_LEN];
    let input = input_copy.get_mut(..input_length).ok_or(NtStatus::INVALID_BUFFER_SIZE)?;
    if !input.is_empty() {
        // SAFETY: for METHOD_BUFFERED the I/O manager's system buffer holds
        // the caller's `input_length` input bytes until the IRP completes.
        let source = unsafe { core::slice::from_raw_parts(system_buffer.cast_const(), input_length) };
        input.copy_from_slice(source);
    }
    let input: &[u8] = input;
    let output: &mut [u8] = if output_length == 0 {
        &mut []
    } else {
        // SAFETY: the system buffer has room for `output_length` bytes (it
        // is as long as the longer of the two buffers) until the IRP
        // completes; zeroed so nothing but our reply reaches the caller.
        unsafe { ptr::write_bytes(system_buffer, 0, output_length) };
        // SAFETY: the same bytes, now initialized; the input slice over them
        // is gone, so nothing else refers to them until completion.
        unsafe { core::slice::from_raw_parts_mut(system_buffer, output_length) }
    };

    let written = if code == crate::control::GET_REQUEST {
        // No parking here: with nothing queued the agent hears so at once.
        crate::control::agent_get_request(file, input, output)?.ok_or(NtStatus::NO_MORE_ENTRIES)?
    } else {
        crate::control::dispatch_ioctl(code, input, output)?
    };
    if written > output_length {
        return Err(NtStatus::from_raw(STATUS_INTERNAL_ERROR));
    }
    Ok(written)
}

/// The IRP's current stack location (`IoGetCurrentIrpStackLocation`).
///
/// # Safety
///
/// `irp` is an IRP the I/O manager handed to one of our dispatch routines,
/// not yet completed; the location is not used after it is completed.
unsafe fn current_stack_location<'irp>(irp: *const Irp) -> Option<&'irp IoStackLocation> {
    // SAFETY: the IRP is valid until completed (this function's contract).
    let location = unsafe { (*irp).current_stack_location };
    // SAFETY: the I/O manager points an IRP it dispatches to us at our
    // valid stack location, which lives as long as the IRP.
    unsafe { location.cast_const().as_ref() }
}

/// Sets the IRP's `IoStatus` and completes it; returns the status for the
/// dispatch routine to return (never `STATUS_PENDING`).
///
/// # Safety
///
/// `irp` is an IRP the I/O manager handed to one of our dispatch routines,
/// not yet completed, and nothing refers to it or its buffers afterwards.
unsafe fn complete(irp: *mut Irp, status: NtStatus, information: usize) -> NTSTATUS {
    // SAFETY: the IRP is ours until IofCompleteRequest (this function's
    // contract), and this is the only reference to its IoStatus.
    let io_status = unsafe { &mut (*irp).io_status };
    io_status.value.status = status.raw();
    io_status.information = information;
    // SAFETY: completed exactly once, here, at PASSIVE_LEVEL; not touched
    // afterwards.
    unsafe { IofCompleteRequest(irp, IO_NO_INCREMENT) };
    status.raw()
}

/// `DriverUnload`, at PASSIVE_LEVEL: the portable unload (callouts
/// unregistered, management objects deleted, contexts freed), then the
/// device that the callouts were registered with.
///
/// # Safety
///
/// Called only by the I/O manager, after a successful `DriverEntry`.
unsafe extern "system" fn driver_unload(_driver: *mut DriverObject) {
    crate::lifecycle::unload();
    let device = DEVICE.swap(ptr::null_mut(), Ordering::AcqRel);
    if !device.is_null() {
        // SAFETY: `device` came from IoCreateDevice in DriverEntry, and the
        // swap above makes this its only deletion.
        unsafe { IoDeleteDevice(device) };
    }
}

/// The panic handler: a panic in kernel mode stops the system, as
/// wdk-panic's does. Test builds get std's handler instead.
#[cfg(not(test))]
mod panic {
    /// Bugcheck code of a Rust panic, the one wdk-panic uses: 'RPNC'.
    const RUST_PANIC_BUGCHECK: u32 = 0x5250_4E43;

    // `+verbatim`: see the import block above.
    #[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
    unsafe extern "system" {
        /// Stops the system with a bugcheck; never returns.
        fn KeBugCheckEx(BugCheckCode: u32, P1: usize, P2: usize, P3: usize, P4: usize);
    }

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
        // SAFETY: KeBugCheckEx may be called at any IRQL and takes no
        // pointers.
        unsafe { KeBugCheckEx(RUST_PANIC_BUGCHECK, 0, 0, 0, 0) };
        // KeBugCheckEx does not return; the loop gives the `!` without
        // relying on the foreign declaration.
        loop {
            core::hint::spin_loop();
        }
    }
}
