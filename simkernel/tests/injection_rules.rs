//! Conformance: what a receive injection must name and when
//! (simkernel/CONFORMANCE.md, rows C7, I5, I6). A clone may be made from
//! any data start, but a list injected into the receive path must begin
//! with an IP header; the classification at ALE_AUTH_RECV_ACCEPT carries
//! the arrival INTERFACE_INDEX and SUB_INTERFACE_INDEX, which the
//! injection must name; a connection pended there is injected after
//! FwpsCompleteOperation0, with the list passed to it. Driven by probes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod probe;

use fwps_types::*;
use probe::Probe;
use std::ffi::c_void;
use std::sync::Mutex;
use wfpcallout_simkernel::engine::{self, Connection, packets};
use wfpcallout_simkernel::verifier::{self, ViolationKind};

fn setup(n: u128, layer: GUID) -> (wfpcallout_simkernel::Kernel, Probe) {
    let mut kernel = probe::boot();
    let probe = Probe::add(n, layer);
    assert_eq!(probe.register(kernel.device_object()), STATUS_SUCCESS);
    engine::add_filter(&probe.filter()).unwrap();
    probe::answer(fwp::FWP_ACTION_PERMIT);
    (kernel, probe)
}

fn finish(kernel: wfpcallout_simkernel::Kernel, probe: Probe, handle: *mut c_void) {
    let _ = packets::take_reinjected();
    let _ = engine::pending::take_completions();
    assert_eq!(packets::FwpsInjectionHandleDestroy0(handle), STATUS_SUCCESS);
    assert_eq!(probe.unregister(), STATUS_SUCCESS);
    kernel.assert_unloaded_clean();
}

fn single_violation(containing: &str) {
    let violations = verifier::take();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].kind, ViolationKind::ApiMisuse);
    assert!(violations[0].message.contains(containing), "{}", violations[0].message);
}

/// The clones classifyFn made of layerData: (status at the transport
/// header's end, as layerData comes; status at the IP header).
static CLONES: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());

fn clone_at_both_offsets(layer_data: *mut c_void, metadata: &FWPS_INCOMING_METADATA_VALUES0) {
    let headers = metadata.ipHeaderSize + metadata.transportHeaderSize;
    let clone_now = || probe::clone_of(layer_data) as usize;
    let as_given = clone_now();
    // SAFETY: layerData is a NET_BUFFER_LIST for the call; FirstNetBuffer at offset 8.
    let buffer = unsafe { layer_data.cast::<u8>().wrapping_add(8).cast::<*mut c_void>().read() };
    assert_eq!(packets::NdisRetreatNetBufferDataStart(buffer, headers, 0, std::ptr::null_mut()), 0);
    let at_ip_header = clone_now();
    packets::NdisAdvanceNetBufferDataStart(buffer, headers, 0, std::ptr::null_mut());
    CLONES.lock().unwrap().push((as_given, at_ip_header));
}

/// C7: FwpsAllocateCloneNetBufferList0 clones from wherever the data
/// starts (no rule ties it to the IP header); receive-injecting a clone
/// that does not begin with its IP header is refused and reported, the
/// same clone retreated to it is injected.
#[test]
fn a_clone_may_start_anywhere_but_receive_injection_needs_the_ip_header() {
    let (kernel, probe) = setup(131, fwp::FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4);
    CLONES.lock().unwrap().clear();
    probe::on_layer_data(Some(clone_at_both_offsets));
    let connection = probe::inbound_udp(50_501);
    assert!(engine::classify(&connection).permitted());
    probe::on_layer_data(None);
    assert!(verifier::take().is_empty(), "cloning at either offset is clean");
    let (as_given, at_ip_header) = CLONES.lock().unwrap()[0];
    let handle = probe::transport_injection_handle(2);
    probe::inject_on(packets::interfaces_of(&connection));
    assert_eq!(probe::inject(handle, as_given as *mut c_void, false), STATUS_INVALID_PARAMETER);
    single_violation("must begin with an IP header");
    packets::FwpsFreeCloneNetBufferList0(as_given as *mut c_void, 0);
    assert_eq!(probe::inject(handle, at_ip_header as *mut c_void, false), STATUS_SUCCESS);
    assert!(verifier::take().is_empty());
    finish(kernel, probe, handle);
}

/// I5: the ALE auth classifications carry INTERFACE_INDEX and
/// SUB_INTERFACE_INDEX (recv-accept fields 16/17, connect 15/16): non-zero,
/// varying between connections, the same for every classification of one.
#[test]
fn the_classifications_carry_the_interface_indexes() {
    let (mut kernel, probe) = setup(132, fwp::FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4);
    let connect = Probe::add(133, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4);
    assert_eq!(connect.register(kernel.device_object()), STATUS_SUCCESS);
    engine::add_filter(&connect.filter()).unwrap();
    let (a, b) = (probe::inbound_udp(50_601), probe::inbound_udp(50_602));
    let outbound = Connection { protocol: 17, ..Connection::tcp_connect_v4(50_603) };
    for connection in [&a, &b, &a, &outbound] {
        assert!(engine::classify(connection).permitted());
    }
    let seen = probe::interfaces_seen();
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert!(seen.iter().all(|s| s.2 != 0 && s.3 != 0), "non-zero: {seen:?}");
    assert_eq!((seen[0].2, seen[0].3), packets::interfaces_of(&a));
    assert_eq!((seen[2].2, seen[2].3), (seen[0].2, seen[0].3), "one connection, one interface");
    assert_ne!((seen[1].2, seen[1].3), (seen[0].2, seen[0].3), "connections differ");
    assert_eq!(seen[3].1, FWPS_LAYER_ALE_AUTH_CONNECT_V4);
    assert_eq!((seen[3].2, seen[3].3), packets::interfaces_of(&outbound), "filled at connect too");
    assert_eq!(connect.unregister(), STATUS_SUCCESS);
    assert_eq!(probe.unregister(), STATUS_SUCCESS);
    kernel.assert_unloaded_clean();
}

