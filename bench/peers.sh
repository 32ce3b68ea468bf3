#!/usr/bin/env bash
# Install the peers that bench/bench_fec.py measures cloudkernel.fec against:
#
#   zfec       packet erasure code (C), from its PyPI wheel
#   reedsolo   pure-Python byte-level Reed-Solomon, version 1.7.0
#   creedsolo  reedsolo's Cython build; its wheels on PyPI hold only the pure
#              module, so it is built here from the 1.7.0 sdist with
#              `python setup.py --cythonize bdist_wheel`
#
# Idempotent: a peer that already imports is left alone, and the creedsolo
# wheel is kept in the cache dir ($CLOUDKERNEL_BENCH_CACHE, default
# ~/.cache/cloudkernel-bench) and reused.  Uses the python on PATH, or $PYTHON.
# A failed creedsolo build is reported and does not fail the script: the
# benchmark then prints "creedsolo: not available (...)".
set -euo pipefail

PYTHON="${PYTHON:-python}"
REEDSOLO_VERSION="1.7.0"
CACHE="${CLOUDKERNEL_BENCH_CACHE:-$HOME/.cache/cloudkernel-bench}"

say() { printf 'peers.sh: %s\n' "$*"; }

imports() { "$PYTHON" -c "import $1" >/dev/null 2>&1; }

pip_install() { "$PYTHON" -m pip install --disable-pip-version-check -q "$@"; }

mkdir -p "$CACHE"

# --- zfec -----------------------------------------------------------------
if imports zfec; then
    say "zfec $("$PYTHON" -c 'import zfec; print(zfec.__version__)') already installed"
else
    say "installing zfec"
    pip_install zfec
fi

# --- reedsolo (pure) ------------------------------------------------------
have_rs="$("$PYTHON" -c 'import importlib.metadata as m; print(m.version("reedsolo"))' \
    2>/dev/null || true)"
if [ "$have_rs" = "$REEDSOLO_VERSION" ]; then
    say "reedsolo $have_rs already installed"
else
    say "installing reedsolo==$REEDSOLO_VERSION (found: ${have_rs:-none})"
    pip_install "reedsolo==$REEDSOLO_VERSION"
fi

# --- creedsolo (Cython, built from the sdist) -----------------------------
if imports creedsolo; then
    say "creedsolo already installed"
    exit 0
fi

# First file matching a glob pattern, or nothing.
first_match() {
    local matches
    shopt -s nullglob
    # shellcheck disable=SC2206  # the pattern is meant to be expanded here
    matches=($1)
    shopt -u nullglob
    if [ "${#matches[@]}" -gt 0 ]; then printf '%s\n' "${matches[0]}"; fi
}

build_creedsolo() {
    local work="$CACHE/reedsolo-$REEDSOLO_VERSION-build"
    local tag wheel
    # The cached wheel is for one interpreter: cp311, cp312, ...
    tag="$("$PYTHON" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')"
    wheel="$(first_match "$CACHE/reedsolo-$REEDSOLO_VERSION-$tag-*.whl")"
    if [ -n "$wheel" ]; then
        say "reusing cached wheel $wheel"
    else
        local mod need=()
        for mod in Cython setuptools wheel; do
            imports "$mod" || need+=("$mod")
        done
        if [ "${#need[@]}" -gt 0 ]; then
            say "installing ${need[*]} (needed to build creedsolo)"
            pip_install "${need[@]}" || return 1
        fi
        local sdist="$CACHE/reedsolo-$REEDSOLO_VERSION.tar.gz"
        if [ ! -f "$sdist" ]; then
            say "downloading the reedsolo $REEDSOLO_VERSION sdist"
            "$PYTHON" -m pip download --disable-pip-version-check -q --no-deps \
                --no-binary :all: -d "$CACHE" "reedsolo==$REEDSOLO_VERSION" || return 1
        fi
        rm -rf "$work"
        mkdir -p "$work"
        if ! tar -xzf "$sdist" -C "$work"; then
            say "cannot unpack $sdist; removed it, the next run downloads it again"
            rm -f "$sdist"
            return 1
        fi
        say "building creedsolo (log: $work/build.log)"
        if ! (cd "$work/reedsolo-$REEDSOLO_VERSION" \
                && "$PYTHON" setup.py --cythonize bdist_wheel) >"$work/build.log" 2>&1; then
            tail -n 20 "$work/build.log" >&2
            return 1
        fi
        wheel="$(first_match "$work/reedsolo-$REEDSOLO_VERSION/dist/reedsolo-*-$tag-*.whl")"
        if [ -z "$wheel" ]; then
            say "the build made no $tag wheel (log: $work/build.log)"
            return 1
        fi
        cp "$wheel" "$CACHE/"
        wheel="$CACHE/$(basename "$wheel")"
    fi
    # The wheel holds reedsolo.py too (same version): replace the pure install.
    pip_install --force-reinstall --no-deps "$wheel" || return 1
    imports creedsolo
}

if build_creedsolo; then
    say "creedsolo installed"
else
    say "creedsolo could not be built; the benchmark will skip it"
fi
