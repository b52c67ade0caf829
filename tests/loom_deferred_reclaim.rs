//! The driver's deferred reclamation of filter contexts
//! (`HandleSlots::release` / `HandleSlots::reclaim` in
//! `driver/platform/pool.rs`, through `ContextTable` in
//! `driver/filters/filter_context.rs`) under the interleavings of loom: a
//! classify (enter the rundown, look the context word's key up, use the
//! context, leave) racing its filter's DELETE (release the slot, drop the
//! table's reference, reclaim) never uses the context after it is freed,
//! and the context is freed once the classify has left and a reclaim ran
//! (the timer's).
//!
//! Built only with `--cfg loom`, which switches the driver's atomics, spin
//! lock and rundown counters to loom's (`driver/platform/sync.rs`); the
//! pool is the simulated kernel's. Run it optimised, one test at a time:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p wfpcallout --release --test loom_deferred_reclaim -- --test-threads 1
//! ```
//!
//! A use not ordered before the free is reported by loom as a causality
//! violation (the context's own loom atomics claim exclusive access when
//! dropped); a use after the free in the order loom ran the threads, by
//! the classify's check that its block is still a live pool block.
//!
//! The slots' keys are loom atomics too under `--cfg loom`
//! (`ConstAtomicU64`), so loom orders the classify's key load against the
//! release's store. Loom models SeqCst accesses as AcqRel (its documented
//! limit) but SeqCst fences fully, so under loom the rundown's entry adds
//! the SeqCst fence that its SeqCst `fetch_add` stands for
//! (`driver/platform/rundown.rs`); the slot's target pointer stays a
//! `core` atomic, published with the key.
#![cfg(loom)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

use loom::thread;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use wfpcallout::filters::filter_context::{ContextRef, ContextTable, Origin};
use wfpcallout::platform::pool::TAG_CONTEXT_TABLE;
use wfpcallout::platform::rundown::Rundown;
use wfpcallout_simkernel::{pool, verifier};
use wfpcallout_wire::PolicyRepr;

const FILTER: u64 = 7;
const LAYER: u16 = 48;
/// The classify's processor and DELETE's (different rundown lines).
const CLASSIFY_CPU: usize = 0;
const DELETE_CPU: usize = 1;

/// A filter added through ADD: the table's reference, the slot's, and the
/// key its context word carries; the context's address.
fn added(table: &ContextTable) -> (u64, usize) {
    let context = ContextRef::try_new(FILTER, LAYER, Origin::Notified, PolicyRepr::DEFAULT).unwrap();
    let address = context.as_raw() as usize;
    // Tagged as a static word is (bit 0), so classify takes the fast path's
    // lookup, which tests no NULL.
    let handle = table.insert_with_slot(FILTER, context, 0b0001).map_err(|(status, _)| status).unwrap();
    (handle.key(), address)
}

/// classifyFn's hot path on the context word's key: enter, look up, use,
/// leave. Returns whether it found the context.
fn classify(table: &ContextTable, rundown: &Rundown, key: u64, address: usize) -> bool {
    let Some(inside) = rundown.enter_fast_on(CLASSIFY_CPU) else { return false };
    // SAFETY: `inside` is a guard of the rundown every reclaim of the
    // table's slots is given (below), and release_storage runs only after
    // every thread has been joined.
    let Some(context) = (unsafe { table.slots().borrow_tagged(key, &inside) }) else { return false };
    assert!(pool::live_range(address, 1).is_some(), "the borrowed context was freed under the classify");
    // Uses of the context's memory, which loom checks against its free.
    context.flow_started();
    assert_eq!(context.filter_id(), FILTER);
    context.flow_ended();
    assert!(pool::live_range(address, 1).is_some(), "the borrowed context was freed under the classify");
    drop(inside);
    true
}

/// A table with the filter added, an open rundown, and a classify of the
/// filter started on its own thread; the context's address.
fn classify_started() -> (Arc<ContextTable>, Arc<Rundown>, usize, thread::JoinHandle<bool>) {
    let table = Arc::new(ContextTable::new(TAG_CONTEXT_TABLE));
    let rundown = Arc::new(Rundown::new());
    // Every counter is created before it is shared (sync.rs: first use).
    rundown.reopen();
    let (key, address) = added(&table);
    let classifier = {
        let (table, rundown) = (table.clone(), rundown.clone());
        thread::spawn(move || classify(&table, &rundown, key, address))
    };
    (table, rundown, address, classifier)
}

