"""Who is in the swarm: heartbeats, phi-accrual failure detection, liveness as a table.

Every node multicasts a :class:`Heartbeat` every ``heartbeat_interval``
seconds: its node id, its epoch (a new one each time the daemon starts), its
SWIM incarnation, and one :class:`PeerReport` per peer it knows (that peer's
epoch, incarnation and state as the sender sees them, and the loss the sender
measures on that peer's frames).  :class:`Membership` turns the heartbeats it
hears into a table of peers and a stream of events.  Pure: no I/O, no clock,
no asyncio; every entry point takes ``now`` (seconds, monotonic), and
:meth:`Membership.deadline` says when :meth:`Membership.poll` or the next
heartbeat needs attention.

Rules it keeps
--------------
* Every table is bounded: at most ``max_peers`` peers, at most
  ``max_samples`` inter-arrival intervals per peer, at most ``max_peers``
  reports per heartbeat, in and out.
* A heartbeat with a field out of range is dropped and counted as
  ``invalid``; :meth:`Membership.heard` never raises on a peer's values.
  Our own misuse (a bad config, a non-finite ``now``, a bad ``links`` entry)
  raises :class:`~cloudkernel.errors.ConfigError` or ``ValueError``.
* A peer's epoch only grows: a heartbeat of an older epoch, or of the same
  epoch with a lower incarnation, is stale and ignored.  A newer epoch is a
  restart: the peer's detector starts afresh.
* Each peer's state changes only through :data:`_TRANSITIONS`, one table
  keyed by (state, input), the unknown state written ``None``:

  ==========  =================  ==========  ===================
  state       input              new state   event
  ==========  =================  ==========  ===================
  (unknown)   heard              alive       :class:`PeerJoined`
  alive       heard              alive       --
  suspect     heard              alive       :class:`PeerRecovered`
  dead        heard              alive       :class:`PeerRecovered`
  any         restarted          alive       :class:`PeerRestarted`
  alive       phi crossed        suspect     :class:`PeerSuspected`
  suspect     suspect expired    dead        :class:`PeerDied`
  dead        dead expired       (unknown)   :class:`PeerForgotten`
  dead        evicted            (unknown)   :class:`PeerForgotten`
  ==========  =================  ==========  ===================

  *phi crossed*: the peer's phi reached ``phi_threshold``; *suspect
  expired*: suspect for ``dead_after`` seconds; *dead expired*: dead for
  ``forget_after`` seconds; *evicted*: the table is full and a new peer
  needs the room of the peer dead longest.
* Each peer has an 8-bit reach register, as chrony keeps one per source:
  one bit per heartbeat interval of the peer (the interval its heartbeats
  announce), bit 0 the latest; a bit is set when a heartbeat arrived in that
  interval.  377 (octal) is eight heartbeats in a row; a lost heartbeat is a
  0 bit that moves up and out in eight intervals.  Arrivals are placed
  relative to the previous one (``round(elapsed / interval)`` intervals
  later), so a gap between two heartbeats that is off by less than half an
  interval never shows as a loss, and an interval is shown as missed only
  once its heartbeat is half an interval late (:func:`reach_at`).
* SWIM refutation: a heartbeat whose report about *us* (our node, our
  epoch) says suspect or dead at an incarnation at or above ours makes us
  take ``report.incarnation + 1`` (:class:`Refuted`) and makes a heartbeat
  due at once, so the swarm hears that we are alive.  Reports about third
  peers are not used: every node hears the multicast group directly.

Phi accrual
-----------
:class:`PhiAccrualDetector` (Hayashibara et al., "The phi accrual failure
detector", 2004; the variant of Akka and Cassandra).  It keeps the last
``max_samples`` intervals between heartbeats of one peer and their mean
``mu`` and population standard deviation ``sigma``.  A heartbeat lost on the
link makes one long interval (two or more heartbeat periods), so the window
learns the link's loss and bursts; nothing else needs to know them.  With
``t`` the seconds since the last heartbeat,

    mean = mu + acceptable_pause
    std  = max(sigma, min_std_deviation)
    y    = (t - mean) / std
    z    = y (1.5976 + 0.070566 y^2)
    phi  = -log10(P(the next heartbeat comes later than t))
         = -log10(1 - F(y)),  F(y) = 1 / (1 + exp(-z))

``F`` is the logistic approximation of the standard normal CDF (error below
1.4e-4) that Akka's ``PhiAccrualFailureDetector`` uses; Akka writes
``e = exp(-z)`` and ``phi = -log10(e / (1 + e))``.  Since
``1 - F(y) = 1 / (1 + exp(z))``, this is ``phi = log10(1 + exp(z))``,
computed here as a stable softplus (``z + log1p(exp(-z))`` for ``z > 0``), so
it neither overflows nor takes the log of 0.  ``z`` grows strictly with
``y``, so phi grows with ``t``; ``y`` is clamped to ``+-1e5`` so phi stays
finite for any ``t``.  The window starts with two samples,
``interval -+ interval / 4`` (as Akka does), so phi is meaningful from the
first heartbeat.  Inverting the formula gives the time phi reaches a
threshold (:meth:`PhiAccrualDetector.time_of_phi`):
``z* = ln(10^phi - 1)``, ``y*`` the one real root of
``0.070566 y^3 + 1.5976 y = z*``, and ``t* = mean + y* std``; at the default
threshold 8, ``y* = 5.226``.  :meth:`Membership.poll` suspects a peer when
``now`` reaches that time, so :meth:`Membership.deadline` and
:meth:`Membership.poll` agree exactly and an adapter that sleeps until the
deadline never spins.

Defaults
--------
Chosen from simulated hours of 8 peers heartbeating at 0.5 s to one
observer, over 30 % independent loss and over Gilbert-Elliott bursts (10 %
loss, mean burst 4 heartbeats); ``tests/test_membership.py`` runs both.  A
detector cannot tell a dead peer from a burst of lost heartbeats as long as
the silence: under that Gilbert link about 180 bursts start per peer-hour
and a burst lasts ``n`` or more heartbeats with probability
``0.75^(n - 1)``, so fewer than one false suspicion per peer-hour takes about
10 s of silence before suspecting.  phi alone does not get there: the window
is mostly 0.5 s intervals, so ``sigma`` is 0.15-0.77 s (5th to 95th
percentile, median 0.42 s; 0.32-0.48 s under 30 % independent loss), and
the normal tail it assumes is far thinner than the geometric tail of
bursts.  So the room comes from ``acceptable_pause``.  False suspicions per peer-hour at
``phi_threshold`` 8 (4-6 seeded hours of 8 peers each):

================  ========  ==============  ======================
acceptable_pause  iid 30 %  Gilbert 10 %/4  stopped peer suspected
================  ========  ==============  ======================
1 s (Akka)        1.7       43              2.7-3.8 s
2 s               0.1       23              3.7-4.9 s
5 s               0         3.6             6.7-7.9 s
7 s               0         1.1             8.7-9.9 s
9 s (default)     0         0.40            10.4-12.8 s
10 s              0         0.19            11.4-13.8 s
================  ========  ==============  ======================

9 s keeps the bursty link well under one false suspicion per peer-hour;
a stopped peer is then suspect after about ``0.7 + 9 + 5.23 sigma``: 11.7 s
on the independent-loss link, 10.4-12.8 s on the bursty one, and dead
``dead_after`` = 5 s later.  A swarm on clean links that wants faster
detection lowers ``acceptable_pause`` (2 s is enough for 30 % independent
loss).  Raising ``phi_threshold`` instead buys little: ``y*`` grows only as
the cube root of the threshold.  ``forget_after`` keeps a dead peer's entry
(and its epoch, so stale heartbeats of it stay stale) for five minutes.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, TypeGuard

from ..errors import ConfigError

__all__ = [
    "MAX_HEARTBEAT_INTERVAL",
    "Heartbeat",
    "LinkReported",
    "Membership",
    "MembershipConfig",
    "MembershipEvent",
    "MembershipStatistics",
    "PeerDied",
    "PeerForgotten",
    "PeerJoined",
    "PeerRecovered",
    "PeerReport",
    "PeerRestarted",
    "PeerState",
    "PeerSuspected",
    "PeerView",
    "PhiAccrualDetector",
    "Refuted",
    "reach_after",
    "reach_at",
]

#: largest node id, epoch and incarnation: they travel as 32-bit unsigned integers
MAX_U32: Final = 2**32 - 1
#: longest heartbeat interval a heartbeat may announce, seconds
MAX_HEARTBEAT_INTERVAL: Final = 3600.0
#: phi thresholds above this are refused: 10**-1000 is no probability to plan for
_MAX_PHI_THRESHOLD: Final = 1000.0
#: |y| is clamped to this, which keeps phi finite (below ~3e13) for any silence
_Y_LIMIT: Final = 1e5
#: coefficients of the logistic approximation of the normal CDF (Akka, Cassandra)
_A1: Final = 1.5976
_A3: Final = 0.070566
_LN10: Final = math.log(10.0)


class PeerState(enum.StrEnum):
    """Liveness of a peer as this node sees it."""

    ALIVE = "alive"
    SUSPECT = "suspect"
    DEAD = "dead"


# ---------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeerReport:
    """What a heartbeat's sender says about one peer it hears."""

    #: the peer's node id, 1..2**32-1
    node: int
    #: the peer's epoch as the reporter knows it, 0..2**32-1
    epoch: int
    #: the peer's incarnation as the reporter knows it, 0..2**32-1
    incarnation: int
    #: the peer's state in the reporter's table
    state: PeerState
    #: loss rate the reporter sees on frames from that peer, 0..1
    loss: float
    #: mean loss-run length the reporter sees on frames from that peer, >= 1
    mean_burst: float


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """One node's announcement of itself and of the peers it hears."""

    #: the sender's node id, 1..2**32-1
    node: int
    #: the sender's epoch, 0..2**32-1
    epoch: int
    #: the sender's incarnation, 0..2**32-1
    incarnation: int
    #: the sender's heartbeat interval, seconds, in (0, MAX_HEARTBEAT_INTERVAL]
    interval: float
    #: one report per peer the sender knows, distinct nodes, at most max_peers
    reports: tuple[PeerReport, ...]


