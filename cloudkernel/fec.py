"""Forward error correction: the public face of cloudkernel's codecs.

:class:`ErasureCode`
    Packet-level systematic Reed-Solomon erasure code over GF(2^8): k source
    packets plus m repair packets; any k of the k + m rebuild the block.
:class:`RSCodec`
    Byte-level Reed-Solomon error correction, parameter- and result-compatible
    with ``reedsolo.RSCodec(nsym)`` defaults.

Both come from the compiled extension (C kernels with SIMD chosen at run time)
when it is built, and from the pure-Python reference otherwise.  Setting
``CLOUDKERNEL_PUREPYTHON=1`` forces the reference; ``IMPLEMENTATION`` says
which one is in use.  ``CLOUDKERNEL_GF_KERNEL`` forces a SIMD kernel.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from ._impl import pure_python_forced
from .errors import FECError

__all__ = [
    "IMPLEMENTATION",
    "ErasureCode",
    "FECError",
    "RSCodec",
    "available_kernels",
    "kernel",
    "use_kernel",
]

IMPLEMENTATION: str


def _load() -> tuple[str, object]:
    """Import the compiled codecs, or the reference when forced or missing."""
    if pure_python_forced():
        from .core import _fec_ref

        return "python", _fec_ref
    try:
        from .core import _fec

        return "compiled", _fec
    except ImportError as exc:  # pragma: no cover - depends on the build
        warnings.warn(
            f"cloudkernel's compiled FEC extension is not available ({exc}); "
            "using the pure-Python reference, which is much slower",
            RuntimeWarning,
            stacklevel=3,
        )
        from .core import _fec_ref

        return "python", _fec_ref


if TYPE_CHECKING:
    # Both implementations have one API; the reference spells it for mypy.
    from .core._fec_ref import (
        ErasureCode,
        RSCodec,
        available_kernels,
        kernel,
        use_kernel,
    )
else:
    IMPLEMENTATION, _impl = _load()
    ErasureCode = _impl.ErasureCode
    RSCodec = _impl.RSCodec
    available_kernels = _impl.available_kernels
    kernel = _impl.kernel
    use_kernel = _impl.use_kernel
    del _impl
