//! The measurements criterion cannot make, printed as JSON for the report
//! generator (`bench/report.py`):
//!
//! - `wfpbench callgrind policies` and `wfpbench callgrind scale <filters>`:
//!   run under `valgrind --tool=callgrind --toggle-collect=wfpbench_measure
//!   --dump-after=wfpbench_measure`, so that every call of
//!   [`wfpbench_measure`] becomes one profile dump holding only that
//!   call's instructions; the manifest printed on stdout says, in order,
//!   what each dump measured. Classify figures come from two dumps of N and
//!   2N classifications (the difference divided by N, so fixed costs
//!   cancel); notify figures from the inclusive cost of the notify symbols.
//!   Setup (up to 100,000 filters through the simulated engine) runs with
//!   callgrind's instrumentation off (`--instr-atstart=no`); a client
//!   request switches it on once the world is built.
//! - `wfpbench native`: memory per context, allocations per classify, notify
//!   in bulk, and classify throughput with one and two threads.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::atomic::Ordering;
use std::time::Instant;
use wfpcallout_bench::{
    CLASSIFY_SCALES, CountingAlloc, HEAP_ALLOCATIONS, NOTIFY_CHUNK, NOTIFY_SCALES, Policy, Variant, World,
    notify_add_all, notify_delete_all, throughput,
};
use wfpcallout_simkernel::pool;

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

/// Classifications per callgrind dump (N; the second dump runs 2N).
const CG_CLASSIFY: u64 = 10_000;
/// The same for the engine path and audit (thousands of instructions each).
const CG_SLOW: u64 = 1_000;
/// Clean one- and two-thread throughput runs wanted per variant.
const THROUGHPUT_RUNS: usize = 5;
/// Time budget for the throughput rounds, per filter count.
const THROUGHPUT_BUDGET: std::time::Duration = std::time::Duration::from_secs(45);
/// Filter counts of the throughput runs.
const THROUGHPUT_SCALES: [usize; 2] = [1, 10_000];
/// The share of the wall time every thread must have spent on a CPU for a
/// run to count.
const CLEAN_SHARE: f64 = 0.9;
/// Notify operations per callgrind dump (warm-up, measured).
const CG_NOTIFY: [usize; 2] = [64, 256];

/// `VG_USERREQ_TOOL_BASE('C', 'T')`: callgrind's client requests.
const CALLGRIND_BASE: u64 = (b'C' as u64) << 24 | (b'T' as u64) << 16;
/// `CALLGRIND_START_INSTRUMENTATION`.
const START_INSTRUMENTATION: u64 = CALLGRIND_BASE + 4;
/// `CALLGRIND_STOP_INSTRUMENTATION`.
const STOP_INSTRUMENTATION: u64 = CALLGRIND_BASE + 5;

/// Sends a valgrind client request without arguments. Outside valgrind the
/// sequence does nothing (four rotations of rdi by 128 bits in all, and an
/// exchange of rbx with itself) and returns 0.
#[cfg(target_arch = "x86_64")]
fn client_request(request: u64) -> u64 {
    let args: [u64; 6] = [request, 0, 0, 0, 0, 0];
    let mut result: u64 = 0;
    // SAFETY: valgrind's documented amd64 client-request sequence; it reads
    // the six words at rax and writes only rdx (natively it changes nothing).
    unsafe {
        core::arch::asm!(
            "rol rdi, 3",
            "rol rdi, 13",
            "rol rdi, 61",
            "rol rdi, 51",
            "xchg rbx, rbx",
            in("rax") args.as_ptr(),
            inout("rdx") result,
            inout("rdi") 0u64 => _,
            options(nostack),
        );
    }
    result
}

#[cfg(not(target_arch = "x86_64"))]
fn client_request(_request: u64) -> u64 {
    0
}

/// The one function callgrind collects in; every call is one dump.
#[unsafe(no_mangle)]
#[inline(never)]
pub fn wfpbench_measure(job: &mut dyn FnMut()) {
    job();
}

