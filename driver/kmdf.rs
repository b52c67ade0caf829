//! KMDF glue: `DriverEntry`, the non-PnP framework driver object, the control
//! device `\Device\WfpCallout` with its IOCTL queue, and `EvtDriverUnload`.
//!
//! This is the only module that talks to WDF, and it stays thin: beyond
//! creating framework objects and moving IOCTL buffers, all work is done by
//! portable code (`lifecycle`, `control`) that also runs against the
//! simulated kernel. It is compiled only for a Windows target with feature
//! `kmdf`, where wdk-sys generates its bindings from the WDK headers, so it
//! cannot be built (or tested) without the WDK; keep it small and obvious.
//!
//! Every WDF method is reached through wdk-sys's
//! `call_unsafe_wdf_function_binding!`, which looks the function up in the
//! framework's function table (`WdfFunctions`) and passes `WdfDriverGlobals`.
//!
//! IRQL: `DriverEntry` and `EvtDriverUnload` run at PASSIVE_LEVEL. The IOCTL
//! queue is created with `WdfExecutionLevelPassive`, so `EvtIoDeviceControl`
//! runs at PASSIVE_LEVEL too, as `control::dispatch_ioctl` requires.
#![allow(unsafe_code)]

use core::ffi::c_void;
use core::mem::size_of;
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

use wdk::{nt_success, println};
use wdk_sys::{
    _WDF_DRIVER_INIT_FLAGS, _WDF_EXECUTION_LEVEL, _WDF_IO_QUEUE_DISPATCH_TYPE, _WDF_SYNCHRONIZATION_SCOPE,
    _WDF_TRI_STATE, BOOLEAN, FILE_DEVICE_NETWORK, FILE_DEVICE_SECURE_OPEN, NTSTATUS, PCUNICODE_STRING, PDRIVER_OBJECT,
    PVOID, PWDFDEVICE_INIT, STATUS_INSUFFICIENT_RESOURCES, STATUS_INTERNAL_ERROR, STATUS_INVALID_BUFFER_SIZE,
    STATUS_SUCCESS, ULONG, ULONG_PTR, UNICODE_STRING, WDF_DRIVER_CONFIG, WDF_IO_QUEUE_CONFIG, WDF_NO_OBJECT_ATTRIBUTES,
    WDF_OBJECT_ATTRIBUTES, WDFDEVICE, WDFDRIVER, WDFQUEUE, WDFREQUEST, call_unsafe_wdf_function_binding,
};
// Items for the agent's parked IOCTLs, the file-object cleanup and the
// timeout timer. Names as bindgen emits them from wdfio.h, wdffileobject.h,
// wdftimer.h and wdfrequest.h (not all are used by Microsoft's Rust
// samples, so they are not confirmed against generated bindings here).
use wdk_sys::{
    _WDF_FILEOBJECT_CLASS, STATUS_CANCELLED, WDF_FILEOBJECT_CONFIG, WDF_TIMER_CONFIG, WDFFILEOBJECT, WDFOBJECT,
    WDFTIMER,
};

use crate::control::{GET_REQUEST, MAX_INPUT_LEN, dispatch_ioctl};
use crate::driver_state::STATE;
use crate::status::NtStatus;

/// Kernel pool behind `alloc`: wdk-alloc's allocator uses
/// `ExAllocatePool2(POOL_FLAG_NON_PAGED, size, 'rust')` and is usable at
/// IRQL <= DISPATCH_LEVEL.
#[cfg(not(test))]
#[global_allocator]
static GLOBAL_ALLOCATOR: wdk_alloc::WdkAllocator = wdk_alloc::WdkAllocator;

// wdk-panic defines the `#[panic_handler]` of WDM/KMDF drivers (a bugcheck
// with code 'RPNC' that records the panic location); naming the crate links
// it in. Test builds get std's handler instead.
#[cfg(not(test))]
use wdk_panic as _;

/// `counted_utf16!("ascii text")`: a [`CountedUtf16`] over a static UTF-16
/// copy of the text, built at compile time.
macro_rules! counted_utf16 {
    ($text:expr) => {{
        const TEXT: &str = $text;
        static UNITS: [u16; TEXT.len()] = ascii_to_utf16(TEXT);
        CountedUtf16::new(&UNITS)
    }};
}

/// The control device's NT name.
static DEVICE_NAME: CountedUtf16 = counted_utf16!(r"\Device\WfpCallout");

/// The symbolic link user mode opens as `\\.\WfpCallout`.
static SYMBOLIC_LINK_NAME: CountedUtf16 = counted_utf16!(r"\DosDevices\WfpCallout");

/// `SDDL_DEVOBJ_SYS_ALL_ADM_ALL` from wdmsec.h: GENERIC_ALL for LocalSystem
/// and the built-in Administrators, nobody else (protected DACL). Spelled
/// out rather than taken from wdk-sys, whose base headers do not include
/// wdmsec.h, and whose copy would be a data import from wdmsec.lib.
static CONTROL_DEVICE_SDDL: CountedUtf16 = counted_utf16!("D:P(A;;GA;;;SY)(A;;GA;;;BA)");

