//! IPsec-protected inbound connections at an ask filter: the packet keeps
//! its AH/ESP header, so a copy could not be receive-injected as it is
//! (WDS inspect sample: "such packets cannot be recv-injected back w/o
//! removing the AH/ESP header"; simkernel/CONFORMANCE.md P1-P3). The driver
//! does not pend them: the filter's default verdict applies at once,
//! counted (README, SECURITY.md).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use fwps_types::fwp;
use std::sync::atomic::Ordering;
use wfpcallout::callbacks::state::STATE;
use wfpcallout::wfp::injection::COPIES;
use wfpcallout_scenario::{Harness, Layer, PolicySource};
use wfpcallout_simkernel::engine::{self, Connection, packets};
use wfpcallout_wire::{Label, LogLevel, PolicyAction, PolicyRepr, Verdict};

fn ipsec(layer: Layer, port: u16) -> Connection {
    let connection = layer.connection(port);
    Connection { flags: connection.flags | fwp::FWP_CONDITION_FLAG_IS_IPSEC_SECURED, ..connection }
}

#[test]
fn ipsec_protected_inbound_asks_get_the_default_and_are_counted() {
    for (layer, default) in [(Layer::RecvAcceptV4, Verdict::Permit), (Layer::RecvAcceptV6, Verdict::Block)] {
        let harness = Harness::load();
        let ask = PolicyRepr {
            action: PolicyAction::Ask { timeout_ms: 60_000, default_verdict: default },
            log_level: LogLevel::Off,
            label: Label::new("ask").unwrap(),
        };
        let filter = harness.add_filter(layer, PolicySource::Policy(&ask)).unwrap();
        harness.connect_agent(7);
        let counted = COPIES.ipsec.load(Ordering::Relaxed);
        let result = engine::classify(&ipsec(layer, 500));
        assert!(result.pended.is_none(), "not pended at {layer:?}");
        assert_eq!(result.permitted(), default == Verdict::Permit, "the default verdict");
        assert_eq!(COPIES.ipsec.load(Ordering::Relaxed), counted + 1);
        assert_eq!(harness.counters(filter).unwrap().defaulted, 1);
        assert!(STATE.pending.take_next().is_none(), "no request for the agent");
        // Plain traffic is still asked about, and a permit injects it.
        assert!(engine::classify(&layer.connection(501)).pended.is_some());
        let request = STATE.pending.take_next().unwrap();
        STATE.pending.answer(request.request_id, Verdict::Permit).unwrap();
        // The injected packet may travel after the injection returned (CONFORMANCE I7).
        packets::deliver_injection_completions();
        assert_eq!(packets::take_reinjected().len(), 1);
        harness.delete_filter(filter).unwrap();
        // An IPsec packet injected as-is would be reported here.
        harness.unload_and_check();
    }
}