# ---------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeerJoined:
    """A heartbeat arrived from a peer not in the table."""

    #: the peer's node id
    node: int
    #: the epoch its heartbeat carried
    epoch: int


@dataclass(frozen=True, slots=True)
class PeerSuspected:
    """An alive peer has been silent long enough that its phi reached the threshold."""

    #: the peer's node id
    node: int
    #: the peer's epoch
    epoch: int
    #: the peer's phi when it was suspected
    phi: float


@dataclass(frozen=True, slots=True)
class PeerRecovered:
    """A suspect or dead peer was heard again, in the same epoch."""

    #: the peer's node id
    node: int
    #: the peer's epoch, unchanged
    epoch: int


@dataclass(frozen=True, slots=True)
class PeerDied:
    """A peer stayed suspect for ``dead_after`` seconds."""

    #: the peer's node id
    node: int
    #: the peer's epoch
    epoch: int


@dataclass(frozen=True, slots=True)
class PeerRestarted:
    """A heartbeat of a newer epoch arrived from a known peer: its daemon restarted."""

    #: the peer's node id
    node: int
    #: the epoch held until now
    old_epoch: int
    #: the epoch the heartbeat carried
    new_epoch: int


@dataclass(frozen=True, slots=True)
class PeerForgotten:
    """A dead peer left the table (dead for ``forget_after`` seconds, or evicted)."""

    #: the peer's node id
    node: int
    #: the peer's last known epoch
    epoch: int