/// The manual queue where "get request" IOCTLs wait for a pended
/// connection (NULL until created). Only framework calls use the handle.
static AGENT_QUEUE: AtomicPtr<c_void> = AtomicPtr::new(ptr::null_mut());

/// The periodic timer that times out pended requests (NULL until created).
static TIMEOUT_TIMER: AtomicPtr<c_void> = AtomicPtr::new(ptr::null_mut());

/// How often pending requests are checked for their timeout.
const TIMEOUT_PERIOD_MS: ULONG = 100;

/// `Size` of the framework structures, checked to fit a `ULONG` at compile time.
const WDF_DRIVER_CONFIG_SIZE: ULONG = wdf_struct_size::<WDF_DRIVER_CONFIG>();
const WDF_IO_QUEUE_CONFIG_SIZE: ULONG = wdf_struct_size::<WDF_IO_QUEUE_CONFIG>();
const WDF_OBJECT_ATTRIBUTES_SIZE: ULONG = wdf_struct_size::<WDF_OBJECT_ATTRIBUTES>();
const WDF_FILEOBJECT_CONFIG_SIZE: ULONG = wdf_struct_size::<WDF_FILEOBJECT_CONFIG>();
const WDF_TIMER_CONFIG_SIZE: ULONG = wdf_struct_size::<WDF_TIMER_CONFIG>();

/// `WdfDriverInitNonPnpDriver`: no AddDevice routine; the driver creates
/// its own (control) devices and must supply `EvtDriverUnload`.
/// (`DriverInitFlags` is a `ULONG`; the enumerator is a C `int`.)
const NON_PNP_DRIVER: ULONG = _WDF_DRIVER_INIT_FLAGS::WdfDriverInitNonPnpDriver as ULONG;

// The IOCTL input is copied onto the kernel stack, which is a few pages at
// most: if IOCTL inputs ever grow past this, copy them into pool instead.
const _: () = assert!(MAX_INPUT_LEN <= 1024, "control::MAX_INPUT_LEN no longer fits a kernel stack buffer");

/// `DriverEntry`. The image's entry point is the framework's
/// `FxDriverEntry` (wdk-build links with `/ENTRY:FxDriverEntry`), which
/// binds to KMDF and then calls this function.
///
/// Order: framework driver object, control device (name, SDDL, symbolic
/// link, IOCTL queue), then the portable `lifecycle::initialize`
/// (callouts and management objects), and only then
/// `WdfControlFinishInitializing`, which is what opens the device to
/// I/O: no IOCTL can arrive before the callouts are registered. On failure
/// the control device is deleted here and the framework deletes the driver
/// object when `DriverEntry` returns the error.
///
/// # Safety
///
/// Called only by the KMDF loader, once, at PASSIVE_LEVEL, with the I/O
/// manager's driver object and the service's registry path, both valid for
/// the duration of the call.
#[unsafe(export_name = "DriverEntry")]
pub unsafe extern "system" fn driver_entry(driver: PDRIVER_OBJECT, registry_path: PCUNICODE_STRING) -> NTSTATUS {
    // SAFETY: both arguments are DriverEntry's own, which is what `load`
    // requires.
    match unsafe { load(driver, registry_path) } {
        Ok(()) => STATUS_SUCCESS,
        Err(status) => status.raw(),
    }
}

/// `EvtDriverUnload`, at PASSIVE_LEVEL: the portable unload completes every
/// pended operation, unregisters the callouts and removes the management
/// objects.
///
/// The control device is not deleted here. It is a child of the framework
/// driver object, and for a non-PnP driver the framework deletes that object
/// and its children after this callback returns; so the WDM device object
/// that was handed to `FwpsCalloutRegister2` stays valid until the callouts
/// are unregistered. No IOCTL is in flight either: the I/O manager defers a
/// driver's unload routine while any of its devices has open handles.
extern "C" fn evt_driver_unload(_driver: WDFDRIVER) {
    STATE.agents.set_request_available_hook(None);
    let timer = TIMEOUT_TIMER.swap(ptr::null_mut(), Ordering::AcqRel);
    if !timer.is_null() {
        // (The BOOLEAN says whether the timer was still queued: either way
        // it is stopped now.)
        // SAFETY: the timer was created by this driver and is parented to
        // the control device, which still exists; Wait = TRUE (we are at
        // PASSIVE_LEVEL) returns once no timer callback is running.
        let _was_queued = unsafe { call_unsafe_wdf_function_binding!(WdfTimerStop, timer.cast(), BOOLEAN::from(true)) };
    }
    crate::lifecycle::unload();
    println!("wfpcallout: unloaded");
}

