//! KMDF glue: `DriverEntry`, the non-PnP framework driver object and the
//! framework's callbacks, forwarded to `control_device`, which decides
//! everything; [`Kmdf`] implements its `Framework` with one WDF call per
//! method. Nothing here branches on anything but a WDF call's result.
//!
//! WDF methods are reached through `call_unsafe_wdf_function_binding!`,
//! which looks the function up in the framework's function table and passes
//! `WdfDriverGlobals`. `wdf_api` is wdk-sys (bindings generated from the
//! WDK's headers) on a Windows build host, or the project's own declarations
//! (`wdf-types`, layouts asserted against Microsoft's KMDF headers) in the
//! cross-check: the same file either way.
//!
//! IRQL: `DriverEntry`, `EvtDriverUnload`, `EvtFileCleanup` and the IOCTL
//! queue (created with `WdfExecutionLevelPassive`) run at PASSIVE_LEVEL; the
//! timer and the request-available hook at up to DISPATCH_LEVEL.
#![allow(unsafe_code)]

use core::ffi::c_void;
use core::mem::size_of;
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

use crate::control_device::{self, Framework};
use crate::log::Level;
use crate::status::{NtStatus, Result};
use crate::wdf_api::{
    _WDF_DRIVER_INIT_FLAGS, _WDF_EXECUTION_LEVEL, _WDF_FILEOBJECT_CLASS, _WDF_IO_QUEUE_DISPATCH_TYPE,
    _WDF_SYNCHRONIZATION_SCOPE, _WDF_TRI_STATE, BOOLEAN, FILE_DEVICE_NETWORK, FILE_DEVICE_SECURE_OPEN, NTSTATUS,
    PCUNICODE_STRING, PDRIVER_OBJECT, PVOID, PWDFDEVICE_INIT, ULONG, ULONG_PTR, UNICODE_STRING, WDF_DRIVER_CONFIG,
    WDF_FILEOBJECT_CONFIG, WDF_IO_QUEUE_CONFIG, WDF_NO_OBJECT_ATTRIBUTES, WDF_OBJECT_ATTRIBUTES, WDF_TIMER_CONFIG,
    WDFDEVICE, WDFDRIVER, WDFFILEOBJECT, WDFOBJECT, WDFQUEUE, WDFREQUEST, WDFTIMER, call_unsafe_wdf_function_binding,
};

/// Kernel pool behind `alloc` (`ExAllocatePool2`, non-paged, tag 'rust').
#[cfg(all(not(test), feature = "kmdf"))]
#[global_allocator]
static GLOBAL_ALLOCATOR: wdk_alloc::WdkAllocator = wdk_alloc::WdkAllocator;

// wdk-panic's `#[panic_handler]` bugchecks with code 'RPNC'.
#[cfg(all(not(test), feature = "kmdf"))]
use wdk_panic as _;

const DEVICE_NAME: Counted = counted(crate::wide!(r"\Device\WfpCallout"));
const SYMBOLIC_LINK: Counted = counted(crate::wide!(r"\DosDevices\WfpCallout"));
/// `SDDL_DEVOBJ_SYS_ALL_ADM_ALL` (wdmsec.h): LocalSystem and Administrators only.
const SDDL: Counted = counted(crate::wide!("D:P(A;;GA;;;SY)(A;;GA;;;BA)"));
/// How often pending requests are checked for their timeout.
const TIMEOUT_PERIOD_MS: ULONG = 100;

/// The framework objects the glue keeps (NULL until created).
static CONTROL_DEVICE: AtomicPtr<c_void> = AtomicPtr::new(ptr::null_mut());
static AGENT_QUEUE: AtomicPtr<c_void> = AtomicPtr::new(ptr::null_mut());
static TIMEOUT_TIMER: AtomicPtr<c_void> = AtomicPtr::new(ptr::null_mut());
static DRIVER: AtomicPtr<c_void> = AtomicPtr::new(ptr::null_mut());

/// The framework, as `control_device` sees it.
struct Kmdf;

