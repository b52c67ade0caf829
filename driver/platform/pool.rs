//! Tagged non-paged pool: every allocation the driver makes goes through
//! here, one tag per kind, so `!poolused` in WinDbg and the simulated
//! kernel's leak report both say what leaked.
//!
//! The trio `PoolBox::into_raw` / `PoolBox::from_raw` / a borrowed `&T` is the
//! only way ownership crosses an integer or `void*` (packet copies handed
//! to the engine). Everything else the driver keeps in pool is owned by a
//! type of this module, so the rest of the driver holds no raw pointer:
//! - [`PoolBox`] / [`TaggedBox`]: one value;
//! - [`PoolSlice`]: a fixed-length array (table slots, packet copies);
//! - [`PoolArc`] / [`Counted`]: a reference-counted value (filter contexts),
//!   whose `&Counted<T>` borrow can take a new reference;
//! - [`HandleSlots`]: generation-checked handles to [`PoolArc`]s, read
//!   lock-free by classify (the slots behind `filter->context`), each
//!   slot keeping its reference until a grace period after its release
//!   (every rundown line seen idle: [`HandleSlots::reclaim`]).
#![allow(unsafe_code)]

use crate::platform::kernel::{ExAllocatePool2, ExFreePoolWithTag, POOL_FLAG_NON_PAGED};
use crate::platform::rundown::{Drained, LineSet, Rundown, RundownGuard};
use crate::platform::status::{NtStatus, Result};
use crate::platform::sync::{AtomicU32, Ordering};
use core::marker::PhantomData;
use core::mem::{align_of, size_of};
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;

/// A pool tag: four ASCII characters, in the order WinDbg prints them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolTag(u32);

impl PoolTag {
    /// Builds a tag from its four characters as `!poolused` shows them.
    pub const fn new(chars: [u8; 4]) -> Self {
        Self(u32::from_le_bytes(chars))
    }

    /// The `ULONG` passed to the pool functions.
    pub const fn raw(self) -> u32 {
        self.0
    }
}

/// Per-filter contexts (`FilterContext`).
pub const TAG_FILTER_CONTEXT: PoolTag = PoolTag::new(*b"WfFc");
/// The filter-context table's slot array.
pub const TAG_CONTEXT_TABLE: PoolTag = PoolTag::new(*b"WfTb");

/// The x64 pool's alignment guarantee (16 bytes): what `PoolBox` relies on.
pub const POOL_ALIGNMENT: usize = 16;

fn allocate_raw(bytes: usize, tag: PoolTag) -> Result<NonNull<u8>> {
    // SAFETY: ExAllocatePool2 has no preconditions beyond IRQL <= DISPATCH_LEVEL
    // for non-paged pool, which holds on every path of this driver.
    let block = unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, bytes, tag.raw()) };
    NonNull::new(block.cast::<u8>()).ok_or(NtStatus::INSUFFICIENT_RESOURCES)
}

/// A single `T` in non-paged pool, freed with its tag when dropped.
///
/// # Invariants
/// `ptr` points to an initialized `T` in a block from `ExAllocatePool2`
/// with tag `tag`, owned by this value.
pub struct PoolBox<T> {
    ptr: NonNull<T>,
    tag: PoolTag,
    _owns: PhantomData<T>,
}

// SAFETY: PoolBox owns its T like Box does; sending it sends the T.
unsafe impl<T: Send> Send for PoolBox<T> {}
// SAFETY: sharing a PoolBox only shares &T.
unsafe impl<T: Sync> Sync for PoolBox<T> {}

impl<T> PoolBox<T> {
    const ALIGN_OK: () = assert!(align_of::<T>() <= POOL_ALIGNMENT);

    /// Moves `value` into a new pool block. Fails (never panics) when the
    /// pool is exhausted.
    pub fn try_new(value: T, tag: PoolTag) -> Result<Self> {
        let () = Self::ALIGN_OK;
        let ptr = allocate_raw(size_of::<T>().max(1), tag)?.cast::<T>();
        // SAFETY: the block is fresh, large enough and aligned for T (pool
        // blocks are 16-byte aligned, checked against align_of::<T>() above).
        unsafe { ptr.as_ptr().write(value) };
        // INVARIANT: ptr now holds an initialized T owned by us.
        Ok(Self { ptr, tag, _owns: PhantomData })
    }

    /// Allocates first and only then builds the value, so nothing with side
    /// effects is constructed (and dropped) when the pool is exhausted.
    pub fn try_new_with(build: impl FnOnce() -> T, tag: PoolTag) -> Result<Self> {
        let () = Self::ALIGN_OK;
        let ptr = allocate_raw(size_of::<T>().max(1), tag)?.cast::<T>();
        // SAFETY: the block is fresh, large enough and aligned for T.
        unsafe { ptr.as_ptr().write(build()) };
        // INVARIANT: ptr now holds an initialized T owned by us.
        Ok(Self { ptr, tag, _owns: PhantomData })
    }

    /// Gives ownership away as a raw pointer (e.g. into `filter->context`).
    pub fn into_raw(self) -> NonNull<T> {
        let ptr = self.ptr;
        core::mem::forget(self);
        ptr
    }

    /// Takes ownership back.
    ///
    /// # Safety
    /// `ptr` must come from `PoolBox::<T>::into_raw` with the same `tag`, and
    /// must not be used again by whoever held it.
    pub unsafe fn from_raw(ptr: NonNull<T>, tag: PoolTag) -> Self {
        Self { ptr, tag, _owns: PhantomData }
    }
}

impl<T> Deref for PoolBox<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: by the type invariant ptr holds an initialized T we own.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T> DerefMut for PoolBox<T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: by the type invariant ptr holds an initialized T we own
        // uniquely (&mut self).
        unsafe { self.ptr.as_mut() }
    }
}

impl<T> Drop for PoolBox<T> {
    fn drop(&mut self) {
        // SAFETY: by the type invariant the T is initialized and ours; it is
        // not used after this.
        unsafe { core::ptr::drop_in_place(self.ptr.as_ptr()) };
        // SAFETY: the block came from ExAllocatePool2 with self.tag.
        unsafe { ExFreePoolWithTag(self.ptr.as_ptr().cast(), self.tag.raw()) };
    }
}

/// A type that always lives in pool under one tag: what lets a
/// [`TaggedBox`] or a [`PoolArc`] free it without the tag travelling with
/// it (one pointer: a table slot holding one stays 16 bytes).
pub trait Tagged {
    /// The pool tag every block of this type carries.
    const TAG: PoolTag;
}