/// `EvtIoDeviceControl` of the control device's default queue: moves the
/// buffers, lets `control::dispatch_ioctl` answer, completes the request.
///
/// # Safety
///
/// Called only by the framework, at PASSIVE_LEVEL (the queue's execution
/// level), with a request it has presented to the driver and that has not
/// been completed yet.
unsafe extern "C" fn evt_io_device_control(
    _queue: WDFQUEUE,
    request: WDFREQUEST,
    output_buffer_length: usize,
    input_buffer_length: usize,
    io_control_code: ULONG,
) {
    if io_control_code == GET_REQUEST {
        // SAFETY: `request` is the live, not yet completed request presented
        // to this callback; `agent_get_request` completes or parks it.
        unsafe { agent_get_request(request, output_buffer_length, input_buffer_length) };
        return;
    }
    // SAFETY: `request` is the live, not yet completed request presented
    // to this callback, as `answer_device_control` requires.
    let answer = unsafe { answer_device_control(request, output_buffer_length, input_buffer_length, io_control_code) };
    let (status, information) = match answer {
        Ok(written) => match ULONG_PTR::try_from(written) {
            Ok(information) => (STATUS_SUCCESS, information),
            Err(_) => (STATUS_INTERNAL_ERROR, 0),
        },
        Err(status) => (status.raw(), 0),
    };
    // SAFETY: the request was presented to this callback and is completed
    // exactly once, here, after the last use of its buffers. `information`
    // is 0 or a count no larger than the output buffer (checked by
    // `answer_device_control`), so the I/O manager copies back only bytes
    // this driver wrote.
    unsafe {
        call_unsafe_wdf_function_binding!(WdfRequestCompleteWithInformation, request, status, information);
    }
}

/// Everything `DriverEntry` does.
///
/// # Safety
///
/// `driver` and `registry_path` are `DriverEntry`'s arguments.
unsafe fn load(driver: PDRIVER_OBJECT, registry_path: PCUNICODE_STRING) -> Result<(), NtStatus> {
    // SAFETY: DriverEntry's arguments, per this function's contract.
    let wdf_driver = unsafe { create_driver(driver, registry_path) }?;
    // SAFETY: `wdf_driver` was just returned by WdfDriverCreate and lives
    // until the driver unloads.
    let device = unsafe { create_control_device(wdf_driver) }?;

    // SAFETY: `device` is the control device just created and not deleted.
    if let Err(status) = unsafe { start_callouts(device) } {
        // SAFETY: `device` is our control device, not deleted yet, and not
        // reachable by I/O (initialization was never finished).
        unsafe { delete_control_device(device) };
        return Err(status);
    }

    // The hook goes in before the device opens: a classification that pends
    // between the two would otherwise find no hook, and its request would
    // wait for the next pend (or its timeout) although an agent is parked.
    STATE.agents.set_request_available_hook(Some(pair_parked_requests));
    // SAFETY: `device` is a control device whose initialization (name,
    // symbolic link, queue) is complete; from here on it accepts I/O.
    unsafe { call_unsafe_wdf_function_binding!(WdfControlFinishInitializing, device) };
    // SAFETY: `device` is our live control device.
    if let Err(status) = unsafe { start_timeout_timer(device) } {
        // Pended requests then only end by verdict, disconnect, filter
        // deletion or unload: degraded, not fatal.
        println!("wfpcallout: timeout timer not started: {:#010X}", status.raw());
    }
    println!("wfpcallout: loaded");
    Ok(())
}

/// `WdfDriverCreate` for a non-PnP driver with an unload callback.
///
/// # Safety
///
/// `driver` and `registry_path` are `DriverEntry`'s arguments.
unsafe fn create_driver(driver: PDRIVER_OBJECT, registry_path: PCUNICODE_STRING) -> Result<WDFDRIVER, NtStatus> {
    // WDF_DRIVER_CONFIG_INIT(&config, WDF_NO_EVENT_CALLBACK) plus the
    // non-PnP flag and the unload callback; DriverPoolTag 0 lets the
    // framework derive its tag from the service name.
    let mut config = WDF_DRIVER_CONFIG {
        Size: WDF_DRIVER_CONFIG_SIZE,
        EvtDriverDeviceAdd: None,
        EvtDriverUnload: Some(evt_driver_unload),
        DriverInitFlags: NON_PNP_DRIVER,
        ..WDF_DRIVER_CONFIG::default()
    };
    let mut wdf_driver: WDFDRIVER = ptr::null_mut();
    // SAFETY: `driver` and `registry_path` come from DriverEntry (this
    // function's contract); no object attributes is allowed; `config` is a
    // fully initialized WDF_DRIVER_CONFIG whose Size is its own size; the
    // handle is written to a local.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDriverCreate,
            driver,
            registry_path,
            WDF_NO_OBJECT_ATTRIBUTES,
            &raw mut config,
            &raw mut wdf_driver,
        )
    };
    check("WdfDriverCreate", status)?;
    Ok(wdf_driver)
}

