//! A classify still running when its filter's DELETE is delivered (which
//! the WFP documentation neither promises nor rules out) must not see the
//! filter's context freed under it. DELETE releases the filter's slot at
//! once (a new lookup of its word is rejected) but the slot keeps its
//! reference to the context until every rundown line has been seen idle
//! since the release (`HandleSlots::reclaim`): right after the DELETE if
//! no classify is in flight, else at a later DELETE or timer tick, and at
//! the latest at unload.
//!
//! The simulated engine waits for its own classifies before delivering a
//! DELETE, so the classify in flight is held here by hand: inside the
//! driver's rundown, with the context borrowed through the slots, exactly
//! as classifyFn's hot path holds it (`OwnWordGuard::context`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use fwps_types::*;
use std::sync::atomic::Ordering;
use wfpcallout::callbacks::state::STATE;
use wfpcallout::filters::fast_path::ContextWord;
use wfpcallout::filters::filter_counters::Counter;
use wfpcallout_scenario::{Harness, Layer, PolicySource};
use wfpcallout_simkernel::{engine, pool};
use wfpcallout_wire::{Label, LogLevel, PolicyAction, PolicyRepr};

/// The processor the classify in flight runs on (not the test thread's
/// necessarily: any line will do, as long as it is one of the rundown's).
const CLASSIFYING_PROCESSOR: usize = 5;

fn block_policy() -> PolicyRepr {
    PolicyRepr { action: PolicyAction::Block, log_level: LogLevel::Off, label: Label::new("across").unwrap() }
}

/// The driver loaded, with one block filter added through ADD.
fn loaded_with_a_block_filter() -> (Harness, u64) {
    let harness = Harness::load();
    let id = harness.add_filter(Layer::ConnectV4, PolicySource::Policy(&block_policy())).unwrap();
    (harness, id)
}

/// Live `WfFc` blocks: filter contexts.
fn contexts_in_pool() -> usize {
    pool::usage_by_tag().get("WfFc").map_or(0, |u| u.blocks)
}

fn alive(address: usize) -> bool {
    pool::live_range(address, 1).is_some()
}

fn without_context() -> u64 {
    STATE.stats.classify_without_context.load(Ordering::Relaxed)
}

/// What the registered classifyFn answers for a filter whose `context` is
/// `word`.
fn classify_word(filter_id: u64, word: u64) -> u32 {
    wfpcallout_scenario::classify_context_word(filter_id, word).actionType
}

