"""ConsensusFilter behaviour: states, kinds, drops, bounds, breakdown, order independence."""

from __future__ import annotations

import math
import random
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudkernel.consensus import (
    DROP_REASONS,
    ConsensusError,
    ConsensusFilter,
    Estimate,
    FilterConfig,
    Reputation,
)


def bits(estimate: Estimate) -> tuple[Any, ...]:
    """The estimate with every float as its bit pattern, so equality is bit equality."""

    def conv(x: Any) -> Any:
        if isinstance(x, float):
            return struct.pack("<d", x)
        if isinstance(x, tuple):
            return tuple(conv(v) for v in x)
        return x

    return tuple(conv(field) for field in estimate)


def test_no_sources_then_too_few_then_ok() -> None:
    flt = ConsensusFilter(FilterConfig())
    empty = flt.estimate(0.0)
    assert (empty.state, empty.reason, empty.value, empty.sources_total) == (
        "no-consensus",
        "no-sources",
        None,
        0,
    )
    flt.update(1, 1.0, 1.0, 0.0)
    flt.update(2, 1.1, 1.0, 0.0)
    few = flt.estimate(0.0)
    assert (few.state, few.reason, few.value) == ("no-consensus", "too-few-sources", None)
    assert [r.symbol for r in few.sources] == ["?", "?"]
    flt.update(3, 0.9, 1.0, 0.0)
    ok = flt.estimate(0.0)
    assert ok.state == "ok" and ok.reason == "" and ok.value == pytest.approx(1.0)
    assert ok.interval is not None and ok.interval[0] < 1.0 < ok.interval[1]
    assert ok.sources_used == 3 and ok.sources_rejected == 0
    assert 0 < ok.confidence <= 1


def test_no_majority_means_no_value() -> None:
    # Two camps of equal weight, far apart: no point is covered by a majority.
    flt = ConsensusFilter(FilterConfig(min_sources=2))
    for source, x in enumerate([0.0, 0.1, 0.2, 10.0, 10.1, 10.2]):
        flt.update(source, x, 1.0, 0.0, sigma=0.1)
    estimate = flt.estimate(0.0)
    assert (
        estimate.state == "no-consensus"
        and estimate.reason == "no-majority"
        and estimate.value is None
    )
    # One more reading on one side makes it a majority; the other camp are falsetickers.
    flt.update(6, 0.05, 1.0, 0.0, sigma=0.1)
    estimate = flt.estimate(0.0)
    assert estimate.ok and isinstance(estimate.value, float) and 0.0 <= estimate.value <= 0.2
    assert [r.symbol for r in estimate.sources][3:6] == ["x", "x", "x"]
    assert estimate.sources_rejected == 3


def test_outliers_inside_the_majority_are_rejected_by_mad() -> None:
    # Wide agreement intervals: source 6's (2.5 +- 10 * 0.3) covers the crowd,
    # so it is selected, but it lies 8 of its own sigmas from the median.
    flt = ConsensusFilter(FilterConfig(agree_sigmas=10.0))
    for source, x in enumerate([0.0, 0.01, -0.01, 0.02, -0.02, 0.0, 2.5]):
        flt.update(source, x, 1.0, 0.0, sigma=0.3 if source == 6 else 0.01)
    estimate = flt.estimate(0.0)
    assert estimate.sources[6].symbol == "-" and estimate.sources[6].reason == "outlier"
    assert estimate.sources_used == 6 and estimate.sources_rejected == 1


def test_drops_are_counted_by_reason_and_never_stored() -> None:
    flt = ConsensusFilter(FilterConfig(lower=-10.0, upper=10.0))
    cases: list[tuple[dict[str, Any], str]] = [
        ({"value": math.nan}, "non-finite"),
        ({"value": 11.0}, "out-of-range"),
        ({"value": "1.0"}, "bad-shape"),
        ({"value": (1.0,)}, "bad-shape"),
        ({"value": True}, "bad-shape"),
        ({"confidence": 0.0}, "bad-confidence"),
        ({"confidence": 1.5}, "bad-confidence"),
        ({"confidence": math.nan}, "bad-confidence"),
        ({"sigma": 0.0}, "bad-sigma"),
        ({"sigma": -1.0}, "bad-sigma"),
        ({"sigma": math.inf}, "bad-sigma"),
        ({"half_life": 0.0}, "bad-lifetime"),
        ({"ttl": -1.0}, "bad-lifetime"),
        ({"ttl": math.nan}, "bad-lifetime"),
        ({"value": 10**400}, "out-of-range"),  # beyond any float: never an OverflowError
        ({"value": 1e-300}, "accepted"),
        ({"confidence": 1e-9}, "bad-confidence"),
        ({"sigma": 1e-60}, "bad-sigma"),  # sigma^2 would round to 0
        ({"sigma": 1e60}, "bad-sigma"),
    ]
    for overrides, reason in cases:
        args: dict[str, Any] = {"value": 1.0, "confidence": 1.0, **overrides}
        assert flt.update(5, args.pop("value"), args.pop("confidence"), 0.0, **args) == reason, (
            overrides
        )
    stats = flt.statistics()
    assert stats.accepted == 1 and stats.updates == len(cases)
    assert sum(stats.dropped.values()) == len(cases) - 1
    assert set(stats.dropped) == set(DROP_REASONS)
    assert flt.estimate(0.0).sources_total == 1


