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
//! pointers. A segment is allocated outside any lock (at ADD, which the
//! engine may call at PASSIVE or DISPATCH_LEVEL: non-paged pool may be
//! allocated at either) when no slot is free, and
//! published with one atomic store; segments are freed only by
//! [`ContextSlots::release_storage`] at the end of unload, after the
//! rundown, so a classify never reads freed slot memory. Claiming and
//! releasing a slot is O(1) under a spin lock (a free list threaded
//! through the slots); classify takes no lock and reads two atomics.
//!
//! Generations: odd while the slot holds a context, even once released; a
//! release bumps it, so every word of a deleted filter stops matching. A
//! slot's first generation mixes its index with a seed drawn from the clock
//! and a sequence never reset when the first segment is allocated, so words
//! left by an earlier load of the driver do not match the slots of this one
//! (short of a 1 in 2^31 coincidence; lookup mode covers such filters
//! anyway). A new segment needs no initialisation (the pool zeroes it, and
//! a zero key is a slot never claimed), so growing holds the lock for O(1).
#![allow(unsafe_code)] // the directory's pointers into the segments it owns

use crate::platform::pool::{PoolSlice, PoolTag, Zeroable};
use crate::platform::rundown::RundownGuard;
use crate::platform::spin_lock::SpinLock;
use crate::platform::status::{NtStatus, Result};
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};

/// Slots per segment (a power of two): 16 KiB of pool a segment.
pub const SEGMENT_SLOTS: usize = 1024;
/// `index >> SEGMENT_SHIFT` is the segment.
const SEGMENT_SHIFT: u32 = SEGMENT_SLOTS.trailing_zeros();
/// Segments in the directory: at most `SEGMENTS * SEGMENT_SLOTS` filters
/// (524,288) have a context at once.
pub const SEGMENTS: usize = 512;
/// Every valid slot index is below this.
pub const CAPACITY: usize = SEGMENTS * SEGMENT_SLOTS;
/// Where the index starts in a key (and in the context word).
pub const INDEX_SHIFT: u32 = 4;
/// Where the generation starts in a key (and in the context word).
pub const GENERATION_SHIFT: u32 = 32;
/// A key's bits that are the slot's byte offset in its segment (the
/// index's low bits times the slot's 16 bytes).
const OFFSET_BITS: u64 = ((SEGMENT_SLOTS - 1) as u64) << INDEX_SHIFT;
/// The end of the free list.
const NO_SLOT: u32 = u32::MAX;

const _: () = assert!(SEGMENT_SLOTS.is_power_of_two());
const _: () = assert!(core::mem::size_of::<Slot>() == 1 << INDEX_SHIFT);
// Indexes fit the bits between the fast-path bits and the generation.
const _: () = assert!(CAPACITY <= 1 << (GENERATION_SHIFT - INDEX_SHIFT));

/// Where a context lives: what the context word carries besides the fast path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotHandle {
    /// The slot's index (below [`CAPACITY`] for a handle we issued).
    pub index: u32,
    /// The slot's generation when it was claimed (odd).
    pub generation: u32,
}

impl SlotHandle {
    /// The handle as the slot's key: the generation above the index, in
    /// the context word's layout without its fast-path bits.
    #[inline(always)]
    pub fn key(self) -> u64 {
        (u64::from(self.generation) << GENERATION_SHIFT) | (u64::from(self.index) << INDEX_SHIFT)
    }

    /// The handle in `key` (any value gives one).
    #[inline(always)]
    pub fn from_key(key: u64) -> Self {
        Self { index: (key as u32) >> INDEX_SHIFT, generation: (key >> GENERATION_SHIFT) as u32 }
    }
}

/// One slot: 16 bytes.
#[repr(C, align(16))]
struct Slot {
    /// While the slot holds a context, its handle's key (generation odd);
    /// once released, an even generation above the next free slot's index
    /// (the free list, changed under the lock); 0 if never claimed. No
    /// handle we issue equals a free slot's key.
    key: AtomicU64,
    /// The context's address (`ContextRef::as_raw`), 0 while free. The
    /// table holds the reference; the slot only borrows it.
    context: AtomicU64,
}

// SAFETY: an all-zero Slot (atomics at 0) is a valid value.
unsafe impl Zeroable for Slot {}

