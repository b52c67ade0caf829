//! The statistics IOCTL reports the flow counters and the packet-copy
//! counters, so that a user (`wfpctl stats`) can read them: each is made
//! to move here and must arrive, with its own value, in the reply.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use fwps_types::{STATUS_INSUFFICIENT_RESOURCES, fwp};
use wfpcallout::control::ioctls::{self, GET_STATS};
use wfpcallout_scenario::{Harness, Layer, PolicySource};
use wfpcallout_simkernel::engine::{self, flows, packet_data};
use wfpcallout_simkernel::{faults, irql};
use wfpcallout_wire::{
    GlobalStatsRepr, Label, LogLevel, PolicyAction, PolicyRepr, STATS_REPLY_MAX_LEN, StatsQueryRepr, StatsReply,
    Verdict,
};

fn policy(action: PolicyAction) -> PolicyRepr {
    PolicyRepr { action, log_level: LogLevel::Off, label: Label::new("stats").unwrap() }
}

fn read_global() -> GlobalStatsRepr {
    let query = StatsQueryRepr { after_filter_id: 0, max_entries: 1 };
    let mut out = vec![0u8; STATS_REPLY_MAX_LEN];
    let len = ioctls::dispatch_ioctl(GET_STATS, &query.to_bytes(), &mut out).unwrap();
    StatsReply::parse_for_query(&out[..len], &query).unwrap().header().global
}

/// One test in this binary: the copy counters are process-wide, so the
/// values below are exact.
#[test]
fn flow_and_copy_counters_reach_the_statistics_reply() {
    let harness = Harness::load();
    let permit = policy(PolicyAction::Permit);
    harness.add_filter(Layer::FlowV4, PolicySource::Policy(&permit)).unwrap();
    harness.add_filter(Layer::FlowV4, PolicySource::Policy(&permit)).unwrap();
    // Two flows tracked by the first filter (the second finds each tracked
    // already); the third's association by the first filter is refused, so
    // the second tracks it; one flowDeleteFn for a context we never held.
    let (first, _) = flows::establish_flow(&Layer::FlowV4.connection(1));
    let (second, _) = flows::establish_flow(&Layer::FlowV4.connection(2));
    faults::fail_call("FwpsFlowAssociateContext0", 0, STATUS_INSUFFICIENT_RESOURCES);
    let (third, _) = flows::establish_flow(&Layer::FlowV4.connection(3));
    irql::at_dispatch(|| wfpcallout::callbacks::flow_delete::flow_delete_fn(52, 1, 0xDEAD_BEEF));

    // Three inbound asks: one copied (72 bytes held while it waits), one
    // too large to copy, one IPsec-protected.
    let ask = policy(PolicyAction::Ask { timeout_ms: 600_000, default_verdict: Verdict::Block });
    harness.add_filter(Layer::RecvAcceptV4, PolicySource::Policy(&ask)).unwrap();
    harness.connect_agent(0xC0FE);
    assert!(harness.classify_layer(Layer::RecvAcceptV4, 22).pended.is_some());
    packet_data::set_payload_len(wfpcallout::wfp::injection::MAX_PACKET_COPY);
    assert!(harness.classify_layer(Layer::RecvAcceptV4, 23).pended.is_none());
    packet_data::set_payload_len(32);
    let protected = Layer::RecvAcceptV4.connection(24);
    let protected =
        engine::Connection { flags: protected.flags | fwp::FWP_CONDITION_FLAG_IS_IPSEC_SECURED, ..protected };
    assert!(engine::classify(&protected).pended.is_none());

    let global = read_global();
    assert_eq!(
        (global.flows_associated, global.flows_already_tracked, global.flow_associate_failures),
        (3, 2, 1),
        "{global:?}"
    );
    assert_eq!(global.flow_deletes_unknown, 1, "{global:?}");
    assert_eq!((global.packets_copied, global.copy_bytes_held), (1, 72), "{global:?}");
    assert_eq!((global.copies_refused, global.ipsec_not_pended), (1, 1), "{global:?}");

    for handle in [first, second, third] {
        flows::end_flow(handle);
    }
    harness.unload_and_check();
    assert_eq!(read_global().copy_bytes_held, 0, "a level, not a count: the copy is gone");
}
