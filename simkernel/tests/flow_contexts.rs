//! Conformance: flow contexts (simkernel/CONFORMANCE.md, rows F1-F2).
//! Sources: DDI `nf-fwpsk-fwpsflowassociatecontext0` (flowContext "must not
//! be zero"; STATUS_INVALID_PARAMETER when it is, or when the callout has no
//! flowDeleteFn; STATUS_OBJECT_NAME_EXISTS when a context is already
//! associated: remove it first), DDI `nf-fwpsk-fwpsflowremovecontext0`
//! (STATUS_SUCCESS: flowDeleteFn called synchronously; STATUS_PENDING: a
//! classification is in progress, flowDeleteFn called asynchronously;
//! STATUS_UNSUCCESSFUL: no context). Driven by probe callouts at
//! ALE_FLOW_ESTABLISHED_V4.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod probe;

use fwps_types::*;
use probe::{Event, Probe};
use wfpcallout_simkernel::engine::{self, Connection, FilterAction, flows};
use wfpcallout_simkernel::verifier::{self, ViolationKind};

const LAYER: u16 = FWPS_LAYER_ALE_FLOW_ESTABLISHED_V4;

/// A booted kernel with probe `n` registered at ALE_FLOW_ESTABLISHED_V4, an
/// INSPECTION filter calling it, and one established flow: (kernel, probe,
/// flow handle).
fn flow(n: u128) -> (wfpcallout_simkernel::Kernel, Probe, u64) {
    let mut kernel = probe::boot();
    let probe = Probe::add(n, fwp::FWPM_LAYER_ALE_FLOW_ESTABLISHED_V4);
    assert_eq!(probe.register(kernel.device_object()), STATUS_SUCCESS);
    engine::add_filter(&probe.filter_with(FilterAction::CalloutInspection)).unwrap();
    let connection = Connection { layer_id: LAYER, ..Connection::tcp_connect_v4(443) };
    let (handle, result) = flows::establish_flow(&connection);
    assert!(result.permitted());
    (kernel, probe, handle)
}

fn flow_deletes() -> Vec<u64> {
    probe::events().iter().filter_map(|e| if let Event::FlowDelete(c) = e { Some(*c) } else { None }).collect()
}

/// F1: a zero context is refused, and so is a context for a callout
/// registered without a flowDeleteFn (reported as misuse too); a second
/// association for the same flow, layer and callout returns
/// STATUS_OBJECT_NAME_EXISTS and keeps the first; the flow's end calls
/// flowDeleteFn once, for the first.
#[test]
fn association_needs_a_context_and_a_flow_delete_function_and_is_unique() {
    let (mut kernel, probe, handle) = flow(151);
    assert_eq!(flows::FwpsFlowAssociateContext0(handle, LAYER, probe.id, 0), STATUS_INVALID_PARAMETER);
    let without_delete = FWPS_CALLOUT2 {
        calloutKey: GUID::from_u128(0x9B0B_0000_0000_4000_8000_0000_0000_0152),
        flags: 0,
        classifyFn: Some(probe::noop_classify),
        notifyFn: Some(probe::noop_notify),
        flowDeleteFn: None,
    };
    let mut bare = 0;
    // SAFETY: valid device object, callout and out pointer.
    let status = unsafe { engine::FwpsCalloutRegister2(kernel.device_object(), &without_delete, &mut bare) };
    assert_eq!(status, STATUS_SUCCESS);
    assert_eq!(flows::FwpsFlowAssociateContext0(handle, LAYER, bare, 0xBA5E), STATUS_INVALID_PARAMETER);
    let violations = verifier::take();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].kind, ViolationKind::ApiMisuse);
    assert!(violations[0].message.contains("no flowDeleteFn"));
    assert_eq!(flows::contexts_of(bare), 0);
    assert_eq!(engine::FwpsCalloutUnregisterById0(bare), STATUS_SUCCESS);

    assert_eq!(flows::FwpsFlowAssociateContext0(handle, LAYER, probe.id, 0xC1), STATUS_SUCCESS);
    assert_eq!(flows::FwpsFlowAssociateContext0(handle, LAYER, probe.id, 0xC2), STATUS_OBJECT_NAME_EXISTS);
    assert_eq!(flows::contexts_of(probe.id), 1);
    flows::end_flow(handle);
    assert_eq!(flow_deletes(), vec![0xC1], "the first context is the one deleted, once");
    assert_eq!(probe.unregister(), STATUS_SUCCESS);
    kernel.assert_clean();
}

/// F2: removal returns STATUS_SUCCESS after flowDeleteFn ran on the calling
/// thread; STATUS_UNSUCCESSFUL when there is no context; STATUS_PENDING while
/// a classification of the flow is in progress, flowDeleteFn then running
/// when it ends (not before); a removed context is not deleted again at the
/// flow's end.
#[test]
fn removal_returns_success_unsuccessful_or_pending() {
    let (kernel, probe, handle) = flow(153);
    assert_eq!(flows::FwpsFlowRemoveContext0(handle, LAYER, probe.id), STATUS_UNSUCCESSFUL, "nothing associated");
    assert_eq!(flows::FwpsFlowAssociateContext0(handle, LAYER, probe.id, 0xD1), STATUS_SUCCESS);
    assert_eq!(flows::FwpsFlowRemoveContext0(handle, LAYER, probe.id), STATUS_SUCCESS);
    assert_eq!(flow_deletes(), vec![0xD1], "flowDeleteFn ran before SUCCESS returned");
    assert_eq!(flows::FwpsFlowRemoveContext0(handle, LAYER, probe.id), STATUS_UNSUCCESSFUL, "already removed");

    assert_eq!(flows::FwpsFlowAssociateContext0(handle, LAYER, probe.id, 0xD2), STATUS_SUCCESS);
    let during = flows::during_flow_classify(handle, || {
        let status = flows::FwpsFlowRemoveContext0(handle, LAYER, probe.id);
        (status, flow_deletes())
    });
    assert_eq!(during, (STATUS_PENDING, vec![0xD1]), "PENDING, and flowDeleteFn not yet called");
    assert_eq!(flow_deletes(), vec![0xD1, 0xD2], "called when the classification ended");
    flows::end_flow(handle);
    assert_eq!(flow_deletes(), vec![0xD1, 0xD2], "nothing left to delete at the flow's end");
    assert_eq!(probe.unregister(), STATUS_SUCCESS);
    kernel.assert_unloaded_clean();
}
