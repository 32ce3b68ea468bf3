"""Per-source statistics across readings (cloudkernel.sourcestats) against a real filter."""

from __future__ import annotations

import math
import random

import pytest

from cloudkernel.consensus import ConsensusFilter, FilterConfig, Reputation
from cloudkernel.sourcestats import SourceStats

HONEST = (1, 2, 3, 4, 5)
LIAR = 9


def swarm(
    rounds: int,
    stats: SourceStats,
    *,
    liar_offset: float = 50.0,
    drift: float = 0.0,
    seed: int = 1,
    topic: str = "t",
) -> ConsensusFilter:
    """``rounds`` seconds of 5 honest sources around 20.0 and one liar; sampled each second."""
    rng = random.Random(seed)
    filt = ConsensusFilter(FilterConfig(kind="scalar"), Reputation())
    for n in range(rounds):
        now = float(n)
        for source in HONEST:
            filt.update(source, 20.0 + rng.gauss(0, 0.1), 1.0, now, sigma=0.1)
        filt.update(LIAR, 20.0 + liar_offset + drift * n, 1.0, now, sigma=0.1)
        stats.record(topic, "scalar", filt.estimate(now + 0.5), now + 0.5)
    return filt


def test_honest_sources_sit_near_zero_and_the_liar_at_its_offset() -> None:
    stats = SourceStats()
    swarm(20, stats)
    rows = {row.source: row for row in stats.rows(19.5)}
    assert set(rows) == {*HONEST, LIAR}
    for source in HONEST:
        row = rows[source]
        assert row.samples == 20 and row.span == pytest.approx(19.0)
        assert row.last == pytest.approx(0.5)
        assert abs(row.offset) < 0.1 and 0.03 < row.stddev < 0.3
        assert row.sigma == pytest.approx(0.1, rel=0.2)
        assert row.used > 0.5 and row.reputation > 0.8
        assert row.topic == "t" and row.kind == "scalar"
    liar = rows[LIAR]
    assert liar.offset == pytest.approx(50.0, abs=0.2)
    assert liar.used == 0.0 and liar.reputation < 0.1


def test_a_reading_is_sampled_once_and_a_topic_once_per_interval() -> None:
    stats = SourceStats(interval=1.0)
    filt = ConsensusFilter(FilterConfig(kind="scalar"), Reputation())
    for source in HONEST:
        filt.update(source, 20.0, 1.0, 0.0, sigma=0.1)
    assert stats.record("t", "scalar", filt.estimate(0.1), 0.1) == 5
    assert not stats.due("t", 0.9)
    assert stats.record("t", "scalar", filt.estimate(0.9), 0.9) == 0  # not due
    assert stats.due("t", 1.1) and stats.due("other", 0.9)
    # due, but no reading is new
    assert stats.record("t", "scalar", filt.estimate(1.1), 1.1) == 0
    filt.update(1, 20.1, 1.0, 1.5, sigma=0.1)
    assert stats.record("t", "scalar", filt.estimate(2.2), 2.2) == 1
    rows = {row.source: row for row in stats.rows(2.2)}
    assert rows[1].samples == 2 and rows[2].samples == 1
    assert math.isnan(rows[2].stddev) and rows[2].span == 0.0
    assert stats.statistics().samples == 6


def test_no_consensus_adds_nothing() -> None:
    stats = SourceStats()
    filt = ConsensusFilter(FilterConfig(kind="scalar"), Reputation())
    filt.update(1, 20.0, 1.0, 0.0)
    filt.update(2, 20.0, 1.0, 0.0)
    estimate = filt.estimate(0.0)
    assert not estimate.ok
    assert stats.record("t", "scalar", estimate, 0.0) == 0
    assert stats.rows(0.0) == []


def test_samples_and_entries_are_bounded() -> None:
    stats = SourceStats(max_samples=8, max_entries=7)
    swarm(30, stats)
    rows = stats.rows(29.5)
    assert len(rows) == 6
    assert all(row.samples == 8 for row in rows)
    # the ring keeps the newest 8: readings 22..29
    assert all(row.span == pytest.approx(7.0) and row.last == pytest.approx(0.5) for row in rows)
    swarm(3, stats, topic="u")
    assert stats.statistics().entries == 7
    assert stats.statistics().evicted == 5
    assert {row.topic for row in stats.rows(2.5, ["u"])} == {"u"}
    stats.forget("u")
    assert stats.rows(2.5, ["u"]) == [] and stats.statistics().entries == 1


def test_topics_without_samples_are_not_held_forever() -> None:
    stats = SourceStats(max_entries=10)
    filt = ConsensusFilter(FilterConfig(kind="scalar"), Reputation())
    filt.update(1, 20.0, 1.0, 0.0)
    lonely = filt.estimate(0.0)  # no consensus: no samples
    for n in range(1000):
        stats.record(f"t{n}", "scalar", lonely, 0.0)
        assert stats.statistics().topics <= 11
    assert stats.statistics().entries == 0


def test_runs_show_a_drift_against_the_swarm() -> None:
    stats = SourceStats()
    # a liar drifting steadily: its offsets cross their own mean once
    swarm(30, stats, liar_offset=10.0, drift=0.5)
    rows = {row.source: row for row in stats.rows(29.5)}
    assert rows[LIAR].runs == 2
    # honest noise crosses its mean often
    assert min(rows[s].runs for s in HONEST) >= 6


def test_settings_are_checked() -> None:
    for kwargs in ({"interval": 0.0}, {"max_samples": 1}, {"max_entries": 0}):
        with pytest.raises(ValueError):
            SourceStats(**kwargs)
