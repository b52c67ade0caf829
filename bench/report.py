#!/usr/bin/env python3
"""Writes BENCHMARKS.md (stdout) and bench/results.json (--json) from the
results `.ci/bench.sh` collected, so both come from the same run.

Inputs (all under --results):
  callgrind/<job>/manifest.json + cg.out.<k>   one dump per measured call
  native.json                                  memory, allocations
  machine.json                                 what the machine and the toolchain are

Standard library only.
"""

import argparse
import json
import math
import re
from collections import defaultdict
from pathlib import Path

KERNEL_EXPORT = re.compile(r"^(Ex|Ke|Fwps|Fwpm|WfpSim)[A-Za-z0-9]*$")
HEAP_FUNCTIONS = {"malloc", "calloc", "realloc", "posix_memalign", "aligned_alloc", "memalign"}
LOCK_FUNCTIONS = {"ExAcquireSpinLockShared", "ExAcquireSpinLockExclusive"}
# The driver's entry points: where the engine (or the agent's IOCTL, for
# the read and the answer) hands control to the driver.
DRIVER_ENTRIES = {
    "wfpcallout::callbacks::trampolines::classify_fn",
    "wfpcallout::callbacks::trampolines::notify_fn",
    "wfpcallout::verdicts::pending::Pending::take_next",
    "wfpcallout::verdicts::pending::Pending::answer",
}
POLICIES = [
    ("permit", "permit"),
    ("block", "block"),
    ("audit", "audit, policy logs nothing"),
    ("audit-log-gated", "audit, policy logs at Info, driver's log gate closed"),
    ("audit-logged", "audit, policy logs at Info, gate open (line formatted and printed)"),
    ("rate-limit-pass", "rate-limit, token available"),
    ("rate-limit-drop", "rate-limit, bucket empty"),
    ("ask-no-agent", "ask, no agent connected"),
    ("lookup", "permit in lookup mode (an adopted filter alive)"),
    ("recv-accept", "permit at ALE_AUTH_RECV_ACCEPT_V4"),
    ("flow-established", "permit at ALE_FLOW_ESTABLISHED_V4, a new flow each time"),
]
SCALES = [1, 100, 10_000, 100_000]
NOTIFY_SCALES = [1_000, 10_000, 100_000]
VARIANT_LABEL = {
    "empty": "empty callback (floor of the loop, not a correct callout)",
    "minimal": "minimal correct callout",
    "driver": "**wfpcallout** (static path)",
    "hash-sip": "locked `HashMap`, SipHash, native lock",
    "hash-fib": "locked `HashMap`, Fibonacci hash, native lock",
    "btree": "locked `BTreeMap`, native lock",
    "engine": "whole simulated path",
}
BASELINES = ["hash-sip", "hash-fib", "btree"]

# The performance targets: (key, limit, "le" or "ge").
TARGETS = [
    ("static_over_minimal", 1.5, "le"),
    ("static_block_over_minimal", 1.5, "le"),
    ("lockedmap_over_static", 1.5, "ge"),
    ("notify_worst_over_median", 10.0, "le"),
    ("flow_worst_over_median", 10.0, "le"),
    ("pend_1000_over_0", 1.2, "le"),
    ("audit_over_permit", 1.3, "le"),
    ("bytes_per_filter_64cpu", 512.0, "le"),
]


# ---------------------------------------------------------------------------
# Callgrind dumps.


