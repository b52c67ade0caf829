//! Asynchronous verdicts: an ask filter pends the classification, the agent
//! reads the request and answers, the completion's reauthorization takes
//! that verdict. Every way a request can end ends it exactly once: verdict,
//! timeout, no agent, full queue, unknown or duplicate verdicts, filter
//! deleted, agent gone, unload.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use fwps_types::*;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use wfpcallout::callbacks::state::STATE;
use wfpcallout::platform::status::NtStatus;
use wfpcallout::verdicts::pending::MAX_PENDING_REQUESTS;
use wfpcallout_scenario::{Harness, Layer, PolicySource};
use wfpcallout_simkernel::engine::{self, packets, pending};
use wfpcallout_simkernel::{clock, faults};
use wfpcallout_wire::{Label, LogLevel, PolicyAction, PolicyRepr, Verdict};

const AGENT: u64 = 0xA6E7;

fn ask(timeout_ms: u32, default_verdict: Verdict) -> PolicyRepr {
    PolicyRepr {
        action: PolicyAction::Ask { timeout_ms, default_verdict },
        log_level: LogLevel::Off,
        label: Label::new("ask").unwrap(),
    }
}

fn policy(action: PolicyAction) -> PolicyRepr {
    PolicyRepr { action, log_level: LogLevel::Off, label: Label::new("other").unwrap() }
}

fn stat(counter: &std::sync::atomic::AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

fn load_with_ask(layer: Layer, timeout_ms: u32, default_verdict: Verdict) -> (Harness, u64) {
    let harness = Harness::load();
    let id = harness.add_filter(layer, PolicySource::Policy(&ask(timeout_ms, default_verdict))).unwrap();
    (harness, id)
}

#[test]
fn pended_connection_gets_the_agents_verdict_through_reauthorization() {
    for layer in [Layer::ConnectV4, Layer::ConnectV6] {
        for verdict in [Verdict::Permit, Verdict::Block] {
            let (harness, filter) = load_with_ask(layer, 5_000, Verdict::Block);
            harness.connect_agent(AGENT);
            let first = harness.classify_layer(layer, 443);
            assert!(first.pended.is_some(), "ask pends at {layer:?}");
            assert!(!first.permitted() && first.absorbed && first.hard, "BLOCK + ABSORB, write right cleared");
            let request = STATE.pending.take_next().unwrap();
            assert_eq!((request.filter_id, request.remote_port, request.protocol), (filter, 443, 6));
            assert_eq!(request.label.as_str(), "ask");
            STATE.pending.answer(request.request_id, verdict).unwrap();
            let completions = pending::take_completions();
            assert_eq!(completions.len(), 1);
            assert_eq!(completions[0].operation, first.pended.unwrap());
            let reauth = completions[0].reauthorization.unwrap();
            assert_eq!(
                reauth.permitted(),
                verdict == Verdict::Permit,
                "reauthorization answered from the kept verdict"
            );
            assert_eq!(STATE.pending.live(), 0, "the reauthorization consumed the request");
            assert_eq!(harness.counters(filter).unwrap().pended, 1);
            harness.delete_filter(filter).unwrap();
            harness.unload_and_check();
        }
    }
}

#[test]
fn ten_thousand_concurrent_asks_each_get_their_own_verdict_once() {
    let (harness, filter) = load_with_ask(Layer::ConnectV4, 60_000, Verdict::Block);
    harness.connect_agent(AGENT);
    const TOTAL: u16 = 10_000;
    let stop = Arc::new(AtomicBool::new(false));
    let agents: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut answered = 0u32;
                while !stop.load(Ordering::Acquire) {
                    match STATE.pending.take_next() {
                        Some(request) => {
                            // Even ports are permitted, odd ones blocked.
                            let verdict = if request.remote_port % 2 == 0 { Verdict::Permit } else { Verdict::Block };
                            STATE.pending.answer(request.request_id, verdict).unwrap();
                            answered += 1;
                        }
                        None => std::thread::yield_now(),
                    }
                }
                answered
            })
        })
        .collect();
    let classifiers: Vec<_> = (0..2u16)
        .map(|worker| {
            std::thread::spawn(move || {
                let mut pended = 0;
                for i in 0..TOTAL / 2 {
                    // Stay under the documented queue limit, so every ask pends.
                    while STATE.pending.live() >= MAX_PENDING_REQUESTS - 8 {
                        std::thread::yield_now();
                    }
                    let port = 1 + worker * (TOTAL / 2) + i;
                    let result = engine::classify(&Layer::ConnectV4.connection(port));
                    pended += u32::from(result.pended.is_some());
                }
                pended
            })
        })
        .collect();
    let pended: u32 = classifiers.into_iter().map(|t| t.join().unwrap()).sum();
    while pending::pended_count() != 0 {
        std::thread::yield_now();
    }
    stop.store(true, Ordering::Release);
    let answered: u32 = agents.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!((pended, answered), (u32::from(TOTAL), u32::from(TOTAL)));
    let completions = pending::take_completions();
    assert_eq!(completions.len(), usize::from(TOTAL));
    let operations: HashSet<usize> = completions.iter().map(|c| c.operation).collect();
    assert_eq!(operations.len(), usize::from(TOTAL), "no operation completed twice");
    for completion in &completions {
        let expected = completion.connection.remote_port % 2 == 0;
        assert_eq!(
            completion.reauthorization.unwrap().permitted(),
            expected,
            "port {}",
            completion.connection.remote_port
        );
    }
    assert_eq!(stat(&STATE.pending.stats.completed), u64::from(TOTAL));
    assert_eq!(STATE.pending.live(), 0);
    harness.delete_filter(filter).unwrap();
    harness.unload_and_check();
}

