//! Our own injected packets (issue: "our own reinjected packet at a static
//! filter"). When an agent permits a pended connection, the driver injects
//! its copy of the packet; the engine classifies that packet again. The ask
//! filter that pended it lets it through (`FwpsQueryPacketInjectionState0`
//! says we injected it); every other filter of ours judges it by its policy,
//! as it judges the connection itself. So a block of ours in another
//! sublayer blocks the injected packet as it blocked the original, and a
//! permitted connection's packet is not let past it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use fwps_types::fwp;
use wfpcallout::callbacks::state::STATE;
use wfpcallout_scenario::{Harness, Layer, PolicySource};
use wfpcallout_simkernel::engine::{self, FilterSpec, packets};
use wfpcallout_simkernel::vendor::{SUBLAYER_BELOW, Vendor};
use wfpcallout_wire::{Label, LogLevel, PolicyAction, PolicyRepr, Verdict};

fn policy(action: PolicyAction) -> PolicyRepr {
    PolicyRepr { action, log_level: LogLevel::Off, label: Label::new("ours").unwrap() }
}

fn ask() -> PolicyRepr {
    policy(PolicyAction::Ask { timeout_ms: 60_000, default_verdict: Verdict::Block })
}

/// Our filter calling our callout at `layer`, in the vendor's low sublayer.
fn ours_in_another_sublayer(harness: &Harness, layer: Layer, action: PolicyAction) -> u64 {
    let spec = layer.spec();
    let filter = FilterSpec::callout(spec.layer_key, SUBLAYER_BELOW, spec.key);
    harness.add_filter_with(filter, PolicySource::Policy(&policy(action))).unwrap()
}

#[test]
fn a_block_of_ours_in_another_sublayer_blocks_the_packet_we_inject_for_an_ask() {
    let mut harness = Harness::load();
    let vendor = Vendor::install(harness.kernel.device_object()).unwrap();
    let asking = harness.add_filter(Layer::RecvAcceptV4, PolicySource::Policy(&ask())).unwrap();
    let blocking = ours_in_another_sublayer(&harness, Layer::RecvAcceptV4, PolicyAction::Block);
    harness.connect_agent(5);
    let original = engine::classify(&Layer::RecvAcceptV4.connection(600));
    assert!(original.pended.is_some(), "the ask filter pended the connection");
    assert!(!original.permitted(), "the block in the other sublayer decided it");
    let request = STATE.pending.take_next().unwrap();
    STATE.pending.answer(request.request_id, Verdict::Permit).unwrap();
    // The injected packet may be classified after the injection returned (CONFORMANCE I7).
    packets::deliver_injection_completions();
    let reinjected = packets::take_reinjected();
    assert_eq!(reinjected.len(), 1, "the permitted connection's packet was injected");
    let (_, result) = &reinjected[0];
    assert_eq!((result.permitted(), result.decided_by), (false, Some(blocking)), "our block judged our own packet");
    // The original reached it without the write right (the pend's BLOCK is
    // hard): only the injected packet was ours to decide and count.
    assert_eq!(harness.counters(blocking).unwrap().blocked, 1, "the injected packet");
    assert_eq!(harness.counters(asking).unwrap().pended, 1, "asked once: our injected packet was not asked about");
    harness.disconnect_agent(5);
    vendor.uninstall();
    harness.delete_filter(asking).unwrap();
    harness.delete_filter(blocking).unwrap();
    harness.unload_and_check();
}

#[test]
fn the_ask_filter_lets_the_packet_it_injected_through_and_a_permit_of_ours_counts_it() {
    let mut harness = Harness::load();
    let vendor = Vendor::install(harness.kernel.device_object()).unwrap();
    let asking = harness.add_filter(Layer::RecvAcceptV4, PolicySource::Policy(&ask())).unwrap();
    let permitting = ours_in_another_sublayer(&harness, Layer::RecvAcceptV4, PolicyAction::Permit);
    harness.connect_agent(5);
    assert!(engine::classify(&Layer::RecvAcceptV4.connection(601)).pended.is_some());
    let request = STATE.pending.take_next().unwrap();
    STATE.pending.answer(request.request_id, Verdict::Permit).unwrap();
    // The injected packet may be classified after the injection returned (CONFORMANCE I7).
    packets::deliver_injection_completions();
    let reinjected = packets::take_reinjected();
    assert_eq!(reinjected.len(), 1);
    assert!(reinjected[0].1.permitted(), "the injected packet went through: {:?}", reinjected[0].1);
    assert!(STATE.pending.take_next().is_none(), "our injected packet was not asked about again");
    assert_eq!(harness.counters(permitting).unwrap().permitted, 1, "our permit filter judged the injected packet");
    harness.disconnect_agent(5);
    vendor.uninstall();
    harness.delete_filter(asking).unwrap();
    harness.delete_filter(permitting).unwrap();
    harness.unload_and_check();
}

#[test]
fn a_filter_in_another_sublayer_is_really_there() {
    // Guards the two tests above: the filter they add lands in the vendor's
    // sublayer and calls our callout.
    let mut harness = Harness::load();
    let vendor = Vendor::install(harness.kernel.device_object()).unwrap();
    let blocking = ours_in_another_sublayer(&harness, Layer::RecvAcceptV4, PolicyAction::Block);
    let result = engine::classify(&Layer::RecvAcceptV4.connection(602));
    assert_eq!((result.permitted(), result.decided_by), (false, Some(blocking)));
    assert_eq!(result.action, fwp::FWP_ACTION_BLOCK);
    vendor.uninstall();
    harness.delete_filter(blocking).unwrap();
    harness.unload_and_check();
}
