"""Tests of :mod:`cloudkernel.core.redundancy`.

Oracles: the binomial tail summed exactly with :class:`fractions.Fraction`
and :func:`math.comb`; the Gilbert tail by enumerating every loss pattern of
a short block exactly (in the Gilbert model the loss pattern *is* the state
sequence); and a seeded Monte Carlo simulation of the Gilbert chain.
"""

from __future__ import annotations

import itertools
import math
import random
import re
from fractions import Fraction

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from cloudkernel.core import redundancy
from cloudkernel.core.redundancy import (
    LossReports,
    RedundancyPolicy,
    block_failure_probability,
    choose_m,
)
from cloudkernel.errors import ConfigError


def exact_binomial_tail(n: int, m: int, loss: float) -> Fraction:
    p = Fraction(loss)
    return sum(
        (math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(m + 1, n + 1)),
        start=Fraction(0),
    )


def exact_gilbert_tail(n: int, m: int, loss: float, mean_burst: float) -> Fraction:
    """Sum the probability of every loss pattern with more than m losses."""
    p, r = Fraction(loss), 1 / Fraction(mean_burst)
    q = p * r / (1 - p)
    step = {(False, False): 1 - q, (False, True): q, (True, False): r, (True, True): 1 - r}
    total = Fraction(0)
    for pattern in itertools.product((False, True), repeat=n):
        if sum(pattern) > m:
            prob = p if pattern[0] else 1 - p
            for a, b in itertools.pairwise(pattern):
                prob *= step[a, b]
            total += prob
    return total


def rel_error(got: float, want: Fraction) -> float:
    if abs(want) < 2**-1022:  # zero or subnormal: the nearest float is all there is
        return 0.0 if got == float(want) else math.inf
    return abs(float((Fraction(got) - want) / want))


losses = st.one_of(
    st.floats(0.0, 1.0, exclude_max=True),
    st.floats(-9, -1).map(lambda e: 10.0**e),
    st.sampled_from([0.001, 0.01, 0.05, 0.1, 0.3, 0.5, 0.9, 0.999]),
)


@st.composite
def small_blocks(draw: st.DrawFn, max_n: int = 40) -> tuple[int, int]:
    n = draw(st.integers(1, max_n))
    m = draw(st.integers(0, n - 1))
    return n - m, m


# ---------------------------------------------------------------------------
# Binomial
# ---------------------------------------------------------------------------


@given(small_blocks(), losses)
def test_binomial_tail_is_exact(block: tuple[int, int], loss: float) -> None:
    k, m = block
    got = block_failure_probability(k, m, loss)
    assert rel_error(got, exact_binomial_tail(k + m, m, loss)) <= 1e-15


@pytest.mark.parametrize(
    ("k", "m", "loss"),
    [
        (32, 6, 0.01),  # ~1e-9
        (8, 8, 0.03),  # ~1e-12
        (200, 20, 0.001),  # ~1e-29, large n
        (235, 20, 0.3),  # the body of the distribution, large n
        (1, 254, 0.9),  # everything but one frame may go
        (250, 5, 1e-9),  # ~1e-42
        (4, 2, 5e-324),  # underflows to 0
    ],
)
def test_binomial_tail_is_exact_for_chosen_blocks(k: int, m: int, loss: float) -> None:
    got = block_failure_probability(k, m, loss)
    want = exact_binomial_tail(k + m, m, loss)
    assert got == float(want)


def test_edge_losses() -> None:
    assert block_failure_probability(8, 2, 0.0) == 0.0
    assert block_failure_probability(8, 2, 0.0, 5.0) == 0.0
    assert block_failure_probability(8, 2, 1.0) == 1.0
    assert block_failure_probability(8, 2, 7.5, 3.0) == 1.0
    assert block_failure_probability(8, 0, 0.5) == 1 - 0.5**8
    assert block_failure_probability(255, 0, 0.01) == pytest.approx(1 - 0.99**255, rel=1e-14)


