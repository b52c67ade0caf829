//! Scalar types, handles, enumerations and structures, named as in the
//! KMDF headers (and wdk-sys).

use core::ffi::c_void;

pub type ULONG = u32;
pub type USHORT = u16;
pub type BOOLEAN = u8;
pub type NTSTATUS = i32;
pub type LONGLONG = i64;
pub type ULONG_PTR = u64;
pub type PVOID = *mut c_void;
pub type HANDLE = *mut c_void;
pub type DEVICE_TYPE = ULONG;

/// An opaque framework handle.
pub type WDFOBJECT = HANDLE;
pub type WDFDRIVER = HANDLE;
pub type WDFDEVICE = HANDLE;
pub type WDFQUEUE = HANDLE;
pub type WDFREQUEST = HANDLE;
pub type WDFFILEOBJECT = HANDLE;
pub type WDFTIMER = HANDLE;

/// Opaque: the framework's device initialization structure.
#[repr(C)]
pub struct WDFDEVICE_INIT {
    _opaque: [u8; 0],
}
pub type PWDFDEVICE_INIT = *mut WDFDEVICE_INIT;

/// Opaque here: the glue only passes the I/O manager's pointer on.
#[repr(C)]
pub struct DRIVER_OBJECT {
    _opaque: [u8; 0],
}
pub type PDRIVER_OBJECT = *mut DRIVER_OBJECT;

/// Opaque here: handed to `FwpsCalloutRegister` as it came.
#[repr(C)]
pub struct DEVICE_OBJECT {
    _opaque: [u8; 0],
}
pub type PDEVICE_OBJECT = *mut DEVICE_OBJECT;

/// Opaque: the framework's per-driver globals, passed to every method.
#[repr(C)]
pub struct WDF_DRIVER_GLOBALS {
    _opaque: [u8; 0],
}
pub type PWDF_DRIVER_GLOBALS = *mut WDF_DRIVER_GLOBALS;

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct UNICODE_STRING {
    pub Length: USHORT,
    pub MaximumLength: USHORT,
    pub Buffer: *mut u16,
}
pub type PCUNICODE_STRING = *const UNICODE_STRING;

pub const FILE_DEVICE_NETWORK: u32 = 18;
pub const FILE_DEVICE_SECURE_OPEN: u32 = 256;

/// C enumerations as wdk-sys's bindgen emits them: a module per enum.
macro_rules! c_enum {
    ($name:ident { $($variant:ident = $value:expr),* $(,)? }) => {
        pub mod $name {
            pub type Type = core::ffi::c_int;
            $(pub const $variant: Type = $value;)*
        }
    };
}

c_enum!(_WDF_DRIVER_INIT_FLAGS { WdfDriverInitNonPnpDriver = 1 });
c_enum!(_WDF_EXECUTION_LEVEL { WdfExecutionLevelInheritFromParent = 1, WdfExecutionLevelPassive = 2 });
c_enum!(_WDF_SYNCHRONIZATION_SCOPE { WdfSynchronizationScopeInheritFromParent = 1 });
c_enum!(_WDF_IO_QUEUE_DISPATCH_TYPE { WdfIoQueueDispatchSequential = 1, WdfIoQueueDispatchManual = 3 });
c_enum!(_WDF_TRI_STATE { WdfFalse = 0, WdfUseDefault = 2 });
c_enum!(_WDF_FILEOBJECT_CLASS { WdfFileObjectWdfCannotUseFsContexts = 4 });

pub type WDF_EXECUTION_LEVEL = _WDF_EXECUTION_LEVEL::Type;
pub type WDF_SYNCHRONIZATION_SCOPE = _WDF_SYNCHRONIZATION_SCOPE::Type;
pub type WDF_IO_QUEUE_DISPATCH_TYPE = _WDF_IO_QUEUE_DISPATCH_TYPE::Type;
pub type WDF_TRI_STATE = _WDF_TRI_STATE::Type;
pub type WDF_FILEOBJECT_CLASS = _WDF_FILEOBJECT_CLASS::Type;

