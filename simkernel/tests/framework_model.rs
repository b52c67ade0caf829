//! Conformance: the KMDF objects the simulated framework plays
//! (simkernel/CONFORMANCE.md, rows K1-K5; completing a request twice cannot be expressed: completing consumes it), driven directly, without the
//! driver. Sources: DDI `nf-wdfrequest-wdfrequestcompletewithinformation`,
//! `nf-wdfrequest-wdfrequestrequeue`, `nf-wdfcontrol-wdfcontrolfinishinitializing`,
//! `nf-wdfio-wdfioqueueretrievenextrequest`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

use fwps_types::*;
use wfpcallout_simkernel::verifier::{self, ViolationKind};
use wfpcallout_simkernel::{Kernel, wdf};

fn misuses() -> usize {
    verifier::violations().iter().filter(|v| v.kind == ViolationKind::ApiMisuse).count()
}

fn open_device() -> Kernel {
    let kernel = Kernel::boot();
    wdf::create_control_device().unwrap();
    wdf::finish_initializing();
    kernel
}

/// K1: a request is completed once; `Information` stays within the output
/// buffer, and only those bytes go back.
#[test]
fn a_request_is_completed_once_within_its_buffer() {
    let _kernel = open_device();
    let file = wdf::open_file();
    let mut request = wdf::present_ioctl(file, &[], 8);
    let id = request.id();
    request.output(8).unwrap()[..3].copy_from_slice(b"abc");
    wdf::complete(request, STATUS_SUCCESS, 3);
    let done = wdf::completion(id).unwrap();
    assert_eq!((done.status, done.output.as_slice()), (STATUS_SUCCESS, &b"abc"[..]));
    assert_eq!(misuses(), 0);
    let too_much = wdf::present_ioctl(file, &[], 4);
    wdf::complete(too_much, STATUS_SUCCESS, 5);
    assert_eq!(misuses(), 1, "Information over the output buffer is reported");
}

/// K2: no I/O reaches the driver before WdfControlFinishInitializing.
#[test]
fn no_io_before_the_device_finishes_initializing() {
    let _kernel = Kernel::boot();
    wdf::create_control_device().unwrap();
    let _ = wdf::present_ioctl(0xF11E, &[], 0);
    assert_eq!(misuses(), 1);
}

/// K3: only a request retrieved from the manual queue may be requeued, to
/// the head of that queue.
#[test]
fn only_a_request_from_the_manual_queue_is_requeued_to_its_head() {
    let _kernel = open_device();
    let file = wdf::open_file();
    let presented = wdf::present_ioctl(file, &[], 0);
    let (presented, status) = wdf::requeue(presented).unwrap_err();
    assert_eq!((status, misuses()), (STATUS_INVALID_DEVICE_REQUEST, 1));
    wdf::complete(presented, STATUS_SUCCESS, 0);

    let first = wdf::present_ioctl(file, &[], 0);
    let second = wdf::present_ioctl(file, &[], 0);
    let (first_id, second_id) = (first.id(), second.id());
    wdf::park(first).unwrap();
    wdf::park(second).unwrap();
    let taken = wdf::take_parked().unwrap();
    assert_eq!(taken.id(), first_id, "oldest first");
    wdf::requeue(taken).unwrap();
    assert_eq!(wdf::take_parked().unwrap().id(), first_id, "back at the head");
    assert_eq!(wdf::take_parked().unwrap().id(), second_id);
    assert_eq!(misuses(), 1);
}

/// K4: a parked request is retrieved by the file object it came through
/// (cleanup), and is the driver's again to complete.
#[test]
fn a_parked_request_is_retrieved_by_its_file_object() {
    let _kernel = open_device();
    let file = wdf::open_file();
    let request = wdf::present_ioctl(file, &[], 0);
    let id = request.id();
    wdf::park(request).unwrap();
    let taken = wdf::take_parked_of(file).unwrap();
    assert_eq!(taken.id(), id, "retrieved by its file object");
    wdf::complete(taken, STATUS_CANCELLED, 0);
    assert!(wdf::take_parked_of(file).is_none());
    assert_eq!(misuses(), 0);
}

/// K5: the framework deletes the control device after EvtDriverUnload; a
/// request still owned by the driver then is reported, and so is a timer
/// still running (the harsher reading: see the row).
#[test]
fn nothing_owned_and_no_timer_running_when_the_device_goes() {
    let _kernel = open_device();
    wdf::start_timer().unwrap();
    let _kept = wdf::present_ioctl(wdf::open_file(), &[], 0);
    wdf::driver_unloaded();
    assert_eq!(misuses(), 2);
}