#[test]
fn timeout_completes_with_the_default_verdict() {
    let (harness, filter) = load_with_ask(Layer::ConnectV4, 250, Verdict::Permit);
    harness.connect_agent(AGENT);
    assert!(harness.classify_layer(Layer::ConnectV4, 80).pended.is_some());
    clock::advance_ms(200);
    wfpcallout::control::lifecycle::on_timer();
    assert_eq!(pending::pended_count(), 1, "not yet");
    clock::advance_ms(60);
    wfpcallout::control::lifecycle::on_timer();
    let completions = pending::take_completions();
    assert_eq!(completions.len(), 1);
    assert!(completions[0].reauthorization.unwrap().permitted(), "default verdict: permit");
    assert_eq!(stat(&STATE.pending.stats.timed_out), 1);
    // A late verdict for it is refused and changes nothing.
    let late = STATE.pending.answer(1, Verdict::Block);
    assert_eq!(late, Err(NtStatus::NOT_FOUND));
    harness.delete_filter(filter).unwrap();
    harness.unload_and_check();
}

#[test]
fn no_agent_means_the_default_verdict_at_once() {
    let (harness, filter) = load_with_ask(Layer::ConnectV6, 1_000, Verdict::Block);
    let result = harness.classify_layer(Layer::ConnectV6, 22);
    assert!(result.pended.is_none());
    assert!(!result.permitted());
    assert_eq!(harness.counters(filter).unwrap().defaulted, 1);
    assert_eq!(stat(&STATE.pending.stats.defaulted), 1);
    harness.delete_filter(filter).unwrap();
    harness.unload_and_check();
}

#[test]
fn full_queue_means_the_default_verdict_at_once() {
    let (harness, filter) = load_with_ask(Layer::ConnectV4, 60_000, Verdict::Permit);
    harness.connect_agent(AGENT);
    for port in 0..MAX_PENDING_REQUESTS as u16 {
        assert!(harness.classify_layer(Layer::ConnectV4, port).pended.is_some());
    }
    let overflow = harness.classify_layer(Layer::ConnectV4, 65_000);
    assert!(overflow.pended.is_none() && overflow.permitted(), "queue full: default permit");
    assert_eq!(stat(&STATE.pending.stats.defaulted), 1);
    // Deleting the filter completes all of them with the default verdict,
    // at the next timer tick (not from inside notifyFn).
    harness.delete_filter(filter).unwrap();
    assert_eq!(pending::pended_count(), MAX_PENDING_REQUESTS, "nothing completed inside notifyFn DELETE");
    wfpcallout::control::lifecycle::on_timer();
    assert_eq!(pending::pended_count(), 0);
    assert_eq!(pending::take_completions().len(), MAX_PENDING_REQUESTS);
    harness.unload_and_check();
}

