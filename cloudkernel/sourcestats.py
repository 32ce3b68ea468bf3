"""Per-source statistics across readings, for ``cloudkernel sourcestats``.

An :class:`~cloudkernel.consensus.Estimate` shows each source's latest
reading only.  :class:`SourceStats` keeps a short history per topic and
source, as chrony keeps the samples behind ``chronyc sourcestats``: each
time the daemon samples a topic (:meth:`SourceStats.record`, at most once per
``interval`` seconds), every source whose reading is new since its last
sample and that the estimate could measure (the estimate is ``ok`` and the
reading fresh) adds one sample: when the reading was taken, its offset from
the estimate, its sigma, and whether it was used.  From those,
:meth:`SourceStats.rows` gives, per source: the samples held, the time they
span, the mean offset and its standard deviation, the RMS of the sigmas the
source claimed, the number of runs of offsets on one side of their mean
(few runs: the source drifts against the swarm), and the share of samples in
which it was used.

What an offset is depends on the topic's kind, as in the estimate's
breakdown: reading minus estimate for scalar and interval topics, the
distance to the estimate for vectors, 0 (same label) or 1 for categories.

Rules it keeps:

* Pure: no clock, no I/O; the caller passes ``now``.
* Bounded: at most ``max_samples`` samples per source (the oldest go first)
  and ``max_entries`` (topic, source) pairs; a new pair evicts the one
  sampled longest ago (counted).  Samples live in flat arrays of floats.
"""

from __future__ import annotations

import math
from array import array
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from .consensus import Estimate

__all__ = [
    "DEFAULT_INTERVAL",
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_MAX_SAMPLES",
    "SourceStats",
    "SourceStatsRow",
    "SourceStatsStatistics",
]

#: seconds between two samples of a topic
DEFAULT_INTERVAL = 1.0
#: samples kept per topic and source
DEFAULT_MAX_SAMPLES = 32
#: (topic, source) pairs kept
DEFAULT_MAX_ENTRIES = 1024

#: floats per sample: reading time, offset, sigma, used (1.0 or 0.0)
_FIELDS = 4
#: a reading taken less than this after the last one sampled is the same reading
_SAME_READING = 1e-6


@dataclass(frozen=True, slots=True)
class SourceStatsRow:
    """One source of one topic, over the samples held."""

    topic: str
    kind: str
    source: int
    #: samples held
    samples: int
    #: seconds from the oldest reading sampled to the newest
    span: float
    #: seconds since the newest reading sampled was taken
    last: float
    #: mean offset from the estimate
    offset: float
    #: standard deviation of the offsets (n - 1 in the denominator); NaN for one sample
    stddev: float
    #: root mean square of the sigmas the source gave
    sigma: float
    #: runs of offsets on the same side of their mean
    runs: int
    #: share of the samples in which the source was used (``*`` or ``+``)
    used: float
    #: the source's reputation at its newest sample
    reputation: float


@dataclass(frozen=True, slots=True)
class SourceStatsStatistics:
    """Counters of a :class:`SourceStats`."""

    #: (topic, source) pairs held
    entries: int
    #: topics whose last sampling time is held (at most max_entries + 1)
    topics: int
    #: samples taken since it was made
    samples: int
    #: pairs pushed out by ``max_entries``
    evicted: int


class _Entry:
    """The samples of one topic and source, a ring of flat floats."""

    __slots__ = ("count", "data", "kind", "reputation", "start")

    def __init__(self, kind: str, capacity: int) -> None:
        self.kind = kind
        self.data = array("d", bytes(8 * _FIELDS * capacity))
        self.start = 0
        self.count = 0
        self.reputation = math.nan

    @property
    def capacity(self) -> int:
        return len(self.data) // _FIELDS

    def last_time(self) -> float:
        if not self.count:
            return -math.inf
        index = (self.start + self.count - 1) % self.capacity
        return self.data[index * _FIELDS]

    def add(self, when: float, offset: float, sigma: float, used: bool) -> None:
        capacity = self.capacity
        if self.count < capacity:
            index = (self.start + self.count) % capacity
            self.count += 1
        else:
            index = self.start
            self.start = (self.start + 1) % capacity
        base = index * _FIELDS
        self.data[base : base + _FIELDS] = array("d", (when, offset, sigma, 1.0 if used else 0.0))

    def samples(self) -> list[tuple[float, float, float, float]]:
        """Oldest first."""
        out = []
        capacity = self.capacity
        data = self.data
        for n in range(self.count):
            base = ((self.start + n) % capacity) * _FIELDS
            out.append((data[base], data[base + 1], data[base + 2], data[base + 3]))
        return out


