#!/usr/bin/env bash
# tools/arm64.sh - cloudkernel's Python test suite on arm64 (a Raspberry Pi 4's
# Cortex-A72) under qemu-user emulation, on an x86-64 Debian host:
#
#   1. an arm64 Debian bookworm root with python3.11 and the packages the tests
#      import, built once and cached in /var/cache/cloudkernel-tests/arm64-root
#      (rebuilt when the recipe below changes: the root's marker file holds a
#      hash of it);
#   2. the extension cross-compiled for aarch64 on the host (Cython and
#      aarch64-linux-gnu-gcc, seconds instead of minutes of gcc under qemu)
#      into a copy of the tree, so the worktree's own x86 .so files stay;
#   3. pytest run by the root's python3.11 under `qemu-aarch64-static` with
#      QEMU_CPU=cortex-a72, with CLOUDKERNEL_EXPECT_IMPL=compiled and a check
#      that the NEON kernel is the one selected.
#
# The tests run without binfmt_misc: qemu-aarch64-static is started directly
# with QEMU_LD_PREFIX pointing at the root.  Only building the root needs
# binfmt_misc (debootstrap's second stage runs arm64 programs in a chroot); it
# is registered for that step and removed afterwards, and binfmt_misc is
# unmounted again when it was not mounted before.
#
# Usage: bash tools/arm64.sh           the whole suite (as CI runs it)
#        bash tools/arm64.sh --quick   the compiled code's and protocol core's tests
#        bash tools/arm64.sh --bench   GF(2^8) and decode throughput, NEON vs scalar,
#                                      EMULATED (not in CI: qemu is no Pi)
#        bash tools/arm64.sh --root    only build (or check) the cached root
#        bash tools/arm64.sh [mode] -- ARGS...   extra arguments for pytest
#
# Tools missing or the root failing to build: a skip (exit 0) with the reason,
# or a failure when CI=true.  ARM64_TIMEOUT (seconds, default 2400) bounds the
# pytest run; ARM64_BUILD_TIMEOUT (default 1200) bounds each root-build step.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SRC=$PWD

MODE=full
PYTEST_EXTRA=()
while [ $# -gt 0 ]; do
    case $1 in
        --full) MODE=full ;;
        --quick) MODE=quick ;;
        --bench) MODE=bench ;;
        --root) MODE=root ;;
        --)
            shift
            PYTEST_EXTRA=("$@")
            break
            ;;
        *)
            echo "usage: bash tools/arm64.sh [--full|--quick|--bench|--root] [-- PYTEST_ARGS...]" >&2
            exit 2
            ;;
    esac
    shift
done

CACHE=${CLOUDKERNEL_ARM64_CACHE:-/var/cache/cloudkernel-tests}
ROOT=$CACHE/arm64-root
MARKER=$ROOT/.cloudkernel-arm64-root
SUITE=bookworm
QEMU_CPU_MODEL=cortex-a72
BUILD_TIMEOUT=${ARM64_BUILD_TIMEOUT:-1200}
TEST_TIMEOUT=${ARM64_TIMEOUT:-2400}

# Debian's arm64 packages where bookworm's version is good enough;
# python3-dev for the headers the cross-compiler builds against; GLib for the
# lcm wheel.
DEB_PACKAGES=(python3.11 python3-dev libglib2.0-0)
# The rest: bookworm's are older than pyproject.toml asks for (pytest 7,
# hypothesis 6.36, cryptography 38, uvloop 0.17, prometheus-client 0.16,
# numpy 1.24), so they come from PyPI as aarch64 wheels, installed from the
# host into the root (pip under qemu would be slower and need the root's CA
# setup).  msgpack too: before 1.2 its unpackb raises SystemError on a
# non-contiguous buffer of bytes, so the pure-Python payload decoder refuses
# what the compiled one accepts (test_payload_compiled.py::test_buffer_kinds);
# bookworm has 1.0.3.  And click: the CLI tests read CliRunner's stderr apart
# from stdout, which click gives from 8.2 (bookworm has 8.1.3).  The minimums
# are pyproject.toml's.
# numpy is for bench_consensus's smoke test, lcm and eclipse-zenoh for the
# soak agents' tests (bench/soak_agents/).
PIP_PACKAGES=(
    "msgpack>=1.2" "click>=8.2" "pytest>=8" "pytest-asyncio>=0.23" "hypothesis>=6.100" "reedsolo==1.7.0"
    "cryptography>=42" "uvloop>=0.19" "prometheus-client>=0.20" "numpy>=1.26"
    "lcm>=1.5.3" "eclipse-zenoh>=1.10.2"
)
# Everything the root is made of; its hash is the root's version.  Change
# ROOT_RECIPE_VERSION when the build steps below change.
ROOT_RECIPE_VERSION=2
RECIPE="v$ROOT_RECIPE_VERSION $SUITE minbase ${DEB_PACKAGES[*]} | ${PIP_PACKAGES[*]}"
RECIPE_HASH=$(printf '%s' "$RECIPE" | sha256sum | cut -c1-16)

