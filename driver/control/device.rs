//! The control device's life and I/O, decided in portable code.
//!
//! The KMDF glue (`kmdf.rs`) implements [`Framework`] with one WDF call per
//! method and forwards the framework's callbacks here; the simulated kernel
//! implements the same trait with a checking model of the framework. So
//! every decision — the load and unload order, which IOCTLs wait, how a
//! buffer is checked, when a parked "get request" is paired with a pended
//! classification, what a closing handle ends — runs in tests, and the
//! glue has nothing left to get wrong but the calls themselves.
//!
//! A [`Framework::Request`] is owned: completing or parking it consumes it,
//! so a request cannot be completed twice or used after it left the
//! driver's hands, by construction.
//!
//! IRQL: [`load`], [`unload`], [`device_control`] and [`file_cleanup`] run
//! at PASSIVE_LEVEL (DriverEntry, EvtDriverUnload, a passive-level
//! sequential queue, EvtFileCleanup); [`pair_parked_requests`] runs at up to
//! DISPATCH_LEVEL (from classify) with no driver lock held.
#![forbid(unsafe_code)]

use crate::callbacks::state::STATE;
use crate::control::ioctls::{GET_REQUEST, MAX_INPUT_LEN, agent_get_request, agent_take_request, dispatch_ioctl};
use crate::platform::log::Level;
use crate::platform::status::{NtStatus, Result};
use crate::wfp::ffi::DeviceObject;
use wfpcallout_wire::ASK_REQUEST_LEN;

/// What the driver needs from the framework, one framework call each.
pub trait Framework {
    /// A request presented to the driver and not yet completed or parked.
    type Request;

    /// Creates the control device (name, security descriptor, symbolic
    /// link, default IOCTL queue, the agents' manual queue, file cleanup),
    /// not yet open to I/O.
    fn create_control_device(&self) -> Result;
    /// The control device's WDM device object, which `FwpsCalloutRegister`
    /// needs (`None` if the framework has none to give).
    fn wdm_device_object(&self) -> Option<DeviceObject>;
    /// Deletes the control device after a failed load (never opened).
    fn delete_control_device(&self);
    /// Opens the control device to I/O.
    fn finish_initializing(&self);
    /// Creates and starts the periodic timer that calls [`on_timer`].
    fn start_timer(&self) -> Result;
    /// Stops the timer and waits for a running callback to return.
    fn stop_timer(&self);

    /// Copies the request's input (exactly `length` bytes) into `copy`.
    fn read_input<'c>(&self, request: &Self::Request, length: usize, copy: &'c mut [u8]) -> Result<&'c [u8]>;
    /// The request's output buffer of at least `min_length` bytes, zero-filled.
    fn output<'r>(&self, request: &'r mut Self::Request, min_length: usize) -> Result<&'r mut [u8]>;
    /// A token for the handle the request came through (never 0).
    fn file_of(&self, request: &Self::Request) -> u64;
    /// Completes the request with a status and the number of bytes written.
    fn complete(&self, request: Self::Request, status: NtStatus, written: usize);
    /// Parks the request in the agents' manual queue; gives it back if the
    /// framework refused.
    fn park(&self, request: Self::Request) -> core::result::Result<(), (Self::Request, NtStatus)>;
    /// Takes the oldest parked request, if any.
    fn take_parked(&self) -> Option<Self::Request>;
    /// Puts a taken request back at the head of the manual queue; gives it
    /// back if the framework refused.
    fn requeue(&self, request: Self::Request) -> core::result::Result<(), (Self::Request, NtStatus)>;
    /// Takes a parked request that came through handle `file`, if any.
    fn take_parked_of(&self, file: u64) -> Option<Self::Request>;
}

/// DriverEntry after the framework driver object exists: control device,
/// callouts, the request hook (`hook` calls [`pair_parked_requests`] with
/// the glue's framework), then I/O, then the timer. The device opens
/// only once the callouts are registered, and the hook is in place before
/// it opens (a classification pended in between would otherwise wait for
/// the next pend although an agent is parked). On failure the device is
/// deleted and the status returned: the driver does not load.
pub fn load<F: Framework>(framework: &F, hook: fn()) -> Result {
    framework.create_control_device()?;
    let started = match framework.wdm_device_object() {
        Some(device_object) => crate::control::lifecycle::initialize(device_object),
        None => {
            crate::log!(Level::Error, "the control device has no WDM device object");
            Err(NtStatus::INTERNAL_ERROR)
        }
    };
    if let Err(status) = started {
        crate::log!(Level::Error, "load failed: {:#010X}", status.raw());
        framework.delete_control_device();
        return Err(status);
    }
    STATE.agents.set_request_available_hook(Some(hook));
    framework.finish_initializing();
    if let Err(status) = framework.start_timer() {
        // Pended requests then end only by verdict, disconnect, filter
        // deletion or unload: degraded, not fatal.
        crate::log!(Level::Error, "timeout timer not started: {:#010X}", status.raw());
        crate::platform::etw::error("starting the timeout timer", status);
    }
    crate::log!(Level::Info, "loaded");
    Ok(())
}

