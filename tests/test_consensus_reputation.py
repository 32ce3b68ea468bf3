"""Reputation: trust earned slowly by agreeing, lost fast by lying, never by loss.

The targets, each a test:

* an honest source (agreeing 95 % of the time) reaches >= 0.85 within 50 rounds;
* a persistent liar falls from full trust to <= 0.1 within 10 rounds;
* an on-off liar (one round in five) stays <= 0.5;
* a slow drift of 0.05 sigma per round (n = 7) moves the consensus by <= 1 sigma
  over 1000 rounds, and is flagged within 100 rounds;
* 10 fresh identities together hold <= 25 % of the weight for their first 50 rounds;
* missing readings never lower a reputation; no source vouches for itself.
"""

from __future__ import annotations

import random

import pytest

from cloudkernel.consensus import (
    ConsensusError,
    ConsensusFilter,
    FilterConfig,
    Reputation,
    ReputationConfig,
)


def test_honest_source_reaches_085_within_50_rounds() -> None:
    rng = random.Random("honest")
    reached = []
    for _ in range(200):
        rep = Reputation()
        history = []
        for _round in range(50):
            rep.record(1, rng.random() >= 0.05)
            history.append(rep.value(1))
        reached.append(max(history) >= 0.85)
    # A run of early disagreements can delay it; nearly every honest source gets there.
    assert sum(reached) / len(reached) >= 0.95
    rep = Reputation()
    for round_ in range(50):
        rep.record(1, round_ % 20 != 10)  # exactly 95 %: disagreeing at rounds 10 and 30
    assert rep.value(1) >= 0.85


def test_persistent_liar_falls_to_01_within_10_rounds() -> None:
    rep = Reputation()
    for _ in range(200):
        rep.record(1, True)
    assert rep.value(1) >= 0.95
    for _ in range(10):
        rep.record(1, False)
    assert rep.value(1) <= 0.1
    assert rep.flagged(1)


@pytest.mark.parametrize("phase", range(5))
def test_on_off_liar_stays_at_most_05(phase: int) -> None:
    rep = Reputation()
    history = []
    for round_ in range(400):
        rep.record(1, round_ % 5 != phase)
        history.append(rep.value(1))
    # From its first lie on, whichever round of five it lies in.
    assert max(history[phase:]) <= 0.5


def test_liar_through_the_filter_is_distrusted_then_ignored() -> None:
    rng = random.Random("liar")
    rep = Reputation()
    flt = ConsensusFilter(FilterConfig(), rep)
    for round_ in range(100):
        now = float(round_)
        for source in range(7):
            lie = 20.0 if source == 6 and round_ >= 50 else 0.0
            flt.update(source, rng.gauss(0.0, 1.0) + lie, 1.0, now)
        estimate = flt.estimate(now)
        assert estimate.ok
        if round_ == 49:
            assert rep.value(6) >= 0.85
        if round_ == 59:
            assert rep.value(6) <= 0.1
    assert estimate.sources[6].symbol == "~" and estimate.sources[6].reason == "distrusted"
    assert rep.statistics().disagreements >= 50


def test_slow_drift_is_flagged_and_barely_moves_the_consensus() -> None:
    rng = random.Random("drift")
    # The consensus moved: the drifting topic against the same six honest
    # readings without the drifting source at all.
    rep_drift, rep_clean = Reputation(), Reputation()
    drifting = ConsensusFilter(FilterConfig(), rep_drift)
    clean = ConsensusFilter(FilterConfig(), rep_clean)
    flagged_at = None
    worst = 0.0
    for round_ in range(1000):
        now = float(round_)
        for source in range(7):
            x = rng.gauss(0.0, 1.0)
            if source < 6:
                clean.update(source, x, 1.0, now, sigma=1.0)
            drifting.update(
                source, x + (0.05 * round_ if source == 6 else 0.0), 1.0, now, sigma=1.0
            )
        a, b = drifting.estimate(now), clean.estimate(now)
        assert a.ok and b.ok
        assert isinstance(a.value, float) and isinstance(b.value, float)
        worst = max(worst, abs(a.value - b.value))
        if flagged_at is None and rep_drift.flagged(6):
            flagged_at = round_
    assert worst <= 1.0, worst
    assert flagged_at is not None and flagged_at < 100
    assert rep_drift.flagged(6)
    assert not any(rep_drift.flagged(source) for source in range(6))