say() { echo "arm64: $*"; }

# unavailable MESSAGE: a skip, or a failure when CI=true.
unavailable() {
    if [ "${CI:-}" = "true" ]; then
        say "FAIL: $*"
        exit 1
    fi
    say "SKIP: $* (with CI=true this fails)"
    exit 0
}

need_tools() {
    local need=()
    command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
    command -v aarch64-linux-gnu-gcc >/dev/null || need+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
    command -v debootstrap >/dev/null || need+=(debootstrap)
    [ ${#need[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        unavailable "not root, cannot install ${need[*]}"
    fi
    say "installing ${need[*]}"
    timeout 600 apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq --no-install-recommends \
        "${need[@]}" >/dev/null || unavailable "apt-get install ${need[*]} failed"
}

# The Debian archive apt on this host uses (as tests/nspawn.py finds it).
debian_mirror() {
    local m
    m=$(grep -hs -A3 '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null |
        awk -v s="$SUITE" '/^URIs:/ {u=$2} /^Suites:/ {for (i=2;i<=NF;i++) if ($i==s) {print u; exit}}')
    [ -n "$m" ] || m=$(awk -v s="$SUITE" '$1=="deb" && $3==s {print $2; exit}' \
        /etc/apt/sources.list 2>/dev/null || true)
    echo "${m:-http://deb.debian.org/debian}"
}

# ---------------------------------------------------------------- the root

BINFMT=/proc/sys/fs/binfmt_misc
BINFMT_ENTRY=cloudkernel-aarch64
binfmt_mounted_by_us=0
binfmt_registered_by_us=0
build_tmp=

cleanup_build() {
    # Anything debootstrap left mounted inside the half-built root first, so
    # that removing it never reaches through a mount.
    if [ -n "$build_tmp" ]; then
        local m
        awk -v p="$build_tmp/" 'index($2, p) == 1 {print $2}' /proc/mounts | sort -r |
            while read -r m; do umount -l "$m" || true; done
        rm -rf --one-file-system "$build_tmp" "$build_tmp.pip"
    fi
    binfmt_disable
}

binfmt_disable() {
    if [ "$binfmt_registered_by_us" = 1 ] && [ -e "$BINFMT/$BINFMT_ENTRY" ]; then
        echo -1 >"$BINFMT/$BINFMT_ENTRY" || say "could not remove binfmt entry $BINFMT_ENTRY"
    fi
    binfmt_registered_by_us=0
    if [ "$binfmt_mounted_by_us" = 1 ]; then
        umount "$BINFMT" || say "could not unmount $BINFMT"
    fi
    binfmt_mounted_by_us=0
}

# Lets the kernel run arm64 programs through qemu (debootstrap's second stage
# execs dpkg and maintainer scripts inside the chroot).  The "F" flag opens
# the interpreter now, so it need not exist inside the root.
binfmt_enable() {
    if ! mountpoint -q "$BINFMT"; then
        mount -t binfmt_misc binfmt_misc "$BINFMT"
        binfmt_mounted_by_us=1
    fi
    local e
    for e in "$BINFMT"/*; do
        case ${e##*/} in register | status) continue ;; esac
        if [ -f "$e" ] && grep -q '^enabled' "$e" && grep -q 'qemu-aarch64\|aarch64-binfmt' "$e"; then
            return 0 # the host already runs arm64 programs; leave its entry alone
        fi
    done
    local interp=/usr/libexec/qemu-binfmt/aarch64-binfmt-P
    [ -x "$interp" ] || interp=$(command -v qemu-aarch64-static)
    local magic='\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00'
    local mask='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'
    local flags=F
    case $interp in *-binfmt-P) flags=PF ;; esac
    echo ":$BINFMT_ENTRY:M::$magic:$mask:$interp:$flags" >"$BINFMT/register"
    binfmt_registered_by_us=1
}