class Dump:
    """One callgrind dump: totals, self cost per function, call edges."""

    def __init__(self, path):
        self.events = []
        self.totals = []
        self.self_cost = defaultdict(lambda: None)
        self.edges = defaultdict(lambda: [0, None])  # (caller, callee) -> [calls, inclusive]
        current = None
        callee = None
        calls = None
        with open(path, encoding="utf-8", errors="replace") as f:
            for raw in f:
                line = raw.rstrip("\n")
                if not line:
                    continue
                if line.startswith("events:"):
                    self.events = line.split()[1:]
                elif line.startswith("totals:") or line.startswith("summary:"):
                    self.totals = [int(x) for x in line.split()[1:]]
                elif line.startswith("fn="):
                    current = line[3:]
                elif line.startswith("cfn="):
                    callee = line[4:]
                elif line.startswith("calls="):
                    calls = int(line[6:].split()[0])
                elif line[0].isdigit() or line[0] in "+-*":
                    costs = [int(x) for x in line.split()[1:]]
                    if calls is not None:
                        edge = self.edges[(current, callee)]
                        edge[0] += calls
                        edge[1] = add(edge[1], costs)
                        calls = None
                    else:
                        self.self_cost[current] = add(self.self_cost[current], costs)

    def event(self, costs, name):
        if costs is None or name not in self.events:
            return 0
        i = self.events.index(name)
        return costs[i] if i < len(costs) else 0

    def total(self, name):
        return self.event(self.totals, name)

    def calls_to(self, predicate):
        return sum(e[0] for (_, callee), e in self.edges.items() if predicate(callee))

    def inclusive_of(self, predicate, name="Ir", outer_only=True):
        """Inclusive cost of calls into functions matching predicate (calls
        made from another matching function are not counted twice)."""
        return sum(
            self.event(e[1], name)
            for (caller, callee), e in self.edges.items()
            if predicate(callee) and not (outer_only and predicate(caller))
        )

    def self_of(self, function, name="Ir"):
        return self.event(self.self_cost.get(function), name)

    def driver_own(self, name="Ir"):
        """What the driver executes itself: everything inside its entry
        points (called from outside the driver), less what it spends in the
        kernel's exports. A callback the kernel runs inside an export (the
        reauthorization classify inside FwpsCompleteOperation0) is counted
        as the driver's again."""
        inside = sum(
            self.event(e[1], name)
            for (caller, callee), e in self.edges.items()
            if callee in DRIVER_ENTRIES and not is_driver(caller)
        )
        exported = sum(
            self.event(e[1], name)
            for (caller, callee), e in self.edges.items()
            if is_kernel(callee) and is_driver(caller)
        )
        return inside - exported

    def driver_calls_to(self, predicate):
        """Calls the driver's own code makes into functions matching predicate."""
        return sum(e[0] for (caller, callee), e in self.edges.items() if predicate(callee) and is_driver(caller))


def add(a, b):
    if a is None:
        return list(b)
    if len(b) > len(a):
        a = a + [0] * (len(b) - len(a))
    return [x + (b[i] if i < len(b) else 0) for i, x in enumerate(a)]


def is_kernel(name):
    return bool(name) and bool(KERNEL_EXPORT.match(name))


def is_driver(name):
    """A function of the driver crate (its generic instances included)."""
    return bool(name) and "wfpcallout::" in name


def load_callgrind(root):
    """Yields (manifest entry, Dump) for every job directory."""
    for job in sorted(Path(root).glob("*/manifest.json")):
        manifest = json.loads(job.read_text())
        directory = job.parent
        dumps = sorted(directory.glob("cg.out.*"), key=lambda p: int(p.suffix[1:]))
        if len(dumps) < len(manifest):
            raise SystemExit(f"{directory.name}: {len(manifest)} measurements but {len(dumps)} dumps")
        for entry, path in zip(manifest, dumps):
            yield entry, Dump(path)


def per_op(a, b, n, f):
    """(f(b) - f(a)) / n: the cost of n more operations."""
    return (f(b) - f(a)) / n


def n_2n_figures(a, b, n):
    """Figures per operation from the dumps of n and 2n operations."""
    fig = {
        "ir": per_op(a, b, n, lambda d: d.total("Ir")),
        "own": per_op(a, b, n, lambda d: d.driver_own()),
        "kernel": per_op(a, b, n, lambda d: d.inclusive_of(is_kernel)),
        "dbgprint": per_op(a, b, n, lambda d: d.inclusive_of(lambda c: c == "WfpSimDbgPrint")),
        "locks": per_op(a, b, n, lambda d: d.calls_to(lambda c: c in LOCK_FUNCTIONS)),
        "driver_locks": per_op(a, b, n, lambda d: d.driver_calls_to(lambda c: c in LOCK_FUNCTIONS)),
        "pool": per_op(a, b, n, lambda d: d.calls_to(lambda c: c == "ExAllocatePool2")),
        "driver_pool": per_op(a, b, n, lambda d: d.driver_calls_to(lambda c: c == "ExAllocatePool2")),
        "heap": per_op(a, b, n, lambda d: d.calls_to(lambda c: c in HEAP_FUNCTIONS)),
    }
    if "D1mr" in b.events:
        fig["d1"] = per_op(a, b, n, lambda d: d.total("D1mr") + d.total("D1mw"))
        fig["ll"] = per_op(a, b, n, lambda d: d.total("DLmr") + d.total("DLmw"))
    functions = set(a.self_cost) | set(b.self_cost)
    fig["functions"] = sorted(
        ((fn, (b.self_of(fn) - a.self_of(fn)) / n) for fn in functions),
        key=lambda x: -x[1],
    )
    return fig


