"""Build cloudkernel's C extensions: each .pyx with the csrc/ files it wraps.

Set CLOUDKERNEL_DEBUG_BUILD=1 for -O0 -g with assertions.
"""

import os
from glob import glob

from Cython.Build import cythonize
from setuptools import Extension, setup

CSRC = sorted(glob("csrc/ck_*.c"))
FEC_CSRC = [c for c in CSRC if c != "csrc/ck_payload.c"]

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
]

setup(ext_modules=cythonize(extensions, language_level=3))
