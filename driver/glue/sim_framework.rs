//! The control device on the simulated kernel: [`device::Framework`]
//! over the simulated framework (`wfpcallout_simkernel::wdf`), one model
//! call per method, as the KMDF glue makes one WDF call per method. Tests,
//! the scenario and the try-out drive the driver's real load order, IOCTL
//! handling, parking and cleanup through it.
#![forbid(unsafe_code)]

use crate::callbacks::state::STATE;
use crate::control::device::{self, Framework};
use crate::platform::status::{NtStatus, Result};
use crate::wfp::callout_table::CALLOUTS;
use crate::wfp::ffi::DeviceObject;
use std::format;
use wfpcallout_simkernel::verifier::{self, ViolationKind};
use wfpcallout_simkernel::wdf;

/// The simulated framework (stateless: the model is global, like KMDF).
pub struct SimFramework {
    device_object: Option<DeviceObject>,
}

/// The device object the simulated kernel gave the test; set by [`load`].
static DEVICE_OBJECT: std::sync::Mutex<Option<DeviceObject>> = std::sync::Mutex::new(None);

impl SimFramework {
    fn current() -> Self {
        Self { device_object: DEVICE_OBJECT.lock().map_or(None, |device| *device) }
    }
}

fn hook() {
    device::pair_parked_requests(&SimFramework::current());
}

/// DriverEntry on the simulated kernel, with `device_object` from
/// `Kernel::device_object` (`None`: the framework has none to give).
pub fn load(device_object: Option<DeviceObject>) -> Result {
    if let Ok(mut slot) = DEVICE_OBJECT.lock() {
        *slot = device_object;
    }
    device::load(&SimFramework::current(), hook)
}

/// EvtDriverUnload, then the framework deleting the control device.
pub fn unload() {
    device::unload(&SimFramework::current());
    wdf::driver_unloaded();
}

/// The timer fires (DISPATCH_LEVEL in the caller's hands): nothing runs
/// unless the driver started it.
pub fn fire_timer() {
    if wdf::timer_running() {
        device::on_timer();
    }
}

/// An IOCTL through the default queue: presented, then EvtIoDeviceControl.
/// Returns the request's id for [`wdf::completion`].
pub fn ioctl(file: u64, code: u32, input: &[u8], output_length: usize) -> u64 {
    let request = wdf::present_ioctl(file, input, output_length);
    let id = request.id();
    device::device_control(&SimFramework::current(), request, output_length, input.len(), code);
    id
}

/// The handle closes: EvtFileCleanup.
pub fn close(file: u64) {
    wdf::close_file(file);
    device::file_cleanup(&SimFramework::current(), file);
}

impl Framework for SimFramework {
    type Request = wdf::Request;

    fn create_control_device(&self) -> Result {
        wdf::create_control_device().map_err(NtStatus::from_raw)
    }

    fn wdm_device_object(&self) -> Option<DeviceObject> {
        self.device_object
    }

    fn delete_control_device(&self) {
        wdf::delete_control_device();
    }

    fn finish_initializing(&self) {
        // The rules the KMDF glue must keep, checked where the model can see
        // them: every callout registered, and the hook installed, before
        // the device opens.
        for spec in CALLOUTS.iter() {
            if !wfpcallout_simkernel::engine::is_registered(&spec.key) {
                verifier::report(
                    ViolationKind::ApiMisuse,
                    format!("control device opened before callout {:?} was registered", spec.name),
                );
            }
        }
        if !STATE.agents.has_request_available_hook() {
            verifier::report(ViolationKind::ApiMisuse, "control device opened before the request hook was installed");
        }
        wdf::finish_initializing();
    }

    fn start_timer(&self) -> Result {
        wdf::start_timer().map_err(NtStatus::from_raw)
    }

    fn stop_timer(&self) {
        wdf::stop_timer();
    }

    fn read_input<'c>(&self, request: &wdf::Request, length: usize, copy: &'c mut [u8]) -> Result<&'c [u8]> {
        wdf::read_input(request, length, copy).map_err(NtStatus::from_raw)?;
        Ok(copy)
    }

    fn output<'r>(&self, request: &'r mut wdf::Request, min_length: usize) -> Result<&'r mut [u8]> {
        let output = request.output(min_length).map_err(NtStatus::from_raw)?;
        output.fill(0);
        Ok(output)
    }

    fn file_of(&self, request: &wdf::Request) -> u64 {
        wdf::file_of(request)
    }

    fn complete(&self, request: wdf::Request, status: NtStatus, written: usize) {
        wdf::complete(request, status.raw(), written);
    }

    fn park(&self, request: wdf::Request) -> core::result::Result<(), (wdf::Request, NtStatus)> {
        wdf::park(request).map_err(|(request, status)| (request, NtStatus::from_raw(status)))
    }

    fn take_parked(&self) -> Option<wdf::Request> {
        wdf::take_parked()
    }

    fn requeue(&self, request: wdf::Request) -> core::result::Result<(), (wdf::Request, NtStatus)> {
        wdf::requeue(request).map_err(|(request, status)| (request, NtStatus::from_raw(status)))
    }

    fn take_parked_of(&self, file: u64) -> Option<wdf::Request> {
        wdf::take_parked_of(file)
    }
}