@pytest.mark.parametrize(
    ("args", "value"),
    [
        ((0, 2, 0.1), "0"),
        ((8, -1, 0.1), "-1"),
        ((200, 56, 0.1), "56"),
        ((8, 2, -0.1), "-0.1"),
        ((8, 2, math.nan), "nan"),
        ((8, 2, 0.1, -1.0), "-1.0"),
        ((8, 2, 0.1, math.inf), "inf"),
        ((8, 2, 0.1, math.nan), "nan"),
    ],
)
def test_bad_arguments_name_the_value(args: tuple[float, ...], value: str) -> None:
    with pytest.raises(ValueError, match=rf"(?<![\w.-]){re.escape(value)}(?![\w.])"):
        block_failure_probability(*args)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# Gilbert
# ---------------------------------------------------------------------------


@given(small_blocks(max_n=120), st.integers(1, 2**40))
def test_gilbert_with_independent_bursts_is_the_binomial(block: tuple[int, int], j: int) -> None:
    # Mean burst b = 1 / (1 - p), i.e. r = 1 - p = q, makes the chain
    # memoryless.  b is chosen first, exactly representable with b - 1 exact,
    # so that p = (b - 1) / b rounds the same way in the test and the code.
    k, m = block
    burst = 1.0 + j / 2**40
    loss = (burst - 1.0) / burst
    got = redundancy._gilbert_tail(k + m, m, loss, burst)
    want = exact_binomial_tail(k + m, m, loss)
    if want < 1e-290:  # floating point runs out of digits down there
        assert abs(got - want) <= 1e-300
    else:
        assert rel_error(got, want) <= 1e-12


@given(small_blocks(), st.floats(1e-3, 0.9), st.floats(0.0, 1.0))
def test_bursts_up_to_the_independent_length_count_as_independent(
    block: tuple[int, int], loss: float, where: float
) -> None:
    k, m = block
    burst = 1.0 + where * (1.0 / (1.0 - loss) - 1.0)
    binomial = block_failure_probability(k, m, loss, 1.0)
    assert block_failure_probability(k, m, loss, burst) == binomial
    assert block_failure_probability(k, m, loss, 0.5) == binomial
    # and just above it the Gilbert model takes over without a jump: a
    # relative excess d of b changes 1 - r by about d / p relative, and the
    # tail has fewer than n such factors.
    excess = 1e-8
    above = block_failure_probability(k, m, loss, (1.0 + excess) / (1.0 - loss))
    assert above == pytest.approx(binomial, rel=2 * (k + m) * excess / loss, abs=1e-300)


@given(small_blocks(max_n=8), st.floats(1e-3, 0.9), st.floats(1.0, 20.0))
def test_gilbert_matches_enumeration(block: tuple[int, int], loss: float, factor: float) -> None:
    k, m = block
    burst = factor / (1.0 - loss) * 1.001
    got = block_failure_probability(k, m, loss, burst)
    assert rel_error(got, exact_gilbert_tail(k + m, m, loss, burst)) <= 1e-12


@given(
    st.integers(1, 60),
    st.integers(1, 30),
    st.sampled_from([1e-4, 0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5]),
    st.floats(-4, 1),
)
def test_bursts_fail_more_often_than_independent_loss(
    k: int, m: int, loss: float, log_excess: float
) -> None:
    # Where it matters (m >= 1, independent failure already small), bursts of
    # the same loss rate overwhelm the repair frames more often.  Not for
    # m = 0 or huge failure rates: bursts also leave more blocks untouched.
    binomial = block_failure_probability(k, m, loss)
    assume(binomial <= 0.01)
    burst = (1.0 + 10.0**log_excess) / (1.0 - loss)
    assert block_failure_probability(k, m, loss, burst) >= binomial * (1 - 1e-12)


