//! A table of owned entries keyed by a 64-bit id (filter ids, flow
//! handles), usable up to DISPATCH_LEVEL.
//!
//! Used where a pointer from the engine cannot be trusted or is not at hand:
//! filter DELETE (we never dereference a context we did not create),
//! adopted filters, flows at unload, statistics. Not used by classify's
//! fast path.
//!
//! An open-addressing hash table (linear probing, backward-shift deletion)
//! in tagged non-paged pool under an `EX_SPIN_LOCK`; it grows by doubling
//! at half load, so insert and remove stay O(1) amortized at any size.
#![allow(unsafe_code)] // the TableEntry contract, and the two calls that rely on it

use crate::pool::{PoolSlice, PoolTag, Zeroable};
use crate::spin_lock::SpinLock;
use crate::status::{NtStatus, Result};
use core::marker::PhantomData;

/// Something a table slot can own as a `u64` (a pointer given away).
///
/// # Safety
/// `from_raw(into_raw(v))` must give `v` back, `into_raw` never returns 0,
/// and `borrow(raw)` must be valid for as long as the entry is in a table
/// (the table lock is held by whoever borrows).
pub unsafe trait TableEntry: Sized {
    /// What a borrowed entry reads as.
    type Target;
    /// Gives the entry away as a non-zero integer.
    fn into_raw(self) -> u64;
    /// Takes it back.
    ///
    /// # Safety
    /// `raw` must come from `into_raw` and not be taken back twice.
    unsafe fn from_raw(raw: u64) -> Option<Self>;
    /// Borrows it without taking it.
    ///
    /// # Safety
    /// `raw` must come from `into_raw` and still be owned for `'a`.
    unsafe fn borrow<'a>(raw: u64) -> Option<&'a Self::Target>;
}

/// One slot: an id and the raw entry the table owns (0 = empty).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Slot {
    id: u64,
    entry: u64,
}

#[allow(unsafe_code)]
// SAFETY: an all-zero Slot is the empty slot, a valid value.
unsafe impl Zeroable for Slot {}

const MIN_CAPACITY: usize = 16;

/// The unlocked table.
///
/// # Invariants
/// `slots` is empty or has a power-of-two length; `len` slots are occupied
/// and each occupied slot owns one entry (`TableEntry::into_raw`); the load
/// factor stays at or below one half; every occupied slot is reachable by
/// probing from its hash without crossing an empty slot.
struct RawTable<V> {
    slots: Option<PoolSlice<Slot>>,
    len: usize,
    tag: PoolTag,
    _owns: PhantomData<V>,
}

