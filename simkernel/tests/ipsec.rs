//! Conformance: IPsec-protected inbound packets (simkernel/CONFORMANCE.md,
//! rows P1-P3). The engine can present them at ALE_AUTH_RECV_ACCEPT: the
//! FLAGS field carries FWP_CONDITION_FLAG_IS_IPSEC_SECURED and
//! FwpsGetPacketListSecurityInformation0 reports isSecure; receive-injecting
//! one as-is is a reported violation. Driven by probes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod probe;

use fwps_types::*;
use probe::Probe;
use std::ffi::c_void;
use std::sync::Mutex;
use wfpcallout_simkernel::engine::packets::{
    self, FWPS_PACKET_LIST_INFORMATION_QUERY_INBOUND, FWPS_PACKET_LIST_INFORMATION_QUERY_IPSEC,
};
use wfpcallout_simkernel::engine::{self, Connection};
use wfpcallout_simkernel::verifier::{self, ViolationKind};

fn inbound(port: u16, secured: bool) -> Connection {
    let flags = if secured { fwp::FWP_CONDITION_FLAG_IS_IPSEC_SECURED } else { 0 };
    Connection { layer_id: FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V4, flags, ..Connection::tcp_connect_v4(port) }
}

/// What the probe's hook read: (isSecure bit, status).
static SEEN: Mutex<Vec<(u32, NTSTATUS)>> = Mutex::new(Vec::new());

fn query(layer_data: *mut c_void, _: &FWPS_INCOMING_METADATA_VALUES0) {
    let mut information = [0xFFFF_FFFFu32; 64];
    // SAFETY: `information` is writable and larger than the structure.
    let status = unsafe {
        packets::FwpsGetPacketListSecurityInformation0(
            layer_data,
            FWPS_PACKET_LIST_INFORMATION_QUERY_IPSEC | FWPS_PACKET_LIST_INFORMATION_QUERY_INBOUND,
            information.as_mut_ptr(),
        )
    };
    SEEN.lock().unwrap().push((information[0] & 1, status));
}

/// P1: the FLAGS bit and the packet's security information tell protected
/// packets apart.
#[test]
fn protected_packets_are_told_apart() {
    let mut kernel = probe::boot();
    let probe = Probe::add(111, fwp::FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4);
    assert_eq!(probe.register(kernel.device_object()), STATUS_SUCCESS);
    engine::add_filter(&probe.filter()).unwrap();
    SEEN.lock().unwrap().clear();
    probe::on_layer_data(Some(query));
    probe::answer(fwp::FWP_ACTION_PERMIT);
    let _ = engine::classify(&inbound(1, true));
    let _ = engine::classify(&inbound(2, false));
    probe::on_layer_data(None);
    assert_eq!(*SEEN.lock().unwrap(), vec![(1, STATUS_SUCCESS), (0, STATUS_SUCCESS)]);
    let flags: Vec<u32> = probe::events()
        .iter()
        .filter_map(|e| match e {
            probe::Event::AuthFields(_, flags, _) => Some(*flags),
            _ => None,
        })
        .collect();
    assert_eq!(flags, vec![fwp::FWP_CONDITION_FLAG_IS_IPSEC_SECURED, 0]);
    assert_eq!(probe.unregister(), STATUS_SUCCESS);
    kernel.assert_unloaded_clean();
}

/// P2: receive-injecting a protected packet as-is is reported; an
/// unprotected one is clean.
#[test]
fn injecting_a_protected_packet_as_is_is_a_violation() {
    let mut kernel = probe::boot();
    let probe = Probe::add(112, fwp::FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4);
    assert_eq!(probe.register(kernel.device_object()), STATUS_SUCCESS);
    engine::add_filter(&probe.filter()).unwrap();
    probe::answer(fwp::FWP_ACTION_PERMIT);
    let handle = probe::transport_injection_handle(2);
    assert_eq!(probe::inject(handle, packets::clone_for_test(&inbound(3, false)), false), STATUS_SUCCESS);
    assert!(verifier::take().is_empty());
    assert_eq!(probe::inject(handle, packets::clone_for_test(&inbound(4, true)), false), STATUS_SUCCESS);
    let violations = verifier::take();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].kind, ViolationKind::ApiMisuse);
    assert!(violations[0].message.contains("AH/ESP"), "{}", violations[0].message);
    let _ = packets::take_reinjected();
    assert_eq!(packets::FwpsInjectionHandleDestroy0(handle), STATUS_SUCCESS);
    assert_eq!(probe.unregister(), STATUS_SUCCESS);
    kernel.assert_unloaded_clean();
}

/// P3: an IPsec query needs a direction.
#[test]
fn an_ipsec_query_without_a_direction_is_misuse() {
    let kernel = probe::boot();
    let clone = packets::clone_for_test(&inbound(5, true));
    let mut information = [0u32; 64];
    // SAFETY: `information` is writable.
    let status = unsafe {
        packets::FwpsGetPacketListSecurityInformation0(
            clone,
            FWPS_PACKET_LIST_INFORMATION_QUERY_IPSEC,
            information.as_mut_ptr(),
        )
    };
    assert_eq!(status, STATUS_INVALID_PARAMETER);
    assert_eq!(verifier::take().len(), 1);
    packets::FwpsFreeCloneNetBufferList0(clone, 0);
    kernel.assert_unloaded_clean();
}
