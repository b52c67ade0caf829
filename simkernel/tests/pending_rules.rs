//! Conformance: pending at the ALE authorization layers (simkernel/CONFORMANCE.md,
//! rows Q1-Q4). Sources: WDD "Processing Classify Callouts Asynchronously";
//! DDI `nf-fwpsk-fwpspendoperation0` (STATUS_FWP_CANNOT_PEND),
//! `nf-fwpsk-fwpscompleteoperation0` (a completed ALE_AUTH_CONNECT is
//! reauthorized; at ALE_AUTH_RECV_ACCEPT the callout reinjects instead).
//! Driven by probes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod probe;

use fwps_types::*;
use probe::{Event, Probe};
use std::ffi::c_void;
use std::sync::Mutex;
use wfpcallout_simkernel::engine::{self, Connection, FilterAction, flows, reauthorization};
use wfpcallout_simkernel::verifier::{self, ViolationKind};

fn classifications(filter: u64) -> usize {
    probe::events().iter().filter(|e| **e == Event::Classify(filter)).count()
}

/// Q1: completing an operation pended at ALE_AUTH_RECV_ACCEPT does not
/// reauthorize: no classification follows the completion.
#[test]
fn completion_at_recv_accept_does_not_reauthorize() {
    let (kernel, _probe, id) = probe::boot_with_filter(91, fwp::FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4);
    probe::pend_next(true);
    let inbound = Connection {
        layer_id: FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V4,
        local_port: 8080,
        ..Connection::tcp_connect_v4(50_000)
    };
    let first = engine::classify(&inbound);
    let operation = first.pended.expect("pended");
    assert!(first.absorbed && !first.permitted(), "a pended classification answers BLOCK + ABSORB");
    let before = classifications(id);
    engine::pending::FwpsCompleteOperation0(operation as *mut _, std::ptr::null_mut());
    let completion = engine::pending::take_completions().pop().unwrap();
    assert!(completion.reauthorization.is_none(), "recv-accept: no reauthorization");
    assert_eq!(classifications(id), before, "no classification after the completion");
    kernel.assert_clean();
}

/// Q2: a reauthorization cannot be pended: FwpsPendOperation0 answers
/// STATUS_FWP_CANNOT_PEND, and the callout's own answer stands.
#[test]
fn a_reauthorization_cannot_pend() {
    let (kernel, probe, _id) = probe::boot_with_filter(92, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4);
    probe::answer(fwp::FWP_ACTION_PERMIT);
    let connection = Connection::tcp_connect_v4(443);
    assert!(engine::classify(&connection).permitted());
    let other = engine::add_filter(&probe.static_filter(FilterAction::Permit, 0, 0)).unwrap();
    probe::pend_next(true);
    let result = reauthorization::next_packet(&connection).expect("due after the policy change");
    assert_eq!(
        probe::events().iter().rfind(|e| matches!(e, Event::PendStatus(_))),
        Some(&Event::PendStatus(STATUS_FWP_CANNOT_PEND))
    );
    assert!(result.pended.is_none() && result.permitted(), "the probe's permit stands");
    engine::delete_filter(other).unwrap();
    kernel.assert_clean();
}

/// The operation the permitting callout pended.
static PENDED: Mutex<usize> = Mutex::new(0);

/// Pends, then answers PERMIT with the write right kept (wrong).
unsafe extern "system" fn pend_and_permit(
    _: *const FWPS_INCOMING_VALUES0,
    metadata: *const FWPS_INCOMING_METADATA_VALUES0,
    _: *mut c_void,
    _: *const c_void,
    _: *const FWPS_FILTER2,
    _: u64,
    out: *mut FWPS_CLASSIFY_OUT0,
) {
    // SAFETY: the engine passes valid metadata for the call.
    let metadata = unsafe { &*metadata };
    // SAFETY: classifyOut is the callout's for the call.
    let out = unsafe { &mut *out };
    let mut context = std::ptr::null_mut();
    // SAFETY: the handle comes from this classification's metadata.
    assert_eq!(unsafe { engine::pending::FwpsPendOperation0(metadata.completionHandle, &mut context) }, 0);
    *PENDED.lock().unwrap() = context as usize;
    out.actionType = fwp::FWP_ACTION_PERMIT;
}

