//! The control device's load order, IOCTL handling, parked "get request"
//! IOCTLs and cleanup: the portable half of the KMDF glue
//! (`control_device`), driven through the simulated framework exactly as
//! the glue drives WDF.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use fwps_types::*;
use wfpcallout::callbacks::state::STATE;
use wfpcallout::control::ioctls::{GET_REQUEST, GET_VERSION, MAX_INPUT_LEN, SET_VERDICT};
use wfpcallout::glue::sim_framework;
use wfpcallout::platform::status::NtStatus;
use wfpcallout_scenario::{Harness, Layer};
use wfpcallout_simkernel::engine::{self, pending};
use wfpcallout_simkernel::verifier;
use wfpcallout_simkernel::wdf::{self, Device};
use wfpcallout_simkernel::{Kernel, faults};
use wfpcallout_wire::{
    ASK_REQUEST_LEN, AskRequestRepr, Label, LogLevel, PolicyAction, PolicyRepr, VERSION_INFO_LEN, Verdict,
    VerdictMessageRepr, VersionInfoRepr,
};

fn ask_policy() -> PolicyRepr {
    PolicyRepr {
        action: PolicyAction::Ask { timeout_ms: 5_000, default_verdict: Verdict::Block },
        log_level: LogLevel::Off,
        label: Label::new("ask").unwrap(),
    }
}

/// Boots, loads through the framework, and adds an ask filter at connect.
fn loaded_with_ask() -> (Kernel, u64) {
    let mut kernel = Kernel::boot();
    sim_framework::load(wfpcallout_scenario::device_object(&mut kernel)).unwrap();
    let mut spec = Harness::filter_spec(Layer::ConnectV4);
    spec.provider_context = Some(engine::add_provider_context(&ask_policy().to_bytes()));
    let filter = engine::add_filter(&spec).unwrap();
    (kernel, filter)
}

fn unload_clean(kernel: Kernel) {
    sim_framework::unload();
    kernel.assert_unloaded_clean();
}

fn status(id: u64) -> i32 {
    wdf::completion(id).expect("request completed").status
}

#[test]
fn load_opens_the_device_only_after_the_callouts_and_the_hook_then_starts_the_timer() {
    let mut kernel = Kernel::boot();
    sim_framework::load(wfpcallout_scenario::device_object(&mut kernel)).unwrap();
    // (The adapter reports a device opened before every callout is
    // registered or before the hook is installed; assert_clean sees it.)
    assert_eq!(wdf::events(), ["WdfDeviceCreate", "WdfControlFinishInitializing", "WdfTimerStart"]);
    assert_eq!(wdf::device(), Device::Open);
    assert!(wdf::timer_running());
    assert!(STATE.agents.has_request_available_hook());
    kernel.assert_clean();
    unload_clean(kernel);
    let events = wdf::events();
    assert_eq!(
        &events[3..],
        ["WdfTimerStop", "device deleted by the framework"],
        "timer stopped before unload returns"
    );
    assert!(!STATE.agents.has_request_available_hook(), "no pairing after unload");
}

#[test]
fn a_failed_callout_registration_deletes_the_device_unopened_and_leaks_nothing() {
    let mut kernel = Kernel::boot();
    faults::fail_call("FwpsCalloutRegister2", 1, STATUS_UNSUCCESSFUL);
    assert_eq!(
        sim_framework::load(wfpcallout_scenario::device_object(&mut kernel)),
        Err(NtStatus::from_raw(STATUS_UNSUCCESSFUL))
    );
    assert_eq!(wdf::events(), ["WdfDeviceCreate", "WdfObjectDelete"]);
    assert_eq!(wdf::device(), Device::Absent);
    assert!(!wdf::timer_running());
    kernel.assert_unloaded_clean();
}

#[test]
fn a_failed_device_creation_fails_the_load_before_any_callout_exists() {
    let mut kernel = Kernel::boot();
    wdf::fail_next("WdfDeviceCreate");
    assert_eq!(
        sim_framework::load(wfpcallout_scenario::device_object(&mut kernel)),
        Err(NtStatus::INSUFFICIENT_RESOURCES)
    );
    assert_eq!(wdf::events(), ["WdfDeviceCreate"]);
    assert!(!STATE.loaded.load(std::sync::atomic::Ordering::Acquire));
    kernel.assert_unloaded_clean();
}

#[test]
fn no_timer_degrades_the_driver_but_it_loads() {
    let mut kernel = Kernel::boot();
    wdf::fail_next("WdfTimerCreate");
    sim_framework::load(wfpcallout_scenario::device_object(&mut kernel)).unwrap();
    assert_eq!(wdf::device(), Device::Open);
    assert!(!wdf::timer_running());
    unload_clean(kernel);
}

