//! `filter->context` is a checked handle (slot index and generation), not a
//! pointer: classifyFn uses a context only if the word's index is inside
//! the driver's slots and the slot's generation is the word's. A garbage
//! word, a stale one (its filter deleted, its slot reused) and an index out
//! of range are never dereferenced: they are counted in
//! `classify_without_context`, no live filter's counters move, and the
//! answer is what the word alone says (a static word's own verdict, which
//! needs no context: a block filter deleted while it is classified still
//! blocks; the default policy for a word that takes the full path). The
//! words are handed to the registered classifyFn directly, on a filter the
//! driver was notified of (so not in lookup mode: the word is trusted as far
//! as the check lets it be).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use fwps_types::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use wfpcallout::callbacks::state::STATE;
use wfpcallout::filters::context_slots::{CAPACITY, SEGMENT_SLOTS, SlotHandle};
use wfpcallout::filters::fast_path::{ContextWord, FastPath};
use wfpcallout::filters::filter_counters::CounterSnapshot;
use wfpcallout_scenario::{Harness, Layer, PolicySource};
use wfpcallout_simkernel::engine;
use wfpcallout_wire::{Label, LogLevel, PolicyAction, PolicyRepr};

fn policy(action: PolicyAction) -> PolicyRepr {
    PolicyRepr { action, log_level: LogLevel::Off, label: Label::new("handle").unwrap() }
}

fn without_context() -> u64 {
    STATE.stats.classify_without_context.load(Ordering::Relaxed)
}

fn word_of(filter_id: u64) -> ContextWord {
    ContextWord::from_raw(engine::filter_context(filter_id).unwrap())
}

fn counters(harness: &Harness, filter_id: u64) -> CounterSnapshot {
    harness.counters(filter_id).unwrap()
}

/// A block filter (a word accepted by mistake shows as a count on it).
fn block_filter(harness: &Harness) -> u64 {
    harness.add_filter(Layer::ConnectV4, PolicySource::Policy(&policy(PolicyAction::Block))).unwrap()
}

fn assert_rejected(harness: &Harness, live: u64, word: u64, what: &str) {
    let before = (without_context(), counters(harness, live));
    let (action, _) = classify_word(live, word);
    assert_eq!(action, verdict_without_context(word), "{what}: not the answer the word alone gives");
    assert_eq!(without_context(), before.0 + 1, "{what}: counted as a classification without context");
    assert_eq!(counters(harness, live), before.1, "{what}: no live context was touched");
}

/// What a word answers without a context: a static word its own verdict,
/// a full-path word the default policy (permit).
fn verdict_without_context(word: u64) -> u32 {
    match ContextWord::from_raw(word).fast_path() {
        FastPath::Block => fwp::FWP_ACTION_BLOCK,
        FastPath::Permit | FastPath::Audit | FastPath::Full => fwp::FWP_ACTION_PERMIT,
    }
}

/// What classifyFn answered for a filter whose `context` is `word`:
/// (action, write right kept).
fn classify_word(filter_id: u64, word: u64) -> (u32, bool) {
    let out = wfpcallout_scenario::classify_context_word(filter_id, word);
    (out.actionType, out.rights & FWPS_RIGHT_ACTION_WRITE != 0)
}

#[test]
fn the_word_our_add_stored_is_accepted() {
    let harness = Harness::load();
    let id = block_filter(&harness);
    let word = word_of(id);
    assert_eq!(word.fast_path(), FastPath::Block);
    assert_eq!(classify_word(id, word.raw()), (fwp::FWP_ACTION_BLOCK, false));
    assert_eq!(counters(&harness, id).blocked, 1);
    assert_eq!(without_context(), 0);
    harness.delete_filter(id).unwrap();
    harness.unload_and_check();
}