/// Q3: pending is offered at the ALE authorization layers only: their
/// metadata carries a completion handle, ALE_FLOW_ESTABLISHED's does not;
/// and a pended classification that answers anything but BLOCK + ABSORB
/// with the write right cleared is reported.
#[test]
fn pending_is_offered_at_the_ale_auth_layers_and_must_block_and_absorb() {
    let mut kernel = probe::boot();
    let flow = Probe::add(93, fwp::FWPM_LAYER_ALE_FLOW_ESTABLISHED_V4);
    assert_eq!(flow.register(kernel.device_object()), STATUS_SUCCESS);
    engine::add_filter(&flow.filter_with(FilterAction::CalloutInspection)).unwrap();
    probe::pend_next(true);
    let connection = Connection { layer_id: FWPS_LAYER_ALE_FLOW_ESTABLISHED_V4, ..Connection::tcp_connect_v4(443) };
    let (handle, result) = flows::establish_flow(&connection);
    assert!(result.pended.is_none());
    assert!(!probe::events().iter().any(|e| matches!(e, Event::PendStatus(_))), "no completion handle to pend with");
    flows::end_flow(handle);
    assert_eq!(flow.unregister(), STATUS_SUCCESS);

    let connect = Probe::add(94, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4);
    let callout = FWPS_CALLOUT2 {
        calloutKey: connect.key,
        flags: 0,
        classifyFn: Some(pend_and_permit),
        notifyFn: Some(probe::noop_notify),
        flowDeleteFn: None,
    };
    let mut id = 0;
    // SAFETY: valid device object, callout and out pointer.
    assert_eq!(unsafe { engine::FwpsCalloutRegister2(kernel.device_object(), &callout, &mut id) }, 0);
    let filter = engine::add_filter(&connect.filter()).unwrap();
    let result = engine::classify(&Connection::tcp_connect_v4(443));
    assert!(result.pended.is_some());
    let violations = verifier::take();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].kind, ViolationKind::ApiMisuse);
    assert!(violations[0].message.contains("must return BLOCK + ABSORB"), "{}", violations[0].message);
    engine::delete_filter(filter).unwrap();
    let operation = *PENDED.lock().unwrap();
    engine::pending::FwpsCompleteOperation0(operation as *mut c_void, std::ptr::null_mut());
    assert_eq!(engine::FwpsCalloutUnregisterById0(id), STATUS_SUCCESS);
    kernel.assert_unloaded_clean();
}

/// Q4: the BLOCK + ABSORB answer binds the callout that pended (DDI
/// `nf-fwpsk-fwpspendoperation0`: "the callout driver must ... set the
/// action to FWP_ACTION_BLOCK" and absorb). A callout of a lower sublayer
/// that runs after it in the same classification answers as usual (here a
/// permit, which the pended hard block overrides), and no violation is
/// reported for it. Red when the rule is checked for every callout that
/// runs after the pend.
#[test]
fn a_callout_after_the_pending_one_answers_as_usual() {
    let mut kernel = probe::boot();
    let high = probe::Probe::add_weighted(95, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4, 0x8000);
    let low = probe::Probe::add_weighted(96, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4, 0x10);
    assert_eq!(high.register(kernel.device_object()), STATUS_SUCCESS);
    assert_eq!(low.register(kernel.device_object()), STATUS_SUCCESS);
    let pending_filter = engine::add_filter(&high.filter()).unwrap();
    let later_filter = engine::add_filter(&low.filter()).unwrap();
    low.answer(fwp::FWP_ACTION_PERMIT, false);
    probe::pend_next(true);
    let result = engine::classify(&Connection::tcp_connect_v4(443));
    let operation = result.pended.expect("the high probe pended");
    assert!(classifications(later_filter) == 1, "the low probe ran after the pend");
    assert!(result.absorbed && !result.permitted(), "the pended hard BLOCK + ABSORB wins");
    assert_eq!(result.decided_by, Some(pending_filter));
    engine::pending::FwpsCompleteOperation0(operation as *mut _, std::ptr::null_mut());
    let _ = engine::pending::take_completions();
    engine::delete_filter(later_filter).unwrap();
    engine::delete_filter(pending_filter).unwrap();
    kernel.assert_clean();
}
