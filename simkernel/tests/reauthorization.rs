//! Conformance: reauthorization of live ALE connections
//! (simkernel/CONFORMANCE.md, rows Z1-Z9). Sources: SDK "ALE
//! Re-authorization"; WDD "Processing Classify Callouts Asynchronously";
//! FWP_CONDITION_REAUTHORIZE_REASON_* (fwpmtypes.h). Driven by probes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod probe;

use fwps_types::*;
use probe::Event;
use wfpcallout_simkernel::engine::{self, Connection, FilterAction, reauthorization};
use wfpcallout_simkernel::verifier::{self, ViolationKind};

const PERMIT: u32 = fwp::FWP_ACTION_PERMIT;
const BLOCK: u32 = fwp::FWP_ACTION_BLOCK;

fn auth_fields(filter: u64) -> Vec<(u32, u32)> {
    probe::events()
        .iter()
        .filter_map(|e| {
            if let Event::AuthFields(id, flags, reason) = e {
                (*id == filter).then_some((*flags, *reason))
            } else {
                None
            }
        })
        .collect()
}

fn inbound(port: u16) -> Connection {
    Connection { layer_id: FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V4, local_port: port, ..Connection::tcp_connect_v4(50_000) }
}

/// Z1: a permitted connection is live; an initial authorization carries
/// neither IS_REAUTHORIZE nor a reason.
#[test]
fn a_permitted_connection_is_live_and_its_first_classify_is_initial() {
    let (kernel, _probe, id) = probe::boot_with_filter(71, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4);
    probe::answer(PERMIT);
    let connection = Connection::tcp_connect_v4(443);
    assert!(engine::classify(&connection).permitted());
    assert!(reauthorization::is_live(&connection));
    assert_eq!(auth_fields(id), vec![(0, 0)]);
    kernel.assert_clean();
}

/// Z2: a filter added or deleted at the layer reauthorizes every live
/// connection there on its next packet, with IS_REAUTHORIZE and
/// POLICY_CHANGE; nothing is due at another layer, nor twice.
#[test]
fn a_policy_change_reauthorizes_live_connections_on_their_next_packet() {
    let (kernel, probe, id) = probe::boot_with_filter(72, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4);
    probe::answer(PERMIT);
    let connection = Connection::tcp_connect_v4(443);
    assert!(engine::classify(&connection).permitted());
    let other = engine::add_filter(&probe.static_filter(FilterAction::Permit, 0, 0)).unwrap();
    let result = reauthorization::next_packet(&connection).expect("due after the policy change");
    assert!(result.permitted());
    assert_eq!(
        auth_fields(id).last(),
        Some(&(FWP_CONDITION_FLAG_IS_REAUTHORIZE, fwp::FWP_CONDITION_REAUTHORIZE_REASON_POLICY_CHANGE))
    );
    assert!(reauthorization::next_packet(&connection).is_none(), "reauthorized once");
    engine::delete_filter(other).unwrap();
    assert!(reauthorization::next_packet(&connection).is_some(), "a deletion is a policy change too");
    let elsewhere = Connection { layer_id: FWPS_LAYER_ALE_AUTH_CONNECT_V6, ..connection.clone() };
    assert!(reauthorization::next_packet(&elsewhere).is_none());
    kernel.assert_clean();
}

/// Z3: a reauthorization that blocks tears the connection down.
#[test]
fn a_blocking_reauthorization_tears_the_connection_down() {
    let (kernel, probe, _id) = probe::boot_with_filter(73, fwp::FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4);
    probe::answer(PERMIT);
    let connection = inbound(8080);
    assert!(engine::classify(&connection).permitted());
    assert!(reauthorization::is_live(&connection));
    probe.answer(BLOCK, true);
    let result = reauthorization::reauthorize(&connection, fwp::FWP_CONDITION_REAUTHORIZE_REASON_NEW_ARRIVAL_INTERFACE);
    assert!(!result.permitted());
    assert!(!reauthorization::is_live(&connection));
    assert_eq!(reauthorization::live_count(), 0);
    kernel.assert_clean();
}

