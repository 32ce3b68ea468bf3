"""Join the agents' record files into delivery, latency and consensus figures.

Every agent (cloudkernel's and the peers') writes the same lines (see
:mod:`cloudkernel.cluster.agent`).  A published signal is **expected** at a
node when that node was up and reachable from the publisher for the whole
window from ``settle`` seconds before the publish to ``window(class)``
seconds after it (:class:`Availability` says when it was not: killed,
restarting or partitioned away; or, as a receiver, its agent's watch down).  Delivery ratio =
expected signals received / expected signals; latency = receive time -
publish time of each expected signal received, per class.  A signal received
twice by one node counts once and is reported as a duplicate.

Pure: the runner reads the files and hands the lines over.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .plan import CLASSES, Plan, truth

__all__ = ["Availability", "Interval", "NodeRecords", "SoakFigures", "analyse", "parse_records"]


@dataclass(frozen=True)
class Interval:
    start: float
    end: float

    def overlaps(self, start: float, end: float) -> bool:
        return self.start < end and start < self.end


@dataclass
class Availability:
    """When nodes could not be expected to receive (seconds, monotonic)."""

    #: node -> intervals when it was down, restarting or its agent not watching
    down: dict[int, list[Interval]] = field(default_factory=dict)
    #: intervals when a set of nodes was cut off from the rest
    partitions: list[tuple[Interval, frozenset[int]]] = field(default_factory=list)
    #: node -> intervals when its agent was not listening (it can still publish)
    deaf: dict[int, list[Interval]] = field(default_factory=dict)

    def mark_down(self, node: int, start: float, end: float) -> None:
        self.down.setdefault(node, []).append(Interval(start, end))

    def reachable(self, src: int, dst: int, start: float, end: float) -> bool:
        for node in (src, dst):
            for gap in self.down.get(node, ()):
                if gap.overlaps(start, end):
                    return False
        for gap in self.deaf.get(dst, ()):
            if gap.overlaps(start, end):
                return False
        for gap, side in self.partitions:
            if (src in side) != (dst in side) and gap.overlaps(start, end):
                return False
        return True


@dataclass
class NodeRecords:
    node: int
    #: (t, topic, src, seq)
    published: list[tuple[float, str, int, int]] = field(default_factory=list)
    received: list[tuple[float, str, int, int]] = field(default_factory=list)
    #: (topic, src, seq) of the received signals that were rebuilt by FEC,
    #: for agents that can tell (cloudkernel's)
    recovered: set[tuple[str, int, int]] = field(default_factory=set)
    failed: list[tuple[float, str, str]] = field(default_factory=list)
    #: (t, up)
    watch: list[tuple[float, bool]] = field(default_factory=list)
    #: (t, topic, value, lo, hi)
    estimates: list[tuple[float, str, float, float | None, float | None]] = field(
        default_factory=list
    )
    missed: int = 0
    #: lines that did not parse (a bug in an agent if any)
    bad_lines: int = 0


def parse_records(node: int, lines: Iterable[str]) -> NodeRecords:
    """One agent's record lines; a malformed line is counted, never fatal."""
    rec = NodeRecords(node)
    for line in lines:
        f = line.rstrip("\n").split(",")
        try:
            kind = f[0]
            t = int(f[1]) / 1e9
            if kind == "R":
                rec.received.append((t, f[2], int(f[3]), int(f[4])))
                if len(f) > 5 and f[5] == "1":
                    rec.recovered.add((f[2], int(f[3]), int(f[4])))
            elif kind == "P":
                rec.published.append((t, f[2], int(f[3]), int(f[4])))
            elif kind == "F":
                rec.failed.append((t, f[2], f[3]))
            elif kind == "W":
                rec.watch.append((t, f[2] == "up"))
            elif kind == "E":
                lo = float(f[4]) if f[4] else None
                hi = float(f[5]) if f[5] else None
                rec.estimates.append((t, f[2], float(f[3]), lo, hi))
            elif kind == "S":
                rec.missed += int(f[3])
            else:
                rec.bad_lines += 1
        except (IndexError, ValueError):
            rec.bad_lines += 1
    return rec


def watch_gaps(rec: NodeRecords, start: float, end: float) -> list[Interval]:
    """When the agent's raw watch was not connected within [start, end]."""
    gaps = []
    down_since: float | None = start
    for t, up in sorted(rec.watch):
        if up and down_since is not None:
            gaps.append(Interval(down_since, t))
            down_since = None
        elif not up and down_since is None:
            down_since = t
    if down_since is not None:
        gaps.append(Interval(down_since, end))
    return gaps


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    index = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[index]


@dataclass
class ClassFigures:
    expected: int = 0
    delivered: int = 0
    duplicates: int = 0
    latencies: list[float] = field(default_factory=list)
    #: latencies of the signals rebuilt by FEC (a subset of ``latencies``):
    #: their repair frames leave when the block closes, up to the class's
    #: time budget after the first source frame
    recovered_latencies: list[float] = field(default_factory=list)
    #: the expected signals not received: (t, topic, src, seq, dst), a few
    examples_lost: list[tuple[float, str, int, int, int]] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.delivered / self.expected if self.expected else math.nan

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        return {
            "expected": self.expected,
            "delivered": self.delivered,
            "lost": self.expected - self.delivered,
            "ratio": self.ratio,
            "duplicates": self.duplicates,
            "latency_ms": _latency_ms(lat),
            "recovered": len(self.recovered_latencies),
            "recovered_latency_ms": _latency_ms(sorted(self.recovered_latencies)),
            "examples_lost": self.examples_lost[:5],
        }


