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
//! - `wfpbench native`: memory per context, allocations per classify, and
//!   what a filter costs when the kernel says it has 2, 64 and 128
//!   processors.
//!
//! No time or throughput is measured here: on a shared 2-core machine the
//! two-thread figures could not be reproduced, and every target is in
//! instructions or bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::atomic::Ordering;
use wfpcallout_bench::ask::AskWorld;
use wfpcallout_bench::{
    CLASSIFY_SCALES, CountingAlloc, HEAP_ALLOCATIONS, NOTIFY_CHUNK, NOTIFY_SCALES, Policy, Variant, World,
    notify_add_all, notify_delete_all,
};
use wfpcallout_simkernel::pool;

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

/// Classifications per callgrind dump (N; the second dump runs 2N).
const CG_CLASSIFY: u64 = 10_000;
/// The same for the engine path and audit (thousands of instructions each).
const CG_SLOW: u64 = 1_000;
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
                // The engine reports what the whole layer decided: at
                // flow-established CONTINUE, i.e. no decision (PERMIT).
                let expected = if variant.is_none() && world.policy() == Policy::FlowEstablished {
                    fwps_types::fwp::FWP_ACTION_PERMIT
                } else {
                    expected
                };
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

/// Flows established before the flow-established figures are measured,
/// and per measured dump: the table neither grows nor shrinks inside the
/// window (it doubles at half load: 1,100 + 4 x 200 stays below 2,048).
/// Filters added to measure a filter's memory on bigger machines.
const MEMORY_FILTERS: usize = 10_000;
const FLOW_POPULATION: u64 = 1_100;
const FLOW_ITERS: u64 = 200;
/// Asks per measured dump (the second dump twice as many): with 1,000
/// waiting, 1,000 + 2 x 12 stays below the table's 1,024 requests.
const ASK_ITERS: usize = 12;
/// Ordinary operations sampled per growth run (beside every power-of-two
/// neighbourhood, where a doubling table grows).
const GROWTH_SAMPLES: usize = 64;

