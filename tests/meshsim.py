"""An in-memory swarm of MeshNodes on simulated lossy links, the clock in the test's hands.

:class:`Swarm` holds N :class:`~cloudkernel.core.mesh.MeshNode` objects and a
directed :class:`~linksim.Link` for every pair that can hear each other (all
pairs by default; a line A - B - C for relay tests).  Time advances in fixed
ticks; each tick every running node sends what it has, links deliver what is
due, and nodes whose deadline has come handle their timers.  A node can be
stopped (a crash: it neither sends nor receives) and started again with a
new epoch.  Everything is seeded, so a run repeats exactly.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable
from typing import TypeVar

from linksim import Impairment, Link, keyring

from cloudkernel.core.mesh import MeshConfig, MeshEvent, MeshNode, SignalDelivered
from cloudkernel.core.signals import Signal

E = TypeVar("E")


class Swarm:
    """N nodes (ids 1..N) on simulated links.

    :param n: how many nodes.
    :param edges: directed (from, to) pairs that can hear each other; every
        pair both ways when None.
    :param impairment: what every link does to datagrams.
    :param copies: each datagram is sent this many times (redundant radios).
    """

    def __init__(
        self,
        n: int,
        *,
        edges: Iterable[tuple[int, int]] | None = None,
        impairment: Impairment | None = None,
        config: MeshConfig | None = None,
        seed: int = 1,
        copies: int = 1,
    ) -> None:
        self.rng = random.Random(seed)
        self.now = 100.0
        self.config = config or MeshConfig()
        self.copies = copies
        self.nodes: dict[int, MeshNode] = {}
        self.epochs: dict[int, int] = {}
        self.running: set[int] = set()
        self.events: dict[int, list[MeshEvent]] = defaultdict(list)
        imp = impairment or Impairment()
        pairs = (
            list(edges)
            if edges is not None
            else [(a, b) for a in range(1, n + 1) for b in range(1, n + 1) if a != b]
        )
        self.links = {pair: Link(random.Random(self.rng.random()), imp) for pair in pairs}
        for node in range(1, n + 1):
            self.start(node)

    def start(self, node: int) -> None:
        """Start (or restart, with the next epoch) a node."""
        epoch = self.epochs.get(node, 0) + 1
        self.epochs[node] = epoch
        self.nodes[node] = MeshNode(node, epoch, keyring(), self.config, now=self.now)
        self.running.add(node)

    def stop(self, node: int) -> None:
        """Crash a node: it sends nothing and hears nothing from now on."""
        self.running.discard(node)

    def publish(self, node: int, signal: Signal) -> Signal:
        return self.nodes[node].publish(signal, self.now)

    def tick(self, dt: float = 0.001) -> None:
        self.now += dt
        now = self.now
        for node in sorted(self.running):
            mesh = self.nodes[node]
            deadline = mesh.deadline()
            if deadline is not None and deadline <= now:
                mesh.handle_timer(now)
            out = mesh.datagrams_to_send(now)
            if out:
                for (a, _), link in self.links.items():
                    if a == node:
                        for _ in range(self.copies):
                            link.send(out, now)
        for (_, b), link in self.links.items():
            due = link.due(now)
            if b in self.running:
                for datagram in due:
                    self.nodes[b].feed(datagram, now)
        for node in self.running:
            mesh = self.nodes[node]
            while (event := mesh.next_event()) is not None:
                self.events[node].append(event)

    def run(self, seconds: float, dt: float = 0.001) -> None:
        for _ in range(round(seconds / dt)):
            self.tick(dt)

    def delivered(self, node: int, topic: str | None = None) -> list[Signal]:
        """Signals of other nodes delivered at ``node`` (optionally of one topic)."""
        return [
            e.signal
            for e in self.events[node]
            if isinstance(e, SignalDelivered)
            and not e.local
            and (topic is None or e.signal.topic == topic)
        ]

    def of_type(self, node: int, kind: type[E]) -> list[E]:
        return [e for e in self.events[node] if isinstance(e, kind)]