#[test]
fn unknown_duplicate_and_undelivered_verdicts_are_refused() {
    let (harness, filter) = load_with_ask(Layer::ConnectV4, 60_000, Verdict::Block);
    harness.connect_agent(AGENT);
    harness.classify_layer(Layer::ConnectV4, 1);
    harness.classify_layer(Layer::ConnectV4, 2);
    let first = STATE.pending.take_next().unwrap();
    // The second was never read by an agent: a verdict for it is a guess.
    assert_eq!(STATE.pending.answer(first.request_id + 1, Verdict::Permit), Err(NtStatus::NOT_FOUND));
    assert_eq!(STATE.pending.answer(999_999, Verdict::Permit), Err(NtStatus::NOT_FOUND));
    STATE.pending.answer(first.request_id, Verdict::Permit).unwrap();
    assert_eq!(STATE.pending.answer(first.request_id, Verdict::Block), Err(NtStatus::NOT_FOUND), "duplicate");
    assert_eq!(stat(&STATE.pending.stats.verdicts_rejected), 3);
    assert_eq!(pending::take_completions().len(), 1);
    assert_eq!(pending::pended_count(), 1);
    harness.delete_filter(filter).unwrap();
    wfpcallout::control::lifecycle::on_timer();
    assert_eq!(pending::pended_count(), 0);
    harness.unload_and_check();
}

#[test]
fn filter_deleted_mid_wait_completes_and_releases() {
    let (harness, filter) = load_with_ask(Layer::ConnectV4, 60_000, Verdict::Block);
    harness.connect_agent(AGENT);
    for port in 0..10 {
        harness.classify_layer(Layer::ConnectV4, port);
    }
    let context = STATE.table.get(filter).unwrap();
    assert_eq!(context.reference_count(), 13, "table + its slot + 10 requests + ours");
    assert_eq!(context.references(), 12, "as reported: table + 10 requests + ours");
    drop(context);
    let delivered = STATE.pending.take_next().unwrap();
    harness.delete_filter(filter).unwrap();
    assert!(pending::take_completions().is_empty(), "not completed from inside notifyFn");
    wfpcallout::control::lifecycle::on_timer();
    let completions = pending::take_completions();
    assert_eq!(completions.len(), 10, "completed by the next timer tick");
    assert_eq!(stat(&STATE.pending.stats.timed_out), 0, "counted as deleted, not timed out");
    // The filter is gone: its reauthorizations are decided by what is left
    // (nothing here: permit).
    assert!(completions.iter().all(|c| c.reauthorization.unwrap().decided_by.is_none()));
    assert_eq!(STATE.pending.answer(delivered.request_id, Verdict::Permit), Err(NtStatus::NOT_FOUND));
    assert_eq!(STATE.pending.live(), 0);
    harness.unload_and_check();
}

#[test]
fn agent_disconnect_completes_everything_with_the_default() {
    let (harness, filter) = load_with_ask(Layer::ConnectV6, 60_000, Verdict::Permit);
    harness.connect_agent(AGENT);
    harness.connect_agent(AGENT + 1);
    for port in 0..5 {
        harness.classify_layer(Layer::ConnectV6, port);
    }
    harness.disconnect_agent(AGENT);
    assert_eq!(pending::pended_count(), 5, "one agent is still there");
    harness.disconnect_agent(AGENT + 1);
    let completions = pending::take_completions();
    assert_eq!(completions.len(), 5);
    assert!(completions.iter().all(|c| c.reauthorization.unwrap().permitted()));
    assert!(harness.classify_layer(Layer::ConnectV6, 9).pended.is_none(), "no agent: no pend");
    harness.delete_filter(filter).unwrap();
    harness.unload_and_check();
}

#[test]
fn unload_mid_wait_completes_everything() {
    let (mut harness, filter) = load_with_ask(Layer::ConnectV4, 60_000, Verdict::Block);
    harness.connect_agent(AGENT);
    for port in 0..7 {
        harness.classify_layer(Layer::ConnectV4, port);
    }
    let _delivered = STATE.pending.take_next().unwrap();
    harness.unload();
    let completions = pending::take_completions();
    assert_eq!(completions.len(), 7);
    assert!(completions.iter().all(|c| !c.reauthorization.unwrap().permitted()), "default: block");
    harness.delete_filter(filter).unwrap();
    harness.kernel.assert_unloaded_clean();
}

#[test]
fn reauthorization_without_a_request_gets_the_default() {
    let (harness, filter) = load_with_ask(Layer::ConnectV4, 1_000, Verdict::Permit);
    harness.connect_agent(AGENT);
    let mut connection = Layer::ConnectV4.connection(80);
    connection.flags = FWP_CONDITION_FLAG_IS_REAUTHORIZE;
    let result = engine::classify(&connection);
    assert!(result.pended.is_none() && result.permitted());
    assert_eq!(harness.counters(filter).unwrap().defaulted, 1);
    harness.delete_filter(filter).unwrap();
    harness.unload_and_check();
}

