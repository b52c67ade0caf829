//! A checking model of the KMDF objects a non-PnP control-device driver
//! uses: the control device and its initialization, a sequential IOCTL
//! queue, a manual queue, file objects, request buffers and completion,
//! and a periodic timer.
//!
//! It is the framework side of the driver's `control_device::Framework`:
//! the driver's adapter forwards each method to one function here, the
//! way the KMDF glue makes one WDF call. The rules checked are the
//! framework's documented ones ("Using Control Device Objects",
//! "Creating I/O Queues", WdfRequestCompleteWithInformation,
//! WdfIoQueueRetrieveNextRequest, WdfRequestRequeue, WdfTimerStop): a
//! request is completed once, only while the driver owns it; requeue only
//! to the manual queue it came from; I/O reaches the driver only after
//! `WdfControlFinishInitializing`; the timer stops before the driver's
//! unload returns. Breaking one is reported to the verifier as
//! [`ViolationKind::ApiMisuse`].
//!
//! One framework per process, like the kernel: [`reset`] (called by
//! `Kernel::boot`) starts over.

use crate::verifier::{self, ViolationKind};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

/// A request the framework presented to the driver. Not `Clone`: whoever
/// holds it owns the request (and its output buffer), and completing or
/// parking consumes it.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    id: u64,
    output: Vec<u8>,
}

impl Request {
    /// The request's id, for looking it up with [`completion`].
    pub fn id(&self) -> u64 {
        self.id
    }

    /// `WdfRequestRetrieveOutputBuffer(request, min_length)`: the whole
    /// output buffer, or `STATUS_BUFFER_TOO_SMALL` (also for a zero
    /// `min_length`, which the framework refuses).
    pub fn output(&mut self, min_length: usize) -> Result<&mut [u8], i32> {
        if min_length == 0 || self.output.len() < min_length {
            return Err(fwps_types::STATUS_BUFFER_TOO_SMALL);
        }
        Ok(&mut self.output)
    }
}

/// How a request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    /// The NTSTATUS it was completed with.
    pub status: i32,
    /// `IoStatus.Information`: bytes written to the output buffer.
    pub information: usize,
    /// The first `information` bytes of the output buffer.
    pub output: Vec<u8>,
}

/// Where a request is.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Place {
    /// Presented to, or retrieved by, the driver: the driver owns it.
    Driver,
    /// In the manual queue.
    Parked,
    /// Completed.
    Done(Completion),
}

struct RequestState {
    file: u64,
    input: Vec<u8>,
    /// The output buffer while the request is queued (the driver's
    /// [`Request`] holds it while the driver owns the request).
    output: Vec<u8>,
    place: Place,
    /// Handed to the driver by the manual queue (only such a request may
    /// be requeued).
    from_manual_queue: bool,
}

/// The control device's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Device {
    /// Not created (or deleted after a failed load).
    #[default]
    Absent,
    /// Created, initialization not finished: no I/O reaches the driver.
    Created,
    /// Open to I/O.
    Open,
}

#[derive(Default)]
struct State {
    device: Device,
    events: Vec<&'static str>,
    requests: BTreeMap<u64, RequestState>,
    parked: VecDeque<u64>,
    next_request: u64,
    next_file: u64,
    open_files: Vec<u64>,
    timer_running: bool,
    fail_next: Vec<&'static str>,
    before_requeue: Option<Box<dyn FnOnce() + Send>>,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

fn state() -> MutexGuard<'static, Option<State>> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    let mut guard = state();
    f(guard.get_or_insert_with(State::default))
}

fn misuse(message: String) {
    verifier::report(ViolationKind::ApiMisuse, message);
}

/// Forgets every object (a fresh boot).
pub fn reset() {
    *state() = Some(State::default());
}

/// Makes the next call named `call` (e.g. `"WdfDeviceCreate"`,
/// `"WdfTimerCreate"`, `"WdfRequestForwardToIoQueue"`) fail.
pub fn fail_next(call: &'static str) {
    with(|s| s.fail_next.push(call));
}

fn take_failure(s: &mut State, call: &'static str) -> bool {
    match s.fail_next.iter().position(|c| *c == call) {
        Some(at) => {
            s.fail_next.remove(at);
            true
        }
        None => false,
    }
}

/// The framework calls made so far, in order (`"WdfDeviceCreate"`, ...).
pub fn events() -> Vec<&'static str> {
    with(|s| s.events.clone())
}

