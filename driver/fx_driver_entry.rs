//! A stand-in for the WDK's KMDF loader stub (`WdfDriverEntry.lib`), for the
//! image the cross-check links without the WDK and the emulator runs. It
//! plays the stub's documented part and nothing more: `FxDriverEntry` binds
//! to the framework through WDFLDR's `WdfVersionBind` (which fills in the
//! function table and the driver globals `wdf-types` calls through), calls
//! `DriverEntry`, and chains an unload routine that runs the framework's
//! (which calls `EvtDriverUnload`) and then `WdfVersionUnbind`. The Windows
//! build links Microsoft's stub instead; nothing else differs.
//!
//! `WDF_BIND_INFO` is the loader's private structure (fxldr.h in
//! microsoft/Windows-Driver-Frameworks); its x64 layout is asserted below.
#![allow(unsafe_code)]

use core::ffi::c_void;
use core::mem::{offset_of, size_of};
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};
use wdf_types::{NTSTATUS, PCUNICODE_STRING, PDRIVER_OBJECT, PWDF_DRIVER_GLOBALS, WDF_FUNCTION_TABLE_ENTRIES, WDFFUNC};

/// The function table pointer the framework sets at bind time.
#[unsafe(no_mangle)]
pub static mut WdfFunctions_01033: *const WDFFUNC = ptr::null();

/// The driver globals the framework sets at bind time.
#[unsafe(no_mangle)]
pub static mut WdfDriverGlobals: PWDF_DRIVER_GLOBALS = ptr::null_mut();

/// `WDF_BIND_INFO` (fxldr.h): what the driver asks WDFLDR for.
#[repr(C)]
struct BindInfo {
    size: u32,
    component: *const u16,
    version: [u32; 3],
    function_count: u32,
    function_table: *mut *const WDFFUNC,
    module: *mut c_void,
}

const _: () = assert!(size_of::<BindInfo>() == 48);
const _: () = assert!(offset_of!(BindInfo, version) == 16 && offset_of!(BindInfo, function_count) == 28);
const _: () = assert!(offset_of!(BindInfo, function_table) == 32 && offset_of!(BindInfo, module) == 40);

/// `DRIVER_OBJECT.DriverUnload` (wdf-types/LAYOUTS.md).
const DRIVER_UNLOAD_OFFSET: usize = 104;

/// "KmdfLibrary", NUL-terminated: the component WDFLDR binds.
const COMPONENT: &[u16] = crate::wide!("KmdfLibrary");

static mut BIND_INFO: BindInfo = BindInfo {
    size: size_of::<BindInfo>() as u32,
    component: COMPONENT.as_ptr(),
    version: [1, 33, 0],
    function_count: WDF_FUNCTION_TABLE_ENTRIES as u32,
    function_table: ptr::null_mut(),
    module: ptr::null_mut(),
};

type DriverUnload = unsafe extern "system" fn(PDRIVER_OBJECT);

/// The framework's unload routine, which `DriverEntry` left in the driver object.
static FRAMEWORK_UNLOAD: AtomicPtr<c_void> = AtomicPtr::new(ptr::null_mut());
static REGISTRY_PATH: AtomicPtr<c_void> = AtomicPtr::new(ptr::null_mut());

#[link(name = "wdfldr.sys", kind = "raw-dylib", modifiers = "+verbatim")]
unsafe extern "system" {
    fn WdfVersionBind(
        driver: PDRIVER_OBJECT,
        registry_path: PCUNICODE_STRING,
        bind_info: *mut BindInfo,
        globals: *mut PWDF_DRIVER_GLOBALS,
    ) -> NTSTATUS;
    fn WdfVersionUnbind(
        registry_path: PCUNICODE_STRING,
        bind_info: *mut BindInfo,
        globals: PWDF_DRIVER_GLOBALS,
    ) -> NTSTATUS;
}

/// The image's entry point (`/ENTRY:FxDriverEntry`).
///
/// # Safety
///
/// Called only by the I/O manager, once, at PASSIVE_LEVEL, with a valid,
/// writable `DRIVER_OBJECT` and the service's registry path.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn FxDriverEntry(driver: PDRIVER_OBJECT, registry_path: PCUNICODE_STRING) -> NTSTATUS {
    let (bind_info, table, globals_out) = (&raw mut BIND_INFO, &raw mut WdfFunctions_01033, &raw mut WdfDriverGlobals);
    // SAFETY: nothing else runs before the entry point: the bind info's
    // table field is set once, to the table pointer's own address.
    unsafe { (*bind_info).function_table = table };
    // SAFETY: the I/O manager's arguments; the bind info and globals are
    // this image's statics, written by WDFLDR before it returns.
    let status = unsafe { WdfVersionBind(driver, registry_path, bind_info, globals_out) };
    if status < 0 {
        return status;
    }
    // SAFETY: bound: the framework's table is in place, as DriverEntry needs.
    let status = unsafe { crate::kmdf::driver_entry(driver.cast(), registry_path.cast()) };
    // SAFETY: the globals were set by the bind above and are not written again.
    let globals = unsafe { WdfDriverGlobals };
    if status < 0 {
        // SAFETY: the bind succeeded and nothing of the framework is in use.
        let _ = unsafe { WdfVersionUnbind(registry_path, bind_info, globals) };
        return status;
    }
    REGISTRY_PATH.store(registry_path.cast_mut().cast(), Ordering::Release);
    let unload = driver.cast::<u8>().wrapping_add(DRIVER_UNLOAD_OFFSET).cast::<*mut c_void>();
    // SAFETY: `DriverUnload` of the I/O manager's driver object, at its
    // asserted offset; PASSIVE_LEVEL, nothing else touches it during entry.
    FRAMEWORK_UNLOAD.store(unsafe { unload.read() }, Ordering::Release);
    let ours: DriverUnload = fx_driver_unload;
    // SAFETY: as above; the routine stays in this image until it unloads.
    unsafe { unload.write(ours as *mut c_void) };
    status
}

/// The driver's unload routine: the framework's (EvtDriverUnload, then the
/// framework's objects go), then the unbind.
unsafe extern "system" fn fx_driver_unload(driver: PDRIVER_OBJECT) {
    let framework = FRAMEWORK_UNLOAD.load(Ordering::Acquire);
    if !framework.is_null() {
        // SAFETY: the routine the framework put in the driver object.
        let framework: DriverUnload = unsafe { core::mem::transmute::<*mut c_void, DriverUnload>(framework) };
        // SAFETY: the I/O manager's driver object, as it passed it.
        unsafe { framework(driver) };
    }
    let registry_path: PCUNICODE_STRING = REGISTRY_PATH.load(Ordering::Acquire).cast_const().cast();
    // SAFETY: bound at entry; the globals are not written after the bind.
    let globals = unsafe { WdfDriverGlobals };
    let bind_info = &raw mut BIND_INFO;
    // SAFETY: the bind info and registry path of the successful bind.
    let _ = unsafe { WdfVersionUnbind(registry_path, bind_info, globals) };
}