def _latency_ms(lat: list[float]) -> dict[str, float]:
    """p50, p99 and max of sorted latencies (s), in ms; NaN when there are none."""
    return {
        "p50": percentile(lat, 0.50) * 1e3,
        "p99": percentile(lat, 0.99) * 1e3,
        "max": (lat[-1] * 1e3) if lat else math.nan,
    }


@dataclass
class SoakFigures:
    classes: dict[str, ClassFigures]
    published: int
    publish_failures: int
    missed_slots: int
    bad_lines: int
    #: per second since t0: (expected, delivered, latency p99 s)
    timeline: list[tuple[int, int, float]]
    consensus: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        total = ClassFigures()
        for c in self.classes.values():
            total.expected += c.expected
            total.delivered += c.delivered
            total.duplicates += c.duplicates
            total.latencies.extend(c.latencies)
            total.recovered_latencies.extend(c.recovered_latencies)
        return {
            "published": self.published,
            "publish_failures": self.publish_failures,
            "missed_slots": self.missed_slots,
            "bad_record_lines": self.bad_lines,
            "classes": {name: c.summary() for name, c in self.classes.items()},
            "all": total.summary(),
            "consensus": self.consensus,
        }


def analyse(
    plan: Plan,
    records: dict[int, NodeRecords],
    availability: Availability,
    *,
    window: Callable[[str], float],
    settle: float = 2.0,
) -> SoakFigures:
    """Delivery and latency per class, a per-second timeline, consensus error.

    :param window: seconds after a publish within which a signal of a class
        must arrive to be on time; it still counts as delivered (with its
        latency) when later, the window only decides which receivers had to
        be reachable
    :param settle: seconds before a publish a receiver must already have
        been reachable (a node just restarted or healed needs a moment to
        hear the swarm again)
    """
    end = plan.t0 + plan.duration + plan.drain
    for node, rec in records.items():
        availability.deaf[node] = watch_gaps(rec, plan.t0 - settle, end)
    classes = {name: ClassFigures() for name in CLASSES}
    class_of = {p.topic: p.qos for p in plan.publishers}
    node_of_source: dict[int, int] = {}
    # (topic, src, seq) -> sorted publish times (a restarted daemon may reuse seqs)
    sent: dict[tuple[str, int, int], list[float]] = defaultdict(list)
    for node, rec in records.items():
        for t, topic, src, seq in rec.published:
            sent[(topic, src, seq)].append(t)
            node_of_source[src] = node
    for times in sent.values():
        times.sort()
    seconds = max(1, math.ceil(plan.duration))
    timeline_expected = [0] * seconds
    timeline_delivered = [0] * seconds
    timeline_latency: list[list[float]] = [[] for _ in range(seconds)]
    for dst, rec in records.items():
        got: dict[tuple[str, int, int, float], float] = {}
        for t, topic, src, seq in rec.received:
            candidates = sent.get((topic, src, seq))
            if not candidates:
                continue
            i = bisect.bisect_right(candidates, t) - 1
            if i < 0:
                continue
            key = (topic, src, seq, candidates[i])
            if key in got:
                qos = class_of.get(topic)
                if qos is not None:
                    classes[qos].duplicates += 1
                continue
            got[key] = t
        for (topic, src, seq), times in sent.items():
            src_node = node_of_source[src]
            if src_node == dst:
                continue
            qos = class_of.get(topic)
            if qos is None:
                continue
            figures = classes[qos]
            for tp in times:
                if not availability.reachable(src_node, dst, tp - settle, tp + window(qos)):
                    continue
                figures.expected += 1
                second = min(seconds - 1, max(0, int(tp - plan.t0)))
                timeline_expected[second] += 1
                tr = got.get((topic, src, seq, tp))
                if tr is None:
                    if len(figures.examples_lost) < 20:
                        figures.examples_lost.append((tp - plan.t0, topic, src, seq, dst))
                    continue
                figures.delivered += 1
                figures.latencies.append(tr - tp)
                if (topic, src, seq) in rec.recovered:
                    figures.recovered_latencies.append(tr - tp)
                timeline_delivered[second] += 1
                timeline_latency[second].append(tr - tp)
    timeline = [
        (e, d, percentile(sorted(lat), 0.99))
        for e, d, lat in zip(timeline_expected, timeline_delivered, timeline_latency, strict=True)
    ]
    return SoakFigures(
        classes=classes,
        published=sum(len(r.published) for r in records.values()),
        publish_failures=sum(len(r.failed) for r in records.values()),
        missed_slots=sum(r.missed for r in records.values()),
        bad_lines=sum(r.bad_lines for r in records.values()),
        timeline=timeline,
        consensus=_consensus(records),
    )


def _consensus(records: dict[int, NodeRecords]) -> dict[str, Any]:
    errors = []
    inside = with_hull = 0
    for rec in records.values():
        for t, _topic, value, lo, hi in rec.estimates:
            errors.append(abs(value - truth(t)))
            if lo is not None and hi is not None:
                with_hull += 1
                inside += lo <= value <= hi
    errors.sort()
    return {
        "estimates": len(errors),
        "abs_error": {
            "p50": percentile(errors, 0.5),
            "p99": percentile(errors, 0.99),
            "max": errors[-1] if errors else math.nan,
        },
        "inside_honest_hull": inside / with_hull if with_hull else math.nan,
    }