/// A request the driver owns (presented or retrieved, not yet completed
/// or forwarded). Not `Copy`: completing or parking consumes it.
struct Request(WDFREQUEST);

/// `DriverEntry`, called by the framework's `FxDriverEntry` once bound.
///
/// # Safety
///
/// Called only by the KMDF loader stub, once, at PASSIVE_LEVEL, with the
/// I/O manager's driver object and the service's registry path.
#[unsafe(export_name = "DriverEntry")]
pub unsafe extern "system" fn driver_entry(driver: PDRIVER_OBJECT, registry_path: PCUNICODE_STRING) -> NTSTATUS {
    let mut config = WDF_DRIVER_CONFIG {
        Size: const { wdf_size::<WDF_DRIVER_CONFIG>() },
        EvtDriverUnload: Some(evt_driver_unload),
        DriverInitFlags: _WDF_DRIVER_INIT_FLAGS::WdfDriverInitNonPnpDriver as ULONG,
        ..WDF_DRIVER_CONFIG::default()
    };
    let mut wdf_driver: WDFDRIVER = ptr::null_mut();
    // SAFETY: DriverEntry's own arguments; a complete config with its size;
    // the handle goes to a local.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDriverCreate,
            driver,
            registry_path,
            WDF_NO_OBJECT_ATTRIBUTES,
            &raw mut config,
            &raw mut wdf_driver
        )
    };
    let loaded = check("WdfDriverCreate", status).and_then(|()| {
        DRIVER.store(wdf_driver.cast(), Ordering::Release);
        control_device::load(&Kmdf, pair_parked_requests)
    });
    NtStatus::from_result(loaded)
}

fn pair_parked_requests() {
    control_device::pair_parked_requests(&Kmdf);
}

extern "C" fn evt_driver_unload(_driver: WDFDRIVER) {
    control_device::unload(&Kmdf);
}

extern "C" fn evt_timer(_timer: WDFTIMER) {
    control_device::on_timer();
}

extern "C" fn evt_file_cleanup(file: WDFFILEOBJECT) {
    control_device::file_cleanup(&Kmdf, file as u64);
}

extern "C" fn evt_io_device_control(_: WDFQUEUE, request: WDFREQUEST, output: usize, input: usize, code: ULONG) {
    control_device::device_control(&Kmdf, Request(request), output, input, code);
}

impl Framework for Kmdf {
    type Request = Request;

