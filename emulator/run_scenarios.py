#!/usr/bin/env python3
"""Runs the Windows build of wfpcallout (the PE image the cross-check links)
in speakeasy's emulated Windows x64 kernel, through every scenario.

    python emulator/run_scenarios.py [--image target/cross/wfpcallout.sys]
        [--map target/cross/wfpcallout.map] [--only NAME ...] [--quiet]

One line per scenario (PASS/FAIL, time, summary or the failure), the
driver's DbgPrintEx lines indented under it (unless --quiet), then a total.
Exits 1 if any scenario failed.
"""

import argparse
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from wfpemu import constants as c  # noqa: E402
from wfpemu.harness import ScenarioFailure  # noqa: E402
from wfpemu.scenarios import SCENARIOS, run_scenario  # noqa: E402


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", default=os.path.join(root, "target/cross/wfpcallout.sys"))
    parser.add_argument("--map", default=os.path.join(root, "target/cross/wfpcallout.map"))
    parser.add_argument("--only", nargs="*", help="run only these scenarios")
    parser.add_argument("--quiet", action="store_true", help="do not print the driver's DbgPrintEx lines")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    args = parser.parse_args()

    if args.list:
        for name, _, _ in SCENARIOS:
            print(name)
        return 0
    for path in (args.image, args.map):
        if not os.path.isfile(path):
            print(f"emulator: {path} not found (run .ci/cross-check.sh first)", file=sys.stderr)
            return 2
    selected = [s for s in SCENARIOS if not args.only or s[0] in args.only]
    unknown = set(args.only or ()) - {s[0] for s in SCENARIOS}
    if unknown:
        print(f"emulator: unknown scenario(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2

    passed = failed = 0
    components = set()
    started = time.monotonic()
    for name, body, prepare in selected:
        lines = []
        t = time.monotonic()
        try:
            summary, harness = run_scenario(name, body, prepare, args.image, args.map, lines.append)
            components |= {component for component, _, _ in harness.kernel.driver_lines}
            status, detail = "PASS", summary
            passed += 1
        except ScenarioFailure as error:
            status, detail = "FAIL", str(error)
            failed += 1
        except Exception as error:  # noqa: BLE001 - a harness bug is a failure too, with its traceback
            status, detail = "FAIL", f"harness error: {error!r}"
            lines.extend(traceback.format_exc().rstrip().split("\n"))
            failed += 1
        print(f"{status} {name:<24} {time.monotonic() - t:5.2f}s  {detail}", flush=True)
        if not args.quiet or status == "FAIL":
            for line in lines:
                print(f"      | {line}")
    wrong = sorted(components - {c.DPFLTR_IHVNETWORK_ID})
    if wrong:
        print(f"FAIL dbgprint-component        DbgPrintEx ComponentId {', '.join(map(str, wrong))} is not "
              f"DPFLTR_IHVNETWORK_ID ({c.DPFLTR_IHVNETWORK_ID} in dpfilter.h): on Windows these lines follow "
              "another component's Kd_*_Mask")
        failed += 1
    print(f"emulator: {passed} passed, {failed} failed ({time.monotonic() - started:.1f} s)")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
