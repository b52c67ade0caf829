#!/usr/bin/env bash
# The reliability tier of wfpcallout's CI (RELIABILITY.md describes each
# part): the stress test, plainly and under AddressSanitizer and
# ThreadSanitizer, the fault injection sweep, the loom models and short
# fuzz runs of every cargo-fuzz target. Installs what it needs (cargo-fuzz,
# the rust-src component), prints the figures, fails on any failure. About
# 5 minutes on 2 cores once dependencies are built; the first run also
# installs cargo-fuzz (about 1.5 minutes) and builds an instrumented std for
# ThreadSanitizer (about 2 minutes).
#
# Knobs (environment): WFPCALLOUT_STRESS_OPS (operations per stress worker,
# default 20000), WFPCALLOUT_ASAN_STRESS_OPS and WFPCALLOUT_TSAN_STRESS_OPS
# (the same under the sanitizers, default 20000), WFPCALLOUT_PROBE_ROUNDS
# (unload-during-traffic rounds, default 1000; under the sanitizers
# WFPCALLOUT_ASAN_PROBE_ROUNDS, default 200, and WFPCALLOUT_TSAN_PROBE_ROUNDS,
# default 50), WFPCALLOUT_FUZZ_SECONDS (per target, default 25).
#
# Oversubscribed by design: the stress workers outnumber the cores (9
# threads in the all-at-once test, 2 x cores traffic threads plus the
# unloading one in the unload test). To load the machine further, run the
# whole tier under .ci/with-cpu-hogs.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

# Build trees: the usual ones (target/, and target/asan shared with .ci/run's
# AddressSanitizer step), or under CARGO_TARGET_DIR when that is set.
target_root=${CARGO_TARGET_DIR:-target}
stress_ops=${WFPCALLOUT_STRESS_OPS:-20000}
asan_stress_ops=${WFPCALLOUT_ASAN_STRESS_OPS:-20000}
tsan_stress_ops=${WFPCALLOUT_TSAN_STRESS_OPS:-20000}
probe_rounds=${WFPCALLOUT_PROBE_ROUNDS:-1000}
asan_probe_rounds=${WFPCALLOUT_ASAN_PROBE_ROUNDS:-200}
tsan_probe_rounds=${WFPCALLOUT_TSAN_PROBE_ROUNDS:-50}
fuzz_seconds=${WFPCALLOUT_FUZZ_SECONDS:-25}
logs=$(mktemp -d)
scratch=$(mktemp -d)
trap 'rm -rf "$logs" "$scratch"' EXIT

step() { printf '\n=== reliability: %s (%ss)\n' "$1" "$SECONDS"; }

step "install"
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
cargo fuzz --version

step "stress (${stress_ops} operations per worker)"
WFPCALLOUT_STRESS_OPS=$stress_ops WFPCALLOUT_PROBE_ROUNDS=$probe_rounds cargo test -p wfpcallout --test stress -- --nocapture 2>&1 |
    tee "$logs/stress.log"

step "fault injection sweep"
cargo test -p wfpcallout --test fault_sweep -- --nocapture --test-threads 1 2>&1 | tee "$logs/sweep.log"

step "AddressSanitizer: stress (${asan_stress_ops} operations per worker) and fault sweep"
# As in .ci/run: the stable channel ships the ASan runtime; RUSTC_BOOTSTRAP
# unlocks -Z. Same target directory, so the two share their build.
RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Zsanitizer=address" CARGO_TARGET_DIR="$target_root/asan" \
    WFPCALLOUT_STRESS_OPS=$asan_stress_ops WFPCALLOUT_PROBE_ROUNDS=$asan_probe_rounds \
    cargo test -p wfpcallout --target x86_64-unknown-linux-gnu --test stress --test fault_sweep \
    -- --nocapture --test-threads 1 2>&1 | tee "$logs/asan.log"