fn callgrind(args: &[String]) {
    let mut manifest = Manifest { lines: Vec::new() };
    match args.first().map(String::as_str) {
        Some("policies") => {
            for policy in Policy::ALL {
                let mut world = World::new(1, policy);
                let flows = policy == Policy::FlowEstablished;
                if flows {
                    world.classify_engine(FLOW_POPULATION);
                }
                client_request(START_INSTRUMENTATION);
                let slow = matches!(policy, Policy::AuditLogged);
                if policy.direct() {
                    manifest.classify(&mut world, Some(Variant::Driver), 1, if slow { CG_SLOW } else { CG_CLASSIFY });
                }
                manifest.classify(&mut world, None, 1, if flows { FLOW_ITERS } else { CG_SLOW });
                if policy == Policy::Permit {
                    for variant in Variant::OTHERS {
                        manifest.classify(&mut world, Some(variant), 1, CG_CLASSIFY);
                    }
                }
                if policy == Policy::Block {
                    // The floor a static block is held to.
                    manifest.classify(&mut world, Some(Variant::Minimal), 1, CG_CLASSIFY);
                }
                client_request(STOP_INSTRUMENTATION);
                world.finish();
            }
        }
        Some("ask") => {
            let waiting: usize = args.get(1).and_then(|s| s.parse().ok()).expect("ask <waiting>");
            let mut world = AskWorld::new(waiting);
            client_request(START_INSTRUMENTATION);
            for (phase, n) in [("warm", ASK_ITERS), ("n", ASK_ITERS), ("2n", 2 * ASK_ITERS)] {
                let mut pended = 0;
                manifest
                    .measure(format!(r#"{{"kind":"ask","waiting":{waiting},"phase":"{phase}","iters":{n}}}"#), || {
                        pended = world.ask(n)
                    });
                assert_eq!(pended, n, "every ask pended");
                assert_eq!(world.answer_all(), n);
            }
            for (phase, n) in [("warm", ASK_ITERS), ("n", ASK_ITERS), ("2n", 2 * ASK_ITERS)] {
                assert_eq!(world.ask(n), n);
                let mut answered = 0;
                manifest.measure(
                    format!(r#"{{"kind":"answer","waiting":{waiting},"phase":"{phase}","iters":{n}}}"#),
                    || answered = world.answer_all(),
                );
                assert_eq!(answered, n, "every request read and answered");
            }
            assert_eq!(world.live(), waiting);
            client_request(STOP_INSTRUMENTATION);
            world.finish();
        }
        Some("growth") => {
            let max: usize = args.get(1).and_then(|s| s.parse().ok()).expect("growth <max>");
            growth(&mut manifest, max);
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
        _ => panic!("usage: wfpbench callgrind (policies | ask <waiting> | growth <max> | scale <filters>)"),
    }
    println!("[{}]", manifest.lines.join(",\n"));
}

/// Whether the `i`th operation of a growth run (the population before it
/// is `i`) is measured on its own: every population within 2 of a power of
/// two (where a table that doubles at half load grows), and a sample of
/// the rest.
fn growth_measured(i: usize, max: usize) -> bool {
    let near_power = (i.saturating_sub(2)..=i + 2).any(|p| p.is_power_of_two() && p >= 8);
    near_power || i.is_multiple_of((max / GROWTH_SAMPLES).max(1))
}

/// Worst single operation against the median as the population grows from
/// 0 to `max`: notifyFn ADD (filter table) and flow-established classify
/// (flow table), each measured alone at the populations
/// [`growth_measured`] picks (one dump each); the rest run unmeasured.
fn growth(manifest: &mut Manifest, max: usize) {
    // Instrumentation goes on only around the measured operations (the
    // 100,000 unmeasured ones run at valgrind's uninstrumented speed).
    let measure_alone = |manifest: &mut Manifest, description: String, job: &mut dyn FnMut()| {
        client_request(START_INSTRUMENTATION);
        manifest.measure(description, job);
        client_request(STOP_INSTRUMENTATION);
    };
    let mut world = World::new(0, Policy::Permit);
    let mut filters = world.fresh_filters(max);
    for (i, filter) in filters.iter_mut().enumerate() {
        if growth_measured(i, max) {
            let description = format!(r#"{{"kind":"growth","what":"notify-add","population":{i}}}"#);
            measure_alone(manifest, description, &mut || notify_add_all(std::slice::from_mut(filter)));
        } else {
            notify_add_all(std::slice::from_mut(filter));
        }
    }
    notify_delete_all(&mut filters);
    world.finish();

    let mut world = World::new(1, Policy::FlowEstablished);
    for i in 0..max {
        if growth_measured(i, max) {
            let description = format!(r#"{{"kind":"growth","what":"flow-established","population":{i}}}"#);
            measure_alone(manifest, description, &mut || {
                world.classify_engine(1);
            });
        } else {
            world.classify_engine(1);
        }
    }
    world.finish();
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
            r#"{{"filters":{filters},"contexts":[{},{}],"table":[{},{}]}}"#,
            m.contexts.0, m.contexts.1, m.table.0, m.table.1
        ));
        world.finish();
    }
    let _ = writeln!(out, r#""memory":[{}],"#, rows.join(","));
    let _ = writeln!(
        out,
        r#""sizes":{{"FilterContext":{},"FWPS_FILTER2":{}}},"#,
        size_of::<wfpcallout::filters::filter_context::FilterContext>(),
        size_of::<fwps_types::FWPS_FILTER2>()
    );

    // Allocations per classify (pool: the driver's; heap: anyone's, the
    // simulated kernel included).
    let mut rows = Vec::new();
    for policy in Policy::ALL {
        let mut world = World::new(1, policy);
        let mut variants = vec![None];
        if policy.direct() {
            variants.push(Some(Variant::Driver));
        }
        if policy == Policy::Permit {
            variants.extend(Variant::OTHERS.map(Some));
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

    // What a filter costs on bigger machines: the simulated machine runs on
    // 2 virtual processors, and its kernel says it has 2, 64 or 128 while
    // the filters are added (all the driver's pool, by every tag).
    let mut rows = Vec::new();
    let driver_bytes = || pool::usage_by_tag().values().map(|usage| usage.bytes).sum::<usize>();
    for processors in [2usize, 64, 128] {
        let empty = World::with_processors(processors, 0, Policy::Permit);
        let before = driver_bytes();
        empty.finish();
        let world = World::with_processors(processors, MEMORY_FILTERS, Policy::Permit);
        let after = driver_bytes();
        world.finish();
        rows.push(format!(
            r#"{{"processors":{processors},"filters":{MEMORY_FILTERS},"bytes":{}}}"#,
            after.saturating_sub(before)
        ));
    }
    let _ = writeln!(out, r#""memory_by_processors":[{}]"#, rows.join(","));
    out.push('}');
    println!("{out}");
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
