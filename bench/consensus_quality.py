"""Print the consensus filter's quality figures: the numbers its tests bound.

Not a speed benchmark: efficiency against the inverse-variance oracle,
calibration of the 95 % interval with and without liars, the honest-range
check under attack, and the reputation targets, all from fixed seeds. The
tests (tests/test_consensus_*.py) assert the bounds; this prints where the
figures actually land, for the README and release notes.

    python bench/consensus_quality.py [--trials N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from consensus_scenarios import ATTACKS, clean_coverage, efficiency_ratio, run_attack

from cloudkernel.consensus import (
    IMPLEMENTATION,
    ConsensusFilter,
    FilterConfig,
    Reputation,
)


def under_attack(n: int, trials: int, fault_model: str) -> dict[str, Any]:
    liars = (n - 1) // 3 if fault_model == "byzantine" else (n - 1) // 2
    rng = random.Random(f"quality-{n}-{fault_model}")
    answered: Counter[str] = Counter()
    covered: Counter[str] = Counter()
    outside = 0
    for trial in range(trials):
        attack = ATTACKS[trial % len(ATTACKS)]
        result = run_attack(n, liars, attack, rng, fault_model)
        estimate = result.estimate
        if not estimate.ok or estimate.interval is None:
            continue
        assert isinstance(estimate.value, float)
        answered[attack] += 1
        covered[attack] += estimate.interval[0] <= 0.0 <= estimate.interval[1]
        outside += not result.honest_low <= estimate.value <= result.honest_high
    total = sum(answered.values())
    return {
        "liars": liars,
        "outside_honest_range": outside,
        "answered": total / trials,
        "coverage": sum(covered.values()) / total,
        "coverage_by_attack": {a: covered[a] / answered[a] for a in ATTACKS if answered[a]},
    }


def reputation_figures() -> dict[str, Any]:
    out: dict[str, Any] = {}
    rep = Reputation()
    for round_ in range(50):
        rep.record(1, round_ % 20 != 10)
    out["honest_95pct_after_50_rounds"] = rep.value(1)
    rep = Reputation()
    for _ in range(200):
        rep.record(1, True)
    rounds = 0
    while rep.value(1) > 0.1:
        rep.record(1, False)
        rounds += 1
    out["liar_rounds_to_0.1_from_full_trust"] = rounds
    worst = 0.0
    for phase in range(5):
        rep = Reputation()
        for round_ in range(400):
            rep.record(1, round_ % 5 != phase)
            if round_ >= phase:
                worst = max(worst, rep.value(1))
    out["on_off_liar_max"] = worst
    rng = random.Random("drift")
    drift_rep = Reputation()
    drifting = ConsensusFilter(FilterConfig(), drift_rep)
    clean = ConsensusFilter(FilterConfig(), Reputation())
    shift = 0.0
    flagged = None
    for round_ in range(1000):
        now = float(round_)
        for source in range(7):
            x = rng.gauss(0.0, 1.0)
            if source < 6:
                clean.update(source, x, 1.0, now, sigma=1.0)
            drifted = x + 0.05 * round_ if source == 6 else x
            drifting.update(source, drifted, 1.0, now, sigma=1.0)
        a, b = drifting.estimate(now), clean.estimate(now)
        if a.ok and b.ok:
            assert isinstance(a.value, float) and isinstance(b.value, float)
            shift = max(shift, abs(a.value - b.value))
        if flagged is None and drift_rep.flagged(6):
            flagged = round_
    out["drift_max_shift_sigma"] = shift
    out["drift_flagged_at_round"] = flagged
    rng = random.Random("sybil")
    flt = ConsensusFilter(FilterConfig(), Reputation())
    share = 0.0
    for round_ in range(150):
        now = float(round_)
        for source in range(7):
            flt.update(source, rng.gauss(0.0, 1.0), 0.8, now)
        if round_ >= 100:
            for sybil in range(1000, 1010):
                flt.update(sybil, rng.gauss(0.0, 1.0), 1.0, now, sigma=0.2)
        estimate = flt.estimate(now)
        if round_ >= 100:
            share = max(share, sum(r.weight for r in estimate.sources if r.source >= 1000))
    out["ten_fresh_identities_max_share"] = share
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20_000, help="trials per figure")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    trials = max(60, args.trials)
    doc: dict[str, Any] = {"implementation": IMPLEMENTATION, "trials": trials}
    print(f"consensus filter: {IMPLEMENTATION}; {trials} trials per figure")

    print("\nRMSE / oracle inverse-variance mean (no liars; 10 % outliers at 20 sigma):")
    doc["efficiency"] = {}
    for n in (3, 4, 5, 6, 7, 10, 31):
        clean, _ = efficiency_ratio(n, 0.0, trials, f"efficiency-{n}")
        row = {"clean": clean}
        line = f"  n={n:>2}: {clean:.3f}"
        if n >= 10:
            row["outliers"], _ = efficiency_ratio(n, 0.1, trials, f"outliers-{n}")
            line += f"   with outliers {row['outliers']:.3f}"
        doc["efficiency"][n] = row
        print(line)

    print("\n95 % interval coverage without liars:")
    doc["coverage_clean"] = {}
    for n in (4, 7, 10, 31):
        doc["coverage_clean"][n], _ = clean_coverage(n, trials, f"calibration-{n}")
        print(f"  n={n:>2}: {doc['coverage_clean'][n]:.2%}")

    print("\nUnder attack (six attacks in turn; f liars):")
    doc["attack"] = {}
    for fault_model in ("byzantine", "consistent"):
        for n in (4, 7, 10, 31):
            attacked = under_attack(n, trials, fault_model)
            doc["attack"][f"{fault_model}-{n}"] = attacked
            by_attack = ", ".join(f"{a} {c:.1%}" for a, c in attacked["coverage_by_attack"].items())
            print(
                f"  {fault_model:<10} n={n:>2} f={attacked['liars']:>2}: outside honest range "
                f"{attacked['outside_honest_range']}, answered {attacked['answered']:.1%}, "
                f"coverage {attacked['coverage']:.1%} ({by_attack})"
            )

    print("\nReputation:")
    doc["reputation"] = reputation_figures()
    for key, value in doc["reputation"].items():
        print(f"  {key}: {value:.3f}" if isinstance(value, float) else f"  {key}: {value}")
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