build_root() {
    local mirror
    mirror=$(debian_mirror)
    build_tmp=$CACHE/arm64-root.tmp-$$
    trap cleanup_build EXIT
    local t0=$SECONDS
    say "building the arm64 root from $mirror (recipe $RECIPE_HASH; a few minutes, once)"
    # The wheels first: the quicker step, and the one more likely to fail.
    # pip does not widen --platform to older manylinux tags: each is named
    # (bookworm's glibc is 2.36), and abi3/none for the stable-ABI and pure ones.
    if ! timeout "$BUILD_TIMEOUT" "$SRC/.venv/bin/python" -m pip install -q \
        --disable-pip-version-check --no-warn-script-location --target "$build_tmp.pip" \
        --platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64 \
        --platform manylinux_2_28_aarch64 --platform manylinux_2_34_aarch64 \
        --implementation cp --python-version 3.11 --abi cp311 --abi abi3 --abi none \
        --only-binary=:all: "${PIP_PACKAGES[@]}" >"$CACHE/arm64-root.log" 2>&1; then
        grep -v 'is ignored' "$CACHE/arm64-root.log" | tail -n 5
        return 1
    fi
    local include
    include=$(
        IFS=,
        echo "${DEB_PACKAGES[*]}"
    )
    if ! timeout "$BUILD_TIMEOUT" debootstrap --arch=arm64 --foreign --variant=minbase \
        --include="$include" "$SUITE" "$build_tmp" "$mirror" >>"$CACHE/arm64-root.log" 2>&1; then
        tail -n 5 "$CACHE/arm64-root.log"
        return 1
    fi
    binfmt_enable || return 1
    if ! timeout "$BUILD_TIMEOUT" chroot "$build_tmp" /debootstrap/debootstrap --second-stage \
        >>"$CACHE/arm64-root.log" 2>&1; then
        tail -n 5 "$CACHE/arm64-root.log"
        return 1
    fi
    binfmt_disable
    # Into the directory Debian's python3.11 already put on its sys.path.
    local site=$build_tmp/usr/local/lib/python3.11/dist-packages
    mkdir -p "$site"
    cp -a "$build_tmp.pip/." "$site/"
    rm -rf "$build_tmp.pip"
    rm -rf "$build_tmp/var/cache/apt/archives/"*.deb
    echo "$RECIPE" >"$build_tmp/${MARKER#"$ROOT"/}.recipe"
    echo "$RECIPE_HASH" >"$build_tmp/${MARKER#"$ROOT"/}"
    rm -rf --one-file-system "$ROOT"
    mv "$build_tmp" "$ROOT"
    build_tmp=
    trap - EXIT
    say "root built in $((SECONDS - t0)) s ($(du -sh "$ROOT" | cut -f1))"
}

ensure_root() {
    mkdir -p "$CACHE"
    # One build at a time; a second run waits for the first and then reuses it.
    exec 9>"$CACHE/arm64-root.lock"
    timeout "$BUILD_TIMEOUT" flock 9 || unavailable "timed out waiting for $CACHE/arm64-root.lock"
    if [ "$(cat "$MARKER" 2>/dev/null)" = "$RECIPE_HASH" ] && [ -x "$ROOT/usr/bin/python3.11" ]; then
        say "cached root $ROOT (recipe $RECIPE_HASH)"
    elif [ "$(id -u)" -ne 0 ]; then
        unavailable "no cached arm64 root and not root: cannot build one"
    else
        local start=$SECONDS
        if ! build_root; then
            cleanup_build
            trap - EXIT
            unavailable "building the arm64 root failed (log: $CACHE/arm64-root.log)"
        fi
        say "root ready in $((SECONDS - start)) s"
    fi
    exec 9>&-
}

# ---------------------------------------------------------------- the extension