/// The control device's state.
pub fn device() -> Device {
    with(|s| s.device)
}

/// Whether the periodic timer is running.
pub fn timer_running() -> bool {
    with(|s| s.timer_running)
}

/// `WdfControlDeviceInitAllocate` .. `WdfDeviceCreate` and the queues:
/// fails with `STATUS_INSUFFICIENT_RESOURCES` when made to.
pub fn create_control_device() -> Result<(), i32> {
    with(|s| {
        s.events.push("WdfDeviceCreate");
        if s.device != Device::Absent {
            misuse(format!("a second control device created (the first is {:?})", s.device));
        }
        if take_failure(s, "WdfDeviceCreate") {
            return Err(fwps_types::STATUS_INSUFFICIENT_RESOURCES);
        }
        s.device = Device::Created;
        Ok(())
    })
}

/// `WdfObjectDelete` on the control device after a failed load.
pub fn delete_control_device() {
    with(|s| {
        s.events.push("WdfObjectDelete");
        if s.device != Device::Created {
            misuse(format!("control device deleted in state {:?} (only a device never opened may be)", s.device));
        }
        s.device = Device::Absent;
    });
}

/// `WdfControlFinishInitializing`.
pub fn finish_initializing() {
    with(|s| {
        s.events.push("WdfControlFinishInitializing");
        if s.device != Device::Created {
            misuse(format!("WdfControlFinishInitializing in state {:?}", s.device));
        }
        s.device = Device::Open;
    });
}

/// `WdfTimerCreate` + `WdfTimerStart`.
pub fn start_timer() -> Result<(), i32> {
    with(|s| {
        s.events.push("WdfTimerStart");
        if s.device == Device::Absent {
            misuse("timer created without its parent device".into());
        }
        if take_failure(s, "WdfTimerCreate") {
            return Err(fwps_types::STATUS_INSUFFICIENT_RESOURCES);
        }
        s.timer_running = true;
        Ok(())
    })
}

/// `WdfTimerStop(Wait = TRUE)`.
pub fn stop_timer() {
    with(|s| {
        s.events.push("WdfTimerStop");
        s.timer_running = false;
    });
}

/// The framework deletes the control device after EvtDriverUnload: a
/// running timer or a request still owned by the driver is a violation.
pub fn driver_unloaded() {
    with(|s| {
        s.events.push("device deleted by the framework");
        if s.timer_running {
            misuse("the timer still runs when the framework deletes its parent device after unload".into());
        }
        for (id, request) in &s.requests {
            if request.place == Place::Driver {
                misuse(format!("request {id} neither completed nor parked at unload"));
            }
        }
        s.device = Device::Absent;
    });
}

/// A handle opened on the control device: its file object token.
pub fn open_file() -> u64 {
    with(|s| {
        if s.device != Device::Open {
            misuse(format!("a handle opened while the control device is {:?}", s.device));
        }
        s.next_file += 1;
        let file = 0xF11E_0000 + s.next_file;
        s.open_files.push(file);
        file
    })
}

/// The handle closes: the caller then runs the driver's EvtFileCleanup.
pub fn close_file(file: u64) {
    with(|s| s.open_files.retain(|f| *f != file));
}

/// An IOCTL on handle `file`, presented to the driver (what the
/// sequential queue hands EvtIoDeviceControl).
pub fn present_ioctl(file: u64, input: &[u8], output_length: usize) -> Request {
    with(|s| {
        if s.device != Device::Open {
            misuse(format!("an IOCTL presented while the control device is {:?}", s.device));
        }
        s.next_request += 1;
        let id = s.next_request;
        // Stale bytes, as a reused system buffer holds: the driver must
        // not let them reach the caller.
        let output = vec![0xCD; output_length];
        s.requests.insert(
            id,
            RequestState {
                file,
                input: input.to_vec(),
                output: Vec::new(),
                place: Place::Driver,
                from_manual_queue: false,
            },
        );
        Request { id, output }
    })
}

/// How request `id` ended, if it has.
pub fn completion(id: u64) -> Option<Completion> {
    with(|s| match s.requests.get(&id).map(|r| &r.place) {
        Some(Place::Done(completion)) => Some(completion.clone()),
        _ => None,
    })
}

/// How many requests wait in the manual queue.
pub fn parked_count() -> usize {
    with(|s| s.parked.len())
}