#[test]
fn recv_accept_permit_completes_with_the_clone_and_reinjects_it() {
    for layer in [Layer::RecvAcceptV4, Layer::RecvAcceptV6] {
        for verdict in [Verdict::Permit, Verdict::Block] {
            let (harness, filter) = load_with_ask(layer, 5_000, Verdict::Block);
            harness.connect_agent(AGENT);
            let first = harness.classify_layer(layer, 22);
            assert!(first.pended.is_some() && first.absorbed && !first.permitted(), "pended at {layer:?}");
            let request = STATE.pending.take_next().unwrap();
            assert!(request.inbound);
            STATE.pending.answer(request.request_id, verdict).unwrap();
            let completions = pending::take_completions();
            assert_eq!(completions.len(), 1);
            // Completed with the copy it is about to inject; a denial
            // completes with NULL and frees it (as Microsoft's inspect does).
            assert_eq!(completions[0].with_packet, verdict == Verdict::Permit, "{layer:?}, {verdict:?}");
            assert!(completions[0].reauthorization.is_none(), "no reauthorization at recv-accept");
            // The injected packet may be classified after the injection
            // returned, just before its completion (CONFORMANCE I7).
            packets::deliver_injection_completions();
            let reinjected = packets::take_reinjected();
            match verdict {
                Verdict::Permit => {
                    assert_eq!(reinjected.len(), 1, "the clone was injected");
                    assert!(reinjected[0].1.permitted(), "and recognised as ours when classified again");
                }
                Verdict::Block => assert!(reinjected.is_empty(), "the clone was dropped"),
            }
            assert_eq!(STATE.pending.live(), 0);
            harness.delete_filter(filter).unwrap();
            // Leaked clones or injection handles fail this check.
            harness.unload_and_check();
        }
    }
}

#[test]
fn recv_accept_clone_and_injection_failures_are_clean() {
    let (harness, filter) = load_with_ask(Layer::RecvAcceptV4, 5_000, Verdict::Permit);
    harness.connect_agent(AGENT);
    faults::fail_call("FwpsAllocateNetBufferAndNetBufferList0", 0, STATUS_INSUFFICIENT_RESOURCES);
    let result = harness.classify_layer(Layer::RecvAcceptV4, 1);
    assert!(result.pended.is_none() && result.permitted(), "no copy: default verdict at once");
    harness.classify_layer(Layer::RecvAcceptV4, 2);
    let request = STATE.pending.take_next().unwrap();
    faults::fail_call("FwpsInjectTransportReceiveAsync0", 0, STATUS_INSUFFICIENT_RESOURCES);
    STATE.pending.answer(request.request_id, Verdict::Permit).unwrap();
    // An injection may travel the stack after it returned (CONFORMANCE I7):
    // deliver what is outstanding before looking.
    packets::deliver_injection_completions();
    assert!(packets::take_reinjected().is_empty(), "injection failed: the clone is freed instead");
    // Inbound requests whose filter is deleted get their default verdict
    // (permit: injected) at the next timer tick, out of band: never from
    // inside notifyFn (the simulator reports TCP injected there).
    harness.classify_layer(Layer::RecvAcceptV4, 3);
    harness.delete_filter(filter).unwrap();
    packets::deliver_injection_completions();
    assert!(packets::take_reinjected().is_empty(), "nothing injected inside notifyFn DELETE");
    wfpcallout::control::lifecycle::on_timer();
    packets::deliver_injection_completions();
    assert_eq!(packets::take_reinjected().len(), 1);
    harness.unload_and_check();
}

#[test]
fn pend_and_allocation_failures_fall_back_to_the_default() {
    let (harness, filter) = load_with_ask(Layer::ConnectV4, 1_000, Verdict::Permit);
    harness.connect_agent(AGENT);
    faults::fail_call("FwpsPendOperation0", 0, STATUS_FWP_CANNOT_PEND);
    let result = harness.classify_layer(Layer::ConnectV4, 1);
    assert!(result.pended.is_none() && result.permitted());
    assert_eq!(stat(&STATE.pending.stats.pend_failures), 1);
    faults::fail_allocation(0);
    let result = harness.classify_layer(Layer::ConnectV4, 2);
    assert!(result.pended.is_none() && result.permitted());
    faults::clear();
    assert!(harness.classify_layer(Layer::ConnectV4, 3).pended.is_some());
    harness.delete_filter(filter).unwrap();
    harness.unload_and_check();
}