@dataclass(frozen=True, slots=True)
class LinkReported:
    """A peer's heartbeat reported the loss it sees on our frames."""

    #: node id of the peer that sent the report
    reporter: int
    #: loss rate the reporter sees on our frames, 0..1
    loss: float
    #: mean loss-run length the reporter sees on our frames, >= 1
    mean_burst: float


@dataclass(frozen=True, slots=True)
class Refuted:
    """A peer suspected us or declared us dead, so we took a higher incarnation."""

    #: our new incarnation
    incarnation: int


MembershipEvent = (
    PeerJoined
    | PeerSuspected
    | PeerRecovered
    | PeerDied
    | PeerRestarted
    | PeerForgotten
    | LinkReported
    | Refuted
)


# ---------------------------------------------------------------------------
# Configuration and snapshots
# ---------------------------------------------------------------------------


def _is_real(value: object) -> TypeGuard[float]:
    """True for a finite int or float that is not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_seconds(name: str, value: object, *, positive: bool, limit: float) -> None:
    if not (_is_real(value) and (value > 0.0 if positive else value >= 0.0) and value <= limit):
        rule = "> 0" if positive else ">= 0"
        raise ConfigError(f"{name} must be a finite number {rule} and <= {limit}, got {value!r}")


def _check_count(name: str, value: object, low: int, high: int) -> None:
    if not (type(value) is int and low <= value <= high):
        raise ConfigError(f"{name} must be an integer in {low}..{high}, got {value!r}")


def _check_now(now: float) -> None:
    if not _is_real(now):
        raise ValueError(f"now must be a finite number of seconds, got {now!r}")


@dataclass(frozen=True, slots=True)
class MembershipConfig:
    """How :class:`Membership` heartbeats and judges liveness (see the module docstring)."""

    #: seconds between our heartbeats, in (0, MAX_HEARTBEAT_INTERVAL]
    heartbeat_interval: float = 0.5
    #: phi at which an alive peer becomes suspect, in (0, 1000]
    phi_threshold: float = 8.0
    #: seconds of silence added to the mean interval before phi grows, >= 0
    acceptable_pause: float = 9.0
    #: floor of the interval standard deviation, seconds, > 0
    min_std_deviation: float = 0.1
    #: inter-arrival intervals kept per peer, 2..100000
    max_samples: int = 200
    #: seconds a peer stays suspect before it is declared dead, >= 0
    dead_after: float = 5.0
    #: seconds a peer stays dead before it is forgotten, >= 0
    forget_after: float = 300.0
    #: most peers in the table, 1..65536
    max_peers: int = 1024

    def __post_init__(self) -> None:
        _check_seconds(
            "heartbeat_interval",
            self.heartbeat_interval,
            positive=True,
            limit=MAX_HEARTBEAT_INTERVAL,
        )
        _check_seconds("phi_threshold", self.phi_threshold, positive=True, limit=_MAX_PHI_THRESHOLD)
        _check_seconds("acceptable_pause", self.acceptable_pause, positive=False, limit=1e6)
        _check_seconds("min_std_deviation", self.min_std_deviation, positive=True, limit=1e6)
        _check_count("max_samples", self.max_samples, 2, 100_000)
        _check_seconds("dead_after", self.dead_after, positive=False, limit=1e9)
        _check_seconds("forget_after", self.forget_after, positive=False, limit=1e9)
        _check_count("max_peers", self.max_peers, 1, 65_536)


@dataclass(frozen=True, slots=True)
class PeerView:
    """One row of :meth:`Membership.peers`: a peer as this node sees it at ``now``."""

    #: the peer's node id
    node: int
    #: the peer's epoch
    epoch: int
    #: the highest incarnation heard from the peer in this epoch
    incarnation: int
    #: the peer's state
    state: PeerState
    #: the peer's phi at ``now``
    phi: float
    #: seconds since the peer's last accepted heartbeat
    last_heard: float
    #: seconds the peer has been in its state
    since: float
    #: heartbeats accepted from the peer, every epoch
    heartbeats: int
    #: 8-bit reach register: bit i set if a heartbeat arrived i of its intervals ago
    reach: int


@dataclass(frozen=True, slots=True)
class MembershipStatistics:
    """A snapshot of a :class:`Membership`'s counters, cumulative unless noted."""

    #: heartbeats given to :meth:`Membership.heard`, every outcome
    received: int
    #: heartbeats accepted: they updated or added a peer
    accepted: int
    #: heartbeats of an older epoch, or of the same epoch and a lower incarnation
    stale: int
    #: heartbeats carrying our own node id
    from_self: int
    #: heartbeats of unknown peers dropped because the table was full of live peers
    dropped_full: int
    #: heartbeats with a field out of range
    invalid: int
    #: times we took a higher incarnation to refute a suspicion of us
    refutations: int
    #: peers added to the table
    joined: int
    #: alive -> suspect
    suspicions: int
    #: suspect -> dead
    deaths: int
    #: suspect or dead -> alive in the same epoch
    recoveries: int
    #: suspect -> alive in the same epoch: a suspicion withdrawn before death
    false_suspicions: int
    #: dead -> alive in the same epoch: a peer declared dead that was not
    false_deaths: int
    #: heartbeats of a known peer's newer epoch
    restarts: int
    #: peers removed from the table (forget_after elapsed, or evicted)
    forgotten: int
    #: the part of ``forgotten`` evicted to make room for a new peer
    evicted: int
    #: peers in the table now
    peers: int
    #: our incarnation now
    incarnation: int


