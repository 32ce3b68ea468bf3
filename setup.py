"""Build cloudkernel's C extensions: each .pyx with the csrc/ files it wraps.

Set CLOUDKERNEL_DEBUG_BUILD=1 for -O0 -g with assertions.
"""

import os
from glob import glob

from Cython.Build import cythonize
from setuptools import Extension, setup

CSRC = sorted(glob("csrc/ck_*.c"))
FEC_CSRC = [c for c in CSRC if c not in ("csrc/ck_payload.c", "csrc/ck_consensus.c")]

if os.environ.get("CLOUDKERNEL_DEBUG_BUILD"):
    cflags = ["-O0", "-g", "-UNDEBUG", "-Wall", "-Wextra"]
else:
    # SIMD kernels carry their own target attributes (see csrc/ck_gf256_simd.h):
    # no -march here, so one build runs on every CPU of the architecture.
    cflags = ["-O3"]

extensions = [
    Extension(
        "cloudkernel.core._fec",
        ["cloudkernel/core/_fec.pyx", *FEC_CSRC],
        include_dirs=["csrc"],
        define_macros=[("_GNU_SOURCE", None)],
        extra_compile_args=cflags,
    ),
    Extension(
        "cloudkernel.core._payload",
        ["cloudkernel/core/_payload.pyx", "csrc/ck_payload.c"],
        include_dirs=["csrc"],
        define_macros=[("_GNU_SOURCE", None)],
        extra_compile_args=cflags,
    ),
    Extension(
        "cloudkernel.consensus._consensus",
        ["cloudkernel/consensus/_consensus.pyx", "csrc/ck_consensus.c", "csrc/ck_rank.c"],
        include_dirs=["csrc"],
        define_macros=[("_GNU_SOURCE", None)],
        # Bit-identical with the Python reference: no fused multiply-add.
        extra_compile_args=[*cflags, "-ffp-contract=off"],
        libraries=["m"],
    ),
]

setup(ext_modules=cythonize(extensions, language_level=3))