#[test]
fn a_context_borrowed_by_a_classify_in_flight_outlives_delete_until_the_classify_leaves() {
    let (harness, id) = loaded_with_a_block_filter();
    let other = harness.add_filter(Layer::ConnectV4, PolicySource::Policy(&block_policy())).unwrap();
    let word = ContextWord::from_raw(engine::filter_context(id).unwrap());
    let key = word.raw();
    assert_eq!(classify_word(id, word.raw()), fwp::FWP_ACTION_BLOCK, "the live word is the filter's");

    // A classify of `id`, in flight: inside the rundown, its context
    // borrowed through the slots (what `OwnWordGuard::context` does).
    let inside = STATE.rundown.enter_on(CLASSIFYING_PROCESSOR).unwrap();
    // SAFETY: `inside` is a guard of `STATE.rundown`, which every reclaim
    // of the table's slots is given, and it is dropped (before unload, the
    // only caller of release_storage) after the last use of `context`.
    let context = unsafe { STATE.table.slots().borrow_checked(key, &inside) }.unwrap();
    let address = core::ptr::from_ref(context) as usize;
    assert!(alive(address));
    let (pool_before, frees_before) = (contexts_in_pool(), pool::totals().1);

    // DELETE arrives while the classify runs (not waiting for it).
    harness.delete_filter(id).unwrap();
    assert_eq!(harness.context_count(), 1, "no longer alive for the statistics");
    assert_eq!(STATE.table.retired(), 1, "its slot keeps the context: a classify may hold it");
    assert!(alive(address), "freed under a classify in flight");
    assert_eq!(contexts_in_pool(), pool_before, "no filter context freed");
    assert_eq!(pool::totals().1, frees_before, "nothing freed at all");
    // The classify goes on using it.
    assert_eq!(context.filter_id(), id);
    context.count(Counter::Blocked);

    // A new lookup of the deleted filter's word is rejected at once: a
    // classification of the filter that starts now (the engine may still
    // be running them, CONFORMANCE N7) counts nowhere but still answers
    // with the filter's own verdict, which the word carries: the block
    // filter blocks to the end, not the default permit.
    // SAFETY: as above.
    assert!(unsafe { STATE.table.slots().borrow_checked(key, &inside) }.is_none(), "the stale key matched");
    let before = without_context();
    assert_eq!(classify_word(id, word.raw()), fwp::FWP_ACTION_BLOCK, "the filter's own BLOCK, not the default");
    assert_eq!(without_context(), before + 1);

    // Neither another DELETE nor the timer frees it while the classify is
    // inside (its line is not idle). Nor the other filter's context: the
    // grace period is not per filter, and that classify could as well
    // have matched the other's word.
    harness.delete_filter(other).unwrap();
    wfpcallout::control::lifecycle::on_timer();
    assert!(alive(address), "reclaimed while a classify that matched its word is inside");
    assert_eq!(STATE.table.retired(), 2, "both deleted filters' contexts wait for the classify");
    assert_eq!(contexts_in_pool(), pool_before);

    // The classify leaves; the next timer tick sees its line idle.
    drop(inside);
    assert!(alive(address), "leaving frees nothing by itself");
    wfpcallout::control::lifecycle::on_timer();
    assert!(!alive(address), "the timer did not free the context once the classify had left");
    assert_eq!(STATE.table.retired(), 0);
    assert_eq!(contexts_in_pool(), pool_before - 2, "both deleted filters' contexts freed");
    harness.unload_and_check();
}

#[test]
fn a_context_still_waiting_for_its_grace_period_is_freed_at_unload() {
    let (harness, id) = loaded_with_a_block_filter();
    let key = engine::filter_context(id).unwrap();
    let inside = STATE.rundown.enter_on(CLASSIFYING_PROCESSOR).unwrap();
    // SAFETY: as in the test above.
    let address = unsafe { STATE.table.slots().borrow_checked(key, &inside) }.map(|c| core::ptr::from_ref(c) as usize);
    let address = address.unwrap();
    harness.delete_filter(id).unwrap();
    assert!(alive(address));
    drop(inside);
    assert_eq!(STATE.table.retired(), 1, "no timer tick or DELETE since");
    // Unload frees it (and fails the test on any leak or double free).
    harness.unload_and_check();
    assert!(!alive(address));
}

#[test]
fn with_no_classify_in_flight_delete_frees_the_context_at_once() {
    let (harness, id) = loaded_with_a_block_filter();
    let before = contexts_in_pool();
    harness.delete_filter(id).unwrap();
    assert_eq!(STATE.table.retired(), 0);
    assert_eq!(contexts_in_pool(), before - 1, "DELETE freed the context itself");
    harness.unload_and_check();
}

#[test]
fn a_classify_during_unload_keeps_the_static_verdict_without_counting() {
    let (harness, id) = loaded_with_a_block_filter();
    let word = engine::filter_context(id).unwrap();
    let counted = harness.counters(id).unwrap();
    // Unload has closed the rundown (and waited): a classification still
    // delivered uses no context, but the verdict is in the word.
    let _drained = STATE.rundown.close_and_wait();
    let before = without_context();
    assert_eq!(classify_word(id, word), fwp::FWP_ACTION_BLOCK, "the filter's own BLOCK, not the default");
    assert_eq!(without_context(), before + 1, "counted as a classification without context");
    STATE.rundown.reopen();
    assert_eq!(harness.counters(id).unwrap(), counted, "not counted on the filter");
    harness.delete_filter(id).unwrap();
    harness.unload_and_check();
}
