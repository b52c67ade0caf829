//! A table of owned entries keyed by a 64-bit id (filter ids, flow
//! handles), usable up to DISPATCH_LEVEL.
//!
//! Used where a pointer from the engine cannot be trusted or is not at hand:
//! filter DELETE (we never dereference a context we did not create),
//! adopted filters, flows at unload, statistics. Not used by classify's
//! fast path.
//!
//! An open-addressing hash table (linear probing, backward-shift deletion)
//! in tagged non-paged pool under an `EX_SPIN_LOCK`. It doubles at half
//! load and halves below an eighth, and never allocates, frees or
//! rehashes everything while its lock is held: the new slot array is
//! allocated before the lock is taken (and the old one freed after it is
//! released), and the entries move across a few at a time, [`MIGRATE_STEP`]
//! old slots with every insert and remove, while lookups search both
//! arrays. So the work done under the lock is O(1) for every operation,
//! not just amortized; the operation that starts a resize also pays,
//! outside the lock, for allocating the new array (which the pool
//! zero-fills: O(its size); a zeroed slot is empty, so the driver writes
//! none of it).
//!
//! Entries are owned values one pointer wide (`ContextRef`, `FlowBox`:
//! the pool layer's `NonNullOwner`s, which dereference to what lookups
//! lend), kept in the slots themselves: no
//! entry crosses an integer, and one still in a slot array that is freed is
//! dropped with it.
#![forbid(unsafe_code)]

use crate::platform::pool::{KeyedSlot, NonNullOwner, PoolSlice, PoolTag};
use crate::platform::spin_lock::SpinLock;
use crate::platform::status::NtStatus;
use core::ops::Deref;

/// One slot: an id (the pool type's `key`) and the entry the table owns
/// (`None` and id 0: empty, as a zeroed array holds it; in the array being
/// drained, `None` and id [`MOVED`]: its entry left, keep probing).
type Slot<V> = KeyedSlot<V>;

/// What an entry leaves behind in the array being drained.
fn moved<V>() -> Slot<V> {
    KeyedSlot { key: MOVED, entry: None }
}

fn occupied<V>(slot: &Slot<V>) -> bool {
    slot.entry.is_some()
}

/// Ends a probe run (a moved slot does not).
fn is_empty<V>(slot: &Slot<V>) -> bool {
    slot.entry.is_none() && slot.key != MOVED
}

/// The id of a slot whose entry left the array being drained (with no entry).
const MOVED: u64 = 1;
/// The smallest slot array.
const MIN_CAPACITY: usize = 16;
/// Old slots moved to the new array with every insert and remove while a
/// resize is under way. Growth starts at half load of C slots into 2C and
/// is done after C/16 operations, long before the next growth is due (C/2
/// inserts later). A shrink starts below an eighth of C, into C/2 (a
/// quarter full at most), and is done after C/16 operations: before the
/// new array could reach half load (C/8 inserts) or the next shrink be due
/// (C/16 removes). So a resize always finishes before the next one is
/// wanted, however inserts and removes mix.
pub const MIGRATE_STEP: usize = 16;

/// The unlocked table.
///
/// # Invariants
/// `slots` and `old` are empty or have a power-of-two length. `len`
/// entries are in the table, each owned by exactly one occupied slot of
/// `slots` or `old`. `slots` holds at most half
/// its length of entries. In each array every occupied slot is reachable
/// by probing from its hash without crossing an empty slot (`old` has no
/// empty slot inside a probe run: its entries leave [`MOVED`] behind).
/// `old` is only set while a resize is under way; its slots before
/// `cursor` hold no entry.
struct RawTable<V> {
    slots: Option<PoolSlice<Slot<V>>>,
    /// The array being drained into `slots` (a resize under way).
    old: Option<PoolSlice<Slot<V>>>,
    /// The next slot of `old` to move.
    cursor: usize,
    /// A drained array, freed by the caller after releasing the lock.
    retired: Option<PoolSlice<Slot<V>>>,
    /// Where `pop_any` looks first (it found an entry there last time), so
    /// draining the table visits each slot about once.
    pop_hint: usize,
    len: usize,
}