step "ThreadSanitizer: stress (${tsan_stress_ops} operations per worker), fault sweep, concurrency tests"
# -Zsanitizer=thread needs a standard library built with it (-Zbuild-std),
# which needs the rust-src component; without it the step is skipped (and
# says so). panic=abort (the dev profile's) cannot be combined with
# -Zbuild-std for a test harness: unwind is used here. Nothing is
# suppressed: the pool's reference count (PoolArc) acquires with a load on
# its last release, which ThreadSanitizer sees (it does not model
# stand-alone fences).
if rustup component list --installed 2>/dev/null | grep -q '^rust-src' || rustup component add rust-src; then
    RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Zsanitizer=thread" \
        CARGO_PROFILE_DEV_PANIC=unwind CARGO_TARGET_DIR="$target_root/tsan" \
        WFPCALLOUT_STRESS_OPS=$tsan_stress_ops WFPCALLOUT_PROBE_ROUNDS=$tsan_probe_rounds \
        cargo test -Zbuild-std --target x86_64-unknown-linux-gnu -p wfpcallout --test stress --test fault_sweep \
        --test async_verdicts --test flows --test per_filter_contexts --test control_ioctls \
        -- --nocapture --test-threads 1 2>&1 | tee "$logs/tsan.log"
else
    echo "ThreadSanitizer skipped: the rust-src component is not available (needed by -Zbuild-std)" |
        tee "$logs/tsan.log"
fi

step "loom tests"
# The driver's own reference count, pended-request table and unload rundown, built with
# --cfg loom (driver/platform/sync.rs switches its atomics and spin lock to loom's)
# in a tree of their own, since the flag changes every crate's build. One
# test at a time: the engine stand-in and the simulated kernel's violation
# record are global.
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR="$target_root/loom" \
    cargo test -p wfpcallout --release --test loom_filter_context --test loom_pending --test loom_rundown --test loom_deferred_reclaim \
    -- --nocapture --test-threads 1 2>&1 | tee "$logs/loom.log"

step "fuzzing (${fuzz_seconds}s per target)"
# New inputs go to a scratch corpus (first directory); the committed seeds
# (fuzz/corpus/<target>) are only read. A crash fails the run and leaves
# its input in fuzz/artifacts/<target>/.
for target in $(cargo fuzz list); do
    mkdir -p "$scratch/$target"
    RUSTC_BOOTSTRAP=1 cargo fuzz run --target-dir "$target_root/fuzz" "$target" "$scratch/$target" "fuzz/corpus/$target" \
        -- -max_total_time="$fuzz_seconds" -print_final_stats=1 2>&1 | tee "$logs/fuzz-$target.log" |
        grep -v -E '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse)' || true
    # grep's status is ignored above; the fuzzer's is checked here.
    if ! grep -q -E '^Done [0-9]+ runs' "$logs/fuzz-$target.log"; then
        echo "fuzz target $target did not finish cleanly" >&2
        exit 1
    fi
done

step "figures"
# (-o: with one test thread the harness prints "test name ... " first.)
grep -h -o -E 'stress figures:.*' "$logs/stress.log" | sed 's/^/plain: /'
grep -h -o -E 'unload during traffic:.*' "$logs/stress.log" | sed 's/^/plain: /'
grep -h -o -E 'unload during traffic:.*' "$logs/asan.log" | sed 's/^/asan:  /'
grep -h -o -E 'unload during traffic:.*' "$logs/tsan.log" | sed 's/^/tsan:  /' || true
grep -h -o -E 'stress figures:.*' "$logs/asan.log" | sed 's/^/asan:  /'
grep -h -o -E 'stress figures:.*' "$logs/tsan.log" | sed 's/^/tsan:  /' || true
printf 'tsan:  warnings reported: %s\n' "$(grep -c 'WARNING: ThreadSanitizer' "$logs/tsan.log" || true)"
grep -h -o -E 'fault sweep \(.*' "$logs/sweep.log"
grep -h -o -E 'loom test .*' "$logs/loom.log"
for log in "$logs"/fuzz-*.log; do
    target=$(basename "$log" .log)
    printf '%s: %s; corpus %s\n' "${target#fuzz-}" \
        "$(grep -h -E '^Done [0-9]+ runs' "$log")" \
        "$(grep -h -o -E 'DONE.*' "$log" | tail -1)"
done

step "done"
