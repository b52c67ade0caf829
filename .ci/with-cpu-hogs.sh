#!/usr/bin/env bash
# Runs a command with a busy loop on every core, as on a shared CI machine:
#   bash .ci/with-cpu-hogs.sh bash .ci/run
#   bash .ci/with-cpu-hogs.sh cargo test --workspace
# The hogs (one per core, WFPCALLOUT_HOGS to change) end with the command;
# its exit status is the command's.
set -uo pipefail
hogs=${WFPCALLOUT_HOGS:-$(nproc)}
pids=()
for _ in $(seq "$hogs"); do
    sh -c 'while :; do :; done' &
    pids+=("$!")
done
trap 'kill "${pids[@]}" 2>/dev/null' EXIT
echo "with-cpu-hogs: $hogs busy loops on $(nproc) cores" >&2
"$@"
