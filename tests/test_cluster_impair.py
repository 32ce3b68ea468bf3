"""The cluster switch's impairment model (cloudkernel.cluster.impair): pure, no root.

Rate checks use bounds of 5 standard deviations: with a fixed seed they are
deterministic, and any other seed passes them too but for a ~1e-6 chance.
"""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from cloudkernel.cluster.impair import Copy, Impairment, ImpairmentError, LinkState


def link(seed: int = 1, **settings: Any) -> LinkState:
    return LinkState(Impairment.from_dict(settings), random.Random(seed))


def run(state: LinkState, frames: int, spacing: float = 0.001) -> list[list[Copy]]:
    return [state.decide(n * spacing) for n in range(frames)]


def within_binomial(count: int, trials: int, p: float, sigmas: float = 5.0) -> bool:
    return abs(count - trials * p) <= sigmas * math.sqrt(trials * p * (1 - p))


def test_defaults_are_no_impairment() -> None:
    state = link()
    rng_state = state.rng.getstate()
    for n in range(1000):
        assert state.decide(n * 0.5) == [Copy(n * 0.5, False)]
    assert state.rng.getstate() == rng_state  # a clear link draws nothing
    assert state.counters.as_dict() == {
        "frames_in": 1000,
        "dropped_iid": 0,
        "dropped_burst": 0,
        "corrupted": 0,
        "duplicated": 0,
        "reordered": 0,
        "delayed": 0,
        "forwarded": 1000,
    }
    assert Impairment().is_clear and Impairment.from_dict({}).is_clear


FULL = {
    "loss": 0.1,
    "burst_loss": 0.05,
    "burst_length": 3,
    "corrupt": 0.2,
    "corrupt_bytes": 2,
    "duplicate": 0.1,
    "reorder": 0.1,
    "reorder_ms": 4,
    "delay_ms": 5,
    "jitter_ms": 2,
}


def test_same_seed_same_decisions() -> None:
    first, second, other = link(7, **FULL), link(7, **FULL), link(8, **FULL)
    assert run(first, 10_000) == run(second, 10_000)
    assert first.counters == second.counters
    assert run(other, 10_000) != run(link(7, **FULL), 10_000)


def test_iid_loss_rate() -> None:
    frames = 100_000
    state = link(loss=0.1)
    delivered = sum(len(copies) for copies in run(state, frames))
    assert state.counters.dropped_iid + delivered == frames
    assert within_binomial(state.counters.dropped_iid, frames, 0.1)
    assert state.counters.forwarded == delivered


@pytest.mark.parametrize(("mean_loss", "burst_length"), [(0.2, 4.0), (0.05, 10.0), (0.3, 1.0)])
def test_gilbert_elliott_mean_loss_and_burst_length(mean_loss: float, burst_length: float) -> None:
    frames = 200_000
    state = link(3, burst_loss=mean_loss, burst_length=burst_length)
    lost = [not copies for copies in run(state, frames)]
    bursts = [len(run_) for run_ in "".join("x" if x else " " for x in lost).split()]
    loss_rate = sum(lost) / frames
    # Loss in bursts is correlated: the count's variance is that of a binomial
    # times (1 + r) / (1 - r), r = 1 - p_good_to_bad - p_bad_to_good.
    imp = state.impairment
    r = 1 - imp.p_good_to_bad - imp.p_bad_to_good
    sigma = math.sqrt(mean_loss * (1 - mean_loss) / frames * (1 + r) / (1 - r))
    assert abs(loss_rate - mean_loss) <= 5 * sigma
    # burst lengths are geometric with mean L: standard deviation sqrt(L (L - 1))
    mean_burst = sum(bursts) / len(bursts)
    assert abs(mean_burst - burst_length) <= 5 * math.sqrt(
        burst_length * (burst_length - 1) / len(bursts) + 1e-12
    )
    assert state.counters.dropped_burst == sum(lost)


def test_gilbert_elliott_formulas() -> None:
    imp = Impairment.from_dict({"burst_loss": 0.2, "burst_length": 4})
    assert imp.p_bad_to_good == pytest.approx(0.25)
    assert imp.p_good_to_bad == pytest.approx(0.2 / (4 * 0.8))
    stationary = imp.p_good_to_bad / (imp.p_good_to_bad + imp.p_bad_to_good)
    assert stationary == pytest.approx(0.2)
    # the largest loss bursts of one frame allow: every other frame
    assert Impairment.from_dict({"burst_loss": 0.5, "burst_length": 1}).p_good_to_bad == 1.0