/// Creates the control device: network device type, secure open, the NT
/// name and an admin/SYSTEM-only DACL, then the symbolic link and the IOCTL
/// queue. Initialization is not finished: the caller does that.
///
/// # Safety
///
/// `wdf_driver` is the handle returned by `WdfDriverCreate`.
unsafe fn create_control_device(wdf_driver: WDFDRIVER) -> Result<WDFDEVICE, NtStatus> {
    let sddl = CONTROL_DEVICE_SDDL.unicode_string();
    // SAFETY: `wdf_driver` is valid (this function's contract); `sddl`
    // describes 'static UTF-16 text and outlives the call.
    let raw_init =
        unsafe { call_unsafe_wdf_function_binding!(WdfControlDeviceInitAllocate, wdf_driver, &raw const sddl) };
    if raw_init.is_null() {
        println!("wfpcallout: WdfControlDeviceInitAllocate failed");
        return Err(NtStatus::from_raw(STATUS_INSUFFICIENT_RESOURCES));
    }
    // INVARIANT: `raw_init` was just allocated and nothing else owns it.
    let mut init = ControlDeviceInit { raw: raw_init };

    // SAFETY: `init.raw` is a live, unconsumed WDFDEVICE_INIT.
    unsafe {
        call_unsafe_wdf_function_binding!(WdfDeviceInitSetDeviceType, init.raw, FILE_DEVICE_NETWORK);
    }
    // OrInValues = TRUE: add FILE_DEVICE_SECURE_OPEN (the DACL then also
    // applies to opens of names below the device) to what the framework set.
    // SAFETY: `init.raw` is a live, unconsumed WDFDEVICE_INIT.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceInitSetCharacteristics,
            init.raw,
            FILE_DEVICE_SECURE_OPEN,
            BOOLEAN::from(true),
        );
    }
    let name = DEVICE_NAME.unicode_string();
    // SAFETY: `init.raw` is a live, unconsumed WDFDEVICE_INIT; `name`
    // describes 'static UTF-16 text and outlives the call.
    let status = unsafe { call_unsafe_wdf_function_binding!(WdfDeviceInitAssignName, init.raw, &raw const name) };
    // On failure `init` is dropped, which frees the WDFDEVICE_INIT.
    check("WdfDeviceInitAssignName", status)?;

    // WDF_FILEOBJECT_CONFIG_INIT(&config, NULL, NULL, evt_file_cleanup): a
    // closed agent handle must end the requests it was answering.
    let mut file_config = WDF_FILEOBJECT_CONFIG {
        Size: WDF_FILEOBJECT_CONFIG_SIZE,
        EvtDeviceFileCreate: None,
        EvtFileClose: None,
        EvtFileCleanup: Some(evt_file_cleanup),
        AutoForwardCleanupClose: _WDF_TRI_STATE::WdfUseDefault,
        FileObjectClass: _WDF_FILEOBJECT_CLASS::WdfFileObjectWdfCannotUseFsContexts,
    };
    // SAFETY: `init.raw` is a live, unconsumed WDFDEVICE_INIT; the config is
    // fully initialized with its own size; no object attributes.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceInitSetFileObjectConfig,
            init.raw,
            &raw mut file_config,
            WDF_NO_OBJECT_ATTRIBUTES,
        );
    }

    let mut device: WDFDEVICE = ptr::null_mut();
    // SAFETY: `init.raw` is a live, unconsumed WDFDEVICE_INIT; on success
    // the framework takes it over and sets `init.raw` to NULL, on failure
    // it stays ours and `init`'s drop frees it. No object attributes is
    // allowed; the handle is written to a local.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(WdfDeviceCreate, &raw mut init.raw, WDF_NO_OBJECT_ATTRIBUTES, &raw mut device)
    };
    check("WdfDeviceCreate", status)?;
    // INVARIANT: WdfDeviceCreate consumed the structure; say so explicitly
    // rather than rely on the framework having cleared the pointer.
    init.raw = ptr::null_mut();

    // SAFETY: `device` is the control device just created.
    if let Err(status) = unsafe { add_link_and_queue(device) } {
        // SAFETY: `device` is our control device, not deleted yet, and not
        // reachable by I/O (initialization was never finished).
        unsafe { delete_control_device(device) };
        return Err(status);
    }
    Ok(device)
}