/// A single `T` in non-paged pool under its type's [`Tagged::TAG`]: a
/// [`PoolBox`] one pointer wide (the owned entry of a table slot).
///
/// # Invariants
/// `ptr` points to an initialized `T` in a block from `ExAllocatePool2`
/// with tag `T::TAG` (a `PoolBox` given away with `into_raw`), owned by
/// this value.
#[repr(transparent)]
pub struct TaggedBox<T: Tagged> {
    ptr: NonNull<T>,
}

// SAFETY: TaggedBox owns its T like Box does; sending it sends the T.
unsafe impl<T: Tagged + Send> Send for TaggedBox<T> {}
// SAFETY: sharing a TaggedBox only shares &T.
unsafe impl<T: Tagged + Sync> Sync for TaggedBox<T> {}

impl<T: Tagged> TaggedBox<T> {
    /// Allocates and only then builds the value (see [`PoolBox::try_new_with`]).
    pub fn try_new_with(build: impl FnOnce() -> T) -> Result<Self> {
        // INVARIANT: the PoolBox (tag T::TAG) gives its block to us.
        Ok(Self { ptr: PoolBox::try_new_with(build, T::TAG)?.into_raw() })
    }
}

impl<T: Tagged> Deref for TaggedBox<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: by the type invariant ptr holds an initialized T we own.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T: Tagged> DerefMut for TaggedBox<T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: by the type invariant ptr holds an initialized T we own
        // uniquely (&mut self).
        unsafe { self.ptr.as_mut() }
    }
}

impl<T: Tagged> Drop for TaggedBox<T> {
    fn drop(&mut self) {
        // SAFETY: the block came from PoolBox::into_raw with T::TAG and is
        // ours alone (invariant); it is not used after this.
        drop(unsafe { PoolBox::from_raw(self.ptr, T::TAG) });
    }
}

/// A fixed-length array of `T` in non-paged pool, every element initialized.
///
/// # Invariants
/// `ptr` points to `len` initialized `T`s in one pool block tagged `tag`,
/// owned by this value.
pub struct PoolSlice<T> {
    ptr: NonNull<T>,
    len: usize,
    tag: PoolTag,
}

/// Types for which all-zero bytes are a valid value (what the pool returns),
/// so an array of them needs no initialisation: [`PoolSlice::try_zeroed`].
/// Composite types use [`PoolSlice::try_new_with`] instead, which needs no
/// such promise.
///
/// # Safety
/// Implement only for types whose all-zero bit pattern is a valid value.
pub unsafe trait Zeroable {}

// SAFETY: zero is a valid value of every integer and atomic integer type.
unsafe impl Zeroable for u8 {}
// SAFETY: all-zero bits are the integer 0.
unsafe impl Zeroable for u64 {}
// SAFETY: as above.
unsafe impl Zeroable for core::sync::atomic::AtomicU64 {}

/// An owner one non-null pointer wide whose `Option` is therefore all
/// zeros when `None`: what lets a zeroed [`KeyedSlot`] array hold no entry.
///
/// # Safety
/// `Option<Self>`'s `None` must be the all-zero bit pattern: implement only
/// for `#[repr(transparent)]` wrappers of a `NonNull` or `Box` (Rust
/// guarantees the null-pointer optimisation for those).
pub unsafe trait NonNullOwner {}

// SAFETY: repr(transparent) over NonNull<T>.
unsafe impl<T: Tagged> NonNullOwner for TaggedBox<T> {}

/// A `u64` key and an optional owned entry, `repr(C)`: the slot of a table
/// that owns its entries (`id_table`), empty (key 0, `None`) as the pool's
/// zeroed block already holds it, so a new slot array costs the driver no
/// initialisation ([`PoolSlice::try_zeroed`]).
#[repr(C)]
pub struct KeyedSlot<V> {
    /// The entry's key (meaningful while `entry` is `Some`).
    pub key: u64,
    /// The entry the slot owns.
    pub entry: Option<V>,
}

impl<V> Default for KeyedSlot<V> {
    fn default() -> Self {
        Self { key: 0, entry: None }
    }
}

// SAFETY: zero bytes are key 0 and, for a NonNullOwner, entry None (padding,
// if any, may hold anything).
unsafe impl<V: NonNullOwner> Zeroable for KeyedSlot<V> {}

// SAFETY: PoolSlice owns its elements like a Box<[T]>.
unsafe impl<T: Send> Send for PoolSlice<T> {}
// SAFETY: sharing a PoolSlice only shares &[T].
unsafe impl<T: Sync> Sync for PoolSlice<T> {}

/// Number of bytes for `len` elements of `T` (at least 1), or `None` on
/// overflow.
fn array_bytes<T>(len: usize) -> Option<usize> {
    size_of::<T>().checked_mul(len).map(|bytes| bytes.max(1))
}

impl<T> PoolSlice<T> {
    const ALIGN_OK: () = assert!(align_of::<T>() <= POOL_ALIGNMENT);

    /// Allocates `len` zeroed elements. Fails on exhaustion or overflow.
    pub fn try_zeroed(len: usize, tag: PoolTag) -> Result<Self>
    where
        T: Zeroable,
    {
        let () = Self::ALIGN_OK;
        let bytes = array_bytes::<T>(len).ok_or(NtStatus::INSUFFICIENT_RESOURCES)?;
        // INVARIANT: ExAllocatePool2 zeroes the block (no UNINITIALIZED flag)
        // and zero is a valid T (Zeroable).
        let ptr = allocate_raw(bytes, tag)?.cast::<T>();
        Ok(Self { ptr, len, tag })
    }

    /// Allocates `len` elements and only then builds each, `init(index)` in
    /// index order (outside any lock the caller holds: O(len)). Fails on
    /// exhaustion or overflow, before anything is built.
    pub fn try_new_with(len: usize, tag: PoolTag, mut init: impl FnMut(usize) -> T) -> Result<Self> {
        let () = Self::ALIGN_OK;
        let bytes = array_bytes::<T>(len).ok_or(NtStatus::INSUFFICIENT_RESOURCES)?;
        let ptr = allocate_raw(bytes, tag)?.cast::<T>();
        for index in 0..len {
            let value = init(index);
            // SAFETY: index < len, and the block holds len Ts (bytes above).
            let element = unsafe { ptr.add(index) };
            // SAFETY: inside the block, aligned for T (ALIGN_OK), written
            // once. (Should `init` panic, the block leaks; nothing
            // uninitialized is dropped.)
            unsafe { element.write(value) };
        }
        // INVARIANT: all len elements were written above.
        Ok(Self { ptr, len, tag })
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the slice has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<T> Deref for PoolSlice<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: by the type invariant ptr holds len initialized Ts.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> DerefMut for PoolSlice<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: by the type invariant ptr holds len initialized Ts, and
        // &mut self makes this the only access.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> Drop for PoolSlice<T> {
    fn drop(&mut self) {
        // SAFETY: the elements are initialized and dropped exactly once here.
        unsafe { core::ptr::drop_in_place(core::ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), self.len)) };
        // SAFETY: the block came from ExAllocatePool2 with self.tag.
        unsafe { ExFreePoolWithTag(self.ptr.as_ptr().cast(), self.tag.raw()) };
    }
}