# Cross-compiles every extension setup.py declares, with setup.py's sources,
# macros and flags, into a copy of the tree in $TREE.
cross_build() {
    local t0=$SECONDS
    # Tracked and untracked-but-not-ignored files: the tree as it is being
    # worked on, without the host's .so files and generated C.
    git -C "$SRC" ls-files -z -c -o --exclude-standard |
        tar -C "$SRC" --null -T - -cf - 2>/dev/null | tar -C "$TREE" -xf -
    local cflags_py
    cflags_py=$(cd "$TREE" && "$SRC/.venv/bin/python" - <<'EOF'
# Read setup.py's extensions without building them: setup() and cythonize()
# are replaced by recorders, so the list here can never drift from setup.py.
import json, shlex
import setuptools
import Cython.Build

exts = []
Cython.Build.cythonize = lambda e, **_: e
setuptools.setup = lambda **kw: exts.extend(kw["ext_modules"])
exec(compile(open("setup.py").read(), "setup.py", "exec"), {"__name__": "__main__"})
for e in exts:
    flags = [f"-I{d}" for d in e.include_dirs]
    flags += [f"-D{k}" if v is None else f"-D{k}={v}" for k, v in e.define_macros]
    flags += e.extra_compile_args
    libs = [f"-l{lib}" for lib in e.libraries]
    print(e.name, json.dumps(e.sources), shlex.join(flags), shlex.join(libs), sep="\t")
EOF
    )
    local inc=(-I"$ROOT/usr/include/python3.11" -idirafter "$ROOT/usr/include")
    # Python's own CFLAGS for extensions (sysconfig's on Debian) come first,
    # setup.py's after them, as setuptools orders them.
    local base=(-fPIC -DNDEBUG -fwrapv -O2 -Wall -Wno-unused-function)
    local name sources flags libs src obj objs pids=()
    while IFS=$'\t' read -r name sources flags libs; do
        (
            set -euo pipefail
            cd "$TREE"
            objs=()
            for src in $(python3 -c 'import json,sys; print(*json.loads(sys.argv[1]))' "$sources"); do
                if [ "${src##*.}" = pyx ]; then
                    "$SRC/.venv/bin/cython" -3 "$src" -o "${src%.pyx}.c"
                    src=${src%.pyx}.c
                fi
                obj=build-arm64/$name/${src//\//_}.o
                mkdir -p "$(dirname "$obj")"
                # shellcheck disable=SC2086  # flags and libs are word lists from setup.py
                aarch64-linux-gnu-gcc "${base[@]}" "${inc[@]}" $flags -c "$src" -o "$obj"
                objs+=("$obj")
            done
            # shellcheck disable=SC2086
            aarch64-linux-gnu-gcc -shared "${objs[@]}" $libs \
                -o "${name//.//}.cpython-311-aarch64-linux-gnu.so"
        ) &
        pids+=($!)
    done <<<"$cflags_py"
    local pid rc=0
    for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
    [ $rc -eq 0 ] || return 1
    rm -rf "$TREE/build-arm64"
    say "extension cross-compiled in $((SECONDS - t0)) s: $(cd "$TREE" && find cloudkernel -name '*.so' | sort | xargs)"
}

# ---------------------------------------------------------------- running arm64 Python

# Runs the root's python3.11 under qemu with the Cortex-A72 model.  Child
# Pythons (the tests start daemons and CLIs with sys.executable) cannot be
# exec'd directly without binfmt_misc, so sys.executable is pointed at a host
# shell wrapper that starts them under qemu too (tools/arm64 sitecustomize).
setup_runner() {
    mkdir -p "$TREE/.arm64"
    cat >"$TREE/.arm64/python3.11" <<EOF
#!/bin/sh
# arm64 python3.11 of $ROOT under qemu-user (made by tools/arm64.sh).
# The root, CPU model and tree are set here too, for children started with an
# environment of their own.
export PYTHONPATH="\${PYTHONPATH:-$TREE/.arm64:$TREE}"
export CLOUDKERNEL_ARM64_PYTHON="$TREE/.arm64/python3.11"
exec qemu-aarch64-static -L "$ROOT" -cpu "$QEMU_CPU_MODEL" "$ROOT/usr/bin/python3.11" "\$@"
EOF
    chmod +x "$TREE/.arm64/python3.11"
    # The console script pip would have put next to the Python (the systemd
    # unit's tests look for it there).
    cat >"$TREE/.arm64/cloudkernel" <<EOF
#!/bin/sh
exec "$TREE/.arm64/python3.11" -m cloudkernel "\$@"
EOF
    chmod +x "$TREE/.arm64/cloudkernel"
    cat >"$TREE/.arm64/sitecustomize.py" <<'EOF'
# Made by tools/arm64.sh: child processes started with sys.executable must go
# through qemu too, so sys.executable is the wrapper script beside this file.
import os
import sys

sys.executable = os.environ.get("CLOUDKERNEL_ARM64_PYTHON", sys.executable)
EOF
}

arm64_python() {
    env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME="${HOME:-/root}" LANG=C.UTF-8 TMPDIR="$TMP" CI="${CI:-}" \
        QEMU_LD_PREFIX="$ROOT" QEMU_CPU="$QEMU_CPU_MODEL" \
        PYTHONPATH="$TREE/.arm64:$TREE" PYTHONDONTWRITEBYTECODE=1 \
        CLOUDKERNEL_ARM64_PYTHON="$TREE/.arm64/python3.11" \
        CLOUDKERNEL_EMULATED=arm64 CLOUDKERNEL_EXPECT_IMPL=compiled \
        "$@"
}

check_neon() {
    local got
    got=$(cd "$TREE" && arm64_python timeout 300 "$TREE/.arm64/python3.11" -c \
        'import platform, cloudkernel.fec as f; print(platform.machine(), f.IMPLEMENTATION, f.kernel(), ",".join(f.available_kernels()))')
    say "under emulation: $got"
    case $got in
        "aarch64 compiled neon "*) ;;
        *)
            say "FAIL: expected aarch64, the compiled extension and the neon kernel"
            return 1
            ;;
    esac
}

