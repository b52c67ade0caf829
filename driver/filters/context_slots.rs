//! The slots behind the checked handle in `filter->context`.
//!
//! notifyFn ADD does not store a pointer in the filter: it claims a slot
//! here, puts the context's address in it, and stores the slot's index and
//! generation in the context word (`fast_path.rs`). classifyFn turns the
//! word back into the context only if the index is inside the slots and
//! the slot's generation equals the word's, so a word that is not ours (a
//! filter some other code wrote, a word left from an earlier load of the
//! driver, random bits) or a stale one (its filter deleted, the slot reused)
//! is rejected by a bounds check and a compare, never dereferenced.
//!
//! The slots are driver-owned memory: segments of [`SEGMENT_SLOTS`] slots
//! in non-paged pool, found through a fixed directory of [`SEGMENTS`]
//! pointers. A segment is allocated outside any lock (at ADD, which runs
//! at PASSIVE_LEVEL when a client adds a filter) when no slot is free, and
//! published with one atomic store; segments are freed only by
//! [`ContextSlots::release_storage`] at the end of unload, after the
//! rundown, so a classify never reads freed slot memory. Claiming and
//! releasing a slot is O(1) under a spin lock (a free list threaded
//! through the slots); classify takes no lock and reads two atomics.
//!
//! Generations: odd while the slot holds a context, even while free; a
//! release bumps it, so every word of a deleted filter stops matching. A
//! new segment's generations start from the clock and a sequence that is
//! never reset, so words left by an earlier load of the driver do not match
//! the slots of this one (short of a 1 in 2^31 coincidence; lookup mode
//! covers such filters anyway).
#![allow(unsafe_code)] // the directory's pointers into the segments it owns

use crate::platform::pool::{PoolSlice, PoolTag, Zeroable};
use crate::platform::rundown::RundownGuard;
use crate::platform::spin_lock::SpinLock;
use crate::platform::status::{NtStatus, Result};
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};

/// Slots per segment (a power of two): 16 KiB of pool a segment.
pub const SEGMENT_SLOTS: usize = 1024;
/// `index >> SEGMENT_SHIFT` is the segment, `index & SEGMENT_MASK` the slot in it.
const SEGMENT_SHIFT: u32 = SEGMENT_SLOTS.trailing_zeros();
const SEGMENT_MASK: usize = SEGMENT_SLOTS - 1;
/// Segments in the directory: at most `SEGMENTS * SEGMENT_SLOTS` filters
/// (524,288) have a context at once.
pub const SEGMENTS: usize = 512;
/// Every valid slot index is below this.
pub const CAPACITY: usize = SEGMENTS * SEGMENT_SLOTS;
/// The end of the free list.
const NO_SLOT: u32 = u32::MAX;

const _: () = assert!(SEGMENT_SLOTS.is_power_of_two());
// Indexes fit the word's 28 index bits (`fast_path.rs`).
const _: () = assert!(CAPACITY <= 1 << 28);

/// Where a context lives: what the context word carries besides the fast path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotHandle {
    /// The slot's index (below [`CAPACITY`] for a handle we issued).
    pub index: u32,
    /// The slot's generation when it was claimed (odd).
    pub generation: u32,
}

/// One slot: 16 bytes.
#[repr(C, align(16))]
struct Slot {
    /// Odd while `context` is a live context, even while free.
    generation: AtomicU32,
    /// The next free slot's index while this one is free (under the lock).
    next_free: AtomicU32,
    /// The context's address (`ContextRef::as_raw`), 0 while free. The
    /// table holds the reference; the slot only borrows it.
    context: AtomicU64,
}

// SAFETY: an all-zero Slot (atomics at 0) is a valid value.
unsafe impl Zeroable for Slot {}

/// The free list and the owned segments (under the lock).
struct Owned {
    segments: [Option<PoolSlice<Slot>>; SEGMENTS],
    /// Segments allocated so far (the directory's first `allocated` entries).
    allocated: usize,
    free_head: u32,
    free: usize,
}

/// The slots: a lock-free directory classify reads, and the lock-held
/// ownership and free list notifyFn changes.
///
/// # Invariants
/// `directory[s]` is null or the address of `owned.segments[s]`'s
/// `SEGMENT_SLOTS` slots, set once before any index in segment `s` is
/// handed out and cleared only by `release_storage`, after which no caller
/// holds a rundown guard of the current load (unload's order).
pub struct ContextSlots {
    directory: [AtomicPtr<Slot>; SEGMENTS],
    owned: SpinLock<Owned>,
    /// Moves on with every segment allocated, never reset: segments of one
    /// image never start their generations alike (a reload of the image
    /// starts it again, and the clock tells the loads apart).
    seeds: AtomicU32,
    tag: PoolTag,
}

impl ContextSlots {
    /// No segment yet; const for the driver's static state.
    pub const fn new(tag: PoolTag) -> Self {
        Self {
            directory: [const { AtomicPtr::new(core::ptr::null_mut()) }; SEGMENTS],
            owned: SpinLock::new(Owned {
                segments: [const { None }; SEGMENTS],
                allocated: 0,
                free_head: NO_SLOT,
                free: 0,
            }),
            seeds: AtomicU32::new(0),
            tag,
        }
    }