/// A value and its reference count in one pool block: what a [`PoolArc`]
/// points to. It exists only inside such a block (no constructor, never
/// handed out by value or by `&mut`), so a `&Counted<T>` always borrows
/// from a live reference and can take a new one ([`Counted::acquire`]):
/// the role of Rust-for-Linux's `ArcBorrow`.
///
/// # Invariants
/// `refs` is the number of live [`PoolArc`]s to this block (a handle
/// slot's own reference counts as one); it is at least one while any
/// `&Counted<T>` exists (every such borrow comes from a `PoolArc` or from
/// [`HandleSlots::borrow_checked`], whose contract makes the slot's
/// reference outlive it), and the block is freed when it drops to zero.
/// A count past `SATURATION` (more references than could exist without
/// `mem::forget`) stays there: the block is leaked, never freed early.
pub struct Counted<T> {
    refs: AtomicU32,
    value: T,
    /// Not `Sync` by itself: see the impl below.
    _shared: PhantomData<*const T>,
}

// SAFETY: a `&Counted<T>` on another thread can read the T and take a
// reference that frees it there: as for Arc, T must be Send and Sync. (A
// Counted is never moved, so it needs no Send.)
unsafe impl<T: Send + Sync> Sync for Counted<T> {}

impl<T> Deref for Counted<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// Where a reference count stops counting (as the Linux kernel's
/// `refcount_t` saturates): no count this high is honest, and a count that
/// wrapped around would free a block still in use.
const SATURATION: u32 = u32::MAX / 2;

impl<T: Tagged> Counted<T> {
    /// Takes a new counted reference (an object that outlives the borrow:
    /// a flow context, a pended request).
    pub fn acquire(&self) -> PoolArc<T> {
        // INVARIANT: one more reference exists; Relaxed suffices because the
        // borrow proves a reference is held meanwhile (as in Arc::clone).
        if self.refs.fetch_add(1, Ordering::Relaxed) >= SATURATION {
            // INVARIANT: saturated for good (the block is leaked).
            self.refs.store(SATURATION, Ordering::Relaxed);
        }
        PoolArc { ptr: NonNull::from(self) }
    }

    /// Current number of references (statistics and tests).
    pub fn reference_count(&self) -> u32 {
        self.refs.load(Ordering::Relaxed)
    }
}

/// A counted reference to a `T` in non-paged pool (tag `T::TAG`), shared
/// between threads like `Arc`; the last one frees it, at whatever IRQL
/// (<= DISPATCH_LEVEL) that happens.
///
/// # Invariants
/// `ptr` points to a [`Counted<T>`] in a block from `ExAllocatePool2` with
/// tag `T::TAG` (a `PoolBox` given away with `into_raw`), and this value
/// owns one of its `refs`.
#[repr(transparent)]
pub struct PoolArc<T: Tagged> {
    ptr: NonNull<Counted<T>>,
}

// SAFETY: repr(transparent) over NonNull<Counted<T>>.
unsafe impl<T: Tagged> NonNullOwner for PoolArc<T> {}

// SAFETY: a PoolArc shares its T between threads (every clone reads it), and
// the last one, on whichever thread, drops it: as for Arc, T must be Send
// and Sync.
unsafe impl<T: Tagged + Send + Sync> Send for PoolArc<T> {}
// SAFETY: as above.
unsafe impl<T: Tagged + Send + Sync> Sync for PoolArc<T> {}

impl<T: Tagged> PoolArc<T> {
    /// Allocates and only then builds the value (see
    /// [`PoolBox::try_new_with`]); the result is its one reference.
    pub fn try_new_with(build: impl FnOnce() -> T) -> Result<Self> {
        // INVARIANT: refs starts at one, owned by the PoolArc returned; the
        // block is given away to it.
        let block = PoolBox::try_new_with(
            || Counted { refs: AtomicU32::new(1), value: build(), _shared: PhantomData },
            T::TAG,
        )?;
        Ok(Self { ptr: block.into_raw() })
    }

    /// The block's address, without giving the reference away (what a
    /// handle slot's claim records, and what tests ask the pool about).
    pub fn as_raw(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }
}

impl<T: Tagged> Deref for PoolArc<T> {
    type Target = Counted<T>;
    fn deref(&self) -> &Counted<T> {
        // SAFETY: we own a reference, so the block is alive (invariant).
        unsafe { self.ptr.as_ref() }
    }
}

impl<T: Tagged> Clone for PoolArc<T> {
    fn clone(&self) -> Self {
        Counted::acquire(self)
    }
}

impl<T: Tagged> Drop for PoolArc<T> {
    fn drop(&mut self) {
        // Release: this reference's uses happen before the free, whichever
        // thread frees (paired with the Acquire load below).
        let before = self.refs.fetch_sub(1, Ordering::Release);
        if before >= SATURATION {
            // INVARIANT: a saturated count stays saturated (never freed).
            self.refs.store(SATURATION, Ordering::Relaxed);
            return;
        }
        if before != 1 {
            return;
        }
        // Acquire: every other reference's Release decrement (a release
        // sequence on this word) happens before the free. A load rather
        // than a fence, as std's Arc does under ThreadSanitizer, which does
        // not see fences: the same ordering, and the race detector sees it.
        let _ = self.refs.load(Ordering::Acquire);
        // SAFETY: that was the last reference (invariant), so nothing else
        // reaches the block; it came from PoolBox::into_raw with T::TAG.
        drop(unsafe { PoolBox::from_raw(self.ptr, T::TAG) });
    }
}

