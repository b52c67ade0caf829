//! The driver's own pended-request table (`driver/verdicts/pending.rs`) under the
//! interleavings of loom, with every path that finishes a request racing
//! the others: the agent's verdict, a duplicate verdict, the timer's
//! expiry, the filter's deletion, the agent going away, unload, and a pend
//! racing unload. Every run must end with each pended operation completed
//! exactly once (with the agent's accepted verdict or else the default),
//! each request and the filter context freed exactly once, and no deadlock:
//! completing at ALE_AUTH_CONNECT runs the reauthorization, which takes the
//! table's lock, on the completing thread, so completion never runs under
//! it.
//!
//! Built only with `--cfg loom`, which switches the driver's reference
//! count and spin lock to loom's (`driver/platform/sync.rs`, `driver/platform/spin_lock.rs`)
//! and puts this test's engine behind `FwpsCompleteOperation0`
//! (`pending::loom_engine`); the pool and clock are the simulated
//! kernel's. What calls the table (notifyFn's DELETE, the agent's
//! detachment, unload, the timer) reach it through the driver's global
//! state, which loom cannot run: each test calls the same `Pending` methods
//! in the same order as those callers (named at each call). Run optimised,
//! one test at a time (the engine stand-in and the simulated kernel's
//! violation record are global):
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p wfpcallout --release --test loom_pending -- --test-threads 1
//! ```
#![cfg(loom)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

use core::net::{IpAddr, Ipv4Addr};
use loom::thread;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use wfpcallout::filters::filter_context::{ContextRef, ContextTable, Origin};
use wfpcallout::platform::pool::TAG_CONTEXT_TABLE;
use wfpcallout::platform::rundown::Rundown;
use wfpcallout::verdicts::pending::{AskInfo, EndReason, PendOutcome, Pending, loom_engine};
use wfpcallout::wfp::filter_view::PendedOperation;
use wfpcallout_simkernel::{pool, verifier};
use wfpcallout_wire::{Label, PolicyRepr, Verdict};

const FILTER: u64 = 7;
/// ALE_AUTH_CONNECT_V4 and ALE_AUTH_RECV_ACCEPT_V4's run-time ids.
const CONNECT: u16 = 48;
const RECV_ACCEPT: u16 = 44;
/// Loom's preemption bound: 5 explores about 145,000 interleavings over
/// the four tests, about 6 s optimised (the budget the reliability tier
/// gives them); debug builds are much slower, so they get less.
const PREEMPTIONS: usize = if cfg!(debug_assertions) { 2 } else { 5 };

fn connection(inbound: bool, remote_port: u16) -> AskInfo {
    AskInfo {
        request_id: 0,
        filter_id: FILTER,
        process_id: 0,
        layer_id: if inbound { RECV_ACCEPT } else { CONNECT },
        inbound,
        protocol: 6,
        local_address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        local_port: 40_000,
        remote_address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        remote_port,
        timeout_ms: 1,
        default_verdict: Verdict::Block,
        label: Label::EMPTY,
    }
}

/// One loaded driver's pending part, its filter and the engine stand-in.
struct Driver {
    pending: Arc<Pending>,
    table: Arc<ContextTable>,
    context_address: usize,
    connections: Vec<AskInfo>,
    /// Completions per operation (operation n is `connections[n-1]`).
    completions: Arc<Mutex<Vec<usize>>>,
}

impl Driver {
    /// `DriverEntry` as far as pending goes (`lifecycle::initialize`), one
    /// filter added, and an engine that counts completions and, at
    /// ALE_AUTH_CONNECT, runs the reauthorization on the completing thread
    /// (`ask::classify_ask` → `Pending::take_reauthorization`), as the
    /// simulated engine does.
    fn load(connections: &[AskInfo]) -> Driver {
        let pending = Arc::new(Pending::new());
        pending.open().unwrap();
        let table = Arc::new(ContextTable::new(TAG_CONTEXT_TABLE));
        let context = ContextRef::try_new(FILTER, CONNECT, Origin::Notified, PolicyRepr::DEFAULT).unwrap();
        let context_address = context.as_raw() as usize;
        assert!(table.insert(FILTER, context).is_ok());
        let completions = Arc::new(Mutex::new(vec![0; connections.len()]));
        let engine: loom_engine::Completion = {
            let (pending, completions, connections) = (pending.clone(), completions.clone(), connections.to_vec());
            Arc::new(move |operation: usize, _with_packet| {
                completions.lock().unwrap()[operation - 1] += 1;
                // The reauthorization may find the verdict gone (a DELETE
                // or unload discarded it first); classify then falls back
                // to the connection's remembered verdict.
                let info = connections[operation - 1];
                if !info.inbound {
                    let _ = pending.take_reauthorization(&info);
                }
            })
        };
        loom_engine::set(Some(engine));
        Driver { pending, table, context_address, connections: connections.to_vec(), completions }
    }

