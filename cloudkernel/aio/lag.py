"""Event-loop lag: how late the loop runs a timer that is due.

A :class:`LoopLagMonitor` wakes itself up every ``interval`` seconds with
``loop.call_at`` and records, for each wake-up, how late it came: the time it
ran minus the time it was planned for.  Whatever held the loop up (a long
callback, a collector pause, the CPU given to another process) shows up as
lag.  :meth:`LoopLagMonitor.statistics` returns a :class:`LagStatistics`
snapshot, read by the metrics exporter at scrape time.

Rules it keeps:

* No drift: each wake-up is planned from the previous planned time, not from
  when the previous one ran, so lag does not add up into a slower schedule.
* A wake-up that comes one interval or more late skips the wake-ups whose
  time has passed already (they are counted in ``skipped``) instead of
  running them back to back, which would record lag that is not there.
* Bounded memory: the last ``window`` samples for the percentiles, and a
  fixed array of histogram counts for everything since :meth:`start`.
* Times come from ``clock`` (``time.monotonic`` by default, the clock of
  asyncio's loop).  uvloop's ``loop.time()`` counts whole milliseconds and its
  timers may run up to a millisecond early, so planning and measuring on the
  monotonic clock keeps sub-millisecond lag visible; an early wake-up counts
  as no lag.
* Wake-ups come from a timerfd (:mod:`cloudkernel.aio.timerfd`) watched by
  the loop where there is one: the loop's own timers wake it only to the
  millisecond (epoll's timeout), which would read as up to 1 ms of lag on
  an idle machine and hide what real-time scheduling gains.  With the loop's
  timers (another OS, a loop without ``add_reader``, a test's clock) lag
  under a millisecond is not meaningful; ``precise`` says which is in use.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from .timerfd import TimerFd

__all__ = ["BUCKETS", "LagStatistics", "LoopLagMonitor"]

#: upper bounds (seconds) of the lag histogram's buckets; +Inf follows
BUCKETS: Final = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class TimerLoop(Protocol):
    """The part of an event loop the monitor uses."""

    def time(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], object], /) -> TimerHandle: ...


@dataclass(frozen=True, slots=True)
class LagStatistics:
    """A snapshot of a :class:`LoopLagMonitor`; times in seconds, 0.0 before the first sample."""

    #: wake-ups recorded since start
    count: int
    #: wake-ups skipped because the loop was an interval or more behind
    skipped: int
    #: lag of the latest wake-up
    last: float
    #: largest lag since start
    max: float
    #: sum of all lags since start (the histogram's ``_sum``)
    sum: float
    #: samples in the window (at most ``window``)
    window: int
    #: median lag over the window
    p50: float
    #: 99th percentile lag over the window
    p99: float
    #: largest lag over the window
    window_max: float
    #: (upper bound, wake-ups with lag <= bound) for each of :data:`BUCKETS`
    #: and a last ``(math.inf, count)``: cumulative, as a Prometheus histogram
    buckets: tuple[tuple[float, int], ...]
    #: wake-ups come from a timerfd (lag to the microsecond), not the loop's
    #: millisecond timers
    precise: bool = False


class LoopLagMonitor:
    """Measures the lag of an event loop with a timer every ``interval`` seconds.

    :param loop: the loop to watch (asyncio's or uvloop's).
    :param interval: seconds between planned wake-ups.
    :param window: samples kept for ``p50``, ``p99`` and ``window_max``.
    :param clock: monotonic seconds; the loop's own clock when it is not
        ``time.monotonic`` (the fake loop of a test, for instance).
    """

    def __init__(
        self,
        loop: TimerLoop,
        interval: float = 0.1,
        window: int = 600,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (math.isfinite(interval) and interval > 0):
            raise ValueError(f"interval must be a positive number of seconds, got {interval!r}")
        if window < 1:
            raise ValueError(f"window must be at least 1 sample, got {window!r}")
        self._loop = loop
        self._interval = float(interval)
        self._clock = clock
        self._recent: deque[float] = deque(maxlen=window)
        # Per bucket, not cumulative; the last one is +Inf.
        self._bucket_counts = [0] * (len(BUCKETS) + 1)
        self._count = 0
        self._skipped = 0
        self._sum = 0.0
        self._max = 0.0
        self._last = 0.0
        self._planned = 0.0
        self._handle: TimerHandle | None = None
        self._timerfd: TimerFd | None = None
        self._running = False
        #: the latest start used a timerfd
        self._precise = False

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._running

    def start(self) -> None:
        """Plan the first wake-up one interval from now (nothing if running already)."""
        if self._running:
            return
        self._running = True
        self._timerfd = self._open_timerfd()
        self._precise = self._timerfd is not None
        self._planned = self._clock() + self._interval
        self._schedule()

    def stop(self) -> None:
        """Cancel the next wake-up; the samples recorded so far are kept."""
        self._running = False
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._timerfd is not None:
            loop: Any = self._loop
            with contextlib.suppress(Exception):
                loop.remove_reader(self._timerfd.fileno())
            self._timerfd.close()
            self._timerfd = None

    def _open_timerfd(self) -> TimerFd | None:
        """A timerfd the loop watches, when there can be one (see the module docstring)."""
        add_reader = getattr(self._loop, "add_reader", None)
        if self._clock is not time.monotonic or add_reader is None:
            return None
        try:
            timer = TimerFd()
        except OSError:
            return None
        try:
            add_reader(timer.fileno(), self._expired)
        except (NotImplementedError, OSError, ValueError, RuntimeError):
            timer.close()
            return None
        return timer

    def statistics(self) -> LagStatistics:
        recent = sorted(self._recent)
        cumulative = itertools.accumulate(self._bucket_counts)
        return LagStatistics(
            count=self._count,
            skipped=self._skipped,
            last=self._last,
            max=self._max,
            sum=self._sum,
            window=len(recent),
            p50=_quantile(recent, 0.5),
            p99=_quantile(recent, 0.99),
            window_max=recent[-1] if recent else 0.0,
            buckets=tuple(zip((*BUCKETS, math.inf), cumulative, strict=True)),
            precise=self._precise,
        )

    def _schedule(self) -> None:
        if self._timerfd is not None:
            self._timerfd.arm(self._planned)
            return
        delay = self._planned - self._clock()
        self._handle = self._loop.call_at(self._loop.time() + delay, self._wake)

    def _expired(self) -> None:
        if self._running and self._timerfd is not None and self._timerfd.expired():
            self._wake()

    def _wake(self) -> None:
        lag = max(0.0, self._clock() - self._planned)
        self._record(lag)
        # Wake-ups planned at or before now are past already: skip them.
        behind = int(lag // self._interval)
        self._skipped += behind
        self._planned += (behind + 1) * self._interval
        self._schedule()

    def _record(self, lag: float) -> None:
        self._count += 1
        self._sum += lag
        self._last = lag
        if lag > self._max:
            self._max = lag
        self._recent.append(lag)
        # Prometheus buckets hold values <= their bound: bisect_left.
        self._bucket_counts[bisect.bisect_left(BUCKETS, lag)] += 1


def _quantile(ordered: list[float], q: float) -> float:
    """Nearest-rank quantile of sorted samples (0.0 when there are none)."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]
