"""A seeded chaos schedule: which node is killed or cut off, when, and for how long.

Pure: :func:`schedule` turns a seed and a few numbers into a list of
:class:`ChaosEvent`; the soak runner carries them out and the report judges
delivery against them (a node that is down or cut off is not expected to
receive).  The same seed gives the same schedule, so a failing soak can be
run again exactly.

Events never overlap: each one ends (the node restarted, the partition
healed) before the next begins, so every disturbance is measured on its own
- detection time of a crash, rejoin time after a restart - rather than as a
pile-up no real swarm sees every 30 seconds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

__all__ = ["KINDS", "ChaosError", "ChaosEvent", "schedule"]

Kind = Literal["kill", "partition"]

#: what a chaos event does: ``kill`` sends SIGKILL to a node's daemon and
#: starts it again after ``down_for``; ``partition`` cuts a set of nodes off
#: from the others (they still hear each other) and heals it after ``down_for``
KINDS: tuple[Kind, ...] = ("kill", "partition")


class ChaosError(ValueError):
    """A chaos setting out of range."""


@dataclass(frozen=True, slots=True)
class ChaosEvent:
    #: seconds from the start of the run
    at: float
    kind: Kind
    #: the nodes killed, or the side of the partition
    nodes: tuple[int, ...]
    #: seconds until the node is started again / the partition heals
    down_for: float

    @property
    def ends(self) -> float:
        return self.at + self.down_for


def schedule(
    *,
    seed: int,
    nodes: list[int],
    duration: float,
    every: float,
    down_for: float = 5.0,
    first: float | None = None,
    kinds: tuple[Kind, ...] = KINDS,
) -> list[ChaosEvent]:
    """Events every ``every`` seconds from ``first`` (default: ``every``) until
    ``duration``; kinds taken in turn from ``kinds`` (kill, partition, kill,
    ...), the victims drawn from ``seed``.

    A kill takes one node.  A partition takes between one node and a third
    of the swarm (rounded down, at least one), so the majority stays whole.
    An event whose end would pass ``duration`` is left out: every
    disturbance of a run is over before it ends.

    :raises ChaosError: for fewer than two nodes, an unknown kind, or
        ``down_for`` not shorter than ``every``.
    """
    if len(nodes) < 2:
        raise ChaosError(f"chaos needs at least 2 nodes, got {len(nodes)}")
    if every <= 0 or down_for <= 0 or duration <= 0:
        raise ChaosError("every, down_for and duration must be positive")
    if down_for >= every:
        raise ChaosError(
            f"down_for ({down_for} s) must be shorter than every ({every} s): "
            "events must not overlap"
        )
    for kind in kinds:
        if kind not in KINDS:
            raise ChaosError(f"unknown chaos kind {kind!r}; use {', '.join(KINDS)}")
    if not kinds:
        return []
    rng = random.Random(seed)
    at = every if first is None else first
    events: list[ChaosEvent] = []
    largest_side = max(1, len(nodes) // 3)
    while at + down_for <= duration:
        kind = kinds[len(events) % len(kinds)]
        victims: tuple[int, ...]
        if kind == "kill":
            victims = (rng.choice(nodes),)
        else:
            size = rng.randint(1, largest_side)
            victims = tuple(sorted(rng.sample(nodes, size)))
        events.append(ChaosEvent(at, kind, victims, down_for))
        at += every
    return events