/// "ALE Re-authorization": a connection the agent decided is classified
/// again when the policy at its layer changes (here: an unrelated filter is
/// added, then deleted, as Windows Firewall does routinely) and when it
/// arrives on a new interface. Each such reauthorization gets the verdict
/// the connection already has, again and again (it is not consumed), at
/// both ALE authorization layers: approved connections stay approved,
/// denied ones stay denied.
#[test]
fn decided_connections_keep_their_verdict_through_every_reauthorization() {
    use wfpcallout_simkernel::engine::reauthorization;
    for layer in [Layer::ConnectV4, Layer::ConnectV6, Layer::RecvAcceptV4, Layer::RecvAcceptV6] {
        for verdict in [Verdict::Permit, Verdict::Block] {
            // The default is the opposite of the agent's answer, so a
            // reauthorization answered from the default shows.
            let default = if verdict == Verdict::Permit { Verdict::Block } else { Verdict::Permit };
            let (harness, filter) = load_with_ask(layer, 5_000, default);
            harness.connect_agent(AGENT);
            let connection = layer.connection(8443);
            assert!(engine::classify(&connection).pended.is_some());
            let request = STATE.pending.take_next().unwrap();
            STATE.pending.answer(request.request_id, verdict).unwrap();
            let _ = pending::take_completions();
            // At recv-accept the connection is live once its reinjected
            // packet is classified, which may come after the injection
            // returned (CONFORMANCE I7).
            packets::deliver_injection_completions();
            let _ = packets::take_reinjected();
            assert_eq!(reauthorization::is_live(&connection), verdict == Verdict::Permit, "{layer:?} {verdict:?}");
            let other = harness.add_filter(layer, PolicySource::Policy(&policy(PolicyAction::Audit))).unwrap();
            harness.delete_filter(other).unwrap();
            for round in 0..3 {
                let reason = if round == 2 {
                    fwp::FWP_CONDITION_REAUTHORIZE_REASON_NEW_ARRIVAL_INTERFACE
                } else {
                    fwp::FWP_CONDITION_REAUTHORIZE_REASON_POLICY_CHANGE
                };
                let result = reauthorization::reauthorize(&connection, reason);
                assert_eq!(
                    result.permitted(),
                    verdict == Verdict::Permit,
                    "{layer:?}: reauthorization {round} (reason {reason:#x}) kept the agent's {verdict:?}"
                );
            }
            if verdict == Verdict::Permit {
                // The policy change above is due on the next packet.
                let due = reauthorization::next_packet(&connection);
                assert!(due.is_some_and(|r| r.permitted()), "{layer:?}: next packet after the policy change");
                assert!(reauthorization::is_live(&connection), "{layer:?}: the approved connection is still up");
            }
            assert_eq!(harness.counters(filter).unwrap().defaulted, 0, "no reauthorization fell back to the default");
            harness.delete_filter(filter).unwrap();
            harness.unload_and_check();
        }
    }
}

/// A connection the driver never decided (no request, no remembered
/// verdict) gets the default on a policy-change reauthorization.
#[test]
fn an_undecided_connection_gets_the_default_on_reauthorization() {
    use wfpcallout_simkernel::engine::reauthorization;
    let (harness, filter) = load_with_ask(Layer::ConnectV4, 1_000, Verdict::Block);
    let result = reauthorization::reauthorize(
        &Layer::ConnectV4.connection(81),
        fwp::FWP_CONDITION_REAUTHORIZE_REASON_POLICY_CHANGE,
    );
    assert!(!result.permitted());
    assert_eq!(harness.counters(filter).unwrap().defaulted, 1);
    harness.delete_filter(filter).unwrap();
    harness.unload_and_check();
}