// Event callbacks: `NTAPI`/`__cdecl` are both the one x64 convention.
pub type PFN_WDF_DRIVER_DEVICE_ADD = Option<unsafe extern "C" fn(WDFDRIVER, PWDFDEVICE_INIT) -> NTSTATUS>;
pub type PFN_WDF_DRIVER_UNLOAD = Option<unsafe extern "C" fn(WDFDRIVER)>;
pub type PFN_WDF_OBJECT_CONTEXT_CLEANUP = Option<unsafe extern "C" fn(WDFOBJECT)>;
pub type PFN_WDF_OBJECT_CONTEXT_DESTROY = Option<unsafe extern "C" fn(WDFOBJECT)>;
pub type PFN_WDF_IO_QUEUE_IO_DEFAULT = Option<unsafe extern "C" fn(WDFQUEUE, WDFREQUEST)>;
pub type PFN_WDF_IO_QUEUE_IO_READ = Option<unsafe extern "C" fn(WDFQUEUE, WDFREQUEST, usize)>;
pub type PFN_WDF_IO_QUEUE_IO_WRITE = Option<unsafe extern "C" fn(WDFQUEUE, WDFREQUEST, usize)>;
pub type PFN_WDF_IO_QUEUE_IO_DEVICE_CONTROL = Option<unsafe extern "C" fn(WDFQUEUE, WDFREQUEST, usize, usize, ULONG)>;
pub type PFN_WDF_IO_QUEUE_IO_INTERNAL_DEVICE_CONTROL =
    Option<unsafe extern "C" fn(WDFQUEUE, WDFREQUEST, usize, usize, ULONG)>;
pub type PFN_WDF_IO_QUEUE_IO_STOP = Option<unsafe extern "C" fn(WDFQUEUE, WDFREQUEST, ULONG)>;
pub type PFN_WDF_IO_QUEUE_IO_RESUME = Option<unsafe extern "C" fn(WDFQUEUE, WDFREQUEST)>;
pub type PFN_WDF_IO_QUEUE_IO_CANCELED_ON_QUEUE = Option<unsafe extern "C" fn(WDFQUEUE, WDFREQUEST)>;
pub type PFN_WDF_DEVICE_FILE_CREATE = Option<unsafe extern "C" fn(WDFDEVICE, WDFREQUEST, WDFFILEOBJECT)>;
pub type PFN_WDF_FILE_CLOSE = Option<unsafe extern "C" fn(WDFFILEOBJECT)>;
pub type PFN_WDF_FILE_CLEANUP = Option<unsafe extern "C" fn(WDFFILEOBJECT)>;
pub type PFN_WDF_TIMER = Option<unsafe extern "C" fn(WDFTIMER)>;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct WDF_DRIVER_CONFIG {
    pub Size: ULONG,
    pub EvtDriverDeviceAdd: PFN_WDF_DRIVER_DEVICE_ADD,
    pub EvtDriverUnload: PFN_WDF_DRIVER_UNLOAD,
    pub DriverInitFlags: ULONG,
    pub DriverPoolTag: ULONG,
}
pub type PWDF_DRIVER_CONFIG = *mut WDF_DRIVER_CONFIG;

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WDF_OBJECT_ATTRIBUTES {
    pub Size: ULONG,
    pub EvtCleanupCallback: PFN_WDF_OBJECT_CONTEXT_CLEANUP,
    pub EvtDestroyCallback: PFN_WDF_OBJECT_CONTEXT_DESTROY,
    pub ExecutionLevel: WDF_EXECUTION_LEVEL,
    pub SynchronizationScope: WDF_SYNCHRONIZATION_SCOPE,
    pub ParentObject: WDFOBJECT,
    pub ContextSizeOverride: usize,
    pub ContextTypeInfo: *const c_void,
}
pub type PWDF_OBJECT_ATTRIBUTES = *mut WDF_OBJECT_ATTRIBUTES;

