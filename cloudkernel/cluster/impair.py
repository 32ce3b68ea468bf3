"""The impairment model of one directed link of the cluster switch (no I/O).

:class:`Impairment` is what a link does to frames, parsed from a JSON
object by :meth:`Impairment.from_dict`.  :class:`LinkState` applies it: for
each frame that enters the link, :meth:`LinkState.decide` says how many
copies leave, when each is due and whether it is corrupted.  Every random
draw comes from the one ``random.Random`` passed in, so a run with the same
seed and the same frames makes the same decisions; a probability of 0 draws
nothing, so adding an impairment to one link does not shift the others'.

Order of the decisions for one frame:

1. the Gilbert-Elliott chain takes one step; in its bad state the frame is
   lost (``dropped_burst``);
2. independent loss with probability ``loss`` (``dropped_iid``);
3. a second copy with probability ``duplicate`` (``duplicated``);
4. per copy, corruption with probability ``corrupt`` (``corrupted``);
5. the frame's delay: ``delay_ms`` plus a jitter drawn uniformly from
   [-``jitter_ms``, +``jitter_ms``] (so ``jitter_ms`` may not exceed
   ``delay_ms``).  Jitter never reorders: a frame is never due before the
   frame that entered the link before it (its due time is raised to that
   one's), as on a wire whose latency wanders;
6. with probability ``reorder`` the frame is held ``reorder_ms`` longer
   than its place in order (``reordered``), so the frames after it overtake
   it.  It does not hold back the frames after it.

Gilbert-Elliott from ``burst_loss`` (mean loss rate ``p``) and
``burst_length`` (mean frames per bad burst ``L``): a two-state chain
that loses every frame in the bad state and none in the good state.  A bad
burst ends with probability ``p_bad_to_good = 1 / L`` per frame, so its
length is geometric with mean ``L``.  The chain is in the bad state a
fraction ``p_good_to_bad / (p_good_to_bad + p_bad_to_good)`` of frames;
setting that to ``p`` gives ``p_good_to_bad = p / (L * (1 - p))``.  Being a
probability, that needs ``p <= L / (L + 1)`` (with bursts of 1 frame, at
most every other frame is lost).  The chain starts in its stationary
distribution, so the loss rate is ``p`` from the first frame on.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = ["Copy", "Impairment", "ImpairmentError", "LinkCounters", "LinkState"]

#: upper bound of every delay in milliseconds (a minute: beyond it, a test is wrong)
MAX_DELAY_MS = 60_000.0
#: upper bound of ``corrupt_bytes`` (a jumbo frame's payload)
MAX_CORRUPT_BYTES = 9000


class ImpairmentError(ValueError):
    """An impairment setting is unknown, of the wrong type or out of range."""


@dataclass(frozen=True)
class Impairment:
    """What one directed link does to frames; every default is "nothing"."""

    #: probability of losing a frame, independently of the others
    loss: float = 0.0
    #: Gilbert-Elliott mean loss rate (see the module's documentation)
    burst_loss: float = 0.0
    #: Gilbert-Elliott mean number of frames per bad burst
    burst_length: float = 1.0
    #: probability that a copy's UDP payload is corrupted
    corrupt: float = 0.0
    #: bytes changed in a corrupted payload (fewer when the payload is shorter)
    corrupt_bytes: int = 1
    #: probability of sending a frame twice
    duplicate: float = 0.0
    #: probability of holding a frame back so later ones overtake it
    reorder: float = 0.0
    #: how much longer a reordered frame is held, in milliseconds
    reorder_ms: float = 0.0
    #: one-way delay in milliseconds
    delay_ms: float = 0.0
    #: half-width of the uniform jitter around ``delay_ms``, in milliseconds
    jitter_ms: float = 0.0

    @classmethod
    def from_dict(cls, settings: Mapping[str, Any]) -> Impairment:
        """Parse and check a JSON object of settings (absent ones take their default).

        :raises ImpairmentError: naming the field, the value and the allowed range.
        """
        if not isinstance(settings, Mapping):
            raise ImpairmentError(f"an impairment must be a JSON object, not {settings!r}")
        known = {field.name: field for field in dataclasses.fields(cls)}
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise ImpairmentError(
                f"unknown impairment setting(s) {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(known)}"
            )
        values = {name: _checked(name, value) for name, value in settings.items()}
        impairment = cls(**values)
        impairment._check_combinations()
        return impairment

    def to_dict(self) -> dict[str, Any]:
        """The settings that differ from the defaults (what :meth:`from_dict` reads back)."""
        default = Impairment()
        return {
            field.name: getattr(self, field.name)
            for field in dataclasses.fields(self)
            if getattr(self, field.name) != getattr(default, field.name)
        }

    def _check_combinations(self) -> None:
        if self.jitter_ms > self.delay_ms:
            raise ImpairmentError(
                f"jitter_ms={self.jitter_ms} exceeds delay_ms={self.delay_ms}: the jitter is "
                "uniform in [-jitter_ms, +jitter_ms] around delay_ms and a delay cannot be negative"
            )
        limit = self.burst_length / (self.burst_length + 1)
        if self.burst_loss > limit:
            raise ImpairmentError(
                f"burst_loss={self.burst_loss} with burst_length={self.burst_length}: with "
                "bursts that long the mean loss can be at most "
                f"burst_length/(burst_length+1) = {limit:.4g}"
            )

    @property
    def is_clear(self) -> bool:
        """True when the link passes every frame at once, untouched."""
        return self == _CLEAR

    @property
    def p_good_to_bad(self) -> float:
        """Gilbert-Elliott: probability per frame of a bad burst starting."""
        if self.burst_loss == 0.0:
            return 0.0
        return self.burst_loss / (self.burst_length * (1.0 - self.burst_loss))

    @property
    def p_bad_to_good(self) -> float:
        """Gilbert-Elliott: probability per frame of a bad burst ending."""
        return 1.0 / self.burst_length


# field -> (type, smallest, largest allowed value)
_RANGES: dict[str, tuple[type, float, float]] = {
    "loss": (float, 0.0, 1.0),
    "burst_loss": (float, 0.0, 1.0 - 1e-9),
    "burst_length": (float, 1.0, 1e9),
    "corrupt": (float, 0.0, 1.0),
    "corrupt_bytes": (int, 1, MAX_CORRUPT_BYTES),
    "duplicate": (float, 0.0, 1.0),
    "reorder": (float, 0.0, 1.0),
    "reorder_ms": (float, 0.0, MAX_DELAY_MS),
    "delay_ms": (float, 0.0, MAX_DELAY_MS),
    "jitter_ms": (float, 0.0, MAX_DELAY_MS),
}


def _checked(name: str, value: Any) -> Any:
    kind, low, high = _RANGES[name]
    # bool is an int to Python, but `"loss": true` is a mistake, not 1.0
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int and not (numeric and float(value).is_integer()):
        raise ImpairmentError(f"{name}={value!r} must be an integer in [{low}, {high}]")
    if not numeric or not math.isfinite(value):
        raise ImpairmentError(f"{name}={value!r} must be a number in [{low}, {high}]")
    if not low <= value <= high:
        shown_high = "1 (exclusive)" if name == "burst_loss" else high
        raise ImpairmentError(f"{name}={value!r} is out of range [{low}, {shown_high}]")
    return kind(value)


_CLEAR = Impairment()


class Copy(NamedTuple):
    """One copy of a frame that leaves a link."""

    #: when it is due to go out (same clock as ``now``)
    due: float
    #: whether its UDP payload is to be corrupted
    corrupt: bool


@dataclass
class LinkCounters:
    """What one link did, frame by frame (copies for ``corrupted`` and ``forwarded``)."""

    frames_in: int = 0
    dropped_iid: int = 0
    dropped_burst: int = 0
    corrupted: int = 0
    duplicated: int = 0
    reordered: int = 0
    delayed: int = 0
    forwarded: int = 0

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class LinkState:
    """One directed link: its impairment, Gilbert-Elliott state and counters."""

    def __init__(self, impairment: Impairment, rng: random.Random) -> None:
        self.rng = rng
        self.counters = LinkCounters()
        self.impairment = _CLEAR
        self.clear = True
        self.in_bad_state = False
        # the due time of the last frame sent in order: jitter never lets a
        # later frame go before it
        self._last_due = -math.inf
        self.reconfigure(impairment)

    def reconfigure(self, impairment: Impairment) -> None:
        """Apply a new impairment; counters carry on, the burst chain restarts
        in its stationary distribution when its parameters change.
        """
        old = self.impairment
        self.impairment = impairment
        #: the link passes every frame at once, untouched (a fast path for the switch)
        self.clear = impairment.is_clear
        if (old.burst_loss, old.burst_length) != (impairment.burst_loss, impairment.burst_length):
            self.in_bad_state = bool(impairment.burst_loss) and (
                self.rng.random() < impairment.burst_loss
            )

    def decide(self, now: float) -> list[Copy]:
        """The copies of a frame entering the link at ``now`` (none: lost)."""
        counters = self.counters
        counters.frames_in += 1
        if self.clear:
            counters.forwarded += 1
            return [Copy(now, False)]
        imp = self.impairment
        rng = self.rng
        if imp.burst_loss:
            lost = self.in_bad_state
            if self.in_bad_state:
                self.in_bad_state = rng.random() >= imp.p_bad_to_good
            else:
                self.in_bad_state = rng.random() < imp.p_good_to_bad
            if lost:
                counters.dropped_burst += 1
                return []
        if imp.loss and rng.random() < imp.loss:
            counters.dropped_iid += 1
            return []
        copies = 1
        if imp.duplicate and rng.random() < imp.duplicate:
            counters.duplicated += 1
            copies = 2
        due = self._due(now)
        out = []
        for _ in range(copies):
            corrupt = bool(imp.corrupt) and rng.random() < imp.corrupt
            counters.corrupted += corrupt
            out.append(Copy(due, corrupt))
        counters.forwarded += copies
        return out

    def _due(self, now: float) -> float:
        imp = self.impairment
        delay_ms = imp.delay_ms
        if imp.jitter_ms:
            delay_ms += self.rng.uniform(-imp.jitter_ms, imp.jitter_ms)
        due = max(now + delay_ms / 1000.0, self._last_due)
        if due > now:
            self.counters.delayed += 1
        if imp.reorder and self.rng.random() < imp.reorder:
            self.counters.reordered += 1
            return due + imp.reorder_ms / 1000.0
        self._last_due = due
        return due