    fn create_control_device(&self) -> Result {
        let driver: WDFDRIVER = DRIVER.load(Ordering::Acquire).cast();
        let sddl = unicode_string(SDDL);
        // SAFETY: `driver` is the framework driver object DriverEntry created;
        // `sddl` describes static text and outlives the call.
        let raw = unsafe { call_unsafe_wdf_function_binding!(WdfControlDeviceInitAllocate, driver, &raw const sddl) };
        if raw.is_null() {
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        }
        // INVARIANT: just allocated, owned by nobody else.
        let mut init = DeviceInit(raw);
        // SAFETY: `init.0` is a live, unconsumed WDFDEVICE_INIT.
        unsafe { call_unsafe_wdf_function_binding!(WdfDeviceInitSetDeviceType, init.0, FILE_DEVICE_NETWORK) };
        // SAFETY: as above; OrInValues = TRUE adds FILE_DEVICE_SECURE_OPEN.
        unsafe {
            call_unsafe_wdf_function_binding!(WdfDeviceInitSetCharacteristics, init.0, FILE_DEVICE_SECURE_OPEN, 1);
        }
        let name = unicode_string(DEVICE_NAME);
        // SAFETY: as above; `name` describes static text.
        let status = unsafe { call_unsafe_wdf_function_binding!(WdfDeviceInitAssignName, init.0, &raw const name) };
        check("WdfDeviceInitAssignName", status)?;
        let mut file_config = WDF_FILEOBJECT_CONFIG {
            Size: const { wdf_size::<WDF_FILEOBJECT_CONFIG>() },
            EvtDeviceFileCreate: None,
            EvtFileClose: None,
            EvtFileCleanup: Some(evt_file_cleanup),
            AutoForwardCleanupClose: _WDF_TRI_STATE::WdfUseDefault,
            FileObjectClass: _WDF_FILEOBJECT_CLASS::WdfFileObjectWdfCannotUseFsContexts,
        };
        // SAFETY: as above; a complete config with its own size.
        unsafe {
            call_unsafe_wdf_function_binding!(
                WdfDeviceInitSetFileObjectConfig,
                init.0,
                &raw mut file_config,
                WDF_NO_OBJECT_ATTRIBUTES
            );
        }
        let mut device: WDFDEVICE = ptr::null_mut();
        // SAFETY: on success the framework takes the WDFDEVICE_INIT over and
        // clears `init.0`; on failure it stays ours and the guard frees it.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfDeviceCreate,
                &raw mut init.0,
                WDF_NO_OBJECT_ATTRIBUTES,
                &raw mut device
            )
        };
        check("WdfDeviceCreate", status)?;
        init.0 = ptr::null_mut();
        CONTROL_DEVICE.store(device.cast(), Ordering::Release);
        add_link_and_queues(device).inspect_err(|_| self.delete_control_device())
    }

    fn wdm_device_object(&self) -> *mut c_void {
        // SAFETY: the control device exists (created before this is asked).
        unsafe { call_unsafe_wdf_function_binding!(WdfDeviceWdmGetDeviceObject, control_device()) }.cast()
    }

    fn delete_control_device(&self) {
        let device = CONTROL_DEVICE.swap(ptr::null_mut(), Ordering::AcqRel);
        AGENT_QUEUE.store(ptr::null_mut(), Ordering::Release);
        // SAFETY: our control device, never opened to I/O, deleted once (the
        // handle was just taken out of the static).
        unsafe { call_unsafe_wdf_function_binding!(WdfObjectDelete, device as WDFOBJECT) };
    }

    fn finish_initializing(&self) {
        // SAFETY: the control device exists and is fully initialized.
        unsafe { call_unsafe_wdf_function_binding!(WdfControlFinishInitializing, control_device()) };
    }

    fn start_timer(&self) -> Result {
        let mut config = WDF_TIMER_CONFIG {
            Size: const { wdf_size::<WDF_TIMER_CONFIG>() },
            EvtTimerFunc: Some(evt_timer),
            Period: TIMEOUT_PERIOD_MS,
            AutomaticSerialization: 1,
            ..WDF_TIMER_CONFIG::default()
        };
        let mut attributes = object_attributes(_WDF_EXECUTION_LEVEL::WdfExecutionLevelInheritFromParent);
        attributes.ParentObject = control_device() as WDFOBJECT;
        let mut timer: WDFTIMER = ptr::null_mut();
        // SAFETY: complete config and attributes with their sizes, parented
        // to our live device; the handle goes to a local.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(WdfTimerCreate, &raw mut config, &raw mut attributes, &raw mut timer)
        };
        check("WdfTimerCreate", status)?;
        TIMEOUT_TIMER.store(timer.cast(), Ordering::Release);
        // SAFETY: the timer was just created. Relative due time in 100 ns.
        let _was_queued: BOOLEAN = unsafe {
            call_unsafe_wdf_function_binding!(WdfTimerStart, timer, -(i64::from(TIMEOUT_PERIOD_MS) * 10_000))
        };
        Ok(())
    }

    fn stop_timer(&self) {
        let timer: WDFTIMER = TIMEOUT_TIMER.swap(ptr::null_mut(), Ordering::AcqRel).cast();
        if !timer.is_null() {
            // SAFETY: our timer, parented to the still existing device; Wait =
            // TRUE at PASSIVE_LEVEL returns once no callback runs.
            let _was_queued: BOOLEAN = unsafe { call_unsafe_wdf_function_binding!(WdfTimerStop, timer, 1) };
        }
    }

    fn read_input<'c>(&self, request: &Request, length: usize, copy: &'c mut [u8]) -> Result<&'c [u8]> {
        let (buffer, available) = retrieve(request, length, true)?;
        if available < copy.len() {
            return Err(NtStatus::INTERNAL_ERROR);
        }
        // SAFETY: WDF reported `available` >= `copy.len()` initialized bytes at
        // `buffer`, valid until the request completes, which is after this copy.
        let source = unsafe { core::slice::from_raw_parts(buffer.cast::<u8>().cast_const(), copy.len()) };
        copy.copy_from_slice(source);
        Ok(copy)
    }

    fn output<'r>(&self, request: &'r mut Request, min_length: usize) -> Result<&'r mut [u8]> {
        let (buffer, available) = retrieve(request, min_length, false)?;
        // SAFETY: WDF reported `available` writable bytes, valid until the
        // request completes, which consumes the `Request` this borrows from.
        unsafe { ptr::write_bytes(buffer.cast::<u8>(), 0, available) };
        // SAFETY: the same bytes, now initialized; only this slice refers to
        // them (the input was copied out first).
        Ok(unsafe { core::slice::from_raw_parts_mut(buffer.cast::<u8>(), available) })
    }

    fn file_of(&self, request: &Request) -> u64 {
        // SAFETY: a request the driver owns.
        unsafe { call_unsafe_wdf_function_binding!(WdfRequestGetFileObject, request.0) as u64 }
    }

    fn complete(&self, request: Request, status: NtStatus, written: usize) {
        let information = ULONG_PTR::try_from(written).unwrap_or(0);
        // SAFETY: owned by the driver and consumed here: completed once.
        unsafe {
            call_unsafe_wdf_function_binding!(WdfRequestCompleteWithInformation, request.0, status.raw(), information);
        }
    }

    fn park(&self, request: Request) -> core::result::Result<(), (Request, NtStatus)> {
        // SAFETY: owned by the driver; the agent queue belongs to the same device.
        let status = unsafe { call_unsafe_wdf_function_binding!(WdfRequestForwardToIoQueue, request.0, agent_queue()) };
        check("WdfRequestForwardToIoQueue", status).map_err(|status| (request, status))
    }

    fn take_parked(&self) -> Option<Request> {
        let mut request: WDFREQUEST = ptr::null_mut();
        // SAFETY: our manual queue; the handle goes to a local.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(WdfIoQueueRetrieveNextRequest, agent_queue(), &raw mut request)
        };
        (NtStatus::to_result(status).is_ok() && !request.is_null()).then_some(Request(request))
    }

    fn requeue(&self, request: Request) -> core::result::Result<(), (Request, NtStatus)> {
        // SAFETY: retrieved from our manual queue, so it may be requeued there.
        let status = unsafe { call_unsafe_wdf_function_binding!(WdfRequestRequeue, request.0) };
        check("WdfRequestRequeue", status).map_err(|status| (request, status))
    }

    fn take_parked_of(&self, file: u64) -> Option<Request> {
        let mut request: WDFREQUEST = ptr::null_mut();
        // SAFETY: our manual queue and the file object being cleaned up.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfIoQueueRetrieveRequestByFileObject,
                agent_queue(),
                file as WDFFILEOBJECT,
                &raw mut request
            )
        };
        (NtStatus::to_result(status).is_ok() && !request.is_null()).then_some(Request(request))
    }
}