#[test]
fn garbage_words_are_rejected_without_dereference() {
    let harness = Harness::load();
    let id = block_filter(&harness);
    let live = word_of(id);
    // Static block bits over random and hostile bits: an out-of-range
    // index, a kernel-looking pointer, the live slot with a wrong or even
    // (free) generation, a neighbouring slot never claimed, all ones.
    let block = FastPath::Block as u64;
    let handle = live.handle();
    let garbage = [
        0xDEAD_BEEF_DEAD_BEE0 | block,
        0xFFFF_A50C_1234_E010 | block,
        ContextWord::new(SlotHandle { generation: handle.generation ^ 0x8000_0000, ..handle }, FastPath::Block, false)
            .raw(),
        ContextWord::new(
            SlotHandle { generation: handle.generation.wrapping_add(1), ..handle },
            FastPath::Block,
            false,
        )
        .raw(),
        ContextWord::new(SlotHandle { index: handle.index + 1, ..handle }, FastPath::Block, false).raw(),
        u64::MAX,
        0x0123_4567_89ab_cdef | block,
    ];
    for word in garbage {
        assert_rejected(&harness, id, word, &format!("garbage {word:#x}"));
    }
    // A word that is not static takes the full path, which checks the same way.
    let full = ContextWord::new(SlotHandle { generation: handle.generation ^ 2, ..handle }, FastPath::Full, false);
    assert_rejected(&harness, id, full.raw(), "full-path garbage");
    // The live word still works.
    assert_eq!(classify_word(id, live.raw()).0, fwp::FWP_ACTION_BLOCK);
    harness.delete_filter(id).unwrap();
    harness.unload_and_check();
}

#[test]
fn an_index_out_of_range_is_rejected_even_with_a_live_generation() {
    let harness = Harness::load();
    let id = block_filter(&harness);
    let live = word_of(id);
    let handle = live.handle();
    // Indexes in segments never allocated, the last one the word can
    // carry among them.
    for index in [handle.index + (SEGMENT_SLOTS as u32) * 7, CAPACITY as u32 - 1] {
        let word = ContextWord::new(SlotHandle { index, ..handle }, FastPath::Block, false);
        assert_eq!(word.handle().index, index, "the index fits the word");
        assert_rejected(&harness, id, word.raw(), &format!("index {index}"));
    }
    // The live word with any of the bits between the slot and the segment
    // set (no claim's key has them): the lookup lands on the live slot,
    // whose key does not match.
    for bit in 14..23 {
        let word = live.raw() | 1 << bit;
        assert_eq!(ContextWord::from_raw(word).handle(), handle, "bit {bit} names the live slot");
        assert_rejected(&harness, id, word, &format!("bit {bit}"));
    }
    harness.delete_filter(id).unwrap();
    harness.unload_and_check();
}

#[test]
fn a_stale_word_is_rejected_after_delete_and_after_its_slot_is_reused() {
    let harness = Harness::load();
    let keeper = block_filter(&harness);
    let old = block_filter(&harness);
    let stale = word_of(old);
    harness.delete_filter(old).unwrap();
    assert_rejected(&harness, keeper, stale.raw(), "stale word, slot free");
    // The next ADD reuses the slot (the free list is LIFO): same index, a
    // new generation.
    let new = block_filter(&harness);
    let fresh = word_of(new);
    assert_eq!(fresh.handle().index, stale.handle().index, "the slot was reused");
    assert_ne!(fresh.handle().generation, stale.handle().generation);
    let before = counters(&harness, new);
    assert_rejected(&harness, keeper, stale.raw(), "stale word, slot reused");
    assert_eq!(counters(&harness, new), before, "the reused slot's new context was not counted");
    assert_eq!(classify_word(new, fresh.raw()).0, fwp::FWP_ACTION_BLOCK);
    for id in [keeper, new] {
        harness.delete_filter(id).unwrap();
    }
    harness.unload_and_check();
}