fn hash(id: u64, mask: usize) -> usize {
    // Fibonacci hashing: ids are dense and sequential.
    (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & mask
}

fn place(slots: &mut PoolSlice<Slot>, slot: Slot) {
    let mask = slots.len() - 1;
    let mut index = hash(slot.id, mask);
    while let Some(existing) = slots.get_mut(index) {
        if existing.entry == 0 {
            *existing = slot;
            return;
        }
        index = (index + 1) & mask;
    }
}

impl<V: TableEntry> RawTable<V> {
    const fn new(tag: PoolTag) -> Self {
        Self { slots: None, len: 0, tag, _owns: PhantomData }
    }

    fn find(&self, id: u64) -> Option<usize> {
        let slots = self.slots.as_ref()?;
        let mask = slots.len() - 1;
        let mut index = hash(id, mask);
        loop {
            let slot = slots.get(index)?;
            if slot.entry == 0 {
                return None;
            }
            if slot.id == id {
                return Some(index);
            }
            index = (index + 1) & mask;
        }
    }

    fn raw(&self, id: u64) -> Option<u64> {
        let index = self.find(id)?;
        Some(self.slots.as_ref()?.get(index)?.entry)
    }

    fn grow_if_needed(&mut self) -> Result {
        let capacity = self.slots.as_ref().map_or(0, |s| s.len());
        if (self.len + 1) * 2 <= capacity {
            return Ok(());
        }
        let new_capacity = capacity.max(MIN_CAPACITY / 2).checked_mul(2).ok_or(NtStatus::INSUFFICIENT_RESOURCES)?;
        let mut fresh = PoolSlice::<Slot>::try_zeroed(new_capacity, self.tag)?;
        if let Some(old) = self.slots.take() {
            for slot in old.iter().filter(|s| s.entry != 0) {
                place(&mut fresh, *slot);
            }
        }
        // INVARIANT: every occupied slot moved into a table twice as large.
        self.slots = Some(fresh);
        Ok(())
    }

    fn insert(&mut self, id: u64, entry: V) -> core::result::Result<(), (NtStatus, V)> {
        if self.find(id).is_some() {
            return Err((NtStatus::ALREADY_EXISTS, entry));
        }
        if let Err(status) = self.grow_if_needed() {
            return Err((status, entry));
        }
        match self.slots.as_mut() {
            Some(slots) => {
                // INVARIANT: the slot takes over the entry.
                place(slots, Slot { id, entry: entry.into_raw() });
                self.len += 1;
                Ok(())
            }
            None => Err((NtStatus::INSUFFICIENT_RESOURCES, entry)),
        }
    }

    fn remove(&mut self, id: u64) -> Option<V> {
        let mut hole = self.find(id)?;
        let slots = self.slots.as_mut()?;
        let mask = slots.len() - 1;
        let taken = core::mem::take(slots.get_mut(hole)?);
        // Backward-shift: pull later members of the probe run into the hole.
        let mut index = (hole + 1) & mask;
        while let Some(&candidate) = slots.get(index) {
            if candidate.entry == 0 {
                break;
            }
            let home = hash(candidate.id, mask);
            // Move it if its home is not cyclically within (hole, index].
            if (index.wrapping_sub(home) & mask) >= (index.wrapping_sub(hole) & mask) {
                if let Some(dst) = slots.get_mut(hole) {
                    *dst = candidate;
                }
                if let Some(src) = slots.get_mut(index) {
                    *src = Slot::default();
                }
                hole = index;
            }
            index = (index + 1) & mask;
        }
        self.len -= 1;
        take_entry(taken.entry)
    }
}

#[allow(unsafe_code)]
fn take_entry<V: TableEntry>(raw: u64) -> Option<V> {
    // SAFETY: occupied slots own one entry from into_raw (RawTable
    // invariant), and the slot was just emptied.
    unsafe { V::from_raw(raw) }
}

#[allow(unsafe_code)]
fn borrow_entry<'a, V: TableEntry>(raw: u64) -> Option<&'a V::Target> {
    // SAFETY: the slot owns the entry while the table lock is held; callers
    // only use the borrow under that lock.
    unsafe { V::borrow(raw) }
}

/// The lock-protected table.
pub struct IdTable<V> {
    inner: SpinLock<RawTable<V>>,
}

impl<V: TableEntry> IdTable<V> {
    /// An empty table whose slot arrays carry `tag`; const for statics.
    pub const fn new(tag: PoolTag) -> Self {
        Self { inner: SpinLock::new(RawTable::new(tag)) }
    }

    /// Adds the entry for `id`. On failure the entry comes back so the
    /// caller decides what to drop.
    pub fn insert(&self, id: u64, entry: V) -> core::result::Result<(), (NtStatus, V)> {
        self.inner.lock().insert(id, entry)
    }

    /// Removes and returns the entry for `id` (dropped by the caller,
    /// outside the lock).
    pub fn remove(&self, id: u64) -> Option<V> {
        self.inner.lock().remove(id)
    }

    /// Runs `f` on the entry for `id` under the shared lock (keep it short:
    /// DISPATCH_LEVEL).
    pub fn with<R>(&self, id: u64, f: impl FnOnce(&V::Target) -> R) -> Option<R> {
        let guard = self.inner.read();
        guard.raw(id).and_then(borrow_entry::<V>).map(f)
    }

    /// Calls `visit` for every entry under the shared lock.
    pub fn for_each(&self, mut visit: impl FnMut(u64, &V::Target)) {
        let guard = self.inner.read();
        if let Some(slots) = guard.slots.as_ref() {
            for slot in slots.iter().filter(|s| s.entry != 0) {
                if let Some(entry) = borrow_entry::<V>(slot.entry) {
                    visit(slot.id, entry);
                }
            }
        }
    }

    /// The first id whose entry satisfies `test` (under the shared lock).
    pub fn find_id(&self, mut test: impl FnMut(&V::Target) -> bool) -> Option<u64> {
        let guard = self.inner.read();
        let slots = guard.slots.as_ref()?;
        slots.iter().filter(|s| s.entry != 0).find(|s| borrow_entry::<V>(s.entry).is_some_and(&mut test)).map(|s| s.id)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.inner.read().len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes one arbitrary entry (unload drains tables with this, one
    /// entry at a time, so no drop runs under the lock).
    pub fn pop_any(&self) -> Option<V> {
        let mut guard = self.inner.lock();
        let id = guard.slots.as_ref().and_then(|s| s.iter().find(|s| s.entry != 0).map(|s| s.id))?;
        guard.remove(id)
    }

    /// Frees the slot array once the table is empty (end of unload).
    pub fn release_storage(&self) {
        let old = {
            let mut guard = self.inner.lock();
            if guard.len != 0 {
                return;
            }
            guard.slots.take()
        };
        drop(old);
    }
}
