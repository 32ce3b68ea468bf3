"""Seeded scenarios for the consensus tests: honest readings and the liars' attacks.

Honest sources read the truth (0.0) with Gaussian noise of their own sigma
(log-uniform in [0.5, 2]) and report that sigma and a confidence in [0.5, 1].
Liars report whatever the attack says, at full confidence and, where it
helps them, a tiny sigma (so the inverse-variance combine would follow them
if they survived).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from cloudkernel.consensus import ConsensusFilter, Estimate, FilterConfig, Reputation

#: Gate used by the attack scenarios: readings outside [-GATE, GATE] are dropped.
GATE = 1000.0

ATTACKS = ("extreme", "non-finite", "gate", "split", "boundary", "mimic-then-jump")


@dataclass
class Trial:
    estimate: Estimate
    honest_low: float
    honest_high: float
    attack: str


def honest_sigmas(rng: random.Random, n: int) -> list[float]:
    return [math.exp(rng.uniform(math.log(0.5), math.log(2.0))) for _ in range(n)]


def run_attack(
    n: int, liars: int, attack: str, rng: random.Random, fault_model: str = "byzantine"
) -> Trial:
    """One topic with ``n - liars`` honest sources and ``liars`` liars, after the attack."""
    config = FilterConfig(lower=-GATE, upper=GATE, fault_model=fault_model)
    reputation = Reputation()
    flt = ConsensusFilter(config, reputation)
    honest = n - liars
    sigmas = honest_sigmas(rng, honest)
    confidences = [rng.uniform(0.5, 1.0) for _ in range(honest)]
    liar_ids = range(honest, n)
    rounds = 3 if attack == "mimic-then-jump" else 1
    values: list[float] = []
    for round_ in range(rounds):
        now = float(round_)
        values = [rng.gauss(0.0, s) for s in sigmas]
        for i, x in enumerate(values):
            flt.update(i, x, confidences[i], now, sigma=sigmas[i])
        low, high = min(values), max(values)
        for j, source in enumerate(liar_ids):
            if attack == "extreme":
                lie, sigma = GATE, 1e-6
            elif attack == "non-finite":
                lie, sigma = (math.nan, math.inf, -math.inf)[j % 3], 1.0
            elif attack == "gate":
                lie, sigma = math.nextafter(GATE, 0.0) * (1 if j % 2 else -1), 0.01
            elif attack == "split":
                spread = 10.0 * (high - low + 1.0)
                lie, sigma = (spread if j % 2 else -spread), 0.01
            elif attack == "boundary":
                # All together just past the highest honest reading.
                lie, sigma = math.nextafter(high, math.inf), 1e-6
            else:  # mimic-then-jump: blend in, earn trust, then jump past the honest range
                if round_ < rounds - 1:
                    lie, sigma = rng.gauss(0.0, 0.5), 0.5
                else:
                    lie, sigma = high + 0.5 * (high - low) + 1e-3, 1e-6
            flt.update(source, lie, 1.0, now, sigma=sigma)
        estimate = flt.estimate(now)
    return Trial(estimate, min(values), max(values), attack)


def efficiency_ratio(n: int, outlier_share: float, trials: int, seed: str) -> tuple[float, int]:
    """RMSE of the filter over that of the clean oracle, and the trials without a value.

    The oracle is the inverse-variance weighted mean of the clean readings
    (it knows the true sigmas and that nobody lies); the filter gets the same
    readings with ``outlier_share`` of them replaced by outliers at 20 sigma.
    """
    rng = random.Random(seed)
    ours = oracle = 0.0
    missing = 0
    for _ in range(trials):
        sigmas = honest_sigmas(rng, n)
        readings = [rng.gauss(0.0, s) for s in sigmas]
        num = den = 0.0
        for x, s in zip(readings, sigmas, strict=True):
            num += x / (s * s)
            den += 1.0 / (s * s)
        oracle += (num / den) ** 2
        flt = ConsensusFilter(FilterConfig())
        outliers = round(outlier_share * n)
        for i, (x, s) in enumerate(zip(readings, sigmas, strict=True)):
            reading = rng.choice((-20.0, 20.0)) * s if i < outliers else x
            flt.update(i, reading, 1.0, 0.0, sigma=s)
        estimate = flt.estimate(0.0)
        if not estimate.ok:
            missing += 1
            continue
        assert isinstance(estimate.value, float)
        ours += estimate.value**2
    return math.sqrt(ours / (trials - missing)) / math.sqrt(oracle / trials), missing


def clean_coverage(n: int, trials: int, seed: str) -> tuple[float, int]:
    """Share of answered trials without liars whose 95 % interval covers the truth, and answers."""
    rng = random.Random(seed)
    covered = answered = 0
    for _ in range(trials):
        flt = ConsensusFilter(FilterConfig())
        for i, s in enumerate(honest_sigmas(rng, n)):
            flt.update(i, rng.gauss(0.0, s), rng.uniform(0.5, 1.0), 0.0, sigma=s)
        estimate = flt.estimate(0.0)
        if estimate.ok and estimate.interval is not None:
            answered += 1
            covered += estimate.interval[0] <= 0.0 <= estimate.interval[1]
    return covered / answered, answered
