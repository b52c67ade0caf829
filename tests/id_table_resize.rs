//! The id table (filter contexts, flows) grows and shrinks a few entries
//! at a time: a resize moves at most `MIGRATE_STEP` old slots per insert
//! or remove, every entry stays findable meanwhile, and the table shrinks
//! after mass deletes. The cost side (worst single operation against the
//! median) is measured by the bench (`notify_worst_over_median`,
//! `flow_worst_over_median`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::HashMap;
use wfpcallout::platform::id_table::{IdTable, MIGRATE_STEP};
use wfpcallout::platform::pool::{NonNullOwner, PoolTag};
use wfpcallout_scenario::Harness;
use wfpcallout_simkernel::pool;

/// A test entry: a heap box holding its own id.
#[repr(transparent)]
struct Entry(Box<u64>);

// SAFETY: repr(transparent) over a Box: `None` is the null pointer.
unsafe impl NonNullOwner for Entry {}

impl std::ops::Deref for Entry {
    type Target = u64;

    fn deref(&self) -> &u64 {
        &self.0
    }
}

const TAG: PoolTag = PoolTag::new(*b"WfTt");

fn entry(id: u64) -> Entry {
    Entry(Box::new(id))
}

/// Every entry in the table, as `for_each` sees it.
fn contents(table: &IdTable<Entry>) -> HashMap<u64, u64> {
    let mut seen = HashMap::new();
    table.for_each(|id, value| assert!(seen.insert(id, *value).is_none(), "{id} seen twice"));
    seen
}

#[test]
fn a_resize_moves_a_few_slots_per_operation_and_everything_stays_findable() {
    let _kernel = Harness::boot();
    let table: IdTable<Entry> = IdTable::new(TAG);
    let mut id = 0u64;
    let mut resizes = 0;
    while table.len() < 70_000 {
        id += 1;
        table.insert(id, entry(id)).map_err(|(status, _)| status).unwrap();
        if table.is_resizing() {
            resizes += 1;
            // The old array has half the new one's slots; MIGRATE_STEP of
            // them go with every operation, the one that started it included.
            let old_slots = table.capacity() / 2;
            let mut operations = 1;
            while table.is_resizing() {
                id += 1;
                table.insert(id, entry(id)).map_err(|(status, _)| status).unwrap();
                operations += 1;
                assert_eq!(table.with(id / 2 + 1, |v| *v), Some(id / 2 + 1), "found mid-resize");
            }
            assert!(operations <= old_slots.div_ceil(MIGRATE_STEP), "{operations} operations for {old_slots} slots");
            assert!(table.len() * 2 <= table.capacity(), "finished before the next resize was due");
        }
    }
    assert!(resizes >= 12, "{resizes} resizes");
    assert_eq!(contents(&table).len(), table.len());
    for id in (1..=id).step_by(97) {
        assert_eq!(table.with(id, |v| *v), Some(id));
    }
    while table.pop_any().is_some() {}
    table.release_storage();
    assert_eq!(pool::usage_by_tag().get("WfTt").map_or(0, |u| u.bytes), 0, "every slot array freed");
}

#[test]
fn mass_deletes_shrink_the_table_and_random_operations_match_a_map() {
    let _kernel = Harness::boot();
    let table: IdTable<Entry> = IdTable::new(TAG);
    let mut model: HashMap<u64, u64> = HashMap::new();
    let mut seed = 0x1234_5678_9abc_def1u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..3 {
        // Grow to tens of thousands with some removals...
        for _ in 0..40_000 {
            let id = next() % 60_000 + 2;
            if next() % 4 == 0 {
                assert_eq!(table.remove(id).map(|e| *e.0), model.remove(&id), "remove {id}");
            } else {
                let inserted = table.insert(id, entry(id));
                match model.insert(id, id) {
                    None => assert!(inserted.is_ok(), "insert {id}"),
                    Some(_) => assert!(inserted.is_err(), "{id} inserted twice"),
                }
            }
            assert_eq!(table.len(), model.len());
        }
        let big = table.capacity();
        assert_eq!(contents(&table), model, "round {round}");
        // ...then delete all but a few.
        let keep: Vec<u64> = model.keys().copied().take(5).collect();
        let gone: Vec<u64> = model.keys().copied().filter(|id| !keep.contains(id)).collect();
        for id in gone {
            assert_eq!(table.remove(id).map(|e| *e.0), model.remove(&id));
            assert_eq!(table.with(keep[0], |v| *v), Some(keep[0]), "kept entries stay findable");
        }
        assert!(table.capacity() <= 128, "round {round}: {} slots for 5 entries (was {big})", table.capacity());
        assert_eq!(contents(&table), model);
    }
    while table.pop_any().is_some() {}
    table.release_storage();
    assert_eq!(pool::usage_by_tag().get("WfTt").map_or(0, |u| u.bytes), 0);
}
