"""Optional byte-level Reed-Solomon protection of whole frames (PROTOCOL.md section 7).

A :class:`FrameCodec` wraps each datagram for links that corrupt bytes rather
than drop frames, and tells the sender how large a frame may be so that the
encoded datagram still fits ``max_datagram``.  With ``nsym = 0`` it is the
identity and costs nothing.
"""

from __future__ import annotations

from ..errors import ConfigError, FECError
from ..fec import RSCodec

__all__ = ["MAX_FRAME_RS_NSYM", "FrameCodec"]

MAX_FRAME_RS_NSYM = 128
_NSIZE = 255


class FrameCodec:
    """Encode and decode datagrams with ``RSCodec(nsym)``, or pass them through.

    :param nsym: parity bytes per 255-byte chunk, 0 (off) .. 128.
    :raises ConfigError: if nsym is out of range.
    """

    __slots__ = ("_chunk", "_codec", "nsym")

    def __init__(self, nsym: int = 0) -> None:
        if type(nsym) is not int or not 0 <= nsym <= MAX_FRAME_RS_NSYM:
            raise ConfigError(
                f"frame_rs_nsym must be an integer 0..{MAX_FRAME_RS_NSYM}, got {nsym!r}"
            )
        self.nsym = nsym
        self._chunk = _NSIZE - nsym
        self._codec = RSCodec(nsym) if nsym else None

    def encoded_size(self, size: int) -> int:
        """The datagram size of a frame of ``size`` bytes."""
        if not self.nsym:
            return size
        return size + -(-size // self._chunk) * self.nsym

    def max_frame(self, max_datagram: int) -> int:
        """The largest frame whose encoding fits ``max_datagram`` bytes."""
        if not self.nsym:
            return max_datagram
        whole, rest = divmod(max_datagram, _NSIZE)
        return whole * self._chunk + max(0, rest - self.nsym)

    def encode(self, frame: bytes) -> bytes:
        return self._codec.encode(frame) if self._codec is not None else frame

    def decode(self, datagram: bytes) -> bytes:
        """The frame inside ``datagram``.

        :raises FECError: if the datagram cannot be corrected.
        """
        if self._codec is None:
            return datagram
        if len(datagram) <= self.nsym:
            raise FECError(f"datagram of {len(datagram)} bytes holds no message")
        return self._codec.decode(datagram)