/// Adds `\DosDevices\WfpCallout` and the default queue: sequential (one
/// IOCTL at a time), not power-managed (a control device has no power
/// states), callbacks at PASSIVE_LEVEL.
///
/// # Safety
///
/// `device` is a control device created by this driver, not yet deleted.
unsafe fn add_link_and_queue(device: WDFDEVICE) -> Result<(), NtStatus> {
    let link = SYMBOLIC_LINK_NAME.unicode_string();
    // SAFETY: `device` is valid (this function's contract); `link`
    // describes 'static UTF-16 text and outlives the call.
    let status = unsafe { call_unsafe_wdf_function_binding!(WdfDeviceCreateSymbolicLink, device, &raw const link) };
    check("WdfDeviceCreateSymbolicLink", status)?;

    // WDF_IO_QUEUE_CONFIG_INIT_DEFAULT_QUEUE(&config, WdfIoQueueDispatchSequential),
    // with PowerManaged set to WdfFalse instead of WdfUseDefault.
    let mut queue_config = WDF_IO_QUEUE_CONFIG {
        Size: WDF_IO_QUEUE_CONFIG_SIZE,
        DispatchType: _WDF_IO_QUEUE_DISPATCH_TYPE::WdfIoQueueDispatchSequential,
        PowerManaged: _WDF_TRI_STATE::WdfFalse,
        DefaultQueue: BOOLEAN::from(true),
        EvtIoDeviceControl: Some(evt_io_device_control),
        ..WDF_IO_QUEUE_CONFIG::default()
    };
    // WDF_OBJECT_ATTRIBUTES_INIT, then ExecutionLevel = Passive.
    let mut queue_attributes = WDF_OBJECT_ATTRIBUTES {
        Size: WDF_OBJECT_ATTRIBUTES_SIZE,
        ExecutionLevel: _WDF_EXECUTION_LEVEL::WdfExecutionLevelPassive,
        SynchronizationScope: _WDF_SYNCHRONIZATION_SCOPE::WdfSynchronizationScopeInheritFromParent,
        ..WDF_OBJECT_ATTRIBUTES::default()
    };
    // SAFETY: `device` is valid; the configuration and attributes are fully
    // initialized with their own sizes; the queue handle is not needed (the
    // device owns its default queue), so NULL is passed for it.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoQueueCreate,
            device,
            &raw mut queue_config,
            &raw mut queue_attributes,
            ptr::null_mut(),
        )
    };
    check("WdfIoQueueCreate", status)?;

    // The agent's parking lot: a manual queue (requests stay until the
    // driver retrieves them; the framework handles their cancellation).
    let mut agent_config = WDF_IO_QUEUE_CONFIG {
        Size: WDF_IO_QUEUE_CONFIG_SIZE,
        DispatchType: _WDF_IO_QUEUE_DISPATCH_TYPE::WdfIoQueueDispatchManual,
        PowerManaged: _WDF_TRI_STATE::WdfFalse,
        DefaultQueue: BOOLEAN::from(false),
        ..WDF_IO_QUEUE_CONFIG::default()
    };
    let mut agent_queue: WDFQUEUE = ptr::null_mut();
    // SAFETY: `device` is valid; the configuration is fully initialized with
    // its own size; no object attributes; the handle is written to a local.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoQueueCreate,
            device,
            &raw mut agent_config,
            WDF_NO_OBJECT_ATTRIBUTES,
            &raw mut agent_queue,
        )
    };
    check("WdfIoQueueCreate (agent)", status)?;
    AGENT_QUEUE.store(agent_queue.cast(), Ordering::Release);
    Ok(())
}

/// Hands the WDM device object to the portable initialization, which
/// registers the callouts with it (`FwpsCalloutRegister2` needs the device
/// object of the driver that owns the callouts) and adds the WFP
/// management objects.
///
/// # Safety
///
/// `device` is a control device created by this driver, not yet deleted.
unsafe fn start_callouts(device: WDFDEVICE) -> Result<(), NtStatus> {
    // SAFETY: `device` is valid (this function's contract).
    let wdm_device = unsafe { call_unsafe_wdf_function_binding!(WdfDeviceWdmGetDeviceObject, device) };
    if wdm_device.is_null() {
        println!("wfpcallout: WdfDeviceWdmGetDeviceObject returned NULL");
        return Err(NtStatus::from_raw(STATUS_INTERNAL_ERROR));
    }
    crate::lifecycle::initialize(wdm_device.cast::<c_void>()).inspect_err(|status| {
        println!("wfpcallout: lifecycle::initialize failed: {:#010X}", status.raw());
    })
}

/// Deletes the control device (and with it its symbolic link and queue).
///
/// # Safety
///
/// `device` is a control device created by this driver and not yet deleted;
/// it is not used afterwards.
unsafe fn delete_control_device(device: WDFDEVICE) {
    // SAFETY: per this function's contract, `device` is a live framework
    // object this driver created; WdfObjectDelete may delete control devices.
    unsafe { call_unsafe_wdf_function_binding!(WdfObjectDelete, device.cast()) };
}

/// Moves one IOCTL's buffers and lets `control::dispatch_ioctl` answer.
/// Returns the number of output bytes written, never more than
/// `output_length`.
///
/// # Safety
///
/// `request` is a request presented to `EvtIoDeviceControl` and not yet
/// completed; it is not completed before this function returns.
unsafe fn answer_device_control(
    request: WDFREQUEST,
    output_length: usize,
    input_length: usize,
    io_control_code: ULONG,
) -> Result<usize, NtStatus> {
    // The input is copied first: with METHOD_BUFFERED the input and output
    // are one system buffer, and the output is cleared (and then written)
    // below.
    let mut input_copy = [0u8; MAX_INPUT_LEN];
    // SAFETY: `request` is live and not completed (this function's contract).
    let input = unsafe { copy_input(request, input_length, &mut input_copy) }?;
    // SAFETY: `request` is live and not completed, and is not completed
    // before the last use of `output`, which ends with this function.
    let output = unsafe { output_buffer(request, output_length) }?;

    let written = dispatch_ioctl(io_control_code, input, output)?;
    if written > output_length {
        println!(
            "wfpcallout: IOCTL {io_control_code:#010X} reported {written} bytes for a \
             {output_length}-byte buffer"
        );
        return Err(NtStatus::from_raw(STATUS_INTERNAL_ERROR));
    }
    Ok(written)
}

