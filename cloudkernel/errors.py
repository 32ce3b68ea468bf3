"""Exceptions raised by cloudkernel.

Every error a caller can provoke with bad input is a subclass of
:class:`CloudkernelError`; decoders of untrusted bytes raise a subclass that is
also a :class:`ValueError`, so ``except ValueError`` catches bad input without
catching our own bugs.
"""

from __future__ import annotations

__all__ = ["CloudkernelError", "FECError"]


class CloudkernelError(Exception):
    """Base class of every cloudkernel exception."""


class FECError(CloudkernelError, ValueError):
    """An erasure or Reed-Solomon code cannot do what was asked.

    Raised for parameters out of range, packets of the wrong count, length or
    index, and for blocks or codewords that cannot be rebuilt.  The message
    names the offending value.
    """