fn owned<'s>(s: &'s mut State, request: &Request, call: &str) -> Option<&'s mut RequestState> {
    match s.requests.get_mut(&request.id) {
        Some(state) if state.place == Place::Driver => Some(state),
        Some(state) => {
            misuse(format!("{call} on request {} the driver does not own ({:?})", request.id, state.place));
            None
        }
        None => {
            misuse(format!("{call} on unknown request {}", request.id));
            None
        }
    }
}

/// `WdfRequestRetrieveInputBuffer(request, length)` and a copy of it.
pub fn read_input(request: &Request, length: usize, copy: &mut [u8]) -> Result<(), i32> {
    with(|s| {
        let state = owned(s, request, "WdfRequestRetrieveInputBuffer").ok_or(fwps_types::STATUS_INVALID_PARAMETER)?;
        if length == 0 || state.input.len() < length || copy.len() != length {
            return Err(fwps_types::STATUS_BUFFER_TOO_SMALL);
        }
        copy.copy_from_slice(&state.input[..length]);
        Ok(())
    })
}

/// `WdfRequestGetFileObject`.
pub fn file_of(request: &Request) -> u64 {
    with(|s| s.requests.get(&request.id).map_or(0, |r| r.file))
}

/// `WdfRequestCompleteWithInformation`.
pub fn complete(request: Request, status: i32, information: usize) {
    with(|s| {
        let Some(state) = owned(s, &request, "WdfRequestCompleteWithInformation") else { return };
        let mut output = request.output;
        if information > output.len() {
            misuse(format!(
                "request {} completed with Information {} over its {}-byte output buffer",
                request.id,
                information,
                output.len()
            ));
        }
        output.truncate(information);
        state.place = Place::Done(Completion { status, information, output });
    });
}

/// `WdfRequestForwardToIoQueue` to the manual queue.
pub fn park(request: Request) -> Result<(), (Request, i32)> {
    with(|s| {
        if take_failure(s, "WdfRequestForwardToIoQueue") {
            return Err((request, fwps_types::STATUS_INSUFFICIENT_RESOURCES));
        }
        let Some(state) = owned(s, &request, "WdfRequestForwardToIoQueue") else { return Ok(()) };
        state.place = Place::Parked;
        state.output = request.output;
        s.parked.push_back(request.id);
        Ok(())
    })
}

/// `WdfIoQueueRetrieveNextRequest` on the manual queue.
pub fn take_parked() -> Option<Request> {
    with(|s| {
        let id = s.parked.pop_front()?;
        Some(hand_out(s, id))
    })
}

/// Runs `action` inside the next `WdfRequestRequeue`, before the request
/// is back in the queue: what another processor may do meanwhile (pend a
/// classification whose hook then finds the manual queue empty).
pub fn before_next_requeue(action: impl FnOnce() + Send + 'static) {
    with(|s| s.before_requeue = Some(Box::new(action)));
}

/// `WdfRequestRequeue`: back to the head of the manual queue.
pub fn requeue(request: Request) -> Result<(), (Request, i32)> {
    let action = with(|s| s.before_requeue.take());
    if let Some(action) = action {
        action();
    }
    with(|s| {
        if take_failure(s, "WdfRequestRequeue") {
            return Err((request, fwps_types::STATUS_INSUFFICIENT_RESOURCES));
        }
        let Some(state) = owned(s, &request, "WdfRequestRequeue") else { return Ok(()) };
        if !state.from_manual_queue {
            // WdfRequestRequeue: only a request the driver got from a
            // manual queue goes back to its head.
            misuse(format!("WdfRequestRequeue on request {}, which no manual queue handed out", request.id));
            return Err((request, fwps_types::STATUS_INVALID_DEVICE_REQUEST));
        }
        state.place = Place::Parked;
        state.output = request.output;
        s.parked.push_front(request.id);
        Ok(())
    })
}

/// `WdfIoQueueRetrieveRequestByFileObject` on the manual queue.
pub fn take_parked_of(file: u64) -> Option<Request> {
    with(|s| {
        let at = s.parked.iter().position(|id| s.requests.get(id).is_some_and(|r| r.file == file))?;
        let id = s.parked.remove(at)?;
        Some(hand_out(s, id))
    })
}

/// A queued request goes back to the driver, with its output buffer.
fn hand_out(s: &mut State, id: u64) -> Request {
    let output = match s.requests.get_mut(&id) {
        Some(state) => {
            state.place = Place::Driver;
            state.from_manual_queue = true;
            std::mem::take(&mut state.output)
        }
        None => Vec::new(),
    };
    Request { id, output }
}
