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
use wdf_types::{
    NTSTATUS, PCUNICODE_STRING, PDRIVER_OBJECT, PWDF_DRIVER_GLOBALS, UNICODE_STRING, USED_METHODS,
    WDF_FUNCTION_TABLE_ENTRIES, WDFFUNC,
};

/// `STATUS_NAME_TOO_LONG`: a registry path longer than the stub keeps.
const STATUS_NAME_TOO_LONG: NTSTATUS = 0xC000_0106_u32 as i32;
/// `STATUS_PROCEDURE_NOT_FOUND`: the bound framework lacks a method the glue calls.
const STATUS_PROCEDURE_NOT_FOUND: NTSTATUS = 0xC000_007A_u32 as i32;

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

/// The longest registry path kept (the WDK's stub keeps 260 characters too).
const REGISTRY_PATH_CHARS: usize = 260;

/// Our copy of the service's registry path: the I/O manager frees its own
/// string once the entry point returns, and unbinding needs the path again.
static mut REGISTRY_PATH_COPY: [u16; REGISTRY_PATH_CHARS] = [0; REGISTRY_PATH_CHARS];
static mut REGISTRY_PATH: UNICODE_STRING = UNICODE_STRING { Length: 0, MaximumLength: 0, Buffer: ptr::null_mut() };

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
pub unsafe extern "system" fn FxDriverEntry(driver: PDRIVER_OBJECT, original_path: PCUNICODE_STRING) -> NTSTATUS {
    // SAFETY: the I/O manager's registry path, valid during this call.
    let Some(registry_path) = (unsafe { copy_registry_path(original_path) }) else {
        return STATUS_NAME_TOO_LONG;
    };
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
    // SAFETY: a table pointer set by a successful bind, read once.
    let bound = unsafe { WdfFunctions_01033 };
    // SAFETY: NULL or the table a successful bind returned, with the
    // entry count the bind info asked for.
    if !unsafe { every_method_bound(bound) } {
        // SAFETY: the globals the successful bind set, read once.
        let globals = unsafe { WdfDriverGlobals };
        // SAFETY: the bind succeeded; nothing of the framework is in use.
        let _ = unsafe { WdfVersionUnbind(registry_path, bind_info, globals) };
        return STATUS_PROCEDURE_NOT_FOUND;
    }
    // SAFETY: bound, with every method the glue calls present, as
    // DriverEntry needs; the I/O manager's own arguments.
    let status = unsafe { crate::glue::kmdf::driver_entry(driver.cast(), original_path.cast()) };
    // SAFETY: the globals were set by the bind above and are not written again.
    let globals = unsafe { WdfDriverGlobals };
    if status < 0 {
        // SAFETY: the bind succeeded and nothing of the framework is in use.
        let _ = unsafe { WdfVersionUnbind(registry_path, bind_info, globals) };
        return status;
    }
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
    let registry_path = (&raw const REGISTRY_PATH).cast::<UNICODE_STRING>();
    // SAFETY: bound at entry; the globals are not written after the bind.
    let globals = unsafe { WdfDriverGlobals };
    let bind_info = &raw mut BIND_INFO;
    // SAFETY: the bind info and registry path of the successful bind.
    let _ = unsafe { WdfVersionUnbind(registry_path, bind_info, globals) };
}

/// Copies the I/O manager's registry path into this image's buffer and
/// returns our `UNICODE_STRING` over it, or `None` if it does not fit.
///
/// # Safety
///
/// `path` is the I/O manager's registry path, valid for the call; called
/// once, before anything else reads our copy.
unsafe fn copy_registry_path(path: PCUNICODE_STRING) -> Option<PCUNICODE_STRING> {
    // SAFETY: the I/O manager's string, valid during the entry point.
    let path = unsafe { path.read() };
    let chars = usize::from(path.Length / 2);
    if chars > REGISTRY_PATH_CHARS || (chars > 0 && path.Buffer.is_null()) {
        return None;
    }
    let copy = (&raw mut REGISTRY_PATH_COPY).cast::<u16>();
    if chars > 0 {
        // SAFETY: `chars` UTF-16 units of the caller's buffer (its Length),
        // into our buffer of REGISTRY_PATH_CHARS >= chars; they do not overlap.
        unsafe { ptr::copy_nonoverlapping(path.Buffer.cast_const(), copy, chars) };
    }
    let length = path.Length & !1;
    let ours = UNICODE_STRING { Length: length, MaximumLength: length, Buffer: copy };
    let slot = &raw mut REGISTRY_PATH;
    // SAFETY: written once, before the bind, the only reader being WDFLDR
    // and the unload routine after it.
    unsafe { slot.write(ours) };
    Some((&raw const REGISTRY_PATH).cast())
}

/// Whether the table the bind returned has every method the glue calls (a
/// NULL entry would stop the driver at its first call; refusing to load is
/// the clear failure).
///
/// # Safety
/// `table` is NULL or the function table the bind returned, at least
/// `WDF_FUNCTION_TABLE_ENTRIES` entries long.
unsafe fn every_method_bound(table: *const WDFFUNC) -> bool {
    if table.is_null() {
        return false;
    }
    USED_METHODS.iter().all(|&index| {
        if index >= WDF_FUNCTION_TABLE_ENTRIES {
            return false;
        }
        let entry = table.wrapping_add(index);
        // SAFETY: the framework's table has WDF_FUNCTION_TABLE_ENTRIES
        // entries (the count the bind asked for) and `index` is below it, so
        // `entry` is in bounds, aligned and initialized.
        unsafe { entry.read() }.is_some()
    })
}
