"""How many repair frames a FEC block needs, from the loss receivers report.

A block of ``k`` source frames gets ``m`` repair frames; a receiver rebuilds it
when at most ``m`` of its ``n = k + m`` frames are lost (``docs/PROTOCOL.md``
section 2).  The block *fails* when more than ``m`` are lost.  This module
holds no state beyond a memo cache, does no I/O and reads no clock: ``now`` is
a parameter.

:func:`block_failure_probability`
    ``P(losses > m)`` among the ``n`` frames of one block, for independent
    losses (binomial) or for bursts (the two-state Gilbert model).
:func:`choose_m`
    The smallest ``m`` that keeps that probability under the
    :class:`RedundancyPolicy`'s target, memoised for the per-block hot path.
:class:`LossReports`
    What a sender knows of the loss its receivers report, and the worst of it
    to plan for.

Loss models
-----------
Both models are described by the stationary loss rate ``p`` (``loss``) and the
mean length ``b`` (``mean_burst``) of a run of consecutive losses, which is
what :class:`cloudkernel.core.losstrack.LossTracker` measures on the receiver
side (lost frames / runs of lost frames).

*Independent losses.*  Each frame is lost with probability ``p``
independently; the number of losses ``X`` is binomial and

    P(X > m) = sum_{j=m+1}^{n} C(n, j) p^j (1 - p)^(n - j).

Under independence a loss run ends after each loss with probability
``1 - p``, so its mean length is ``1 / (1 - p)``, not 1.

*Gilbert model.*  A two-state Markov chain, one step per frame: in the bad
state B every frame is lost, in the good state G none is.  B -> G has
probability ``r = 1 / b`` (so loss runs are geometric with mean ``b``) and
G -> B has probability ``q = p r / (1 - p)``, which makes the stationary
probability of B, ``q / (q + r)``, equal to ``p``.  The chain starts from that
stationary distribution (a block begins at an arbitrary moment of the link's
life).

*Which model.*  With ``r = 1 - p`` the Gilbert chain has ``q = p`` and forgets
its state at every step: it *is* the independent model.  So a link with
independent losses reports ``b = 1 / (1 - p)`` (1.11 at ``p = 0.1``), and a
report ``b < 1 / (1 - p)`` claims losses more spread out than independent
ones (``b = 1`` would mean no two consecutive frames are ever lost).  We never
plan on that: every ``b <= 1 / (1 - p)`` (and every ``b <= 1``) is computed as
independent loss, which overstates the failure probability of such a link
and keeps the result continuous in ``b``.  For ``b > 1 / (1 - p)`` we have
``r < 1 - p`` and hence ``q = p r / (1 - p) < p < 1``: ``q`` can never exceed
1, so it needs no clamping.

Accuracy and cost
-----------------
The binomial tail is summed in 40-digit decimal arithmetic and rounded once
(see :func:`_binomial_tail`), so it is correctly rounded, even for tails of
1e-300.  The Gilbert tail is a dynamic programme over (losses so far, state)
in floating point (see :func:`_gilbert_tail`); it sums only non-negative
terms, so its relative error stays within a few hundred ulps (tested:
1e-12) for tails above ~1e-290, where subnormal floats start losing digits.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal, localcontext
from functools import lru_cache

from ..errors import ConfigError

__all__ = [
    "LossReports",
    "RedundancyPolicy",
    "block_failure_probability",
    "choose_m",
]

#: largest ``n = k + m`` of a block: GF(2^8) Reed-Solomon, PROTOCOL.md section 2
MAX_BLOCK = 255

_DECIMAL = Context(prec=40, Emin=MIN_EMIN, Emax=MAX_EMAX)
_NEGLIGIBLE = Decimal("1e-30")

#: ``mean_burst`` this close to (or below) the independent-loss value counts as independent
_BURST_TOLERANCE = 1e-9


# ---------------------------------------------------------------------------
# Failure probability
# ---------------------------------------------------------------------------


def _check_block(k: int, m: int) -> None:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k!r}")
    if m < 0:
        raise ValueError(f"m must be at least 0, got {m!r}")
    if k + m > MAX_BLOCK:
        raise ValueError(f"k + m must be at most {MAX_BLOCK}, got {k!r} + {m!r}")


def _check_loss(loss: float) -> None:
    # ``not 0 <= loss`` is also true for NaN.
    if not 0.0 <= loss:
        raise ValueError(f"loss must be a number >= 0, got {loss!r}")


def _check_burst(mean_burst: float) -> None:
    if not (math.isfinite(mean_burst) and mean_burst >= 0.0):
        raise ValueError(f"mean_burst must be a finite number >= 0, got {mean_burst!r}")


def _binomial_tail(n: int, m: int, p: float) -> float:
    """``P(X > m)`` for ``X ~ Binomial(n, p)``, ``0 < p < 1``, ``0 <= m < n``.

    The terms ``t_j = C(n, j) p^j (1 - p)^(n - j)`` of the sum are all
    positive, so summing them cannot cancel; the only danger is rounding in
    each term, above all in ``(1 - p)^(n - j)``, where a relative error
    ``e`` of ``1 - p`` grows to ``(n - j) e``.  So the sum is done in
    40-digit decimal arithmetic (``decimal``, exact conversion of the float
    ``p``, exponent range unlimited in practice): the first term directly,
    the next ones by the ratio

        t_(j+1) / t_j = (n - j) / (j + 1) * p / (1 - p).

    That ratio is below 1 once ``j > (n + 1) p``, so past that point the
    terms decrease and everything after a term ``t_j <= 1e-30 * sum`` adds at
    most ``(n - j) 1e-30`` relative: the loop stops there, which makes small
    tails cheap.  The decimal sum is within ~1e-36 of the exact tail, so the
    float returned is the correctly rounded tail for this ``p`` but for
    near-ties no one will meet.
    """
    with localcontext(_DECIMAL):
        dp = Decimal(p)
        dq = 1 - dp
        ratio = dp / dq
        j = m + 1
        term = math.comb(n, j) * dp**j * dq ** (n - j)
        total = term
        decreasing_from = (n + 1) * p
        while j < n:
            term = term * (n - j) / (j + 1) * ratio
            j += 1
            total += term
            if j > decreasing_from and term <= total * _NEGLIGIBLE:
                break
        return float(total)


def _gilbert_tail(n: int, m: int, p: float, b: float) -> float:
    """``P(losses > m)`` over ``n`` frames of the stationary Gilbert chain.

    :param p: stationary loss rate, ``0 < p < 1``
    :param b: mean burst ``b >= 1``: P(bad -> good) is ``r = 1 / b``,
        P(good -> bad) is ``q = p r / (1 - p)``

    ``good[j]`` and ``bad[j]`` hold the probability that after the frames seen
    so far there were exactly ``j <= m`` losses and the chain is in that state.
    The first frame is lost with the stationary probability ``p``.  Each next
    frame moves mass along the four transitions; a move into the bad state
    adds a loss, and mass that reaches ``m + 1`` losses can never come back,
    so it is added to ``over`` and no longer tracked.  This keeps the
    programme at O(n m) and makes ``over`` a sum of non-negative terms only:
    no ``1 - P(X <= m)`` cancellation, so tiny tails keep their relative
    accuracy.
    """
    r = 1.0 / b
    # 1 - r as (b - 1) / b: b - 1 is exact for b <= 2 (Sterbenz), where
    # 1 - 1 / b would lose the digits of a short burst to cancellation.
    stay_bad = (b - 1.0) / b
    q = p / (b * (1.0 - p))
    stay_good = 1.0 - q
    good = [0.0] * (m + 1)
    bad = [0.0] * (m + 1)
    good[0] = 1.0 - p
    over = 0.0
    if m == 0:
        over = p
    else:
        bad[1] = p
    for _ in range(n - 1):
        # Into good: no new loss, same j.  Into bad: one more loss, j + 1.
        new_good = [g * stay_good + b * r for g, b in zip(good, bad, strict=True)]
        new_bad = [0.0]
        new_bad += [g * q + b * stay_bad for g, b in zip(good[:-1], bad[:-1], strict=True)]
        over += good[m] * q + bad[m] * stay_bad
        good, bad = new_good, new_bad
    return over


def block_failure_probability(k: int, m: int, loss: float, mean_burst: float = 1.0) -> float:
    """Probability that more than ``m`` of the ``k + m`` frames of a block are lost.

    That is the probability that the block cannot be rebuilt.  See the module
    docstring for the two loss models and when each applies.

    :param k: source frames, ``k >= 1``
    :param m: repair frames, ``m >= 0``, ``k + m <= 255``
    :param loss: stationary frame loss rate; ``>= 1`` means every frame is
        lost and returns 1.0
    :param mean_burst: mean length of a run of consecutive losses; values up
        to the independent-loss value ``1 / (1 - loss)`` (and any value
        ``<= 1``) give the binomial tail, larger ones the Gilbert model
    :raises ValueError: for ``k``, ``m``, a negative or NaN ``loss`` or a
        negative or non-finite ``mean_burst`` out of range; the message names
        the value
    """
    _check_block(k, m)
    _check_loss(loss)
    _check_burst(mean_burst)
    if loss >= 1.0:
        return 1.0
    if loss == 0.0:
        return 0.0
    n = k + m
    independent = 1.0 / (1.0 - loss)
    if mean_burst <= max(1.0, independent) * (1.0 + _BURST_TOLERANCE):
        return _binomial_tail(n, m, float(loss))
    return _gilbert_tail(n, m, float(loss), float(mean_burst))


# ---------------------------------------------------------------------------
# Choosing m
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RedundancyPolicy:
    """How many repair frames a block of one QoS class gets.

    Adaptive mode (``fixed_m`` is None): the fewest repair frames in
    ``[m_min, m_max]`` that keep the block failure probability at or under
    ``target`` for the loss the receivers report; ``m_max`` when none does.
    Fixed mode: always ``fixed_m``.  Either way ``k + m`` never exceeds 255.
    """

    #: block failure probability to stay under, ``0 < target < 1``
    target: float = 1e-6
    #: fewest repair frames per block in adaptive mode
    m_min: int = 1
    #: most repair frames per block in adaptive mode
    m_max: int = 16
    #: repair frames per block regardless of loss (fixed mode), 0..254
    fixed_m: int | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.target, float | int) and 0.0 < self.target < 1.0):
            raise ConfigError(f"target must be in (0, 1), got {self.target!r}")
        for name in ("m_min", "m_max"):
            value = getattr(self, name)
            if not (type(value) is int and 0 <= value <= MAX_BLOCK - 1):
                raise ConfigError(f"{name} must be an integer in 0..{MAX_BLOCK - 1}, got {value!r}")
        if self.m_min > self.m_max:
            raise ConfigError(f"m_min must be at most m_max, got {self.m_min} > {self.m_max}")
        fixed = self.fixed_m
        if fixed is not None and not (type(fixed) is int and 0 <= fixed <= MAX_BLOCK - 1):
            raise ConfigError(
                f"fixed_m must be None or an integer in 0..{MAX_BLOCK - 1}, got {fixed!r}"
            )


#: :func:`choose_m` plans for at least this loss rate when the loss is not 0
_LOSS_FLOOR = 1e-12

#: distinct (k, loss, mean_burst, policy) as given, remembered by :func:`choose_m`
RAW_CACHE_SIZE = 1024
#: distinct (k, quantised loss, quantised burst, policy) remembered
GRID_CACHE_SIZE = 4096


def _ceil_3_digits(x: float) -> float:
    """The smallest float ``float(N / 10^e)`` with a 3-digit integer ``N`` that is ``>= x``.

    Rounds ``x > 0`` up to three significant decimal digits: at most 1 %
    above ``x``, and values already on the grid (0.1, 0.05, 3.0, 1.25) are
    returned unchanged.  ``N / 10^e`` with integers is correctly rounded, so
    the grid points are the floats nearest to the decimals, and the two
    checks at the end repair any rounding of ``x * 10^e``.
    """
    e = 2 - math.floor(math.log10(x))
    # Grid point n is n * num / den; one of num, den is 1.
    num: int = 10**-e if e < 0 else 1
    den: int = 10**e if e >= 0 else 1
    n = math.ceil(x * den / num)
    while n * num / den < x:
        n += 1
    while n > 1 and (n - 1) * num / den >= x:
        n -= 1
    return n * num / den


def _quantise_loss(loss: float) -> float:
    if loss <= 0.0:
        return 0.0
    if loss >= 1.0:
        return 1.0
    return min(1.0, _ceil_3_digits(max(loss, _LOSS_FLOOR)))


def _quantise_burst(mean_burst: float) -> float:
    if mean_burst <= 1.0 + _BURST_TOLERANCE:
        return 1.0
    return _ceil_3_digits(mean_burst)


def _smallest_m(k: int, loss: float, mean_burst: float, policy: RedundancyPolicy) -> int:
    """The search of :func:`choose_m` for already quantised inputs.

    ``P(losses > m)`` among the first ``k + m`` frames does not increase with
    ``m``: ``k + m + 1`` frames with more than ``m + 1`` losses have more than
    ``m`` losses among their first ``k + m`` frames, and both models are
    stationary, so the first ``k + m`` frames of a longer block behave like a
    block of ``k + m``.  So the smallest good ``m`` can be found by galloping
    up from ``m_min`` and bisecting, in O(log m) evaluations that stay close
    to the answer (large ``m`` are the costly ones).
    """
    top = min(policy.m_max, MAX_BLOCK - k)
    low = min(policy.m_min, top)

    def good(m: int) -> bool:
        return block_failure_probability(k, m, loss, mean_burst) <= policy.target

    if good(low):
        return low
    bad, step = low, 1
    while True:
        probe = min(bad + step, top)
        if good(probe):
            break
        if probe == top:
            return top
        bad, step = probe, step * 2
    # Invariant: bad fails, probe is good.
    while probe - bad > 1:
        mid = (bad + probe) // 2
        if good(mid):
            probe = mid
        else:
            bad = mid
    return probe


_choose_m_grid = lru_cache(maxsize=GRID_CACHE_SIZE)(_smallest_m)


@lru_cache(maxsize=RAW_CACHE_SIZE)
def _choose_m_raw(k: int, loss: float, mean_burst: float, policy: RedundancyPolicy) -> int:
    if not 1 <= k <= MAX_BLOCK:
        raise ValueError(f"k must be in 1..{MAX_BLOCK}, got {k!r}")
    if policy.fixed_m is not None:
        return min(policy.fixed_m, MAX_BLOCK - k)
    _check_loss(loss)
    _check_burst(mean_burst)
    m = _choose_m_grid(k, _quantise_loss(loss), _quantise_burst(mean_burst), policy)
    # A longer burst does not always need more repair (large targets), so the
    # grid's answer is checked against the inputs as given; once per input.
    top = min(policy.m_max, MAX_BLOCK - k)
    while m < top and block_failure_probability(k, m, loss, mean_burst) > policy.target:
        m += 1
    return m


def choose_m(k: int, loss: float, mean_burst: float, policy: RedundancyPolicy) -> int:
    """How many repair frames a block of ``k`` source frames gets.

    Fixed mode: ``policy.fixed_m``.  Adaptive mode: the smallest ``m`` in
    ``[m_min, m_max]`` with ``block_failure_probability(k, m, loss,
    mean_burst) <= policy.target``, or ``m_max`` when none is enough.  Both
    are capped at ``255 - k``.

    Called once per block, so results are memoised twice.  First on the
    arguments as given: the sender's ``(loss, mean_burst)`` changes only when
    a receiver reports, so nearly every call is a hit there.  Then, for the
    search itself, on ``loss`` and ``mean_burst`` rounded *up* to three
    significant decimal digits (at most 1 % above the reported value, far
    below the sampling noise of a loss estimate: over 1000 frames at 5 % loss
    the estimate's standard error is 14 %).  More loss always needs at least
    as many repair frames; a longer mean burst usually does too, but not for
    every target, so the grid's answer is then checked against the inputs as
    given and raised until it meets the target (or the cap).
    Both caches are LRU and bounded (:data:`RAW_CACHE_SIZE`,
    :data:`GRID_CACHE_SIZE` entries).

    :param k: source frames in the block, 1..255
    :param loss: stationary frame loss rate to plan for, ``>= 0`` (``>= 1``
        plans for total loss, i.e. ``m_max``)
    :param mean_burst: mean loss run length to plan for (see
        :func:`block_failure_probability`)
    :param policy: the QoS class's redundancy policy
    :raises ValueError: for ``k`` out of range, a negative or NaN ``loss``, or
        a negative or non-finite ``mean_burst``
    """
    return _choose_m_raw(k, loss, mean_burst, policy)


# ---------------------------------------------------------------------------
# Loss reports
# ---------------------------------------------------------------------------


class LossReports:
    """The loss receivers report for this sender, and the worst to plan for.

    A report is ``(loss, mean_burst)`` from one receiver, stamped with the
    sender's clock when it arrived.  :meth:`worst` plans for the highest loss
    and the longest mean burst among the reports younger than ``max_age``
    (the two maxima may come from different receivers, which can only
    overstate), and for ``(default_loss, default_burst)`` while there is no
    such report, so a sender that has heard nothing still protects its blocks.

    Bounded: at most ``max_receivers`` reports are kept, and a report from a
    new receiver beyond that evicts the one reported least recently.  Expired
    reports are dropped lazily by :meth:`worst`.
    """

    __slots__ = (
        "_cache",
        "_cache_oldest",
        "_default",
        "_max_age",
        "_max_receivers",
        "_reports",
    )

    def __init__(
        self,
        *,
        max_age: float = 10.0,
        default_loss: float = 0.05,
        default_burst: float = 1.0,
        max_receivers: int = 1024,
    ) -> None:
        """Make an empty set of reports.

        :param max_age: seconds a report counts for
        :param default_loss: loss rate to plan for without a fresh report, 0..1
        :param default_burst: mean burst to plan for without a fresh report, >= 1
        :param max_receivers: most receivers whose reports are kept
        :raises ConfigError: for a value out of range
        """
        if not (math.isfinite(max_age) and max_age > 0.0):
            raise ConfigError(f"max_age must be a finite number > 0, got {max_age!r}")
        if not 0.0 <= default_loss <= 1.0:
            raise ConfigError(f"default_loss must be in [0, 1], got {default_loss!r}")
        if not (math.isfinite(default_burst) and default_burst >= 1.0):
            raise ConfigError(f"default_burst must be a finite number >= 1, got {default_burst!r}")
        if not (type(max_receivers) is int and max_receivers >= 1):
            raise ConfigError(f"max_receivers must be an integer >= 1, got {max_receivers!r}")
        self._max_age = float(max_age)
        self._default = (float(default_loss), float(default_burst))
        self._max_receivers = max_receivers
        #: receiver -> (loss, mean_burst, reported at); least recently reported first
        self._reports: OrderedDict[int, tuple[float, float, float]] = OrderedDict()
        self._cache: tuple[float, float] | None = None
        #: the oldest report behind the cached answer, which holds until it expires
        self._cache_oldest = math.inf

    def report(self, receiver: int, loss: float, mean_burst: float, now: float) -> None:
        """Record what ``receiver`` reported, replacing its previous report.

        :param receiver: node id of the receiver
        :param loss: its measured loss rate of our frames, 0..1
        :param mean_burst: its measured mean loss run length; values below 1
            (e.g. "no losses yet" rounded) are taken as 1
        :param now: the sender's clock, seconds
        :raises ValueError: for a non-finite value, ``loss`` outside 0..1 or a
            negative ``mean_burst``; nothing is recorded then
        """
        if not (math.isfinite(loss) and 0.0 <= loss <= 1.0):
            raise ValueError(f"loss must be in [0, 1], got {loss!r}")
        if not (math.isfinite(mean_burst) and mean_burst >= 0.0):
            raise ValueError(f"mean_burst must be a finite number >= 0, got {mean_burst!r}")
        if not math.isfinite(now):
            raise ValueError(f"now must be finite, got {now!r}")
        reports = self._reports
        reports[receiver] = (float(loss), max(1.0, float(mean_burst)), float(now))
        reports.move_to_end(receiver)
        if len(reports) > self._max_receivers:
            reports.popitem(last=False)
        self._cache = None

    def worst(self, now: float) -> tuple[float, float]:
        """The ``(loss, mean_burst)`` to plan for at ``now``.

        The largest loss and the largest mean burst among reports younger than
        ``max_age`` (a report made at ``t`` counts while ``now - t < max_age``),
        or ``(default_loss, default_burst)`` when there is none.  O(1) while
        the cached answer holds (until the next report or the first expiry),
        O(receivers) otherwise.

        :param now: the sender's clock, seconds
        """
        # The same test as expiry below (now - at < max_age), not now < at + max_age:
        # the two can differ by a rounding step.
        if self._cache is not None and now - self._cache_oldest < self._max_age:
            return self._cache
        reports = self._reports
        max_age = self._max_age
        # Reports are in arrival order, so the expired ones are (with a
        # monotonic clock) at the front.
        while reports:
            oldest = next(iter(reports.values()))
            if now - oldest[2] < max_age:
                break
            reports.popitem(last=False)
        worst_loss = worst_burst = -1.0
        oldest_at = math.inf
        for loss, burst, at in reports.values():
            if now - at >= max_age:  # only with a clock that went backwards
                continue
            worst_loss = max(worst_loss, loss)
            worst_burst = max(worst_burst, burst)
            oldest_at = min(oldest_at, at)
        result = self._default if worst_loss < 0.0 else (worst_loss, worst_burst)
        self._cache = result
        self._cache_oldest = oldest_at  # inf without reports: cached until the next one
        return result