def _runs(offsets: list[float], mean: float) -> int:
    """Runs of offsets on one side of ``mean``; offsets equal to it continue the run."""
    runs = 0
    side = 0
    for x in offsets:
        now_side = (x > mean) - (x < mean)
        if now_side and now_side != side:
            runs += 1
            side = now_side
    return runs if runs else (1 if offsets else 0)


class SourceStats:
    """Sample histories of every (topic, source) pair, bounded (see the module docstring).

    :param interval: seconds between two samples of one topic, > 0.
    :param max_samples: samples kept per topic and source, 2..4096.
    :param max_entries: (topic, source) pairs kept, 1..1048576.
    :raises ValueError: for a setting out of range.
    """

    def __init__(
        self,
        *,
        interval: float = DEFAULT_INTERVAL,
        max_samples: int = DEFAULT_MAX_SAMPLES,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        if not (isinstance(interval, (int, float)) and math.isfinite(interval) and interval > 0):
            raise ValueError(f"interval must be a finite number > 0, got {interval!r}")
        if type(max_samples) is not int or not 2 <= max_samples <= 4096:
            raise ValueError(f"max_samples must be an int in 2..4096, got {max_samples!r}")
        if type(max_entries) is not int or not 1 <= max_entries <= 1 << 20:
            raise ValueError(f"max_entries must be an int in 1..1048576, got {max_entries!r}")
        self.interval = float(interval)
        self.max_samples = max_samples
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, int], _Entry] = OrderedDict()
        self._sampled_at: dict[str, float] = {}
        self._samples = 0
        self._evicted = 0

    def due(self, topic: str, now: float) -> bool:
        """True when ``topic`` was not sampled within the last ``interval`` seconds."""
        last = self._sampled_at.get(topic)
        return last is None or now - last >= self.interval

    def record(self, topic: str, kind: str, estimate: Estimate, now: float) -> int:
        """Sample ``topic``'s estimate made at ``now``; returns the samples added.

        Does nothing when the topic is not :meth:`due`.  A source adds a
        sample when the estimate is ``ok``, its offset is finite (its reading
        is fresh) and its reading is newer than the last one sampled.
        """
        if not self.due(topic, now):
            return 0
        self._sampled_at[topic] = now
        if len(self._sampled_at) > self.max_entries:
            # topics without any entry left are forgotten first
            held = {key[0] for key in self._entries}
            for name in [t for t in self._sampled_at if t not in held and t != topic]:
                del self._sampled_at[name]
        if not estimate.ok:
            return 0
        added = 0
        entries = self._entries
        for report in estimate.sources:
            if not (math.isfinite(report.offset) and math.isfinite(report.age)):
                continue
            when = now - report.age
            key = (topic, report.source)
            entry = entries.get(key)
            if entry is None:
                while len(entries) >= self.max_entries:
                    entries.popitem(last=False)
                    self._evicted += 1
                entry = entries[key] = _Entry(kind, self.max_samples)
            elif when <= entry.last_time() + _SAME_READING:
                continue
            entry.kind = kind
            entry.add(when, report.offset, report.sigma, report.symbol in "*+")
            entry.reputation = report.reputation
            entries.move_to_end(key)
            added += 1
        self._samples += added
        return added

    def forget(self, topic: str) -> None:
        """Drop every sample of ``topic``."""
        for key in [key for key in self._entries if key[0] == topic]:
            del self._entries[key]
        self._sampled_at.pop(topic, None)

    def rows(self, now: float, topics: Iterable[str] | None = None) -> list[SourceStatsRow]:
        """One row per source of ``topics`` (every topic when None), sorted by topic and source."""
        wanted = None if topics is None else set(topics)
        out = []
        for (topic, source), entry in sorted(self._entries.items()):
            if wanted is not None and topic not in wanted:
                continue
            samples = entry.samples()
            if not samples:
                continue
            n = len(samples)
            offsets = [s[1] for s in samples]
            mean = math.fsum(offsets) / n
            stddev = (
                math.sqrt(math.fsum((x - mean) ** 2 for x in offsets) / (n - 1))
                if n > 1
                else math.nan
            )
            out.append(
                SourceStatsRow(
                    topic=topic,
                    kind=entry.kind,
                    source=source,
                    samples=n,
                    span=samples[-1][0] - samples[0][0],
                    last=max(now - samples[-1][0], 0.0),
                    offset=mean,
                    stddev=stddev,
                    sigma=math.sqrt(math.fsum(s[2] * s[2] for s in samples) / n),
                    runs=_runs(offsets, mean),
                    used=math.fsum(s[3] for s in samples) / n,
                    reputation=entry.reputation,
                )
            )
        return out

    def statistics(self) -> SourceStatsStatistics:
        return SourceStatsStatistics(
            len(self._entries), len(self._sampled_at), self._samples, self._evicted
        )
