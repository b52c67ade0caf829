//! KMDF glue: `DriverEntry`, the framework's callbacks forwarded to
//! `control_device`, which decides everything, and [`Kmdf`], its
//! `Framework` with one WDF call per method (`wdf!` is wdk-sys's
//! `call_unsafe_wdf_function_binding!`, or wdf-types' of the same shape in
//! the cross-check: the same file either way). IRQL: DriverEntry, unload,
//! cleanup and the IOCTL queue (`WdfExecutionLevelPassive`) run at
//! PASSIVE_LEVEL, the timer and the request hook at up to DISPATCH_LEVEL.
#![allow(unsafe_code)]

use crate::control::device::{self, Framework};
use crate::platform::log::Level;
use crate::platform::status::{NtStatus, Result};
use crate::platform::wide::{Counted, counted, struct_size};
#[allow(clippy::unsafe_removed_from_name, reason = "usable only inside `unsafe` blocks all the same")]
use crate::wdf_api::call_unsafe_wdf_function_binding as wdf;
use crate::wdf_api::{
    _WDF_DRIVER_INIT_FLAGS, _WDF_EXECUTION_LEVEL, _WDF_FILEOBJECT_CLASS, _WDF_IO_QUEUE_DISPATCH_TYPE,
    _WDF_SYNCHRONIZATION_SCOPE, _WDF_TRI_STATE, BOOLEAN, FILE_DEVICE_NETWORK, FILE_DEVICE_SECURE_OPEN, NTSTATUS,
    PCUNICODE_STRING, PDRIVER_OBJECT, PVOID, PWDFDEVICE_INIT, ULONG, UNICODE_STRING, WDF_DRIVER_CONFIG,
    WDF_FILEOBJECT_CONFIG, WDF_IO_QUEUE_CONFIG, WDF_NO_OBJECT_ATTRIBUTES, WDF_OBJECT_ATTRIBUTES, WDF_TIMER_CONFIG,
    WDFDEVICE, WDFDRIVER, WDFFILEOBJECT, WDFOBJECT, WDFQUEUE, WDFREQUEST, WDFTIMER,
};
use crate::wfp::ffi::DeviceObject;
use core::ffi::c_void;
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

const DEVICE_NAME: Counted = counted(crate::wide!(r"\Device\WfpCallout"));
const SYMBOLIC_LINK: Counted = counted(crate::wide!(r"\DosDevices\WfpCallout"));
/// `SDDL_DEVOBJ_SYS_ALL_ADM_ALL` (wdmsec.h): LocalSystem and Administrators only.
const SDDL: Counted = counted(crate::wide!("D:P(A;;GA;;;SY)(A;;GA;;;BA)"));
/// How often pending requests are checked for their timeout.
const TIMEOUT_PERIOD_MS: ULONG = 100;

/// The framework objects the glue keeps (NULL until created).
static DRIVER: AtomicPtr<c_void> = AtomicPtr::new(ptr::null_mut());
static CONTROL_DEVICE: AtomicPtr<c_void> = AtomicPtr::new(ptr::null_mut());
static AGENT_QUEUE: AtomicPtr<c_void> = AtomicPtr::new(ptr::null_mut());
static TIMEOUT_TIMER: AtomicPtr<c_void> = AtomicPtr::new(ptr::null_mut());

/// The framework, as `control_device` sees it.
struct Kmdf;

/// A request the driver owns; not `Copy`: completing or parking consumes it.
struct Request(WDFREQUEST);

/// `DriverEntry`, called by the framework's loader stub once bound.
///
/// # Safety
///
/// Only the loader stub calls it: once, at PASSIVE_LEVEL, with the I/O manager's arguments.
#[unsafe(export_name = "DriverEntry")]
pub unsafe extern "system" fn driver_entry(driver: PDRIVER_OBJECT, registry_path: PCUNICODE_STRING) -> NTSTATUS {
    let mut config = WDF_DRIVER_CONFIG {
        Size: const { struct_size::<WDF_DRIVER_CONFIG>() },
        EvtDriverUnload: Some(evt_driver_unload),
        DriverInitFlags: _WDF_DRIVER_INIT_FLAGS::WdfDriverInitNonPnpDriver as ULONG,
        ..WDF_DRIVER_CONFIG::default()
    };
    let mut handle: WDFDRIVER = ptr::null_mut();
    let attributes = WDF_NO_OBJECT_ATTRIBUTES;
    // SAFETY: DriverEntry's own arguments; a complete config; the handle goes to a local.
    let status = unsafe { wdf!(WdfDriverCreate, driver, registry_path, attributes, &raw mut config, &raw mut handle) };
    let loaded = check("WdfDriverCreate", status).and_then(|()| {
        DRIVER.store(handle.cast(), Ordering::Release);
        device::load(&Kmdf, || device::pair_parked_requests(&Kmdf))
    });
    NtStatus::from_result(loaded)
}

