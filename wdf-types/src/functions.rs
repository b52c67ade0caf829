//! The WDF methods the glue calls: each one's index in the KMDF 1.33
//! function table (`LAYOUTS.md`) and its signature (the headers'
//! `PFN_WDF...` typedefs), and [`call_unsafe_wdf_function_binding!`], which
//! calls one through the table the framework filled in at bind time, the
//! way wdk-sys's macro of the same name does.

use crate::types::*;

/// One function-table entry (`WDFFUNC`).
pub type WDFFUNC = Option<unsafe extern "C" fn()>;

/// Entries in the KMDF 1.33 function table (`WdfFunctionTableNumEntries`).
pub const WDF_FUNCTION_TABLE_ENTRIES: usize = 458;

unsafe extern "C" {
    /// The function table, set by the framework's loader stub when it binds
    /// (`WdfVersionBind`) before `DriverEntry` runs.
    pub static mut WdfFunctions_01033: *const WDFFUNC;
    /// The framework's globals for this driver, set at bind time too.
    pub static mut WdfDriverGlobals: PWDF_DRIVER_GLOBALS;
}

/// A NULL entry for a method the driver calls. Unreachable in the image
/// the cross-check builds: its loader stub refuses to run `DriverEntry`
/// unless every entry in [`USED_METHODS`] is bound; with the WDK's stub the
/// framework fails the bind instead. Were it reached, nothing sensible
/// could follow, so it stops the driver (the panic handler bugchecks),
/// where wdk-sys would too.
#[cold]
pub fn missing_function(index: usize) -> ! {
    panic!("WDF function table entry {index} is NULL")
}

/// Calls a WDF method through the function table:
/// `call_unsafe_wdf_function_binding!(WdfObjectDelete, object)`.
///
/// # Safety
///
/// Only after the framework bound the driver (from `DriverEntry` on), with
/// arguments that meet the method's documented contract.
#[macro_export]
macro_rules! call_unsafe_wdf_function_binding {
    ($name:ident $(, $argument:expr)* $(,)?) => {{
        let table = $crate::WdfFunctions_01033;
        let entry = *table.add($crate::$name::INDEX);
        match core::mem::transmute::<$crate::WDFFUNC, Option<$crate::$name::Pfn>>(entry) {
            Some(function) => function($crate::WdfDriverGlobals $(, $argument)*),
            None => $crate::missing_function($crate::$name::INDEX),
        }
    }};
}

macro_rules! methods {
    ($($name:ident = $index:literal: fn($($parameter:ty),*) $(-> $ret:ty)?;)*) => {
        /// The table index of every method declared here: the loader stub
        /// checks each is bound before `DriverEntry` runs.
        pub const USED_METHODS: &[usize] = &[$($index),*];
        $(
            #[doc = concat!("`", stringify!($name), "`.")]
            pub mod $name {
                #[allow(unused_imports)]
                use super::*;
                /// Index in the function table.
                pub const INDEX: usize = $index;
                /// The method's signature (`PFN_` typedef).
                pub type Pfn = unsafe extern "C" fn(PWDF_DRIVER_GLOBALS $(, $parameter)*) $(-> $ret)?;
                const _: () = assert!(INDEX < super::WDF_FUNCTION_TABLE_ENTRIES);
            }
        )*
    };
}

methods! {
    WdfControlDeviceInitAllocate = 25: fn(WDFDRIVER, PCUNICODE_STRING) -> PWDFDEVICE_INIT;
    WdfControlFinishInitializing = 27: fn(WDFDEVICE);
    WdfDeviceWdmGetDeviceObject = 31: fn(WDFDEVICE) -> PDEVICE_OBJECT;
    WdfDeviceInitFree = 54: fn(PWDFDEVICE_INIT);
    WdfDeviceInitSetDeviceType = 66: fn(PWDFDEVICE_INIT, DEVICE_TYPE);
    WdfDeviceInitAssignName = 67: fn(PWDFDEVICE_INIT, PCUNICODE_STRING) -> NTSTATUS;
    WdfDeviceInitSetCharacteristics = 70: fn(PWDFDEVICE_INIT, ULONG, BOOLEAN);
    WdfDeviceInitSetFileObjectConfig = 71: fn(PWDFDEVICE_INIT, PWDF_FILEOBJECT_CONFIG, PWDF_OBJECT_ATTRIBUTES);
    WdfDeviceCreate = 75: fn(*mut PWDFDEVICE_INIT, PWDF_OBJECT_ATTRIBUTES, *mut WDFDEVICE) -> NTSTATUS;
    WdfDeviceCreateSymbolicLink = 80: fn(WDFDEVICE, PCUNICODE_STRING) -> NTSTATUS;
    WdfDriverCreate = 116: fn(PDRIVER_OBJECT, PCUNICODE_STRING, PWDF_OBJECT_ATTRIBUTES, PWDF_DRIVER_CONFIG, *mut WDFDRIVER) -> NTSTATUS;
    WdfIoQueueCreate = 152: fn(WDFDEVICE, PWDF_IO_QUEUE_CONFIG, PWDF_OBJECT_ATTRIBUTES, *mut WDFQUEUE) -> NTSTATUS;
    WdfIoQueueRetrieveNextRequest = 158: fn(WDFQUEUE, *mut WDFREQUEST) -> NTSTATUS;
    WdfIoQueueRetrieveRequestByFileObject = 159: fn(WDFQUEUE, WDFFILEOBJECT, *mut WDFREQUEST) -> NTSTATUS;
    WdfObjectDelete = 208: fn(WDFOBJECT);
    WdfRequestCompleteWithInformation = 265: fn(WDFREQUEST, NTSTATUS, ULONG_PTR);
    WdfRequestRetrieveInputBuffer = 269: fn(WDFREQUEST, usize, *mut PVOID, *mut usize) -> NTSTATUS;
    WdfRequestRetrieveOutputBuffer = 270: fn(WDFREQUEST, usize, *mut PVOID, *mut usize) -> NTSTATUS;
    WdfRequestGetFileObject = 277: fn(WDFREQUEST) -> WDFFILEOBJECT;
    WdfRequestForwardToIoQueue = 281: fn(WDFREQUEST, WDFQUEUE) -> NTSTATUS;
    WdfRequestRequeue = 283: fn(WDFREQUEST) -> NTSTATUS;
    WdfTimerCreate = 318: fn(PWDF_TIMER_CONFIG, PWDF_OBJECT_ATTRIBUTES, *mut WDFTIMER) -> NTSTATUS;
    WdfTimerStart = 319: fn(WDFTIMER, LONGLONG) -> BOOLEAN;
    WdfTimerStop = 320: fn(WDFTIMER, BOOLEAN) -> BOOLEAN;
}