def test_delay_and_jitter_range() -> None:
    state = link(delay_ms=10, jitter_ms=5)
    delays = [copies[0].due - n for n, copies in enumerate(run(state, 20_000, spacing=1.0))]
    assert min(delays) >= 0.005 and max(delays) <= 0.015
    assert min(delays) < 0.0052 and max(delays) > 0.0148  # uniform: it reaches both ends
    assert sum(delays) / len(delays) == pytest.approx(0.010, abs=0.0002)
    assert state.counters.delayed == 20_000


def test_jitter_keeps_order() -> None:
    state = link(delay_ms=10, jitter_ms=10)
    dues = [copies[0].due for copies in run(state, 5000, spacing=0.0001)]
    assert dues == sorted(dues)
    assert len(set(dues)) < len(dues)  # some frames were held to keep their place


def test_reorder_lets_later_frames_overtake() -> None:
    frames = 20_000
    state = link(reorder=0.25, reorder_ms=5)
    dues = [copies[0].due for copies in run(state, frames, spacing=0.001)]
    held = [n for n, due in enumerate(dues) if due > n * 0.001 + 1e-9]
    assert len(held) == state.counters.reordered
    assert within_binomial(len(held), frames, 0.25)
    held_set = set(held)
    for n in held[:100]:
        assert dues[n] == pytest.approx(n * 0.001 + 0.005)
        if n + 1 not in held_set:
            assert dues[n + 1] < dues[n]  # the next frame goes first


def test_duplicate_and_corrupt_rates() -> None:
    frames = 50_000
    state = link(duplicate=0.3, corrupt=0.4)
    decisions = run(state, frames)
    doubled = sum(len(copies) == 2 for copies in decisions)
    corrupted = sum(copy.corrupt for copies in decisions for copy in copies)
    copies = sum(len(copies) for copies in decisions)
    assert doubled == state.counters.duplicated and within_binomial(doubled, frames, 0.3)
    assert corrupted == state.counters.corrupted and within_binomial(corrupted, copies, 0.4)
    assert state.counters.forwarded == copies
    assert all(copies[0].due == copies[-1].due for copies in decisions)


def test_total_loss_and_reconfigure_keeps_counters() -> None:
    state = link(loss=1.0)
    assert all(not copies for copies in run(state, 100))
    state.reconfigure(Impairment())
    assert all(len(copies) == 1 for copies in run(state, 100))
    assert state.counters.frames_in == 200 and state.counters.dropped_iid == 100


def test_to_dict_round_trip() -> None:
    imp = Impairment.from_dict(FULL)
    assert Impairment.from_dict(imp.to_dict()) == imp
    assert Impairment().to_dict() == {}
    assert Impairment.from_dict({"corrupt_bytes": 3.0}).corrupt_bytes == 3


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"los": 0.1}, ["unknown", "'los'", "known: loss"]),
        ({"loss": 1.5}, ["loss=1.5", "[0.0, 1.0]"]),
        ({"loss": -0.1}, ["loss=-0.1", "out of range"]),
        ({"loss": "0.1"}, ["loss='0.1'", "must be a number"]),
        ({"loss": True}, ["loss=True", "must be a number"]),
        ({"loss": math.nan}, ["loss=nan"]),
        ({"burst_loss": 1.0}, ["burst_loss=1.0", "1 (exclusive)"]),
        ({"burst_length": 0.5}, ["burst_length=0.5", "[1.0,"]),
        ({"burst_loss": 0.6, "burst_length": 1}, ["burst_loss=0.6", "at most", "0.5"]),
        ({"corrupt": 2}, ["corrupt=2"]),
        ({"corrupt_bytes": 0}, ["corrupt_bytes=0", "[1, 9000]"]),
        ({"corrupt_bytes": 1.5}, ["corrupt_bytes=1.5", "integer"]),
        ({"duplicate": -1}, ["duplicate=-1"]),
        ({"reorder": 1.01}, ["reorder=1.01"]),
        ({"reorder_ms": -5}, ["reorder_ms=-5"]),
        ({"delay_ms": 1e9}, ["delay_ms=1000000000.0", "60000"]),
        ({"jitter_ms": -1}, ["jitter_ms=-1"]),
        ({"jitter_ms": 5, "delay_ms": 2}, ["jitter_ms=5", "delay_ms=2", "negative"]),
        ([0.1], ["JSON object"]),
    ],
)
def test_config_errors_name_field_value_and_range(settings: Any, words: list[str]) -> None:
    with pytest.raises(ImpairmentError) as caught:
        Impairment.from_dict(settings)
    for word in words:
        assert word in str(caught.value)
    assert isinstance(caught.value, ValueError)
