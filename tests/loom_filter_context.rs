//! The driver's own filter context reference count (`PoolArc` in
//! `driver/platform/pool.rs`, which `driver/filters/filter_context.rs` uses)
//! and context table (`driver/platform/id_table.rs`) under every interleaving of
//! loom: the last release frees the context exactly once, and after every
//! use of every reference (the `Release` decrement plus the `Acquire`
//! fence before the free).
//!
//! Built only with `--cfg loom`, which switches the driver's atomics and
//! spin lock to loom's (`driver/platform/sync.rs`); the pool is the simulated
//! kernel's. Run it optimised, one test at a time (the simulated kernel's
//! violation record is global):
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p wfpcallout --release --test loom_filter_context -- --test-threads 1
//! ```
//!
//! A use not ordered before the free is reported by loom as a causality
//! violation (dropping one of the driver's loom atomics claims exclusive
//! access to it); a second free, by the simulated pool as a verifier
//! violation.
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

/// The table holding one filter's reference, as notifyFn's ADD leaves it,
/// and the context's address (to ask the pool whether it was freed).
fn added_filter() -> (Arc<ContextTable>, usize) {
    let table = Arc::new(ContextTable::new(TAG_CONTEXT_TABLE));
    let context = ContextRef::try_new(FILTER, LAYER, Origin::Notified, PolicyRepr::DEFAULT).unwrap();
    let address = context.as_raw() as usize;
    assert!(table.insert(FILTER, context).is_ok());
    (table, address)
}

/// The context was freed (exactly once: a second free is a verifier
/// violation) and the table's storage goes too.
fn check_freed_once(table: &ContextTable, address: usize) {
    assert_eq!(pool::live_range(address, 1), None, "the filter context was not freed");
    let rundown = Rundown::new();
    assert!(table.release_storage(&rundown, &rundown.close_and_wait()).is_ok());
    let violations = verifier::take();
    assert!(violations.is_empty(), "simulated kernel: {violations:?}");
}

fn report(name: &str, iterations: &AtomicUsize) {
    println!("loom test {name}: {} interleavings explored, violations found: 0", iterations.load(Ordering::Relaxed));
}

/// DELETE takes the filter's reference out of the table and drops it while
/// a lookup (statistics, an adopted filter's classify) takes a reference
/// and clones it (a flow context), and a pended request uses and drops the
/// reference it holds.
#[test]
fn last_release_frees_exactly_once_after_every_use() {
    static ITERATIONS: AtomicUsize = AtomicUsize::new(0);
    loom::model(|| {
        ITERATIONS.fetch_add(1, Ordering::Relaxed);
        let (table, address) = added_filter();
        let request = table.get(FILTER).unwrap();
        let lookup = {
            let table = table.clone();
            thread::spawn(move || {
                if let Some(context) = table.get(FILTER) {
                    assert_eq!(context.filter_id(), FILTER);
                    let flow = context.clone();
                    drop(context);
                    flow.flow_started();
                    flow.flow_ended();
                    drop(flow);
                }
            })
        };
        let pended = thread::spawn(move || {
            request.flow_started();
            drop(request);
        });
        // notifyFn DELETE.
        drop(table.remove(FILTER));
        lookup.join().unwrap();
        pended.join().unwrap();
        check_freed_once(&table, address);
    });
    report("filter_context::last_release_frees_exactly_once_after_every_use", &ITERATIONS);
}

/// Two references released at once on two threads, each after using the
/// context: whichever is last frees, after the other's use.
#[test]
fn concurrent_releases_free_once_after_both_uses() {
    static ITERATIONS: AtomicUsize = AtomicUsize::new(0);
    loom::model(|| {
        ITERATIONS.fetch_add(1, Ordering::Relaxed);
        let first = ContextRef::try_new(FILTER, LAYER, Origin::Adopted, PolicyRepr::DEFAULT).unwrap();
        let address = first.as_raw() as usize;
        let second = first.clone();
        let other = thread::spawn(move || {
            second.flow_started();
            drop(second);
        });
        first.flow_started();
        drop(first);
        other.join().unwrap();
        assert_eq!(pool::live_range(address, 1), None, "the filter context was not freed");
        let violations = verifier::take();
        assert!(violations.is_empty(), "simulated kernel: {violations:?}");
    });
    report("filter_context::concurrent_releases_free_once_after_both_uses", &ITERATIONS);
}

/// Negative control: a use of the context through a borrow its slot lends,
/// holding no reference of its own (what classify does with the handle in
/// `filter->context`, safe because the slot keeps its reference until a
/// reclaim has seen every rundown line idle, and unload frees the slots
/// only once the rundown has drained), is not ordered before a free that
/// skips the rundown (DELETE, then the slots' storage released at once),
/// and loom must say so. `loom_deferred_reclaim.rs` checks the real
/// protocol.
#[test]
#[should_panic(expected = "Causality violation")]
fn a_use_without_a_reference_is_caught() {
    loom::model(|| {
        let table = Arc::new(ContextTable::new(TAG_CONTEXT_TABLE));
        let context = ContextRef::try_new(FILTER, LAYER, Origin::Notified, PolicyRepr::DEFAULT).unwrap();
        let handle = table.insert_with_slot(FILTER, context, 0).map_err(|(status, _)| status).unwrap();
        let rundown = Rundown::new();
        let inside = rundown.enter_on(0).unwrap();
        // SAFETY: deliberately not upheld (the thread below drops the
        // slot's reference while the borrow is used): the point of the test.
        // The borrow is taken before DELETE's thread exists, and loom runs
        // this thread first, so the use precedes the free in the first
        // execution, which loom fails when the free is not ordered after
        // it; freed memory is never read.
        let borrowed = unsafe { table.slots().borrow_checked(handle.key(), &inside) }.unwrap();
        // DELETE on another thread, then the slots' storage (and the
        // slot's reference) released without waiting for the classify's
        // rundown: with the proof of another one, given as the slots'.
        let delete = {
            let table = table.clone();
            thread::spawn(move || {
                drop(table.remove(FILTER));
                let elsewhere = Rundown::new();
                assert!(table.release_storage(&elsewhere, &elsewhere.close_and_wait()).is_ok());
            })
        };
        borrowed.flow_started();
        delete.join().unwrap();
        drop(inside);
        assert!(table.release_storage(&rundown, &rundown.close_and_wait()).is_ok());
    });
}