/// notifyFn DELETE, inside the rundown on its own processor: the table's
/// reference dropped, the slot released, a reclaim at once.
fn deliver_delete(table: &ContextTable, rundown: &Rundown) {
    let inside = rundown.enter_on(DELETE_CPU).unwrap();
    drop(table.remove(FILTER));
    table.reclaim(rundown, &inside);
}

/// The timer's reclaim, once every other thread has been joined: the
/// context must be gone, and the storage is released.
fn last_tick_frees_it(table: &ContextTable, rundown: &Rundown, address: usize) {
    {
        let inside = rundown.enter_on(DELETE_CPU).unwrap();
        table.reclaim(rundown, &inside);
    }
    assert_eq!(pool::live_range(address, 1), None, "the context was not freed once the classify left");
    assert_eq!(table.retired(), 0);
    assert!(table.release_storage(rundown, &rundown.close_and_wait()).is_ok());
    let violations = verifier::take();
    assert!(violations.is_empty(), "simulated kernel: {violations:?}");
}

fn report(name: &str, iterations: &AtomicUsize) {
    println!("loom test {name}: {} interleavings explored, violations found: 0", iterations.load(Ordering::Relaxed));
}

/// The engine runs a classify of the filter while it delivers the filter's
/// DELETE (which releases the slot, drops the table's reference and
/// reclaims at once); a timer tick reclaims after both.
#[test]
fn a_classify_racing_delete_never_uses_a_freed_context_and_it_is_freed_eventually() {
    static ITERATIONS: AtomicUsize = AtomicUsize::new(0);
    loom::model(|| {
        ITERATIONS.fetch_add(1, Ordering::Relaxed);
        let (table, rundown, address, classifier) = classify_started();
        deliver_delete(&table, &rundown);
        classifier.join().unwrap();
        last_tick_frees_it(&table, &rundown, address);
    });
    report("deferred_reclaim::a_classify_racing_delete", &ITERATIONS);
}

/// Two reclaims at once (the DELETE's and the timer's, on other
/// processors) while the classify runs: the batch one of them detaches is
/// freed once, after the classify's use, and the other's line reads, made
/// for a batch that is gone, count for nothing.
#[test]
fn concurrent_reclaims_free_once_after_the_classify() {
    static ITERATIONS: AtomicUsize = AtomicUsize::new(0);
    loom::model(|| {
        ITERATIONS.fetch_add(1, Ordering::Relaxed);
        let (table, rundown, address, classifier) = classify_started();
        let timer = {
            let (table, rundown) = (table.clone(), rundown.clone());
            thread::spawn(move || {
                if let Some(inside) = rundown.enter_on(2) {
                    table.reclaim(&rundown, &inside);
                }
            })
        };
        deliver_delete(&table, &rundown);
        classifier.join().unwrap();
        timer.join().unwrap();
        last_tick_frees_it(&table, &rundown, address);
    });
    report("deferred_reclaim::concurrent_reclaims_free_once_after_the_classify", &ITERATIONS);
}

/// Negative control: a reclaim that counts a rundown the classify is not
/// in (so sees every line idle at once) frees the context while the
/// classify still uses it, and loom must say so. The borrow is taken
/// before DELETE's thread exists, and loom runs this thread first, so the
/// use precedes the free in the first execution, which loom fails when the
/// free is not ordered after it; freed memory is never read.
#[test]
#[should_panic(expected = "Causality violation")]
fn a_reclaim_that_ignores_the_classifys_rundown_is_caught() {
    loom::model(|| {
        let table = Arc::new(ContextTable::new(TAG_CONTEXT_TABLE));
        let rundown = Rundown::new();
        rundown.reopen();
        let (key, _) = added(&table);
        let inside = rundown.enter_on(CLASSIFY_CPU).unwrap();
        // SAFETY: deliberately not upheld (DELETE below reclaims through
        // another rundown): the point of the test.
        let borrowed = unsafe { table.slots().borrow_checked(key, &inside) }.unwrap();
        let delete = {
            let table = table.clone();
            thread::spawn(move || {
                let elsewhere = Rundown::new();
                elsewhere.reopen();
                let other = elsewhere.enter_on(DELETE_CPU).unwrap();
                drop(table.remove(FILTER));
                table.reclaim(&elsewhere, &other);
            })
        };
        borrowed.flow_started();
        delete.join().unwrap();
        drop(inside);
        assert!(table.release_storage(&rundown, &rundown.close_and_wait()).is_ok());
    });
}
