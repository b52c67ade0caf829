//! Conformance: pending at the ALE authorization layers (simkernel/CONFORMANCE.md,
//! rows Q1-Q3). Sources: WDD "Processing Classify Callouts Asynchronously";
//! DDI `nf-fwpsk-fwpspendoperation0` (STATUS_FWP_CANNOT_PEND),
//! `nf-fwpsk-fwpscompleteoperation0` (a completed ALE_AUTH_CONNECT is
//! reauthorized; at ALE_AUTH_RECV_ACCEPT the callout reinjects instead).
//! Driven by probes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod probe;

use fwps_types::*;
use probe::Event;
use wfpcallout_simkernel::engine::{self, Connection, FilterAction, reauthorization};

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

/// Q3: the BLOCK + ABSORB answer binds the callout that pended (DDI
/// `nf-fwpsk-fwpspendoperation0`: "the callout driver must ... set the
/// action to FWP_ACTION_BLOCK" and absorb). A callout of a lower sublayer
/// that runs after it in the same classification answers as usual (here a
/// permit, which the pended hard block overrides), and no violation is
/// reported for it. Red when the rule is checked for every callout that
/// runs after the pend.
#[test]
fn a_callout_after_the_pending_one_answers_as_usual() {
    let mut kernel = probe::boot();
    let high = probe::Probe::add_weighted(93, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4, 0x8000);
    let low = probe::Probe::add_weighted(94, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4, 0x10);
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