/// Z4: any documented reason is delivered as given (here: a new arrival
/// interface) at recv-accept too.
#[test]
fn other_reasons_are_delivered_with_their_value() {
    let (kernel, _probe, id) = probe::boot_with_filter(74, fwp::FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4);
    probe::answer(PERMIT);
    let connection = inbound(8081);
    assert!(engine::classify(&connection).permitted());
    let reason = fwp::FWP_CONDITION_REAUTHORIZE_REASON_NEW_ARRIVAL_INTERFACE;
    assert!(reauthorization::reauthorize(&connection, reason).permitted());
    assert_eq!(auth_fields(id).last(), Some(&(FWP_CONDITION_FLAG_IS_REAUTHORIZE, reason)));
    kernel.assert_clean();
}

/// Z5: completing a pended connect reauthorizes it with CLASSIFY_COMPLETION.
#[test]
fn completion_reauthorizes_with_classify_completion() {
    let (kernel, _probe, id) = probe::boot_with_filter(75, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4);
    probe::pend_next(true);
    let first = engine::classify(&Connection::tcp_connect_v4(443));
    let operation = first.pended.expect("pended");
    probe::answer(PERMIT);
    engine::pending::FwpsCompleteOperation0(operation as *mut _, std::ptr::null_mut());
    let completion = engine::pending::take_completions().pop().unwrap();
    assert!(completion.reauthorization.unwrap().permitted());
    assert_eq!(
        auth_fields(id).last(),
        Some(&(FWP_CONDITION_FLAG_IS_REAUTHORIZE, fwp::FWP_CONDITION_REAUTHORIZE_REASON_CLASSIFY_COMPLETION))
    );
    assert!(reauthorization::is_live(&Connection::tcp_connect_v4(443)));
    kernel.assert_clean();
}

/// Z6: the completion reauthorization can also come later, from another
/// thread (the documentation does not say which; a test chooses).
#[test]
fn completion_reauthorization_can_come_later_from_another_thread() {
    let (kernel, _probe, id) = probe::boot_with_filter(76, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4);
    probe::pend_next(true);
    let operation = engine::classify(&Connection::tcp_connect_v4(443)).pended.expect("pended");
    probe::answer(PERMIT);
    engine::pending::defer_completion_reauthorizations(true);
    engine::pending::FwpsCompleteOperation0(operation as *mut _, std::ptr::null_mut());
    assert!(engine::pending::take_completions().pop().unwrap().reauthorization.is_none());
    assert_eq!(auth_fields(id).len(), 1, "nothing reauthorized yet");
    let delivered = std::thread::spawn(engine::pending::deliver_deferred_reauthorizations).join().unwrap();
    assert_eq!(delivered.len(), 1);
    assert!(delivered[0].1.permitted());
    assert_eq!(
        auth_fields(id).last(),
        Some(&(FWP_CONDITION_FLAG_IS_REAUTHORIZE, fwp::FWP_CONDITION_REAUTHORIZE_REASON_CLASSIFY_COMPLETION))
    );
    kernel.assert_clean();
}