/// Copies the request's input buffer into `copy` and returns the copied
/// bytes. A zero-length input is an empty slice (WdfRequestRetrieveInputBuffer
/// fails on zero-length buffers with STATUS_BUFFER_TOO_SMALL); an input longer
/// than `MAX_INPUT_LEN` fails with STATUS_INVALID_BUFFER_SIZE.
///
/// # Safety
///
/// `request` is a request presented to `EvtIoDeviceControl` and not yet
/// completed.
unsafe fn copy_input(request: WDFREQUEST, length: usize, copy: &mut [u8; MAX_INPUT_LEN]) -> Result<&[u8], NtStatus> {
    if length == 0 {
        return Ok(&[]);
    }
    let Some(destination) = copy.get_mut(..length) else {
        println!("wfpcallout: IOCTL input of {length} bytes is over {MAX_INPUT_LEN}");
        return Err(NtStatus::from_raw(STATUS_INVALID_BUFFER_SIZE));
    };

    let mut buffer: PVOID = ptr::null_mut();
    let mut available: usize = 0;
    // SAFETY: `request` is live (this function's contract); the buffer
    // address and size are written to locals.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfRequestRetrieveInputBuffer,
            request,
            length,
            &raw mut buffer,
            &raw mut available,
        )
    };
    check("WdfRequestRetrieveInputBuffer", status)?;
    if buffer.is_null() || available < length {
        println!("wfpcallout: WdfRequestRetrieveInputBuffer gave {available} of {length} bytes");
        return Err(NtStatus::from_raw(STATUS_INTERNAL_ERROR));
    }

    // SAFETY: WDF returned a buffer of `available` >= `length` bytes, valid
    // until the request completes, which is after this copy. For buffered
    // IOCTLs it is the I/O manager's kernel copy of the caller's input, for
    // direct ones the system buffer holding it: initialized either way, and
    // not written while the slice lives.
    let source = unsafe { core::slice::from_raw_parts(buffer.cast::<u8>().cast_const(), length) };
    destination.copy_from_slice(source);
    Ok(destination)
}

/// The request's output buffer, zero-filled. A zero-length output is an
/// empty slice (WdfRequestRetrieveOutputBuffer fails on zero-length buffers).
///
/// Zero-filling first means the slice covers only initialized bytes, and no
/// stale pool content (nor the input, which shares a METHOD_BUFFERED system
/// buffer) can reach the caller beyond what `dispatch_ioctl` writes.
///
/// # Safety
///
/// `request` is a request presented to `EvtIoDeviceControl` and not yet
/// completed; the returned slice is not used after it is completed, nor
/// while any other reference to its buffer (such as a slice of the input)
/// is alive.
unsafe fn output_buffer<'request>(request: WDFREQUEST, length: usize) -> Result<&'request mut [u8], NtStatus> {
    if length == 0 {
        return Ok(&mut []);
    }

    let mut buffer: PVOID = ptr::null_mut();
    let mut available: usize = 0;
    // SAFETY: `request` is live (this function's contract); the buffer
    // address and size are written to locals.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfRequestRetrieveOutputBuffer,
            request,
            length,
            &raw mut buffer,
            &raw mut available,
        )
    };
    check("WdfRequestRetrieveOutputBuffer", status)?;
    if buffer.is_null() || available < length {
        println!("wfpcallout: WdfRequestRetrieveOutputBuffer gave {available} of {length} bytes");
        return Err(NtStatus::from_raw(STATUS_INTERNAL_ERROR));
    }

    let bytes = buffer.cast::<u8>();
    // SAFETY: WDF reported `available` >= `length` writable bytes at
    // `bytes`, valid until the request completes (this function's contract).
    unsafe { ptr::write_bytes(bytes, 0, length) };
    // SAFETY: the same `length` bytes, now initialized; by this function's
    // contract nothing else references them while the slice lives, and the
    // slice does not outlive the request.
    Ok(unsafe { core::slice::from_raw_parts_mut(bytes, length) })
}

/// Turns a WDF status into a `Result`, logging failures with the call's name.
fn check(call: &str, status: NTSTATUS) -> Result<(), NtStatus> {
    if nt_success(status) {
        Ok(())
    } else {
        println!("wfpcallout: {call} failed: {status:#010X}");
        Err(NtStatus::from_raw(status))
    }
}

/// A `WDFDEVICE_INIT` from `WdfControlDeviceInitAllocate`, freed with
/// `WdfDeviceInitFree` when dropped unless `WdfDeviceCreate` took it over.
///
/// # Invariants
///
/// `raw` is either NULL (the framework owns the structure now) or a
/// structure allocated by `WdfControlDeviceInitAllocate` that nothing else
/// frees or consumes.
struct ControlDeviceInit {
    raw: PWDFDEVICE_INIT,
}

impl Drop for ControlDeviceInit {
    fn drop(&mut self) {
        if !self.raw.is_null() {
            // SAFETY: by the type invariant, `raw` is a live allocation that
            // WdfDeviceCreate did not consume and that only this guard frees.
            unsafe { call_unsafe_wdf_function_binding!(WdfDeviceInitFree, self.raw) };
        }
    }
}

/// `size_of::<T>()` as the `ULONG` WDF's `Size` fields hold; a structure too
/// large for a `ULONG` fails the build.
const fn wdf_struct_size<T>() -> ULONG {
    let size = size_of::<T>();
    assert!(size <= ULONG::MAX as usize, "structure size does not fit a ULONG");
    size as ULONG
}

