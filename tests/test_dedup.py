"""Duplicate suppression by (source, sequence number): cloudkernel.core.dedup."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudkernel.core.dedup import SeenSignals


def test_each_number_is_new_once() -> None:
    seen = SeenSignals(window=64)
    assert seen.admit(7, 10) == "new"
    assert seen.admit(7, 10) == "duplicate"
    assert seen.admit(7, 9) == "new"  # late but inside the window
    assert seen.admit(7, 9) == "duplicate"
    assert seen.admit(8, 10) == "new"  # sources are apart
    stats = seen.statistics()
    assert (stats.new, stats.duplicates, stats.sources) == (3, 2, 2)


def test_below_the_window_is_too_old() -> None:
    seen = SeenSignals(window=16)
    assert seen.admit(1, 100) == "new"
    assert seen.admit(1, 85) == "new"  # 15 behind: the window's last slot
    assert seen.admit(1, 84) == "too-old"
    assert seen.statistics().too_old == 1


def test_a_jump_past_the_window_forgets_the_old_bits() -> None:
    seen = SeenSignals(window=16)
    assert seen.admit(1, 0) == "new"
    assert seen.admit(1, 1000) == "new"
    assert seen.admit(1, 999) == "new"
    assert seen.admit(1, 1000) == "duplicate"


def test_sequence_numbers_wrap() -> None:
    seen = SeenSignals(window=32)
    top = 2**32 - 1
    assert seen.admit(1, top - 1) == "new"
    assert seen.admit(1, top) == "new"
    assert seen.admit(1, 0) == "new"  # after the wrap: ahead
    assert seen.admit(1, 3) == "new"
    assert seen.admit(1, top) == "duplicate"
    assert seen.admit(1, top - 2) == "new"


def test_restart_starts_afresh() -> None:
    seen = SeenSignals(window=16)
    for seq in range(100, 200):
        seen.admit(1, seq)
    assert seen.admit(1, 0) == "too-old"
    seen.restart(1)
    assert seen.admit(1, 0) == "new"
    assert seen.admit(1, 1) == "new"


def test_least_recently_heard_source_is_evicted() -> None:
    seen = SeenSignals(window=16, max_sources=3)
    for source in (1, 2, 3):
        seen.admit(source, 5)
    seen.admit(1, 6)  # 1 heard again: 2 is now the least recent
    seen.admit(4, 5)
    stats = seen.statistics()
    assert (stats.sources, stats.evicted) == (3, 1)
    assert seen.admit(2, 5) == "new"  # 2 was forgotten
    assert seen.admit(1, 6) == "duplicate"


@pytest.mark.parametrize("bad", [{"window": 0}, {"window": 65537}, {"max_sources": 0}])
def test_bad_settings_are_refused(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        SeenSignals(**bad)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 3), st.integers(0, 300)), max_size=400),
    st.integers(1, 128),
)
def test_matches_a_set_within_the_window(pairs: list[tuple[int, int]], window: int) -> None:
    """Against a plain set, for numbers that never fall below their window."""
    seen = SeenSignals(window=window)
    exact: set[tuple[int, int]] = set()
    highest: dict[int, int] = {}
    for source, seq in pairs:
        top = highest.get(source, seq)
        got = seen.admit(source, seq)
        if top - seq >= window:
            assert got == "too-old"
            continue
        want = "duplicate" if (source, seq) in exact else "new"
        assert got == want
        exact.add((source, seq))
        highest[source] = max(top, seq)


def test_shuffled_copies_are_let_through_once() -> None:
    rng = random.Random(5)
    stream = [(s, q) for s in range(1, 6) for q in range(200)] * 3
    rng.shuffle(stream)
    seen = SeenSignals(window=4096)
    new = [pair for pair in stream if seen.admit(*pair) == "new"]
    assert sorted(new) == sorted(set(stream))
