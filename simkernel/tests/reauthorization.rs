//! Conformance: reauthorization of live ALE connections
//! (simkernel/CONFORMANCE.md, rows Z1-Z5). Sources: SDK "ALE
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