extern "C" fn evt_driver_unload(_driver: WDFDRIVER) {
    device::unload(&Kmdf);
}
extern "C" fn evt_timer(_timer: WDFTIMER) {
    device::on_timer();
}
extern "C" fn evt_file_cleanup(file: WDFFILEOBJECT) {
    device::file_cleanup(&Kmdf, file as u64);
}
extern "C" fn evt_io_device_control(_: WDFQUEUE, request: WDFREQUEST, output: usize, input: usize, code: ULONG) {
    device::device_control(&Kmdf, Request(request), output, input, code);
}

impl Framework for Kmdf {
    type Request = Request;

    fn create_control_device(&self) -> Result {
        let driver: WDFDRIVER = DRIVER.load(Ordering::Acquire).cast();
        let (sddl, name) = (unicode_string(SDDL), unicode_string(DEVICE_NAME));
        // SAFETY: our framework driver object; `sddl` describes static text.
        let raw = unsafe { wdf!(WdfControlDeviceInitAllocate, driver, &raw const sddl) };
        if raw.is_null() {
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        }
        // INVARIANT: just allocated, owned by nobody else.
        let mut init = DeviceInit(raw);
        // SAFETY: `init.0` is a live, unconsumed WDFDEVICE_INIT (so below).
        unsafe { wdf!(WdfDeviceInitSetDeviceType, init.0, FILE_DEVICE_NETWORK) };
        // SAFETY: as above; OrInValues = TRUE adds FILE_DEVICE_SECURE_OPEN.
        unsafe { wdf!(WdfDeviceInitSetCharacteristics, init.0, FILE_DEVICE_SECURE_OPEN, 1) };
        // SAFETY: as above.
        check("WdfDeviceInitAssignName", unsafe { wdf!(WdfDeviceInitAssignName, init.0, &raw const name) })?;
        let mut files = WDF_FILEOBJECT_CONFIG {
            Size: const { struct_size::<WDF_FILEOBJECT_CONFIG>() },
            EvtFileCleanup: Some(evt_file_cleanup),
            AutoForwardCleanupClose: _WDF_TRI_STATE::WdfUseDefault,
            FileObjectClass: _WDF_FILEOBJECT_CLASS::WdfFileObjectWdfCannotUseFsContexts,
            ..WDF_FILEOBJECT_CONFIG::default()
        };
        // SAFETY: as above; a complete config.
        unsafe { wdf!(WdfDeviceInitSetFileObjectConfig, init.0, &raw mut files, WDF_NO_OBJECT_ATTRIBUTES) };
        let mut device: WDFDEVICE = ptr::null_mut();
        // SAFETY: success consumes the init and clears `init.0`; failure leaves it to the guard.
        let status = unsafe { wdf!(WdfDeviceCreate, &raw mut init.0, WDF_NO_OBJECT_ATTRIBUTES, &raw mut device) };
        check("WdfDeviceCreate", status)?;
        init.0 = ptr::null_mut();
        CONTROL_DEVICE.store(device.cast(), Ordering::Release);
        add_link_and_queues(device).inspect_err(|_| self.delete_control_device())
    }

    fn wdm_device_object(&self) -> Option<DeviceObject> {
        // SAFETY: the control device exists (created before this is asked).
        let device = unsafe { wdf!(WdfDeviceWdmGetDeviceObject, control_device()) };
        // SAFETY: NULL or the control device's WDM device object, which
        // lives until the control device is deleted: after the callouts are
        // unregistered (unload), or at once on a failed load, which
        // unregisters them first.
        unsafe { DeviceObject::from_raw(device.cast()) }
    }

    fn delete_control_device(&self) {
        let device = CONTROL_DEVICE.swap(ptr::null_mut(), Ordering::AcqRel);
        AGENT_QUEUE.store(ptr::null_mut(), Ordering::Release);
        // SAFETY: our control device, never opened, deleted once (taken out of the static).
        unsafe { wdf!(WdfObjectDelete, device as WDFOBJECT) };
    }

    fn finish_initializing(&self) {
        // SAFETY: the control device exists and is fully initialized.
        unsafe { wdf!(WdfControlFinishInitializing, control_device()) };
    }