#[test]
fn a_word_from_before_a_driver_restart_is_rejected() {
    let mut harness = Harness::load();
    let keeper_before = block_filter(&harness);
    let stale = word_of(keeper_before);
    harness.delete_filter(keeper_before).unwrap();
    harness.unload();
    harness.initialize().unwrap();
    // After a restart the slots are new memory; the first ADD gets slot 0
    // again, with a generation that starts from the clock.
    let id = block_filter(&harness);
    let fresh = word_of(id);
    assert_eq!(fresh.handle().index, stale.handle().index);
    assert_rejected(&harness, id, stale.raw(), "a word from the previous load");
    harness.delete_filter(id).unwrap();
    harness.unload_and_check();
}

#[test]
fn add_delete_churn_reuses_slots_and_every_live_word_finds_its_own_context() {
    let harness = Harness::load();
    let permit = policy(PolicyAction::Permit);
    let mut live: Vec<(u64, ContextWord)> = Vec::new();
    let mut retired: Vec<ContextWord> = Vec::new();
    for round in 0..6u64 {
        for _ in 0..700 {
            let id = harness.add_filter(Layer::ConnectV4, PolicySource::Policy(&permit)).unwrap();
            live.push((id, word_of(id)));
        }
        // Delete every other one (and, in later rounds, older ones too).
        let mut kept = Vec::new();
        for (n, (id, word)) in live.drain(..).enumerate() {
            if (n as u64 + round).is_multiple_of(2) {
                harness.delete_filter(id).unwrap();
                retired.push(word);
            } else {
                kept.push((id, word));
            }
        }
        live = kept;
        let (free, allocated) = STATE.table.slots().counts();
        assert_eq!(allocated - free, live.len(), "round {round}: one slot per live filter");
        assert!(allocated <= 2 * SEGMENT_SLOTS, "round {round}: deleted filters' slots were reused ({allocated})");
    }
    let before = without_context();
    for (id, word) in &live {
        assert_eq!(classify_word(*id, word.raw()).0, fwp::FWP_ACTION_PERMIT);
        assert_eq!(counters(&harness, *id).permitted, 1, "filter {id} counted on its own context");
    }
    assert_eq!(without_context(), before, "every live word was accepted");
    let (first, _) = live[0];
    for word in retired.iter().step_by(97) {
        let word = ContextWord::new(word.handle(), FastPath::Block, false);
        assert_rejected(&harness, first, word.raw(), "a deleted filter's word");
    }
    for (id, _) in live {
        harness.delete_filter(id).unwrap();
    }
    assert_eq!(STATE.table.slots().counts().0, STATE.table.slots().counts().1, "every slot free again");
    harness.unload_and_check();
}

#[test]
fn classify_on_live_words_while_other_filters_churn_never_misses_or_miscounts() {
    let harness = Harness::load();
    let permit = policy(PolicyAction::Permit);
    let steady: Vec<(u64, u64)> = (0..64)
        .map(|_| {
            let id = harness.add_filter(Layer::ConnectV4, PolicySource::Policy(&permit)).unwrap();
            (id, word_of(id).raw())
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let classified = Arc::new(AtomicU64::new(0));
    let start = Arc::new(Barrier::new(2));
    let reader = {
        let (steady, stop, classified, start) = (steady.clone(), stop.clone(), classified.clone(), start.clone());
        std::thread::spawn(move || {
            start.wait();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) || n < 10_000 {
                let (id, word) = steady[(n % steady.len() as u64) as usize];
                assert_eq!(classify_word(id, word).0, fwp::FWP_ACTION_PERMIT);
                n += 1;
            }
            classified.store(n, Ordering::Relaxed);
        })
    };
    start.wait();
    for _ in 0..2_000 {
        let id = harness.add_filter(Layer::ConnectV4, PolicySource::Policy(&permit)).unwrap();
        harness.delete_filter(id).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    let total: u64 = steady.iter().map(|(id, _)| counters(&harness, *id).permitted).sum();
    assert_eq!(total, classified.load(Ordering::Relaxed), "every classification counted on a steady filter");
    assert_eq!(without_context(), 0, "no live word was ever rejected");
    for (id, _) in steady {
        harness.delete_filter(id).unwrap();
    }
    harness.unload_and_check();
}