def test_an_older_reading_never_replaces_a_newer_one() -> None:
    flt = ConsensusFilter(FilterConfig(min_sources=1))
    assert flt.update(1, 5.0, 1.0, 10.0) == "accepted"
    assert flt.update(1, 7.0, 1.0, 9.0) == "older"
    assert flt.estimate(10.0).value == 5.0
    assert flt.update(1, 6.0, 1.0, 11.0) == "accepted"
    assert flt.estimate(11.0).value == 6.0


def test_callers_bugs_raise() -> None:
    flt = ConsensusFilter(FilterConfig())
    with pytest.raises(ConsensusError, match="source"):
        flt.update(-1, 1.0, 1.0, 0.0)
    with pytest.raises(ConsensusError, match="source"):
        flt.update("a", 1.0, 1.0, 0.0)  # type: ignore[arg-type]
    with pytest.raises(ConsensusError, match="now"):
        flt.update(1, 1.0, 1.0, math.nan)
    with pytest.raises(ConsensusError, match="now"):
        flt.estimate(math.inf)
    with pytest.raises(ConsensusError, match="reputation"):
        ConsensusFilter(FilterConfig(), "trust me")  # type: ignore[arg-type]


def test_state_is_bounded_and_eviction_counted() -> None:
    flt = ConsensusFilter(FilterConfig(max_sources=8))
    for source in range(20):
        flt.update(source, 1.0, 1.0, float(source))
    estimate = flt.estimate(20.0)
    assert estimate.sources_total == 8
    assert [r.source for r in estimate.sources] == list(range(12, 20))
    assert flt.statistics().evicted == 12


def test_reach_register_counts_recent_intervals() -> None:
    flt = ConsensusFilter(FilterConfig(min_sources=1, reach_interval=1.0))
    for now in [0.0, 1.0, 3.0, 3.5, 7.0]:
        flt.update(1, 1.0, 1.0, now)
    # Bit i: a reading i intervals before now (slots 7, 3, 1 and 0).
    assert flt.estimate(7.0).sources[0].reach == 0b11010001
    assert flt.estimate(9.0).sources[0].reach == 0b01000100
    assert flt.estimate(30.0).sources[0].reach == 0


def test_category_needs_a_margin_over_the_possibly_faulty() -> None:
    flt = ConsensusFilter(FilterConfig(kind="category"))
    # n = 7: up to f = 2 faulty, each holding at most 1/7 of the weight.
    for source, label in enumerate([3, 3, 3, 3, 3, 5, 5]):
        flt.update(source, label, 1.0, 0.0)
    estimate = flt.estimate(0.0)
    assert estimate.ok and estimate.value == 3 and estimate.sources_used == 5
    assert estimate.interval is None and math.isnan(estimate.sigma)
    assert [r.symbol for r in estimate.sources].count("x") == 2
    # 4 against 3: if two of the four lie, the truth may be 5. No answer.
    flt.update(4, 5, 1.0, 1.0)
    tight = flt.estimate(1.0)
    assert tight.state == "no-consensus" and tight.reason == "no-margin" and tight.value is None
    assert flt.update(1, 2.5, 1.0, 1.0) == "bad-shape"


def test_interval_kind_reads_centre_and_error() -> None:
    flt = ConsensusFilter(FilterConfig(kind="interval"))
    for source, (centre, error) in enumerate([(10.0, 1.0), (10.5, 1.0), (9.8, 0.5), (30.0, 0.5)]):
        assert flt.update(source, (centre, error), 1.0, 0.0) == "accepted"
    estimate = flt.estimate(0.0)
    assert estimate.ok and isinstance(estimate.value, float) and 9.8 <= estimate.value <= 10.5
    assert estimate.sources[3].symbol == "x"
    assert flt.update(9, (1.0, -1.0), 1.0, 0.0) == "bad-sigma"
    assert flt.update(9, 1.0, 1.0, 0.0) == "bad-shape"


def test_vector_estimate_stays_in_the_honest_bounding_box() -> None:
    rng = random.Random("vector")
    for _ in range(300):
        flt = ConsensusFilter(FilterConfig(kind="vector", dims=3))
        honest = [[rng.gauss(0.0, 1.0) for _ in range(3)] for _ in range(7)]
        for source, point in enumerate(honest):
            flt.update(source, point, 1.0, 0.0)
        for liar in range(7, 10):  # f = 3 of n = 10
            flt.update(
                liar, [rng.choice((-1.0, 1.0)) * 50.0 for _ in range(3)], 1.0, 0.0, sigma=1e-6
            )
        estimate = flt.estimate(0.0)
        assert estimate.ok
        assert isinstance(estimate.value, tuple) and len(estimate.value) == 3
        for d in range(3):
            column = [p[d] for p in honest]
            assert min(column) <= estimate.value[d] <= max(column)
    assert flt.update(1, [1.0, 2.0], 1.0, 1.0) == "bad-shape"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("kind", "matrix"),
        ("dims", 17),
        ("dims", 0),
        ("min_sources", 0),
        ("max_sources", 2000),
        ("lower", math.nan),
        ("default_sigma", 0.0),
        ("min_sigma", -1.0),
        ("default_half_life", math.inf),
        ("agree_sigmas", 0.0),
        ("max_weight_share", 0.0),
        ("fault_model", "optimistic"),
        ("probation_share", 1.0),
        ("reach_interval", 1e-6),
    ],
)
def test_bad_filter_settings_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ConsensusError, match=field):
        FilterConfig(**{field: value})  # type: ignore[arg-type]


