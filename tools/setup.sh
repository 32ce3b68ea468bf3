#!/usr/bin/env bash
# Sets up a development environment on a fresh Debian machine: the Debian
# packages the tests need (when run as root), a virtualenv in .venv, and
# cloudkernel installed in it (editable, C extension built) with its test
# extras.  Idempotent: a second run only checks.
#
# Usage: bash tools/setup.sh            (sourced by tools/check.sh and tools/demo.sh)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}
EXTRAS=${CLOUDKERNEL_EXTRAS:-test}

debian_packages() {
    # arm64 cross toolchain and qemu: the NEON kernels are tested under emulation.
    local need=()
    command -v aarch64-linux-gnu-gcc >/dev/null || need+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
    command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
    command -v gcc >/dev/null || need+=(gcc)
    # the demo swarm and the daemon tests run in a private network namespace
    command -v ip >/dev/null || need+=(iproute2)
    command -v nsenter >/dev/null || need+=(util-linux)
    # the cluster harness: checksum offload off on its veths, random drop on a node's input
    command -v ethtool >/dev/null || need+=(ethtool)
    command -v nft >/dev/null || need+=(nftables)
    # promtool and a Prometheus server for the exporter's tests.  The package
    # may start its own service on :9090; the tests run theirs in a private
    # network namespace and never talk to it.
    command -v promtool >/dev/null && command -v prometheus >/dev/null || need+=(prometheus)
    # the systemd unit: checked with systemd-analyze, booted in systemd-nspawn
    command -v systemd-analyze >/dev/null || need+=(systemd)
    command -v systemd-nspawn >/dev/null || need+=(systemd-container)
    command -v debootstrap >/dev/null || need+=(debootstrap)
    # the lcm wheel (soak agents' tests) links to the system's GLib
    [[ "$(ldconfig -p 2>/dev/null)" == *libglib-2.0.so.0* ]] || need+=(libglib2.0-0)
    [ ${#need[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: not root, cannot install ${need[*]}; the tests that need them will skip" >&2
        return 0
    fi
    echo "setup: installing Debian packages: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}

python_env() {
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        echo "setup: cloudkernel needs Python >= 3.11; $PYTHON is $("$PYTHON" -V 2>&1)" >&2
        exit 1
    fi
    [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[$EXTRAS]"
}

debian_packages
python_env
echo "setup: ready ($(.venv/bin/python -c 'import cloudkernel.fec as f; print(f.IMPLEMENTATION, "FEC, kernel", f.kernel())'))"
