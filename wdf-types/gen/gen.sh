#!/usr/bin/env bash
# gen.sh: regenerates ../LAYOUTS.md, the facts wdf-types asserts at compile
# time: x64 MS-ABI layouts of the KMDF structures the glue passes (clang
# -fdump-record-layouts on probe.c) and the function-table index of each WDF
# method it calls (its position in WDFFUNCENUM, wdffuncenum.h).
#
#   WDF_MIRROR=<git dir of microsoft/Windows-Driver-Frameworks> bash gen.sh
#
# Reads Microsoft's KMDF headers from a git copy of that public repository
# (src/publicinc/wdf/kmdf/<version>) and mingw-w64's kernel base headers
# (Debian: mingw-w64-x86-64-dev) for ntddk.h; needs clang (Debian: clang-22).
# Nothing from the headers is committed: only the table.
set -euo pipefail
cd "$(dirname "$0")"
WDF_MIRROR=${WDF_MIRROR:?set WDF_MIRROR to the git dir of microsoft/Windows-Driver-Frameworks}
KMDF=${KMDF:-1.33}
CLANG=${CLANG:-clang-22}
MINGW=${MINGW:-/usr/share/mingw-w64/include}
OUT=../LAYOUTS.md
B=$(mktemp -d)
trap 'rm -rf "$B"' EXIT

# OLDER: the newest published KMDF at or below the driver's minimum (1.29,
# whose headers are not in that repository): a method there at the same
# index is in 1.29 too, the table being append-only.
OLDER=${OLDER:-1.27}
git --git-dir="$WDF_MIRROR" archive HEAD "src/publicinc/wdf/kmdf/$KMDF" "src/publicinc/wdf/kmdf/$OLDER" | tar -x -C "$B"
commit=$(git --git-dir="$WDF_MIRROR" rev-parse HEAD)
H=$B/src/publicinc/wdf/kmdf/$KMDF
# wdf.h includes some headers with other capitalization than the files have.
(cd "$H" && ln -sf wdfqueryinterface.h WdfQueryInterface.h && ln -sf wdfwmi.h WdfWMI.h &&
    ln -sf wdfdmaenabler.h wdfDmaEnabler.h && ln -sf wdfdmatransaction.h wdfDmaTransaction.h &&
    ln -sf wdfcommonbuffer.h wdfCommonBuffer.h)
mkdir -p "$B/km/crt"
# mingw-w64's wdm.h lacks POOL_FLAGS, which wdf.h does not need but its
# headers' prototypes mention.
printf '#include_next <wdm.h>\ntypedef ULONG64 POOL_FLAGS;\n' >"$B/km/crt/wdm.h"
# mingw's headers need their GNU branch under clang's MSVC target; the AMX
# intrinsics headers do not parse there and nothing here uses them.
flags=(-target x86_64-pc-windows-msvc -fsyntax-only -D__GNUC__=4 -D__GNUC_MINOR__=2 -D__GNUC_PATCHLEVEL__=1
    -D__AMXINTRIN_H -D__AMX_FP16INTRIN_H -D__AMX_COMPLEXINTRIN_H -D__AMXFP8INTRIN_H -D__AMXMOVRSINTRIN_H
    -D__AMX_AVX512INTRIN_H -D__AMX_TF32INTRIN_H -I"$B/km/crt" -I"$MINGW/ddk" -I"$MINGW" -I"$H")
"$CLANG" "${flags[@]}" -Xclang -fdump-record-layouts probe.c >"$B/dump.txt" 2>"$B/err.txt" || {
    cat "$B/err.txt" >&2
    exit 1
}

python3 - "$B/dump.txt" "$H/wdffuncenum.h" "$KMDF" "$commit" "$($CLANG --version | head -1)" \
    "$B/src/publicinc/wdf/kmdf/$OLDER/wdffuncenum.h" "$OLDER" >"$OUT" <<'PY'
import re, sys
dump, funcenum, kmdf, commit, clang, older_funcenum, older = sys.argv[1:]
STRUCTS = ["_WDF_DRIVER_CONFIG", "_WDF_IO_QUEUE_CONFIG", "_WDF_OBJECT_ATTRIBUTES", "_WDF_FILEOBJECT_CONFIG",
           "_WDF_TIMER_CONFIG", "_UNICODE_STRING", "_DRIVER_OBJECT"]