# ---------------------------------------------------------------------------
# Reach register
# ---------------------------------------------------------------------------


def reach_after(reach: int, elapsed: float | None, interval: float) -> int:
    """The register once a heartbeat arrives ``elapsed`` seconds after the previous one.

    The new heartbeat lands ``round(elapsed / interval)`` intervals after the
    previous one (0 for one in the same interval, a duplicate): the register
    moves up that many bits and bit 0 is set.  ``elapsed`` None: the first
    heartbeat, the register is 1.
    """
    if elapsed is None:
        return 1
    shift = math.floor(max(elapsed, 0.0) / interval + 0.5)
    return ((reach << shift) | 1) & 0xFF if shift < 8 else 1


def reach_at(reach: int, elapsed: float | None, interval: float) -> int:
    """The register as it reads ``elapsed`` seconds after the last heartbeat.

    An interval counts as missed once its heartbeat is half an interval late:
    ``floor(elapsed / interval - 0.5)`` intervals have passed empty.
    """
    if elapsed is None:
        return 0
    missed = math.floor(max(elapsed, 0.0) / interval - 0.5)
    if missed <= 0:
        return reach
    return (reach << missed) & 0xFF if missed < 8 else 0


# ---------------------------------------------------------------------------
# Phi accrual
# ---------------------------------------------------------------------------


def _softplus(z: float) -> float:
    """``ln(1 + exp(z))`` without overflow."""
    if z > 0.0:
        return z + math.log1p(math.exp(-z))
    return math.log1p(math.exp(z))


@lru_cache(maxsize=64)
def _y_of_phi(phi: float) -> float:
    """The ``y`` at which phi reaches ``phi > 0``: the real root of ``A3 y^3 + A1 y = z*``.

    ``z* = ln(10^phi - 1) = phi ln 10 + ln(1 - 10^-phi)``, written so that it
    neither overflows for large ``phi`` nor cancels for small ones.  The cubic
    is strictly increasing, and ``|A3 y^3 + A1 y| >= A1 |y|``, so the root lies
    in ``[-|z*| / A1 - 1, |z*| / A1 + 1]``; bisection halves that bracket until
    it cannot be split (at most ~1100 halvings of a float interval, in
    practice ~60).  The upper end is returned, so phi at ``y*`` is at least
    ``phi`` but for rounding in ``z``.
    """
    target = phi * _LN10 + math.log1p(-(10.0**-phi))
    bound = abs(target) / _A1 + 1.0
    lo, hi = -bound, bound
    for _ in range(2000):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if mid * (_A1 + _A3 * mid * mid) >= target:
            hi = mid
        else:
            lo = mid
    return max(-_Y_LIMIT, min(_Y_LIMIT, hi))


