#!/usr/bin/env bash
# Windows-target cross-check, runnable on Linux from the repository root.
#
#   a. type-checks the driver, KMDF glue included, for
#      x86_64-pc-windows-msvc against the project's own WDF declarations
#      (feature `wdf-declarations`: wdf-types instead of the WDK's wdk-sys),
#      with core/alloc built from source;
#   b. meanwhile builds it as a release staticlib;
#   c. links that into a KMDF kernel image (wfpcallout.sys) with lld-link;
#      its entry point is `FxDriverEntry`, the stand-in for the WDK's loader
#      stub (driver/glue/fx_driver_entry.rs), which binds through WDFLDR and calls
#      the glue's `DriverEntry`;
#   d. inspects the image: imports only from the kernel modules a WFP
#      callout driver may use, some from fwpkclnt.sys and wdfldr.sys,
#      native subsystem, FxDriverEntry as the entry point;
#   e. type-checks wfpctl for Windows;
#   f. builds and links the same driver for aarch64-pc-windows-msvc (an
#      ARM64 KMDF image, wfpcallout-arm64.sys) and inspects it like d.
#
# Needs Debian's rustc-web, cargo-web, rust-web-src, lld-22 and llvm-22
# (installed by .ci/run). Debian's rustc 1.96 ships the library source that
# -Zbuild-std needs; RUSTC_BOOTSTRAP=1 unlocks -Z flags on it. The build
# uses its own target directory (target/cross) so it never waits on, or
# invalidates, the host build's.
#
# Environment:
#   CROSS_CHECK_ALLOW_WARNINGS=1   do not turn warnings into errors
#   CARGO, RUSTC, LLD_LINK, LLVM_READOBJ   override the tools
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

TARGET=x86_64-pc-windows-msvc
ARM64_TARGET=aarch64-pc-windows-msvc
TARGET_DIR=target/cross
IMAGE=$TARGET_DIR/wfpcallout.sys
MAP=$TARGET_DIR/wfpcallout.map
STATICLIB=$TARGET_DIR/$TARGET/release/wfpcallout.lib
# Kernel modules a WFP callout driver may import from (compared
# case-insensitively).
ALLOWED_DLLS=(ntoskrnl.exe hal.dll fwpkclnt.sys netio.sys ndis.sys wdfldr.sys)

# Debian's toolchain, not rustup's proxies (which come first on PATH, and
# whose compilers cannot use the 1.96 library source).
CARGO=${CARGO:-/usr/bin/cargo}
export RUSTC=${RUSTC:-/usr/bin/rustc}
export RUSTC_BOOTSTRAP=1
export PATH="/usr/bin:$PATH"
LLD_LINK=${LLD_LINK:-lld-link-22}
LLVM_READOBJ=${LLVM_READOBJ:-llvm-readobj-22}

step() { printf '\n==> %s\n' "$*"; }
run() {
    printf '+ %s\n' "$*"
    "$@"
}
fail() {
    printf 'cross-check: FAIL: %s\n' "$*" >&2
    exit 1
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }

step "tools"
for tool in "$CARGO" "$RUSTC" "$LLD_LINK" "$LLVM_READOBJ"; do
    command -v "$tool" >/dev/null || fail "$tool not found (apt-get install rustc-web cargo-web rust-web-src lld-22 llvm-22)"
done
sysroot=$("$RUSTC" --print sysroot)
[[ -f $sysroot/lib/rustlib/src/rust/library/Cargo.lock ]] ||
    fail "no library source under $sysroot/lib/rustlib/src (apt-get install rust-web-src)"
"$RUSTC" --version
"$CARGO" --version

# Flags of both cargo invocations. Warnings are errors for the workspace's
# crates (cargo caps lints of registry crates and of core/alloc). The
# config file's rustflags for the target (+crt-static) are kept: --config
# arrays are appended to them.
cargo_args=(--locked --target "$TARGET" --target-dir "$TARGET_DIR" "-Zbuild-std=core,alloc")
if [[ ${CROSS_CHECK_ALLOW_WARNINGS:-0} != 1 ]]; then
    cargo_args+=(--config "target.$TARGET.rustflags=[\"-Dwarnings\"]")
fi

total_start=$(now)