def test_fresh_identities_hold_at_most_a_quarter_for_50_rounds() -> None:
    rng = random.Random("sybil")
    rep = Reputation()
    flt = ConsensusFilter(FilterConfig(), rep)
    for round_ in range(150):
        now = float(round_)
        for source in range(7):
            flt.update(source, rng.gauss(0.0, 1.0), 0.8, now)
        if round_ >= 100:
            # Ten fresh identities, agreeing (the case where they would earn the most).
            for sybil in range(1000, 1010):
                flt.update(sybil, rng.gauss(0.0, 1.0), 1.0, now, sigma=0.2)
        estimate = flt.estimate(now)
        assert estimate.ok
        if round_ >= 100:
            share = sum(r.weight for r in estimate.sources if r.source >= 1000)
            assert share <= 0.25, (round_, share)
    assert all(rep.rounds(sybil) == 50 for sybil in range(1000, 1010))


def test_missing_readings_never_lower_reputation() -> None:
    rng = random.Random("loss")
    rep = Reputation()
    flt = ConsensusFilter(FilterConfig(), rep)
    for round_ in range(40):
        now = float(round_)
        for source in range(5):
            if source == 4 and round_ % 3:
                continue  # lost on the way: no reading at all
            flt.update(source, rng.gauss(0.0, 0.1), 1.0, now)
        flt.estimate(now)
        flt.estimate(now + 0.5)  # estimating again judges nothing twice
    assert rep.rounds(4) == 14
    assert rep.value(4) >= 0.85
    assert rep.statistics().disagreements == 0


def test_no_source_vouches_for_itself() -> None:
    # Two sources far apart with three in between: each is judged by the others only.
    rep = Reputation()
    flt = ConsensusFilter(FilterConfig(), rep)
    for source, x in enumerate([0.0, 0.1, -0.1, 0.05, 50.0]):
        flt.update(source, x, 1.0, 0.0, sigma=0.1)
    assert flt.estimate(0.0).ok
    assert rep.value(4) < 0.5 and all(rep.value(s) > 0.5 for s in range(4))


def test_reputation_table_is_bounded() -> None:
    rep = Reputation(ReputationConfig(max_sources=8))
    for source in range(20):
        rep.record(source, True)
    stats = rep.statistics()
    assert stats.sources == 8 and stats.evicted == 12 and stats.judgments == 20
    assert rep.rounds(0) == 0 and rep.rounds(19) == 1


def test_link_quality_scales_the_weight() -> None:
    rep = Reputation()
    rep.set_link_quality(3, 0.25)
    flt = ConsensusFilter(FilterConfig(), rep)
    for source in range(5):
        flt.update(source, 1.0, 1.0, 0.0)
    reports = flt.estimate(0.0).sources
    assert reports[3].link_quality == 0.25
    assert reports[3].trust == pytest.approx(0.25 * reports[0].trust)
    with pytest.raises(ConsensusError, match="link quality"):
        rep.set_link_quality(3, 0.0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("forgetting", 1.0),
        ("disagreement_forgetting", -0.1),
        ("disagreement_weight", 0.0),
        ("prior_agree", float("nan")),
        ("probation_rounds", -1),
        ("flag_below", 1.5),
        ("max_sources", 0),
    ],
)
def test_bad_reputation_settings_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ConsensusError, match=field):
        ReputationConfig(**{field: value})  # type: ignore[arg-type]