class PhiAccrualDetector:
    """Suspicion of one peer, growing with its silence (see the module docstring).

    Call :meth:`heartbeat` on each arrival, read :meth:`phi`.  O(1) per call:
    the window's sum and sum of squares are kept running and recomputed
    exactly once per ``max_samples`` arrivals, so rounding cannot accumulate.
    """

    __slots__ = (
        "_expected",
        "_last",
        "_max_samples",
        "_min_std",
        "_pause",
        "_since_recount",
        "_sum",
        "_sumsq",
        "_window",
    )

    def __init__(
        self,
        expected_interval: float,
        *,
        acceptable_pause: float = 9.0,
        min_std_deviation: float = 0.1,
        max_samples: int = 200,
    ) -> None:
        """Make a detector that has heard nothing.

        :param expected_interval: the peer's heartbeat interval, seconds, which
            seeds the window, in (0, MAX_HEARTBEAT_INTERVAL]
        :param acceptable_pause: seconds added to the mean interval, >= 0
        :param min_std_deviation: floor of the standard deviation, seconds, > 0
        :param max_samples: intervals kept, 2..100000
        :raises ConfigError: for a value out of range
        """
        _check_seconds(
            "expected_interval", expected_interval, positive=True, limit=MAX_HEARTBEAT_INTERVAL
        )
        _check_seconds("acceptable_pause", acceptable_pause, positive=False, limit=1e6)
        _check_seconds("min_std_deviation", min_std_deviation, positive=True, limit=1e6)
        _check_count("max_samples", max_samples, 2, 100_000)
        self._expected = float(expected_interval)
        self._pause = float(acceptable_pause)
        self._min_std = float(min_std_deviation)
        self._max_samples = max_samples
        self._window: deque[float] = deque(maxlen=max_samples)
        self._sum = self._sumsq = 0.0
        self._since_recount = 0
        self._last: float | None = None
        self.reset()

    def reset(self, expected_interval: float | None = None) -> None:
        """Forget every arrival and start again from the seed window.

        :param expected_interval: a new heartbeat interval to seed with, or
            None to keep the current one
        :raises ConfigError: for an interval out of range
        """
        if expected_interval is not None:
            _check_seconds(
                "expected_interval",
                expected_interval,
                positive=True,
                limit=MAX_HEARTBEAT_INTERVAL,
            )
            self._expected = float(expected_interval)
        spread = self._expected / 4.0
        self._window.clear()
        self._window.extend((self._expected - spread, self._expected + spread))
        self._recount()
        self._last = None

    def retune(
        self, *, acceptable_pause: float, min_std_deviation: float, max_samples: int
    ) -> None:
        """Take new settings (a config reload) and keep the arrivals heard so far.

        When ``max_samples`` shrinks, the oldest intervals go.

        :raises ConfigError: for a value out of range (nothing is changed then)
        """
        _check_seconds("acceptable_pause", acceptable_pause, positive=False, limit=1e6)
        _check_seconds("min_std_deviation", min_std_deviation, positive=True, limit=1e6)
        _check_count("max_samples", max_samples, 2, 100_000)
        self._pause = float(acceptable_pause)
        self._min_std = float(min_std_deviation)
        if max_samples != self._max_samples:
            self._max_samples = max_samples
            self._window = deque(self._window, maxlen=max_samples)
            self._recount()

    def _recount(self) -> None:
        self._sum = math.fsum(self._window)
        self._sumsq = math.fsum(x * x for x in self._window)
        self._since_recount = 0

    def heartbeat(self, now: float) -> None:
        """Record a heartbeat that arrived at ``now``.

        The interval since the previous one (0 if ``now`` is earlier) enters
        the window; the first heartbeat only starts the clock.

        :raises ValueError: for a ``now`` that is not a finite number
        """
        _check_now(now)
        last = self._last
        if last is None:
            self._last = now
            return
        interval = max(0.0, now - last)
        window = self._window
        if len(window) == self._max_samples:
            old = window[0]
            self._sum -= old
            self._sumsq -= old * old
        window.append(interval)
        self._sum += interval
        self._sumsq += interval * interval
        self._since_recount += 1
        if self._since_recount >= self._max_samples:
            self._recount()
        self._last = max(last, now)

    @property
    def last(self) -> float | None:
        """When the last heartbeat arrived, None before the first."""
        return self._last

    @property
    def samples(self) -> int:
        """Intervals in the window, the two seed samples included until pushed out."""
        return len(self._window)

    @property
    def mean(self) -> float:
        """Mean interval of the window, seconds (without ``acceptable_pause``)."""
        return self._sum / len(self._window)

    @property
    def std_deviation(self) -> float:
        """Population standard deviation of the window, at least ``min_std_deviation``."""
        n = len(self._window)
        mean = self._sum / n
        variance = max(0.0, self._sumsq / n - mean * mean)
        return max(math.sqrt(variance), self._min_std)

    def phi(self, now: float) -> float:
        """Suspicion at ``now``: ``log10(1 + exp(z))``, finite, >= 0; 0.0 before any heartbeat."""
        last = self._last
        if last is None:
            return 0.0
        elapsed = max(0.0, now - last)
        y = (elapsed - (self.mean + self._pause)) / self.std_deviation
        y = max(-_Y_LIMIT, min(_Y_LIMIT, y))
        return _softplus(y * (_A1 + _A3 * y * y)) / _LN10

    def time_of_phi(self, phi: float) -> float | None:
        """The time at which :meth:`phi` reaches ``phi``, None before any heartbeat.

        Exact but for rounding; never earlier than the last heartbeat.

        :param phi: a phi value, > 0
        """
        last = self._last
        if last is None:
            return None
        if not (phi > 0.0):
            return last
        y = _y_of_phi(min(float(phi), _MAX_PHI_THRESHOLD))
        return last + max(0.0, self.mean + self._pause + y * self.std_deviation)


# ---------------------------------------------------------------------------
# Transition table
# ---------------------------------------------------------------------------


class _Input(enum.Enum):
    """What can happen to a peer's entry."""

    #: a fresh heartbeat of the epoch we know (or of a peer we do not know)
    HEARD = "heard"
    #: a heartbeat of a newer epoch than the one we know
    RESTARTED = "restarted"
    #: phi reached phi_threshold
    PHI_CROSSED = "phi crossed"
    #: suspect for dead_after seconds
    SUSPECT_EXPIRED = "suspect expired"
    #: dead for forget_after seconds
    DEAD_EXPIRED = "dead expired"
    #: the table is full and a new peer takes this dead peer's room
    EVICTED = "evicted"


_EventKind = (
    type[PeerJoined]
    | type[PeerSuspected]
    | type[PeerRecovered]
    | type[PeerDied]
    | type[PeerRestarted]
    | type[PeerForgotten]
)

_ALIVE, _SUSPECT, _DEAD = PeerState.ALIVE, PeerState.SUSPECT, PeerState.DEAD

