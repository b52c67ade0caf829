//! The filter context's reference count under every interleaving: the
//! last release frees exactly once, after every use of every reference
//! (the `Release` decrement plus the `Acquire` fence), and classify's
//! borrowed `filter->context` is safe only under a rundown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use loom::thread;
use std::sync::Arc as Memory;
use wfpcallout_loom_models::context_ref::{ContextRef, ContextTable, EngineFilter, FilterContext};
use wfpcallout_loom_models::{Iterations, builder_with};

/// These models are small enough to explore exhaustively (no bound).
const PREEMPTIONS: Option<usize> = None;

fn report(name: &str, iterations: &Iterations) {
    println!("loom model {name}: {} interleavings explored, violations found: 0", iterations.get());
}

/// DELETE drops the table's reference while a lookup (statistics, an
/// adopted filter's classify) takes and clones one (a flow) and a pended
/// request drops its own.
#[test]
fn last_release_frees_exactly_once_after_every_use() {
    static ITERATIONS: Iterations = Iterations::new();
    builder_with(PREEMPTIONS).check(|| {
        ITERATIONS.count();
        let table = Memory::new(ContextTable::new(ContextRef::try_new()));
        let request = table.get().unwrap();
        let observer = request.observer();
        let lookup = {
            let table = table.clone();
            thread::spawn(move || {
                if let Some(context) = table.get() {
                    context.use_contents();
                    let flow = context.clone();
                    drop(context);
                    flow.use_contents();
                    drop(flow);
                }
            })
        };
        let pended = thread::spawn(move || {
            request.use_contents();
            drop(request);
        });
        // notifyFn DELETE.
        drop(table.remove());
        lookup.join().unwrap();
        pended.join().unwrap();
        assert_eq!(observer.frees(), 1, "freed exactly once");
        assert_eq!(observer.reference_count(), 0);
    });
    report("context_ref::last_release_frees_exactly_once_after_every_use", &ITERATIONS);
}

/// classify borrows `filter->context` without a reference and takes one
/// for a flow context; the engine sends DELETE only once no classify of
/// the filter is in flight; the flow's reference outlives the filter.
#[test]
fn classify_borrow_is_covered_by_the_engines_rundown() {
    static ITERATIONS: Iterations = Iterations::new();
    builder_with(PREEMPTIONS).check(|| {
        ITERATIONS.count();
        let filter = ContextRef::try_new();
        let observer = filter.observer();
        let engine = Memory::new(EngineFilter::new(&filter));
        let table = Memory::new(ContextTable::new(filter));
        let classify = {
            let engine = engine.clone();
            thread::spawn(move || {
                let mut flow = None;
                engine.classify(|context| {
                    context.use_contents();
                    flow = Some(FilterContext::acquire(context));
                });
                // flowDeleteFn, later, on the same thread.
                if let Some(flow) = flow {
                    flow.use_contents();
                    drop(flow);
                }
            })
        };
        engine.delete(|| drop(table.remove()));
        classify.join().unwrap();
        assert_eq!(observer.frees(), 1);
    });
    report("context_ref::classify_borrow_is_covered_by_the_engines_rundown", &ITERATIONS);
}

/// Negative control: without the `Acquire` fence, the free is not ordered
/// after another thread's last use, and the model must say so.
#[test]
#[should_panic]
fn a_release_without_the_acquire_fence_is_caught() {
    builder_with(PREEMPTIONS).check(|| {
        let first = ContextRef::try_new();
        let second = first.clone();
        let other = thread::spawn(move || {
            second.use_contents();
            second.release_without_fence();
        });
        first.release_without_fence();
        other.join().unwrap();
    });
}

/// Negative control for the unload race the stress test found (see
/// RELIABILITY.md, finding 1): without a rundown, unregistration does not
/// wait for classifications in flight and freeing the contexts is a use
/// after free. The model must find it.
#[test]
#[should_panic]
fn unload_without_rundown_frees_a_context_a_classify_still_borrows() {
    builder_with(PREEMPTIONS).check(|| {
        let filter = ContextRef::try_new();
        let engine = Memory::new(EngineFilter::new(&filter));
        let table = Memory::new(ContextTable::new(filter));
        let classify = {
            let engine = engine.clone();
            thread::spawn(move || {
                engine.classify(FilterContext::use_contents_of);
            })
        };
        // lifecycle::unload: callouts::unregister_all, then release_contexts.
        engine.unregister_without_rundown(|| drop(table.remove()));
        classify.join().unwrap();
    });
}

/// The fix the driver now has (`driver/rundown.rs`): unload waits for the
/// classifications in flight before it frees contexts.
#[test]
fn unload_waits_for_classifications_in_flight() {
    static ITERATIONS: Iterations = Iterations::new();
    builder_with(PREEMPTIONS).check(|| {
        ITERATIONS.count();
        let filter = ContextRef::try_new();
        let observer = filter.observer();
        let rundown = Memory::new(EngineFilter::new(&filter));
        let table = Memory::new(ContextTable::new(filter));
        let classify = {
            let rundown = rundown.clone();
            thread::spawn(move || {
                rundown.classify(FilterContext::use_contents_of);
            })
        };
        rundown.delete(|| drop(table.remove()));
        classify.join().unwrap();
        assert_eq!(observer.frees(), 1);
    });
    report("context_ref::unload_waits_for_classifications_in_flight", &ITERATIONS);
}