/// An answer just before the ask deadline whose completion reauthorization
/// arrives after the driver's timer has passed the deadline (the engine may
/// deliver it later, from another thread): the answered request is gone by
/// then, and the reauthorization still gets the agent's verdict (kept with
/// the connection), not the default.
#[test]
fn a_late_completion_reauthorization_still_gets_the_agents_verdict() {
    let (harness, filter) = load_with_ask(Layer::ConnectV4, 1_000, Verdict::Block);
    harness.connect_agent(AGENT);
    pending::defer_completion_reauthorizations(true);
    let connection = Layer::ConnectV4.connection(8080);
    assert!(engine::classify(&connection).pended.is_some());
    let request = STATE.pending.take_next().unwrap();
    clock::advance_ms(999);
    STATE.pending.answer(request.request_id, Verdict::Permit).unwrap();
    assert!(pending::take_completions()[0].reauthorization.is_none(), "deferred");
    clock::advance_ms(100);
    wfpcallout::control::lifecycle::on_timer();
    assert_eq!(STATE.pending.live(), 0, "the answered request was dropped at its deadline");
    let delivered = pending::deliver_deferred_reauthorizations();
    assert_eq!(delivered.len(), 1);
    assert!(delivered[0].1.permitted(), "the late reauthorization got the agent's PERMIT");
    assert_eq!(harness.counters(filter).unwrap().defaulted, 0);
    pending::defer_completion_reauthorizations(false);
    harness.delete_filter(filter).unwrap();
    harness.unload_and_check();
}

/// `has_queued` (which the KMDF glue asks after putting a parked "get
/// request" IOCTL back, so a request queued meanwhile is not left waiting)
/// is true exactly while a request waits to be read.
#[test]
fn has_queued_tracks_requests_waiting_for_an_agent() {
    let (harness, filter) = load_with_ask(Layer::ConnectV4, 1_000, Verdict::Block);
    harness.connect_agent(AGENT);
    assert!(!STATE.pending.has_queued());
    assert!(harness.classify_layer(Layer::ConnectV4, 1).pended.is_some());
    assert!(harness.classify_layer(Layer::ConnectV4, 2).pended.is_some());
    assert!(STATE.pending.has_queued());
    let first = STATE.pending.take_next().unwrap();
    assert!(STATE.pending.has_queued(), "one still waits");
    clock::advance_ms(2_000);
    wfpcallout::control::lifecycle::on_timer();
    assert!(!STATE.pending.has_queued(), "the queued one timed out");
    assert_eq!(STATE.pending.answer(first.request_id, Verdict::Permit), Err(NtStatus::NOT_FOUND), "timed out too");
    let _ = pending::take_completions();
    harness.delete_filter(filter).unwrap();
    harness.unload_and_check();
}

/// A packet we reinjected after our agent permitted its connection passes
/// our ask filter only: a static block of ours (here added while the agent
/// decides, heavier, so the engine reaches it first) judges it by its
/// policy and blocks it, as it blocks the connection's other packets
/// (README, "Our own injected packets"; tests/our_injections.rs).
#[test]
fn our_reinjected_packet_is_judged_by_our_static_block() {
    let (harness, ask_filter) = load_with_ask(Layer::RecvAcceptV4, 5_000, Verdict::Block);
    harness.connect_agent(AGENT);
    let connection = Layer::RecvAcceptV4.connection(3389);
    assert!(engine::classify(&connection).pended.is_some());
    let mut heavier = Harness::filter_spec(Layer::RecvAcceptV4);
    heavier.weight = 100;
    let block = harness.add_filter_with(heavier, PolicySource::Policy(&policy(PolicyAction::Block))).unwrap();
    let request = STATE.pending.take_next().unwrap();
    STATE.pending.answer(request.request_id, Verdict::Permit).unwrap();
    // The injected packet may be classified after the injection returned (CONFORMANCE I7).
    packets::deliver_injection_completions();
    let reinjected = packets::take_reinjected();
    assert_eq!(reinjected.len(), 1);
    assert!(!reinjected[0].1.permitted(), "our block judged our own injection: {:?}", reinjected[0].1);
    assert_eq!(reinjected[0].1.decided_by, Some(block));
    assert_eq!(harness.counters(block).unwrap().blocked, 1);
    let _ = pending::take_completions();
    harness.delete_filter(block).unwrap();
    harness.delete_filter(ask_filter).unwrap();
    harness.unload_and_check();
}

/// Reauthorization in either direction (CONFORMANCE Z8): after a policy
/// change the next packet of an approved outbound connection is an inbound
/// one; it is reauthorized at ALE_AUTH_CONNECT with packetDirection INBOUND
/// and keeps the agent's verdict (verdicts are keyed by the host-relative
/// connection, which both directions share).
#[test]
fn an_approved_connection_stays_approved_in_the_opposite_direction() {
    use wfpcallout_simkernel::engine::reauthorization;
    let (harness, filter) = load_with_ask(Layer::ConnectV4, 5_000, Verdict::Block);
    harness.connect_agent(AGENT);
    let connection = Layer::ConnectV4.connection(8443);
    assert!(engine::classify(&connection).pended.is_some());
    let request = STATE.pending.take_next().unwrap();
    STATE.pending.answer(request.request_id, Verdict::Permit).unwrap();
    let unrelated = harness.add_filter(Layer::ConnectV4, PolicySource::None).unwrap();
    let again = reauthorization::next_packet_in_opposite_direction(&connection).unwrap();
    assert!(again.permitted(), "kept the agent's verdict: {again:?}");
    assert!(reauthorization::is_live(&connection));
    let _ = pending::take_completions();
    harness.delete_filter(unrelated).unwrap();
    harness.delete_filter(filter).unwrap();
    harness.unload_and_check();
}