FUNCTIONS = ["WdfControlDeviceInitAllocate", "WdfControlFinishInitializing", "WdfDeviceCreate",
             "WdfDeviceCreateSymbolicLink", "WdfDeviceInitAssignName", "WdfDeviceInitFree",
             "WdfDeviceInitSetCharacteristics", "WdfDeviceInitSetDeviceType", "WdfDeviceInitSetFileObjectConfig",
             "WdfDeviceWdmGetDeviceObject", "WdfDriverCreate", "WdfIoQueueCreate", "WdfIoQueueRetrieveNextRequest",
             "WdfIoQueueRetrieveRequestByFileObject", "WdfObjectDelete", "WdfRequestCompleteWithInformation",
             "WdfRequestForwardToIoQueue", "WdfRequestGetFileObject", "WdfRequestRequeue",
             "WdfRequestRetrieveInputBuffer", "WdfRequestRetrieveOutputBuffer", "WdfTimerCreate", "WdfTimerStart",
             "WdfTimerStop"]
records, current = {}, None
for line in open(dump):
    if line.startswith("*** Dumping AST Record Layout"):
        current = None
        continue
    m = re.match(r"^\s*(\d+) \| (struct|union) (\S+)$", line)
    if m and current is None and m.group(1) == "0":
        current = records.setdefault(m.group(3), {"fields": [], "size": None})
        continue
    if current is None:
        continue
    m = re.match(r"^\s*(\d+) \|   (\S.*?) (\w+)$", line)  # direct members only (two spaces)
    if m and not m.group(2).startswith(" "):
        current["fields"].append((int(m.group(1)), m.group(3), m.group(2)))
        continue
    m = re.match(r"^\s*\| \[sizeof=(\d+), align=(\d+)\]", line)
    if m:
        current["size"], current["align"] = int(m.group(1)), int(m.group(2))
        current = None
def table(path):
    body = re.search(r"typedef enum _WDFFUNCENUM \{(.*?)\} WDFFUNCENUM;", open(path).read(), re.S).group(1)
    index = {name: int(value) for name, value in re.findall(r"^\s*(\w+)TableIndex\s*=\s*(\d+)\s*,", body, re.M)}
    return index, re.search(r"^\s*WdfFunctionTableNumEntries\s*=\s*(\d+)", body, re.M)
index, total = table(funcenum)
older_index, _ = table(older_funcenum)
names = sorted(index, key=index.get)
assert [index[n] for n in names] == list(range(len(names))), "WDFFUNCENUM is not 0..n-1"
print(f"# KMDF {kmdf} facts for wdf-types (x64, Microsoft ABI)\n")
print("Generated by `gen/gen.sh`: clang (" + clang + ") `-target x86_64-pc-windows-msvc "
      "-fdump-record-layouts` on `gen/probe.c`, with Microsoft's KMDF headers from "
      f"microsoft/Windows-Driver-Frameworks `src/publicinc/wdf/kmdf/{kmdf}` (commit {commit}) and "
      "mingw-w64's kernel base headers; function indices are positions in `WDFFUNCENUM` "
      f"(`wdffuncenum.h`). Offsets and sizes in bytes; direct members only.\n")
for name in STRUCTS:
    r = records[name]
    print(f"### {name.lstrip('_')} -- size {r['size']}, align {r['align']}\n")
    print("| off | field | type |\n|--:|--|--|")
    for off, field, ty in r["fields"]:
        ty = re.sub(r"\(unnamed at [^)]*\)", "(unnamed)", ty)
        print(f"| {off} | {field} | {ty} |")
    print()
print("### Constants\n")
print("| value | name |\n|--:|--|")
for name, r in sorted(records.items()):
    if name.startswith("probe_value_"):
        print(f"| {r['size'] - 1} | {name[len('probe_value_'):]} |")
print()
print("### Function table\n")
print(f"WdfFunctionTableNumEntries = {total.group(1) if total else len(names)} (entries counted: {len(names)})\n")
print(f"| index | function | KMDF {older} |\n|--:|--|--|")
for name in FUNCTIONS:
    same = "same index" if older_index.get(name) == index[name] else "MISSING or moved"
    print(f"| {index[name]} | {name} | {same} |")
PY
echo "wrote $OUT"
