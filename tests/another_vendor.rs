//! The driver beside another vendor's callout and filters, as on a real
//! machine: the vendor inspects everything from a sublayer above ours,
//! holds a hard permit above our block and a block below our permit, and
//! its filter changes reauthorize our connections. Every verdict follows
//! WFP's arbitration, our callout writes nothing when it has no write
//! right (the simulator checks every byte), and unload is clean.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use fwps_types::*;
use wfpcallout::callbacks::state::STATE;
use wfpcallout_scenario::{Harness, Layer, PolicySource};
use wfpcallout_simkernel::engine::{self, FilterAction, pending, reauthorization};
use wfpcallout_simkernel::vendor::Vendor;
use wfpcallout_wire::{Label, LogLevel, PolicyAction, PolicyRepr, Verdict};

fn policy(action: PolicyAction) -> PolicyRepr {
    PolicyRepr { action, log_level: LogLevel::Off, label: Label::new("beside").unwrap() }
}

#[test]
fn a_hard_permit_above_our_block_wins_and_we_write_nothing() {
    let mut harness = Harness::load();
    let mut vendor = Vendor::install(harness.kernel.device_object()).unwrap();
    let permit_above =
        vendor.add_static_filter(fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4, true, FilterAction::Permit, true, 7).unwrap();
    let ours = harness.add_filter(Layer::ConnectV4, PolicySource::Policy(&policy(PolicyAction::Block))).unwrap();
    engine::trace_classify_out(true);
    let excepted = harness.classify_layer(Layer::ConnectV4, 7);
    let trace = engine::take_classify_out_trace();
    let elsewhere = harness.classify_layer(Layer::ConnectV4, 8);
    engine::trace_classify_out(false);
    assert_eq!((excepted.permitted(), excepted.decided_by), (true, Some(permit_above)));
    let our_call = trace.iter().find(|t| t.filter_id == ours).expect("our callout still sees the traffic");
    assert_eq!(our_call.after, our_call.before, "no write right: nothing written");
    assert_eq!((elsewhere.permitted(), elsewhere.decided_by), (false, Some(ours)));
    assert_eq!(harness.counters(ours).unwrap().blocked, 1, "only the classification we decided counts");
    // In the vendor's sublayer the permit (heavier) ends the sublayer before
    // its inspection filter for port 7; port 8 is inspected.
    assert_eq!(Vendor::inspected(), 1);
    vendor.uninstall();
    harness.delete_filter(ours).unwrap();
    harness.unload_and_check();
}

#[test]
fn a_block_below_overrides_our_soft_permit() {
    let mut harness = Harness::load();
    let mut vendor = Vendor::install(harness.kernel.device_object()).unwrap();
    let block_below = vendor
        .add_static_filter(fwp::FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4, false, FilterAction::Block, false, 9)
        .unwrap();
    let ours = harness.add_filter(Layer::RecvAcceptV4, PolicySource::Policy(&policy(PolicyAction::Permit))).unwrap();
    let mut connection = Layer::RecvAcceptV4.connection(9);
    connection.remote_port = 9;
    let result = engine::classify(&connection);
    assert_eq!((result.permitted(), result.decided_by), (false, Some(block_below)), "BLOCK overrides a soft PERMIT");
    vendor.uninstall();
    harness.delete_filter(ours).unwrap();
    harness.unload_and_check();
}

/// The vendor's filter changes are policy changes at our layer: every
/// connection our agent approved is reauthorized, and stays approved.
#[test]
fn the_vendors_filter_changes_do_not_tear_down_our_approved_connections() {
    let mut harness = Harness::load();
    let ask = PolicyAction::Ask { timeout_ms: 5_000, default_verdict: Verdict::Block };
    let ours = harness.add_filter(Layer::ConnectV4, PolicySource::Policy(&policy(ask))).unwrap();
    harness.connect_agent(0xA6E7);
    let connections: Vec<_> = (0..16).map(|port| Layer::ConnectV4.connection(20_000 + port)).collect();
    for connection in &connections {
        assert!(engine::classify(connection).pended.is_some());
        let request = STATE.pending.take_next().unwrap();
        STATE.pending.answer(request.request_id, Verdict::Permit).unwrap();
    }
    assert_eq!(pending::take_completions().len(), 16);
    let mut vendor = Vendor::install(harness.kernel.device_object()).unwrap();
    let extra =
        vendor.add_static_filter(fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4, false, FilterAction::Block, false, 1).unwrap();
    let _ = extra;
    for connection in &connections {
        let result = reauthorization::next_packet(connection).expect("the vendor's adds changed the policy");
        assert!(result.permitted(), "approved connection kept: {result:?}");
        assert!(reauthorization::is_live(connection));
    }
    assert_eq!(harness.counters(ours).unwrap().defaulted, 0);
    vendor.uninstall();
    harness.delete_filter(ours).unwrap();
    harness.unload_and_check();
}
