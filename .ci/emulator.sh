#!/usr/bin/env bash
# Runs the Windows build's machine code: the KMDF kernel image that
# .ci/cross-check.sh links (target/cross/wfpcallout.sys) is loaded into
# speakeasy, an emulated Windows x64 kernel on unicorn, and driven through
# every scenario in emulator/ (FxDriverEntry binding to an emulated KMDF,
# DriverEntry, notifyFn and classifyFn for each policy, adoption of existing
# filters, the ask path through the control device's IOCTL and manual
# queues, the timer, DriverUnload), with the kernel, KMDF and WFP exports
# played by checking hooks. See emulator/README.md.
#
#   1. a virtualenv (target/emulator-venv) with emulator/requirements.txt,
#      installed from PyPI once and again whenever the file changes;
#   2. the image and its link map: the cross-check runs first if either is
#      missing or older than the sources it is built from;
#   3. the scenarios: one line each, PASS or FAIL with the reason.
#
# Fails if any scenario fails: a wrong verdict, an unsupported import, a
# pool leak or bad free, a broken kernel rule, a fault in the driver.
# Arguments are passed to emulator/run_scenarios.py (--only NAME..., --quiet).
#
# Environment:
#   PYTHON          the interpreter that creates the virtualenv (python3)
#   EMULATOR_VENV   where the virtualenv lives (target/emulator-venv)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}
VENV=${EMULATOR_VENV:-target/emulator-venv}
REQUIREMENTS=emulator/requirements.txt
IMAGE=target/cross/wfpcallout.sys
MAP=target/cross/wfpcallout.map

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }
total_start=$(now)

printf '==> virtualenv %s\n' "$VENV"
stamp=$VENV/.requirements.sha256
wanted=$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)
if [[ ! -x $VENV/bin/python || ! -f $stamp || $(cat "$stamp") != "$wanted" ]]; then
    t=$(now)
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV" || {
        echo "emulator: '$PYTHON -m venv' failed (Debian: apt-get install python3-venv)" >&2
        exit 1
    }
    "$VENV/bin/python" -m pip install --disable-pip-version-check --quiet --no-input -r "$REQUIREMENTS"
    echo "$wanted" >"$stamp"
    echo "installed: $(elapsed "$t")"
else
    echo "up to date"
fi

printf '==> image %s\n' "$IMAGE"
stale=""
if [[ -f $IMAGE && -f $MAP ]]; then
    stale=$(find driver fwps-types wdf-types wire Cargo.toml Cargo.lock build.rs -newer "$IMAGE" -type f -print -quit 2>/dev/null || true)
fi
if [[ ! -f $IMAGE || ! -f $MAP || -n $stale ]]; then
    echo "building it: bash .ci/cross-check.sh${stale:+ ($stale is newer)}"
    t=$(now)
    mkdir -p target
    bash .ci/cross-check.sh >target/emulator-cross-check.log 2>&1 || {
        tail -n 30 target/emulator-cross-check.log >&2
        echo "emulator: the cross-check failed (log: target/emulator-cross-check.log)" >&2
        exit 1
    }
    echo "cross-check: $(elapsed "$t")"
else
    echo "up to date"
fi

printf '==> scenarios\n'
status=0
PYTHONDONTWRITEBYTECODE=1 "$VENV/bin/python" emulator/run_scenarios.py --image "$IMAGE" --map "$MAP" "$@" || status=$?
printf 'emulator.sh: %s (%s)\n' "$( ((status == 0)) && echo OK || echo FAIL)" "$(elapsed "$total_start")"
exit "$status"