/// Slots per segment of [`HandleSlots`] (a power of two): 16 KiB of pool a
/// segment.
pub const SEGMENT_SLOTS: usize = 1024;
/// `index >> SEGMENT_SHIFT` is the segment.
const SEGMENT_SHIFT: u32 = SEGMENT_SLOTS.trailing_zeros();
/// Segments in the directory: at most `SEGMENTS * SEGMENT_SLOTS` handles
/// (524,288) are live at once.
pub const SEGMENTS: usize = 512;
/// Every valid slot index is below this.
pub const HANDLE_CAPACITY: usize = SEGMENTS * SEGMENT_SLOTS;
/// Where the index's slot-in-segment starts in a key (and in the context
/// word): bits 4 to 13.
pub const INDEX_SHIFT: u32 = 4;
/// Where the index's segment starts in a key: bits 23 to 31, the top of
/// the low half, so a lookup finds the segment with one shift of the low
/// half and no mask. Bits 14 to 22 are 0 in every key a claim has.
pub const SEGMENT_KEY_SHIFT: u32 = 32 - SEGMENTS.trailing_zeros();
/// Where the generation starts in a key (and in the context word).
pub const GENERATION_SHIFT: u32 = 32;
/// A key's bits that are the slot's byte offset in its segment (the
/// index's low bits times the slot's 16 bytes).
const OFFSET_BITS: u64 = ((SEGMENT_SLOTS - 1) as u64) << INDEX_SHIFT;
/// The end of the free list.
/// The end of a list of released slots: no index we issue (the largest
/// the bits between a key's tag and its generation hold).
const NO_SLOT: u32 = (1 << (GENERATION_SHIFT - INDEX_SHIFT)) - 1;

const _: () = assert!(SEGMENT_SLOTS.is_power_of_two());
// A lookup's segment bits (the low half's top) name one of SEGMENTS entries.
const _: () = assert!(SEGMENTS.is_power_of_two());
// (Under loom a slot's key is loom's atomic, larger: lookups index by slot.)
#[cfg(not(loom))]
const _: () = assert!(size_of::<HandleSlot>() == 1 << INDEX_SHIFT);
// Indexes fit the bits between the tag and the generation, below NO_SLOT.
const _: () = assert!(HANDLE_CAPACITY < NO_SLOT as usize);
// A claim's key: the segment above the slot-in-segment, with room between.
const _: () = assert!(INDEX_SHIFT + SEGMENT_SHIFT <= SEGMENT_KEY_SHIFT);
/// A key's tag bits (below the index).
pub const TAG_MASK: u64 = (1 << INDEX_SHIFT) - 1;

/// Where a [`HandleSlots`] entry lives: a slot index, its generation, and
/// the tag its claim gave it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotHandle {
    /// The slot's index (below [`HANDLE_CAPACITY`] for a handle we issued).
    pub index: u32,
    /// The slot's generation when it was claimed (odd).
    pub generation: u32,
    /// What the claimer keeps below the index (its low [`INDEX_SHIFT`]
    /// bits; the context word's fast path). Part of the key: a word must
    /// carry it to match.
    pub tag: u8,
}

impl SlotHandle {
    /// The handle as the slot's key, the context word's own layout: the
    /// generation (bits 32 to 63) above the index's segment (23 to 31)
    /// above its slot in the segment (4 to 13) above the tag (0 to 3);
    /// bits 14 to 22 are 0. The index is taken modulo [`HANDLE_CAPACITY`]
    /// (every index the slots issue is below it).
    #[inline(always)]
    pub fn key(self) -> u64 {
        let index = self.index as usize;
        let segment = (index >> SEGMENT_SHIFT) & (SEGMENTS - 1);
        let slot = index & (SEGMENT_SLOTS - 1);
        (u64::from(self.generation) << GENERATION_SHIFT)
            | ((segment as u64) << SEGMENT_KEY_SHIFT)
            | ((slot as u64) << INDEX_SHIFT)
            | (u64::from(self.tag) & TAG_MASK)
    }

    /// The handle in `key` (any value gives one; bits 14 to 22, which no
    /// claim's key has, are ignored).
    #[inline(always)]
    pub fn from_key(key: u64) -> Self {
        let low = key as u32;
        let segment = low >> SEGMENT_KEY_SHIFT;
        let slot = (low >> INDEX_SHIFT) & (SEGMENT_SLOTS as u32 - 1);
        Self {
            index: (segment << SEGMENT_SHIFT) | slot,
            generation: (key >> GENERATION_SHIFT) as u32,
            tag: (key & TAG_MASK) as u8,
        }
    }
}

/// One slot: 16 bytes.
#[repr(C, align(16))]
struct HandleSlot {
    /// While claimed, its handle's key (generation odd, the claim's tag
    /// below the index); once released, an even generation above the index
    /// of the next slot on the list the slot is on (free, retired or
    /// draining: changed under the lock, or by the one reclaim that
    /// detached the slot's batch), with no tag; 0 if never claimed. No
    /// handle we issue equals a released slot's key, and a key with a tag
    /// is a claimed slot's.
    key: crate::platform::sync::ConstAtomicU64,
    /// The [`Counted`] block the slot keeps a reference to (a [`PoolArc`]
    /// given up to the slot at claim), from the claim until the grace
    /// period after its release has passed ([`HandleSlots::reclaim`]);
    /// NULL while free.
    target: core::sync::atomic::AtomicPtr<u8>,
}

// SAFETY: all-zero bytes are key 0 and a NULL target: a slot never claimed.
// (Not under loom, whose key is no plain integer: segments are built.)
#[cfg(not(loom))]
unsafe impl Zeroable for HandleSlot {}

impl HandleSlot {
    /// A slot never claimed (key 0, no target).
    const fn fresh() -> Self {
        Self {
            key: crate::platform::sync::ConstAtomicU64::new(0),
            target: core::sync::atomic::AtomicPtr::new(core::ptr::null_mut()),
        }
    }
}

/// A free slot's key: an even generation above the next free index, no
/// tag (so a word with a tag never matches it).
fn free_key(generation: u32, next_free: u32) -> u64 {
    (u64::from(generation & !1) << GENERATION_SHIFT) | (u64::from(next_free & NO_SLOT) << INDEX_SHIFT)
}

/// The next slot a released slot's key names.
fn next_in_key(key: u64) -> u32 {
    (key as u32) >> INDEX_SHIFT
}

/// What every directory entry without a segment points at: slots that
/// are never written, whose key 0 no handle we issue has (its generation
/// is odd) and whose target is NULL. So a lookup needs no null test.
static NO_SEGMENT: [HandleSlot; SEGMENT_SLOTS] = [const { HandleSlot::fresh() }; SEGMENT_SLOTS];

/// The address [`NO_SEGMENT`]'s slots start at.
const fn no_segment() -> *mut HandleSlot {
    (&raw const NO_SEGMENT).cast::<HandleSlot>().cast_mut()
}

