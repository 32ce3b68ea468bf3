"""The signal pipeline on a simulated lossy link, for ``cloudkernel demo``.

A sender batches signals into frames and FEC blocks; a link drops frames at
random; a receiver authenticates, deduplicates, rebuilds and delivers, and
its loss measurements go back to the sender every 100 ms of simulated time,
as heartbeats will carry them.  Time is simulated: the run is repeatable
from its seed and takes no longer than the computation.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .core.auth import KeyRing, SwarmKey
from .core.events import Event, SignalsReceived
from .core.receiver import Receiver, ReceiverConfig
from .core.sender import Sender
from .core.signals import make_signal

__all__ = ["PipelineResult", "run_pipeline"]

_SENDER, _RECEIVER = 0x5EED0001, 0x5EED0002
_TICK = 0.001


@dataclass(frozen=True)
class PipelineResult:
    """What a demonstration run delivered."""

    signals: int
    delivered: int
    duplicates: int
    recovered: int
    frames_sent: int
    frames_lost: int
    repair_frames: int
    drops: dict[str, int]
    measured_loss: float


def run_pipeline(
    signals: int, loss: float, seed: int, *, per_tick: int = 20, burst: float = 1.0
) -> PipelineResult:
    """Send ``signals`` signals across a link losing ``loss`` of the frames.

    :param burst: mean length of loss bursts (1: independent losses).
    """
    rng = random.Random(seed)
    key = SwarmKey(rng.randbytes(32))
    sender = Sender(_SENDER, 1, KeyRing(key))
    receiver = Receiver(KeyRing(key), ReceiverConfig(node_id=_RECEIVER))
    seen: dict[tuple[int, int], int] = {}
    recovered = sent = lost = 0
    bad = False
    now = 0.0
    next_report = 0.1
    published = 0
    topics = [f"swarm/robot{i}/temperature" for i in range(16)]

    def deliver(events: list[Event]) -> None:
        nonlocal recovered
        for event in events:
            if isinstance(event, SignalsReceived):
                for s in event.signals:
                    seen[(s.source, s.seq)] = seen.get((s.source, s.seq), 0) + 1
                    if event.recovered:
                        recovered += 1

    while published < signals or now < 1.0 + published * _TICK / per_tick:
        for _ in range(min(per_tick, signals - published)):
            topic = topics[published % len(topics)]
            sender.publish(make_signal(topic, 20.0 + rng.gauss(0, 0.5), half_life=30.0), now)
            published += 1
        for datagram in sender.poll(now):
            sent += 1
            if burst > 1.0:
                r = 1.0 / burst
                bad = rng.random() >= r if bad else rng.random() < loss * r / (1.0 - loss)
                dropped = bad
            else:
                dropped = rng.random() < loss
            if dropped:
                lost += 1
            else:
                deliver(receiver.feed(datagram, now + 0.0005))
        now += _TICK
        deliver(receiver.poll(now))
        if now >= next_report:
            next_report = now + 0.1
            link = receiver.link_statistics(_SENDER)
            if link is not None and link.settled:
                sender.reports.report(_RECEIVER, link.loss_rate, link.mean_burst, now)
    link = receiver.link_statistics(_SENDER)
    stats = receiver.statistics()
    return PipelineResult(
        signals=signals,
        delivered=len(seen),
        duplicates=sum(n - 1 for n in seen.values()),
        recovered=recovered,
        frames_sent=sent,
        frames_lost=lost,
        repair_frames=sender.statistics().repair_frames,
        drops={k: v for k, v in stats.drops.items() if v},
        measured_loss=link.lifetime_loss_rate if link is not None else 0.0,
    )