    /// classify's ask path (`ask::classify_ask` → `Pending::pend`): a
    /// reference to the filter's context, then the pend; operation n is
    /// `connections[n-1]`. A classification not pended is counted as
    /// completed (the engine never saw it pended).
    fn classify(&self, operation: usize) {
        let filter = self.table.get(FILTER).expect("the filter exists while classify runs");
        let info = self.connections[operation - 1];
        if let PendOutcome::Immediate(_) =
            self.pending.pend(info, &filter, 0, None, || Ok(PendedOperation::from_test_value(operation)))
        {
            self.completions.lock().unwrap()[operation - 1] += 1;
        }
    }

    /// `lifecycle::unload`'s pending part, then the end of unload, then
    /// every invariant.
    fn unload_and_check(self) {
        let Driver { pending, table, context_address, completions, .. } = self;
        pending.stop_accepting();
        pending.finish_where(EndReason::Unload, |_, _| true);
        pending.discard_answered(|_, _| true);
        assert_eq!(pending.live(), 0, "a request survived unload");
        pending.close();
        loom_engine::set(None);
        drop(table.pop_any());
        // No classify here: a rundown nobody entered, for its proof.
        let rundown = Rundown::new();
        assert!(table.release_storage(&rundown, &rundown.close_and_wait()).is_ok());
        for (index, &completed) in completions.lock().unwrap().iter().enumerate() {
            assert_eq!(completed, 1, "operation {} completed {completed} times", index + 1);
        }
        drop(pending);
        assert_eq!(pool::live_range(context_address, 1), None, "the filter context was not freed");
        let violations = verifier::take();
        assert!(violations.is_empty(), "simulated kernel: {violations:?}");
    }
}

/// The agent reads the next request and answers it (`control` IOCTLs →
/// `Pending::take_next`, `Pending::answer`).
fn agent(pending: &Pending, verdict: Verdict) {
    if let Some(info) = pending.take_next() {
        let _ = pending.answer(info.request_id, verdict);
    }
}

/// notifyFn's DELETE (`notify::on_delete`).
fn delete_filter(pending: &Pending, table: &ContextTable) {
    if pending.live() != 0 {
        pending.finish_later_for_filter(FILTER);
        pending.discard_answered(|info, _| info.filter_id == FILTER);
    }
    drop(table.remove(FILTER));
}

fn builder() -> loom::model::Builder {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(PREEMPTIONS);
    builder
}

fn report(name: &str, iterations: &AtomicUsize) {
    println!("loom test {name}: {} interleavings explored, violations found: 0", iterations.load(Ordering::Relaxed));
}

#[test]
fn verdict_races_timeout_and_filter_delete() {
    static ITERATIONS: AtomicUsize = AtomicUsize::new(0);
    builder().check(|| {
        ITERATIONS.fetch_add(1, Ordering::Relaxed);
        let driver = Driver::load(&[connection(false, 1)]);
        driver.classify(1);
        let agent_thread = {
            let pending = driver.pending.clone();
            thread::spawn(move || agent(&pending, Verdict::Permit))
        };
        let timer = {
            let pending = driver.pending.clone();
            // lifecycle::on_timer, a timeout later.
            thread::spawn(move || {
                pending.expire(1_000_000);
            })
        };
        let (pending, table) = (driver.pending.clone(), driver.table.clone());
        let delete = thread::spawn(move || delete_filter(&pending, &table));
        agent_thread.join().unwrap();
        timer.join().unwrap();
        delete.join().unwrap();
        driver.unload_and_check();
    });
    report("pending::verdict_races_timeout_and_filter_delete", &ITERATIONS);
}

