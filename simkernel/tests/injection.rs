//! Conformance: TCP is injected out of band only (simkernel/CONFORMANCE.md,
//! row I1): FwpsInjectTransportReceiveAsync0 of a TCP packet from inside
//! classifyFn is a reported violation; from outside any callback (a DPC or
//! worker) it is clean, and a UDP packet may be injected from classifyFn.
//! Driven by probes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod probe;

use fwps_types::*;
use probe::Probe;
use wfpcallout_simkernel::engine::{self, Connection, packets};
use wfpcallout_simkernel::verifier::{self, ViolationKind};

fn inbound(protocol: u8) -> Connection {
    Connection { layer_id: FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V4, protocol, ..Connection::tcp_connect_v4(50_000) }
}

#[test]
fn tcp_injected_from_inside_classify_is_a_violation() {
    let mut kernel = probe::boot();
    let probe = Probe::add(81, fwp::FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4);
    assert_eq!(probe.register(kernel.device_object()), STATUS_SUCCESS);
    engine::add_filter(&probe.filter()).unwrap();
    probe::answer(fwp::FWP_ACTION_PERMIT);
    let handle = probe::transport_injection_handle(2);
    probe::inject_on(packets::interfaces_of(&inbound(6)));
    probe::inject_from_classify(packets::clone_for_test(&inbound(6)), handle);
    let _ = engine::classify(&inbound(6));
    let violations = verifier::take();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].kind, ViolationKind::ApiMisuse);
    assert!(violations[0].message.contains("from inside classifyFn"), "{}", violations[0].message);
    assert_eq!(packets::FwpsInjectionHandleDestroy0(handle), STATUS_SUCCESS);
    assert_eq!(probe.unregister(), STATUS_SUCCESS);
    kernel.assert_unloaded_clean();
}

#[test]
fn tcp_injected_out_of_band_and_udp_from_classify_are_clean() {
    let mut kernel = probe::boot();
    let probe = Probe::add(82, fwp::FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4);
    assert_eq!(probe.register(kernel.device_object()), STATUS_SUCCESS);
    engine::add_filter(&probe.filter()).unwrap();
    probe::answer(fwp::FWP_ACTION_PERMIT);
    let handle = probe::transport_injection_handle(2);
    // Out of band: from this thread, inside no callback.
    assert_eq!(probe::inject(handle, packets::clone_for_test(&inbound(6)), false), STATUS_SUCCESS);
    // UDP from inside classifyFn: the rule is about TCP.
    probe::inject_on(packets::interfaces_of(&inbound(17)));
    probe::inject_from_classify(packets::clone_for_test(&inbound(17)), handle);
    let _ = engine::classify(&inbound(17));
    assert!(probe::events().contains(&probe::Event::Mark("injected")));
    let _ = packets::take_reinjected();
    assert_eq!(packets::FwpsInjectionHandleDestroy0(handle), STATUS_SUCCESS);
    assert_eq!(probe.unregister(), STATUS_SUCCESS);
    kernel.assert_unloaded_clean();
}
