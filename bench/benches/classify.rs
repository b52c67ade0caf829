//! Time per classify and per notify, with criterion.
//!
//! Groups (criterion ids `group/function/parameter`):
//! - `policy/<variant>/<policy>`: one filter; the driver's classifyFn and the
//!   whole simulated engine path for every policy, the baselines for permit;
//! - `scale/<variant>/<filters>`: permit at 1, 100, 10,000 and 100,000
//!   filters, visited in a fixed pseudo-random order;
//! - `notify/<path>-<add|delete>/<filters>`: notifyFn ADD and DELETE alone
//!   and through the simulated engine, at 1k, 10k and 100k filters.
//!
//! Not run by `.ci/bench.sh` (its figures are instructions and bytes, not
//! time): `cargo bench -p wfpcallout-bench --bench classify` when time per
//! operation on this machine is wanted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::{Duration, Instant};
use wfpcallout_bench::{
    CLASSIFY_SCALES, NOTIFY_CHUNK, NOTIFY_SCALES, Policy, Variant, World, notify_add_all, notify_delete_all,
};

fn time_classify(world: &mut World, variant: Option<Variant>, iters: u64) -> Duration {
    world.prepare(iters);
    let start = Instant::now();
    let verdicts = match variant {
        Some(variant) => world.classify(variant, iters),
        None => world.classify_engine(iters),
    };
    let elapsed = start.elapsed();
    black_box(verdicts);
    elapsed
}

fn name(variant: Option<Variant>) -> &'static str {
    variant.map_or("engine", Variant::name)
}

fn policies(c: &mut Criterion) {
    for policy in Policy::ALL {
        let mut world = World::new(1, policy);
        let mut group = c.benchmark_group("policy");
        let mut variants = vec![None];
        if policy.direct() {
            variants.push(Some(Variant::Driver));
        }
        if policy == Policy::Permit {
            variants.extend(Variant::OTHERS.map(Some));
        }
        for variant in variants {
            group.bench_function(BenchmarkId::new(name(variant), policy.name()), |b| {
                b.iter_custom(|iters| time_classify(&mut world, variant, iters))
            });
        }
        group.finish();
        world.finish();
    }
}

fn scale(c: &mut Criterion) {
    for count in CLASSIFY_SCALES {
        let mut world = World::new(count, Policy::Permit);
        let mut group = c.benchmark_group("scale");
        for variant in Variant::ALL.map(Some).into_iter().chain([None]) {
            group.bench_function(BenchmarkId::new(name(variant), count), |b| {
                b.iter_custom(|iters| time_classify(&mut world, variant, iters))
            });
        }
        group.finish();
        world.finish();
    }
}

/// Which half of an ADD/DELETE chunk is timed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Timed {
    Add,
    Delete,
}

/// Adds and deletes `iters` filters in chunks of [`NOTIFY_CHUNK`] through
/// notifyFn alone, timing only the ADDs or only the DELETEs.
fn time_notify(world: &mut World, timed: Timed, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters as usize;
    while left > 0 {
        let mut filters = world.fresh_filters(left.min(NOTIFY_CHUNK));
        left -= filters.len();
        let start = Instant::now();
        notify_add_all(&mut filters);
        if timed == Timed::Add {
            total += start.elapsed();
        }
        let start = Instant::now();
        notify_delete_all(&mut filters);
        if timed == Timed::Delete {
            total += start.elapsed();
        }
    }
    total
}

/// The same through the simulated engine (`FwpmFilterAdd0`, `FwpmFilterDeleteById0`).
fn time_engine_notify(world: &World, timed: Timed, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters as usize;
    while left > 0 {
        let count = left.min(NOTIFY_CHUNK);
        left -= count;
        let start = Instant::now();
        let ids = world.engine_add_all(count);
        if timed == Timed::Add {
            total += start.elapsed();
        }
        let start = Instant::now();
        World::engine_delete_all(&ids);
        if timed == Timed::Delete {
            total += start.elapsed();
        }
    }
    total
}

fn notify(c: &mut Criterion) {
    for count in NOTIFY_SCALES {
        let mut world = World::new(count, Policy::Permit);
        let mut group = c.benchmark_group("notify");
        for (label, timed) in [("add", Timed::Add), ("delete", Timed::Delete)] {
            group.bench_function(BenchmarkId::new(format!("driver-{label}"), count), |b| {
                b.iter_custom(|iters| time_notify(&mut world, timed, iters))
            });
            group.bench_function(BenchmarkId::new(format!("engine-{label}"), count), |b| {
                b.iter_custom(|iters| time_engine_notify(&world, timed, iters))
            });
        }
        group.finish();
        world.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    targets = policies, scale, notify
}
criterion_main!(benches);