impl Default for WDF_OBJECT_ATTRIBUTES {
    /// All zero, as bindgen's `Default` is.
    fn default() -> Self {
        Self {
            Size: 0,
            EvtCleanupCallback: None,
            EvtDestroyCallback: None,
            ExecutionLevel: 0,
            SynchronizationScope: 0,
            ParentObject: core::ptr::null_mut(),
            ContextSizeOverride: 0,
            ContextTypeInfo: core::ptr::null(),
        }
    }
}

/// `WDF_NO_OBJECT_ATTRIBUTES`.
pub const WDF_NO_OBJECT_ATTRIBUTES: PWDF_OBJECT_ATTRIBUTES = core::ptr::null_mut();

/// `Settings`: the parallel-dispatch union member (unused by the glue).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct WDF_IO_QUEUE_CONFIG_SETTINGS {
    pub NumberOfPresentedRequests: ULONG,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WDF_IO_QUEUE_CONFIG {
    pub Size: ULONG,
    pub DispatchType: WDF_IO_QUEUE_DISPATCH_TYPE,
    pub PowerManaged: WDF_TRI_STATE,
    pub AllowZeroLengthRequests: BOOLEAN,
    pub DefaultQueue: BOOLEAN,
    pub EvtIoDefault: PFN_WDF_IO_QUEUE_IO_DEFAULT,
    pub EvtIoRead: PFN_WDF_IO_QUEUE_IO_READ,
    pub EvtIoWrite: PFN_WDF_IO_QUEUE_IO_WRITE,
    pub EvtIoDeviceControl: PFN_WDF_IO_QUEUE_IO_DEVICE_CONTROL,
    pub EvtIoInternalDeviceControl: PFN_WDF_IO_QUEUE_IO_INTERNAL_DEVICE_CONTROL,
    pub EvtIoStop: PFN_WDF_IO_QUEUE_IO_STOP,
    pub EvtIoResume: PFN_WDF_IO_QUEUE_IO_RESUME,
    pub EvtIoCanceledOnQueue: PFN_WDF_IO_QUEUE_IO_CANCELED_ON_QUEUE,
    pub Settings: WDF_IO_QUEUE_CONFIG_SETTINGS,
    pub Driver: WDFDRIVER,
}
pub type PWDF_IO_QUEUE_CONFIG = *mut WDF_IO_QUEUE_CONFIG;

impl Default for WDF_IO_QUEUE_CONFIG {
    /// All zero, as bindgen's `Default` is.
    fn default() -> Self {
        Self {
            Size: 0,
            DispatchType: 0,
            PowerManaged: 0,
            AllowZeroLengthRequests: 0,
            DefaultQueue: 0,
            EvtIoDefault: None,
            EvtIoRead: None,
            EvtIoWrite: None,
            EvtIoDeviceControl: None,
            EvtIoInternalDeviceControl: None,
            EvtIoStop: None,
            EvtIoResume: None,
            EvtIoCanceledOnQueue: None,
            Settings: WDF_IO_QUEUE_CONFIG_SETTINGS::default(),
            Driver: core::ptr::null_mut(),
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct WDF_FILEOBJECT_CONFIG {
    pub Size: ULONG,
    pub EvtDeviceFileCreate: PFN_WDF_DEVICE_FILE_CREATE,
    pub EvtFileClose: PFN_WDF_FILE_CLOSE,
    pub EvtFileCleanup: PFN_WDF_FILE_CLEANUP,
    pub AutoForwardCleanupClose: WDF_TRI_STATE,
    pub FileObjectClass: WDF_FILEOBJECT_CLASS,
}
pub type PWDF_FILEOBJECT_CONFIG = *mut WDF_FILEOBJECT_CONFIG;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct WDF_TIMER_CONFIG {
    pub Size: ULONG,
    pub EvtTimerFunc: PFN_WDF_TIMER,
    pub Period: ULONG,
    pub AutomaticSerialization: BOOLEAN,
    pub TolerableDelay: ULONG,
    /// `DECLSPEC_ALIGN(8)` on the next field: four bytes of padding.
    pub _alignment: u32,
    pub UseHighResolutionTimer: BOOLEAN,
}
pub type PWDF_TIMER_CONFIG = *mut WDF_TIMER_CONFIG;
