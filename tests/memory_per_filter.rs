//! Memory per filter stays bounded on big machines: a filter's context,
//! counters and share of the id table fit in 512 bytes of non-paged pool
//! at 2, 64 and 128 processors (the simulated machine has 2; the counters
//! a filter would get on 64 and 128 are allocated with that count), and
//! counting on any processor index loses nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use wfpcallout::platform::per_cpu_counters::{Counter, PerCpuCounters, processor_count};
use wfpcallout_scenario::{Harness, Layer, PolicySource};
use wfpcallout_simkernel::pool;
use wfpcallout_wire::{Label, LogLevel, PolicyAction, PolicyRepr};

const FILTERS: usize = 10_000;
const BUDGET: f64 = 512.0;

fn bytes(tag: &str) -> usize {
    pool::usage_by_tag().get(tag).map_or(0, |u| u.bytes)
}

#[test]
fn a_filter_costs_at_most_512_bytes_on_2_64_and_128_processors() {
    let harness = Harness::load();
    let policy = PolicyRepr { action: PolicyAction::Permit, log_level: LogLevel::Off, label: Label::new("m").unwrap() };
    let before = (bytes("WfFc"), bytes("WfCn"), bytes("WfTb"));
    let ids: Vec<u64> =
        (0..FILTERS).map(|_| harness.add_filter(Layer::ConnectV4, PolicySource::Policy(&policy)).unwrap()).collect();
    let per = |now: usize, then: usize| (now - then) as f64 / FILTERS as f64;
    let context = per(bytes("WfFc"), before.0);
    let counters_here = per(bytes("WfCn"), before.1);
    let table = per(bytes("WfTb"), before.2);
    assert_eq!(processor_count(), 2, "the simulated machine");
    for processors in [2usize, 64, 128] {
        let held = bytes("WfCn");
        let counters = PerCpuCounters::try_new(processors).unwrap();
        let counter_bytes = (bytes("WfCn") - held) as f64;
        drop(counters);
        if processors == 2 {
            assert_eq!(counter_bytes, counters_here, "what a filter's context allocated here");
        }
        let total = context + counter_bytes + table;
        assert!(
            total <= BUDGET,
            "{processors} processors: {total} B per filter (context {context}, counters {counter_bytes}, table {table})"
        );
    }
    for id in ids {
        harness.delete_filter(id).unwrap();
    }
    harness.unload_and_check();
}

#[test]
fn counts_from_every_processor_index_add_up() {
    let _kernel = Harness::boot();
    for processors in [1usize, 2, 3, 64, 128] {
        let counters = PerCpuCounters::try_new(processors).unwrap();
        for processor in 0..200 {
            counters.add_on(processor, Counter::Permitted);
            if processor % 3 == 0 {
                counters.add_on(processor, Counter::Blocked);
            }
        }
        let snapshot = counters.snapshot();
        assert_eq!((snapshot.permitted, snapshot.blocked, snapshot.matched), (200, 67, 267), "{processors}");
    }
}