# --quick: the tests of the compiled code (FEC and its kernels, the payload
# decoder, the consensus filter against its reference) and of the protocol
# core that carries their results (wire vectors, receiver fuzz,
# authentication, replay, duplicates, redundancy), for a few minutes' check
# while working on them.
QUICK_TESTS=(
    tests/test_erasure_code.py tests/test_kernels.py tests/test_rscodec.py
    tests/test_fec_fuzz.py tests/test_payload_compiled.py tests/test_protocol_vectors.py
    tests/test_receiver_fuzz.py tests/test_consensus_equivalence.py tests/test_auth.py
    tests/test_replay.py tests/test_dedup.py tests/test_redundancy.py
)

run_tests() {
    local targets=()
    [ "$MODE" = quick ] && targets=("${QUICK_TESTS[@]}")
    local t0=$SECONDS rc=0
    (cd "$TREE" && arm64_python timeout "$TEST_TIMEOUT" "$TREE/.arm64/python3.11" \
        -m pytest -q -p no:cacheprovider "${targets[@]}" "${PYTEST_EXTRA[@]}") || rc=$?
    [ $rc -eq 124 ] && say "pytest timed out after $TEST_TIMEOUT s"
    say "pytest ($MODE) under qemu $QEMU_CPU_MODEL: exit $rc in $((SECONDS - t0)) s"
    return $rc
}

run_bench() {
    local label="EMULATED (qemu-user cortex-a72), not a Pi figure"
    say "GF(2^8) kernels, bench/bench_gf256.c static for aarch64 -- $label"
    aarch64-linux-gnu-gcc -std=c99 -D_GNU_SOURCE -O3 -static -Icsrc bench/bench_gf256.c \
        csrc/ck_gf256*.c -lpthread -o "$TMP/bench_gf256"
    timeout 900 qemu-aarch64-static -cpu "$QEMU_CPU_MODEL" "$TMP/bench_gf256" 11 |
        sed "s/^/[$label] /"
    say "erasure decode, bench/bench_fec.py --quick under the arm64 Python -- $label"
    (cd "$TREE" && arm64_python timeout 1800 "$TREE/.arm64/python3.11" bench/bench_fec.py \
        --quick --no-reference --only erasure,ours,decode_into,decode) | sed "s/^/[$label] /"
}

# ---------------------------------------------------------------- main

need_tools
ensure_root
[ "$MODE" = root ] && exit 0

TMP=$(mktemp -d "${TMPDIR:-/tmp}/arm64.XXXXXX")
# Readable by all, as a checkout is: a test starts the tree's Python as an
# unprivileged user (test_realtime.py).
chmod 755 "$TMP"
TREE=$TMP/tree
mkdir -p "$TREE"
trap 'rm -rf "$TMP"' EXIT

cross_build
setup_runner
check_neon
case $MODE in
    bench) run_bench ;;
    *) run_tests ;;
esac