/// Lines of the callgrind manifest, one JSON object per dump.
struct Manifest {
    lines: Vec<String>,
}

impl Manifest {
    fn measure(&mut self, description: String, mut job: impl FnMut()) {
        wfpbench_measure(&mut job);
        self.lines.push(description);
    }

    /// Warm-up, N and 2N classifications of one configuration.
    fn classify(&mut self, world: &mut World, variant: Option<Variant>, filters: usize, iters: u64) {
        let name = variant.map_or("engine", Variant::name);
        let policy = world.policy().name();
        for (phase, n) in [("warm", iters), ("n", iters), ("2n", 2 * iters)] {
            world.prepare(n);
            let expected = world.policy().expected_action();
            let mut verdicts = 0;
            self.measure(
                format!(
                    r#"{{"kind":"classify","variant":"{name}","policy":"{policy}","filters":{filters},"phase":"{phase}","iters":{n}}}"#
                ),
                || {
                    verdicts = match variant {
                        Some(variant) => world.classify(variant, n),
                        None => world.classify_engine(n),
                    };
                },
            );
            if world.policy() != Policy::RateLimitDrop && variant != Some(Variant::Empty) {
                assert_eq!(verdicts, expected.wrapping_mul(n as u32), "{name} {policy}: wrong verdicts");
            }
        }
    }

