"""What a receiver measures of one sender's link: frame loss and loss bursts.

The input is the sequence number of every frame of the sender that arrived on
the wire, source or repair, before any FEC rebuild (a rebuilt frame was lost
on the link).  Within one epoch a sender numbers its frames +1 per frame and
never wraps (``docs/PROTOCOL.md`` sections 1 and 5), so a gap in the numbers
is a frame that did not arrive, or has not arrived *yet*: frames may be
reordered.  Pure: no I/O, no clock.

Settling
--------
Let ``high`` be the highest sequence number seen and ``W`` the reorder
window.  A sequence number ``s`` is *settled* once ``high - s > W``: it
counts as *received* if it arrived by then, as *lost* otherwise, and that
verdict is final (a frame arriving after it was settled is ignored).  The
first number seen starts the count: nothing before it is ever settled, lost or
received.  :meth:`LossTracker.flush` settles everything up to ``high``.

The unsettled numbers ``[base, high]`` (at most ``W + 1`` of them) are one
bit each in an integer; settling shifts them out and counts them with
``int.bit_count``.  A gap between ``high`` and a new, much higher number is
settled arithmetically, so a jump of 10**9 costs as much as a jump of 1.

What the numbers mean
---------------------
All counts are of settled sequence numbers, in the order they settled:

``settled``, ``received``, ``lost``
    cumulative since the tracker was made; ``settled = received + lost``.
``bursts``
    cumulative number of loss *runs*: maximal runs of consecutive settled
    lost numbers (a run never spans an epoch, see :meth:`LossTracker.reset`).
    A run is counted when its first number settles, so a run still going on
    at the settled edge is counted with the length it has so far.
``lifetime_loss_rate``
    ``lost / settled`` (0.0 before anything settled).
``lifetime_mean_burst``
    ``lost / bursts``, the mean loss run length (1.0 without losses).  For
    independent losses at rate ``p`` it tends to ``1 / (1 - p)``; it is the
    ``mean_burst`` of :mod:`cloudkernel.core.redundancy`'s Gilbert model.
``loss_rate``, ``mean_burst`` (recent)
    the same two ratios over the most recent settled numbers only.  These
    are counted in two buckets: *current* takes each newly settled number
    and, once it holds ``horizon`` of them, becomes *previous* (the old
    previous is forgotten) and a new, empty current starts.  The recent
    view is ``previous + current``: the last ``horizon`` to ``2 * horizon - 1``
    settled numbers (fewer at the start), so a change of the link shows
    fully within two horizons, with no per-frame decay arithmetic.  A run is
    counted in the bucket where it starts; when the window holds losses but
    no run start (it lies inside one long run), ``mean_burst`` is the
    window's loss count, i.e. that run is taken as one burst.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ConfigError

__all__ = ["LOSS_BOUND_Z", "LinkStatistics", "LossTracker", "loss_upper_bound"]


@dataclass(frozen=True, slots=True)
class LinkStatistics:
    """A snapshot of a :class:`LossTracker` (see the module docstring)."""

    #: sequence numbers settled, cumulative
    settled: int
    #: settled numbers that arrived, cumulative
    received: int
    #: settled numbers that did not arrive, cumulative
    lost: int
    #: lost / settled over the recent window (0.0 when nothing settled)
    loss_rate: float
    #: mean loss run length over the recent window (1.0 without losses)
    mean_burst: float
    #: lost / settled since the tracker was made (0.0 when nothing settled)
    lifetime_loss_rate: float
    #: loss runs, cumulative
    bursts: int
    #: lost / bursts since the tracker was made (1.0 without losses)
    lifetime_mean_burst: float
    #: settled numbers in the recent window (what ``loss_rate`` is over)
    recent_settled: int = 0
    #: lost numbers among them
    recent_lost: int = 0

    @property
    def loss_bound(self) -> float:
        """The loss rate a sender should plan for: :func:`loss_upper_bound`
        of the recent window, 1.0 before anything settled."""
        return loss_upper_bound(self.recent_lost, self.recent_settled)


#: standard deviations of :func:`loss_upper_bound`: one-sided, ~97.7 %
LOSS_BOUND_Z = 2.0


def loss_upper_bound(lost: int, settled: int, z: float = LOSS_BOUND_Z) -> float:
    """Upper confidence bound of a loss rate measured as ``lost / settled``.

    The Wilson score bound: the largest rate ``p`` for which ``lost`` losses
    in ``settled`` frames are within ``z`` standard deviations,

        (x + z^2 / 2n + z sqrt(x (1 - x) / n + z^2 / 4n^2)) / (1 + z^2 / n)

    with ``x = lost / settled`` and ``n = settled``.  A few frames prove
    little: 0 lost of 16 bounds the rate at 0.2, not 0 (a sender that
    planned for 0 would send one repair frame where a 10 % link needs four),
    while 150 of 1,500 gives 0.117.  1.0 when nothing settled.
    """
    if settled <= 0:
        return 1.0
    n = float(settled)
    x = min(max(lost, 0), settled) / n
    zz = z * z
    centre = x + zz / (2.0 * n)
    spread = z * math.sqrt(x * (1.0 - x) / n + zz / (4.0 * n * n))
    # The bound is never below the estimate; max() only mends rounding at x = 1.
    return max(x, min(1.0, (centre + spread) / (1.0 + zz / n)))


class LossTracker:
    """Counts the frames of one sender that were lost on the link.

    Call :meth:`arrived` with the sequence number of each frame that arrives;
    read :meth:`statistics` or the properties.  O(1) per call for a fixed
    reorder window (integer operations on ``W + 1`` bits).
    """

    __slots__ = (
        "_base",
        "_bits",
        "_bursts",
        "_cur_bursts",
        "_cur_lost",
        "_cur_settled",
        "_high",
        "_horizon",
        "_last_lost",
        "_lost",
        "_prev_bursts",
        "_prev_lost",
        "_prev_settled",
        "_settled",
        "_started",
        "_window",
    )

    def __init__(self, *, reorder_window: int = 64, horizon: int = 1000) -> None:
        """Make a tracker that has seen nothing.

        :param reorder_window: how far (in sequence numbers) behind the
            highest one a frame may still arrive and count as received, >= 0
        :param horizon: size of each of the two buckets of the recent view, >= 1
        :raises ConfigError: for a value out of range
        """
        if not (type(reorder_window) is int and reorder_window >= 0):
            raise ConfigError(f"reorder_window must be an integer >= 0, got {reorder_window!r}")
        if not (type(horizon) is int and horizon >= 1):
            raise ConfigError(f"horizon must be an integer >= 1, got {horizon!r}")
        self._window = reorder_window
        self._horizon = horizon
        self._settled = self._lost = self._bursts = 0
        self._cur_settled = self._cur_lost = self._cur_bursts = 0
        self._prev_settled = self._prev_lost = self._prev_bursts = 0
        self._start()

    def _start(self) -> None:
        self._started = False
        #: lowest unsettled sequence number
        self._base = 0
        #: highest sequence number seen
        self._high = -1
        #: bit i: sequence number base + i arrived
        self._bits = 0
        #: the last settled number was lost: a loss that follows continues its run
        self._last_lost = False

    # -- input ---------------------------------------------------------------

    def arrived(self, seq: int) -> None:
        """Count the arrival of the frame numbered ``seq``.

        A number already seen, or already settled (including any number below
        the first one seen), is ignored.

        :param seq: the frame's sequence number
        """
        if not self._started:
            self._started = True
            self._base = self._high = seq
            self._bits = 1
            return
        if seq <= self._high:
            offset = seq - self._base
            # Settled numbers are those below high - window, even while the
            # bitmap still holds them (settling is done in batches).
            if offset >= 0 and seq >= self._high - self._window:
                self._bits |= 1 << offset
            return
        boundary = seq - self._window
        count = boundary - self._base
        # Settle in batches of a window or more: per-frame settling costs more
        # than the counting itself.  Readers catch up first (_catch_up).
        if count > self._window:
            pending = self._high - self._base + 1  # numbers held in the bitmap
            if count <= pending:
                self._settle_bits(self._bits, count)
                self._bits >>= count
            else:
                self._settle_bits(self._bits, pending)
                self._bits = 0
                self._settle_gap(count - pending)
            self._base = boundary
        self._high = seq
        self._bits |= 1 << (seq - self._base)

    def _catch_up(self) -> None:
        """Settle what arrived() left for the next batch, as if settled at once."""
        if not self._started:
            return
        count = self._high - self._window - self._base
        if count > 0:
            self._settle_bits(self._bits, count)
            self._bits >>= count
            self._base += count

    def flush(self) -> None:
        """Settle every number up to the highest seen.

        For when no more frames of them will come: the sender changed epoch or
        went quiet.  Later arrivals at or below that number are ignored.
        """
        if not self._started:
            return
        count = self._high - self._base + 1
        if count > 0:
            self._settle_bits(self._bits, count)
            self._bits = 0
            self._base = self._high + 1

    def reset(self) -> None:
        """Start a new sequence space, for the sender's new epoch.

        The next number that arrives is treated as the first one.  The
        counters and the recent view are kept: they describe the link, not
        the epoch.  Unsettled numbers of the old epoch are forgotten, neither
        lost nor received; call :meth:`flush` first to count them.
        """
        self._catch_up()  # numbers already settled are counted, not forgotten
        self._start()

    # -- settling ------------------------------------------------------------

    def _rotate(self) -> None:
        self._prev_settled = self._cur_settled
        self._prev_lost = self._cur_lost
        self._prev_bursts = self._cur_bursts
        self._cur_settled = self._cur_lost = self._cur_bursts = 0

    def _settle_bits(self, bits: int, count: int) -> None:
        """Settle ``count`` numbers whose arrivals are the low bits of ``bits``."""
        horizon = self._horizon
        while count > 0:
            take = min(count, horizon - self._cur_settled)
            mask = (1 << take) - 1
            losses = ~bits & mask
            # A run starts at a lost number whose predecessor was not lost;
            # bit 0's predecessor is the last number settled before.
            starts = losses & ~((losses << 1) | self._last_lost)
            lost = losses.bit_count()
            runs = starts.bit_count()
            self._settled += take
            self._lost += lost
            self._bursts += runs
            self._cur_settled += take
            self._cur_lost += lost
            self._cur_bursts += runs
            self._last_lost = bool(losses >> (take - 1))
            if self._cur_settled == horizon:
                self._rotate()
            bits >>= take
            count -= take

    def _settle_gap(self, count: int) -> None:
        """Settle ``count > 0`` numbers that never arrived, in O(1).

        The gap lies above ``high``, which arrived and is settled just before
        it, so the gap is one whole new run.
        """
        horizon = self._horizon
        self._settled += count
        self._lost += count
        self._bursts += 1
        self._last_lost = True
        room = horizon - self._cur_settled
        if count < room:
            self._cur_settled += count
            self._cur_lost += count
            self._cur_bursts += 1
            return
        self._cur_settled += room
        self._cur_lost += room
        self._cur_bursts += 1
        self._rotate()
        count -= room
        if count >= horizon:
            # Whole buckets of this one run: only the last survives, as previous.
            self._prev_settled = self._prev_lost = horizon
            self._prev_bursts = 0
            count %= horizon
        self._cur_settled = self._cur_lost = count

    # -- output --------------------------------------------------------------

    @property
    def settled(self) -> int:
        """Sequence numbers settled, cumulative."""
        self._catch_up()
        return self._settled

    @property
    def received(self) -> int:
        """Settled numbers that arrived, cumulative."""
        self._catch_up()
        return self._settled - self._lost

    @property
    def lost(self) -> int:
        """Settled numbers that did not arrive, cumulative."""
        self._catch_up()
        return self._lost

    @property
    def bursts(self) -> int:
        """Runs of consecutive settled losses, cumulative."""
        self._catch_up()
        return self._bursts

    @property
    def highest(self) -> int | None:
        """The highest sequence number seen in this epoch, None before the first."""
        return self._high if self._started else None

    @property
    def loss_rate(self) -> float:
        """Lost / settled over the recent window; 0.0 before anything settled."""
        self._catch_up()
        settled = self._prev_settled + self._cur_settled
        return (self._prev_lost + self._cur_lost) / settled if settled else 0.0

    @property
    def mean_burst(self) -> float:
        """Mean loss run length over the recent window; 1.0 without losses."""
        self._catch_up()
        lost = self._prev_lost + self._cur_lost
        return lost / max(1, self._prev_bursts + self._cur_bursts) if lost else 1.0

    def statistics(self) -> LinkStatistics:
        """A snapshot of the counters (see the module docstring)."""
        self._catch_up()
        settled, lost = self._settled, self._lost
        return LinkStatistics(
            settled=settled,
            received=settled - lost,
            lost=lost,
            loss_rate=self.loss_rate,
            mean_burst=self.mean_burst,
            lifetime_loss_rate=lost / settled if settled else 0.0,
            bursts=self._bursts,
            lifetime_mean_burst=lost / self._bursts if self._bursts else 1.0,
            recent_settled=self._prev_settled + self._cur_settled,
            recent_lost=self._prev_lost + self._cur_lost,
        )