/// Unload begins while a classification is between pending its operation
/// and filing its request (stopped inside `FwpsPendOperation0`). The request
/// is still filed, and unload's own finish-all completes it: once, with the
/// default verdict, from the unloading thread, never from inside
/// classifyFn (where completing at ALE_AUTH_CONNECT reauthorizes inside
/// the classification, and a permitted inbound TCP copy would be injected
/// in band).
#[test]
fn unload_while_a_pend_files_its_request_completes_it_out_of_band_once() {
    use wfpcallout_simkernel::sync_points;
    let (harness, filter) = load_with_ask(Layer::ConnectV4, 60_000, Verdict::Block);
    harness.connect_agent(AGENT);
    let pause = sync_points::arm(sync_points::PEND_OPERATION_PENDED);
    let classified = std::thread::scope(|scope| {
        let classify = scope.spawn(|| engine::classify(&Layer::ConnectV4.connection(443)));
        pause.wait_reached();
        let unloader = scope.spawn(wfpcallout::control::lifecycle::unload);
        // Unload has closed the table to new pends: the stopped one goes on.
        while STATE.pending.is_accepting() {
            std::thread::yield_now();
        }
        pause.resume();
        let classified = classify.join().unwrap();
        unloader.join().unwrap();
        classified
    });
    let operation = classified.pended.expect("pended: BLOCK + ABSORB");
    let completions = pending::take_completions();
    assert_eq!(completions.len(), 1, "completed exactly once: {completions:?}");
    assert_eq!(completions[0].operation, operation);
    assert_eq!(completions[0].inside, None, "completed out of band");
    assert!(!completions[0].reauthorization.unwrap().permitted(), "the default verdict: block");
    assert_eq!(stat(&STATE.pending.stats.pended), 1, "the request was filed");
    assert_eq!(pending::pended_count(), 0);
    harness.delete_filter(filter).unwrap();
    harness.kernel.assert_unloaded_clean();
}

/// A classification reserves the last slot, then pends (stopped inside
/// `FwpsPendOperation0`); another one arriving meanwhile finds the table
/// full and gets the default at once, without pending. The first files its
/// request (a reserved slot cannot be lost), so nothing is completed
/// inside classifyFn.
#[test]
fn a_table_full_at_reservation_gives_the_default_without_pending() {
    use wfpcallout_simkernel::sync_points;
    let (harness, filter) = load_with_ask(Layer::ConnectV4, 60_000, Verdict::Permit);
    harness.connect_agent(AGENT);
    for port in 0..MAX_PENDING_REQUESTS as u16 - 1 {
        assert!(harness.classify_layer(Layer::ConnectV4, port).pended.is_some());
    }
    let pause = sync_points::arm(sync_points::PEND_OPERATION_PENDED);
    let (last, overflow) = std::thread::scope(|scope| {
        let last = scope.spawn(|| engine::classify(&Layer::ConnectV4.connection(60_000)));
        pause.wait_reached();
        let overflow = harness.classify_layer(Layer::ConnectV4, 60_001);
        pause.resume();
        (last.join().unwrap(), overflow)
    });
    assert!(overflow.pended.is_none() && overflow.permitted(), "table full: the default permit, not pended");
    assert!(last.pended.is_some(), "the reserved slot's classification pended");
    assert!(pending::take_completions().is_empty(), "nothing completed inside classifyFn");
    assert_eq!(STATE.pending.live(), MAX_PENDING_REQUESTS);
    let mut ports = Vec::new();
    while let Some(request) = STATE.pending.take_next() {
        ports.push(request.remote_port);
        STATE.pending.answer(request.request_id, Verdict::Permit).unwrap();
    }
    assert_eq!(ports.len(), MAX_PENDING_REQUESTS);
    assert_eq!(ports.last(), Some(&60_000), "filed last");
    let completions = pending::take_completions();
    assert_eq!(completions.len(), MAX_PENDING_REQUESTS);
    assert!(completions.iter().all(|c| c.inside.is_none()), "every completion out of band");
    harness.delete_filter(filter).unwrap();
    harness.unload_and_check();
}

