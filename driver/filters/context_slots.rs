//! The slots behind the checked handle in `filter->context`.
//!
//! notifyFn ADD does not store a pointer in the filter: it claims a slot
//! here, tagged with the word's fast-path bits, puts the context's address
//! in it, and stores the slot's key, its generation, index and tag, as the
//! context word (`fast_path.rs`). classifyFn turns the word back into the
//! context only if the slot the word's segment and slot bits name (always
//! one of the slots, whatever the bits) has the word as its key, so a word
//! that is not ours (a filter some other code wrote, a word left from an
//! earlier load of the driver, random bits) or a stale one (its filter
//! deleted, the slot reused) is rejected by a mask and a compare, never
//! dereferenced.
//!
//! The slots are driver-owned memory, kept by the pool layer's
//! [`HandleSlots`] (the one place that reads them lock-free): segments of
//! [`SEGMENT_SLOTS`] slots in non-paged pool, found through a fixed
//! directory of [`SEGMENTS`] pointers. A segment is allocated outside any
//! lock (at ADD, which the engine may call at PASSIVE or DISPATCH_LEVEL:
//! non-paged pool may be allocated at either) when no slot is free, and
//! published with one atomic store; segments are freed only by
//! [`HandleSlots::release_storage`] at the end of unload, which asks for
//! the proof the rundown's wait returns (`rundown::Drained`), so a
//! classify never reads freed slot memory. Claiming and
//! releasing a slot is O(1) under a spin lock (lists threaded through the
//! slots); classify takes no lock and reads two atomics.
//!
//! Lifetime: a claimed slot keeps a reference to its context. DELETE's
//! release makes the key stop matching at once, but the slot keeps the
//! reference (on a retired list) until every rundown line has been seen
//! idle since (`HandleSlots::reclaim`: after each DELETE, from the timer;
//! at unload, after the rundown has drained, `release_storage`), so a
//! classify that matched the word before the release never sees the
//! context freed, whenever the engine delivers DELETE.
//!
//! Generations: odd while the slot is claimed, even once released; a
//! release bumps it, so every word of a deleted filter stops matching. A
//! slot's first generation mixes its index with a seed drawn from the clock
//! and a sequence never reset when the first segment is allocated, so words
//! left by an earlier load of the driver do not match the slots of this one
//! (short of a 1 in 2^31 coincidence; lookup mode covers such filters
//! anyway). A new segment is built outside the lock (a zero key is a slot
//! never claimed), so growing holds the lock for O(1).
//!
//! This file names the handle's layout for the context word
//! (`fast_path.rs`); the table that keeps contexts through it is
//! `filter_context::ContextSlots`.
#![forbid(unsafe_code)]

pub use crate::platform::pool::{
    GENERATION_SHIFT, HANDLE_CAPACITY as CAPACITY, HandleSlots, INDEX_SHIFT, SEGMENT_SLOTS, SEGMENTS, SlotHandle,
};