/// A free slot's key: an even generation above the next free index.
fn free_key(generation: u32, next_free: u32) -> u64 {
    (u64::from(generation & !1) << GENERATION_SHIFT) | u64::from(next_free)
}

/// What every directory entry without a segment points at: slots that
/// are never written, whose key 0 no handle we issue has (its generation
/// is odd) and whose context is 0. So classify needs no null test.
static NO_SEGMENT: [Slot; SEGMENT_SLOTS] =
    [const { Slot { key: AtomicU64::new(0), context: AtomicU64::new(0) } }; SEGMENT_SLOTS];

/// The address [`NO_SEGMENT`]'s slots start at.
const fn no_segment() -> *mut Slot {
    (&raw const NO_SEGMENT).cast::<Slot>().cast_mut()
}

/// The free list and the segment count (under the lock).
struct Owned {
    /// Segments allocated so far (the directory's first `allocated` entries).
    allocated: usize,
    /// The first released slot (each free slot's key holds the next), or
    /// [`NO_SLOT`].
    free_head: u32,
    /// Slots never claimed start here and run to the end of the last
    /// segment (their key is still the pool's 0, so a new segment needs no
    /// initialisation).
    fresh: u32,
    /// Slots free: released ones and fresh ones.
    free: usize,
    /// Mixed into the first generation of each fresh slot; drawn when the
    /// first segment is allocated.
    seed: u32,
}

