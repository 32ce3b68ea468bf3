"""The publishing schedule of a soak agent, as pure functions of the clock.

A publisher sends on an absolute schedule: slot ``i`` is due at
``t0 + i / rate`` for every ``i`` with ``i / rate < duration``.  The agent
sleeps until a slot is due and sends it; it never bursts to catch up.  A slot
whose time is already more than one period past when the agent gets to it
is skipped and counted (the soak runner reports the count, so that a
starved agent shows up as such rather than as losses of the system under
test).

Nothing here reads a clock: ``now`` is always an argument, so the tests drive
the schedule with a fake one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Step", "TopicSchedule", "next_step", "slot_count", "slot_time"]


def slot_count(rate: float, duration: float) -> int:
    """Number of slots ``i`` with ``i / rate < duration`` (``rate`` > 0)."""
    if rate <= 0 or duration <= 0:
        return 0
    count = math.ceil(duration * rate)
    # ceil of a product that lands a hair above an integer (2.0000000001 * 50)
    # would add a slot at exactly t0 + duration, which is not before the end.
    while count > 0 and (count - 1) / rate >= duration:
        count -= 1
    return count


def slot_time(t0: float, rate: float, index: int) -> float:
    """When slot ``index`` is due."""
    return t0 + index / rate


@dataclass(frozen=True)
class Step:
    """What to do next for one publisher, seen at time ``now``.

    ``index`` is the slot to act on (``== total`` when the schedule is over),
    ``skipped`` how many slots before it were given up as stale, and ``wait``
    the seconds until ``index`` is due (0.0 when it is due now or over).
    """

    index: int
    skipped: int
    wait: float


def next_step(t0: float, rate: float, total: int, index: int, now: float) -> Step:
    """The next slot to send from ``index`` on, skipping those that are stale.

    Slot ``i`` is stale when ``now`` is more than one period past its time,
    ``now - slot_time(t0, rate, i) > 1 / rate``.
    """
    first = index
    # Jump over the stale slots arithmetically (the agent may have been stopped
    # for a long time), then correct for float rounding at the boundary.
    periods_elapsed = (now - t0) * rate
    if periods_elapsed - 1 > first:
        first = max(first, min(total, math.ceil(periods_elapsed - 1)))
    while first > index and now - slot_time(t0, rate, first - 1) <= 1 / rate:
        first -= 1
    while first < total and now - slot_time(t0, rate, first) > 1 / rate:
        first += 1
    first = min(first, total)
    wait = 0.0 if first >= total else max(0.0, slot_time(t0, rate, first) - now)
    return Step(index=first, skipped=first - index, wait=wait)


class TopicSchedule:
    """The schedule state of one publisher: next slot, slots skipped so far.

    ``poll(now)`` applies :func:`next_step` and keeps the result; after
    sending the slot it returned, call ``sent()``.
    """

    def __init__(self, t0: float, rate: float, duration: float) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0, not {rate}")
        self.t0 = t0
        self.rate = rate
        self.total = slot_count(rate, duration)
        self.index = 0
        self.missed = 0

    @property
    def done(self) -> bool:
        return self.index >= self.total

    def poll(self, now: float) -> float | None:
        """Seconds until the next slot is due (0.0: send it now), None when done."""
        step = next_step(self.t0, self.rate, self.total, self.index, now)
        self.index = step.index
        self.missed += step.skipped
        return None if self.done else step.wait

    def sent(self) -> int:
        """Mark the current slot sent; returns its sequence number."""
        if self.done:
            raise RuntimeError("the schedule is over")
        seq = self.index
        self.index += 1
        return seq