    /// Notify ADD/DELETE through notifyFn alone and through the engine, in
    /// chunks, at the world's population.
    fn notify(&mut self, world: &mut World, filters: usize) {
        for (phase, ops) in [("warm", CG_NOTIFY[0]), ("measured", CG_NOTIFY[1])] {
            self.measure(
                format!(r#"{{"kind":"notify","path":"driver","filters":{filters},"phase":"{phase}","ops":{ops}}}"#),
                || {
                    for _ in 0..ops / NOTIFY_CHUNK {
                        let mut chunk = world.fresh_filters(NOTIFY_CHUNK);
                        notify_add_all(&mut chunk);
                        notify_delete_all(&mut chunk);
                    }
                },
            );
            self.measure(
                format!(r#"{{"kind":"notify","path":"engine","filters":{filters},"phase":"{phase}","ops":{ops}}}"#),
                || {
                    for _ in 0..ops / NOTIFY_CHUNK {
                        let ids = world.engine_add_all(NOTIFY_CHUNK);
                        World::engine_delete_all(&ids);
                    }
                },
            );
        }
    }
}

fn callgrind(args: &[String]) {
    let mut manifest = Manifest { lines: Vec::new() };
    match args.first().map(String::as_str) {
        Some("policies") => {
            for policy in Policy::ALL {
                let mut world = World::new(1, policy);
                client_request(START_INSTRUMENTATION);
                let slow = policy == Policy::Audit;
                manifest.classify(&mut world, Some(Variant::Driver), 1, if slow { CG_SLOW } else { CG_CLASSIFY });
                manifest.classify(&mut world, None, 1, CG_SLOW);
                if policy == Policy::Permit {
                    for variant in [Variant::Empty, Variant::HashSip, Variant::HashFib, Variant::BTree] {
                        manifest.classify(&mut world, Some(variant), 1, CG_CLASSIFY);
                    }
                }
                client_request(STOP_INSTRUMENTATION);
                world.finish();
            }
        }
        Some("scale") => {
            let filters: usize = args.get(1).and_then(|s| s.parse().ok()).expect("scale <filters>");
            let mut world = World::new(filters, Policy::Permit);
            client_request(START_INSTRUMENTATION);
            if CLASSIFY_SCALES.contains(&filters) {
                for variant in Variant::ALL {
                    manifest.classify(&mut world, Some(variant), filters, CG_CLASSIFY);
                }
                manifest.classify(&mut world, None, filters, CG_SLOW);
            }
            if NOTIFY_SCALES.contains(&filters) {
                manifest.notify(&mut world, filters);
            }
            client_request(STOP_INSTRUMENTATION);
            world.finish();
        }
        _ => panic!("usage: wfpbench callgrind (policies | scale <filters>)"),
    }
    println!("[{}]", manifest.lines.join(",\n"));
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Pool and heap allocations per classify over `iters` classifications.
fn allocations(world: &mut World, variant: Option<Variant>, iters: u64) -> (f64, f64) {
    world.prepare(iters);
    let (pool_before, _) = pool::totals();
    let heap_before = HEAP_ALLOCATIONS.load(Ordering::Relaxed);
    match variant {
        Some(variant) => black_box(world.classify(variant, iters)),
        None => black_box(world.classify_engine(iters)),
    };
    let heap = HEAP_ALLOCATIONS.load(Ordering::Relaxed) - heap_before;
    let (pool_after, _) = pool::totals();
    ((pool_after - pool_before) as f64 / iters as f64, heap as f64 / iters as f64)
}

fn native() {
    let mut out = String::from("{\n");

    // Memory per context at every scale.
    let mut scales: Vec<usize> = CLASSIFY_SCALES.iter().chain(NOTIFY_SCALES.iter()).copied().collect();
    scales.sort_unstable();
    scales.dedup();
    let mut rows = Vec::new();
    for &filters in &scales {
        let world = World::new(filters, Policy::Permit);
        let m = World::memory();
        rows.push(format!(
            r#"{{"filters":{filters},"contexts":[{},{}],"counters":[{},{}],"table":[{},{}]}}"#,
            m.contexts.0, m.contexts.1, m.counters.0, m.counters.1, m.table.0, m.table.1
        ));
        world.finish();
    }
    let _ = writeln!(out, r#""memory":[{}],"#, rows.join(","));
    let _ = writeln!(
        out,
        r#""sizes":{{"FilterContext":{},"FWPS_FILTER2":{}}},"#,
        size_of::<wfpcallout::filter_context::FilterContext>(),
        size_of::<fwps_types::FWPS_FILTER2>()
    );

    // Allocations per classify (pool: the driver's; heap: anyone's, the
    // simulated kernel included).
    let mut rows = Vec::new();
    for policy in Policy::ALL {
        let mut world = World::new(1, policy);
        let mut variants = vec![Some(Variant::Driver), None];
        if policy == Policy::Permit {
            variants.extend([Variant::Empty, Variant::HashSip, Variant::HashFib, Variant::BTree].map(Some));
        }
        for variant in variants {
            allocations(&mut world, variant, 1_000);
            let (pool_per, heap_per) = allocations(&mut world, variant, 10_000);
            rows.push(format!(
                r#"{{"variant":"{}","policy":"{}","pool":{pool_per},"heap":{heap_per}}}"#,
                variant.map_or("engine", Variant::name),
                policy.name()
            ));
        }
        world.finish();
    }
    let _ = writeln!(out, r#""allocations":[{}],"#, rows.join(","));

    // Notify in bulk: add N filters to an empty driver, then delete them.
    let mut rows = Vec::new();
    for filters in NOTIFY_SCALES {
        let mut world = World::new(0, Policy::Permit);
        let mut batch = world.fresh_filters(filters);
        let start = Instant::now();
        notify_add_all(&mut batch);
        let add = start.elapsed().as_nanos() as f64 / filters as f64;
        let start = Instant::now();
        notify_delete_all(&mut batch);
        let delete = start.elapsed().as_nanos() as f64 / filters as f64;
        let start = Instant::now();
        let ids = world.engine_add_all(filters);
        let engine_add = start.elapsed().as_nanos() as f64 / filters as f64;
        let start = Instant::now();
        World::engine_delete_all(&ids);
        let engine_delete = start.elapsed().as_nanos() as f64 / filters as f64;
        rows.push(format!(
            r#"{{"filters":{filters},"driver_add_ns":{add:.1},"driver_delete_ns":{delete:.1},"engine_add_ns":{engine_add:.1},"engine_delete_ns":{engine_delete:.1}}}"#
        ));
        world.finish();
    }
    let _ = writeln!(out, r#""bulk_notify":[{}],"#, rows.join(","));

    // Throughput with one and two threads, at 1 filter (both threads on the
    // same filter and context: the sharpest test of "no shared written
    // cache line") and at 10,000 (every classification misses the caches,
    // so the two cores also share the memory hierarchy). Rounds run every
    // variant once with one thread and once with two, so that load from
    // other processes falls on all alike. A run counts only if every thread
    // was on a CPU for at least 90 % of its wall time (on a shared machine
    // another process can hold the second core, and then two threads do not
    // run side by side); rounds go on until every variant has enough such
    // runs or the time budget is spent.
    let mut rows = Vec::new();
    for filters in THROUGHPUT_SCALES {
        throughput_rows(filters, &mut rows);
    }
    let _ = writeln!(out, r#""throughput":[{}]"#, rows.join(","));
    out.push('}');
    println!("{out}");
}

/// One throughput scale's rounds (see `native`), as JSON rows.
fn throughput_rows(filters: usize, rows: &mut Vec<String>) {
    let world = World::new(filters, Policy::Permit);
    let variants = [Variant::Driver, Variant::HashFib, Variant::HashSip, Variant::BTree, Variant::Empty];
    // Calibrate to about a twentieth of a second per single-thread run: short
    // runs fit in the moments when the machine has both cores free.
    let per_thread: Vec<u64> = variants
        .iter()
        .map(|&v| ((throughput(v, world.inputs(), world.filters(), 1, 200_000).rate * 0.05) as u64).max(100_000))
        .collect();
    let mut runs: Vec<[Vec<(f64, f64)>; 2]> = variants.iter().map(|_| [Vec::new(), Vec::new()]).collect();
    let clean = |runs: &Vec<(f64, f64)>| runs.iter().filter(|r| r.1 >= CLEAN_SHARE).count();
    let deadline = Instant::now() + THROUGHPUT_BUDGET;
    for round in 0.. {
        if round >= THROUGHPUT_RUNS && runs.iter().flatten().all(|r| clean(r) >= THROUGHPUT_RUNS) {
            break;
        }
        if Instant::now() > deadline {
            break;
        }
        for (i, &variant) in variants.iter().enumerate() {
            for (slot, threads) in [(0, 1), (1, 2)] {
                let run = throughput(variant, world.inputs(), world.filters(), threads, per_thread[i]);
                runs[i][slot].push((run.rate, run.core_share));
            }
        }
    }
    for (i, variant) in variants.iter().enumerate() {
        for (slot, threads) in [(0, 1), (1, 2)] {
            let list: Vec<String> = runs[i][slot].iter().map(|r| format!("[{:.0},{:.3}]", r.0, r.1)).collect();
            let clean_rates: Vec<f64> = runs[i][slot].iter().filter(|r| r.1 >= CLEAN_SHARE).map(|r| r.0).collect();
            let (median_clean, best_clean) = if clean_rates.is_empty() {
                ("null".to_string(), "null".to_string())
            } else {
                let best = clean_rates.iter().copied().fold(0.0, f64::max);
                (format!("{:.0}", median(clean_rates)), format!("{best:.0}"))
            };
            rows.push(format!(
                r#"{{"variant":"{}","threads":{threads},"filters":{filters},"per_thread":{},"median":{median_clean},"best":{best_clean},"clean":{},"runs":[{}]}}"#,
                variant.name(),
                per_thread[i],
                clean(&runs[i][slot]),
                list.join(",")
            ));
        }
    }
    world.finish();
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("callgrind") => callgrind(&args[1..]),
        Some("native") => native(),
        _ => {
            eprintln!("usage: wfpbench (callgrind (policies | scale <filters>) | native)");
            std::process::exit(2);
        }
    }
}
