//! Every live filter context, keyed by run-time filter id.
//!
//! Used where `filter->context` cannot be trusted or is not at hand: DELETE
//! (we never dereference a context we did not create), adopted filters,
//! statistics, and unload. Not used by classify's fast path.
//!
//! An open-addressing hash table (linear probing, backward-shift deletion)
//! in tagged non-paged pool, so it works at DISPATCH_LEVEL and shows up in
//! `!poolused` as `WfTb`.
#![deny(unsafe_code)]

use crate::filter_context::{ContextRef, FilterContext};
use crate::pool::{PoolSlice, TAG_CONTEXT_TABLE, Zeroable};
use crate::spin_lock::SpinLock;
use crate::status::{NtStatus, Result};

/// One slot: a filter id and the raw `ContextRef` the table owns (0 = empty).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Slot {
    filter_id: u64,
    context: u64,
}

#[allow(unsafe_code)]
// SAFETY: an all-zero Slot is the empty slot, a valid value.
unsafe impl Zeroable for Slot {}

const MIN_CAPACITY: usize = 16;

/// The unlocked table.
///
/// # Invariants
/// `slots` is empty or has a power-of-two length; `len` slots are occupied
/// and each occupied slot owns one reference (`ContextRef::into_raw`); the
/// load factor stays at or below one half; every occupied slot is reachable
/// by probing from its hash without crossing an empty slot.
struct RawTable {
    slots: Option<PoolSlice<Slot>>,
    len: usize,
}

fn hash(filter_id: u64, mask: usize) -> usize {
    // Fibonacci hashing: filter ids are dense and sequential.
    (filter_id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & mask
}

impl RawTable {
    const fn new() -> Self {
        Self { slots: None, len: 0 }
    }

    fn find(&self, filter_id: u64) -> Option<usize> {
        let slots = self.slots.as_ref()?;
        let mask = slots.len() - 1;
        let mut index = hash(filter_id, mask);
        loop {
            let slot = slots.get(index)?;
            if slot.context == 0 {
                return None;
            }
            if slot.filter_id == filter_id {
                return Some(index);
            }
            index = (index + 1) & mask;
        }
    }

    fn grow_if_needed(&mut self) -> Result {
        let capacity = self.slots.as_ref().map_or(0, |s| s.len());
        if (self.len + 1) * 2 <= capacity {
            return Ok(());
        }
        let new_capacity = capacity.max(MIN_CAPACITY / 2).checked_mul(2).ok_or(NtStatus::INSUFFICIENT_RESOURCES)?;
        let mut fresh = PoolSlice::<Slot>::try_zeroed(new_capacity, TAG_CONTEXT_TABLE)?;
        if let Some(old) = self.slots.take() {
            for slot in old.iter().filter(|s| s.context != 0) {
                place(&mut fresh, *slot);
            }
        }
        // INVARIANT: every occupied slot moved into a table twice as large.
        self.slots = Some(fresh);
        Ok(())
    }

    fn insert(&mut self, filter_id: u64, context: ContextRef) -> core::result::Result<(), (NtStatus, ContextRef)> {
        if self.find(filter_id).is_some() {
            return Err((NtStatus::ALREADY_EXISTS, context));
        }
        if let Err(status) = self.grow_if_needed() {
            return Err((status, context));
        }
        match self.slots.as_mut() {
            Some(slots) => {
                // INVARIANT: the slot takes over the reference.
                place(slots, Slot { filter_id, context: context.into_raw() });
                self.len += 1;
                Ok(())
            }
            None => Err((NtStatus::INSUFFICIENT_RESOURCES, context)),
        }
    }

    fn remove(&mut self, filter_id: u64) -> Option<ContextRef> {
        let mut hole = self.find(filter_id)?;
        let slots = self.slots.as_mut()?;
        let mask = slots.len() - 1;
        let taken = core::mem::take(slots.get_mut(hole)?);
        // Backward-shift: pull later members of the probe run into the hole.
        let mut index = (hole + 1) & mask;
        while let Some(&candidate) = slots.get(index) {
            if candidate.context == 0 {
                break;
            }
            let home = hash(candidate.filter_id, mask);
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
        taken_ref(taken.context)
    }
}

fn place(slots: &mut PoolSlice<Slot>, slot: Slot) {
    let mask = slots.len() - 1;
    let mut index = hash(slot.filter_id, mask);
    while let Some(existing) = slots.get_mut(index) {
        if existing.context == 0 {
            *existing = slot;
            return;
        }
        index = (index + 1) & mask;
    }
}

#[allow(unsafe_code)]
fn taken_ref(raw: u64) -> Option<ContextRef> {
    // SAFETY: occupied slots own one reference from ContextRef::into_raw
    // (RawTable invariant), and the slot was just emptied.
    unsafe { ContextRef::from_raw(raw) }
}

#[allow(unsafe_code)]
fn borrow_slot<'a>(raw: u64) -> Option<&'a FilterContext> {
    // SAFETY: the slot owns a reference that lives while the table lock is
    // held; callers only use the borrow under that lock.
    unsafe { ContextRef::borrow(raw) }
}

/// The lock-protected table of filter contexts.
pub struct ContextTable {
    inner: SpinLock<RawTable>,
}

impl ContextTable {
    /// An empty table, const for the driver's static state.
    pub const fn new() -> Self {
        Self { inner: SpinLock::new(RawTable::new()) }
    }

    /// Adds the table's reference for `filter_id`. On failure the reference
    /// comes back so the caller decides what to drop.
    pub fn insert(&self, filter_id: u64, context: ContextRef) -> core::result::Result<(), (NtStatus, ContextRef)> {
        self.inner.lock().insert(filter_id, context)
    }

    /// Removes and returns the table's reference for `filter_id`.
    pub fn remove(&self, filter_id: u64) -> Option<ContextRef> {
        self.inner.lock().remove(filter_id)
    }

    /// A new reference to the context of `filter_id`, if any.
    pub fn get(&self, filter_id: u64) -> Option<ContextRef> {
        let guard = self.inner.read();
        let index = guard.find(filter_id)?;
        let raw = guard.slots.as_ref()?.get(index)?.context;
        clone_slot(raw)
    }

    /// Calls `visit` for every context under the shared lock (at
    /// DISPATCH_LEVEL: keep `visit` short).
    pub fn for_each(&self, mut visit: impl FnMut(&FilterContext)) {
        let guard = self.inner.read();
        if let Some(slots) = guard.slots.as_ref() {
            for slot in slots.iter().filter(|s| s.context != 0) {
                if let Some(context) = borrow_slot(slot.context) {
                    visit(context);
                }
            }
        }
    }

    /// Number of contexts.
    pub fn len(&self) -> usize {
        self.inner.read().len
    }

    /// True when no filter has a context.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes one arbitrary entry (unload drains the table with this, one
    /// reference at a time, so no drop runs under the lock).
    pub fn pop_any(&self) -> Option<ContextRef> {
        let mut guard = self.inner.lock();
        let filter_id = guard.slots.as_ref().and_then(|s| s.iter().find(|s| s.context != 0).map(|s| s.filter_id))?;
        guard.remove(filter_id)
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

impl Default for ContextTable {
    fn default() -> Self {
        Self::new()
    }
}

#[allow(unsafe_code)]
fn clone_slot(raw: u64) -> Option<ContextRef> {
    // SAFETY: the slot owns a live reference while the shared lock is held
    // (the caller holds it); we clone it without taking the slot's.
    let borrowed = core::mem::ManuallyDrop::new(unsafe { ContextRef::from_raw(raw) }?);
    Some(ContextRef::clone(&borrowed))
}