#: (state, input) -> (new state, event to emit); None as a state is "not in the table"
_TRANSITIONS: Final[
    dict[tuple[PeerState | None, _Input], tuple[PeerState | None, _EventKind | None]]
] = {
    (None, _Input.HEARD): (_ALIVE, PeerJoined),
    (_ALIVE, _Input.HEARD): (_ALIVE, None),
    (_SUSPECT, _Input.HEARD): (_ALIVE, PeerRecovered),
    (_DEAD, _Input.HEARD): (_ALIVE, PeerRecovered),
    (_ALIVE, _Input.RESTARTED): (_ALIVE, PeerRestarted),
    (_SUSPECT, _Input.RESTARTED): (_ALIVE, PeerRestarted),
    (_DEAD, _Input.RESTARTED): (_ALIVE, PeerRestarted),
    (_ALIVE, _Input.PHI_CROSSED): (_SUSPECT, PeerSuspected),
    (_SUSPECT, _Input.SUSPECT_EXPIRED): (_DEAD, PeerDied),
    (_DEAD, _Input.DEAD_EXPIRED): (None, PeerForgotten),
    (_DEAD, _Input.EVICTED): (None, PeerForgotten),
}


class _Peer:
    """One row of the table."""

    __slots__ = (
        "detector",
        "epoch",
        "heartbeats",
        "incarnation",
        "interval",
        "node",
        "reach",
        "reach_last",
        "since",
        "state",
    )

    def __init__(self, node: int, epoch: int, incarnation: int, detector: PhiAccrualDetector):
        self.node = node
        self.epoch = epoch
        self.incarnation = incarnation
        self.detector = detector
        #: None only while the row is being added
        self.state: PeerState | None = None
        #: when the peer entered its state
        self.since = 0.0
        self.heartbeats = 0
        #: the reach register (see reach_after), its interval and its last arrival
        self.reach = 0
        self.interval = 1.0
        self.reach_last: float | None = None


# ---------------------------------------------------------------------------
# Validation of a peer's values
# ---------------------------------------------------------------------------


def _is_u32(value: object) -> bool:
    return type(value) is int and 0 <= value <= MAX_U32


def _valid_report(report: object) -> bool:
    if type(report) is not PeerReport:
        return False
    loss, burst = report.loss, report.mean_burst
    return (
        _is_u32(report.node)
        and report.node != 0
        and _is_u32(report.epoch)
        and _is_u32(report.incarnation)
        and isinstance(report.state, PeerState)
        and _is_real(loss)
        and 0.0 <= loss <= 1.0
        and _is_real(burst)
        and burst >= 1.0
    )


def _valid_heartbeat(heartbeat: object, max_peers: int) -> bool:
    if type(heartbeat) is not Heartbeat:
        return False
    interval, reports = heartbeat.interval, heartbeat.reports
    if not (
        _is_u32(heartbeat.node)
        and heartbeat.node != 0
        and _is_u32(heartbeat.epoch)
        and _is_u32(heartbeat.incarnation)
        and _is_real(interval)
        and 0.0 < interval <= MAX_HEARTBEAT_INTERVAL
        and type(reports) is tuple
        and len(reports) <= max_peers
    ):
        return False
    if not all(_valid_report(r) for r in reports):
        return False
    return len({r.node for r in reports}) == len(reports)


# ---------------------------------------------------------------------------
# Membership
# ---------------------------------------------------------------------------


