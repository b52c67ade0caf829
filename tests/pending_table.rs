//! The pended-request table's structure: a request id names its slot (and
//! is never reused), requests are read oldest first however others leave
//! the table, and every slot comes back for reuse. The cost side (O(1) in
//! the number pending) is measured by the bench (`pend_1000_over_0`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::HashSet;
use wfpcallout::callbacks::state::STATE;
use wfpcallout::platform::status::NtStatus;
use wfpcallout::verdicts::pending::MAX_PENDING_REQUESTS;
use wfpcallout_scenario::{Harness, Layer, PolicySource};
use wfpcallout_simkernel::clock;
use wfpcallout_simkernel::engine::pending;
use wfpcallout_wire::{Label, LogLevel, PolicyAction, PolicyRepr, Verdict};

const AGENT: u64 = 0x7AB1E;

fn ask(timeout_ms: u32, label: &str) -> PolicyRepr {
    PolicyRepr {
        action: PolicyAction::Ask { timeout_ms, default_verdict: Verdict::Block },
        log_level: LogLevel::Off,
        label: Label::new(label).unwrap(),
    }
}

/// Reads every queued request; returns (remote port, request id) in order.
fn read_all() -> Vec<(u16, u64)> {
    std::iter::from_fn(|| STATE.pending.take_next()).map(|r| (r.remote_port, r.request_id)).collect()
}

#[test]
fn requests_are_read_oldest_first_whatever_leaves_the_table_in_between() {
    let harness = Harness::load();
    // Two ask filters at the same layer: the one with the shorter timeout
    // wins the connections classified while only it exists.
    let short = harness.add_filter(Layer::ConnectV4, PolicySource::Policy(&ask(1_000, "short"))).unwrap();
    harness.connect_agent(AGENT);
    for port in 100..110 {
        assert!(harness.classify_layer(Layer::ConnectV4, port).pended.is_some());
    }
    let long = harness.add_filter(Layer::ConnectV4, PolicySource::Policy(&ask(600_000, "long"))).unwrap();
    harness.delete_filter(short).unwrap();
    for port in 200..210 {
        assert!(harness.classify_layer(Layer::ConnectV4, port).pended.is_some());
    }
    // The first ten are finished from the middle of the queue order too:
    // read two of them, then let the timer finish the rest of theirs.
    let first_two: Vec<u16> = (0..2).map(|_| STATE.pending.take_next().unwrap().remote_port).collect();
    assert_eq!(first_two, [100, 101]);
    clock::advance(20_000_000);
    wfpcallout::control::lifecycle::on_timer();
    assert_eq!(pending::take_completions().len(), 10, "the deleted filter's ten, read or not");
    let rest = read_all();
    assert_eq!(rest.iter().map(|r| r.0).collect::<Vec<_>>(), (200..210).collect::<Vec<_>>(), "oldest first");
    let ids: Vec<u64> = rest.iter().map(|r| r.1).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids grow with age: {ids:?}");
    for id in ids {
        STATE.pending.answer(id, Verdict::Permit).unwrap();
    }
    assert_eq!(pending::take_completions().len(), 10);
    assert_eq!(STATE.pending.live(), 0, "every reauthorization took its request");
    harness.delete_filter(long).unwrap();
    harness.unload_and_check();
}

#[test]
fn every_slot_is_reused_and_an_old_id_never_answers_a_new_request() {
    let harness = Harness::load();
    let filter = harness.add_filter(Layer::ConnectV4, PolicySource::Policy(&ask(600_000, "fill"))).unwrap();
    harness.connect_agent(AGENT);
    let mut seen = HashSet::new();
    let mut previous: Vec<u64> = Vec::new();
    for round in 0..3u16 {
        for i in 0..MAX_PENDING_REQUESTS as u16 {
            let port = 1_000 + (round % 2) * 2_000 + i;
            assert!(harness.classify_layer(Layer::ConnectV4, port).pended.is_some(), "round {round}, request {i}");
        }
        let overflow = harness.classify_layer(Layer::ConnectV4, 60_000);
        assert!(overflow.pended.is_none(), "round {round}: the table is full");
        let read = read_all();
        assert_eq!(read.len(), MAX_PENDING_REQUESTS);
        for &(_, id) in &read {
            assert!(seen.insert(id), "request id {id:#x} reused");
        }
        // An id from the previous round names a slot that now holds
        // another request: refused, and the new request is untouched.
        for &id in previous.iter().take(8) {
            assert_eq!(STATE.pending.answer(id, Verdict::Permit), Err(NtStatus::NOT_FOUND));
        }
        assert_eq!(STATE.pending.live(), MAX_PENDING_REQUESTS);
        previous = read.iter().map(|r| r.1).collect();
        for &id in &previous {
            STATE.pending.answer(id, Verdict::Permit).unwrap();
        }
        assert_eq!(STATE.pending.answer(previous[0], Verdict::Permit), Err(NtStatus::NOT_FOUND), "answered twice");
        assert_eq!(pending::take_completions().len(), MAX_PENDING_REQUESTS);
        assert_eq!(STATE.pending.live(), 0, "round {round}: every slot free again");
    }
    harness.delete_filter(filter).unwrap();
    harness.unload_and_check();
}

#[test]
fn discarding_answered_requests_tests_each_one_once() {
    let harness = Harness::load();
    let filter = harness.add_filter(Layer::ConnectV4, PolicySource::Policy(&ask(600_000, "kept"))).unwrap();
    harness.connect_agent(AGENT);
    pending::defer_completion_reauthorizations(true);
    // Answered outbound requests stay until their reauthorization comes:
    // 64 of them, every other one to be discarded (more matches than one
    // lock hold takes, so the walk resumes mid-list).
    let count = 64;
    for port in 100..100 + count {
        assert!(harness.classify_layer(Layer::ConnectV4, port).pended.is_some());
    }
    for (_, id) in read_all() {
        STATE.pending.answer(id, Verdict::Permit).unwrap();
    }
    assert_eq!(pending::take_completions().len(), usize::from(count));
    assert_eq!(STATE.pending.live(), usize::from(count));
    // A walk that started over after each removal would test the
    // non-matching requests before it again and again (560 tests here).
    let tests = std::cell::Cell::new(0);
    STATE.pending.discard_answered(|info, _| {
        tests.set(tests.get() + 1);
        info.remote_port % 2 == 0
    });
    assert_eq!(tests.get(), count, "each answered request tested once");
    assert_eq!(STATE.pending.live(), usize::from(count / 2), "the even ports went");
    tests.set(0);
    STATE.pending.discard_answered(|info, _| {
        tests.set(tests.get() + 1);
        assert_eq!(info.remote_port % 2, 1, "only the odd ports are left");
        true
    });
    assert_eq!(tests.get(), count / 2);
    assert_eq!(STATE.pending.live(), 0);
    assert!(pending::deliver_deferred_reauthorizations().iter().all(|(_, result)| result.permitted()));
    pending::defer_completion_reauthorizations(false);
    harness.delete_filter(filter).unwrap();
    harness.unload_and_check();
}
