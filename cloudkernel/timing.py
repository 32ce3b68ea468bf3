"""A duration histogram cheap enough for the receive path, read by the metrics at scrape time.

:class:`DurationHistogram` keeps a fixed array of bucket counts, a sum and a
count; :meth:`DurationHistogram.observe` is one ``bisect`` and three
additions, and no metrics library is called on the data path.  The exporter
reads :meth:`DurationHistogram.statistics` when Prometheus scrapes.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

__all__ = ["DECODE_BUCKETS", "DurationHistogram", "HistogramStatistics"]

#: upper bounds (seconds) of the receive-batch decode time buckets; +Inf follows
DECODE_BUCKETS: Final = (
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)


@dataclass(frozen=True, slots=True)
class HistogramStatistics:
    """A snapshot of a :class:`DurationHistogram`."""

    #: observations since the histogram was made
    count: int
    #: sum of every observation, seconds
    sum: float
    #: (upper bound, observations <= bound), cumulative, ending with (inf, count)
    buckets: tuple[tuple[float, int], ...]


class DurationHistogram:
    """Counts durations into fixed buckets (Prometheus semantics: ``value <= bound``).

    :param bounds: increasing, finite upper bounds in seconds; +Inf is added.
    """

    __slots__ = ("_bounds", "_counts", "_sum")

    def __init__(self, bounds: Sequence[float] = DECODE_BUCKETS) -> None:
        bounds = tuple(float(b) for b in bounds)
        if not bounds or any(not math.isfinite(b) for b in bounds):
            raise ValueError(f"bounds must be finite numbers, got {bounds!r}")
        if any(a >= b for a, b in itertools.pairwise(bounds)):
            raise ValueError(f"bounds must increase, got {bounds!r}")
        self._bounds = bounds
        self._counts = [0] * (len(bounds) + 1)
        self._sum = 0.0

    def observe(self, seconds: float) -> None:
        """Count one duration (a negative one, from a clock step, counts as 0)."""
        if not seconds > 0.0:
            seconds = 0.0
        self._counts[bisect.bisect_left(self._bounds, seconds)] += 1
        self._sum += seconds

    def statistics(self) -> HistogramStatistics:
        cumulative = tuple(itertools.accumulate(self._counts))
        return HistogramStatistics(
            count=cumulative[-1],
            sum=self._sum,
            buckets=tuple(zip((*self._bounds, math.inf), cumulative, strict=True)),
        )
