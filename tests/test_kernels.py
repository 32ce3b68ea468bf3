"""Kernel selection as a user meets it: the environment variable and use_kernel().

Each environment case runs in a fresh interpreter, since the kernel is picked
once, when the extension loads.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from cloudkernel import fec
from cloudkernel.errors import FECError

compiled_only = pytest.mark.skipif(
    fec.IMPLEMENTATION != "compiled", reason="kernel selection belongs to the compiled codecs"
)

PROBE = "import cloudkernel.fec as f; print(f.kernel())"


def _run(env_kernel: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CLOUDKERNEL_GF_KERNEL": env_kernel}
    env.pop("CLOUDKERNEL_PUREPYTHON", None)
    return subprocess.run(
        [sys.executable, "-W", "always", "-c", PROBE],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


@compiled_only
@pytest.mark.parametrize("name", fec.available_kernels())
def test_environment_forces_each_available_kernel(name: str) -> None:
    result = _run(name)
    assert result.stdout.strip() == name
    assert "CLOUDKERNEL_GF_KERNEL" not in result.stderr


@compiled_only
def test_environment_with_unknown_kernel_warns_and_keeps_working() -> None:
    result = _run("turbo")
    assert result.stdout.strip() == fec.available_kernels()[-1]
    assert "CLOUDKERNEL_GF_KERNEL='turbo' is unknown" in result.stderr
    assert "available: scalar" in result.stderr


def test_use_kernel_rejects_unknown_names() -> None:
    with pytest.raises(FECError, match="turbo"):
        fec.use_kernel("turbo")
    assert fec.kernel() in fec.available_kernels()


def test_active_kernel_is_available() -> None:
    assert fec.kernel() in fec.available_kernels()


@compiled_only
def test_environment_with_unsupported_kernel_names_the_cause() -> None:
    missing = [n for n in ("avx512", "gfni", "gfni_avx512") if n not in fec.available_kernels()]
    if platform.machine() not in ("x86_64", "AMD64") or not missing:
        pytest.skip("this CPU runs every x86 kernel (or is not x86)")
    result = _run(missing[0])
    assert result.stdout.strip() == fec.available_kernels()[-1]
    assert "not supported by this CPU" in result.stderr
