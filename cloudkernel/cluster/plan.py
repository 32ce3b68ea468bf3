"""The soak workload: who publishes what, when; shared by every agent of a run.

A :class:`Plan` is written once by the soak runner as JSON and read by the
agent of each node (cloudkernel's, :mod:`cloudkernel.cluster.agent`, and
those of the peer systems measured beside it), so every system gets exactly
the same load.  ``t0`` is a ``time.monotonic()`` instant: that clock is the
same in every network namespace of a host, so send and receive times of
different agents compare directly.

Pure: no I/O beyond (de)serialising.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["CLASSES", "Plan", "PlanError", "Publisher", "make_plan", "next_slot", "truth"]

CLASSES = ("critical", "normal", "bulk")


class PlanError(ValueError):
    """A plan that does not hold together."""


def truth(t: float) -> float:
    """The quantity every honest publisher measures at time ``t`` (seconds):
    slow enough that readings a second apart agree within the noise."""
    return 10.0 + math.sin(t / 20.0)


@dataclass(frozen=True)
class Publisher:
    node: int
    topic: str
    #: QoS class: critical, normal or bulk
    qos: str
    #: signals per second
    rate: float
    liar: bool = False
    #: the signal's lifetime, seconds
    ttl: float = 5.0
    kind: str = "float"
    #: seconds after the plan's ``t0`` of this publisher's first slot, in
    #: ``[0, 1 / rate)``: independent sensors are not phase-locked
    phase: float = 0.0

    def start(self, t0: float) -> float:
        """When this publisher's slot 0 is due, for a plan starting at ``t0``."""
        return t0 + self.phase

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["class"] = data.pop("qos")
        return data


@dataclass(frozen=True)
class Plan:
    t0: float
    duration: float
    drain: float
    nodes: tuple[int, ...]
    publishers: tuple[Publisher, ...]
    seed: int = 0
    #: the glob every agent watches
    pattern: str = "soak/*"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def end(self) -> float:
        """When publishing ends (receiving goes on for :attr:`drain` more)."""
        return self.t0 + self.duration

    @property
    def topics(self) -> list[str]:
        """Every topic of the plan, each once, in plan order."""
        return list(dict.fromkeys(p.topic for p in self.publishers))

    def rate(self) -> float:
        """Signals published per second by the whole swarm."""
        return sum(p.rate for p in self.publishers)

    def class_of(self, topic: str) -> str:
        for p in self.publishers:
            if p.topic == topic:
                return p.qos
        raise PlanError(f"no publisher of {topic!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "t0": self.t0,
            "duration": self.duration,
            "drain": self.drain,
            "nodes": list(self.nodes),
            "publishers": [p.to_dict() for p in self.publishers],
            "seed": self.seed,
            "pattern": self.pattern,
            **self.extra,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        try:
            publishers = tuple(
                Publisher(
                    node=int(p["node"]),
                    topic=str(p["topic"]),
                    qos=str(p["class"]),
                    rate=float(p["rate"]),
                    liar=bool(p.get("liar", False)),
                    ttl=float(p.get("ttl", 5.0)),
                    kind=str(p.get("kind", "float")),
                    phase=float(p.get("phase", 0.0)),
                )
                for p in data["publishers"]
            )
            known = {"t0", "duration", "drain", "nodes", "publishers", "seed", "pattern"}
            plan = cls(
                t0=float(data["t0"]),
                duration=float(data["duration"]),
                drain=float(data["drain"]),
                nodes=tuple(int(n) for n in data["nodes"]),
                publishers=publishers,
                seed=int(data.get("seed", 0)),
                pattern=str(data.get("pattern", "soak/*")),
                extra={k: v for k, v in data.items() if k not in known},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PlanError(f"bad plan: {exc!r}") from exc
        seen: set[tuple[int, str]] = set()
        for p in plan.publishers:
            if p.qos not in CLASSES or p.node not in plan.nodes:
                raise PlanError(f"bad publisher {p}")
            if not (math.isfinite(p.rate) and p.rate > 0):
                raise PlanError(f"rate of {p.topic} at node {p.node} must be > 0")
            if not 0.0 <= p.phase < 1.0 / p.rate:
                raise PlanError(
                    f"phase of {p.topic} at node {p.node} must be in [0, 1/rate), got {p.phase!r}"
                )
            if "," in p.topic or "\n" in p.topic:
                raise PlanError(f"topic {p.topic!r} would break the CSV records")
            # seq is per topic per publisher: two entries of one node on one
            # topic would reuse each other's sequence numbers
            if (p.node, p.topic) in seen:
                raise PlanError(f"node {p.node} publishes {p.topic} twice")
            seen.add((p.node, p.topic))
        if not (plan.duration >= 0 and plan.drain >= 0):
            raise PlanError("duration and drain must be >= 0")
        return plan


def next_slot(t0: float, rate: float, slot: int, now: float) -> tuple[int, int]:
    """The slot to publish next and how many were skipped to get there.

    Slot ``k`` is due at ``t0 + k / rate``.  A slot more than one period late
    is skipped (the publisher fell behind, e.g. its daemon was down): the
    schedule resumes at the latest slot due instead of bursting to catch up.
    """
    latest_due = math.floor((now - t0) * rate)
    if latest_due - 1 > slot:
        return latest_due, latest_due - slot
    return slot, 0


def _below(rate: float) -> float:
    """The largest phase below ``1 / rate`` (the float just under it)."""
    return math.nextafter(1.0 / rate, 0.0)


def make_plan(
    *,
    nodes: Sequence[int],
    t0: float,
    duration: float,
    drain: float = 3.0,
    topics_per_class: int = 2,
    publishers_per_topic: int = 4,
    rates: dict[str, float] | None = None,
    liars: Sequence[int] = (),
    seed: int = 0,
    aligned: bool = False,
) -> Plan:
    """Several publishers per topic, several topics per class, some liars.

    Publishers of a topic are distinct nodes, assigned round-robin from a
    seeded shuffle so the load spreads over the nodes.  ``rates``: signals
    per second per publisher for each class (default critical 10, normal
    10, bulk 5).

    Each publisher's slots start at a seeded random phase within its period,
    as the sensors of independent robots do.  ``aligned`` puts every slot of
    every publisher at the same instants instead (phase 0): the whole swarm
    publishes in one burst per period, a worst case for queueing.
    """
    per_class = rates if rates is not None else {"critical": 10.0, "normal": 10.0, "bulk": 5.0}
    if publishers_per_topic > len(nodes):
        raise PlanError(f"{publishers_per_topic} publishers per topic need as many nodes")
    order = list(nodes)
    random.Random(seed).shuffle(order)
    phases = random.Random(seed + 1)
    publishers = []
    turn = 0
    for qos in CLASSES:
        for j in range(topics_per_class):
            topic = f"soak/{qos}/{j}"
            for _ in range(publishers_per_topic):
                node = order[turn % len(order)]
                turn += 1
                rate = per_class[qos]
                phase = 0.0 if aligned else phases.random() / rate
                publishers.append(
                    Publisher(node, topic, qos, rate, node in liars, phase=min(phase, _below(rate)))
                )
    return Plan(t0, duration, drain, tuple(nodes), tuple(publishers), seed)
