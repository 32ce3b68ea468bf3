#!/usr/bin/env bash
# tools/ctest.sh - build and run every C unit test, tests/c/test_*.c, each
# linked with all of csrc/*.c:
#
#   (a) native, under AddressSanitizer and UndefinedBehaviorSanitizer;
#   (b) cross-compiled for aarch64 and run under qemu-aarch64-static with the
#       Cortex-A72 model (a Raspberry Pi 4), which exercises the NEON kernel.
#       Needs Debian's qemu-user-static, gcc-aarch64-linux-gnu and
#       libc6-dev-arm64-cross; without them the step is skipped, or fails when
#       CI=true.
#
# The AVX-512 and GFNI kernels only run where the CPU has them.  Running the
# x86 tests under qemu-x86_64-static -cpu max does not help: Debian 12's QEMU
# (7.2) emulates AVX2 but neither AVX-512 nor GFNI (its "max" CPU does not
# report them, and executing them raises SIGILL), so there is no emulated
# step for them.  tests/c/test_gf256.c still checks the GFNI bit matrices
# against the SDM's definition of gf2p8affineqb, and those kernels share
# their loop code with the AVX2 one.
#
# Prints one line per test program and target, then
# "ctest: N passed, N failed"; exits nonzero if anything failed.
# CTEST_TIMEOUT (seconds, default 900) bounds each test run.
set -u

cd "$(dirname "$0")/.." || exit 2

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ctest.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT

shopt -s nullglob
tests=(tests/c/test_*.c)
srcs=(csrc/*.c)
timeout_s=${CTEST_TIMEOUT:-900}
passed=0
failed=0

if [ ${#tests[@]} -eq 0 ]; then
    echo "ctest: no tests/c/test_*.c found" >&2
    exit 1
fi

common_flags=(-std=c99 -D_GNU_SOURCE -Wall -Wextra -Werror -Icsrc)

# build_and_run TARGET COMPILER FLAGS... -- RUNNER...
# Builds and runs every test for one target, counting each program once.
build_and_run() {
    local target=$1 cc=$2
    shift 2
    local flags=()
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do
        flags+=("$1")
        shift
    done
    shift # the "--"
    local runner=("$@")
    local t name bin log rc
    for t in "${tests[@]}"; do
        name=$(basename "$t" .c)
        bin="$tmp/$target-$name"
        log="$tmp/$target-$name.log"
        if ! "$cc" "${common_flags[@]}" "${flags[@]}" "$t" "${srcs[@]}" -lpthread -lm -o "$bin" \
            >"$log" 2>&1; then
            cat "$log"
            echo "FAIL  $target $name (build)"
            failed=$((failed + 1))
            continue
        fi
        timeout "$timeout_s" "${runner[@]}" "$bin" >"$log" 2>&1
        rc=$?
        if [ $rc -eq 0 ]; then
            grep -E '^(SKIP|note:)' "$log" | sed "s/^/      $target $name: /"
            echo "ok    $target $name ($(tail -n 1 "$log"))"
            passed=$((passed + 1))
        else
            cat "$log"
            [ $rc -eq 124 ] && echo "(timed out after ${timeout_s}s)"
            echo "FAIL  $target $name (exit status $rc)"
            failed=$((failed + 1))
        fi
    done
}

# (a) native, sanitized
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
build_and_run native gcc -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
    -fno-sanitize-recover=all -- env

# (b) aarch64 under qemu
missing=()
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || missing+=(aarch64-linux-gnu-gcc)
command -v qemu-aarch64-static >/dev/null 2>&1 || missing+=(qemu-aarch64-static)
if [ ${#missing[@]} -eq 0 ]; then
    build_and_run aarch64 aarch64-linux-gnu-gcc -O2 -static -- qemu-aarch64-static -cpu cortex-a72
elif [ "${CI:-}" = "true" ]; then
    echo "FAIL  aarch64: ${missing[*]} not found; install qemu-user-static" \
        "gcc-aarch64-linux-gnu libc6-dev-arm64-cross"
    failed=$((failed + ${#tests[@]}))
else
    echo "SKIP  aarch64: ${missing[*]} not found (apt-get install qemu-user-static" \
        "gcc-aarch64-linux-gnu libc6-dev-arm64-cross); with CI=true this fails"
fi

echo "ctest: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
