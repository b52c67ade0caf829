//! Plain WDM entry point, for a Windows build without the KMDF glue
//! (feature `kmdf` off): the PE image the Windows-target cross-check links
//! on any host, and that the kernel-emulator tests load and run.
//!
//! `DriverEntry` creates the device `\Device\WfpCallout` (the device object
//! `FwpsCalloutRegister` needs), hands it to the portable
//! `lifecycle::initialize`, and sets `DriverObject->DriverUnload`; the unload
//! routine runs the portable `lifecycle::unload` and deletes the device. It
//! dispatches no IRPs: the control device's IOCTLs stay with the KMDF glue.
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

/// The leading fields of `DRIVER_OBJECT` (wdm.h), up to and including
/// `DriverUnload`. Only ever used behind the pointer the I/O manager passes;
/// the `MajorFunction` table that follows is not declared because nothing
/// here touches it.
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
}

// x64 offsets of the public DRIVER_OBJECT definition (MajorFunction follows
// at 0x70). Same on every 64-bit Windows target.
#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(offset_of!(DriverObject, device_object) == 0x08);
    assert!(offset_of!(DriverObject, driver_extension) == 0x30);
    assert!(offset_of!(DriverObject, driver_name) == 0x38);
    assert!(offset_of!(DriverObject, driver_unload) == 0x68);
};

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
    // contract); `DriverUnload` is at the offset asserted above.
    unsafe { (*driver).driver_unload = Some(driver_unload) };
    NtStatus::SUCCESS.raw()
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