fn hash(id: u64, mask: usize) -> usize {
    // Fibonacci hashing: ids are dense and sequential.
    (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & mask
}

/// The first empty slot of `id`'s probe run (the array has one: it is at
/// most half full).
fn vacancy<V>(slots: &mut PoolSlice<Slot<V>>, id: u64) -> Option<&mut Slot<V>> {
    let mask = slots.len().checked_sub(1)?;
    let mut index = hash(id, mask);
    for _ in 0..slots.len() {
        if is_empty(slots.get(index)?) {
            return slots.get_mut(index);
        }
        index = (index + 1) & mask;
    }
    None
}

/// Where `id` is in `slots`.
fn find_in<V>(slots: &PoolSlice<Slot<V>>, id: u64) -> Option<usize> {
    let mask = slots.len().checked_sub(1)?;
    let mut index = hash(id, mask);
    for _ in 0..slots.len() {
        let slot = slots.get(index)?;
        if is_empty(slot) {
            return None;
        }
        if occupied(slot) && slot.key == id {
            return Some(index);
        }
        index = (index + 1) & mask;
    }
    None
}

/// Removes the entry at `hole` from an array that is not being drained,
/// pulling later members of its probe run back (backward-shift deletion).
fn remove_at<V>(slots: &mut PoolSlice<Slot<V>>, mut hole: usize) -> Option<V> {
    let mask = slots.len().checked_sub(1)?;
    let taken = core::mem::take(slots.get_mut(hole)?);
    let mut index = (hole + 1) & mask;
    while let Some(candidate) = slots.get(index) {
        if is_empty(candidate) {
            break;
        }
        let home = hash(candidate.key, mask);
        // Move it if its home is not cyclically within (hole, index].
        if (index.wrapping_sub(home) & mask) >= (index.wrapping_sub(hole) & mask) {
            let moving = slots.get_mut(index).map(core::mem::take).unwrap_or_default();
            if let Some(dst) = slots.get_mut(hole) {
                *dst = moving;
            }
            hole = index;
        }
        index = (index + 1) & mask;
    }
    taken.entry
}

/// Which array an entry was found in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum In {
    Slots,
    Old,
}

impl<V> RawTable<V> {
    const fn new() -> Self {
        Self { slots: None, old: None, cursor: 0, retired: None, pop_hint: 0, len: 0 }
    }

    fn capacity(&self) -> usize {
        self.slots.as_ref().map_or(0, |s| s.len())
    }

    fn find(&self, id: u64) -> Option<(In, usize)> {
        if let Some(index) = self.slots.as_ref().and_then(|s| find_in(s, id)) {
            return Some((In::Slots, index));
        }
        self.old.as_ref().and_then(|s| find_in(s, id)).map(|index| (In::Old, index))
    }

    fn entry(&self, id: u64) -> Option<&V> {
        let (array, index) = self.find(id)?;
        let slots = if array == In::Slots { self.slots.as_ref() } else { self.old.as_ref() };
        slots?.get(index)?.entry.as_ref()
    }

    /// The id of some entry: the first one at or after `pop_hint` in
    /// `slots` (cyclically), else any in `old`.
    fn any_id(&mut self) -> Option<u64> {
        if let Some(slots) = self.slots.as_ref() {
            let count = slots.len();
            let start = self.pop_hint.min(count);
            let found = (start..count).chain(0..start).find(|&i| slots.get(i).is_some_and(occupied));
            if let Some(index) = found {
                self.pop_hint = index;
                return slots.get(index).map(|slot| slot.key);
            }
        }
        let old = self.old.as_ref()?;
        old.iter().skip(self.cursor).find(|slot| occupied(slot)).map(|slot| slot.key)
    }

    /// Every occupied slot of both arrays.
    fn occupied(&self) -> impl Iterator<Item = &Slot<V>> {
        self.slots.iter().chain(self.old.iter()).flat_map(|s| s.iter()).filter(|s| occupied(s))
    }

    /// The slot count a resize should move to now, with `more` entries
    /// about to be added; `None` when the size is right or a resize is
    /// already under way.
    fn resize_wanted(&self, more: usize) -> Option<usize> {
        if self.old.is_some() {
            return None;
        }
        let capacity = self.capacity();
        if (self.len + more) * 2 > capacity {
            return capacity.max(MIN_CAPACITY / 2).checked_mul(2);
        }
        if capacity > MIN_CAPACITY && self.len * 8 < capacity {
            return Some(capacity / 2);
        }
        None
    }