/// Released slots linked through their keys (each key's low 32 bits name
/// the next slot, the last one's [`NO_SLOT`]), first and last known so a
/// whole list joins another in O(1).
#[derive(Clone, Copy)]
struct SlotList {
    head: u32,
    tail: u32,
    len: usize,
}

impl SlotList {
    const EMPTY: Self = Self { head: NO_SLOT, tail: NO_SLOT, len: 0 };
}

/// The lists and the segment count (under the lock).
struct HandleOwned {
    /// Segments allocated so far (the directory's first `allocated` entries).
    allocated: usize,
    /// The first free slot (each free slot's key holds the next), or
    /// [`NO_SLOT`]. Free slots own no reference.
    free_head: u32,
    /// Slots never claimed start here and run to the end of the last
    /// segment (their key is still 0).
    fresh: u32,
    /// Slots free: released ones past their grace period and fresh ones.
    free: usize,
    /// Mixed into the first generation of each fresh slot; drawn when the
    /// first segment is allocated.
    seed: u32,
    /// Slots released since `draining` was formed, each still owning its
    /// reference.
    retired: SlotList,
    /// Released slots waiting for their grace period: every rundown line
    /// seen idle after their release (`seen`), then their references go.
    draining: SlotList,
    /// Lines seen idle since `draining` was formed.
    seen: LineSet,
    /// Moves on whenever `draining` is formed, so that a reclaim adds to
    /// `seen` only lines it read after the batch it read them for formed.
    batch: u64,
}

/// Generation-checked handles to [`PoolArc<T>`] blocks: a slot index and
/// the slot's generation, which a word from anywhere (`filter->context`)
/// can carry. A lookup uses the word only if its index is inside the slots
/// and the slot's key equals the word's, so a garbage or stale word (its
/// slot released, or reused) is rejected by a bounds check and a compare,
/// never dereferenced.
///
/// Lifetime: each claimed slot owns a reference to its block (taken at
/// [`Self::claim`]). A release makes the key stop matching at once, but
/// the slot keeps its reference, on a retired list, until a grace period
/// has passed: every line of the rundown lookups are made in has been seen
/// idle after the release ([`Self::reclaim`]). A lookup that matched the
/// key entered that rundown before the release (see
/// [`Rundown::idle_lines`](crate::platform::rundown::Rundown::idle_lines)),
/// so what it borrowed is never freed under it, whether or not the engine
/// can still classify a filter whose DELETE it has delivered.
///
/// Storage: segments of [`SEGMENT_SLOTS`] slots in pool, found through a
/// fixed directory of [`SEGMENTS`] pointers. A segment is allocated
/// outside any lock (non-paged pool: PASSIVE or DISPATCH_LEVEL) when no
/// slot is free, and published with one atomic store; segments are freed
/// only by [`HandleSlots::release_storage`]. Claiming and releasing is O(1)
/// under a spin lock (lists threaded through the slots); a lookup takes no
/// lock and reads two atomics.
///
/// Generations: odd while the slot is claimed, even once released; a
/// release bumps it, so every word naming the old claim stops matching. A
/// slot's first generation mixes its index with a seed drawn from the clock
/// and a sequence never reset when the first segment is allocated, so words
/// left by an earlier load of the driver do not match this one's slots
/// (short of a 1 in 2^31 coincidence).
///
/// # Invariants
/// `directory[s]` is `NO_SEGMENT`'s address, or for `s <
/// owned.allocated` that of a segment this value owns: a pool block of
/// `SEGMENT_SLOTS` initialized slots with tag `tag` (a `PoolSlice` given up
/// to the directory). An entry is set once, under the lock, before any
/// index in segment `s` is handed out, and reset (the block freed) only by
/// `release_storage`. Only slots of owned segments are ever written. A
/// slot's `target` is NULL or the address of a `Counted<T>` block of which
/// the slot owns one reference: from its claim until a reclaim that saw
/// every rundown line idle after its release (or `release_storage`) takes
/// it. Every released slot is on exactly one of the free list (target
/// NULL), `retired`, `draining`, or a batch one reclaim has detached.
pub struct HandleSlots<T: Tagged> {
    directory: [core::sync::atomic::AtomicPtr<HandleSlot>; SEGMENTS],
    owned: crate::platform::spin_lock::SpinLock<HandleOwned>,
    /// Moves on with every segment allocated, never reset: segments of one
    /// image never start their generations alike (a reload of the image
    /// starts it again, and the clock tells the loads apart).
    seeds: core::sync::atomic::AtomicU32,
    tag: PoolTag,
    _owns: PhantomData<PoolArc<T>>,
}

impl<T: Tagged> HandleSlots<T> {
    /// No segment yet; const for the driver's static state.
    pub const fn new(tag: PoolTag) -> Self {
        Self {
            directory: [const { core::sync::atomic::AtomicPtr::new(no_segment()) }; SEGMENTS],
            owned: crate::platform::spin_lock::SpinLock::new(HandleOwned {
                allocated: 0,
                free_head: NO_SLOT,
                fresh: 0,
                free: 0,
                seed: 0,
                retired: SlotList::EMPTY,
                draining: SlotList::EMPTY,
                seen: LineSet::NONE,
                batch: 0,
            }),
            seeds: core::sync::atomic::AtomicU32::new(0),
            tag,
            _owns: PhantomData,
        }
    }

    /// Claims a free slot for `target`, taking a reference to it that the
    /// slot keeps until the grace period after [`Self::release`] (so a
    /// lookup never borrows a block nobody holds). Allocates a segment,
    /// outside the lock, when none is free.
    pub fn claim(&self, target: &PoolArc<T>) -> Result<SlotHandle> {
        self.claim_tagged(target, 0)
    }

    /// [`Self::claim`], with `tag` (its low [`INDEX_SHIFT`] bits) in the
    /// slot's key: words must carry it to match, and a lookup of a word
    /// with a tag ([`Self::borrow_tagged`]) needs no null test, since only
    /// a claimed slot's key has one.
    pub fn claim_tagged(&self, target: &PoolArc<T>, tag: u8) -> Result<SlotHandle> {
        let reference = target.clone();
        let raw = reference.ptr.as_ptr().cast::<u8>();
        for _ in 0..4 {
            if let Some(handle) = self.try_claim(raw, tag) {
                // INVARIANT: the slot holds the reference's address from
                // here and owns it (dropped by reclaim or release_storage).
                core::mem::forget(reference);
                return Ok(handle);
            }
            self.grow()?;
        }
        Err(NtStatus::INSUFFICIENT_RESOURCES)
    }

