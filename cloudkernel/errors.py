"""Exceptions raised by cloudkernel.

Every error a caller can provoke with bad input is a subclass of
:class:`CloudkernelError`; decoders of untrusted bytes raise a subclass that is
also a :class:`ValueError`, so ``except ValueError`` catches bad input without
catching our own bugs.
"""

from __future__ import annotations

__all__ = [
    "CloudkernelError",
    "ConfigError",
    "FECError",
    "FrameError",
    "KeyFileError",
    "KeyRingError",
    "PayloadError",
    "SignalError",
]


class CloudkernelError(Exception):
    """Base class of every cloudkernel exception."""


class FECError(CloudkernelError, ValueError):
    """An erasure or Reed-Solomon code cannot do what was asked.

    Raised for parameters out of range, packets of the wrong count, length or
    index, and for blocks or codewords that cannot be rebuilt.  The message
    names the offending value.
    """


class SignalError(CloudkernelError, ValueError):
    """A signal given to publish breaks a limit of the protocol.

    Our caller's mistake, not a peer's: the message names the field, the
    value and the limit.
    """


class PayloadError(CloudkernelError, ValueError):
    """A peer's signal payload cannot be decoded or breaks a limit."""


class FrameError(CloudkernelError, ValueError):
    """A peer's frame breaks the wire format.

    ``reason`` is one of the drop reasons of ``docs/PROTOCOL.md`` section 6.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class KeyFileError(CloudkernelError):
    """A swarm key file is missing, unreadable, malformed or too open."""


class KeyRingError(CloudkernelError, ValueError):
    """A key cannot join the key ring (wrong length, clashing key id)."""


class ConfigError(CloudkernelError, ValueError):
    """A configuration value is out of range or inconsistent."""