#[test]
fn verdicts_at_connect_and_recv_accept_race_agent_gone_and_unload() {
    static ITERATIONS: AtomicUsize = AtomicUsize::new(0);
    builder().check(|| {
        ITERATIONS.fetch_add(1, Ordering::Relaxed);
        let driver = Driver::load(&[connection(false, 1), connection(true, 2)]);
        driver.classify(1);
        driver.classify(2);
        let agent_thread = {
            let pending = driver.pending.clone();
            thread::spawn(move || {
                agent(&pending, Verdict::Permit);
                agent(&pending, Verdict::Permit);
            })
        };
        let gone = {
            let pending = driver.pending.clone();
            // agent::Agents::detach, the last agent.
            thread::spawn(move || {
                pending.finish_where(EndReason::AgentGone, |_, _| true);
            })
        };
        // lifecycle::unload, while they run.
        driver.pending.stop_accepting();
        driver.pending.finish_where(EndReason::Unload, |_, _| true);
        driver.pending.discard_answered(|_, _| true);
        agent_thread.join().unwrap();
        gone.join().unwrap();
        driver.unload_and_check();
    });
    report("pending::verdicts_at_connect_and_recv_accept_race_agent_gone_and_unload", &ITERATIONS);
}

#[test]
fn duplicate_verdicts_complete_once() {
    static ITERATIONS: AtomicUsize = AtomicUsize::new(0);
    builder().check(|| {
        ITERATIONS.fetch_add(1, Ordering::Relaxed);
        let driver = Driver::load(&[connection(false, 1)]);
        driver.classify(1);
        let first = {
            let pending = driver.pending.clone();
            thread::spawn(move || agent(&pending, Verdict::Permit))
        };
        // A second answer for the same id, from another handle: only a
        // delivered, unanswered request takes a verdict. (The first id
        // the table gives is sequence 1, slot 0.)
        let second = {
            let pending = driver.pending.clone();
            thread::spawn(move || {
                let _ = pending.answer(1 << 10, Verdict::Block);
            })
        };
        first.join().unwrap();
        second.join().unwrap();
        driver.unload_and_check();
    });
    report("pending::duplicate_verdicts_complete_once", &ITERATIONS);
}

#[test]
fn pends_race_unload() {
    static ITERATIONS: AtomicUsize = AtomicUsize::new(0);
    builder().check(|| {
        ITERATIONS.fetch_add(1, Ordering::Relaxed);
        let driver = Arc::new(Driver::load(&[connection(false, 1), connection(true, 2)]));
        let classify = {
            let driver = driver.clone();
            thread::spawn(move || {
                driver.classify(1);
                driver.classify(2);
            })
        };
        // lifecycle::unload's first steps, while classify runs.
        driver.pending.stop_accepting();
        driver.pending.finish_where(EndReason::Unload, |_, _| true);
        classify.join().unwrap();
        // Whatever classify pended was finished by unload, or refused.
        assert_eq!(driver.pending.live(), 0, "a request was filed after unload finished the table");
        let Ok(driver) = Arc::try_unwrap(driver) else { panic!("the classify thread kept the driver") };
        driver.unload_and_check();
    });
    report("pending::pends_race_unload", &ITERATIONS);
}

#[test]
fn a_pended_operation_completes_once_by_complete_or_else_by_its_drop() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let engine: loom_engine::Completion = {
        let seen = seen.clone();
        Arc::new(move |operation: usize, with_packet| seen.lock().unwrap().push((operation, with_packet)))
    };
    loom_engine::set(Some(engine));
    let dropped_before = PendedOperation::dropped_uncompleted();
    PendedOperation::from_test_value(1).complete::<()>(None);
    assert_eq!(PendedOperation::dropped_uncompleted(), dropped_before, "completed, not dropped");
    // A value dropped uncompleted (a bug) still completes once, without
    // a packet, and is counted.
    drop(PendedOperation::from_test_value(2));
    assert_eq!(PendedOperation::dropped_uncompleted(), dropped_before + 1);
    loom_engine::set(None);
    assert_eq!(*seen.lock().unwrap(), [(1, false), (2, false)], "each operation completed once");
}
