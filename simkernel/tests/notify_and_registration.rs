//! Conformance: notifyFn and callout registration (simkernel/CONFORMANCE.md,
//! rows N1-N6, N8 and R1-R6). Driven by probe callouts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod probe;

use fwps_types::*;
use probe::{Event, Probe};
use wfpcallout_simkernel::engine::{self, Connection, FilterAction, FilterSpec};
use wfpcallout_simkernel::irql;
use wfpcallout_simkernel::verifier::{self, ViolationKind};

fn connect() -> Connection {
    Connection::tcp_connect_v4(80)
}

fn registered_probe(n: u128) -> (wfpcallout_simkernel::Kernel, Probe) {
    let mut kernel = probe::boot();
    let probe = Probe::add(n, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4);
    assert_eq!(probe.register(kernel.device_object()), STATUS_SUCCESS);
    (kernel, probe)
}

/// N1: adding a filter that names a registered callout calls notifyFn ADD
/// with the filter, and classification then reaches the callout.
#[test]
fn add_sends_add_and_classify_reaches_the_callout() {
    let (kernel, probe) = registered_probe(21);
    let id = engine::add_filter(&probe.filter()).unwrap();
    assert_eq!(probe::position(&Event::Add(id)), Some(1), "{:?}", probe::events());
    let _ = engine::classify(&connect());
    assert!(probe::events().contains(&Event::Classify(id)));
    engine::delete_filter(id).unwrap();
    kernel.assert_clean();
}

/// N2: filters that existed before registration get no ADD; their
/// deletion still sends DELETE (DELETE without ADD), with filterKey NULL.
#[test]
fn filters_from_before_registration_get_delete_without_add() {
    let mut kernel = probe::boot();
    let probe = Probe::add(22, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4);
    let id = engine::add_filter(&probe.filter()).unwrap();
    assert_eq!(probe.register(kernel.device_object()), STATUS_SUCCESS);
    assert!(probe::events().is_empty(), "no ADD for an existing filter: {:?}", probe::events());
    engine::delete_filter(id).unwrap();
    assert!(probe::events().contains(&Event::Delete(id)), "{:?}", probe::events());
    assert!(!probe::events().iter().any(|e| matches!(e, Event::Add(_) | Event::DeleteWithKey(_))));
    kernel.assert_clean();
}

/// N3: a failure returned for ADD vetoes the filter: the add fails with
/// that status and the filter does not exist.
#[test]
fn a_failed_add_notification_vetoes_the_filter() {
    let (kernel, probe) = registered_probe(23);
    probe::notify_returns(STATUS_INVALID_PARAMETER, STATUS_SUCCESS);
    let before = engine::filter_ids();
    assert_eq!(engine::add_filter(&probe.filter()), Err(STATUS_INVALID_PARAMETER));
    assert_eq!(engine::filter_ids(), before, "the vetoed filter is not in the engine");
    let _ = engine::classify(&connect());
    assert!(!probe::events().iter().any(|e| matches!(e, Event::Classify(_))));
    kernel.assert_clean();
}

/// N4: a failure returned for DELETE is ignored: the filter is deleted.
#[test]
fn a_failed_delete_notification_is_ignored() {
    let (kernel, probe) = registered_probe(24);
    let id = engine::add_filter(&probe.filter()).unwrap();
    probe::notify_returns(STATUS_SUCCESS, STATUS_UNSUCCESSFUL);
    assert_eq!(engine::delete_filter(id), Ok(()));
    assert!(!engine::filter_ids().contains(&id));
    kernel.assert_clean();
}

/// N5: notifyFn runs at IRQL <= DISPATCH_LEVEL; the simulator chooses
/// PASSIVE_LEVEL or DISPATCH_LEVEL at random per call, so both happen.
#[test]
fn notify_runs_at_passive_or_dispatch_chosen_per_call() {
    let (kernel, probe) = registered_probe(25);
    for _ in 0..64 {
        let id = engine::add_filter(&probe.filter()).unwrap();
        engine::delete_filter(id).unwrap();
    }
    let levels: Vec<u8> =
        probe::events().iter().filter_map(|e| if let Event::NotifyIrql(l) = e { Some(*l) } else { None }).collect();
    assert_eq!(levels.len(), 128);
    assert!(levels.contains(&PASSIVE_LEVEL) && levels.contains(&DISPATCH_LEVEL), "{levels:?}");
    assert!(levels.iter().all(|&l| l <= DISPATCH_LEVEL));
    kernel.assert_clean();
}

/// N6: a test can fix the notifyFn IRQL.
#[test]
fn notify_irql_can_be_fixed() {
    let (kernel, probe) = registered_probe(26);
    engine::set_notify_irql(DISPATCH_LEVEL);
    let id = engine::add_filter(&probe.filter()).unwrap();
    engine::delete_filter(id).unwrap();
    assert_eq!(probe::events().iter().filter(|e| **e == Event::NotifyIrql(DISPATCH_LEVEL)).count(), 2);
    kernel.assert_clean();
}