/// Z7: `FwpsCompleteOperation0` at ALE_AUTH_CONNECT with a NET_BUFFER_LIST
/// is reported: the documentation says what the list is for only at
/// ALE_AUTH_RECV_ACCEPT, and Microsoft's inspect sample completes a connect
/// with NULL. The operation still completes (the completion says it came
/// with a list), the reauthorization still runs, and the clone stays the
/// callout's to free; the same completion with NULL is no violation.
#[test]
fn a_completion_at_connect_with_a_packet_is_reported() {
    let (kernel, _probe, _id) = probe::boot_with_filter(77, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4);
    probe::pend_next(true);
    let connection = Connection { protocol: 17, ..Connection::tcp_connect_v4(53) };
    let operation = engine::classify(&connection).pended.expect("pended");
    let datagram = engine::packets::clone_for_test(&connection);
    probe::answer(PERMIT);
    engine::pending::FwpsCompleteOperation0(operation as *mut _, datagram);
    let violations = verifier::take();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].kind, ViolationKind::ApiMisuse);
    assert!(violations[0].message.contains("at ALE_AUTH_CONNECT with a NET_BUFFER_LIST"), "{}", violations[0].message);
    let completion = engine::pending::take_completions().pop().unwrap();
    assert!(completion.with_packet);
    assert!(completion.reauthorization.unwrap().permitted());
    engine::packets::FwpsFreeCloneNetBufferList0(datagram, 0);

    // The same connection pended again and completed with NULL: clean.
    probe::pend_next(true);
    let again = Connection { local_port: connection.local_port + 1, ..connection };
    let operation = engine::classify(&again).pended.expect("pended");
    engine::pending::FwpsCompleteOperation0(operation as *mut _, std::ptr::null_mut());
    assert!(verifier::take().is_empty());
    let completion = engine::pending::take_completions().pop().unwrap();
    assert!(!completion.with_packet);
    assert!(completion.reauthorization.unwrap().permitted());
    kernel.assert_clean();
}

/// Z8: reauthorization in either direction: after a policy change, the
/// next packet of a connection authorized at ALE_AUTH_CONNECT may be an
/// inbound one; it is reauthorized at the connection's own layer, with
/// IS_REAUTHORIZE and POLICY_CHANGE, and the metadata's packetDirection
/// INBOUND (WDS inspect `inspect.c`, the three re-auth cases at
/// ALE_AUTH_CONNECT); the initial classification said OUTBOUND. Likewise
/// an outbound packet of a recv-accept connection says OUTBOUND there.
#[test]
fn reauthorization_in_the_opposite_direction_says_so() {
    let (kernel, probe, id) = probe::boot_with_filter(131, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4);
    probe::answer(PERMIT);
    let connection = Connection::tcp_connect_v4(443);
    assert!(engine::classify(&connection).permitted());
    let _other = engine::add_filter(&probe.filter()).unwrap();
    assert!(reauthorization::next_packet_in_opposite_direction(&connection).unwrap().permitted());
    assert_eq!(
        auth_fields(id),
        vec![(0, 0), (FWP_CONDITION_FLAG_IS_REAUTHORIZE, fwp::FWP_CONDITION_REAUTHORIZE_REASON_POLICY_CHANGE)]
    );
    let directions: Vec<i32> = probe::directions().iter().filter(|d| d.0 == id).map(|d| d.1).collect();
    assert_eq!(directions, vec![fwp::FWP_DIRECTION_OUTBOUND, fwp::FWP_DIRECTION_INBOUND]);
    assert!(reauthorization::next_packet_in_opposite_direction(&connection).is_none(), "nothing due any more");
    assert_eq!(probe.unregister(), STATUS_SUCCESS);
    kernel.assert_unloaded_clean();
    // One kernel at a time: the next boot waits for this one to go.
    drop(kernel);

    let (kernel, probe, id) = probe::boot_with_filter(132, fwp::FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4);
    probe::answer(PERMIT);
    let connection = inbound(3389);
    assert!(engine::classify(&connection).permitted());
    let _other = engine::add_filter(&probe.filter()).unwrap();
    assert!(reauthorization::next_packet_in_opposite_direction(&connection).is_some());
    let directions: Vec<i32> = probe::directions().iter().filter(|d| d.0 == id).map(|d| d.1).collect();
    assert_eq!(directions, vec![fwp::FWP_DIRECTION_INBOUND, fwp::FWP_DIRECTION_OUTBOUND]);
    assert_eq!(probe.unregister(), STATUS_SUCCESS);
    kernel.assert_unloaded_clean();
}