/// `\DosDevices\WfpCallout`, the sequential PASSIVE_LEVEL IOCTL queue and
/// the agents' manual queue (neither power-managed: a control device has
/// no power states).
fn add_link_and_queues(device: WDFDEVICE) -> Result {
    let link = unicode_string(SYMBOLIC_LINK);
    // SAFETY: our live device; `link` describes static text.
    let status = unsafe { call_unsafe_wdf_function_binding!(WdfDeviceCreateSymbolicLink, device, &raw const link) };
    check("WdfDeviceCreateSymbolicLink", status)?;
    let mut config = queue_config(_WDF_IO_QUEUE_DISPATCH_TYPE::WdfIoQueueDispatchSequential, true);
    config.EvtIoDeviceControl = Some(evt_io_device_control);
    let mut attributes = object_attributes(_WDF_EXECUTION_LEVEL::WdfExecutionLevelPassive);
    // SAFETY: our live device; complete config and attributes; the device
    // owns its default queue, so no handle is asked for.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoQueueCreate,
            device,
            &raw mut config,
            &raw mut attributes,
            ptr::null_mut()
        )
    };
    check("WdfIoQueueCreate", status)?;
    let mut config = queue_config(_WDF_IO_QUEUE_DISPATCH_TYPE::WdfIoQueueDispatchManual, false);
    let mut queue: WDFQUEUE = ptr::null_mut();
    // SAFETY: our live device; complete config; the handle goes to a local.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoQueueCreate,
            device,
            &raw mut config,
            WDF_NO_OBJECT_ATTRIBUTES,
            &raw mut queue
        )
    };
    check("WdfIoQueueCreate (agent)", status)?;
    AGENT_QUEUE.store(queue.cast(), Ordering::Release);
    Ok(())
}

