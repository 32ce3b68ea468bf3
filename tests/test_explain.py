"""Estimates explained in words (cloudkernel.explain): every reason, real filters, any input."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudkernel.consensus import (
    NOT_OK_REASONS,
    SOURCE_REASONS,
    SYMBOLS,
    ConsensusFilter,
    FilterConfig,
    Reputation,
    ReputationConfig,
)
from cloudkernel.explain import (
    ESTIMATE_REASONS,
    SOURCE_REASON_WORDS,
    SYMBOL_WORDS,
    explain_view,
    no_consensus,
)
from cloudkernel.views import estimate_view, policy_view


def test_every_code_has_words() -> None:
    assert set(SOURCE_REASON_WORDS) == set(SOURCE_REASONS)
    assert set(ESTIMATE_REASONS) == {r for r in NOT_OK_REASONS if r}
    assert set(SYMBOL_WORDS) == set(SYMBOLS)


def swarm_view(*, liar: float, rounds: int, distrust: bool = False) -> dict[str, Any]:
    """5 honest sources near 20 and source 9 at ``liar``, as ``get`` would show them."""
    reputation = Reputation(ReputationConfig())
    filt = ConsensusFilter(FilterConfig(kind="scalar"), reputation)
    estimate = None
    for n in range(rounds):
        for source in (1, 2, 3, 4, 5):
            filt.update(source, 20.0 + 0.01 * source, 0.8, float(n), sigma=0.1)
        filt.update(9, liar, 0.8, float(n), sigma=0.1)
        estimate = filt.estimate(n + 0.5)
    assert estimate is not None
    view = estimate_view("room/temp", "scalar", estimate)
    view["policy"] = policy_view(filt.config, reputation.config)
    return view


def test_a_liar_is_a_falseticker_then_distrusted() -> None:
    first = explain_view(swarm_view(liar=35.0, rounds=1))
    assert first["state"] == "ok"
    assert first["explanation"].startswith("room/temp is 20.0")
    assert first["explanation"].endswith(
        "with the byzantine fault model, up to 1 of its 6 fresh readings may lie."
    )
    liar = next(s for s in first["sources"] if s["source"] == 9)
    assert (liar["reason"], liar["used"]) == ("falseticker", False)
    assert "falseticker" in liar["explanation"] and "from the estimate" in liar["explanation"]
    assert "(widened to ±3 sigmas)" in liar["explanation"]
    assert liar["weight_explanation"].endswith("its share of the estimate: 0.")
    used = [s for s in first["sources"] if s["used"]]
    assert len(used) == 5 and math.fsum(s["weight"] for s in used) == pytest.approx(1.0)
    for entry in first["sources"]:
        f = entry["factors"]
        product = f["confidence"] * f["reputation"] * f["evaporation"] * f["link_quality"]
        assert entry["trust"] == pytest.approx(product)
        assert entry["weight_explanation"].startswith(f"weight {product:.3g} = confidence 0.8 x")
    later = explain_view(swarm_view(liar=35.0, rounds=12))
    liar = next(s for s in later["sources"] if s["source"] == 9)
    assert liar["reason"] == "distrusted" and "(reputation 0.0" in liar["explanation"]
    assert ", below 0.1)" in liar["explanation"]


def test_no_consensus_in_words() -> None:
    filt = ConsensusFilter(FilterConfig(kind="scalar"), Reputation())
    filt.update(1, 20.0, 1.0, 0.0)
    view = estimate_view("t", "scalar", filt.estimate(0.0))
    assert no_consensus(view)
    explained = explain_view(view)
    assert explained["explanation"] == (
        "t has no value (state no-consensus, too-few-sources): fewer sources are usable, "
        "agree or survive the outlier test than the topic's min_sources needs; 1 sources heard."
    )
    view["policy"] = policy_view(filt.config, Reputation().config)
    assert "min_sources needs (3); 1 sources heard." in explain_view(view)["explanation"]
    (only,) = explained["sources"]
    assert only["reason"] == "no-consensus" and not only["used"]
    stale = estimate_view("t", "scalar", filt.estimate(1000.0))
    assert stale["state"] == "stale" and no_consensus(stale)
    assert "every reading has expired" in explain_view(stale)["explanation"]
    assert "expired" in explain_view(stale)["sources"][0]["explanation"]


def test_ok_and_raw_are_not_no_consensus() -> None:
    assert not no_consensus({"state": "ok"})
    assert not no_consensus({"state": "raw"})
    raw = explain_view({"topic": "b", "kind": "bytes", "state": "raw", "latest": []})
    assert "not fused" in raw["explanation"] and raw["sources"] == []


plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
keys = st.sampled_from(
    ["topic", "state", "reason", "value", "sigma", "interval", "sources", "age", "source",
     "symbol", "confidence", "reputation", "evaporation", "link_quality", "weight", "offset"]
)  # fmt: skip
views = st.dictionaries(
    keys,
    plain | st.lists(st.dictionaries(keys, plain, max_size=10), max_size=4),
    max_size=12,
)


@given(views)
def test_any_reply_is_explained_without_raising(view: dict[str, Any]) -> None:
    explained = explain_view(view)
    assert isinstance(explained["explanation"], str)
    for entry in explained["sources"]:
        assert isinstance(entry["explanation"], str)
        assert isinstance(entry["weight_explanation"], str)
