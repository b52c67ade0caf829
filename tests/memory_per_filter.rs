//! Memory per filter stays bounded on big machines: a filter's context
//! (its counters inside) and its share of the id table fit in 512 bytes of
//! non-paged pool whether the kernel says it has 2, 64 or 128 processors,
//! and nothing the driver allocates for a filter grows with that number.
//! (The driver asks the kernel for no processor count today: the 64 and
//! 128 runs keep it so. A per-processor allocation at ADD turns the test
//! red.)
//! Classifications on every processor reach the filter's counters (that
//! concurrent adds lose nothing is `filter_counters.rs`'s unit test: the
//! simulated engine's classify path does not make them race).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use fwps_types::fwp::FWP_ACTION_PERMIT;
use std::collections::BTreeMap;
use wfpcallout_scenario::{Harness, Layer, PolicySource};
use wfpcallout_simkernel::{irql, pool};
use wfpcallout_wire::{Label, LogLevel, PolicyAction, PolicyRepr};

const FILTERS: usize = 10_000;
const BUDGET: f64 = 512.0;

fn permit() -> PolicyRepr {
    PolicyRepr { action: PolicyAction::Permit, log_level: LogLevel::Off, label: Label::new("m").unwrap() }
}

/// Bytes the driver holds now, by tag.
fn bytes_by_tag() -> BTreeMap<String, usize> {
    pool::usage_by_tag().into_iter().map(|(tag, usage)| (tag, usage.bytes)).collect()
}

/// What adding [`FILTERS`] filters costs per filter, by tag, with the
/// kernel saying it has `processors` processors.
fn per_filter_on(processors: usize) -> BTreeMap<String, f64> {
    let harness = Harness::load();
    irql::report_processor_count(processors);
    let before = bytes_by_tag();
    let ids: Vec<u64> =
        (0..FILTERS).map(|_| harness.add_filter(Layer::ConnectV4, PolicySource::Policy(&permit())).unwrap()).collect();
    let after = bytes_by_tag();
    for id in ids {
        harness.delete_filter(id).unwrap();
    }
    harness.unload_and_check();
    after
        .iter()
        .map(|(tag, &bytes)| {
            let grown = bytes.saturating_sub(before.get(tag).copied().unwrap_or(0));
            (tag.clone(), grown as f64 / FILTERS as f64)
        })
        .filter(|(_, per)| *per > 0.0)
        .collect()
}

#[test]
fn a_filter_costs_at_most_512_bytes_on_2_64_and_128_processors() {
    let on_two = per_filter_on(2);
    assert_eq!(
        on_two.keys().map(String::as_str).collect::<Vec<_>>(),
        ["WfFc", "WfTb"],
        "a filter's pool: its context and its share of the id table"
    );
    for processors in [2usize, 64, 128] {
        let here = per_filter_on(processors);
        let total: f64 = here.values().sum();
        assert!(total <= BUDGET, "{processors} processors: {total} B per filter ({here:?})");
        assert_eq!(here, on_two, "{processors} processors: a filter's memory does not grow with them");
    }
}

#[test]
fn classifications_on_every_processor_are_all_counted() {
    let harness = Harness::load();
    let id = harness.add_filter(Layer::ConnectV4, PolicySource::Policy(&permit())).unwrap();
    const EACH: usize = 500;
    std::thread::scope(|scope| {
        for processor in 0..irql::PROCESSOR_COUNT {
            let harness = &harness;
            scope.spawn(move || {
                irql::pin_thread_to_processor(processor);
                for _ in 0..EACH {
                    assert_eq!(harness.classify(Layer::ConnectV4, id, 443).action, FWP_ACTION_PERMIT);
                }
            });
        }
    });
    let counters = harness.counters(id).unwrap();
    let all = (EACH * irql::PROCESSOR_COUNT) as u64;
    assert_eq!((counters.permitted, counters.matched, counters.blocked), (all, all, 0));
    harness.delete_filter(id).unwrap();
    harness.unload_and_check();
}