/// Widens ASCII `text` to UTF-16 at compile time (no terminating NUL: a
/// `UNICODE_STRING` is counted). A wrong `N` or a non-ASCII byte fails the
/// build.
const fn ascii_to_utf16<const N: usize>(text: &str) -> [u16; N] {
    assert!(text.len() == N, "N must be the length of the text");
    let mut units = [0u16; N];
    let mut source = text.as_bytes();
    let mut target: &mut [u16] = &mut units;
    while let ([byte, source_rest @ ..], [unit, target_rest @ ..]) = (source, target) {
        assert!(byte.is_ascii(), "only ASCII text is widened this way");
        *unit = *byte as u16;
        source = source_rest;
        target = target_rest;
    }
    units
}

/// UTF-16 text with static storage and its length in bytes, from which a
/// `UNICODE_STRING` can be made at any time.
///
/// # Invariants
///
/// `byte_len` is the size of `units` in bytes, and fits the `USHORT`
/// length fields of a `UNICODE_STRING`.
struct CountedUtf16 {
    units: &'static [u16],
    byte_len: u16,
}

impl CountedUtf16 {
    /// Wraps `units`; text too long for a `UNICODE_STRING` fails the build
    /// (this is only evaluated in `static` initializers).
    const fn new(units: &'static [u16]) -> Self {
        let byte_len = match units.len().checked_mul(2) {
            Some(bytes) if bytes <= u16::MAX as usize => bytes as u16,
            _ => panic!("text too long for a UNICODE_STRING"),
        };
        // INVARIANT: `byte_len` was just computed from `units` and checked.
        Self { units, byte_len }
    }

    /// A `UNICODE_STRING` describing the text. Its `Buffer` is `*mut`
    /// because that is the field's type; it is only ever passed to WDF as a
    /// `PCUNICODE_STRING`, which WDF reads and does not write.
    fn unicode_string(&self) -> UNICODE_STRING {
        UNICODE_STRING {
            Length: self.byte_len,
            MaximumLength: self.byte_len,
            Buffer: self.units.as_ptr().cast_mut().cast(),
        }
    }
}

/// "Get request" from the agent: answered at once when a pended request is
/// queued, otherwise parked in the agent queue until classify pends one.
///
/// # Safety
///
/// `request` is a request presented to `EvtIoDeviceControl` and not yet
/// completed; this function completes it or hands it to the framework's
/// agent queue.
unsafe fn agent_get_request(request: WDFREQUEST, output_length: usize, input_length: usize) {
    let mut input_copy = [0u8; MAX_INPUT_LEN];
    // SAFETY: `request` is live and not completed (this function's contract).
    let answer = unsafe { copy_input(request, input_length, &mut input_copy) }.and_then(|input| {
        // SAFETY: as above; the output is not used after completion.
        let output = unsafe { output_buffer(request, output_length) }?;
        // SAFETY: `request` is live; the file object identifies the handle.
        let file = unsafe { call_unsafe_wdf_function_binding!(WdfRequestGetFileObject, request) };
        crate::control::agent_get_request(file as u64, input, output)
    });
    match answer {
        Ok(Some(written)) => {
            // SAFETY: completed once, after the last use of its buffers.
            unsafe { complete(request, STATUS_SUCCESS, written) };
        }
        Ok(None) => {
            let queue: WDFQUEUE = AGENT_QUEUE.load(Ordering::Acquire).cast();
            // SAFETY: `request` is live and ours; `queue` is the agent queue
            // of the same device. On success the framework owns it.
            let status = unsafe { call_unsafe_wdf_function_binding!(WdfRequestForwardToIoQueue, request, queue) };
            if !nt_success(status) {
                // SAFETY: the forward failed, so the request is still ours.
                unsafe { complete(request, status, 0) };
                return;
            }
            // A request may have been queued between our check and the park.
            pair_parked_requests();
        }
        Err(status) => {
            // SAFETY: completed once, here.
            unsafe { complete(request, status.raw(), 0) };
        }
    }
}

/// Completes a request with a status and a byte count.
///
/// # Safety
///
/// `request` is a live request owned by the driver, completed exactly once.
unsafe fn complete(request: WDFREQUEST, status: NTSTATUS, written: usize) {
    let information = ULONG_PTR::try_from(written).unwrap_or(0);
    // SAFETY: per this function's contract.
    unsafe { call_unsafe_wdf_function_binding!(WdfRequestCompleteWithInformation, request, status, information) };
}

