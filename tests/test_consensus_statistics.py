"""How good the estimate is when nobody lies, and how honest its sigma is.

* Efficiency: with heterogeneous Gaussian sigmas and no liars, the RMSE of the
  estimate is at most 1.10x that of the oracle -- the inverse-variance
  weighted mean of every reading, which knows the true sigmas and that nobody
  lies -- for n >= 7, and at most 1.30x for 3 <= n <= 6; with 10 % of the
  readings replaced by outliers at 20 sigma, at most 1.3x the clean oracle.
* Calibration: the reported 95 % interval covers the truth in 93-97 % of
  trials without liars, and in >= 90 % with f liars.
* Evaporation follows I0 * 2^(-dt/h) to 1e-9, and sigma grows while no fresh
  reading arrives.
"""

from __future__ import annotations

import math
import random

import pytest
from consensus_scenarios import ATTACKS, clean_coverage, efficiency_ratio, run_attack

from cloudkernel.consensus import ConsensusFilter, FilterConfig, Reputation

TRIALS = 20_000


@pytest.mark.slow
@pytest.mark.parametrize(
    ("n", "bound"), [(3, 1.30), (4, 1.30), (5, 1.30), (6, 1.30), (7, 1.10), (10, 1.10), (31, 1.10)]
)
def test_efficiency_against_the_inverse_variance_oracle(n: int, bound: float) -> None:
    ratio, missing = efficiency_ratio(n, 0.0, TRIALS, f"efficiency-{n}")
    assert ratio <= bound, ratio
    assert missing <= 0.01 * TRIALS


@pytest.mark.slow
@pytest.mark.parametrize("n", [10, 20, 31])
def test_efficiency_with_ten_percent_outliers_at_20_sigma(n: int) -> None:
    ratio, missing = efficiency_ratio(n, 0.1, TRIALS, f"outliers-{n}")
    assert ratio <= 1.3, ratio
    assert missing <= 0.01 * TRIALS


@pytest.mark.slow
@pytest.mark.parametrize("n", [4, 7, 10, 31])
def test_calibration_without_liars(n: int) -> None:
    coverage, answered = clean_coverage(n, TRIALS, f"calibration-{n}")
    assert answered >= 0.99 * TRIALS
    assert 0.93 <= coverage <= 0.97, coverage


@pytest.mark.slow
@pytest.mark.parametrize("n", [7, 10, 31])
def test_calibration_with_f_liars(n: int) -> None:
    rng = random.Random(f"calibration-liars-{n}")
    covered = answered = 0
    for trial in range(TRIALS // 2):
        result = run_attack(n, (n - 1) // 3, ATTACKS[trial % len(ATTACKS)], rng)
        estimate = result.estimate
        if estimate.ok:
            assert estimate.interval is not None
            answered += 1
            covered += estimate.interval[0] <= 0.0 <= estimate.interval[1]
    assert covered / answered >= 0.90, covered / answered


@pytest.mark.parametrize("half_life", [0.25, 1.0, 7.5, 3600.0])
def test_evaporation_follows_the_half_life(half_life: float) -> None:
    flt = ConsensusFilter(FilterConfig(min_sources=1, expire_half_lives=1000.0))
    flt.update(1, 5.0, 0.8, 100.0, half_life=half_life)
    for dt in [0.0, 0.001, 0.1, 1.0, 3.3, 10.0, 60.0, 500.0]:
        if dt / half_life > 60:  # past ~66 half-lives a reading counts as expired
            continue
        (report,) = flt.estimate(100.0 + dt).sources
        expected = 0.5 ** (dt / half_life)
        assert report.evaporation == pytest.approx(expected, rel=1e-9, abs=0.0)
        assert report.age == pytest.approx(dt, abs=1e-12)
        assert report.trust == pytest.approx(0.8 * expected, rel=1e-9, abs=0.0)


def test_expired_readings_are_never_used() -> None:
    flt = ConsensusFilter(FilterConfig(min_sources=1))
    flt.update(1, 1.0, 1.0, 0.0, ttl=2.0)
    flt.update(2, 3.0, 1.0, 0.0, half_life=1.0)  # expires after 10 half-lives
    assert flt.estimate(1.0).sources_used == 2
    estimate = flt.estimate(5.0)
    assert estimate.ok and estimate.value == 3.0 and estimate.sources_used == 1
    assert [r.symbol for r in estimate.sources] == ["?", "*"]
    assert [r.reason for r in estimate.sources] == ["expired", "best"]
    stale = flt.estimate(10.0)
    assert stale.state == "stale" and stale.value is None and stale.sources_total == 2


def test_sigma_grows_while_no_fresh_reading_arrives() -> None:
    flt = ConsensusFilter(FilterConfig(), Reputation())
    for i, x in enumerate([0.1, -0.2, 0.05, 0.3, -0.1]):
        flt.update(i, x, 1.0, 0.0, sigma=0.5, half_life=2.0)
    sigmas = []
    for now in [0.0, 1.0, 2.0, 4.0, 8.0]:
        estimate = flt.estimate(now)
        assert estimate.ok
        sigmas.append(estimate.sigma)
    assert sigmas == sorted(sigmas) and len(set(sigmas)) == len(sigmas)
    # Every reading evaporated equally: the value holds, its variance doubles per half-life.
    assert sigmas[2] == pytest.approx(sigmas[0] * math.sqrt(2.0), rel=1e-12)