/// What a reauthorization's classifyFn was lent: whether a packet,
/// `packetDirection`, the packet's `DataOffset`, and the ports of its
/// transport header (source, destination), read where the header is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Lent {
    packet: bool,
    direction: i32,
    data_offset: u32,
    ports: (u16, u16),
}

static LENT: std::sync::Mutex<Vec<Lent>> = std::sync::Mutex::new(Vec::new());

fn record_lent(layer_data: *mut core::ffi::c_void, metadata: &FWPS_INCOMING_METADATA_VALUES0) {
    let mut lent =
        Lent { packet: !layer_data.is_null(), direction: metadata.packetDirection, data_offset: 0, ports: (0, 0) };
    if lent.packet {
        use wfpcallout_simkernel::engine::packets;
        // SAFETY: layerData is a NET_BUFFER_LIST; FirstNetBuffer at offset 8.
        let buffer = unsafe { layer_data.cast::<u8>().wrapping_add(8).cast::<*mut core::ffi::c_void>().read() };
        // SAFETY: a NET_BUFFER (x64): DataOffset at offset 40.
        lent.data_offset = unsafe { buffer.cast::<u8>().wrapping_add(40).cast::<u32>().read() };
        // An inbound packet starts after its transport header: step back to read it.
        let back =
            if metadata.packetDirection == fwp::FWP_DIRECTION_INBOUND { metadata.transportHeaderSize } else { 0 };
        assert_eq!(packets::NdisRetreatNetBufferDataStart(buffer, back, 0, std::ptr::null_mut()), 0);
        let mut first = [0u8; 4];
        // SAFETY: `first` holds 4 bytes.
        let data = unsafe { packets::NdisGetDataBuffer(buffer, 4, first.as_mut_ptr().cast(), 1, 0) };
        // SAFETY: NDIS returned 4 readable bytes.
        let bytes = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), 4) };
        lent.ports = (u16::from_be_bytes([bytes[0], bytes[1]]), u16::from_be_bytes([bytes[2], bytes[3]]));
        packets::NdisAdvanceNetBufferDataStart(buffer, back, 0, std::ptr::null_mut());
    }
    LENT.lock().unwrap().push(lent);
}

fn take_lent() -> Vec<Lent> {
    std::mem::take(&mut *LENT.lock().unwrap())
}

const POLICY_CHANGE: u32 = fwp::FWP_CONDITION_REAUTHORIZE_REASON_POLICY_CHANGE;

/// Probe `n` at `layer`, permitting, with every layerData it is lent
/// recorded from now on.
fn recording_lent(n: u128, layer: GUID) -> (wfpcallout_simkernel::Kernel, probe::Probe) {
    let (kernel, probe, _id) = probe::boot_with_filter(n, layer);
    probe::answer(PERMIT);
    take_lent();
    probe::on_layer_data(Some(record_lent));
    (kernel, probe)
}

/// Stops recording and returns what was lent, checking that the engine
/// released every packet it lent.
fn lent_and_released() -> Vec<Lent> {
    probe::on_layer_data(None);
    assert_eq!(engine::packets::engine_packets_outstanding(), 0, "the engine released every packet it lent");
    take_lent()
}

/// Z9: a reauthorization at ALE_AUTH_CONNECT other than the completion's
/// carries its packet or none, a coin per reauthorization: over a run
/// both readings happen; the engine frees each packet it lent.
#[test]
fn a_connect_reauthorization_carries_its_packet_or_none() {
    let (kernel, probe) = recording_lent(133, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4);
    let connection = Connection::tcp_connect_v4(443);
    for i in 0..64 {
        let again = Connection { opposite_direction: i % 2 == 1, ..connection.clone() };
        assert!(reauthorization::reauthorize(&again, POLICY_CHANGE).permitted());
    }
    let lent = lent_and_released();
    assert_eq!(lent.len(), 64);
    let with_packet = lent.iter().filter(|l| l.packet).count();
    assert!(with_packet > 0, "some reauthorizations carry their packet");
    assert!(with_packet < 64, "some carry none");
    assert_eq!(probe.unregister(), STATUS_SUCCESS);
    kernel.assert_unloaded_clean();
}

