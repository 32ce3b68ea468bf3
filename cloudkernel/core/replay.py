"""Replay and duplicate detection for one sender's epoch (``docs/PROTOCOL.md`` section 5).

:class:`ReplayWindow`
    The sequence numbers seen lately from one (sender, epoch): a sliding
    window of the last ``size`` (default 1024) numbers, in the manner of
    RFC 4303 section 3.4.3 and RFC 6479.
:class:`Verdict`
    What the window says of a sequence number: new, duplicate, or too old.

Rules of this module:

* Pure: no I/O, no clock, no knowledge of epochs.  The receiver keeps one
  window per sender, starts a fresh one when the sender's epoch grows, and
  drops frames of lower epochs (``stale-epoch``) before they get here.
* Consult the window only after the frame's tag has verified; otherwise a
  forger could slide it forward and make every genuine frame ``replay``.
* Sequence numbers are 32-bit and never wrap within an epoch (a sender moves
  to a new epoch first), so they compare as plain ints.  Callers pass the
  header's field, 0..2**32-1; the window does not check it.
"""

from __future__ import annotations

import enum
from typing import Final

from ..errors import ConfigError

__all__ = ["DEFAULT_WINDOW", "ReplayWindow", "Verdict"]

DEFAULT_WINDOW: Final = 1024
"""Sequence numbers a window remembers (section 5)."""


class Verdict(enum.Enum):
    """The fate of a sequence number in a :class:`ReplayWindow`."""

    NEW = "new"
    """Not seen, and within or ahead of the window: deliver, then accept."""
    DUPLICATE = "duplicate"
    """Seen already (the same frame by two paths): drop as ``duplicate``."""
    TOO_OLD = "too-old"
    """Behind the window, so it cannot be told from a replay: drop as ``replay``."""


# Module globals: enum members looked up through the class cost more per packet.
_NEW: Final = Verdict.NEW
_DUPLICATE: Final = Verdict.DUPLICATE
_TOO_OLD: Final = Verdict.TOO_OLD


class ReplayWindow:
    """The last ``size`` sequence numbers of one (sender, epoch), seen or not.

    A bitmap (a Python int of at most ``size`` bits) holds in bit ``i``
    whether ``highest - i`` has been accepted.  With ``highest`` the largest
    sequence number accepted so far:

    * ``seq > highest`` is NEW; accepting it slides the window forward, and a
      jump of ``size`` or more leaves only ``seq`` marked.
    * ``highest - size < seq <= highest`` is DUPLICATE if its bit is set, NEW
      otherwise.
    * ``seq <= highest - size`` is TOO_OLD.

    Before anything is accepted, every number is NEW.  A receiver may join
    mid-stream, so the first number accepted can be any value, and the numbers
    just before it are NEW, not TOO_OLD: the window pretends to have seen
    nothing below ``highest`` rather than everything.  A receiver that first
    hears 500 and then 499, late, delivers 499.  The cost is that, right after
    joining, up to ``size - 1`` older frames recorded by an attacker could be
    delivered once each; they are genuine frames this receiver never had, and
    each can be delivered only once.  Treating them as seen would instead drop
    every frame reordered around the first one heard.

    ``check`` and ``accept`` are separate so that a caller can decide between
    them; each is a handful of int operations.

    :param size: how many sequence numbers the window spans (>= 1).
    :raises ConfigError: if ``size`` is not a positive int.
    """

    __slots__ = ("_bitmap", "_highest", "_mask", "_size")

    def __init__(self, size: int = DEFAULT_WINDOW) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(f"a replay window size must be an int >= 1, got {size!r}")
        self._size = size
        self._mask = (1 << size) - 1
        # -1 means nothing accepted yet: every seq >= 0 is then ahead of the
        # window, and the first accept() shifts an empty bitmap.
        self._highest = -1
        self._bitmap = 0

    def __repr__(self) -> str:
        return f"ReplayWindow(size={self._size}, highest={self.highest})"

    @property
    def size(self) -> int:
        """How many sequence numbers the window spans."""
        return self._size

    @property
    def highest(self) -> int | None:
        """The largest sequence number accepted, or ``None`` before the first."""
        return self._highest if self._highest >= 0 else None

    def check(self, seq: int) -> Verdict:
        """What ``seq`` would be; changes nothing.

        :param seq: a sequence number, 0..2**32-1.
        """
        diff = self._highest - seq
        if diff < 0:
            return _NEW
        if diff >= self._size:
            return _TOO_OLD
        return _DUPLICATE if (self._bitmap >> diff) & 1 else _NEW

    def accept(self, seq: int) -> None:
        """Mark ``seq`` seen, sliding the window forward if ``seq > highest``.

        Accepting a number that is TOO_OLD does nothing; accepting one twice
        is harmless.

        :param seq: a sequence number, 0..2**32-1, whose frame was delivered.
        """
        diff = self._highest - seq
        if diff < 0:
            shift = -diff
            if shift < self._size:
                self._bitmap = ((self._bitmap << shift) | 1) & self._mask
            else:
                self._bitmap = 1
            self._highest = seq
        elif diff < self._size:
            self._bitmap |= 1 << diff