/// How a pended request ends, for the exactly-once check.
#[derive(Clone, Copy, Debug)]
enum End {
    Verdict,
    Timeout,
    FilterDeleted,
    AgentGone,
    Unload,
}

/// Every way a request ends completes its operation exactly once, through
/// its request (`PendedOperation::complete`, with the packet copy at
/// recv-accept), never by dropping it: the simulated kernel records one
/// completion of the operation it pended (a second is a violation, none a
/// leak at unload) and no operation was dropped uncompleted.
#[test]
fn every_end_completes_the_pended_operation_exactly_once_through_its_request() {
    use wfpcallout::wfp::filter_view::PendedOperation;
    let dropped_before = PendedOperation::dropped_uncompleted();
    for layer in [Layer::ConnectV4, Layer::RecvAcceptV6] {
        for end in [End::Verdict, End::Timeout, End::FilterDeleted, End::AgentGone, End::Unload] {
            let (mut harness, filter) = load_with_ask(layer, 1_000, Verdict::Block);
            harness.connect_agent(AGENT);
            let pended = harness.classify_layer(layer, 8080).pended.expect("pended");
            match end {
                End::Verdict => {
                    let request = STATE.pending.take_next().unwrap();
                    STATE.pending.answer(request.request_id, Verdict::Permit).unwrap();
                }
                End::Timeout => {
                    clock::advance_ms(1_100);
                    wfpcallout::control::lifecycle::on_timer();
                }
                End::FilterDeleted => {
                    harness.delete_filter(filter).unwrap();
                    wfpcallout::control::lifecycle::on_timer();
                }
                End::AgentGone => harness.disconnect_agent(AGENT),
                End::Unload => harness.unload(),
            }
            let completions = pending::take_completions();
            assert_eq!(completions.len(), 1, "{layer:?}, {end:?}: one completion");
            assert_eq!(completions[0].operation, pended, "{layer:?}, {end:?}: of the operation pended");
            // With the copy only when it is about to be injected: a
            // permitted recv-accept (every other end here is the default
            // BLOCK); a connect always completes with NULL.
            let injected = matches!(layer, Layer::RecvAcceptV6) && matches!(end, End::Verdict);
            assert_eq!(completions[0].with_packet, injected, "{layer:?}, {end:?}: with the copy to inject");
            assert_eq!(pending::pended_count(), 0, "{layer:?}, {end:?}: nothing left pended");
            assert_eq!(
                PendedOperation::dropped_uncompleted(),
                dropped_before,
                "{layer:?}, {end:?}: completed by its request, not by a drop"
            );
            match end {
                End::FilterDeleted => harness.unload_and_check(),
                End::Unload => {
                    harness.delete_filter(filter).unwrap();
                    harness.kernel.assert_unloaded_clean();
                }
                _ => {
                    harness.delete_filter(filter).unwrap();
                    harness.unload_and_check();
                }
            }
        }
    }
}

/// Request ids go on from where the previous load stopped: an agent's late
/// verdict for a request of the previous load answers nothing after a
/// reload, even when a new request is waiting.
#[test]
fn request_ids_are_not_reused_after_a_reload() {
    let (harness, _filter) = load_with_ask(Layer::ConnectV4, 5_000, Verdict::Block);
    harness.connect_agent(AGENT);
    assert!(harness.classify_layer(Layer::ConnectV4, 443).pended.is_some());
    let old = STATE.pending.take_next().unwrap().request_id;
    harness.unload_and_check();
    let _ = pending::take_completions();

    let (harness, _filter) = load_with_ask(Layer::ConnectV4, 5_000, Verdict::Block);
    harness.connect_agent(AGENT);
    assert!(harness.classify_layer(Layer::ConnectV4, 443).pended.is_some());
    let new = STATE.pending.take_next().unwrap().request_id;
    assert!(new > old, "request id {new} after a reload, the previous load had issued {old}");
    assert_eq!(STATE.pending.answer(old, Verdict::Permit), Err(NtStatus::NOT_FOUND), "a late verdict");
    STATE.pending.answer(new, Verdict::Permit).unwrap();
    let _ = pending::take_completions();
    harness.unload_and_check();
}
