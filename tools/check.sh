#!/usr/bin/env bash
# Sets up everything and runs the whole test suite: lint and types, the C
# tests under ASan/UBSan (and on arm64 under qemu), a C fuzz run, pytest on
# arm64 under qemu (tools/arm64.sh, the whole suite), and pytest twice on the
# host: against the compiled extension and against the pure-Python twin.
# Every stage runs; the exit status is nonzero if any failed.
#
# Usage: bash tools/check.sh
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash tools/setup.sh || { echo "check: setup failed"; exit 1; }
echo "=== setup: ok in ${SECONDS} s"
export PATH="$PWD/.venv/bin:$PATH"

passed=0
failed=()
stage() {
    local name=$1 start=$SECONDS
    shift
    echo "=== $name"
    if "$@"; then
        passed=$((passed + 1))
        echo "=== $name: ok in $((SECONDS - start)) s"
    else
        failed+=("$name")
        echo "=== $name FAILED in $((SECONDS - start)) s"
    fi
}

stage "ruff check" ruff check .
stage "ruff format" ruff format --check .
stage "mypy" mypy
stage "C tests" bash tools/ctest.sh
stage "C fuzz" bash tools/cfuzz.sh "${CLOUDKERNEL_FUZZ_RUNS:-100000}"
stage "arm64 (qemu, cortex-a72)" bash tools/arm64.sh
stage "pytest (compiled)" env CLOUDKERNEL_EXPECT_IMPL=compiled python -m pytest -q
stage "pytest (pure Python)" env CLOUDKERNEL_PUREPYTHON=1 CLOUDKERNEL_EXPECT_IMPL=python \
    python -m pytest -q

if [ ${#failed[@]} -ne 0 ]; then
    echo "check: failed stages: ${failed[*]}"
fi
echo "check: ${passed} passed, ${#failed[@]} failed"
[ ${#failed[@]} -eq 0 ]