def test_gilbert_against_monte_carlo() -> None:
    k, m, loss, burst = 8, 2, 0.1, 3.0
    r = 1 / burst
    q = loss * r / (1 - loss)
    rng = random.Random(20240611)
    uniform = rng.random
    blocks = 200_000
    failed = 0
    for _ in range(blocks):
        bad = uniform() < loss
        lost = int(bad)
        for _ in range(k + m - 1):
            bad = uniform() >= r if bad else uniform() < q
            lost += bad
        failed += lost > m
    p = block_failure_probability(k, m, loss, burst)
    sigma = math.sqrt(p * (1 - p) / blocks)
    assert abs(failed / blocks - p) <= 5 * sigma, (failed / blocks, p, sigma)
    # and the bursts matter here: independent loss would fail far less often
    assert block_failure_probability(k, m, loss) < p / 2


# ---------------------------------------------------------------------------
# RedundancyPolicy and choose_m
# ---------------------------------------------------------------------------

POLICY = RedundancyPolicy(m_max=64)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"target": 0.0}, "target"),
        ({"target": 1.0}, "target"),
        ({"target": math.nan}, "target"),
        ({"m_min": -1}, "m_min"),
        ({"m_max": 255}, "m_max"),
        ({"m_min": 5, "m_max": 4}, "m_min"),
        ({"m_max": 2.5}, "m_max"),
        ({"fixed_m": -1}, "fixed_m"),
        ({"fixed_m": 300}, "fixed_m"),
    ],
)
def test_bad_policy(kwargs: dict[str, float], name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        RedundancyPolicy(**kwargs)  # type: ignore[arg-type]


def test_policy_is_hashable() -> None:
    assert hash(RedundancyPolicy()) == hash(RedundancyPolicy(1e-6, 1, 16, None))


def test_hand_checked_value() -> None:
    target = Fraction(1, 10**6)
    want = next(m for m in range(64) if exact_binomial_tail(32 + m, m, 0.1) <= target)
    assert want == 17
    assert choose_m(32, 0.1, 1.0, POLICY) == want
    assert choose_m(32, 0.1, 1.0, RedundancyPolicy(m_max=64, m_min=want + 3)) == want + 3
    assert choose_m(32, 0.1, 1.0, RedundancyPolicy(m_max=want - 1)) == want - 1


@given(
    st.integers(1, 64),
    st.floats(0.0, 0.4),
    st.floats(0.0, 0.4),
    st.sampled_from([1.0, 1.5, 3.0]),
)
def test_choose_m_is_monotone_in_loss(k: int, a: float, b: float, burst: float) -> None:
    low, high = sorted((a, b))
    policy = RedundancyPolicy(m_max=32)
    assert choose_m(k, low, burst, policy) <= choose_m(k, high, burst, policy)


@given(
    st.integers(1, 64),
    st.floats(-12, -1),
    st.floats(-12, -1),
    st.sampled_from([0.01, 0.1, 0.3]),
    st.sampled_from([1.0, 3.0]),
)
def test_choose_m_is_monotone_in_target(
    k: int, a: float, b: float, loss: float, burst: float
) -> None:
    strict, lax = sorted((10.0**a, 10.0**b))
    m_strict = choose_m(k, loss, burst, RedundancyPolicy(target=strict, m_max=32))
    assert choose_m(k, loss, burst, RedundancyPolicy(target=lax, m_max=32)) <= m_strict


@given(st.integers(1, 128), losses, st.floats(0.0, 8.0), st.integers(0, 5), st.integers(0, 40))
def test_choose_m_meets_the_target_or_hits_the_cap(
    k: int, loss: float, burst: float, m_min: int, extra: int
) -> None:
    policy = RedundancyPolicy(m_min=m_min, m_max=m_min + extra)
    m = choose_m(k, loss, burst, policy)
    cap = min(policy.m_max, 255 - k)
    assert min(m_min, cap) <= m <= cap
    if m < cap:
        assert block_failure_probability(k, m, loss, burst) <= policy.target
    if m > m_min:
        # Minimal for the (slightly larger) loss and burst it planned for.
        planned = (redundancy._quantise_loss(loss), redundancy._quantise_burst(burst))
        assert block_failure_probability(k, m - 1, *planned) > policy.target


@given(st.floats(1e-15, 1.0, exclude_max=True), st.floats(1.0, 1e6))
def test_quantisation_is_upward_and_fine(loss: float, burst: float) -> None:
    ql = redundancy._quantise_loss(loss)
    qb = redundancy._quantise_burst(burst)
    assert loss <= ql <= max(loss * 1.01, 1e-12)
    if burst <= 1.0 + 1e-9:
        assert qb == 1.0  # independent loss
    else:
        assert burst <= qb <= burst * 1.01
    assert redundancy._quantise_loss(ql) == ql
    assert redundancy._quantise_burst(qb) == qb


def test_round_values_are_planned_as_given() -> None:
    for value in (0.1, 0.05, 0.01, 0.3, 0.123, 1e-5):
        assert redundancy._quantise_loss(value) == value
    for value in (3.0, 1.5, 1.11, 250.0):
        assert redundancy._quantise_burst(value) == value
    assert redundancy._quantise_burst(1.0 + 1e-12) == 1.0
    assert redundancy._quantise_loss(0.0) == 0.0
    assert redundancy._quantise_loss(0.9995) == 1.0


def test_choose_m_is_memoised() -> None:
    policy = RedundancyPolicy(target=3e-7, m_max=40)
    choose_m(24, 0.0731, 2.2, policy)
    raw = redundancy._choose_m_raw.cache_info()
    grid = redundancy._choose_m_grid.cache_info()
    assert choose_m(24, 0.0731, 2.2, policy) == choose_m(24, 0.07305, 2.2, policy)
    assert redundancy._choose_m_raw.cache_info().hits == raw.hits + 1
    assert redundancy._choose_m_grid.cache_info().hits == grid.hits + 1  # same grid point
    assert raw.maxsize == redundancy.RAW_CACHE_SIZE
    assert grid.maxsize == redundancy.GRID_CACHE_SIZE


def test_fixed_mode_and_caps() -> None:
    fixed = RedundancyPolicy(fixed_m=6)
    assert choose_m(8, 0.0, 1.0, fixed) == 6
    assert choose_m(8, 0.9, 9.0, fixed) == 6
    assert choose_m(252, 0.1, 1.0, fixed) == 3
    assert choose_m(255, 0.1, 1.0, fixed) == 0
    assert choose_m(8, 0.0, 1.0, RedundancyPolicy(fixed_m=0)) == 0
    adaptive = RedundancyPolicy(m_min=2, m_max=40)
    assert choose_m(8, 0.0, 1.0, adaptive) == 2
    assert choose_m(8, 1.0, 1.0, adaptive) == 40
    assert choose_m(8, 3.0, 1.0, adaptive) == 40
    assert choose_m(250, 0.5, 1.0, adaptive) == 5
    assert choose_m(254, 0.0, 1.0, adaptive) == 1  # m_min capped too
    assert choose_m(8, 0.0, 1.0, RedundancyPolicy(m_min=0)) == 0


@pytest.mark.parametrize(
    ("k", "loss", "burst"), [(0, 0.1, 1.0), (256, 0.1, 1.0), (8, -0.5, 1.0), (8, 0.1, -2.0)]
)
def test_choose_m_rejects_bad_arguments(k: int, loss: float, burst: float) -> None:
    with pytest.raises(ValueError):
        choose_m(k, loss, burst, POLICY)


# ---------------------------------------------------------------------------
# LossReports
# ---------------------------------------------------------------------------


def test_defaults_without_reports() -> None:
    assert LossReports().worst(0.0) == (0.05, 1.0)
    assert LossReports(default_loss=0.2, default_burst=2.0).worst(1e6) == (0.2, 2.0)


def test_worst_takes_each_maximum() -> None:
    reports = LossReports()
    reports.report(1, 0.10, 1.2, 0.0)
    reports.report(2, 0.02, 4.0, 0.5)
    reports.report(3, 0.00, 1.0, 1.0)
    assert reports.worst(1.0) == (0.10, 4.0)
    reports.report(1, 0.01, 1.0, 2.0)  # replaces receiver 1's report
    assert reports.worst(2.0) == (0.02, 4.0)


def test_reports_expire() -> None:
    reports = LossReports(max_age=10.0)
    reports.report(1, 0.3, 1.0, 0.0)
    reports.report(2, 0.1, 2.0, 5.0)
    assert reports.worst(9.999) == (0.3, 2.0)
    assert reports.worst(10.0) == (0.1, 2.0)  # exactly max_age old: expired
    assert reports.worst(14.999) == (0.1, 2.0)
    assert reports.worst(15.0) == (0.05, 1.0)
    reports.report(3, 0.2, 1.5, 20.0)
    assert reports.worst(20.0) == (0.2, 1.5)


def test_oldest_report_is_evicted() -> None:
    reports = LossReports(max_receivers=3)
    for receiver, loss in enumerate((0.4, 0.3, 0.2)):
        reports.report(receiver, loss, 1.0, 0.0)
    reports.report(0, 0.4, 1.0, 1.0)  # receiver 0 reports again: now the newest
    reports.report(3, 0.1, 1.0, 2.0)  # evicts receiver 1, the least recent
    assert reports.worst(2.0) == (0.4, 1.0)
    reports.report(4, 0.0, 1.0, 3.0)  # evicts receiver 2
    reports.report(5, 0.0, 1.0, 3.0)  # evicts receiver 0
    assert reports.worst(3.0) == (0.1, 1.0)


def test_a_clock_going_backwards_does_not_resurrect_or_lose_reports() -> None:
    reports = LossReports(max_age=10.0)
    reports.report(1, 0.2, 1.0, 100.0)
    reports.report(2, 0.1, 1.0, 50.0)  # stamped earlier, reported later
    assert reports.worst(100.0) == (0.2, 1.0)  # 2 expired although not at the front
    assert reports.worst(109.0) == (0.2, 1.0)


def test_report_validation() -> None:
    reports = LossReports()
    for loss in (-0.1, 1.5, math.nan, math.inf):
        with pytest.raises(ValueError, match="loss"):
            reports.report(1, loss, 1.0, 0.0)
    for burst in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="mean_burst"):
            reports.report(1, 0.1, burst, 0.0)
    with pytest.raises(ValueError, match="now"):
        reports.report(1, 0.1, 1.0, math.nan)
    assert reports.worst(0.0) == (0.05, 1.0)  # nothing was recorded
    reports.report(1, 1.0, 0.25, 0.0)  # burst below 1 is taken as 1
    assert reports.worst(0.0) == (1.0, 1.0)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"max_age": 0.0}, "max_age"),
        ({"max_age": math.inf}, "max_age"),
        ({"default_loss": 1.5}, "default_loss"),
        ({"default_burst": 0.5}, "default_burst"),
        ({"max_receivers": 0}, "max_receivers"),
    ],
)
def test_bad_loss_reports_config(kwargs: dict[str, float], name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        LossReports(**kwargs)  # type: ignore[arg-type]


def test_choose_m_meets_the_target_for_the_inputs_as_given() -> None:
    # Rounding the burst up to the cache grid would give m = 1 here, whose
    # failure probability is just above this (large) target.
    policy = RedundancyPolicy(target=0.007902493828101672, m_min=0, m_max=223)
    m = choose_m(32, 0.002, 8.968187124032596, policy)
    assert block_failure_probability(32, m, 0.002, 8.968187124032596) <= policy.target
    assert block_failure_probability(32, m - 1, 0.002, 8.968187124032596) > policy.target


def test_worst_expires_a_report_exactly_as_documented() -> None:
    reports = LossReports(max_age=3.3, default_loss=0.01)
    reports.report(1, 0.5, 1.0, 0.7)
    assert reports.worst(0.7) == (0.5, 1.0)
    now = 3.9999999999999996  # now - 0.7 == 3.3: expired, though now < 0.7 + 3.3
    assert now - 0.7 >= 3.3
    assert reports.worst(now) == (0.01, 1.0)