    fn try_claim(&self, target: *mut u8, tag: u8) -> Option<SlotHandle> {
        let mut guard = self.owned.lock();
        let owned = &mut *guard;
        let (index, generation) = if owned.free_head != NO_SLOT {
            // A released slot: its key holds the next one and its
            // (even) generation, which moves on to the next odd one.
            let index = owned.free_head;
            let free_key = self.owned_slot(owned, index)?.key.load(Ordering::Relaxed);
            owned.free_head = next_in_key(free_key);
            (index, ((free_key >> GENERATION_SHIFT) as u32).wrapping_add(1) | 1)
        } else if (owned.fresh as usize) < owned.allocated * SEGMENT_SLOTS {
            // A slot never used: its first generation from the seed.
            let index = owned.fresh;
            owned.fresh += 1;
            (index, (owned.seed ^ index.wrapping_mul(0x9E37_79B9)) | 1)
        } else {
            return None;
        };
        owned.free = owned.free.saturating_sub(1);
        let slot = self.owned_slot(owned, index)?;
        slot.target.store(target, Ordering::Relaxed);
        // Odd: the target is published with the key (Release pairs with
        // the lookup's load of it).
        let handle = SlotHandle { index, generation, tag: (u64::from(tag) & TAG_MASK) as u8 };
        slot.key.store(handle.key(), Ordering::Release);
        Some(handle)
    }

    /// Adds a segment: allocated (zeroed, by the pool: slots never claimed)
    /// outside the lock, then published under it in O(1): its slots need
    /// no initialisation and join no list.
    fn grow(&self) -> Result {
        let next = self.owned.lock().allocated;
        if next >= SEGMENTS {
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        }
        #[cfg(not(loom))]
        let segment = PoolSlice::<HandleSlot>::try_zeroed(SEGMENT_SLOTS, self.tag)?;
        #[cfg(loom)]
        let segment = PoolSlice::try_new_with(SEGMENT_SLOTS, self.tag, |_| HandleSlot::fresh())?;
        let step = self.seeds.fetch_add(0x9E37_79B9, Ordering::Relaxed);
        let seed = (crate::platform::kernel::now_ticks() as u32) ^ step;
        let mut guard = self.owned.lock();
        let owned = &mut *guard;
        let Some(pointer) = self.directory.get(next) else {
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        };
        if owned.allocated != next {
            // Another claim grew meanwhile: use its segment (ours is freed
            // when `segment` drops).
            return Ok(());
        }
        // INVARIANT: the directory owns the block from here (freed by
        // release_storage); the slice gives it up without freeing it.
        let base = segment.ptr.as_ptr();
        core::mem::forget(segment);
        pointer.store(base, Ordering::Release);
        if next == 0 {
            owned.seed = seed;
        }
        owned.free += SEGMENT_SLOTS;
        owned.allocated += 1;
        Ok(())
    }

    /// Releases the slot of `handle`: its key moves on at once (every word
    /// naming it stops matching), and the slot, still owning its reference,
    /// joins the retired list, O(1) under the lock, never waiting: the
    /// reference goes, and the slot is free again, only once
    /// [`Self::reclaim`] has seen the grace period pass. A handle that is
    /// not live does nothing.
    pub fn release(&self, handle: SlotHandle) {
        let mut guard = self.owned.lock();
        let owned = &mut *guard;
        let Some(slot) = self.owned_slot(owned, handle.index) else { return };
        if slot.key.load(Ordering::Relaxed) != handle.key() {
            return;
        }
        // INVARIANT: the slot keeps its target (the reference it owns) and
        // goes on `retired`, at its head (its key names the old head).
        // This store is the release the grace period is counted from: the
        // lock orders it before the reclaim that forms the batch.
        slot.key.store(free_key(handle.generation.wrapping_add(1), owned.retired.head), Ordering::Release);
        if owned.retired.len == 0 {
            owned.retired.tail = handle.index;
        }
        owned.retired.head = handle.index;
        owned.retired.len += 1;
    }

    /// Frees what the grace period allows: the references of released
    /// slots once every line of `rundown` has been seen idle after their
    /// release (lines need not be idle at the same moment), and puts those
    /// slots back on the free list. Never waits: lines not yet seen idle
    /// are read again by the next call. Returns the references dropped.
    ///
    /// `rundown` must be the rundown every lookup ([`Self::borrow_checked`])
    /// is made in, and `inside` the caller's own guard of it (the caller's
    /// own entry is not counted against its line; and while it is inside,
    /// [`Self::release_storage`] does not run, so the slots it walks
    /// outside the lock stay). A guard of another rundown does nothing.
    /// The driver calls it after each DELETE notify's release (no classify
    /// in flight: the context goes at once) and from its periodic timer.
    ///
    /// Works in batches: the slots released so far move from `retired` to
    /// `draining` (O(1) under the lock), the lines are read without it, and
    /// a batch whose lines have all been seen idle is detached under the
    /// lock; its references are dropped outside it, and it joins the free
    /// list in O(1). Two rounds at most: the batch already draining, then
    /// one formed from what was retired meanwhile.
    pub fn reclaim(&self, rundown: &Rundown, inside: &RundownGuard<'_>) -> usize {
        if !rundown.guards(inside) {
            return 0;
        }
        let mut dropped = 0;
        for _ in 0..2 {
            let batch = {
                let mut owned = self.owned.lock();
                if owned.draining.len == 0 {
                    if owned.retired.len == 0 {
                        break;
                    }
                    owned.draining = core::mem::replace(&mut owned.retired, SlotList::EMPTY);
                    owned.seen = LineSet::NONE;
                    owned.batch = owned.batch.wrapping_add(1);
                }
                owned.batch
            };
            // Read after the batch formed (under the lock, after each of its
            // releases): idle_lines proves, for a line it sets, that every
            // lookup which matched one of these keys on it has left.
            let idle = rundown.idle_lines(Some(inside));
            let detached = {
                let mut owned = self.owned.lock();
                if owned.batch != batch || owned.draining.len == 0 {
                    // Another reclaim finished this batch meanwhile.
                    break;
                }
                owned.seen = owned.seen.union(idle);
                if !owned.seen.is_all() {
                    break;
                }
                core::mem::replace(&mut owned.draining, SlotList::EMPTY)
            };
            dropped += self.free_batch(detached, inside);
        }
        dropped
    }