#[test]
fn ioctls_are_answered_and_bad_buffers_refused_with_nothing_stale_returned() {
    let (kernel, _) = loaded_with_ask();
    let file = wdf::open_file();

    let id = sim_framework::ioctl(file, GET_VERSION, &[], VERSION_INFO_LEN + 16);
    let done = wdf::completion(id).unwrap();
    assert_eq!((done.status, done.information), (STATUS_SUCCESS, VERSION_INFO_LEN));
    VersionInfoRepr::parse(&done.output).unwrap();

    let too_long = vec![0u8; MAX_INPUT_LEN + 1];
    assert_eq!(status(sim_framework::ioctl(file, GET_VERSION, &too_long, 64)), STATUS_INVALID_BUFFER_SIZE);
    assert_eq!(status(sim_framework::ioctl(file, GET_VERSION, &[], 0)), STATUS_BUFFER_TOO_SMALL);
    assert_eq!(status(sim_framework::ioctl(file, 0x0022_2FFF, &[], 64)), STATUS_INVALID_DEVICE_REQUEST);
    // Completed with no bytes: nothing of the stale buffer goes back.
    assert!(wdf::completion(sim_framework::ioctl(file, GET_VERSION, &[1], 64)).unwrap().output.is_empty());

    sim_framework::close(file);
    unload_clean(kernel);
}

#[test]
fn a_get_request_with_nothing_pending_is_parked_and_paired_when_classify_pends() {
    let (kernel, filter) = loaded_with_ask();
    let agent = wdf::open_file();
    let get = sim_framework::ioctl(agent, GET_REQUEST, &[], ASK_REQUEST_LEN);
    assert_eq!(wdf::completion(get), None, "nothing pending: parked");
    assert_eq!(wdf::parked_count(), 1);

    let first = engine::classify(&Layer::ConnectV4.connection(443));
    assert!(first.pended.is_some());
    let done = wdf::completion(get).expect("the hook paired the parked IOCTL");
    assert_eq!((done.status, done.information), (STATUS_SUCCESS, ASK_REQUEST_LEN));
    let request = AskRequestRepr::parse(&done.output).unwrap();
    assert_eq!((request.filter_id, request.remote_port), (filter, 443));

    let verdict = VerdictMessageRepr { request_id: request.request_id, verdict: Verdict::Permit }.to_bytes();
    assert_eq!(status(sim_framework::ioctl(agent, SET_VERDICT, &verdict, 0)), STATUS_SUCCESS);
    let completions = pending::take_completions();
    assert!(completions[0].reauthorization.unwrap().permitted());

    sim_framework::close(agent);
    unload_clean(kernel);
}

/// The lost wake-up, step by step: the pairing routine holds the only
/// parked IOCTL and finds nothing queued; before it puts the IOCTL back,
/// classify on another processor pends a request, and its own pairing
/// finds the manual queue empty. The first routine must look again.
#[test]
fn a_request_pended_while_the_parked_ioctl_is_out_is_not_lost() {
    let (kernel, filter) = loaded_with_ask();
    let agent = wdf::open_file();
    // The get-request parks, and the pairing routine that follows takes it
    // straight back out, finds nothing queued and requeues it: classify
    // pends in between.
    wdf::before_next_requeue(|| {
        let pended = engine::classify(&Layer::ConnectV4.connection(8443));
        assert!(pended.pended.is_some());
        assert_eq!(wdf::parked_count(), 0, "the IOCTL is out: this classify's hook pairs nothing");
    });
    let get = sim_framework::ioctl(agent, GET_REQUEST, &[], ASK_REQUEST_LEN);

    let done = wdf::completion(get).expect("the request pended in the gap reached the parked IOCTL");
    let request = AskRequestRepr::parse(&done.output).unwrap();
    assert_eq!((request.filter_id, request.remote_port), (filter, 8443));
    assert!(!STATE.pending.has_queued());
    assert_eq!(wdf::parked_count(), 0);

    sim_framework::close(agent);
    unload_clean(kernel);
}

