"""An in-memory lossy link between a Sender and a Receiver, the clock in the test's hands.

:class:`Link` impairs datagrams the way radios and congested switches do:
independent or bursty loss (a two-state Gilbert model), duplication,
reordering by extra delay, and corrupted bytes.  Everything comes from one
seeded ``random.Random``, so a run repeats exactly.

:class:`Pair` joins a sender to a receiver over a link and runs simulated
time in fixed ticks; it feeds the receiver's measured loss back to the sender
the way heartbeats will, and records every delivered signal so tests can
check that each arrived exactly once.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cloudkernel.core.auth import KeyRing, SwarmKey
from cloudkernel.core.events import Event, PacketDropped, SignalsReceived
from cloudkernel.core.receiver import Receiver, ReceiverConfig
from cloudkernel.core.sender import Sender, SenderConfig
from cloudkernel.core.signals import QoS, Signal, make_signal

SECRET = bytes(range(32))
SENDER_ID = 0x0A0B0C0D
RECEIVER_ID = 0x01020304


def keyring(secret: bytes = SECRET) -> KeyRing:
    return KeyRing(SwarmKey(secret))


@dataclass(frozen=True)
class Impairment:
    """What a link does to datagrams; probabilities are per datagram."""

    loss: float = 0.0
    #: mean length of a loss burst; 1 means independent losses
    burst: float = 1.0
    duplicate: float = 0.0
    #: chance a datagram is held back by ``reorder_delay``
    reorder: float = 0.0
    reorder_delay: float = 0.004
    #: chance that 1..3 bytes of a datagram are overwritten
    corrupt: float = 0.0
    delay: float = 0.0005


class Link:
    """One direction of a simulated network path."""

    def __init__(self, rng: random.Random, impairment: Impairment) -> None:
        self.rng = rng
        self.imp = impairment
        self._bad = False
        self._queue: list[tuple[float, int, bytes]] = []
        self._order = 0
        self.sent = 0
        self.lost = 0

    def _lose(self) -> bool:
        imp = self.imp
        if imp.loss <= 0.0:
            return False
        if imp.burst <= 1.0:
            return self.rng.random() < imp.loss
        # Gilbert: the bad state loses everything, the good state nothing; the
        # stationary loss rate is imp.loss and bad runs last imp.burst on average.
        r = 1.0 / imp.burst
        q = min(1.0, imp.loss * r / (1.0 - imp.loss))
        self._bad = self.rng.random() >= r if self._bad else self.rng.random() < q
        return self._bad

    def send(self, datagrams: Iterable[bytes], now: float) -> None:
        for datagram in datagrams:
            self.sent += 1
            if self._lose():
                self.lost += 1
                continue
            copies = 2 if self.rng.random() < self.imp.duplicate else 1
            for _ in range(copies):
                at = now + self.imp.delay
                if self.rng.random() < self.imp.reorder:
                    at += self.rng.uniform(0.0, self.imp.reorder_delay)
                data = datagram
                if self.rng.random() < self.imp.corrupt:
                    raw = bytearray(datagram)
                    for _ in range(self.rng.randint(1, 3)):
                        raw[self.rng.randrange(len(raw))] = self.rng.randrange(256)
                    data = bytes(raw)
                self._order += 1
                heapq.heappush(self._queue, (at, self._order, data))

    def due(self, now: float) -> list[bytes]:
        out = []
        while self._queue and self._queue[0][0] <= now:
            out.append(heapq.heappop(self._queue)[2])
        return out

    def pending(self) -> int:
        return len(self._queue)


class Pair:
    """A sender and a receiver over a :class:`Link`, run in simulated time."""

    def __init__(
        self,
        impairment: Impairment,
        *,
        seed: int = 1,
        sender_config: SenderConfig | None = None,
        receiver_config: ReceiverConfig | None = None,
        report_every: float = 0.1,
    ) -> None:
        self.now = 1000.0
        self.sender = Sender(SENDER_ID, 7, keyring(), sender_config)
        self.receiver = Receiver(keyring(), receiver_config or ReceiverConfig(node_id=RECEIVER_ID))
        self.link = Link(random.Random(seed), impairment)
        self.report_every = report_every
        self._next_report = self.now + report_every
        self.delivered: Counter[tuple[int, int]] = Counter()
        self.recovered = 0
        self.drops: Counter[str] = Counter()
        self.events: list[Event] = []
        self.published = 0

    def publish(self, count: int, qos: QoS = QoS.NORMAL, topic: str = "swarm/temp") -> None:
        for _ in range(count):
            self.sender.publish(
                make_signal(topic, float(self.published), confidence=0.9, half_life=5.0, qos=qos),
                self.now,
            )
            self.published += 1

    def _take(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, SignalsReceived):
                for signal in event.signals:
                    self.delivered[(signal.source, signal.seq)] += 1
                if event.recovered:
                    self.recovered += len(event.signals)
            elif isinstance(event, PacketDropped):
                self.drops[event.reason.value] += event.count
        self.events.extend(events)

    def tick(self, dt: float = 0.001) -> None:
        """Send what is due, advance the clock by dt, deliver what arrived."""
        self.link.send(self.sender.poll(self.now), self.now)
        self.now += dt
        for datagram in self.link.due(self.now):
            self._take(self.receiver.feed(datagram, self.now))
        self._take(self.receiver.poll(self.now))
        if self.now >= self._next_report:
            self._next_report = self.now + self.report_every
            stats = self.receiver.link_statistics(SENDER_ID)
            if stats is not None and stats.settled:
                self.sender.reports.report(RECEIVER_ID, stats.loss_rate, stats.mean_burst, self.now)

    def drain(self, seconds: float = 1.0) -> None:
        """Let every block close and time out, and the link empty."""
        for _ in range(round(seconds / 0.001)):
            self.tick()

    def run(
        self,
        signals: int,
        per_tick: int,
        qos: QoS = QoS.NORMAL,
        before_tick: Callable[[Pair], None] | None = None,
    ) -> None:
        while self.published < signals:
            self.publish(min(per_tick, signals - self.published), qos)
            if before_tick is not None:
                before_tick(self)
            self.tick()
        self.drain()

    def duplicates(self) -> int:
        return sum(n - 1 for n in self.delivered.values() if n > 1)

    def delivery_ratio(self) -> float:
        return len(self.delivered) / self.published


def payload_signals(events: Iterable[Event]) -> list[Signal]:
    return [s for e in events if isinstance(e, SignalsReceived) for s in e.signals]