/// `WdfRequestRetrieveInputBuffer` / `WdfRequestRetrieveOutputBuffer`.
fn retrieve(request: &Request, min_length: usize, input: bool) -> Result<(PVOID, usize)> {
    let (mut buffer, mut available): (PVOID, usize) = (ptr::null_mut(), 0);
    // SAFETY: a request the driver owns; address and size go to locals.
    let status = unsafe {
        if input {
            call_unsafe_wdf_function_binding!(
                WdfRequestRetrieveInputBuffer,
                request.0,
                min_length,
                &raw mut buffer,
                &raw mut available
            )
        } else {
            call_unsafe_wdf_function_binding!(
                WdfRequestRetrieveOutputBuffer,
                request.0,
                min_length,
                &raw mut buffer,
                &raw mut available
            )
        }
    };
    check("WdfRequestRetrieve*Buffer", status)?;
    if buffer.is_null() || available < min_length {
        return Err(NtStatus::INTERNAL_ERROR);
    }
    Ok((buffer, available))
}

fn queue_config(dispatch: i32, default_queue: bool) -> WDF_IO_QUEUE_CONFIG {
    WDF_IO_QUEUE_CONFIG {
        Size: const { wdf_size::<WDF_IO_QUEUE_CONFIG>() },
        DispatchType: dispatch,
        PowerManaged: _WDF_TRI_STATE::WdfFalse,
        DefaultQueue: BOOLEAN::from(default_queue),
        ..WDF_IO_QUEUE_CONFIG::default()
    }
}

fn object_attributes(level: i32) -> WDF_OBJECT_ATTRIBUTES {
    WDF_OBJECT_ATTRIBUTES {
        Size: const { wdf_size::<WDF_OBJECT_ATTRIBUTES>() },
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

/// Static `wide!` text and its byte length without the NUL.
type Counted = (&'static [u16], u16);

/// Evaluated in constants only: text too long fails the build.
const fn counted(text: &'static [u16]) -> Counted {
    (text, crate::wide::counted_byte_len(text))
}

/// A `UNICODE_STRING` over counted static text; WDF only reads it.
fn unicode_string((text, length): Counted) -> UNICODE_STRING {
    UNICODE_STRING { Length: length, MaximumLength: length, Buffer: text.as_ptr().cast_mut() }
}

/// `Size` of a framework structure; one too large for a `ULONG` fails the build.
const fn wdf_size<T>() -> ULONG {
    assert!(size_of::<T>() <= ULONG::MAX as usize);
    size_of::<T>() as ULONG
}

/// A `WDFDEVICE_INIT` freed with `WdfDeviceInitFree` on drop unless
/// `WdfDeviceCreate` took it over (then NULL).
struct DeviceInit(PWDFDEVICE_INIT);

impl Drop for DeviceInit {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: a live allocation WdfDeviceCreate did not consume.
            unsafe { call_unsafe_wdf_function_binding!(WdfDeviceInitFree, self.0) };
        }
    }
}
