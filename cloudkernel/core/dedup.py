"""Duplicate suppression of signals by (source, sequence number).

A signal can reach a node more than once: on each of several interfaces
(redundant radios carry the same frame, which the receiver's replay window
already drops), and through several relays (different frames, each new to
the receiver, carrying the same signal).  A :class:`SeenSignals` remembers
which sequence numbers of each source it has let through.

Rules it keeps:

* Per source, a sliding window of ``window`` sequence numbers below the
  highest seen, compared in 32-bit serial-number arithmetic (RFC 1982), so
  the sequence space may wrap.  A number in the window is new once; a
  number below the window is too old to tell and counts as seen (dropping
  a late copy beats delivering a signal twice).
* A source that restarts begins its sequence numbers again: the caller
  calls :meth:`SeenSignals.restart` when it learns of the new epoch.
* At most ``max_sources`` sources are tracked; the one heard least recently
  is forgotten first (it then starts afresh, as after a restart).
* Pure: no clocks, no I/O.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

__all__ = ["SeenSignals", "SeenStatistics"]

_SPACE = 1 << 32
_HALF = 1 << 31


@dataclass(frozen=True, slots=True)
class SeenStatistics:
    """Counters of a :class:`SeenSignals` since it was made."""

    #: signals let through as new
    new: int
    #: copies of signals already let through
    duplicates: int
    #: signals too far below their source's newest to tell, dropped
    too_old: int
    #: sources forgotten to stay within ``max_sources``
    evicted: int
    #: sources tracked now
    sources: int


class _Window:
    __slots__ = ("highest", "mask")

    def __init__(self, seq: int) -> None:
        self.highest = seq
        self.mask = 1  # bit i: highest - i was seen


class SeenSignals:
    """Which (source, sequence number) pairs have been let through.

    :param window: sequence numbers remembered below each source's highest
        (1..65536).
    :param max_sources: sources tracked at most (>= 1).
    """

    def __init__(self, window: int = 4096, max_sources: int = 1024) -> None:
        if not 1 <= window <= 65536:
            raise ValueError(f"window must be 1..65536, got {window!r}")
        if max_sources < 1:
            raise ValueError(f"max_sources must be >= 1, got {max_sources!r}")
        self._size = window
        self._full = (1 << window) - 1
        self._max_sources = max_sources
        self._windows: OrderedDict[int, _Window] = OrderedDict()
        self._new = self._duplicates = self._too_old = self._evicted = 0

    def admit(self, source: int, seq: int) -> Literal["new", "duplicate", "too-old"]:
        """Whether (source, seq) is new; it is seen from now on.

        ``"duplicate"``: seen before; ``"too-old"``: below the window.
        """
        w = self._windows.get(source)
        if w is None:
            if len(self._windows) >= self._max_sources:
                self._windows.popitem(last=False)
                self._evicted += 1
            self._windows[source] = _Window(seq)
            self._new += 1
            return "new"
        self._windows.move_to_end(source)
        ahead = (seq - w.highest) % _SPACE
        if 0 < ahead < _HALF:
            w.mask = ((w.mask << ahead) | 1) & self._full if ahead < self._size else 1
            w.highest = seq
            self._new += 1
            return "new"
        behind = (w.highest - seq) % _SPACE
        if behind >= self._size:
            self._too_old += 1
            return "too-old"
        bit = 1 << behind
        if w.mask & bit:
            self._duplicates += 1
            return "duplicate"
        w.mask |= bit
        self._new += 1
        return "new"

    def restart(self, source: int) -> None:
        """Forget ``source``'s numbers: it restarted and numbers its signals afresh."""
        self._windows.pop(source, None)

    def statistics(self) -> SeenStatistics:
        return SeenStatistics(
            self._new, self._duplicates, self._too_old, self._evicted, len(self._windows)
        )