    /// Starts a resize into `fresh` (zeroed, allocated by the caller before
    /// taking the lock) if it is still wanted and fits; otherwise hands it
    /// back (to be freed after the lock is released).
    fn start_resize(&mut self, fresh: PoolSlice<Slot<V>>) -> Option<PoolSlice<Slot<V>>> {
        let capacity = self.capacity();
        let useful = if fresh.len() > capacity {
            (self.len + 1) * 2 > capacity
        } else {
            capacity > MIN_CAPACITY && self.len * 8 < capacity
        };
        if self.old.is_some() || !useful || (self.len + 1) * 2 > fresh.len() {
            return Some(fresh);
        }
        // INVARIANT: `fresh` is empty with room for every entry; they stay
        // in `old` (where lookups also probe) until moved.
        self.old = self.slots.replace(fresh);
        self.cursor = 0;
        self.migrate(MIGRATE_STEP);
        None
    }

    /// Moves up to `step` old slots' entries into `slots`; when `old` is
    /// drained it is retired (the caller frees it outside the lock).
    fn migrate(&mut self, step: usize) {
        let (Some(old), Some(slots)) = (self.old.as_mut(), self.slots.as_mut()) else { return };
        let end = (self.cursor + step).min(old.len());
        for index in self.cursor..end {
            if let Some(slot) = old.get_mut(index)
                && occupied(slot)
            {
                let Some(place) = vacancy(slots, slot.key) else {
                    // Not reachable (`slots` is at most half full); the
                    // entry stays in `old`, and so does the resize.
                    self.cursor = index;
                    return;
                };
                // INVARIANT: the entry changes arrays; `slots` stays at
                // most half full since it holds no more than `len`. MOVED
                // keeps the probe runs of `old` through this slot intact
                // (an empty slot stays empty: no run crosses it).
                *place = core::mem::replace(slot, moved());
            }
        }
        self.cursor = end;
        if end == old.len() {
            self.retired = self.old.take();
        }
    }

    fn insert(&mut self, id: u64, entry: V) -> core::result::Result<(), (NtStatus, V)> {
        if self.find(id).is_some() {
            return Err((NtStatus::ALREADY_EXISTS, entry));
        }
        if (self.len + 1) * 2 > self.capacity() && self.old.is_some() {
            // A resize is due before the last one finished (not reachable
            // with MIGRATE_STEP as chosen): finish that one now.
            self.migrate(usize::MAX / 2);
        }
        if (self.len + 1) * 2 > self.capacity() {
            // No room: the caller allocates a larger array and retries.
            return Err((NtStatus::INSUFFICIENT_RESOURCES, entry));
        }
        match self.slots.as_mut().and_then(|slots| vacancy(slots, id)) {
            Some(place) => {
                // INVARIANT: the slot takes over the entry.
                *place = KeyedSlot { key: id, entry: Some(entry) };
                self.len += 1;
                self.migrate(MIGRATE_STEP);
                Ok(())
            }
            None => Err((NtStatus::INSUFFICIENT_RESOURCES, entry)),
        }
    }

    fn remove(&mut self, id: u64) -> Option<V> {
        let (array, index) = self.find(id)?;
        let taken = match array {
            In::Slots => remove_at(self.slots.as_mut()?, index)?,
            In::Old => {
                let slot = self.old.as_mut()?.get_mut(index)?;
                // INVARIANT: MOVED, not empty: the probe run goes on.
                core::mem::replace(slot, moved()).entry?
            }
        };
        self.len -= 1;
        self.migrate(MIGRATE_STEP);
        Some(taken)
    }
}

/// The lock-protected table. Lookups lend what an entry dereferences to,
/// under the lock.
pub struct IdTable<V> {
    inner: SpinLock<RawTable<V>>,
    tag: PoolTag,
}

impl<V: Deref + NonNullOwner> IdTable<V> {
    /// An empty table whose slot arrays carry `tag`; const for statics.
    pub const fn new(tag: PoolTag) -> Self {
        Self { inner: SpinLock::new(RawTable::new()), tag }
    }

