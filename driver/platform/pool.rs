//! Tagged non-paged pool: every allocation the driver makes goes through
//! here, one tag per kind, so `!poolused` in WinDbg and the simulated
//! kernel's leak report both say what leaked.
//!
//! The trio `PoolBox::into_raw` / `PoolBox::from_raw` / a borrowed `&T` is the
//! only way ownership crosses an integer or `void*` (`filter->context`,
//! completion contexts, flow contexts).
#![allow(unsafe_code)]

use crate::platform::kernel::{ExAllocatePool2, ExFreePoolWithTag, POOL_FLAG_NON_PAGED};
use crate::platform::status::{NtStatus, Result};
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
/// Per-processor counter arrays of a filter context.
pub const TAG_COUNTERS: PoolTag = PoolTag::new(*b"WfCn");
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
/// [`TaggedBox`] give itself away and be taken back without the tag
/// travelling with it.
pub trait Tagged {
    /// The pool tag every block of this type carries.
    const TAG: PoolTag;
}

/// A [`PoolBox`] whose tag is its type's [`Tagged::TAG`], always: the owned
/// entry of a table (`id_table::TableEntry`).
pub struct TaggedBox<T: Tagged>(PoolBox<T>);

impl<T: Tagged> TaggedBox<T> {
    /// Allocates and only then builds the value (see [`PoolBox::try_new_with`]).
    pub fn try_new_with(build: impl FnOnce() -> T) -> Result<Self> {
        PoolBox::try_new_with(build, T::TAG).map(Self)
    }

    /// Gives ownership away as a raw pointer.
    pub fn into_raw(self) -> NonNull<T> {
        self.0.into_raw()
    }

    /// Takes ownership back.
    ///
    /// # Safety
    /// `ptr` must come from `TaggedBox::<T>::into_raw` and must not be used
    /// again by whoever held it.
    pub unsafe fn from_raw(ptr: NonNull<T>) -> Self {
        // SAFETY: forwarded; every TaggedBox<T> was allocated with T::TAG.
        Self(unsafe { PoolBox::from_raw(ptr, T::TAG) })
    }
}

impl<T: Tagged> Deref for TaggedBox<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// A fixed-length array of zero-initialized `T` in non-paged pool.
///
/// # Invariants
/// `ptr` points to `len` initialized `T`s in one pool block tagged `tag`.
pub struct PoolSlice<T: Zeroable> {
    ptr: NonNull<T>,
    len: usize,
    tag: PoolTag,
}

/// Types for which all-zero bytes are a valid value (what the pool returns).
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

// SAFETY: PoolSlice owns its elements like a Box<[T]>.
unsafe impl<T: Zeroable + Send> Send for PoolSlice<T> {}
// SAFETY: sharing a PoolSlice only shares &[T].
unsafe impl<T: Zeroable + Sync> Sync for PoolSlice<T> {}

impl<T: Zeroable> PoolSlice<T> {
    const ALIGN_OK: () = assert!(align_of::<T>() <= POOL_ALIGNMENT);

    /// Allocates `len` zeroed elements. Fails on exhaustion or overflow.
    pub fn try_zeroed(len: usize, tag: PoolTag) -> Result<Self> {
        let () = Self::ALIGN_OK;
        let bytes = size_of::<T>().checked_mul(len).ok_or(NtStatus::INSUFFICIENT_RESOURCES)?.max(1);
        // INVARIANT: ExAllocatePool2 zeroes the block (no UNINITIALIZED flag)
        // and zero is a valid T (Zeroable).
        let ptr = allocate_raw(bytes, tag)?.cast::<T>();
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

impl<T: Zeroable> Deref for PoolSlice<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: by the type invariant ptr holds len initialized Ts.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Zeroable> DerefMut for PoolSlice<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: by the type invariant ptr holds len initialized Ts, and
        // &mut self makes this the only access.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Zeroable> Drop for PoolSlice<T> {
    fn drop(&mut self) {
        // SAFETY: the elements are initialized and dropped exactly once here.
        unsafe { core::ptr::drop_in_place(core::ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), self.len)) };
        // SAFETY: the block came from ExAllocatePool2 with self.tag.
        unsafe { ExFreePoolWithTag(self.ptr.as_ptr().cast(), self.tag.raw()) };
    }
}