/// The slots: a lock-free directory classify reads, and the lock-held
/// ownership and free list notifyFn changes.
///
/// # Invariants
/// `directory[s]` is [`NO_SEGMENT`]'s address, or for `s <
/// owned.allocated` that of a segment this value owns: a pool block of
/// `SEGMENT_SLOTS` zero-initialised slots with tag `tag`, allocated by
/// `PoolSlice::try_zeroed` and given up to the directory. An entry is set
/// once before any index in segment `s` is handed out and reset (the block
/// freed) only by `release_storage`, after which no caller holds a rundown
/// guard of the current load (unload's order). Only slots of owned
/// segments are ever written.
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
            directory: [const { AtomicPtr::new(no_segment()) }; SEGMENTS],
            owned: SpinLock::new(Owned { allocated: 0, free_head: NO_SLOT, fresh: 0, free: 0, seed: 0 }),
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
        let mut guard = self.owned.lock();
        let owned = &mut *guard;
        let (index, generation) = if owned.free_head != NO_SLOT {
            // A released slot: its key holds the next one and its
            // (even) generation, which moves on to the next odd one.
            let index = owned.free_head;
            let free_key = self.owned_slot(owned, index)?.key.load(Ordering::Relaxed);
            owned.free_head = free_key as u32;
            (index, ((free_key >> GENERATION_SHIFT) as u32).wrapping_add(1) | 1)
        } else if (owned.fresh as usize) < owned.allocated * SEGMENT_SLOTS {
            // A slot never used: its first generation from the seed.
            let index = owned.fresh;
            owned.fresh += 1;
            (index, (owned.seed ^ index.wrapping_mul(0x9E37_79B9)) | 1)
        } else {
            return None;
        };
        let slot = self.owned_slot(owned, index)?;
        owned.free = owned.free.saturating_sub(1);
        slot.context.store(raw, Ordering::Relaxed);
        // Odd: the context is published with the key (Release pairs with
        // classify's Acquire load of it).
        let handle = SlotHandle { index, generation };
        slot.key.store(handle.key(), Ordering::Release);
        Some(handle)
    }

    /// Adds a segment: allocated (zeroed, by the pool) outside the lock,
    /// then published under it in O(1): its slots are fresh, they need no
    /// initialisation and join no list.
    fn grow(&self) -> Result {
        let next = self.owned.lock().allocated;
        if next >= SEGMENTS {
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        }
        let segment = PoolSlice::<Slot>::try_zeroed(SEGMENT_SLOTS, self.tag)?;
        let step = self.seeds.fetch_add(0x9E37_79B9, Ordering::Relaxed);
        let seed = (crate::platform::kernel::now_ticks() as u32) ^ step;
        let base = segment.as_ptr().cast_mut();
        let mut guard = self.owned.lock();
        let owned = &mut *guard;
        let Some(pointer) = self.directory.get(next) else {
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        };
        if owned.allocated != next {
            // Another ADD grew meanwhile: use its segment (ours is freed
            // when `segment` drops).
            return Ok(());
        }
        // INVARIANT: the directory owns the block from here (freed by
        // release_storage); the slice gives it up without freeing it.
        core::mem::forget(segment);
        pointer.store(base, Ordering::Release);
        if next == 0 {
            owned.seed = seed;
        }
        owned.free += SEGMENT_SLOTS;
        owned.allocated += 1;
        Ok(())
    }

    /// Releases the slot of a context leaving the table: its key moves on
    /// (every word naming it stops matching) before the address is
    /// cleared, and the slot goes back on the free list.
    pub fn release(&self, handle: SlotHandle) {
        let mut guard = self.owned.lock();
        let owned = &mut *guard;
        let Some(slot) = self.owned_slot(owned, handle.index) else { return };
        if slot.key.load(Ordering::Relaxed) != handle.key() {
            return;
        }
        slot.key.store(free_key(handle.generation.wrapping_add(1), owned.free_head), Ordering::Release);
        slot.context.store(0, Ordering::Release);
        owned.free_head = handle.index;
        owned.free += 1;
    }

    /// The context address the handle in `key` (a context word without
    /// its fast-path bits) names, if the index is inside the slots and the
    /// slot's key is the word's; `None` for anything else, without reading
    /// memory outside the slots. The guard proves the slots are not freed
    /// meanwhile.
    #[inline(always)]
    pub fn lookup(&self, key: u64, _inside: &RundownGuard<'_>) -> Option<u64> {
        let index = ((key as u32) >> INDEX_SHIFT) as usize;
        // The bounds check: the directory has SEGMENTS entries.
        let segment = self.directory.get(index >> SEGMENT_SHIFT)?.load(Ordering::Acquire);
        // SAFETY: every directory entry is the address of SEGMENT_SLOTS
        // live slots (invariant: a segment, or NO_SEGMENT), and the offset
        // is below SEGMENT_SLOTS slots' bytes.
        let slot = unsafe { segment.byte_add((key & OFFSET_BITS) as usize) };
        // SAFETY: that slot is initialised, lives until release_storage
        // (invariant), and is only accessed through atomics.
        let slot = unsafe { &*slot };
        if slot.key.load(Ordering::Acquire) != key {
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
        let allocated = {
            let mut owned = self.owned.lock();
            let allocated = owned.allocated;
            owned.allocated = 0;
            owned.free_head = NO_SLOT;
            owned.fresh = 0;
            owned.free = 0;
            allocated
        };
        for pointer in self.directory.iter().take(allocated) {
            let segment = pointer.swap(no_segment(), Ordering::AcqRel);
            if segment != no_segment() {
                // SAFETY: a segment this value owned (invariant): a block
                // from ExAllocatePool2 with `tag`, no longer reachable from
                // the directory, and no classify is inside the rundown
                // (unload's order); slots need no drop.
                unsafe { crate::platform::kernel::ExFreePoolWithTag(segment.cast(), self.tag.raw()) };
            }
        }
    }

    /// The slot at `index` of a segment we own (the lock held: segments
    /// come and go only with it).
    fn owned_slot<'a>(&'a self, owned: &Owned, index: u32) -> Option<&'a Slot> {
        let index = index as usize;
        if index >= owned.allocated * SEGMENT_SLOTS {
            return None;
        }
        let segment = self.directory.get(index >> SEGMENT_SHIFT)?.load(Ordering::Acquire);
        let offset = index & (SEGMENT_SLOTS - 1);
        // SAFETY: the segment is allocated (index below `allocated`
        // segments' slots), so the entry is a live segment of
        // SEGMENT_SLOTS slots (invariant), and the offset is inside it.
        let slot = unsafe { segment.add(offset) };
        // SAFETY: initialised, alive while owned, only accessed through atomics.
        Some(unsafe { &*slot })
    }
}

impl Drop for ContextSlots {
    /// A table that is not the driver's static one (tests) frees its
    /// segments when it goes.
    fn drop(&mut self) {
        self.release_storage();
    }
}