/// N8: a notification of a type the callout does not know is delivered as
/// is (the callout must ignore it and return STATUS_SUCCESS).
#[test]
fn unknown_notify_types_reach_the_callout() {
    let (kernel, probe) = registered_probe(27);
    let id = engine::add_filter(&probe.filter()).unwrap();
    assert_eq!(engine::send_notify(id, 7), Ok(STATUS_SUCCESS));
    assert!(probe::events().contains(&Event::OtherNotify(id, 7)));
    engine::delete_filter(id).unwrap();
    kernel.assert_clean();
}

/// R1: registering a key that is already registered fails with
/// STATUS_FWP_ALREADY_EXISTS.
#[test]
fn duplicate_registration_is_refused() {
    let (mut kernel, probe) = registered_probe(31);
    assert_eq!(probe.register(kernel.device_object()), STATUS_FWP_ALREADY_EXISTS);
    assert_eq!(probe.unregister(), STATUS_SUCCESS);
    kernel.assert_clean();
}

/// R2: unregistering an id nobody registered: STATUS_FWP_CALLOUT_NOT_FOUND.
#[test]
fn unregistering_an_unknown_callout_is_not_found() {
    let kernel = probe::boot();
    assert_eq!(engine::FwpsCalloutUnregisterById0(0xDEAD), STATUS_FWP_CALLOUT_NOT_FOUND);
    kernel.assert_clean();
}

/// R3: register and unregister are PASSIVE_LEVEL only.
#[test]
fn registration_above_passive_is_a_violation() {
    let (_kernel, probe) = registered_probe(33);
    let status = irql::at_dispatch(|| probe.unregister());
    assert_ne!(status, STATUS_SUCCESS);
    let violations = verifier::take();
    assert!(violations.iter().any(|v| v.kind == ViolationKind::Irql), "{violations:?}");
    assert_eq!(probe.unregister(), STATUS_SUCCESS);
}

/// R4: unregistering succeeds while filters still name the callout; a
/// TERMINATING (or UNKNOWN) filter then blocks, hard.
#[test]
fn filters_of_an_unregistered_terminating_callout_block() {
    let (kernel, probe) = registered_probe(34);
    probe::answer(fwp::FWP_ACTION_PERMIT);
    let id = engine::add_filter(&probe.filter()).unwrap();
    assert!(engine::classify(&connect()).permitted());
    assert_eq!(probe.unregister(), STATUS_SUCCESS);
    let result = engine::classify(&connect());
    assert_eq!((result.action, result.hard, result.decided_by), (fwp::FWP_ACTION_BLOCK, true, Some(id)));
    let unknown = engine::add_filter(&probe.filter_with(FilterAction::CalloutUnknown)).unwrap();
    engine::delete_filter(id).unwrap();
    let result = engine::classify(&connect());
    assert_eq!((result.action, result.decided_by), (fwp::FWP_ACTION_BLOCK, Some(unknown)));
    engine::delete_filter(unknown).unwrap();
    kernel.assert_clean();
}

/// R5: with FWPM_FILTER_FLAG_PERMIT_IF_CALLOUT_UNREGISTERED such a filter
/// permits instead; the flag is refused on an INSPECTION filter.
#[test]
fn permit_if_callout_unregistered() {
    let (kernel, probe) = registered_probe(35);
    let flags = fwp::FWPM_FILTER_FLAG_PERMIT_IF_CALLOUT_UNREGISTERED;
    let id = engine::add_filter(&FilterSpec { flags, ..probe.filter() }).unwrap();
    assert_eq!(probe.unregister(), STATUS_SUCCESS);
    let result = engine::classify(&connect());
    assert_eq!((result.action, result.decided_by), (fwp::FWP_ACTION_PERMIT, Some(id)));
    let inspection = FilterSpec { flags, ..probe.filter_with(FilterAction::CalloutInspection) };
    assert_eq!(engine::add_filter(&inspection), Err(STATUS_FWP_INVALID_PARAMETER));
    engine::delete_filter(id).unwrap();
    kernel.assert_clean();
}

/// R6: an INSPECTION filter whose callout is unregistered is ignored: the
/// next filter decides.
#[test]
fn inspection_filters_of_an_unregistered_callout_are_ignored() {
    let (kernel, probe) = registered_probe(36);
    let inspection = engine::add_filter(&probe.filter_with(FilterAction::CalloutInspection)).unwrap();
    let block = engine::add_filter(&FilterSpec { action: FilterAction::Block, weight: 0, ..probe.filter() }).unwrap();
    let _ = inspection;
    assert_eq!(probe.unregister(), STATUS_SUCCESS);
    let result = engine::classify(&connect());
    assert_eq!((result.action, result.decided_by), (fwp::FWP_ACTION_BLOCK, Some(block)));
    kernel.assert_clean();
}