/// Z9: each reading fixed by the test facility holds for every
/// reauthorization; the completion's reauthorization carries none either
/// way (D1).
#[test]
fn each_fixed_reading_of_the_connect_reauthorization_packet_holds() {
    let (kernel, probe) = recording_lent(134, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4);
    let connection = Connection::tcp_connect_v4(443);
    for reading in [true, false] {
        engine::set_connect_reauthorization_packet(Some(reading));
        for reason in [POLICY_CHANGE, fwp::FWP_CONDITION_REAUTHORIZE_REASON_NEW_ARRIVAL_INTERFACE] {
            for _ in 0..8 {
                assert!(reauthorization::reauthorize(&connection, reason).permitted());
            }
        }
        assert!(take_lent().iter().all(|l| l.packet == reading), "reading {reading}");
        let _ = reauthorization::reauthorize(&connection, fwp::FWP_CONDITION_REAUTHORIZE_REASON_CLASSIFY_COMPLETION);
        assert!(!take_lent()[0].packet, "the completion's reauthorization carries none");
    }
    engine::set_connect_reauthorization_packet(None);
    assert!(lent_and_released().is_empty());
    assert_eq!(probe.unregister(), STATUS_SUCCESS);
    kernel.assert_unloaded_clean();
}

/// Z9: the packet a reauthorization carries travels in the direction its
/// metadata says, positioned as WDD "Data offset positions" has the
/// transport layers (outbound: at the transport header; inbound: after
/// it), at ALE_AUTH_CONNECT and ALE_AUTH_RECV_ACCEPT alike; recv-accept
/// always carries one. The engine frees each after the classification.
#[test]
fn a_reauthorizations_packet_has_its_direction_and_documented_offset() {
    let (ip, tcp) = (20, 20);
    let (local, remote) = (49_152, 443);
    let (kernel, probe) = recording_lent(135, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4);
    engine::set_connect_reauthorization_packet(Some(true));
    let connection = Connection::tcp_connect_v4(remote);
    let _ = reauthorization::reauthorize(&connection, POLICY_CHANGE);
    let _ = reauthorization::reauthorize(&Connection { opposite_direction: true, ..connection }, POLICY_CHANGE);
    assert_eq!(
        lent_and_released(),
        vec![
            Lent { packet: true, direction: fwp::FWP_DIRECTION_OUTBOUND, data_offset: ip, ports: (local, remote) },
            Lent { packet: true, direction: fwp::FWP_DIRECTION_INBOUND, data_offset: ip + tcp, ports: (remote, local) },
        ]
    );
    assert_eq!(probe.unregister(), STATUS_SUCCESS);
    kernel.assert_unloaded_clean();
    drop(kernel);

    let (kernel, probe) = recording_lent(136, fwp::FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4);
    let connection = inbound(3389);
    let _ = reauthorization::reauthorize(&connection, POLICY_CHANGE);
    let _ = reauthorization::reauthorize(&Connection { opposite_direction: true, ..connection }, POLICY_CHANGE);
    // `inbound`: local 3389, remote 50000.
    assert_eq!(
        lent_and_released(),
        vec![
            Lent { packet: true, direction: fwp::FWP_DIRECTION_INBOUND, data_offset: ip + tcp, ports: (50_000, 3389) },
            Lent { packet: true, direction: fwp::FWP_DIRECTION_OUTBOUND, data_offset: ip, ports: (3389, 50_000) },
        ]
    );
    assert_eq!(probe.unregister(), STATUS_SUCCESS);
    kernel.assert_unloaded_clean();
}