def grouped_figures(pairs, kind, key_of):
    groups = defaultdict(dict)
    for entry, dump in pairs:
        if entry["kind"] == kind:
            groups[key_of(entry)][entry["phase"]] = (entry["iters"], dump)
    figures = {}
    for key, phases in groups.items():
        (n, a), (_, b) = phases["n"], phases["2n"]
        figures[key] = n_2n_figures(a, b, n)
    return figures


def notify_figures(pairs):
    figures = {}
    for entry, dump in pairs:
        if entry["kind"] != "notify" or entry["phase"] != "measured":
            continue
        filters = entry["filters"]
        if entry["path"] == "driver":
            add_fn, delete_fn = "wfpbench_notify_add", "wfpbench_notify_delete"
        else:
            add_fn, delete_fn = "wfpbench_engine_add", "wfpbench_engine_delete"
        adds = dump.calls_to(lambda c: c == add_fn)
        deletes = dump.calls_to(lambda c: c == delete_fn)
        figures[(entry["path"], filters)] = {
            "add": dump.inclusive_of(lambda c: c == add_fn) / adds,
            "delete": dump.inclusive_of(lambda c: c == delete_fn) / deletes,
            "own": dump.driver_own() / (adds + deletes),
            "pool": dump.calls_to(lambda c: c == "ExAllocatePool2") / adds,
            "locks": dump.calls_to(lambda c: c in LOCK_FUNCTIONS) / (adds + deletes),
            "dbgprint": dump.inclusive_of(lambda c: c == "WfpSimDbgPrint") / (adds + deletes),
        }
    return figures


def growth_figures(pairs):
    """what -> sorted [(population, instructions, driver's own)]."""
    out = defaultdict(list)
    for entry, dump in pairs:
        if entry["kind"] == "growth":
            out[entry["what"]].append((entry["population"], dump.total("Ir"), dump.driver_own()))
    return {k: sorted(v) for k, v in out.items()}


# ---------------------------------------------------------------------------
# Formatting.


def fmt(x, digits=0):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if digits == 0:
        return f"{x:,.0f}"
    return f"{x:,.{digits}f}"


def ratio(a, b, digits=2):
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.{digits}f}x"


def div(a, b):
    return a / b if a is not None and b else None


def median(values):
    values = sorted(values)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def verdict(value, limit, sense):
    if value is None:
        return "not measured"
    ok = value <= limit if sense == "le" else value >= limit
    return "**met**" if ok else "**missed**"


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def worst_over_median(points, field):
    """Per decade of population (and overall): worst, median of the rest,
    ratio. points: [(population, ir, own)]."""
    i = {"ir": 1, "own": 2}[field]
    buckets = []
    for low, high in [(0, 1_000), (1_000, 10_000), (10_000, 100_001)]:
        values = [p[i] for p in points if low <= p[0] < high]
        if values:
            worst = max(values)
            where = next(p[0] for p in points if low <= p[0] < high and p[i] == worst)
            buckets.append((low, high, worst, where, median(values), len(values)))
    return buckets


