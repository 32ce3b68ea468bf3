"""Tests of :class:`cloudkernel.core.replay.ReplayWindow`.

The oracle is :class:`Model`: a set of every sequence number accepted and the
highest one, with TOO_OLD meaning ``seq <= highest - size``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudkernel.core.replay import DEFAULT_WINDOW, ReplayWindow, Verdict
from cloudkernel.errors import ConfigError

NEW, DUPLICATE, TOO_OLD = Verdict.NEW, Verdict.DUPLICATE, Verdict.TOO_OLD
SEQ_MAX = 2**32 - 1


@dataclass
class Model:
    """The obvious, unbounded replay window."""

    size: int
    seen: set[int] = field(default_factory=set)
    highest: int | None = None

    def check(self, seq: int) -> Verdict:
        if self.highest is not None and seq <= self.highest - self.size:
            return TOO_OLD
        return DUPLICATE if seq in self.seen else NEW

    def accept(self, seq: int) -> None:
        if self.check(seq) is TOO_OLD:
            return
        self.seen.add(seq)
        self.highest = seq if self.highest is None else max(self.highest, seq)


def assert_bounded(window: ReplayWindow) -> None:
    assert window._bitmap.bit_length() <= window.size


# A step moves from the last sequence number: small reorderings, moves around
# the window's edge, big jumps; then checks, delivers (check, accept if NEW) or
# forces an accept whatever the verdict.
steps = st.tuples(
    st.one_of(
        st.integers(-8, 8),
        st.integers(-1100, 1100),
        st.integers(-(2**20), 2**20),
        st.just(0),
    ),
    st.sampled_from(["check", "deliver", "deliver", "deliver", "force"]),
)


@given(
    size=st.sampled_from([1, 2, 3, 8, 64, 100, DEFAULT_WINDOW]),
    start=st.one_of(st.integers(0, SEQ_MAX), st.integers(0, 3000), st.just(SEQ_MAX - 2000)),
    ops=st.lists(steps, max_size=300),
)
def test_matches_model(size: int, start: int, ops: list[tuple[int, str]]) -> None:
    window = ReplayWindow(size)
    model = Model(size)
    seq = start
    for delta, action in ops:
        seq = min(max(seq + delta, 0), SEQ_MAX)
        verdict = window.check(seq)
        assert verdict is model.check(seq), (seq, action)
        if action == "force" or (action == "deliver" and verdict is NEW):
            window.accept(seq)
            model.accept(seq)
        assert window.highest == model.highest
        assert_bounded(window)


@given(
    size=st.sampled_from([1, 5, 64, DEFAULT_WINDOW]),
    seqs=st.lists(st.integers(0, 5000), max_size=200),
)
def test_whole_window_matches_model(size: int, seqs: list[int]) -> None:
    # After any history, every number around the window has the model's verdict.
    window = ReplayWindow(size)
    model = Model(size)
    for seq in seqs:
        if window.check(seq) is NEW:
            window.accept(seq)
            model.accept(seq)
    if model.highest is not None:
        for seq in range(max(0, model.highest - size - 3), model.highest + 3):
            assert window.check(seq) is model.check(seq), seq


def test_empty_window() -> None:
    window = ReplayWindow()
    assert window.size == DEFAULT_WINDOW
    assert window.highest is None
    for seq in (0, 1, 500, SEQ_MAX):
        assert window.check(seq) is NEW
    assert window.highest is None


def test_check_changes_nothing() -> None:
    window = ReplayWindow(8)
    window.accept(100)
    for seq in (50, 99, 100, 101, 10**6):
        window.check(seq)
    assert window.highest == 100
    assert window.check(99) is NEW
    assert window.check(101) is NEW


def test_join_mid_stream_accepts_late_earlier_frames() -> None:
    window = ReplayWindow()
    window.accept(500)
    assert window.check(499) is NEW
    window.accept(499)
    assert window.check(499) is DUPLICATE
    assert window.check(0) is NEW  # 500 - 0 < 1024: still in the window
    assert window.highest == 500


def test_first_sequence_can_be_anything() -> None:
    for first in (0, 1, 1023, 1024, 2**31, SEQ_MAX):
        window = ReplayWindow()
        window.accept(first)
        assert window.highest == first
        assert window.check(first) is DUPLICATE
        if first >= 1:
            assert window.check(first - 1) is NEW
        if first >= DEFAULT_WINDOW:
            assert window.check(first - DEFAULT_WINDOW) is TOO_OLD
            assert window.check(first - DEFAULT_WINDOW + 1) is NEW
    window = ReplayWindow()
    window.accept(SEQ_MAX)
    assert window.check(0) is TOO_OLD


@pytest.mark.parametrize("size", [2, 3, 64, DEFAULT_WINDOW])
def test_edges_of_the_window(size: int) -> None:
    top = 10_000
    window = ReplayWindow(size)
    window.accept(top)
    oldest = top - size + 1  # the oldest number still in the window
    assert window.check(oldest) is NEW
    assert window.check(oldest - 1) is TOO_OLD
    window.accept(oldest)
    assert window.check(oldest) is DUPLICATE
    window.accept(oldest - 1)  # TOO_OLD: ignored
    assert window.check(oldest - 1) is TOO_OLD
    assert window.highest == top
    assert_bounded(window)

    # One step forward pushes the oldest number out.
    window.accept(top + 1)
    assert window.check(oldest) is TOO_OLD
    assert window.check(top) is DUPLICATE
    assert window.check(top + 1) is DUPLICATE
    assert_bounded(window)


def test_window_of_one_remembers_the_highest_only() -> None:
    window = ReplayWindow(1)
    window.accept(10)
    assert window.check(10) is DUPLICATE
    assert window.check(9) is TOO_OLD
    assert window.check(11) is NEW
    window.accept(11)
    assert window.check(10) is TOO_OLD
    assert window._bitmap == 1


@pytest.mark.parametrize("size", [1, 2, 64, DEFAULT_WINDOW])
def test_jumps_of_exactly_size(size: int) -> None:
    window = ReplayWindow(size)
    window.accept(1000)
    window.accept(1000 + size - 1)  # 1000 stays, at the far edge (or is highest)
    assert window.check(1000) is DUPLICATE
    window = ReplayWindow(size)
    window.accept(1000)
    window.accept(1000 + size)  # 1000 falls out
    assert window.check(1000) is TOO_OLD
    for seq in range(1001, 1000 + size):
        assert window.check(seq) is NEW
    assert window.check(1000 + size) is DUPLICATE


def test_huge_jump_clears_the_window() -> None:
    window = ReplayWindow()
    for seq in range(2000):
        window.accept(seq)
    window.accept(10**6)
    assert window.highest == 10**6
    assert window._bitmap == 1
    assert window.check(10**6) is DUPLICATE
    for seq in range(10**6 - DEFAULT_WINDOW + 1, 10**6):
        assert window.check(seq) is NEW
    assert window.check(1999) is TOO_OLD
    window.accept(SEQ_MAX)
    assert window._bitmap == 1


def test_in_order_stream() -> None:
    window = ReplayWindow(16)
    for seq in range(100):
        assert window.check(seq) is NEW
        window.accept(seq)
        assert window.check(seq) is DUPLICATE
        assert_bounded(window)
    assert window._bitmap == (1 << 16) - 1
    assert window.check(83) is TOO_OLD
    assert window.check(84) is DUPLICATE


def test_accept_is_idempotent() -> None:
    window = ReplayWindow(8)
    window.accept(10)
    window.accept(7)
    before = (window.highest, window._bitmap)
    window.accept(10)
    window.accept(7)
    assert (window.highest, window._bitmap) == before


def test_repr() -> None:
    window = ReplayWindow(8)
    assert repr(window) == "ReplayWindow(size=8, highest=None)"
    window.accept(3)
    assert repr(window) == "ReplayWindow(size=8, highest=3)"


@pytest.mark.parametrize("size", [0, -1, True, 1.5, "1024"])
def test_bad_size(size: object) -> None:
    with pytest.raises(ConfigError, match="replay window size"):
        ReplayWindow(size)  # type: ignore[arg-type]


def test_verdicts() -> None:
    assert {v.value for v in Verdict} == {"new", "duplicate", "too-old"}
