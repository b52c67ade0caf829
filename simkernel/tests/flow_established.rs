//! Conformance: ALE_FLOW_ESTABLISHED (simkernel/CONFORMANCE.md, rows
//! E1-E2). "A filter at this layer should not return Block or Permit" (SDK
//! "ALE Layers"); WFPSampler's flow-association scenario uses
//! FWP_ACTION_CALLOUT_UNKNOWN and returns CONTINUE. Driven by probes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod probe;

use fwps_types::*;
use probe::{Event, Probe};
use wfpcallout_simkernel::engine::{self, Connection, FilterAction, flows};
use wfpcallout_simkernel::verifier::{self, ViolationKind};

fn flow_connection() -> Connection {
    Connection { layer_id: FWPS_LAYER_ALE_FLOW_ESTABLISHED_V4, ..Connection::tcp_connect_v4(443) }
}

/// E1: a callout that returns PERMIT or BLOCK there is a reported violation.
#[test]
fn a_verdict_at_flow_established_is_a_violation() {
    for (action, verdict) in [
        (FilterAction::CalloutUnknown as fn(GUID) -> FilterAction, fwp::FWP_ACTION_PERMIT),
        (FilterAction::CalloutTerminating, fwp::FWP_ACTION_BLOCK),
    ] {
        let mut kernel = probe::boot();
        let probe = Probe::add(61, fwp::FWPM_LAYER_ALE_FLOW_ESTABLISHED_V4);
        assert_eq!(probe.register(kernel.device_object()), STATUS_SUCCESS);
        let id = engine::add_filter(&probe.filter_with(action)).unwrap();
        probe.answer(verdict, verdict == fwp::FWP_ACTION_BLOCK);
        let (handle, _) = flows::establish_flow(&flow_connection());
        let violations = verifier::take();
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].kind, ViolationKind::ApiMisuse);
        assert!(violations[0].message.contains(&format!("filter {id}: a callout returned")));
        assert!(violations[0].message.contains("ALE_FLOW_ESTABLISHED"));
        flows::end_flow(handle);
    }
}

/// E2: an UNKNOWN or INSPECTION callout that answers CONTINUE (and
/// associates its flow context) is clean; the flow is permitted.
#[test]
fn continue_at_flow_established_is_clean() {
    let mut kernel = probe::boot();
    let probe = Probe::add(62, fwp::FWPM_LAYER_ALE_FLOW_ESTABLISHED_V4);
    assert_eq!(probe.register(kernel.device_object()), STATUS_SUCCESS);
    let unknown = engine::add_filter(&probe.filter_with(FilterAction::CalloutUnknown)).unwrap();
    let inspection = engine::add_filter(&probe.filter_with(FilterAction::CalloutInspection)).unwrap();
    probe.answer(0, false);
    probe::associate_flow_contexts(true);
    let (handle, result) = flows::establish_flow(&flow_connection());
    assert!(result.permitted());
    assert_eq!((result.decided_by, result.callouts_invoked), (None, 2));
    assert!(
        probe::events().contains(&Event::Classify(unknown)) && probe::events().contains(&Event::Classify(inspection))
    );
    flows::end_flow(handle);
    kernel.assert_clean();
}
