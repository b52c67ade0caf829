//! An ask at ALE_AUTH_CONNECT for a UDP connection: the engine presents the
//! first datagram as layerData, and completing the pended operation
//! flushes it (FwpsCompleteOperation0: "The callout could buffer such data
//! and reinject the data on the application's behalf"). On a permit the
//! driver sends its copy with FwpsInjectTransportSendAsync1; on a block
//! nothing is sent; either way nothing stays held (CONFORMANCE.md D1-D4).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::atomic::Ordering;
use wfpcallout::callbacks::state::STATE;
use wfpcallout::wfp::injection::COPIES;
use wfpcallout_scenario::{Harness, Layer, PolicySource};
use wfpcallout_simkernel::engine::{self, Connection, packets, pending, reauthorization};
use wfpcallout_wire::{Label, LogLevel, PolicyAction, PolicyRepr, Verdict};

const AGENT: u64 = 0xDA7A;

fn load_with_ask(layer: Layer) -> (Harness, u64) {
    let harness = Harness::load();
    let ask = PolicyRepr {
        action: PolicyAction::Ask { timeout_ms: 60_000, default_verdict: Verdict::Block },
        log_level: LogLevel::Off,
        label: Label::new("ask").unwrap(),
    };
    let id = harness.add_filter(layer, PolicySource::Policy(&ask)).unwrap();
    harness.connect_agent(AGENT);
    (harness, id)
}

fn udp(layer: Layer, port: u16) -> Connection {
    Connection { protocol: 17, ..layer.connection(port) }
}

fn answer(verdict: Verdict) {
    let request = STATE.pending.take_next().unwrap();
    assert_eq!(request.protocol, 17);
    STATE.pending.answer(request.request_id, verdict).unwrap();
}

/// The reauthorization that completion triggers runs at once: the
/// connection is authorized, then the copy is sent on it.
#[test]
fn a_permitted_first_datagram_is_sent_not_lost() {
    for layer in [Layer::ConnectV4, Layer::ConnectV6] {
        let (harness, filter) = load_with_ask(layer);
        let connection = udp(layer, 53);
        assert!(engine::classify(&connection).pended.is_some(), "pended at {layer:?}");
        answer(Verdict::Permit);
        let completion = pending::take_completions().remove(0);
        assert!(completion.reauthorization.unwrap().permitted());
        // The send's completion may come after the send returned (CONFORMANCE
        // I2), and the datagram travel then, just before it (I7).
        packets::deliver_injection_completions();
        assert!(packets::lost_datagrams().is_empty(), "lost: {:?}", packets::lost_datagrams());
        let sent = packets::take_sent();
        assert_eq!(sent.len(), 1, "the first datagram was sent");
        assert_eq!((sent[0].0.remote_port, sent[0].0.protocol), (53, 17));
        assert!(sent[0].1.is_none(), "on the authorized connection, without another classification");
        assert_eq!(COPIES.bytes_held.load(Ordering::Relaxed), 0, "the send's completion freed the copy");
        harness.delete_filter(filter).unwrap();
        harness.unload_and_check();
    }
}

/// The reauthorization comes later, from another thread (CONFORMANCE Z6):
/// the copy is sent before it, so the engine classifies the injected
/// datagram at ALE_AUTH_CONNECT, where the driver recognises its own packet.
#[test]
fn a_datagram_sent_before_the_reauthorization_is_recognised_as_ours() {
    let (harness, filter) = load_with_ask(Layer::ConnectV4);
    pending::defer_completion_reauthorizations(true);
    let connection = udp(Layer::ConnectV4, 123);
    assert!(engine::classify(&connection).pended.is_some());
    answer(Verdict::Permit);
    // The datagram may travel after the send returned (CONFORMANCE I7); it
    // does before the reauthorization here.
    packets::deliver_injection_completions();
    let sent = packets::take_sent();
    assert_eq!(sent.len(), 1, "sent");
    let classified = sent[0].1.expect("classified: the connection was not authorized yet");
    assert!(classified.permitted() && classified.pended.is_none(), "our own datagram passes: {classified:?}");
    let delivered = pending::deliver_deferred_reauthorizations();
    assert!(delivered[0].1.permitted(), "the reauthorization keeps the agent's verdict");
    assert!(reauthorization::is_live(&connection));
    assert!(packets::lost_datagrams().is_empty());
    let _ = pending::take_completions();
    harness.delete_filter(filter).unwrap();
    harness.unload_and_check();
}