# a and b run side by side: each spends most of its cold time compiling
# core, mostly on one thread. They use different profiles (dev, release),
# hence different lock and output directories under $TARGET_DIR. Their
# output is shown once both have finished, a first.
check_cmd=("$CARGO" check -p wfpcallout --lib --no-default-features --features wdf-declarations "${cargo_args[@]}")
# No -Zbuild-std-features=compiler-builtins-mem: memcpy/memset/memmove/
# memcmp, which LLVM calls and compiler-builtins leaves to the C runtime on
# MSVC targets, are imported from ntoskrnl.exe, which exports them
# (raw-dylib declarations in driver/platform/kernel.rs). The image then carries
# no second copy of them, and the link needs no import library.
build_cmd=("$CARGO" rustc -p wfpcallout --lib --crate-type staticlib --release --no-default-features --features wdf-declarations "${cargo_args[@]}")
mkdir -p "$TARGET_DIR"
step "a. cargo check for $TARGET (driver and KMDF glue, own WDF declarations) | b. release staticlib"
printf '+ %s &\n+ %s\n' "${check_cmd[*]}" "${build_cmd[*]}"
t=$(now)
check_rc=0
build_rc=0
"${check_cmd[@]}" >"$TARGET_DIR/check.log" 2>&1 &
check_pid=$!
trap 'kill "$check_pid" 2>/dev/null || true' EXIT
"${build_cmd[@]}" >"$TARGET_DIR/staticlib.log" 2>&1 || build_rc=$?
wait "$check_pid" || check_rc=$?
trap - EXIT
echo "-- a. cargo check (exit $check_rc):"
cat "$TARGET_DIR/check.log"
((check_rc == 0)) || fail "cargo check for $TARGET failed"
echo "-- b. staticlib (exit $build_rc):"
cat "$TARGET_DIR/staticlib.log"
((build_rc == 0)) || fail "the staticlib build for $TARGET failed"
[[ -f $STATICLIB ]] || fail "$STATICLIB was not produced"
echo "check + staticlib: $(elapsed "$t")"