/// I5: a receive injection of a packet of a connection the engine
/// presented at ALE_AUTH_RECV_ACCEPT names the interface and sub-interface
/// that classification carried; others are reported.
#[test]
fn receive_injection_names_the_classifications_interfaces() {
    let (kernel, probe) = setup(134, fwp::FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4);
    let connection = probe::inbound_udp(50_701);
    assert!(engine::classify(&connection).permitted());
    let (interface, sub_interface) = packets::interfaces_of(&connection);
    let handle = probe::transport_injection_handle(2);
    for (given, wrong) in [
        ((interface, sub_interface), false),
        ((0, 0), true),
        ((interface + 1, sub_interface), true),
        ((interface, sub_interface + 1), true),
    ] {
        probe::inject_on(given);
        assert_eq!(probe::inject(handle, packets::clone_for_test(&connection), false), STATUS_SUCCESS);
        if wrong {
            single_violation("INTERFACE_INDEX");
        } else {
            assert!(verifier::take().is_empty());
        }
    }
    finish(kernel, probe, handle);
}

/// Pends the probe's next classification of `connection`: the operation.
fn pend(connection: &Connection) -> *mut c_void {
    probe::pend_next(true);
    engine::classify(connection).pended.expect("pended") as *mut c_void
}

/// I6: a pended recv-accept connection's packet injected before
/// FwpsCompleteOperation0 is reported; injected after the completion that
/// was given that very list, it is clean.
#[test]
fn a_pended_connection_is_injected_after_its_completion() {
    let (kernel, probe) = setup(135, fwp::FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4);
    let handle = probe::transport_injection_handle(2);
    let connection = probe::inbound_udp(50_801);
    probe::inject_on(packets::interfaces_of(&connection));
    let operation = pend(&connection);
    let early = packets::clone_for_test(&connection);
    assert_eq!(probe::inject(handle, early, false), STATUS_SUCCESS);
    single_violation("not completed yet");
    let clone = packets::clone_for_test(&connection);
    engine::pending::FwpsCompleteOperation0(operation, clone);
    assert_eq!(probe::inject(handle, clone, false), STATUS_SUCCESS);
    packets::deliver_injection_completions();
    assert!(verifier::take().is_empty(), "the documented order");
    finish(kernel, probe, handle);
}

/// I6: after FwpsCompleteOperation0, the list to inject is the one passed
/// to it: injecting another, or any after a completion with NULL, is
/// reported; a list passed to it and freed without injection is reported.
///
/// Needs `FwpsCompleteOperation0` to tell the packet model which list it
/// was given (`packets::completed_with`, called from
/// `pending::complete_operation`); without that call nothing is reported.
#[test]
fn the_list_injected_is_the_one_passed_to_the_completion() {
    let (kernel, probe) = setup(136, fwp::FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4);
    let handle = probe::transport_injection_handle(2);
    // Another list than the one completed with.
    let connection = probe::inbound_udp(50_901);
    probe::inject_on(packets::interfaces_of(&connection));
    let operation = pend(&connection);
    let (completed, other) = (packets::clone_for_test(&connection), packets::clone_for_test(&connection));
    engine::pending::FwpsCompleteOperation0(operation, completed);
    assert_eq!(probe::inject(handle, other, false), STATUS_SUCCESS);
    single_violation("not the list");
    // The completed list is still the one to inject: freed instead, reported.
    packets::FwpsFreeCloneNetBufferList0(completed, 0);
    single_violation("freed without being injected");
    // Completed with NULL (a deny), then injected anyway.
    let connection = probe::inbound_udp(50_902);
    probe::inject_on(packets::interfaces_of(&connection));
    let operation = pend(&connection);
    engine::pending::FwpsCompleteOperation0(operation, std::ptr::null_mut());
    assert_eq!(probe::inject(handle, packets::clone_for_test(&connection), false), STATUS_SUCCESS);
    single_violation("completed with NULL");
    packets::deliver_injection_completions();
    finish(kernel, probe, handle);
}

/// I6: denying as Microsoft's inspect sample does (complete with NULL,
/// free the clone) is clean, and so is completing at ALE_AUTH_CONNECT with
/// a list and freeing it (the rule is the receive path's).
#[test]
fn a_deny_completes_with_null_and_frees_the_clone() {
    let (kernel, probe) = setup(137, fwp::FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4);
    let handle = probe::transport_injection_handle(2);
    let connection = probe::inbound_udp(51_001);
    let clone = packets::clone_for_test(&connection);
    let operation = pend(&connection);
    engine::pending::FwpsCompleteOperation0(operation, std::ptr::null_mut());
    packets::FwpsFreeCloneNetBufferList0(clone, 0);
    assert!(verifier::take().is_empty());
    finish(kernel, probe, handle);
}