#[test]
fn a_blocked_first_datagram_is_dropped_and_freed() {
    let (harness, filter) = load_with_ask(Layer::ConnectV4);
    assert!(engine::classify(&udp(Layer::ConnectV4, 500)).pended.is_some());
    answer(Verdict::Block);
    packets::deliver_injection_completions();
    assert!(packets::take_sent().is_empty(), "nothing sent for a blocked connection");
    assert!(packets::lost_datagrams().is_empty(), "a blocked connection loses nothing");
    assert_eq!(COPIES.bytes_held.load(Ordering::Relaxed), 0);
    // A TCP connect has no datagram: nothing is copied for it.
    assert!(engine::classify(&Layer::ConnectV4.connection(443)).pended.is_some());
    assert_eq!(COPIES.bytes_held.load(Ordering::Relaxed), 0);
    answer_tcp(Verdict::Permit);
    packets::deliver_injection_completions();
    assert!(packets::take_sent().is_empty());
    let _ = pending::take_completions();
    harness.delete_filter(filter).unwrap();
    harness.unload_and_check();
}

fn answer_tcp(verdict: Verdict) {
    let request = STATE.pending.take_next().unwrap();
    STATE.pending.answer(request.request_id, verdict).unwrap();
}

/// The datagram's socket control data (the application's ancillary data,
/// e.g. IP_PKTINFO choosing the source address; metadata `controlData`,
/// valid only during classify) is copied with it, counted in the copy
/// budget, and sent with it in `sendArgs.controlData`, as the inspect
/// sample does (CONFORMANCE.md D4 reports a send without it). More than
/// `MAX_CONTROL_DATA` is not copied: the connection is still asked about.
#[test]
fn a_first_datagrams_control_data_goes_with_it() {
    use wfpcallout::wfp::injection::MAX_CONTROL_DATA;
    let held = || COPIES.bytes_held.load(Ordering::Relaxed);
    for layer in [Layer::ConnectV4, Layer::ConnectV6] {
        let (harness, filter) = load_with_ask(layer);
        let connection = udp(layer, 53);
        // The same socket without control data first: what the datagram holds.
        assert!(engine::classify(&connection).pended.is_some());
        let datagram = held();
        answer(Verdict::Block);
        assert_eq!(held(), 0);
        let _ = pending::take_completions();

        let ancillary: Vec<u8> = (0..40).collect();
        packets::set_control_data(&connection, &ancillary);
        assert!(engine::classify(&connection).pended.is_some(), "pended at {layer:?}");
        assert_eq!(held(), datagram + 40, "the control data is copied and counted");
        answer(Verdict::Permit);
        let _ = pending::take_completions();
        // The datagram may travel after the send returned (CONFORMANCE I7).
        packets::deliver_injection_completions();
        assert_eq!(packets::take_sent().len(), 1);
        assert_eq!(packets::take_sent_control_data(), [ancillary], "sent with the datagram");
        let violations = wfpcallout_simkernel::verifier::take();
        assert!(violations.is_empty(), "{violations:?}");
        // The send's completion may come after the send returned.
        packets::deliver_injection_completions();
        assert_eq!(held(), 0, "freed with the copy");

        // Too much control data: no copy (counted), still asked about.
        let refused = COPIES.refused.load(Ordering::Relaxed);
        packets::set_control_data(&connection, &vec![7; MAX_CONTROL_DATA + 1]);
        assert!(engine::classify(&connection).pended.is_some(), "asked about without a copy");
        assert_eq!(COPIES.refused.load(Ordering::Relaxed), refused + 1);
        assert_eq!(held(), 0);
        answer(Verdict::Block);
        let _ = pending::take_completions();
        packets::set_control_data(&connection, &[]);
        harness.delete_filter(filter).unwrap();
        harness.unload_and_check();
    }
}
