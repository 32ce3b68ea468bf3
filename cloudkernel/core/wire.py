"""The frame header of docs/PROTOCOL.md, section 1, and the drop reasons of section 6.

A frame is a 28-byte header, a body and a 16-byte tag.  This module packs and
parses the header and checks the rules that need nothing but the header
itself; the tag is :mod:`cloudkernel.core.auth`'s business and the FEC block
rules that span frames are the receiver's.  Every check that fails raises
:class:`~cloudkernel.errors.FrameError` whose ``reason`` is a
:class:`DropReason` value.
"""

from __future__ import annotations

import enum
import struct
from typing import Any, NamedTuple

from ..errors import FrameError

__all__ = [
    "DEFAULT_MAX_DATAGRAM",
    "FLAG_ENCRYPTED",
    "FLAG_REPAIR",
    "FRAME_OVERHEAD",
    "HEADER",
    "HEADER_BYTES",
    "MAGIC",
    "REPAIR_OVERHEAD",
    "TAG_BYTES",
    "VERSION",
    "DropReason",
    "Header",
    "check_header",
    "pack_header",
    "parse_header",
]

MAGIC = b"CK"
VERSION = 1
#: magic, version, flags, key id, reserved, length, sender, epoch, sequence,
#: block, k, m, index, reserved
HEADER = struct.Struct(">2sBBBBHIIIIBBBB")
HEADER_BYTES = HEADER.size
TAG_BYTES = 16
FRAME_OVERHEAD = HEADER_BYTES + TAG_BYTES
#: A repair frame is 2 length bytes + the longest source datagram + its own
#: header and tag longer than that source datagram (section 2).
REPAIR_OVERHEAD = 2 + FRAME_OVERHEAD
#: IPv6 minimum MTU 1280 less 40 bytes of IPv6 and 8 of UDP header.
DEFAULT_MAX_DATAGRAM = 1232

FLAG_ENCRYPTED = 0x01
FLAG_REPAIR = 0x02
_QOS_SHIFT = 2
_QOS_MASK = 0x0C
_RESERVED_FLAGS = 0xF0

assert HEADER_BYTES == 28


class DropReason(enum.StrEnum):
    """Why a receiver did not deliver a frame: the closed set of section 6.

    The values are the ``reason`` label of the drop metric.
    """

    TOO_LARGE = "too-large"
    MALFORMED = "malformed"
    UNCORRECTABLE = "uncorrectable"
    UNSUPPORTED_VERSION = "unsupported-version"
    UNKNOWN_KEY = "unknown-key"
    BAD_TAG = "bad-tag"
    OWN_FRAME = "own-frame"
    STALE_EPOCH = "stale-epoch"
    DUPLICATE = "duplicate"
    REPLAY = "replay"
    BAD_PAYLOAD = "bad-payload"
    REPAIR_UNNEEDED = "repair-unneeded"
    BLOCK_TIMEOUT = "block-timeout"
    EVICTED = "evicted"


class Header(NamedTuple):
    """A parsed frame header (the reserved fields are checked, not kept)."""

    flags: int
    key_id: int
    length: int
    sender: int
    epoch: int
    seq: int
    block: int
    k: int
    m: int
    #: the frame's index in its block (named apart from ``tuple.index``)
    position: int

    @property
    def encrypted(self) -> bool:
        return bool(self.flags & FLAG_ENCRYPTED)

    @property
    def repair(self) -> bool:
        return bool(self.flags & FLAG_REPAIR)

    @property
    def qos(self) -> int:
        return (self.flags & _QOS_MASK) >> _QOS_SHIFT


def make_flags(qos: int, *, encrypted: bool = False, repair: bool = False) -> int:
    """The flags byte for a frame of QoS class ``qos``."""
    return (
        (qos << _QOS_SHIFT) | (FLAG_ENCRYPTED if encrypted else 0) | (FLAG_REPAIR if repair else 0)
    )


def pack_header(
    *,
    flags: int,
    key_id: int,
    length: int,
    sender: int,
    epoch: int,
    seq: int,
    block: int,
    k: int = 0,
    m: int = 0,
    index: int = 0,
) -> bytes:
    """Pack a header; the caller (the sender) guarantees the field ranges."""
    return HEADER.pack(
        MAGIC, VERSION, flags, key_id, 0, length, sender, epoch, seq, block, k, m, index, 0
    )


def check_header(datagram: bytes, max_block_sources: int) -> tuple[Any, ...]:
    """Check the header of one datagram; return the 14 fields of :data:`HEADER`.

    The receiver's fast path: one combined test for the usual case, the
    rule-by-rule search only for a frame that fails it.

    :param datagram: the whole frame (already limited to ``max_datagram``).
    :param max_block_sources: the largest k (and source index + 1) accepted.
    :raises FrameError: with reason ``malformed`` or ``unsupported-version``.
    """
    size = len(datagram)
    if size < FRAME_OVERHEAD:
        raise FrameError(DropReason.MALFORMED, f"frame of {size} bytes is shorter than 44")
    fields = HEADER.unpack_from(datagram)
    flags = fields[2]
    k, m, index = fields[10:13]
    if (
        fields[0] == MAGIC
        and fields[1] == VERSION
        and fields[5] == size - FRAME_OVERHEAD
        and not (flags & _RESERVED_FLAGS or fields[4] or fields[13])
        and flags & _QOS_MASK != _QOS_MASK
        and (
            # Section 2: 1 <= k <= max, 1 <= m, k + m <= 255, k <= index < k + m.
            (1 <= k <= max_block_sources and 1 <= m <= 255 - k and k <= index < k + m)
            if flags & FLAG_REPAIR
            else not (k or m) and index < max_block_sources
        )
    ):  # fmt: skip
        return fields
    raise _header_problem(fields, size, max_block_sources)


def _header_problem(fields: tuple[Any, ...], size: int, max_block_sources: int) -> FrameError:
    """The first rule a header breaks, worded (only for frames check_header refused)."""
    (magic, version, flags, _key_id, reserved1, length, _sender, _epoch, _seq, _block, k, m,
     index, reserved2) = fields  # fmt: skip
    if magic != MAGIC:
        return FrameError(DropReason.MALFORMED, f"bad magic {magic!r}")
    if version != VERSION:
        return FrameError(DropReason.UNSUPPORTED_VERSION, f"version {version}, expected 1")
    if length != size - FRAME_OVERHEAD:
        return FrameError(
            DropReason.MALFORMED, f"length field {length} but {size - FRAME_OVERHEAD} body bytes"
        )
    if flags & _RESERVED_FLAGS or reserved1 or reserved2:
        return FrameError(DropReason.MALFORMED, "reserved bits set")
    if flags & _QOS_MASK == _QOS_MASK:
        return FrameError(DropReason.MALFORMED, "QoS class 3")
    kind = "repair" if flags & FLAG_REPAIR else "source"
    return FrameError(DropReason.MALFORMED, f"{kind} frame k={k} m={m} index={index}")


def parse_header(datagram: bytes, max_block_sources: int) -> Header:
    """Parse and check the header of one datagram (already length-limited).

    :param datagram: the whole frame.
    :param max_block_sources: the largest k (and source index + 1) accepted.
    :raises FrameError: with reason ``malformed`` or ``unsupported-version``.
    """
    fields = check_header(datagram, max_block_sources)
    return Header(*fields[2:4], *fields[5:13])