/// The agents' "request available" hook: pairs parked "get request" IOCTLs
/// with queued requests until one side runs out. Runs at up to
/// DISPATCH_LEVEL (from classify), with no driver lock held.
fn pair_parked_requests() {
    let queue: WDFQUEUE = AGENT_QUEUE.load(Ordering::Acquire).cast();
    if queue.is_null() {
        return;
    }
    loop {
        let mut request: WDFREQUEST = ptr::null_mut();
        // SAFETY: `queue` is our manual queue; the handle is written to a
        // local; callable at DISPATCH_LEVEL.
        let status =
            unsafe { call_unsafe_wdf_function_binding!(WdfIoQueueRetrieveNextRequest, queue, &raw mut request) };
        if !nt_success(status) || request.is_null() {
            return; // STATUS_NO_MORE_ENTRIES: nobody is waiting.
        }
        let mut buffer: PVOID = ptr::null_mut();
        let mut available: usize = 0;
        // SAFETY: `request` was just retrieved and is ours until completed;
        // the buffer address and size are written to locals.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestRetrieveOutputBuffer,
                request,
                wfpcallout_wire::ASK_REQUEST_LEN,
                &raw mut buffer,
                &raw mut available,
            )
        };
        if !nt_success(status) || buffer.is_null() {
            // SAFETY: ours, completed once.
            unsafe { complete(request, status, 0) };
            continue;
        }
        let bytes = buffer.cast::<u8>();
        // SAFETY: WDF reported `available` writable bytes at `bytes`, valid
        // until the request completes; zeroed so only our reply leaves.
        unsafe { ptr::write_bytes(bytes, 0, available) };
        // SAFETY: the same bytes, now initialized, referenced by nothing
        // else until the request completes below.
        let output = unsafe { core::slice::from_raw_parts_mut(bytes, available) };
        match crate::control::agent_take_request(output) {
            Ok(Some(written)) => {
                // SAFETY: ours, completed once, after the last use of `output`.
                unsafe { complete(request, STATUS_SUCCESS, written) };
            }
            Ok(None) => {
                // Nothing queued after all: back to the head of the queue.
                // SAFETY: a request retrieved from a manual queue may be
                // requeued to it.
                let status = unsafe { call_unsafe_wdf_function_binding!(WdfRequestRequeue, request) };
                if !nt_success(status) {
                    // SAFETY: the requeue failed, so it is still ours.
                    unsafe { complete(request, status, 0) };
                }
                // A request queued while we held the parked IOCTL ran its
                // hook against an empty queue and paired nothing: look again
                // now that the IOCTL is back (else return, nothing waits).
                if STATE.pending.has_queued() {
                    continue;
                }
                return;
            }
            Err(status) => {
                // SAFETY: ours, completed once.
                unsafe { complete(request, status.raw(), 0) };
            }
        }
    }
}

/// `EvtFileCleanup`: a handle is closing. Its parked IOCTLs are cancelled,
/// and if it was the last agent every pending request gets its default
/// verdict.
///
/// # Safety
///
/// Called by the framework with the file object being cleaned up.
unsafe extern "C" fn evt_file_cleanup(file: WDFFILEOBJECT) {
    let queue: WDFQUEUE = AGENT_QUEUE.load(Ordering::Acquire).cast();
    if !queue.is_null() {
        loop {
            let mut request: WDFREQUEST = ptr::null_mut();
            // SAFETY: our manual queue and this cleanup's file object; the
            // handle is written to a local.
            let status = unsafe {
                call_unsafe_wdf_function_binding!(WdfIoQueueRetrieveRequestByFileObject, queue, file, &raw mut request)
            };
            if !nt_success(status) || request.is_null() {
                break;
            }
            // SAFETY: retrieved from the queue, ours, completed once.
            unsafe { complete(request, STATUS_CANCELLED, 0) };
        }
    }
    crate::control::file_cleanup(file as u64);
}

/// Creates and starts the periodic timeout timer, parented to the device.
///
/// # Safety
///
/// `device` is our live control device.
unsafe fn start_timeout_timer(device: WDFDEVICE) -> Result<(), NtStatus> {
    // WDF_TIMER_CONFIG_INIT_PERIODIC(&config, evt_timeout_timer, 100).
    let mut config = WDF_TIMER_CONFIG {
        Size: WDF_TIMER_CONFIG_SIZE,
        EvtTimerFunc: Some(evt_timeout_timer),
        Period: TIMEOUT_PERIOD_MS,
        AutomaticSerialization: BOOLEAN::from(true),
        TolerableDelay: 0,
        ..WDF_TIMER_CONFIG::default()
    };
    let mut attributes = WDF_OBJECT_ATTRIBUTES {
        Size: WDF_OBJECT_ATTRIBUTES_SIZE,
        ExecutionLevel: _WDF_EXECUTION_LEVEL::WdfExecutionLevelInheritFromParent,
        SynchronizationScope: _WDF_SYNCHRONIZATION_SCOPE::WdfSynchronizationScopeInheritFromParent,
        ParentObject: device as WDFOBJECT,
        ..WDF_OBJECT_ATTRIBUTES::default()
    };
    let mut timer: WDFTIMER = ptr::null_mut();
    // SAFETY: the config and attributes are fully initialized with their
    // own sizes, parented to our live device; the handle goes to a local.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(WdfTimerCreate, &raw mut config, &raw mut attributes, &raw mut timer)
    };
    check("WdfTimerCreate", status)?;
    TIMEOUT_TIMER.store(timer.cast(), Ordering::Release);
    // Relative due time in 100-ns units (WDF_REL_TIMEOUT_IN_MS).
    let due = -(i64::from(TIMEOUT_PERIOD_MS) * 10_000);
    // SAFETY: `timer` was just created; starting it has no preconditions.
    // (The BOOLEAN says whether it was already queued: a new timer is not.)
    let _was_queued = unsafe { call_unsafe_wdf_function_binding!(WdfTimerStart, timer, due) };
    Ok(())
}

/// `EvtTimerFunc`: times out pended requests (DISPATCH_LEVEL).
extern "C" fn evt_timeout_timer(_timer: WDFTIMER) {
    crate::lifecycle::on_timer();
}