    fn start_timer(&self) -> Result {
        let mut config = WDF_TIMER_CONFIG {
            Size: const { struct_size::<WDF_TIMER_CONFIG>() },
            EvtTimerFunc: Some(evt_timer),
            Period: TIMEOUT_PERIOD_MS,
            AutomaticSerialization: 1,
            ..WDF_TIMER_CONFIG::default()
        };
        let mut attributes = object_attributes(_WDF_EXECUTION_LEVEL::WdfExecutionLevelInheritFromParent);
        attributes.ParentObject = control_device() as WDFOBJECT;
        let mut timer: WDFTIMER = ptr::null_mut();
        // SAFETY: complete config and attributes, parented to our live device.
        let status = unsafe { wdf!(WdfTimerCreate, &raw mut config, &raw mut attributes, &raw mut timer) };
        check("WdfTimerCreate", status)?;
        TIMEOUT_TIMER.store(timer.cast(), Ordering::Release);
        // SAFETY: the timer was just created. Relative due time, 100 ns units.
        let _was_queued: BOOLEAN = unsafe { wdf!(WdfTimerStart, timer, -(i64::from(TIMEOUT_PERIOD_MS) * 10_000)) };
        Ok(())
    }

    fn stop_timer(&self) {
        let timer: WDFTIMER = TIMEOUT_TIMER.swap(ptr::null_mut(), Ordering::AcqRel).cast();
        if !timer.is_null() {
            // SAFETY: our timer, parent still alive; Wait = TRUE at PASSIVE waits out callbacks.
            let _was_queued: BOOLEAN = unsafe { wdf!(WdfTimerStop, timer, 1) };
        }
    }

    fn read_input<'c>(&self, request: &Request, _length: usize, copy: &'c mut [u8]) -> Result<&'c [u8]> {
        let (buffer, _) = retrieve(request, copy.len(), true)?;
        let source = buffer.cast::<u8>().cast_const();
        // SAFETY: `retrieve` checked `copy.len()` initialized bytes, valid until completion.
        copy.copy_from_slice(unsafe { core::slice::from_raw_parts(source, copy.len()) });
        Ok(copy)
    }

    fn output<'r>(&self, request: &'r mut Request, min_length: usize) -> Result<&'r mut [u8]> {
        let (buffer, available) = retrieve(request, min_length, false)?;
        // SAFETY: `available` writable bytes until completion, which consumes `request`.
        unsafe { ptr::write_bytes(buffer.cast::<u8>(), 0, available) };
        // SAFETY: the same bytes, now initialized, referenced only here (input copied out).
        Ok(unsafe { core::slice::from_raw_parts_mut(buffer.cast::<u8>(), available) })
    }

    fn file_of(&self, request: &Request) -> u64 {
        // SAFETY: a request the driver owns.
        unsafe { wdf!(WdfRequestGetFileObject, request.0) as u64 }
    }

    fn complete(&self, request: Request, status: NtStatus, written: usize) {
        let information = written.try_into().unwrap_or(0);
        // SAFETY: owned by the driver and consumed here: completed once.
        unsafe { wdf!(WdfRequestCompleteWithInformation, request.0, status.raw(), information) };
    }

    fn park(&self, request: Request) -> core::result::Result<(), (Request, NtStatus)> {
        // SAFETY: owned by the driver; the agent queue belongs to the same device.
        let status = unsafe { wdf!(WdfRequestForwardToIoQueue, request.0, agent_queue()) };
        check("WdfRequestForwardToIoQueue", status).map_err(|status| (request, status))
    }

    fn take_parked(&self) -> Option<Request> {
        let mut request: WDFREQUEST = ptr::null_mut();
        // SAFETY: our manual queue; the handle goes to a local.
        let status = unsafe { wdf!(WdfIoQueueRetrieveNextRequest, agent_queue(), &raw mut request) };
        (status >= 0 && !request.is_null()).then_some(Request(request))
    }

    fn requeue(&self, request: Request) -> core::result::Result<(), (Request, NtStatus)> {
        // SAFETY: retrieved from our manual queue, so it may be requeued there.
        let status = unsafe { wdf!(WdfRequestRequeue, request.0) };
        check("WdfRequestRequeue", status).map_err(|status| (request, status))
    }

    fn take_parked_of(&self, file: u64) -> Option<Request> {
        let (mut request, file): (WDFREQUEST, WDFFILEOBJECT) = (ptr::null_mut(), file as WDFFILEOBJECT);
        // SAFETY: our manual queue and the file object being cleaned up.
        let status = unsafe { wdf!(WdfIoQueueRetrieveRequestByFileObject, agent_queue(), file, &raw mut request) };
        (status >= 0 && !request.is_null()).then_some(Request(request))
    }
}

