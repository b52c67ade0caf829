//! The pool layer's owning types keep their invariants: a `PoolArc` frees
//! its block exactly once, when the last reference (however it was taken:
//! clone, or `acquire` from a borrow) goes, and never before; the handle
//! slots lend a block only to a word naming its live claim, and through
//! classify's `ContextWords` only outside lookup mode and inside the
//! rundown; a `PoolSlice`
//! built element by element drops each element once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use wfpcallout::platform::pool::{
    HANDLE_CAPACITY, HandleSlots, INDEX_SHIFT, PoolArc, PoolSlice, PoolTag, SEGMENT_SLOTS, SlotHandle, Tagged,
    TaggedBox,
};
use wfpcallout::platform::rundown::Rundown;
use wfpcallout::platform::status::NtStatus;
use wfpcallout_scenario::Harness;
use wfpcallout_simkernel::{pool, verifier};

/// A value that counts its drops.
struct Probe {
    value: u64,
    drops: Arc<AtomicUsize>,
}

impl Tagged for Probe {
    const TAG: PoolTag = PoolTag::new(*b"WfT1");
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

fn probe(value: u64) -> (PoolArc<Probe>, Arc<AtomicUsize>) {
    let drops = Arc::new(AtomicUsize::new(0));
    let counter = drops.clone();
    (PoolArc::try_new_with(move || Probe { value, drops: counter }).unwrap(), drops)
}

fn live(address: u64) -> bool {
    pool::live_range(address as usize, 1).is_some()
}

fn bytes(tag: &str) -> usize {
    pool::usage_by_tag().get(tag).map_or(0, |u| u.bytes)
}

#[test]
fn a_pool_arc_frees_once_when_its_last_reference_goes_and_not_before() {
    let _kernel = Harness::boot();
    let (first, drops) = probe(7);
    let address = first.as_raw();
    assert_eq!(first.reference_count(), 1);
    let cloned = first.clone();
    // A borrow (what classify gets from a handle) takes a reference too.
    let borrowed: &wfpcallout::platform::pool::Counted<Probe> = &cloned;
    let acquired = borrowed.acquire();
    assert_eq!(first.reference_count(), 3, "clone and acquire each count one");
    assert_eq!(acquired.value, 7);
    drop(first);
    drop(cloned);
    assert!(live(address), "one reference left: still allocated");
    assert_eq!(drops.load(Ordering::SeqCst), 0, "not dropped while referenced");
    assert_eq!(acquired.reference_count(), 1);
    drop(acquired);
    assert!(!live(address), "the last reference freed the block");
    assert_eq!(drops.load(Ordering::SeqCst), 1, "the value dropped exactly once");
    assert!(verifier::take().is_empty(), "no double free");
}

#[test]
fn pool_arc_references_taken_and_dropped_on_many_threads_balance() {
    let _kernel = Harness::boot();
    let (arc, drops) = probe(1);
    let address = arc.as_raw();
    std::thread::scope(|scope| {
        for _ in 0..8 {
            let mine = arc.clone();
            scope.spawn(move || {
                for _ in 0..2_000 {
                    let again = mine.acquire();
                    let twice = again.clone();
                    drop(again);
                    drop(twice);
                }
            });
        }
    });
    assert_eq!(arc.reference_count(), 1, "every reference taken was given back");
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    drop(arc);
    assert!(!live(address));
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    assert!(verifier::take().is_empty());
}

#[test]
fn handle_slots_lend_a_block_only_to_the_key_of_its_live_claim() {
    let _kernel = Harness::boot();
    let slots: HandleSlots<Probe> = HandleSlots::new(PoolTag::new(*b"WfT2"));
    let (arc, _drops) = probe(3);
    let handle = slots.claim(&arc).unwrap();
    assert_eq!(handle.generation & 1, 1, "live claims have odd generations");
    let rundown = Rundown::new();
    let inside = rundown.enter_on(0).unwrap();
    // SAFETY: `arc` is alive and the storage is released only after every
    // lookup below (and the guard) is done.
    let found = unsafe { slots.borrow_checked(handle.key(), &inside) }.map(|c| c.value);
    assert_eq!(found, Some(3));
    let rejected = [
        SlotHandle { generation: handle.generation ^ 2, ..handle }.key(),
        SlotHandle { index: handle.index + 1, ..handle }.key(),
        SlotHandle { index: (HANDLE_CAPACITY - 1) as u32, ..handle }.key(),
        !((1 << INDEX_SHIFT) - 1),
        0,
    ];
    for key in rejected {
        // SAFETY: as above.
        assert!(unsafe { slots.borrow_checked(key, &inside) }.is_none(), "key {key:#x} must not match");
    }
    assert_eq!(arc.reference_count(), 2, "ours and the slot's own");
    slots.release(handle);
    // SAFETY: as above (the block is alive, the slot no longer matches).
    assert!(unsafe { slots.borrow_checked(handle.key(), &inside) }.is_none(), "a released claim stops matching");
    assert_eq!((slots.retired(), arc.reference_count()), (1, 2), "released, the slot keeps its reference");
    let elsewhere = Rundown::new();
    assert_eq!(slots.reclaim(&elsewhere, &inside), 0, "a guard of another rundown reclaims nothing");
    assert_eq!(slots.reclaim(&rundown, &inside), 1, "nobody else inside: the grace period has passed");
    assert_eq!((slots.retired(), arc.reference_count()), (0, 1), "the slot's reference went");
    let again = slots.claim(&arc).unwrap();
    assert_eq!(again.index, handle.index, "the slot is reused");
    assert_ne!(again.generation, handle.generation, "under a new generation");
    assert_eq!(
        again.generation,
        handle.generation.wrapping_add(2),
        "a release moves the generation on: even while free (kept in the free key), odd again when claimed"
    );
    // SAFETY: as above.
    assert!(unsafe { slots.borrow_checked(handle.key(), &inside) }.is_none(), "the old key stays stale");
    assert_eq!(slots.counts(), (SEGMENT_SLOTS - 1, SEGMENT_SLOTS));
    drop(inside);
    assert_eq!(bytes("WfT2"), SEGMENT_SLOTS * 16, "one segment");
    // The storage goes only with the proof that the lookups' own rundown
    // has drained, and stays closed.
    let elsewhere_drained = elsewhere.close_and_wait();
    let drained = rundown.close_and_wait();
    assert_eq!(
        slots.release_storage(&rundown, &elsewhere_drained),
        Err(NtStatus::INVALID_DEVICE_STATE),
        "the proof of another rundown's wait is refused (this one drained too)"
    );
    rundown.reopen();
    assert_eq!(
        slots.release_storage(&rundown, &drained),
        Err(NtStatus::INVALID_DEVICE_STATE),
        "a proof of the rundown reopened since is refused"
    );
    assert_eq!(bytes("WfT2"), SEGMENT_SLOTS * 16, "refused: the segment stays");
    assert_eq!(arc.reference_count(), 2, "refused: the live claim keeps its reference");
    let drained = rundown.close_and_wait();
    assert_eq!(slots.release_storage(&rundown, &drained), Ok(()));
    assert_eq!(arc.reference_count(), 1, "released: the claim's reference went");
    assert_eq!(bytes("WfT2"), 0, "release_storage frees the segments");
    assert_eq!(slots.counts(), (0, 0));
    assert!(verifier::take().is_empty());
}

#[test]
fn a_pool_slice_built_by_index_drops_each_element_once() {
    let _kernel = Harness::boot();
    let drops = Arc::new(AtomicUsize::new(0));
    let slice = PoolSlice::try_new_with(100, PoolTag::new(*b"WfT4"), |index| Probe {
        value: index as u64,
        drops: drops.clone(),
    })
    .unwrap();
    assert!(slice.iter().enumerate().all(|(index, probe)| probe.value == index as u64));
    drop(slice);
    assert_eq!(drops.load(Ordering::SeqCst), 100);
    assert_eq!(bytes("WfT4"), 0);
    assert!(verifier::take().is_empty());
}

#[test]
fn an_owned_entry_is_one_pointer_so_a_table_slot_stays_16_bytes() {
    assert_eq!(size_of::<Option<TaggedBox<Probe>>>(), 8);
    assert_eq!(size_of::<Option<PoolArc<Probe>>>(), 8);
}

/// A run-time filter whose `context` is `word` (what classifyFn is given).
fn filter_with_context(word: u64) -> fwps_types::FWPS_FILTER2 {
    use fwps_types::fwp::{FWP_VALUE0, FWP_VALUE0_0};
    fwps_types::FWPS_FILTER2 {
        filterId: 9,
        weight: FWP_VALUE0 { r#type: fwps_types::fwp::FWP_EMPTY, Anonymous: FWP_VALUE0_0 { uint8: 0 } },
        subLayerWeight: 0,
        flags: 0,
        numFilterConditions: 0,
        filterCondition: core::ptr::null_mut(),
        action: fwps_types::FWPS_ACTION0 { r#type: fwps_types::fwp::FWP_ACTION_CALLOUT_TERMINATING, calloutId: 0 },
        context: word,
        providerContext: core::ptr::null_mut(),
    }
}

#[test]
fn a_tagged_claim_matches_only_its_whole_word_and_no_free_slot_matches_a_tagged_word() {
    let _kernel = Harness::boot();
    let slots: HandleSlots<Probe> = HandleSlots::new(PoolTag::new(*b"WfT4"));
    let (arc, _drops) = probe(5);
    let (other, _other_drops) = probe(6);
    let rundown = Rundown::new();
    let inside = rundown.enter_on(0).unwrap();
    let tagged = slots.claim_tagged(&arc, 0b0011).unwrap();
    let untagged = slots.claim(&other).unwrap();
    assert_eq!((tagged.tag, tagged.key() & 0xf), (0b0011, 0b0011), "the tag is the key's low bits");
    // SAFETY: `arc` and `other` are alive and the storage is released only
    // after every lookup below (and the guard) is done.
    let lend = |key: u64| unsafe { slots.borrow_tagged(key, &inside) }.map(|c| c.value);
    // SAFETY: as above.
    let lend_any = |key: u64| unsafe { slots.borrow_checked(key, &inside) }.map(|c| c.value);
    assert_eq!(lend(tagged.key()), Some(5), "the whole word");
    assert_eq!(lend_any(tagged.key()), Some(5));
    for tag in [0, 0b0001, 0b1011, 0b1111] {
        let key = SlotHandle { tag, ..tagged }.key();
        assert_eq!((lend(key), lend_any(key)), (None, None), "tag {tag:#x} is not the claim's");
    }
    assert_eq!(lend(untagged.key()), None, "a word without a tag is not lent as tagged");
    assert_eq!(lend_any(untagged.key()), Some(6));
    // Released and reclaimed, the tagged slot is free: its key has no tag,
    // so no tagged word matches it, whichever index and generation.
    slots.release(tagged);
    assert_eq!(slots.reclaim(&rundown, &inside), 1);
    for tag in 1..16 {
        for generation in [tagged.generation, tagged.generation.wrapping_add(1), tagged.generation.wrapping_add(2)] {
            for index in [tagged.index, 0, untagged.index + 1, (SEGMENT_SLOTS - 1) as u32] {
                let key = SlotHandle { index, generation, tag }.key();
                assert_eq!(lend(key), None, "index {index} generation {generation:#x} tag {tag:#x}");
            }
        }
    }
    // Claimed again, with another tag.
    let reused = slots.claim_tagged(&arc, 0b1001).unwrap();
    assert_eq!(reused.index, tagged.index, "the freed slot is reused");
    assert_eq!(lend(reused.key()), Some(5));
    slots.release(reused);
    slots.release(untagged);
    drop(inside);
    assert_eq!(slots.release_storage(&rundown, &rundown.close_and_wait()), Ok(()));
    assert_eq!(bytes("WfT4"), 0);
    assert!(verifier::take().is_empty());
}

#[test]
fn a_free_slots_link_to_the_next_is_no_tag() {
    // A free slot's key names the next free slot. Were that index kept in
    // the key's low bits, where a word keeps its tag, a tagged word naming
    // the free slot with the next one's low bits would match it, and lend
    // its NULL target: free slot 1 linked to slot 17 (17 >> 4 == 1).
    let _kernel = Harness::boot();
    let slots: HandleSlots<Probe> = HandleSlots::new(PoolTag::new(*b"WfT5"));
    let (arc, _drops) = probe(7);
    let rundown = Rundown::new();
    let inside = rundown.enter_on(0).unwrap();
    let claims: Vec<SlotHandle> = (0..18).map(|_| slots.claim(&arc).unwrap()).collect();
    let indexes: Vec<u32> = claims.iter().map(|h| h.index).collect();
    assert_eq!(indexes, (0..18).collect::<Vec<u32>>(), "fresh slots are claimed in order");
    slots.release(claims[17]);
    slots.release(claims[1]);
    assert_eq!(slots.reclaim(&rundown, &inside), 2);
    let free_generation = claims[1].generation.wrapping_add(1);
    for generation in [free_generation, free_generation | 1] {
        let key = SlotHandle { index: 1, generation, tag: 17 & 0xf }.key();
        // SAFETY: `arc` is alive and the storage is released only after
        // this lookup (and the guard) is done.
        let lent = unsafe { slots.borrow_tagged(key, &inside) }.map(|c| c.value);
        assert_eq!(lent, None, "a free slot's link is no tag (generation {generation:#x})");
    }
    for handle in claims {
        slots.release(handle);
    }
    drop(inside);
    assert_eq!(slots.release_storage(&rundown, &rundown.close_and_wait()), Ok(()));
    assert_eq!(bytes("WfT5"), 0);
    assert!(verifier::take().is_empty());
}

#[test]
fn context_words_lend_the_classified_filters_claim_only_outside_lookup_mode_and_inside_the_rundown() {
    use wfpcallout::wfp::filter_view::{ClassifiedFilter, ContextWords};
    let _kernel = Harness::boot();
    let slots: HandleSlots<Probe> = HandleSlots::new(PoolTag::new(*b"WfT3"));
    let rundown = Rundown::new();
    let (arc, _drops) = probe(4);
    // Claimed as notifyFn ADD claims: with the word's fast-path bits as
    // the key's tag, so the key is the whole word.
    let handle = slots.claim_tagged(&arc, 0b1001).unwrap();
    // SAFETY: the test's own slots and rundown: the one claim is released,
    // and `arc` dropped, and the storage released only after every borrow
    // below is over; lookup mode is on while the test's filters are not
    // what a claim's word says.
    let words = unsafe { ContextWords::new(&slots, &rundown) };
    // The context word keeps its fast path in the bits below the index.
    let own_word = filter_with_context(handle.key());
    assert_eq!(handle.key() & 0xf, 0b1001);
    let garbage = filter_with_context(SlotHandle { generation: handle.generation ^ 2, ..handle }.key());
    // SAFETY: a local filter, valid and unchanged (never deleted) while its
    // view lives.
    let own_word = unsafe { ClassifiedFilter::from_raw(&own_word) }.unwrap();
    // SAFETY: as above.
    let garbage = unsafe { ClassifiedFilter::from_raw(&garbage) }.unwrap();

    let inside = words.enter(&own_word, 0).unwrap();
    assert_eq!(inside.context().map(|c| c.value), Some(4), "the filter's own claim");
    drop(inside);
    let inside = words.enter(&garbage, 0).unwrap();
    assert!(inside.context().is_none(), "a word naming no live claim is rejected, not dereferenced");
    drop(inside);

    rundown.set_lookup(true);
    assert!(words.enter(&own_word, 5).is_none(), "in lookup mode no word is taken for ours");
    assert!(words.lookup_mode(), "refused for lookup mode");
    assert!(rundown.enter_on(5).is_some(), "lookup mode refuses the fast entry only");
    rundown.set_lookup(false);
    assert!(!words.lookup_mode());

    let drained = rundown.close_and_wait();
    assert!(words.enter(&own_word, 0).is_none(), "no borrow once unload closed the rundown");
    assert!(!words.lookup_mode(), "refused for unload, not lookup mode");
    rundown.set_lookup(true);
    rundown.set_lookup(false);
    assert!(drained.proves(&rundown), "lookup mode ending leaves the gate closed");
    assert!(words.enter(&own_word, 0).is_none(), "still closed");
    rundown.reopen();

    slots.release(handle);
    let inside = words.enter(&own_word, 0).unwrap();
    assert!(inside.context().is_none(), "a released claim stops matching");
    drop(inside);
    assert_eq!(slots.release_storage(&rundown, &rundown.close_and_wait()), Ok(()));
    assert_eq!(bytes("WfT3"), 0);
    drop(arc);
    assert!(verifier::take().is_empty());
}