/// EvtDriverUnload: no more pairing, no more timer callbacks, then the
/// portable unload (pended operations completed, callouts unregistered,
/// management objects removed). The framework deletes the control device
/// after this returns, so the device object the callouts were registered
/// with outlives them.
pub fn unload<F: Framework>(framework: &F) {
    STATE.agents.set_request_available_hook(None);
    framework.stop_timer();
    crate::control::lifecycle::unload();
    crate::log!(Level::Info, "unloaded");
}

/// The periodic timer: times out pended requests (DISPATCH_LEVEL).
pub fn on_timer() {
    crate::control::lifecycle::on_timer();
}

/// EvtIoDeviceControl: "get request" may wait (parked); every other IOCTL
/// is answered and completed at once.
pub fn device_control<F: Framework>(
    framework: &F,
    mut request: F::Request,
    output_length: usize,
    input_length: usize,
    code: u32,
) {
    let mut input_copy = [0u8; MAX_INPUT_LEN];
    let input = match read_input(framework, &request, input_length, &mut input_copy) {
        Ok(input) => input,
        Err(status) => return framework.complete(request, status, 0),
    };
    if code == GET_REQUEST {
        return get_request(framework, request, input, output_length);
    }
    let answer = output(framework, &mut request, output_length).and_then(|output| {
        let written = dispatch_ioctl(code, input, output)?;
        if written > output.len() {
            crate::log!(Level::Error, "IOCTL {:#010X} reported {} bytes for {}", code, written, output.len());
            return Err(NtStatus::INTERNAL_ERROR);
        }
        Ok(written)
    });
    match answer {
        Ok(written) => framework.complete(request, NtStatus::SUCCESS, written),
        Err(status) => framework.complete(request, status, 0),
    }
}

/// "Get request": answered at once when a pended request is queued,
/// otherwise parked until classify queues one.
fn get_request<F: Framework>(framework: &F, mut request: F::Request, input: &[u8], output_length: usize) {
    let file = framework.file_of(&request);
    let answer = output(framework, &mut request, output_length).and_then(|out| agent_get_request(file, input, out));
    match answer {
        Ok(Some(written)) => framework.complete(request, NtStatus::SUCCESS, written),
        Ok(None) => match framework.park(request) {
            // A request may have been queued between the check and the park.
            Ok(()) => pair_parked_requests(framework),
            Err((request, status)) => framework.complete(request, status, 0),
        },
        Err(status) => framework.complete(request, status, 0),
    }
}

/// Pairs parked "get request" IOCTLs with queued requests until one side
/// runs out.
///
/// Lost wake-up: while this holds the only parked IOCTL and finds nothing
/// queued, classify on another processor may queue a request; its call
/// here finds the manual queue empty and returns. So after putting the
/// IOCTL back this looks at the pended requests again, and goes on while
/// one is queued.
pub fn pair_parked_requests<F: Framework>(framework: &F) {
    while let Some(mut request) = framework.take_parked() {
        let answer = framework.output(&mut request, ASK_REQUEST_LEN).and_then(agent_take_request);
        match answer {
            Ok(Some(written)) => framework.complete(request, NtStatus::SUCCESS, written),
            Ok(None) => {
                if let Err((request, status)) = framework.requeue(request) {
                    framework.complete(request, status, 0);
                }
                if !STATE.pending.has_queued() {
                    return;
                }
            }
            Err(status) => framework.complete(request, status, 0),
        }
    }
}

/// EvtFileCleanup: the handle's parked IOCTLs are cancelled, and if it was
/// the last agent every pending request gets its default verdict.
pub fn file_cleanup<F: Framework>(framework: &F, file: u64) {
    while let Some(request) = framework.take_parked_of(file) {
        framework.complete(request, NtStatus::CANCELLED, 0);
    }
    crate::control::ioctls::file_cleanup(file);
}

/// The input, copied: empty for a zero length (the framework refuses to
/// retrieve zero-length buffers), refused when longer than any IOCTL takes.
fn read_input<'c, F: Framework>(
    framework: &F,
    request: &F::Request,
    length: usize,
    copy: &'c mut [u8; MAX_INPUT_LEN],
) -> Result<&'c [u8]> {
    if length == 0 {
        return Ok(&[]);
    }
    let Some(destination) = copy.get_mut(..length) else {
        crate::log!(Level::Warning, "IOCTL input of {} bytes is over {}", length, MAX_INPUT_LEN);
        return Err(NtStatus::INVALID_BUFFER_SIZE);
    };
    framework.read_input(request, length, destination)
}

/// The output, zero-filled: empty for a zero length (as for the input).
fn output<'r, F: Framework>(framework: &F, request: &'r mut F::Request, length: usize) -> Result<&'r mut [u8]> {
    if length == 0 {
        return Ok(&mut []);
    }
    framework.output(request, length)
}