# ---------------------------------------------------------------------------
# The report.


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--results", required=True)
    parser.add_argument("--json", help="also write the named figures here")
    args = parser.parse_args()
    results = Path(args.results)

    pairs = list(load_callgrind(results / "callgrind"))
    cg = grouped_figures(pairs, "classify", lambda e: (e["variant"], e["policy"], e["filters"]))
    ask = grouped_figures(pairs, "ask", lambda e: e["waiting"])
    answer = grouped_figures(pairs, "answer", lambda e: e["waiting"])
    nt = notify_figures(pairs)
    growth = growth_figures(pairs)
    native = json.loads((results / "native.json").read_text())
    machine = json.loads((results / "machine.json").read_text())

    def ir(variant, policy="permit", filters=1, field="ir"):
        f = cg.get((variant, policy, filters))
        return f and f.get(field)

    # ---------------- Named figures.
    permit, minimal, empty = ir("driver"), ir("minimal"), ir("empty")
    fib10k, sip10k, ours10k = ir("hash-fib", filters=10_000), ir("hash-sip", filters=10_000), ir("driver", filters=10_000)
    notify_worst = worst_over_median(growth.get("notify-add", []), "own")
    flow_worst = worst_over_median(growth.get("flow-established", []), "own")
    notify_worst_all = worst_over_median(growth.get("notify-add", []), "ir")
    flow_worst_all = worst_over_median(growth.get("flow-established", []), "ir")

    def overall(buckets):
        ratios = [b[2] / b[4] for b in buckets if b[4]]
        return max(ratios) if ratios else None

    memory = {row["filters"]: row for row in native["memory"]}
    # Every tag's bytes per filter, with the kernel saying it has N processors.
    by_cpus = {row["processors"]: row["bytes"] / row["filters"] for row in native["memory_by_processors"]}
    by_cpus_filters = native["memory_by_processors"][0]["filters"]
    big = memory.get(100_000) or memory[max(memory)]
    n_big = big["filters"]
    context_b = big["contexts"][1] / n_big
    table_b = big["table"][1] / n_big

    named = {
        "static_over_minimal": div(permit, minimal),
        "static_block_over_minimal": div(ir("driver", "block"), ir("minimal", "block")),
        "lockedmap_over_static": div(fib10k, ours10k),
        "notify_worst_over_median": overall(notify_worst),
        "flow_worst_over_median": overall(flow_worst),
        "pend_1000_over_0": div(ask.get(1000, {}).get("own"), ask.get(0, {}).get("own")),
        "audit_over_permit": div(ir("driver", "audit"), permit),
        "bytes_per_filter_64cpu": by_cpus.get(64),
    }

    out = []
    w = out.append
    w("# Benchmarks")
    w("")
    w("What the driver's classifyFn, notifyFn and asynchronous-verdict paths cost, in")
    w("instructions (callgrind) and bytes (the simulated pool's accounting by tag),")
    w("against floors and baselines measured in the same binary and the same run.")
    w("This file and `bench/results.json` are generated together:")
    w("")
    w("    bash .ci/bench.sh")
    w("")
    w(f"(about {machine.get('minutes', '?')} minutes here; not part of `.ci/run`). Instruction counts are")
    w("exact and repeatable, so nothing here depends on the machine's load (the driver's figures")
    w("repeat exactly; the whole simulated path moves by a few percent between runs, as the")
    w("simulator's hash maps are seeded at random). No time or")
    w("throughput figure is given: the earlier two-thread scaling claim could not be")
    w("reproduced on this shared 2-core machine (an independent audit found 0 of 39 runs")
    w("meeting the bench's own on-CPU rule), so it is dropped rather than judged.")
    w("")

    # ---------------- Targets.
    w("## Targets")
    w("")
    descriptions = {
        "static_over_minimal": f"static permit {fmt(permit)} / minimal correct callout {fmt(minimal)}, "
        "per classify through the same loop",
        "static_block_over_minimal": f"static block {fmt(ir('driver', 'block'))} / the minimal callout blocking "
        f"{fmt(ir('minimal', 'block'))} (it clears the write right too)",
        "lockedmap_over_static": f"at 10,000 filters: locked Fibonacci-hash map {fmt(fib10k)} / ours {fmt(ours10k)} "
        f"(SipHash map {fmt(sip10k)} = {ratio(sip10k, ours10k)})",
        "notify_worst_over_median": "driver's own instructions: worst single notifyFn ADD / median ADD, "
        f"populations 0 to 100,000 (with the simulator: {fmt(overall(notify_worst_all), 1)}x, its pool's "
        "bookkeeping; per decade below)",
        "flow_worst_over_median": "driver's own instructions: worst single flow-established classify / median, "
        f"populations 0 to 100,000 (with the simulator: {fmt(overall(flow_worst_all), 1)}x, its flow and pool "
        "bookkeeping; per decade below)",
        "pend_1000_over_0": f"driver's own instructions per pended ask: {fmt(ask.get(1000, {}).get('own'))} "
        f"with 1,000 waiting / {fmt(ask.get(0, {}).get('own'))} with none",
        "audit_over_permit": f"audit whose policy logs nothing {fmt(ir('driver', 'audit'))} / permit {fmt(permit)}",
        "bytes_per_filter_64cpu": f"context (counters inside) {fmt(context_b)} + table {fmt(table_b, 1)} at "
        f"{n_big:,} filters; every tag, with the kernel saying it has 64 processors: "
        f"{fmt(by_cpus.get(64), 1)} at {by_cpus_filters:,} filters",
    }
    rows = []
    for key, limit, sense in TARGETS:
        value = named[key]
        shown = fmt(value) if key.startswith("bytes") else (f"{value:.2f}x" if value is not None else "n/a")
        bound = ("<= " if sense == "le" else ">= ") + (f"{limit:.0f}" if key.startswith("bytes") else f"{limit}x")
        rows.append([f"`{key}`", bound, shown, descriptions[key], verdict(value, limit, sense)])
    w(table(["figure", "target", "measured", "what", "verdict"], rows))
    w("")
    missed = [key for key, limit, sense in TARGETS[:3] if verdict(named[key], limit, sense) != "**met**"]
    if missed:
        w("Missed: " + ", ".join(f"`{key}`" for key in missed) + ". These figures are reported as measured;")
        w("no floor or baseline was changed.")
        w("")
    # The static permit path, instruction by instruction, as read from the
    # machine code of `classify_fn` (objdump of the bench build) when it
    # was last changed. The figure measured now is compared with it, so a
    # change of the path cannot leave this account standing unnoticed.
    breakdown = [
        ("the output and filter checks, the write right, the word and its static bit", 10),
        ("the processor index's low byte (one `movzx` from `gs:[0x1a4]`, the field wdm.h's inline "
         "`KeGetCurrentProcessorIndex` reads on x64 Windows, which the simulated kernel gives each thread "
         "through GS, so no thread-local call is measured)", 1),
        ("the rundown (its line among 256, one interlocked add whose sign carries both unload's gate and "
         "lookup mode, the branch, one interlocked decrement)", 6),
        ("the checked handle (the segment's directory entry by one shift of the word's low half, the slot by "
         "one mask, its key against the whole word, the context's address; a word with a tag matches only a "
         "claimed slot, so no null test)", 9),
        ("one test for a plain permit (neither block, audit nor hard permit)", 2),
        ("the count (one interlocked add at a fixed offset in the context)", 1),
        ("the verdict and the return", 2),
    ]
    accounted = sum(n for _, n in breakdown)
    d = cg.get(("driver", "permit", 1))
    functions = dict(d["functions"]) if d else {}
    own = functions.get("wfpcallout::callbacks::trampolines::classify_fn")
    loop = functions.get("wfpcallout_bench::classify_loop")
    w("Where the static permit path's instructions beyond the loop go, by its machine code")
    w(f"(`classify_fn`, bench profile; the minimal callout spends {fmt(minimal - loop if loop else None)} beyond")
    w(f"the loop's {fmt(loop)} on the same checks and the verdict):")
    w("")
    w(table(["what", "instructions"], [[what, str(n)] for what, n in breakdown] + [["**total**", f"**{accounted}**"]]))
    w("")
    w("These are the host build's (System V calling convention). The shipped x64 image, built for")
    w("the Microsoft x64 convention, runs the same steps plus a prologue and epilogue (it saves two")
    w("registers that convention makes callee-saved: the refused entry's fallback keeps the engine's")
    w("first three arguments live, and it has 7 volatile registers, not 9) and one more stack load")
    w("(the filter is a stack argument there): 40 instructions by its machine code (objdump of")
    w("`target/cross/wfpcallout.sys` from `.ci/cross-check.sh`) when this account was written.")
    w("")
    if own is not None and abs(own - accounted) >= 0.5:
        w(f"**This account is stale**: `classify_fn` now costs {fmt(own, 1)} per classify, not {accounted}.")
        w("")
    fast = ["permit", "block", "audit"]
    zero = all(
        abs(ir("driver", p, 1, f) or 0) < 1e-9 for p in fast for f in ("locks", "pool", "heap")
    )
    w(
        "The static path (permit, block, and audit whose policy logs nothing) makes "
        + ("no" if zero else "**some**")
        + " spin-lock acquisition, pool or heap allocation per classify (callgrind call counts)."
    )
    w("")

    # ---------------- Floors and baselines.
    w("## Floors and baselines, one filter")
    w("")
    w("All through the same benchmark loop (fresh classify output with the write right, an")
    w("indirect call through a function pointer, prebuilt inputs, batches at DISPATCH_LEVEL).")
    w("*empty* only writes PERMIT: it is the loop's own cost, not a correct callout. *minimal*")
    w("is the minimal correct callout: it returns without the write right, reads")
    w("`filter->context` and writes the verdict it carries (no counting, no unload protection, no")
    w("check of the word). The locked maps find the context by")
    w("filter id on every classify under a plain atomic reader/writer spin lock (one interlocked")
    w("add to enter, one to leave: `bench/src/native_lock.rs`), then run the driver's own")
    w("decision and counting; no simulator bookkeeping is inside their measured region.")
    w("")
    rows = []
    for v in ["empty", "minimal", "driver"] + BASELINES:
        f = cg.get((v, "permit", 1), {})
        rows.append(
            [
                VARIANT_LABEL[v],
                fmt(f.get("ir")),
                fmt(f.get("ir") - empty) if f and empty else "n/a",
                ratio(f.get("ir"), minimal),
                fmt(f.get("kernel")),
                fmt(f.get("locks"), 2),
                fmt(f.get("pool"), 2),
            ]
        )
    w(
        table(
            [
                "classifyFn",
                "instructions per classify",
                "less the loop (empty)",
                "vs minimal",
                "of which simulated kernel",
                "kernel spin locks",
                "pool allocations",
            ],
            rows,
        )
    )
    w("")
    d = cg.get(("driver", "permit", 1))
    if d:
        w("Where the static permit path's instructions go (self cost per classify):")
        w("")
        rows = [[f"`{fn}`", fmt(c, 1)] for fn, c in d["functions"] if c >= 0.5]
        w(table(["function", "instructions"], rows))
        w("")

    # ---------------- Policies.
    w("## Every policy path, one filter")
    w("")
    w("*direct* calls the registered classifyFn through the loop above (connect-layer inputs;")
    w("recv-accept and flow-established need the engine's packet and flow, so they have no")
    w("direct figure). *driver's own* is measured on the whole simulated path: everything")
    w("executed inside the driver's entry points less what it spends in kernel exports")
    w("(simulated pool, locks, `DbgPrintEx`, `FwpsFlowAssociateContext0`...), whose cost on")
    w("Windows differs. *locks* and *pool* are the driver's own calls to")
    w("`ExAcquireSpinLock*` and `ExAllocatePool2` per classify; *heap* counts `malloc`")
    w("anywhere in the whole path (the simulator's included). *Kernel exports* is inclusive:")
    w("for the agent's answer it contains `FwpsCompleteOperation0`, and with it the")
    w("reauthorization classify the engine runs inside it, which *driver's own* counts again.")
    w("Flow-established allocates its flow context (one pool allocation per new flow, no lock")
    w("held) and takes the flow table's lock twice: exclusive to insert it, shared to mark it")
    w("associated once `FwpsFlowAssociateContext0` succeeded.")
    w("")
    rows = []
    for key, label in POLICIES:
        d = cg.get(("driver", key, 1), {})
        e = cg.get(("engine", key, 1), {})
        rows.append(
            [
                label,
                fmt(d.get("ir")) if d else "",
                ratio(d.get("ir"), permit) if d else "",
                fmt(e.get("own")),
                fmt(e.get("kernel") - e.get("dbgprint", 0) if e else None),
                fmt(e.get("dbgprint")),
                fmt(e.get("ir")),
                fmt(e.get("driver_locks"), 2),
                fmt(e.get("driver_pool"), 2),
                fmt(e.get("heap"), 2),
            ]
        )
    for waiting in (0, 1000):
        a = ask.get(waiting, {})
        rows.append(
            [
                f"ask, agent connected, pended with {waiting:,} waiting",
                "",
                "",
                fmt(a.get("own")),
                fmt(a.get("kernel")),
                fmt(a.get("dbgprint")),
                fmt(a.get("ir")),
                fmt(a.get("driver_locks"), 2),
                fmt(a.get("driver_pool"), 2),
                fmt(a.get("heap"), 2),
            ]
        )
    for waiting in (0, 1000):
        a = answer.get(waiting, {})
        rows.append(
            [
                f"agent reads and answers one request ({waiting:,} others waiting), "
                "reauthorization included",
                "",
                "",
                fmt(a.get("own")),
                fmt(a.get("kernel")),
                fmt(a.get("dbgprint")),
                fmt(a.get("ir")),
                fmt(a.get("driver_locks"), 2),
                fmt(a.get("driver_pool"), 2),
                fmt(a.get("heap"), 2),
            ]
        )
    w(
        table(
            [
                "path",
                "direct: instructions",
                "direct: vs permit",
                "driver's own",
                "kernel exports (not `DbgPrintEx`; inclusive)",
                "simulated `DbgPrintEx`",
                "whole simulated path",
                "locks",
                "pool",
                "heap",
            ],
            rows,
        )
    )
    w("")
    w("Permit, block and an audit whose policy logs nothing take the *static path*: notifyFn")
    w("decided the verdict at ADD and stored it, with the hard-permit flag and the audit bit,")
    w("in the low bits of `filter->context` (`driver/filters/fast_path.rs`), above them the checked")
    w("handle of the context's slot (index and generation, `driver/filters/context_slots.rs`):")
    w("classify counts on the context only after the index passed the bounds check and the")
    w("slot's key matched the word. An audit whose policy")
    w("logs at Info takes the full path; with the driver's log gate closed below Info")
    w("(`log::set_max_level`) `log!` returns before anything is formatted, so that row")
    w("differs from the logged one by the formatting and the `DbgPrintEx` call.")
    w("The ask rows are per pended classification (measured in dumps of 12 and 24 asks; the")
    w("waiting requests were read by the agent and left unanswered); the answer rows are per")
    w("request: the agent's read (`take_next`), its answer, the completion and the")
    w("reauthorization classify it triggers.")
    w("")

    # ---------------- Scaling.
    w("## Classify scaling (permit)")
    w("")
    w("Filters visited in a fixed pseudo-random order. Instructions per classify, then the")
    w("simulated data-cache misses (callgrind's model: 32 KiB 8-way L1d, 1 MiB 8-way last level).")
    w("")
    order = ["empty", "minimal", "driver"] + BASELINES + ["engine"]
    rows = [[VARIANT_LABEL[v]] + [fmt(ir(v, "permit", n)) for n in SCALES] for v in order]
    w(table(["instructions"] + [f"{n:,} filter{'s' if n > 1 else ''}" for n in SCALES], rows))
    w("")
    rows = [
        [VARIANT_LABEL[v]]
        + [
            f"{fmt(ir(v, 'permit', n, 'd1'), 2)} / {fmt(ir(v, 'permit', n, 'll'), 2)}"
            for n in SCALES
        ]
        for v in order
    ]
    w(table(["L1d / LL misses"] + [f"{n:,}" for n in SCALES], rows))
    w("")
    rows = [[VARIANT_LABEL[v]] + [ratio(ir(v, "permit", n), ir("driver", "permit", n)) for n in SCALES] for v in BASELINES]
    w(table(["baseline / ours"] + [f"{n:,}" for n in SCALES], rows))
    w("")

    # ---------------- Notify.
    w("## notifyFn ADD and DELETE at a population")
    w("")
    w("Filters added and deleted in chunks of 16 at each population (the table does not grow")
    w("inside a chunk). *driver* calls notifyFn directly; *engine* is `FwpmFilterAdd0` /")
    w("`FwpmFilterDeleteById0` in the simulated engine. Each ADD and DELETE also writes a")
    w("Trace line through the simulated `DbgPrintEx` (included in ADD and DELETE).")
    w("")
    rows = []
    for n in NOTIFY_SCALES:
        f, e = nt.get(("driver", n), {}), nt.get(("engine", n), {})
        rows.append(
            [
                f"{n:,}",
                fmt(f.get("add")),
                fmt(f.get("delete")),
                fmt(f.get("own")),
                fmt(f.get("dbgprint")),
                fmt(f.get("pool"), 2),
                fmt(f.get("locks"), 2),
                fmt(e.get("add")),
                fmt(e.get("delete")),
            ]
        )
    w(
        table(
            [
                "filters",
                "ADD",
                "DELETE",
                "driver's own per op",
                "`DbgPrintEx` per op",
                "pool allocations per ADD",
                "locks per op",
                "engine ADD",
                "engine DELETE",
            ],
            rows,
        )
    )
    w("")

    # ---------------- Growth.
    w("## Worst single operation as the tables fill")
    w("")
    w("The population grows from 0 to 100,000 one operation at a time; every operation")
    w("within 2 of a power of two (where a table that doubles at half load grows) and 64")
    w("evenly spaced others are measured alone (one callgrind dump each), the rest run")
    w("unmeasured. *worst* and *median* are over the measured ones in each decade, first")
    w("the driver's own instructions (what the targets judge), then the whole operation with")
    w("the simulated kernel and engine, whose own tables (the pool's block map, the engine's")
    w("flows) rehash as they grow: that is the simulator's cost, not the driver's. The")
    w("operation that starts a resize of the driver's table also allocates the larger zeroed")
    w("slot array (outside the table's lock, inside `ExAllocatePool2`: kernel, not in the")
    w("driver's own figure); the entries then move 16 old slots per later operation.")
    w("")
    rows = []
    for what, own, whole in (
        ("notifyFn ADD", notify_worst, notify_worst_all),
        ("flow-established classify", flow_worst, flow_worst_all),
    ):
        for (low, high, worst, where, med, count), (_, _, worst_all, where_all, med_all, _) in zip(own, whole):
            rows.append(
                [
                    what,
                    f"{low:,} to {min(high, 100_000):,}",
                    f"{fmt(worst)} at {where:,}",
                    fmt(med),
                    ratio(worst, med, 1),
                    f"{fmt(worst_all)} at {where_all:,}",
                    fmt(med_all),
                    ratio(worst_all, med_all, 1),
                    count,
                ]
            )
    w(
        table(
            [
                "operation",
                "population",
                "driver's own: worst",
                "median",
                "worst / median",
                "with the simulator: worst",
                "median",
                "worst / median",
                "measured",
            ],
            rows,
        )
    )
    w("")

    # ---------------- Memory.
    w("## Memory per filter")
    w("")
    w("From the simulated pool's accounting by tag after adding N filters (bytes requested;")
    w("Windows adds a pool header per block). A filter's counters are inside its context, so")
    w("nothing a filter costs depends on the number of processors.")
    w("")
    rows = []
    for n in sorted(memory):
        m = memory[n]
        rows.append(
            [
                f"{n:,}",
                fmt(m["contexts"][1] / n, 1),
                fmt(m["table"][1] / n, 1),
                fmt((m["contexts"][1] + m["table"][1]) / n, 1),
            ]
        )
    w(table(["filters", "`WfFc` context", "`WfTb` table", "total B/filter"], rows))
    w("")
    w(f"Every tag's bytes per filter after adding {by_cpus_filters:,} filters, with the simulated kernel")
    w("saying (`KeQueryActiveProcessorCountEx`) it has 2, 64 or 128 processors:")
    w("")
    rows = [[cpus, fmt(by_cpus[cpus], 1)] for cpus in sorted(by_cpus)]
    w(table(["processors", "B/filter"], rows))
    w("")

    # ---------------- Method.
    w("## Method")
    w("")
    w("- **Instructions**: callgrind with collection on only inside the measured call")
    w("  (`--toggle-collect=wfpbench_measure`, one dump per call). A figure per operation is")
    w("  (I(2N) - I(N)) / N from dumps of N and 2N operations, so fixed costs cancel.")
    w("- **Build**: the bench profile without LTO (`CARGO_PROFILE_BENCH_LTO=false`) and with")
    w("  `panic=abort`, as the driver ships: with LTO the compiler would inline the *simulated*")
    w("  kernel into the driver, which cannot happen against ntoskrnl's import table.")
    w("- **Driver's own**: inclusive cost of the calls into the driver's entry points from")
    w("  outside it, less the inclusive cost of the calls its code makes into kernel exports.")
    w("- **Not measured here**: anything Windows-specific (real pool, IRQL, spin locks,")
    w("  `DbgPrintEx`, the real engine), and time.")
    w("")
    w("## Machine")
    w("")
    keys = ["cpu", "cores", "caches", "memory", "kernel", "rustc", "valgrind", "date"]
    w(table(["", ""], [[k, machine.get(k, "?")] for k in keys]))
    w("")
    print("\n".join(out))

    if args.json:
        doc = {
            "targets": {
                key: {"value": named[key], "limit": limit, "sense": sense,
                      "met": None if named[key] is None else (named[key] <= limit if sense == "le" else named[key] >= limit)}
                for key, limit, sense in TARGETS
            },
            "classify": {
                f"{v}/{p}/{n}": {k: f[k] for k in ("ir", "own", "kernel", "locks", "driver_locks", "pool", "driver_pool", "heap") if k in f}
                for (v, p, n), f in sorted(cg.items())
            },
            "ask": {str(k): {"ir": f["ir"], "own": f["own"], "driver_locks": f["driver_locks"]} for k, f in ask.items()},
            "answer": {str(k): {"ir": f["ir"], "own": f["own"], "driver_locks": f["driver_locks"]} for k, f in answer.items()},
            "growth": {k: [list(p) for p in v] for k, v in growth.items()},
            "memory": {"per_filter_by_processors": {str(c): by_cpus[c] for c in by_cpus}},
            "date": machine.get("date"),
        }
        doc.update({key: named[key] for key, _, _ in TARGETS})
        Path(args.json).write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