#[test]
fn closing_the_last_agent_cancels_its_parked_ioctls_and_ends_pending_requests() {
    let (kernel, _) = loaded_with_ask();
    let agent = wdf::open_file();
    let bystander = wdf::open_file();
    let first = sim_framework::ioctl(agent, GET_REQUEST, &[], ASK_REQUEST_LEN);
    let pended = engine::classify(&Layer::ConnectV4.connection(443));
    assert!(pended.pended.is_some());
    assert_eq!(status(first), STATUS_SUCCESS);
    let parked = sim_framework::ioctl(agent, GET_REQUEST, &[], ASK_REQUEST_LEN);
    assert!(engine::classify(&Layer::ConnectV4.connection(444)).pended.is_some());
    let waiting = sim_framework::ioctl(bystander, GET_VERSION, &[], VERSION_INFO_LEN);
    assert_eq!(status(waiting), STATUS_SUCCESS);
    assert_eq!(status(parked), STATUS_SUCCESS, "paired with the second pend");
    let third_get = sim_framework::ioctl(agent, GET_REQUEST, &[], ASK_REQUEST_LEN);
    assert_eq!(wdf::completion(third_get), None);

    sim_framework::close(agent);
    assert_eq!(status(third_get), STATUS_CANCELLED);
    let ended = pending::take_completions();
    assert_eq!(ended.len(), 2, "both delivered requests got their default verdict");
    assert!(ended.iter().all(|c| !c.reauthorization.unwrap().permitted()));
    sim_framework::close(bystander);
    unload_clean(kernel);
}

#[test]
fn a_refused_park_completes_the_request_with_the_frameworks_status() {
    let (kernel, _) = loaded_with_ask();
    let agent = wdf::open_file();
    wdf::fail_next("WdfRequestForwardToIoQueue");
    let get = sim_framework::ioctl(agent, GET_REQUEST, &[], ASK_REQUEST_LEN);
    assert_eq!(status(get), STATUS_INSUFFICIENT_RESOURCES);
    assert_eq!(wdf::parked_count(), 0);
    sim_framework::close(agent);
    unload_clean(kernel);
}

#[test]
fn a_get_request_with_a_short_buffer_is_refused_not_parked() {
    let (kernel, _) = loaded_with_ask();
    let agent = wdf::open_file();
    assert_eq!(status(sim_framework::ioctl(agent, GET_REQUEST, &[], ASK_REQUEST_LEN - 1)), STATUS_BUFFER_TOO_SMALL);
    assert_eq!(status(sim_framework::ioctl(agent, GET_REQUEST, &[0], ASK_REQUEST_LEN)), STATUS_INVALID_BUFFER_SIZE);
    assert_eq!(wdf::parked_count(), 0);
    sim_framework::close(agent);
    unload_clean(kernel);
}

#[test]
fn the_timer_times_out_pended_requests_only_while_it_runs() {
    let (kernel, _) = loaded_with_ask();
    let agent = wdf::open_file();
    let get = sim_framework::ioctl(agent, GET_REQUEST, &[], ASK_REQUEST_LEN);
    assert!(engine::classify(&Layer::ConnectV4.connection(443)).pended.is_some());
    assert_eq!(status(get), STATUS_SUCCESS);
    wfpcallout_simkernel::clock::advance_ms(6_000);
    sim_framework::fire_timer();
    let ended = pending::take_completions();
    assert_eq!(ended.len(), 1, "timed out to its default verdict");
    assert!(!ended[0].reauthorization.unwrap().permitted());
    sim_framework::close(agent);
    unload_clean(kernel);
    assert!(verifier::violations().is_empty());
}

#[test]
fn a_refused_requeue_completes_the_parked_ioctl_with_the_frameworks_status() {
    let (kernel, _) = loaded_with_ask();
    let agent = wdf::open_file();
    // Parking runs the pairing routine, which takes the IOCTL back out,
    // finds nothing queued and tries to put it back: refused.
    wdf::fail_next("WdfRequestRequeue");
    let get = sim_framework::ioctl(agent, GET_REQUEST, &[], ASK_REQUEST_LEN);
    assert_eq!(status(get), STATUS_INSUFFICIENT_RESOURCES, "completed, not lost");
    assert_eq!(wdf::parked_count(), 0);
    sim_framework::close(agent);
    unload_clean(kernel);
}

#[test]
fn a_request_never_left_owned_by_the_driver_after_any_path() {
    // Every path above ends each request completed or queued; the model
    // reports one left owned when the framework deletes the device.
    let (kernel, _) = loaded_with_ask();
    let agent = wdf::open_file();
    for (code, input, output) in [
        (GET_VERSION, vec![], VERSION_INFO_LEN),
        (GET_REQUEST, vec![], ASK_REQUEST_LEN),
        (SET_VERDICT, vec![0; 3], 0),
        (0x0022_2FFF, vec![], 0),
    ] {
        sim_framework::ioctl(agent, code, &input, output);
    }
    sim_framework::close(agent);
    unload_clean(kernel);
}