def test_dims_only_for_vectors() -> None:
    with pytest.raises(ConsensusError, match="dims"):
        FilterConfig(kind="scalar", dims=3)


readings = st.lists(
    st.tuples(
        st.integers(0, 12),  # source
        st.one_of(st.floats(-5, 5), st.sampled_from([math.nan, math.inf, 1e200, -0.0])),
        st.floats(0.05, 1.0),  # confidence
        st.sampled_from([0.0, 0.5, 1.0, 2.5]),  # when
        st.one_of(st.none(), st.floats(0.01, 3.0)),  # sigma
    ),
    min_size=1,
    max_size=40,
)


@given(
    readings, st.randoms(use_true_random=False), st.sampled_from(["scalar", "category", "vector"])
)
def test_any_order_of_the_same_updates_gives_the_same_bits(
    updates: list[tuple[int, float, float, float, float | None]], rng: random.Random, kind: str
) -> None:
    def run(order: list[tuple[int, float, float, float, float | None]]) -> list[tuple[Any, ...]]:
        config = FilterConfig(kind=kind, dims=2 if kind == "vector" else 1, min_sources=2)
        flt = ConsensusFilter(config, Reputation())
        for source, x, confidence, when, sigma in order:
            value: Any = x
            if kind == "category":
                value = int(x) if math.isfinite(x) else 0
            elif kind == "vector":
                value = (x, -x)
            flt.update(source, value, confidence, when, sigma=sigma)
        return [bits(flt.estimate(3.0)), bits(flt.estimate(4.0))]

    shuffled = list(updates)
    rng.shuffle(shuffled)
    assert run(updates) == run(shuffled)


def test_category_winner_needs_min_sources_backing_it() -> None:
    flt = ConsensusFilter(FilterConfig(kind="category"))
    for source, (label, confidence) in enumerate([(1, 1.0), (2, 0.6), (3, 0.6)]):
        flt.update(source, label, confidence, 0.0)
    estimate = flt.estimate(0.0)
    assert (estimate.state, estimate.reason, estimate.value) == (
        "no-consensus",
        "too-few-sources",
        None,
    )


def test_unused_sources_show_no_weight() -> None:
    # min_sources 4, but only three agree: no value, and no weight shown for anyone.
    flt = ConsensusFilter(FilterConfig(min_sources=4))
    for source, x in enumerate([0.0, 0.01, -0.01, 50.0]):
        flt.update(source, x, 1.0, 0.0, sigma=0.01)
    estimate = flt.estimate(0.0)
    assert not estimate.ok
    assert [r.weight for r in estimate.sources] == [0.0, 0.0, 0.0, 0.0]


def test_a_full_filter_keeps_the_newest_whatever_the_order() -> None:
    updates = [(1, 1.0, 1.0), (2, 2.0, 2.0), (3, 3.0, 3.0), (4, 4.0, 0.5)]

    def kept(order: list[tuple[int, float, float]]) -> tuple[list[int], Any]:
        flt = ConsensusFilter(FilterConfig(max_sources=2, min_sources=1))
        for source, x, when in order:
            flt.update(source, x, 1.0, when)
        estimate = flt.estimate(3.0)
        return [r.source for r in estimate.sources], estimate.value

    assert kept(updates) == kept(updates[::-1]) == ([2, 3], 2.5)


def test_readings_and_settings_at_the_limits() -> None:
    flt = ConsensusFilter(FilterConfig(kind="interval", agree_sigmas=0.01))
    assert flt.update(1, (0.0, 1e19), 1.0, 0.0) == "bad-sigma"  # sigma = error / 0.01 > 1e20
    assert flt.update(1, (0.0, 1e17), 1.0, 0.0) == "accepted"
    with pytest.raises(ConsensusError, match="lower"):
        FilterConfig(lower=-(10**400))
    with pytest.raises(ConsensusError, match="agree_sigmas"):
        FilterConfig(agree_sigmas=1e-3)
    # A precise source and a vague, old, far one: the sigma stays finite.
    vague = ConsensusFilter(FilterConfig(min_sources=2))
    vague.update(1, 0.0, 1.0, 160.0, sigma=1e-20)
    vague.update(2, 1e49, 1.0, 0.0, sigma=1e20, half_life=1.0, ttl=1000.0)
    estimate = vague.estimate(160.0)
    assert estimate.state in ("ok", "no-consensus")
    assert not estimate.ok or math.isfinite(estimate.sigma)