class Membership:
    """This node's table of peers, fed with heartbeats and time (see the module docstring).

    The adapter calls :meth:`heard` for each heartbeat that arrives,
    :meth:`make_heartbeat` when :meth:`heartbeat_due`, and :meth:`poll` at
    :meth:`deadline`; each returns the events it caused.
    """

    def __init__(
        self, node: int, epoch: int, config: MembershipConfig | None = None, *, now: float
    ) -> None:
        """Make a table that knows no peer; our first heartbeat is due at ``now``.

        :param node: our node id, 1..2**32-1
        :param epoch: our epoch, 0..2**32-1, higher after each restart
        :param config: the settings, the defaults when None
        :param now: the current time, seconds, monotonic
        :raises ConfigError: for a node id or epoch out of range
        """
        if not (_is_u32(node) and node != 0):
            raise ConfigError(f"node must be an integer in 1..{MAX_U32}, got {node!r}")
        if not _is_u32(epoch):
            raise ConfigError(f"epoch must be an integer in 0..{MAX_U32}, got {epoch!r}")
        _check_now(now)
        self._node = node
        self._epoch = epoch
        self._config = config if config is not None else MembershipConfig()
        self._incarnation = 0
        self._next_heartbeat = float(now)
        self._peers: dict[int, _Peer] = {}
        self._counts: dict[str, int] = dict.fromkeys(
            (
                "received",
                "accepted",
                "stale",
                "from_self",
                "dropped_full",
                "invalid",
                "refutations",
                "joined",
                "suspicions",
                "deaths",
                "recoveries",
                "false_suspicions",
                "false_deaths",
                "restarts",
                "forgotten",
                "evicted",
            ),
            0,
        )

    # -- properties ----------------------------------------------------------

    @property
    def node(self) -> int:
        """Our node id."""
        return self._node

    @property
    def epoch(self) -> int:
        """Our epoch."""
        return self._epoch

    @property
    def incarnation(self) -> int:
        """Our incarnation: it grows each time we refute a suspicion of us."""
        return self._incarnation

    @property
    def config(self) -> MembershipConfig:
        """The settings in force."""
        return self._config

    def reconfigure(self, config: MembershipConfig, now: float) -> None:
        """Take new settings (a config reload) without forgetting any peer.

        Every peer's detector keeps its arrivals and takes the new pause,
        deviation floor and window; the thresholds apply from the next
        :meth:`poll`.  A shorter heartbeat interval brings our next heartbeat
        forward; a smaller ``max_peers`` bounds new peers only (none is evicted
        for it).
        """
        _check_now(now)
        self._config = config
        for peer in self._peers.values():
            peer.detector.retune(
                acceptable_pause=config.acceptable_pause,
                min_std_deviation=config.min_std_deviation,
                max_samples=config.max_samples,
            )
        self._next_heartbeat = min(self._next_heartbeat, now + config.heartbeat_interval)

    # -- transitions ---------------------------------------------------------

    def _apply(
        self, peer: _Peer, what: _Input, now: float, *, old_epoch: int = 0
    ) -> MembershipEvent | None:
        """Move ``peer`` by :data:`_TRANSITIONS`; count and return the event."""
        old = peer.state
        rule = _TRANSITIONS.get((old, what))
        if rule is None:
            raise AssertionError(f"no transition from {old} on {what}")
        new, kind = rule
        counts = self._counts
        event: MembershipEvent | None = None
        if kind is PeerJoined:
            counts["joined"] += 1
            event = PeerJoined(peer.node, peer.epoch)
        elif kind is PeerRecovered:
            counts["recoveries"] += 1
            counts["false_suspicions" if old is _SUSPECT else "false_deaths"] += 1
            event = PeerRecovered(peer.node, peer.epoch)
        elif kind is PeerRestarted:
            counts["restarts"] += 1
            event = PeerRestarted(peer.node, old_epoch, peer.epoch)
        elif kind is PeerSuspected:
            counts["suspicions"] += 1
            event = PeerSuspected(peer.node, peer.epoch, peer.detector.phi(now))
        elif kind is PeerDied:
            counts["deaths"] += 1
            event = PeerDied(peer.node, peer.epoch)
        elif kind is PeerForgotten:
            counts["forgotten"] += 1
            event = PeerForgotten(peer.node, peer.epoch)
        if new is None:
            del self._peers[peer.node]
        elif new is not old:
            peer.state = new
            peer.since = now
        return event

    def _new_detector(self, interval: float) -> PhiAccrualDetector:
        config = self._config
        return PhiAccrualDetector(
            interval,
            acceptable_pause=config.acceptable_pause,
            min_std_deviation=config.min_std_deviation,
            max_samples=config.max_samples,
        )

    # -- input ---------------------------------------------------------------

    def heard(self, heartbeat: Heartbeat, now: float) -> list[MembershipEvent]:
        """Take in a heartbeat that arrived at ``now``.

        Never raises on the heartbeat's values: one out of range is dropped
        and counted as ``invalid``.  Its reports are read only when the
        heartbeat is accepted (not stale, not dropped for a full table).

        :param heartbeat: the heartbeat, as decoded by the transport
        :param now: the current time, seconds, monotonic
        :returns: the events it caused, in order
        """
        _check_now(now)
        counts = self._counts
        counts["received"] += 1
        config = self._config
        if not _valid_heartbeat(heartbeat, config.max_peers):
            counts["invalid"] += 1
            return []
        node = heartbeat.node
        if node == self._node:
            counts["from_self"] += 1
            return []
        events: list[MembershipEvent] = []
        old_epoch = 0
        peer = self._peers.get(node)
        if peer is None:
            if len(self._peers) >= config.max_peers and not self._evict(now, events):
                counts["dropped_full"] += 1
                return events
            detector = self._new_detector(heartbeat.interval)
            peer = _Peer(node, heartbeat.epoch, heartbeat.incarnation, detector)
            self._peers[node] = peer
            what = _Input.HEARD
        elif heartbeat.epoch > peer.epoch:
            old_epoch = peer.epoch
            peer.epoch = heartbeat.epoch
            peer.detector.reset(heartbeat.interval)
            what = _Input.RESTARTED
        elif heartbeat.epoch < peer.epoch or heartbeat.incarnation < peer.incarnation:
            counts["stale"] += 1
            return events
        else:
            what = _Input.HEARD
            if peer.state is _DEAD:
                # The silence that made it dead says nothing about the link.
                peer.detector.reset(heartbeat.interval)
        counts["accepted"] += 1
        peer.incarnation = heartbeat.incarnation
        peer.heartbeats += 1
        peer.interval = heartbeat.interval
        elapsed = None if peer.reach_last is None else now - peer.reach_last
        peer.reach = reach_after(peer.reach, elapsed, peer.interval)
        peer.reach_last = now if peer.reach_last is None else max(peer.reach_last, now)
        peer.detector.heartbeat(now)
        event = self._apply(peer, what, now, old_epoch=old_epoch)
        if event is not None:
            events.append(event)
        self._read_reports(heartbeat, now, events)
        return events

    def _evict(self, now: float, events: list[MembershipEvent]) -> bool:
        """Forget the peer dead longest to make room; False when none is dead."""
        victim: _Peer | None = None
        for peer in self._peers.values():
            if peer.state is _DEAD and (
                victim is None or (peer.since, peer.node) < (victim.since, victim.node)
            ):
                victim = peer
        if victim is None:
            return False
        self._counts["evicted"] += 1
        event = self._apply(victim, _Input.EVICTED, now)
        if event is not None:
            events.append(event)
        return True

    def _read_reports(
        self, heartbeat: Heartbeat, now: float, events: list[MembershipEvent]
    ) -> None:
        for report in heartbeat.reports:
            if report.node != self._node or report.epoch != self._epoch:
                continue
            # SWIM: a suspicion of our current incarnation (or a later one, which
            # we never had: someone is confused) is refuted by a higher one.  At
            # the last incarnation there is no higher one: our heartbeats alone
            # clear the suspicion, and no refutation is sent again and again.
            if report.state is not _ALIVE and self._incarnation <= report.incarnation < MAX_U32:
                self._incarnation = report.incarnation + 1
                self._counts["refutations"] += 1
                self._next_heartbeat = min(self._next_heartbeat, now)
                events.append(Refuted(self._incarnation))
            events.append(LinkReported(heartbeat.node, report.loss, report.mean_burst))

    def _suspect_at(self, peer: _Peer) -> float:
        """When the peer's phi reaches the threshold; poll() and deadline() both use this."""
        when = peer.detector.time_of_phi(self._config.phi_threshold)
        assert when is not None  # every peer in the table has been heard
        return when

    def poll(self, now: float) -> list[MembershipEvent]:
        """Move peers whose time has come: suspect, dead, forgotten.

        An alive peer becomes suspect when ``now`` reaches the time its phi
        reaches ``phi_threshold``; a suspect one dies after ``dead_after``
        seconds; a dead one is forgotten after ``forget_after`` seconds.
        One step per peer per call, in node order.

        :param now: the current time, seconds, monotonic
        :returns: the events, in node order
        """
        _check_now(now)
        config = self._config
        events: list[MembershipEvent] = []
        for node in sorted(self._peers):
            peer = self._peers[node]
            state = peer.state
            if state is _ALIVE:
                if now < self._suspect_at(peer):
                    continue
                what = _Input.PHI_CROSSED
            elif state is _SUSPECT:
                if now < peer.since + config.dead_after:
                    continue
                what = _Input.SUSPECT_EXPIRED
            else:
                if now < peer.since + config.forget_after:
                    continue
                what = _Input.DEAD_EXPIRED
            event = self._apply(peer, what, now)
            if event is not None:
                events.append(event)
        return events

    def deadline(self) -> float | None:
        """The earliest time :meth:`poll` or the next heartbeat needs attention.

        Exact (but for rounding): :meth:`poll` before it returns no event, and
        at it at least one peer moves or a heartbeat is due.  O(peers).
        """
        config = self._config
        earliest = self._next_heartbeat
        for peer in self._peers.values():
            state = peer.state
            if state is _ALIVE:
                when = self._suspect_at(peer)
            elif state is _SUSPECT:
                when = peer.since + config.dead_after
            else:
                when = peer.since + config.forget_after
            earliest = min(earliest, when)
        return earliest

    # -- output --------------------------------------------------------------

    def heartbeat_due(self, now: float) -> bool:
        """True when our next heartbeat should go out at ``now``."""
        return now >= self._next_heartbeat

    def make_heartbeat(self, now: float, links: Mapping[int, tuple[float, float]]) -> Heartbeat:
        """Our heartbeat, marked sent at ``now``: the next is due one interval later.

        :param now: the current time, seconds, monotonic
        :param links: ``(loss, mean_burst)`` we measure on each peer's frames,
            by node id; a peer absent from it is reported as ``(0.0, 1.0)``
        :returns: the heartbeat, one report per known peer in node order
        :raises ValueError: for a ``links`` value out of range
        """
        _check_now(now)
        reports = []
        for node in sorted(self._peers):
            peer = self._peers[node]
            loss, burst = links.get(node, (0.0, 1.0))
            if not (_is_real(loss) and 0.0 <= loss <= 1.0 and _is_real(burst) and burst >= 1.0):
                raise ValueError(
                    f"links[{node}] must be (loss in 0..1, mean_burst >= 1), got {(loss, burst)!r}"
                )
            assert peer.state is not None
            reports.append(
                PeerReport(
                    node, peer.epoch, peer.incarnation, peer.state, float(loss), float(burst)
                )
            )
        self._next_heartbeat = now + self._config.heartbeat_interval
        return Heartbeat(
            self._node,
            self._epoch,
            self._incarnation,
            self._config.heartbeat_interval,
            tuple(reports),
        )

    def peers(self, now: float) -> list[PeerView]:
        """A snapshot of the table at ``now``, sorted by node id."""
        _check_now(now)
        views = []
        for node in sorted(self._peers):
            peer = self._peers[node]
            last = peer.detector.last
            assert peer.state is not None and last is not None
            views.append(
                PeerView(
                    node=node,
                    epoch=peer.epoch,
                    incarnation=peer.incarnation,
                    state=peer.state,
                    phi=peer.detector.phi(now),
                    last_heard=now - last,
                    since=now - peer.since,
                    heartbeats=peer.heartbeats,
                    reach=reach_at(
                        peer.reach,
                        None if peer.reach_last is None else now - peer.reach_last,
                        peer.interval,
                    ),
                )
            )
        return views

    def statistics(self) -> MembershipStatistics:
        """A snapshot of the counters."""
        return MembershipStatistics(
            **self._counts, peers=len(self._peers), incarnation=self._incarnation
        )
