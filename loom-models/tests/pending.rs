//! The pended-request table under every interleaving of the paths that
//! finish requests: the agent's verdict, a duplicate verdict, the timeout
//! tick, the agent going away, the filter's deletion, unload, and a pend
//! racing unload. Every run must end with each operation completed exactly
//! once (with the agent's accepted verdict, or else the default), each
//! recv-accept clone injected or freed once, each request freed once, the
//! filter context freed once, and no deadlock (completion, whose
//! reauthorization takes the table lock, never runs under it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use loom::thread;
use std::sync::Arc as Memory;
use wfpcallout_loom_models::context_ref::{ContextRef, ContextTable, FilterContext};
use wfpcallout_loom_models::pending::{
    AskInfo, Engine, PendOutcome, Pending, Verdict, agent_gone, clone_packet, on_delete, release_contexts, unload,
};
use wfpcallout_loom_models::{Iterations, builder};

const FILTER: u64 = 7;
/// Preemption bound: 6 optimised (about 10 s); 3 in debug builds, so that
/// `cargo test --workspace` stays quick (loom is much slower unoptimised).
const PREEMPTIONS: usize = if cfg!(debug_assertions) { 3 } else { 6 };

fn report(name: &str, iterations: &Iterations) {
    println!("loom model {name}: {} interleavings explored, violations found: 0", iterations.get());
}

fn connection(inbound: bool, remote_port: u16) -> AskInfo {
    AskInfo { request_id: 0, filter_id: FILTER, inbound, remote_port, default_verdict: Verdict::Block }
}

struct Setup {
    pending: Memory<Pending>,
    table: Memory<ContextTable>,
    context: Memory<FilterContext>,
}

/// A loaded driver with one filter and `connections` pended in order
/// (request n is operation n).
fn setup(connections: &[AskInfo], pend_now: bool) -> Setup {
    let engine = Engine::new(connections.to_vec());
    let filter = ContextRef::try_new();
    let context = filter.observer();
    let table = Memory::new(ContextTable::new(filter));
    let pending = Memory::new(Pending::open(engine));
    if pend_now {
        for (index, info) in connections.iter().enumerate() {
            pend(&pending, &table, *info, index + 1);
        }
    }
    Setup { pending, table, context }
}

/// classify's ask path: take a reference, clone the packet at recv-accept,
/// pend (`ask::classify_ask` → `Pending::pend`).
fn pend(pending: &Pending, table: &ContextTable, info: AskInfo, operation: usize) -> PendOutcome {
    let filter = table.get().expect("the filter exists while classify runs");
    let packet = info.inbound.then(|| clone_packet(pending.engine(), operation));
    pending.pend(info, &filter, 0, packet, || pending.engine().pend_operation(operation))
}

/// The agent reads the next request and answers it.
fn agent(pending: &Pending, verdict: Verdict) {
    if let Some(info) = pending.take_next()
        && pending.answer(info.request_id, verdict).is_ok()
    {
        pending.engine().agent_answered(info.request_id, verdict);
    }
}

/// After every thread: unload, release, and every invariant.
fn finish(setup: &Setup) {
    unload(&setup.pending);
    assert_eq!(setup.pending.live(), 0, "a request survived unload");
    release_contexts(&setup.pending, &setup.table);
    setup.pending.engine().check_every_request_finished_once();
    assert_eq!(setup.context.frees(), 1, "the filter context is freed exactly once");
}

#[test]
fn verdict_races_timeout_and_filter_delete() {
    static ITERATIONS: Iterations = Iterations::new();
    builder(PREEMPTIONS).check(|| {
        ITERATIONS.count();
        let setup = setup(&[connection(false, 1)], true);
        let agent_thread = {
            let pending = setup.pending.clone();
            thread::spawn(move || agent(&pending, Verdict::Permit))
        };
        let timer = {
            let pending = setup.pending.clone();
            thread::spawn(move || {
                pending.expire(1_000);
            })
        };
        let (pending, table) = (setup.pending.clone(), setup.table.clone());
        let delete = thread::spawn(move || on_delete(&pending, &table, FILTER));
        agent_thread.join().unwrap();
        timer.join().unwrap();
        delete.join().unwrap();
        finish(&setup);
    });
    report("pending::verdict_races_timeout_and_filter_delete", &ITERATIONS);
}

#[test]
fn verdicts_at_connect_and_recv_accept_race_agent_gone_and_unload() {
    static ITERATIONS: Iterations = Iterations::new();
    builder(PREEMPTIONS).check(|| {
        ITERATIONS.count();
        let setup = setup(&[connection(false, 1), connection(true, 2)], true);
        let agent_thread = {
            let pending = setup.pending.clone();
            thread::spawn(move || {
                agent(&pending, Verdict::Permit);
                agent(&pending, Verdict::Permit);
            })
        };
        let gone = {
            let pending = setup.pending.clone();
            thread::spawn(move || {
                agent_gone(&pending);
            })
        };
        unload(&setup.pending);
        agent_thread.join().unwrap();
        gone.join().unwrap();
        finish(&setup);
    });
    report("pending::verdicts_at_connect_and_recv_accept_race_agent_gone_and_unload", &ITERATIONS);
}

#[test]
fn duplicate_verdicts_complete_once() {
    static ITERATIONS: Iterations = Iterations::new();
    builder(PREEMPTIONS).check(|| {
        ITERATIONS.count();
        let setup = setup(&[connection(false, 1)], true);
        let first = {
            let pending = setup.pending.clone();
            thread::spawn(move || agent(&pending, Verdict::Permit))
        };
        // A second answer for the same id, from another handle: only a
        // delivered, unanswered request takes a verdict.
        let second = {
            let pending = setup.pending.clone();
            thread::spawn(move || {
                if pending.answer(1, Verdict::Block).is_ok() {
                    pending.engine().agent_answered(1, Verdict::Block);
                }
            })
        };
        first.join().unwrap();
        second.join().unwrap();
        finish(&setup);
    });
    report("pending::duplicate_verdicts_complete_once", &ITERATIONS);
}

#[test]
fn pends_race_unload() {
    static ITERATIONS: Iterations = Iterations::new();
    builder(PREEMPTIONS).check(|| {
        ITERATIONS.count();
        let setup = setup(&[connection(false, 1), connection(true, 2)], false);
        let classify = {
            let (pending, table) = (setup.pending.clone(), setup.table.clone());
            thread::spawn(move || {
                for (operation, info) in [(1, connection(false, 1)), (2, connection(true, 2))] {
                    // A pend refused before FwpsPendOperation0 gets the
                    // default at once: complete it as the engine would
                    // never see it (the model counts it as completed).
                    if let PendOutcome::Immediate(_) = pend(&pending, &table, info, operation) {
                        pending.engine().not_pended(operation);
                    }
                }
            })
        };
        unload(&setup.pending);
        classify.join().unwrap();
        finish(&setup);
    });
    report("pending::pends_race_unload", &ITERATIONS);
}

/// Negative control: an `answer` that does not check the request's state
/// completes an operation twice when the verdict races the timeout, and
/// the model must say so.
#[test]
#[should_panic]
fn an_answer_that_ignores_the_state_is_caught() {
    builder(PREEMPTIONS).check(|| {
        let setup = setup(&[connection(false, 1)], true);
        let late_agent = {
            let pending = setup.pending.clone();
            thread::spawn(move || {
                let _ = pending.answer_ignoring_state(1, Verdict::Permit);
            })
        };
        setup.pending.expire(1_000);
        late_agent.join().unwrap();
        finish(&setup);
    });
}