/// The symbolic link, the sequential PASSIVE_LEVEL IOCTL queue, the agents' manual queue.
fn add_link_and_queues(device: WDFDEVICE) -> Result {
    let link = unicode_string(SYMBOLIC_LINK);
    // SAFETY: our live device; `link` describes static text.
    check("WdfDeviceCreateSymbolicLink", unsafe { wdf!(WdfDeviceCreateSymbolicLink, device, &raw const link) })?;
    let mut config = queue_config(_WDF_IO_QUEUE_DISPATCH_TYPE::WdfIoQueueDispatchSequential, true);
    config.EvtIoDeviceControl = Some(evt_io_device_control);
    let mut attributes = object_attributes(_WDF_EXECUTION_LEVEL::WdfExecutionLevelPassive);
    // SAFETY: our live device; complete config and attributes; no handle for the default queue.
    let status = unsafe { wdf!(WdfIoQueueCreate, device, &raw mut config, &raw mut attributes, ptr::null_mut()) };
    check("WdfIoQueueCreate", status)?;
    let mut config = queue_config(_WDF_IO_QUEUE_DISPATCH_TYPE::WdfIoQueueDispatchManual, false);
    let mut queue: WDFQUEUE = ptr::null_mut();
    // SAFETY: our live device; a complete config; the handle goes to a local.
    let status = unsafe { wdf!(WdfIoQueueCreate, device, &raw mut config, WDF_NO_OBJECT_ATTRIBUTES, &raw mut queue) };
    check("WdfIoQueueCreate (agent)", status)?;
    AGENT_QUEUE.store(queue.cast(), Ordering::Release);
    Ok(())
}

/// `WdfRequestRetrieveInputBuffer` / `WdfRequestRetrieveOutputBuffer`.
fn retrieve(request: &Request, min: usize, input: bool) -> Result<(PVOID, usize)> {
    let (mut buffer, mut available, request): (PVOID, usize, WDFREQUEST) = (ptr::null_mut(), 0, request.0);
    let status = if input {
        // SAFETY: a request the driver owns; address and size go to locals.
        unsafe { wdf!(WdfRequestRetrieveInputBuffer, request, min, &raw mut buffer, &raw mut available) }
    } else {
        // SAFETY: as above.
        unsafe { wdf!(WdfRequestRetrieveOutputBuffer, request, min, &raw mut buffer, &raw mut available) }
    };
    check("WdfRequestRetrieve*Buffer", status)?;
    if buffer.is_null() || available < min {
        return Err(NtStatus::INTERNAL_ERROR);
    }
    Ok((buffer, available))
}

fn queue_config(dispatch: i32, default_queue: bool) -> WDF_IO_QUEUE_CONFIG {
    WDF_IO_QUEUE_CONFIG {
        Size: const { struct_size::<WDF_IO_QUEUE_CONFIG>() },
        DispatchType: dispatch,
        PowerManaged: _WDF_TRI_STATE::WdfFalse,
        DefaultQueue: BOOLEAN::from(default_queue),
        ..WDF_IO_QUEUE_CONFIG::default()
    }
}

fn object_attributes(level: i32) -> WDF_OBJECT_ATTRIBUTES {
    WDF_OBJECT_ATTRIBUTES {
        Size: const { struct_size::<WDF_OBJECT_ATTRIBUTES>() },
        ExecutionLevel: level,
        SynchronizationScope: _WDF_SYNCHRONIZATION_SCOPE::WdfSynchronizationScopeInheritFromParent,
        ..WDF_OBJECT_ATTRIBUTES::default()
    }
}

fn control_device() -> WDFDEVICE {
    CONTROL_DEVICE.load(Ordering::Acquire).cast()
}
fn agent_queue() -> WDFQUEUE {
    AGENT_QUEUE.load(Ordering::Acquire).cast()
}

fn check(call: &str, status: NTSTATUS) -> Result {
    NtStatus::to_result(status).inspect_err(|_| crate::log!(Level::Error, "{} failed: {:#010X}", call, status))
}

/// A `UNICODE_STRING` over counted static text; WDF only reads it.
fn unicode_string((text, length): Counted) -> UNICODE_STRING {
    UNICODE_STRING { Length: length, MaximumLength: length, Buffer: text.as_ptr().cast_mut() }
}

/// A `WDFDEVICE_INIT`, freed on drop unless `WdfDeviceCreate` took it (then NULL).
struct DeviceInit(PWDFDEVICE_INIT);
impl Drop for DeviceInit {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: a live allocation WdfDeviceCreate did not consume.
            unsafe { wdf!(WdfDeviceInitFree, self.0) };
        }
    }
}
