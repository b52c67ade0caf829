#!/usr/bin/env bash
# Regenerates BENCHMARKS.md and bench/results.json from one run: native
# measurements (memory per filter, allocations per classify), callgrind
# (instructions, call counts, simulated cache misses), then the report.
# Not part of CI (.ci/run): it takes several minutes.
#
#   bash .ci/bench.sh            # writes BENCHMARKS.md and bench/results.json
#
# Every figure is an instruction count or a byte count, exact and
# repeatable: nothing here depends on the machine's load. (Time per
# operation: `cargo bench -p wfpcallout-bench --bench classify`, by hand.)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
# The simulated kernel stands in for ntoskrnl, which a driver reaches through
# its import table and which no compiler can inline into it. The workspace's
# release LTO would inline the simulated kernel into the driver and hide the
# lock, allocation and kernel calls the report counts, so the benches build
# without it (the driver's own inlining is unaffected).
export CARGO_PROFILE_BENCH_LTO=false
# The measurement binary is built as the driver ships, with panic=abort,
# in a target directory of its own (a panic=unwind build of the driver would
# otherwise collide with it): unwinding changes the classify path's code (a
# caller that may unwind cannot tail-call).
start=$SECONDS

step() { printf '\n=== %s (%ss)\n' "$1" "$((SECONDS - start))"; }

if ! command -v valgrind >/dev/null 2>&1; then
    step "install valgrind"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends valgrind
fi

target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
results="$target/bench-results"
rm -rf "$results"
mkdir -p "$results/callgrind"

load() { cut -d' ' -f1-3 /proc/loadavg; }
load_before=$(load)

# Retries a cargo command that failed (sources edited while it was building).
retry() {
    local attempt
    for attempt in 1 2 3; do
        if "$@"; then return 0; fi
        echo "(attempt $attempt failed; retrying)" >&2
        sleep 5
    done
    return 1
}

step "build"
retry env CARGO_PROFILE_BENCH_PANIC=abort CARGO_TARGET_DIR="$target/bench-abort" \
    cargo build -q --profile bench -p wfpcallout-bench --bin wfpbench
bin="$target/bench-abort/release/wfpbench"

step "native: memory, allocations"
"$bin" native >"$results/native.json"

step "callgrind"
cachegrind_args=(--cache-sim=yes --I1=32768,8,64 --D1=32768,8,64 --LL=1048576,8,64)
run_callgrind() {
    local name=$1
    shift
    local dir="$results/callgrind/$name"
    mkdir -p "$dir"
    valgrind --tool=callgrind --instr-atstart=no \
        --toggle-collect=wfpbench_measure --dump-after=wfpbench_measure \
        --compress-strings=no --compress-pos=no "${cachegrind_args[@]}" \
        --callgrind-out-file="$dir/cg.out" \
        "$bin" callgrind "$@" >"$dir/manifest.json" 2>"$dir/valgrind.log"
}
# Two jobs at a time (one per core); the largest population and the growth
# runs (100,000 operations each) take longest.
run_callgrind scale-100000 scale 100000 &
big=$!
run_callgrind growth growth 100000
run_callgrind policies policies
for waiting in 0 1000; do
    run_callgrind "ask-$waiting" ask "$waiting"
done
for filters in 1 100 1000 10000; do
    run_callgrind "scale-$filters" scale "$filters"
done
wait "$big"
load_after=$(load)

step "report"
python3 - "$results/machine.json" "$load_before" "$load_after" "$((SECONDS - start))" <<'EOF'
import json, os, platform, re, subprocess, sys, time
def run(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    except Exception:
        return ""
lscpu = run("lscpu")
def field(name):
    m = re.search(rf"^{re.escape(name)}:\s*(.+)$", lscpu, re.M)
    return m.group(1).strip() if m else "?"
caches = ", ".join(f"{k} {field(k + ' cache')}" for k in ("L1d", "L2", "L3"))
mem_kb = int(re.search(r"MemTotal:\s+(\d+)", open("/proc/meminfo").read()).group(1))
out, before, after, seconds = sys.argv[1:5]
json.dump({
    "cpu": f"{field('Model name')} ({field('Hypervisor vendor')} guest)" if field("Hypervisor vendor") != "?" else field("Model name"),
    "cores": f"{os.cpu_count()} ({field('Thread(s) per core')} thread(s) per core)",
    "caches": caches,
    "memory": f"{mem_kb / 2**20:.0f} GiB",
    "kernel": f"{platform.system()} {platform.release()}",
    "rustc": run("rustc", "-V").strip(),
    "valgrind": run("valgrind", "--version").strip(),
    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    "load_before": before,
    "load_after": after,
    "minutes": max(1, round(int(seconds) / 60)),
    "processors": 2,
}, open(out, "w"), indent=1)
EOF
python3 bench/report.py --results "$results" --json bench/results.json >BENCHMARKS.md
step "done: BENCHMARKS.md, bench/results.json"