    /// Drops the references of a batch whose grace period has passed,
    /// which the caller detached (so no one else touches its slots), then
    /// gives its slots to the free list in O(1).
    fn free_batch(&self, batch: SlotList, inside: &RundownGuard<'_>) -> usize {
        let mut index = batch.head;
        let mut dropped = 0;
        for _ in 0..batch.len {
            let Some(slot) = self.slot_inside(index, inside) else { break };
            // SAFETY: a slot of ours on a detached batch: its reference is
            // ours to take, and its grace period has passed (every line seen
            // idle after its release), so no lookup borrows its block.
            if let Some(reference) = unsafe { self.take_reference(slot) } {
                drop(reference);
                dropped += 1;
            }
            index = next_in_key(slot.key.load(Ordering::Relaxed));
        }
        let mut guard = self.owned.lock();
        let owned = &mut *guard;
        let Some(tail) = self.owned_slot(owned, batch.tail) else { return dropped };
        // INVARIANT: the batch, its references gone, joins the free list:
        // its last slot's key now names the old head (its generation kept).
        let key = tail.key.load(Ordering::Relaxed);
        tail.key.store(free_key((key >> GENERATION_SHIFT) as u32, owned.free_head), Ordering::Release);
        owned.free_head = batch.head;
        owned.free += batch.len;
        dropped
    }

    /// Takes the reference `slot` owns, if any (its target becomes NULL).
    ///
    /// # Safety
    /// `slot` is one of an owned segment of this value, and no lookup can
    /// still be borrowing its block through it: it was released and its
    /// grace period has passed, or no lookup can run at all.
    unsafe fn take_reference(&self, slot: &HandleSlot) -> Option<PoolArc<T>> {
        let target = NonNull::new(slot.target.swap(core::ptr::null_mut(), Ordering::Acquire))?;
        // INVARIANT: the reference the slot owned (a `PoolArc` given up at
        // claim, its target the block's address) moves to the PoolArc
        // returned; the swap leaves none behind, so it is taken once.
        Some(PoolArc { ptr: target.cast::<Counted<T>>() })
    }