    /// Claims a free slot for the context at `raw` (a `ContextRef::as_raw`
    /// value, never 0, whose reference the caller keeps alive until
    /// [`Self::release`]). Allocates a segment, outside the lock, when none
    /// is free.
    pub fn claim(&self, raw: u64) -> Result<SlotHandle> {
        for _ in 0..4 {
            if let Some(handle) = self.try_claim(raw) {
                return Ok(handle);
            }
            self.grow()?;
        }
        Err(NtStatus::INSUFFICIENT_RESOURCES)
    }

    fn try_claim(&self, raw: u64) -> Option<SlotHandle> {
        let mut owned = self.owned.lock();
        let index = owned.free_head;
        let slot = self.slot(index)?;
        owned.free_head = slot.next_free.load(Ordering::Relaxed);
        owned.free = owned.free.saturating_sub(1);
        slot.context.store(raw, Ordering::Relaxed);
        // Odd: the context is published with the generation (Release pairs
        // with classify's Acquire load of it).
        let generation = slot.generation.load(Ordering::Relaxed).wrapping_add(1) | 1;
        slot.generation.store(generation, Ordering::Release);
        Some(SlotHandle { index, generation })
    }

    /// Adds a segment: allocated and initialised outside the lock, then
    /// published and threaded onto the free list under it.
    fn grow(&self) -> Result {
        let next = self.owned.lock().allocated;
        if next >= SEGMENTS {
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        }
        let segment = PoolSlice::<Slot>::try_zeroed(SEGMENT_SLOTS, self.tag)?;
        let step = self.seeds.fetch_add(0x9E37_79B9, Ordering::Relaxed);
        let seed = ((crate::platform::kernel::now_ticks() as u32) ^ step) & !1;
        for (offset, slot) in segment.iter().enumerate() {
            slot.generation.store(seed.wrapping_add((offset as u32) << 1), Ordering::Relaxed);
        }
        let mut guard = self.owned.lock();
        let owned = &mut *guard;
        if owned.allocated != next {
            // Another ADD grew meanwhile: use its segment (ours is freed).
            return Ok(());
        }
        let Some(entry) = owned.segments.get_mut(next) else {
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        };
        let base = segment.as_ptr().cast_mut();
        let segment = entry.insert(segment);
        let first = (next * SEGMENT_SLOTS) as u32;
        for (offset, slot) in segment.iter().enumerate().rev() {
            slot.next_free.store(owned.free_head, Ordering::Relaxed);
            owned.free_head = first + offset as u32;
        }
        owned.free += SEGMENT_SLOTS;
        owned.allocated += 1;
        if let Some(pointer) = self.directory.get(next) {
            // INVARIANT: set once, to the segment `segments[next]` now owns.
            pointer.store(base, Ordering::Release);
        }
        Ok(())
    }

    /// Releases the slot of a context leaving the table: its generation
    /// moves on (every word naming it stops matching) before the address
    /// is cleared, and the slot goes back on the free list.
    pub fn release(&self, handle: SlotHandle) {
        let mut owned = self.owned.lock();
        let Some(slot) = self.slot(handle.index) else { return };
        if slot.generation.load(Ordering::Relaxed) != handle.generation {
            return;
        }
        slot.generation.store(handle.generation.wrapping_add(1), Ordering::Release);
        slot.context.store(0, Ordering::Release);
        slot.next_free.store(owned.free_head, Ordering::Relaxed);
        owned.free_head = handle.index;
        owned.free += 1;
    }

    /// The slot at `index`, if its segment exists.
    #[inline(always)]
    fn slot(&self, index: u32) -> Option<&Slot> {
        let index = index as usize;
        let segment = self.directory.get(index >> SEGMENT_SHIFT)?.load(Ordering::Acquire);
        if segment.is_null() {
            return None;
        }
        // SAFETY: a non-null directory entry is the address of a live
        // segment of SEGMENT_SLOTS slots (invariant), and the mask keeps the
        // offset inside it.
        let slot = unsafe { segment.add(index & SEGMENT_MASK) };
        // SAFETY: that slot is initialised, lives until release_storage
        // (invariant), and is only accessed through atomics.
        Some(unsafe { &*slot })
    }

    /// The context address a word's handle names, if the index is inside
    /// the slots and the slot's generation is the word's; `None` for
    /// anything else, without reading memory outside the slots. The guard
    /// proves the slots are not freed meanwhile.
    #[inline(always)]
    pub fn lookup(&self, handle: SlotHandle, _inside: &RundownGuard<'_>) -> Option<u64> {
        let slot = self.slot(handle.index)?;
        if slot.generation.load(Ordering::Acquire) != handle.generation {
            return None;
        }
        Some(slot.context.load(Ordering::Acquire))
    }

    /// Slots free now, and slots allocated (statistics and tests).
    pub fn counts(&self) -> (usize, usize) {
        let owned = self.owned.lock();
        (owned.free, owned.allocated * SEGMENT_SLOTS)
    }

    /// Frees every segment (end of unload: no callback can be inside the
    /// rundown, and every context has left the table).
    pub fn release_storage(&self) {
        for pointer in &self.directory {
            pointer.store(core::ptr::null_mut(), Ordering::Release);
        }
        {
            let mut owned = self.owned.lock();
            owned.allocated = 0;
            owned.free_head = NO_SLOT;
            owned.free = 0;
        }
        // One segment at a time, each freed outside the lock.
        for index in 0..SEGMENTS {
            let segment = self.owned.lock().segments.get_mut(index).and_then(Option::take);
            drop(segment);
        }
    }
}