    /// Adds the entry for `id`. On failure the entry comes back so the
    /// caller decides what to drop. When the table must grow, the larger
    /// array is allocated between two holds of the lock, and a drained one
    /// is freed after the lock is released.
    pub fn insert(&self, id: u64, entry: V) -> core::result::Result<(), (NtStatus, V)> {
        let mut entry = entry;
        let mut fresh: Option<PoolSlice<Slot<V>>> = None;
        // Another inserter can fill the room we made between our two holds
        // of the lock; a few rounds settle it.
        for _ in 0..4 {
            let (result, wanted, unused, retired) = {
                let mut guard = self.inner.lock();
                let unused = fresh.take().and_then(|fresh| guard.start_resize(fresh));
                let result = guard.insert(id, entry);
                let wanted = match result {
                    Err((NtStatus::INSUFFICIENT_RESOURCES, _)) => guard.resize_wanted(1),
                    _ => None,
                };
                (result, wanted, unused, guard.retired.take())
            };
            drop((unused, retired));
            match (result, wanted) {
                (Err((NtStatus::INSUFFICIENT_RESOURCES, back)), Some(capacity)) => {
                    entry = back;
                    match PoolSlice::try_zeroed(capacity, self.tag) {
                        Ok(slots) => fresh = Some(slots),
                        Err(status) => return Err((status, entry)),
                    }
                }
                (result, _) => return result,
            }
        }
        drop(fresh);
        Err((NtStatus::INSUFFICIENT_RESOURCES, entry))
    }

    /// Removes and returns the entry for `id` (dropped by the caller,
    /// outside the lock). After mass deletes the table shrinks, with the
    /// same care as it grows.
    pub fn remove(&self, id: u64) -> Option<V> {
        let (removed, wanted, retired) = {
            let mut guard = self.inner.lock();
            let removed = guard.remove(id);
            let wanted = if removed.is_some() { guard.resize_wanted(0) } else { None };
            (removed, wanted, guard.retired.take())
        };
        drop(retired);
        // A failed allocation only leaves the table larger than it needs.
        if let Some(fresh) = wanted.and_then(|capacity| PoolSlice::try_zeroed(capacity, self.tag).ok()) {
            let (unused, retired) = {
                let mut guard = self.inner.lock();
                let unused = guard.start_resize(fresh);
                (unused, guard.retired.take())
            };
            drop((unused, retired));
        }
        removed
    }

    /// Runs `f` on the entry for `id` under the shared lock (keep it short:
    /// DISPATCH_LEVEL).
    pub fn with<R>(&self, id: u64, f: impl FnOnce(&V::Target) -> R) -> Option<R> {
        let guard = self.inner.read();
        guard.entry(id).map(|entry| f(entry))
    }

    /// Calls `visit` for every entry under the shared lock.
    pub fn for_each(&self, mut visit: impl FnMut(u64, &V::Target)) {
        let guard = self.inner.read();
        for slot in guard.occupied() {
            if let Some(entry) = slot.entry.as_ref() {
                visit(slot.key, entry);
            }
        }
    }

    /// The first id whose entry satisfies `test` (under the shared lock).
    pub fn find_id(&self, mut test: impl FnMut(&V::Target) -> bool) -> Option<u64> {
        let guard = self.inner.read();
        guard.occupied().find(|s| s.entry.as_deref().is_some_and(&mut test)).map(|s| s.key)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.inner.read().len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Slots in the array inserts go to (statistics and tests).
    pub fn capacity(&self) -> usize {
        self.inner.read().capacity()
    }

    /// Whether a resize is under way (entries still in the old array).
    pub fn is_resizing(&self) -> bool {
        self.inner.read().old.is_some()
    }

    /// Removes one arbitrary entry (unload drains tables with this, one
    /// entry at a time, so no drop runs under the lock).
    pub fn pop_any(&self) -> Option<V> {
        let (removed, retired) = {
            let mut guard = self.inner.lock();
            let id = guard.any_id();
            (id.and_then(|id| guard.remove(id)), guard.retired.take())
        };
        drop(retired);
        removed
    }

    /// Frees the slot arrays once the table is empty (end of unload).
    pub fn release_storage(&self) {
        let old = {
            let mut guard = self.inner.lock();
            if guard.len != 0 {
                return;
            }
            guard.cursor = 0;
            (guard.slots.take(), guard.old.take(), guard.retired.take())
        };
        drop(old);
    }
}