    /// The block the handle in `key` (a context word) names, if the slot at
    /// its index (taken modulo the slots' capacity) has exactly that key;
    /// `None` for anything else, without reading memory outside the slots.
    ///
    /// # Safety
    /// For all of `'a`: `_inside` is a guard of the rundown that every
    /// [`Self::reclaim`] and [`Self::release_storage`] of these slots is
    /// given (release_storage then frees nothing during `'a`: it asks for
    /// the proof of that rundown's drain, which `close_and_wait` cannot
    /// give while `_inside` stays entered). Then a key that matches names
    /// a claim whose slot owns a reference to the block; released during
    /// `'a`, it keeps it until a reclaim has seen every line idle after the
    /// release, which cannot happen while `_inside`, entered before this
    /// lookup, stays (`Rundown::idle_lines`: the lookup's entry and key
    /// load, both SeqCst, against the release and the reclaim's fence and
    /// line loads).
    /// A stale key is rejected whatever the timing. The driver's one caller
    /// is `wfp::filter_view::OwnWordGuard`, whose type carries the
    /// conditions.
    #[inline(always)]
    pub unsafe fn borrow_checked<'a>(
        &'a self,
        key: u64,
        inside: &'a crate::platform::rundown::RundownGuard<'_>,
    ) -> Option<&'a Counted<T>>
    where
        T: Send + Sync,
    {
        let target = self.target_of_key(key, inside)?;
        // SAFETY: the key matched, so `target` is NULL (a key without a
        // tag may be a free slot's) or the block of a claim whose slot owns
        // a reference (published before the key, read after it), kept past
        // 'a (caller's contract, see above).
        unsafe { target.as_ref() }
    }

    /// [`Self::borrow_checked`] for a key with a tag (`None` for one
    /// without): only a claimed slot's key has one (a free slot's never, a
    /// slot never claimed has key 0), so a match is a claim's and its
    /// target is no NULL to test for.
    ///
    /// # Safety
    /// As [`Self::borrow_checked`].
    #[inline(always)]
    pub unsafe fn borrow_tagged<'a>(
        &'a self,
        key: u64,
        inside: &'a crate::platform::rundown::RundownGuard<'_>,
    ) -> Option<&'a Counted<T>>
    where
        T: Send + Sync,
    {
        // (A caller that tested a tag bit already pays nothing here.)
        if key & TAG_MASK == 0 {
            return None;
        }
        let target = self.target_of_key(key, inside)?;
        // (Under loom, checked in every interleaving it explores.)
        #[cfg(loom)]
        assert!(!target.is_null(), "a tagged key matched a slot without a target");
        // The key matched and has a tag, so the slot is claimed: `try_claim`
        // stored the target (non-NULL: a PoolArc's block) before the key
        // (Release; read here after it, SeqCst then Acquire), and the target
        // goes NULL only when a reclaim or release_storage takes the
        // reference, after the key moved on and the grace period (or drain)
        // that `inside` holds off (caller's contract, see borrow_checked).
        // Said to the compiler, which then tests nothing for the `Some`.
        // SAFETY: not NULL, as just argued.
        unsafe { core::hint::assert_unchecked(!target.is_null()) };
        // SAFETY: as above, the block of a claim, alive past 'a.
        Some(unsafe { &*target })
    }

    /// The target of the slot at `key`'s index if that slot's key is
    /// `key` (the lookup both borrows share).
    #[inline(always)]
    fn target_of_key<'a>(
        &'a self,
        key: u64,
        inside: &'a crate::platform::rundown::RundownGuard<'_>,
    ) -> Option<*mut Counted<T>> {
        let slot = self.slot_of_key(key, inside);
        // SeqCst (a plain `mov` on x86-64, as Acquire): the second half of
        // the Dekker pattern with the rundown entry (Rundown::idle_lines).
        if slot.key.load(Ordering::SeqCst) != key {
            return None;
        }
        Some(slot.target.load(Ordering::Acquire).cast::<Counted<T>>())
    }

    /// The slot at `key`'s index: its segment from the low half's top bits,
    /// which name a directory entry whatever the key, and its offset from
    /// the slot bits (so in bounds whatever the key: a key with bits 14 to
    /// 22 set lands on a slot whose key has them clear, and matches
    /// nothing).
    #[inline(always)]
    fn slot_of_key<'a>(&'a self, key: u64, _inside: &'a crate::platform::rundown::RundownGuard<'_>) -> &'a HandleSlot {
        // (Never NO_SEGMENT for want of an entry: the segment bits are
        // below SEGMENTS.)
        let segment = self
            .directory
            .get(((key as u32) >> SEGMENT_KEY_SHIFT) as usize)
            .map_or(no_segment(), |entry| entry.load(Ordering::Acquire));
        // SAFETY: every directory entry is the address of SEGMENT_SLOTS
        // live slots (invariant: a segment, or NO_SEGMENT; freed only by
        // release_storage, which needs the drain `_inside` holds off), and
        // the offset is below SEGMENT_SLOTS slots' bytes.
        #[cfg(not(loom))]
        let slot = unsafe { segment.byte_add((key & OFFSET_BITS) as usize) };
        // SAFETY: as above, by index (under loom a slot is larger).
        #[cfg(loom)]
        let slot = unsafe { segment.add(((key & OFFSET_BITS) >> INDEX_SHIFT) as usize) };
        // SAFETY: that slot is initialised, lives for 'a (as above), and is
        // only accessed through atomics.
        unsafe { &*slot }
    }

    /// Slots free now, and slots allocated (statistics and tests).
    pub fn counts(&self) -> (usize, usize) {
        let owned = self.owned.lock();
        (owned.free, owned.allocated * SEGMENT_SLOTS)
    }

    /// Released slots still waiting for their grace period (their blocks
    /// kept alive by the slots' references): statistics and tests.
    pub fn retired(&self) -> usize {
        let owned = self.owned.lock();
        owned.retired.len + owned.draining.len
    }

    /// Frees every segment, first dropping every reference a slot still
    /// owns (released slots waiting for their grace period, or claims not
    /// released). Only at the end of unload, once the rundown that lookups
    /// and reclaims are made in has drained: no lookup can be running (see
    /// [`Self::borrow_checked`]) nor any reclaim. Every handle stops
    /// matching. The segments are unpublished and freed under the lock
    /// (non-paged pool may be freed at DISPATCH_LEVEL), so a claim growing
    /// meanwhile publishes its segment before or after, never into a freed
    /// one.
    ///
    /// `rundown` must be that rundown (the one [`Self::reclaim`] is given),
    /// and `drained` the proof its [`Rundown::close_and_wait`] returned: so
    /// the wait comes first by construction. A proof of another rundown, or
    /// of one reopened since, frees nothing and answers
    /// `STATUS_INVALID_DEVICE_STATE` (the storage stays: a leak, where
    /// freeing could be a use after free).
    pub fn release_storage(&self, rundown: &Rundown, drained: &Drained<'_>) -> Result {
        if !drained.proves(rundown) {
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        let mut owned = self.owned.lock();
        // No lookup or reclaim runs (the contract above) and lock-held
        // users wait for the lock.
        self.free_segments(owned.allocated);
        // INVARIANT: no segment left, every handle gone, no reference kept.
        owned.allocated = 0;
        owned.free_head = NO_SLOT;
        owned.fresh = 0;
        owned.free = 0;
        owned.retired = SlotList::EMPTY;
        owned.draining = SlotList::EMPTY;
        owned.seen = LineSet::NONE;
        Ok(())
    }

    /// Unpublishes the first `count` directory entries and frees their
    /// segments, with every reference their slots still own. Only while no
    /// lookup or reclaim can run (`release_storage`'s contract, or drop).
    fn free_segments(&self, count: usize) {
        for pointer in self.directory.iter().take(count) {
            let segment = pointer.swap(no_segment(), Ordering::AcqRel);
            if let Some(ptr) = NonNull::new(segment)
                && segment != no_segment()
            {
                // The directory owned this segment (invariant): the block of
                // a PoolSlice of SEGMENT_SLOTS slots with `tag`, now
                // unreachable from it; nothing else uses it (this
                // function's condition).
                let segment = PoolSlice { ptr, len: SEGMENT_SLOTS, tag: self.tag };
                self.drop_references(&segment);
                drop(segment);
            }
        }
    }

    /// Drops every reference the slots of `segment` (one of ours, being
    /// freed while no lookup or reclaim can run) still own.
    fn drop_references(&self, segment: &[HandleSlot]) {
        for slot in segment {
            // SAFETY: a slot of an owned segment; no lookup can borrow its
            // block (release_storage's and Drop's callers: none runs).
            drop(unsafe { self.take_reference(slot) });
        }
    }

    /// The slot at `index` of a segment we own (the lock held: segments
    /// come and go only with it; the borrow ends with the guard's).
    fn owned_slot<'g>(&'g self, owned: &'g HandleOwned, index: u32) -> Option<&'g HandleSlot> {
        let index = index as usize;
        if index >= owned.allocated * SEGMENT_SLOTS {
            return None;
        }
        let segment = self.directory.get(index >> SEGMENT_SHIFT)?.load(Ordering::Acquire);
        let offset = index & (SEGMENT_SLOTS - 1);
        // SAFETY: the segment is allocated (index below `allocated`
        // segments' slots, read under the lock that release_storage takes
        // before freeing), so the entry is a live segment of SEGMENT_SLOTS
        // slots (invariant), and the offset is inside it.
        let slot = unsafe { segment.add(offset) };
        // SAFETY: initialised, alive while the lock is held (the borrow
        // ends with `owned`'s), only accessed through atomics.
        Some(unsafe { &*slot })
    }

    /// The slot at `index` of a segment we own, without the lock: inside
    /// the rundown, where `release_storage` does not run. `None` for an
    /// index in no owned segment (never a slot of `NO_SEGMENT`, which is
    /// not written).
    fn slot_inside<'g>(&'g self, index: u32, _inside: &'g RundownGuard<'_>) -> Option<&'g HandleSlot> {
        let index = index as usize;
        let segment = self.directory.get(index >> SEGMENT_SHIFT)?.load(Ordering::Acquire);
        if segment == no_segment() {
            return None;
        }
        // SAFETY: the entry is a segment we own (invariant: not NO_SEGMENT),
        // of SEGMENT_SLOTS slots, freed only by release_storage, which does
        // not run while `_inside` is entered (reclaim's contract); the
        // offset is inside it.
        let slot = unsafe { segment.add(index & (SEGMENT_SLOTS - 1)) };
        // SAFETY: initialised, alive while `_inside` is (as above), only
        // accessed through atomics.
        Some(unsafe { &*slot })
    }
}

impl<T: Tagged> Drop for HandleSlots<T> {
    /// A table that is not the driver's static one (tests) frees its
    /// segments, and the references its slots still own, when it goes.
    fn drop(&mut self) {
        // `&mut self` rules out every lookup and reclaim.
        self.free_segments(SEGMENTS);
    }
}