# c, d: links $STATICLIB into $IMAGE (with $MAP) for $target and checks it.
link_and_inspect() {
local target=$1 machine=$2 machine_name=$3
    step "c. link the KMDF image for $target"
    t=$(now)
    rm -f "$IMAGE" "$MAP"
    # /DRIVER:WDM sets the WDM_DRIVER bit, /INTEGRITYCHECK FORCE_INTEGRITY,
    # /RELEASE the checksum the kernel loader verifies. Relocatable, NX
    # (lld-link's defaults, spelled out). Not Terminal Server aware: meaningless
    # for a driver. No /KERNEL: lld-link accepts it only as an ignored flag.
    # Kernel imports come from the raw-dylib import libraries rustc put in the
    # staticlib, so no import library and no default library is needed.
    run "$LLD_LINK" /NOLOGO /DRIVER:WDM /SUBSYSTEM:NATIVE /ENTRY:FxDriverEntry /NODEFAULTLIB /MACHINE:"$machine" \
        /RELEASE /INTEGRITYCHECK /DYNAMICBASE /HIGHENTROPYVA /NXCOMPAT /TSAWARE:NO /OPT:REF /OPT:ICF \
        /MAP:"$MAP" /OUT:"$IMAGE" "$STATICLIB"
    echo "link: $(elapsed "$t")"

    step "d. inspect $IMAGE"
    run "$LLVM_READOBJ" --coff-imports "$IMAGE" | tee "$IMAGE.imports.txt"
    headers=$("$LLVM_READOBJ" --file-headers "$IMAGE")

    # "DLL count" lines, one per import descriptor; delay-load descriptors are
    # marked, since a kernel image cannot delay-load.
    import_table=$(awk '
        /^(Import|DelayImport) \{/ { kind = $1; dll = ""; n = 0; next }
        /^  Name: / && kind != "" { dll = $2; next }
        /^  Symbol: / && kind != "" { n++; next }
        /^\}/ && kind != "" { print dll, n, kind; kind = "" }
    ' "$IMAGE.imports.txt")
    [[ -n $import_table ]] || fail "the image imports nothing"

    errors=0
    fwpkclnt_symbols=0
    wdfldr_symbols=0
    while read -r dll count kind; do
        lower=${dll,,}
        if [[ $kind == DelayImport ]]; then
            printf 'cross-check: delay-load import of %s: kernel images cannot delay-load\n' "$dll" >&2
            errors=$((errors + 1))
        fi
        allowed=0
        for ok in "${ALLOWED_DLLS[@]}"; do
            if [[ $lower == "$ok" ]]; then allowed=1; fi
        done
        if ((!allowed)); then
            printf 'cross-check: import from %s is outside {%s}\n' "$dll" "${ALLOWED_DLLS[*]}" >&2
            errors=$((errors + 1))
        fi
        if [[ $lower == fwpkclnt.sys ]]; then fwpkclnt_symbols=$((fwpkclnt_symbols + count)); fi
        if [[ $lower == wdfldr.sys ]]; then wdfldr_symbols=$((wdfldr_symbols + count)); fi
    done <<<"$import_table"
    if ((fwpkclnt_symbols == 0)); then
        printf 'cross-check: no import from fwpkclnt.sys: the WFP calls are not linked\n' >&2
        errors=$((errors + 1))
    fi
    if ((wdfldr_symbols == 0)); then
        printf 'cross-check: no import from wdfldr.sys: the image does not bind to KMDF\n' >&2
        errors=$((errors + 1))
    fi

    header_field() { awk -v f="$1" '$1 == f ":" { print $2; exit }' <<<"$headers"; }
    subsystem=$(grep -o 'Subsystem: .*' <<<"$headers" || true)
    entry_rva=$(header_field AddressOfEntryPoint)
    image_base=$(header_field ImageBase)
    size_of_image=$(header_field SizeOfImage)
    if ! grep -q "Machine: IMAGE_FILE_MACHINE_$machine_name " <<<"$headers"; then
        printf 'cross-check: not an IMAGE_FILE_MACHINE_%s image\n' "$machine_name" >&2
        errors=$((errors + 1))
    fi
    if [[ $subsystem != *"(0x1)"* ]]; then
        printf 'cross-check: subsystem is not NATIVE (1): %s\n' "$subsystem" >&2
        errors=$((errors + 1))
    fi
    if [[ -z $entry_rva ]] || ((entry_rva == 0)); then
        printf 'cross-check: AddressOfEntryPoint is zero\n' >&2
        errors=$((errors + 1))
    fi
    grep -q 'IMAGE_DLL_CHARACTERISTICS_WDM_DRIVER' <<<"$headers" || {
        printf 'cross-check: WDM_DRIVER characteristic missing\n' >&2
        errors=$((errors + 1))
    }
    # The linker's map gives FxDriverEntry's address (Rva+Base column): it must be
    # the entry point, not merely some symbol the linker accepted.
    driver_entry_va=$(awk '$2 == "FxDriverEntry" { print $3; exit }' "$MAP")
    if [[ -z $driver_entry_va ]]; then
        printf 'cross-check: FxDriverEntry not found in the link map\n' >&2
        errors=$((errors + 1))
    elif ((0x$driver_entry_va - image_base != entry_rva)); then
        printf 'cross-check: entry point RVA %#x is not FxDriverEntry (%#x)\n' \
            "$entry_rva" $((0x$driver_entry_va - image_base)) >&2
        errors=$((errors + 1))
    fi

    step "summary ($target)"
    printf 'image: %s, %d bytes on disk, SizeOfImage %d, entry point RVA %#x, %s\n' \
        "$IMAGE" "$(stat -c %s "$IMAGE")" "$size_of_image" "$entry_rva" "$subsystem"
    while read -r dll count kind; do
        note=""
        if [[ $kind == DelayImport ]]; then note=" (delay-load)"; fi
        printf '  %-16s %3d functions%s\n' "$dll" "$count" "$note"
    done <<<"$import_table"
    ((errors == 0)) || fail "$errors problem(s) in $IMAGE (see above)"
}

link_and_inspect "$TARGET" X64 AMD64

step "e. wfpctl (user mode, std) for $TARGET"
if [[ -f wfpctl/Cargo.toml ]]; then
    t=$(now)
    # Type-check only: linking a std binary needs the MSVC C runtime, which
    # is not available off Windows. Own target directory: its std build
    # must not evict the driver's core/alloc build.
    std_args=(--locked --target "$TARGET" --target-dir "$TARGET_DIR-std" "-Zbuild-std=std,panic_abort")
    if [[ ${CROSS_CHECK_ALLOW_WARNINGS:-0} != 1 ]]; then
        std_args+=(--config "target.$TARGET.rustflags=[\"-Dwarnings\"]")
    fi
    run "$CARGO" check -p wfpctl "${std_args[@]}"
    echo "wfpctl check: $(elapsed "$t")"
else
    echo "skipped: no wfpctl/Cargo.toml yet"
fi

step "f. ARM64: the same image for $ARM64_TARGET"
t=$(now)
arm64_args=(--locked --target "$ARM64_TARGET" --target-dir "$TARGET_DIR" "-Zbuild-std=core,alloc")
if [[ ${CROSS_CHECK_ALLOW_WARNINGS:-0} != 1 ]]; then
    arm64_args+=(--config "target.$ARM64_TARGET.rustflags=[\"-Dwarnings\"]")
fi
run "$CARGO" rustc -p wfpcallout --lib --crate-type staticlib --release --no-default-features \
    --features wdf-declarations "${arm64_args[@]}"
echo "ARM64 staticlib: $(elapsed "$t")"
STATICLIB=$TARGET_DIR/$ARM64_TARGET/release/wfpcallout.lib
IMAGE=$TARGET_DIR/wfpcallout-arm64.sys
MAP=$TARGET_DIR/wfpcallout-arm64.map
[[ -f $STATICLIB ]] || fail "$STATICLIB was not produced"
link_and_inspect "$ARM64_TARGET" ARM64 ARM64

printf '\ncross-check: OK (%s)\n' "$(elapsed "$total_start")"
