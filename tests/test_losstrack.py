"""Tests of :class:`cloudkernel.core.losstrack.LossTracker`.

The oracle is :class:`Reference`: it keeps every arrival in a set and every
settled verdict in a list, settles one number at a time by the rule of the
module docstring, and counts runs and buckets from that list afresh on every
question.  Slow and obviously right; the tracker must agree with it on every
input, whatever the order, loss, duplication and jumps.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudkernel.core.losstrack import LinkStatistics, LossTracker, loss_upper_bound
from cloudkernel.errors import ConfigError


@dataclass
class Reference:
    window: int
    horizon: int
    #: settled verdicts in settling order, True = received
    verdicts: list[bool] = field(default_factory=list)
    #: indices into verdicts where a new epoch began (runs do not cross them)
    epoch_starts: set[int] = field(default_factory=set)
    seen: set[int] = field(default_factory=set)
    started: bool = False
    base: int = 0
    high: int = 0

    def arrived(self, seq: int) -> None:
        if not self.started:
            self.started, self.base, self.high, self.seen = True, seq, seq, {seq}
            return
        if seq < self.base or seq in self.seen:
            return
        self.seen.add(seq)
        self.high = max(self.high, seq)
        self._settle_below(self.high - self.window)

    def _settle_below(self, boundary: int) -> None:
        while self.base < boundary:
            self.verdicts.append(self.base in self.seen)
            self.base += 1

    def flush(self) -> None:
        if self.started:
            self._settle_below(self.high + 1)

    def reset(self) -> None:
        self.started, self.seen = False, set()
        self.epoch_starts.add(len(self.verdicts))

    def _run_starts(self) -> list[int]:
        v = self.verdicts
        return [
            i for i, ok in enumerate(v) if not ok and (i == 0 or i in self.epoch_starts or v[i - 1])
        ]

    def statistics(self) -> LinkStatistics:
        v, h = self.verdicts, self.horizon
        lost = v.count(False)
        starts = self._run_starts()
        # Bucket b holds settled indices [b h, (b + 1) h); the current one is
        # the one the next verdict would go to, previous the one before.
        recent_from = max(0, (len(v) // h - 1) * h)
        recent_lost = v[recent_from:].count(False)
        recent_runs = sum(1 for i in starts if i >= recent_from)
        recent_settled = len(v) - recent_from
        return LinkStatistics(
            settled=len(v),
            received=len(v) - lost,
            lost=lost,
            loss_rate=recent_lost / recent_settled if recent_settled else 0.0,
            mean_burst=recent_lost / max(1, recent_runs) if recent_lost else 1.0,
            lifetime_loss_rate=lost / len(v) if v else 0.0,
            bursts=len(starts),
            lifetime_mean_burst=lost / len(starts) if starts else 1.0,
            recent_settled=recent_settled,
            recent_lost=recent_lost,
        )


FLUSH, RESET = -1, -2

Op = int  # a sequence number, FLUSH or RESET


def apply(
    ops: list[Op], window: int, horizon: int, every: int = 1
) -> tuple[LossTracker, Reference]:
    """Feed ``ops`` to both; compare after every ``every``-th op and at the end."""
    tracker = LossTracker(reorder_window=window, horizon=horizon)
    ref = Reference(window, horizon)
    for i, op in enumerate(ops):
        if op == FLUSH:
            tracker.flush()
            ref.flush()
        elif op == RESET:
            tracker.reset()
            ref.reset()
        else:
            tracker.arrived(op)
            ref.arrived(op)
        if i % every == 0:
            assert tracker.statistics() == ref.statistics(), (i, ops)
    assert tracker.statistics() == ref.statistics(), ops
    return tracker, ref


@st.composite
def link_arrivals(draw: st.DrawFn) -> list[Op]:
    """What a lossy, reordering, duplicating link delivers of frames start, start+1, ..."""
    n = draw(st.integers(0, 250))
    start = draw(st.integers(0, 2**32 - 1))
    loss = draw(st.sampled_from([0.0, 0.05, 0.3, 0.7]))
    # A seeded Random, not st.randoms(): hypothesis's draws per call are slow.
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    spread = draw(st.integers(0, 40))
    keys = []
    seq = start
    for i in range(n):
        if rng.random() < 0.02:
            seq += rng.randrange(2, 300)  # a silent stretch: a jump
        if rng.random() >= loss:
            copies = 2 if rng.random() < 0.1 else 1
            keys += [(i + rng.uniform(0, spread), seq) for _ in range(copies)]
        seq += 1
    ops = [s for _, s in sorted(keys)]
    if draw(st.booleans()):
        ops.append(FLUSH)
    return ops


@given(link_arrivals(), st.integers(0, 70), st.integers(1, 60))
def test_matches_reference_on_a_lossy_link(ops: list[Op], window: int, horizon: int) -> None:
    tracker, ref = apply(ops, window, horizon, every=17)
    assert tracker.statistics() == ref.statistics()


@given(
    st.lists(
        st.one_of(st.integers(0, 400), st.just(FLUSH), st.just(RESET)),
        max_size=120,
    ),
    st.integers(0, 20),
    st.integers(1, 40),
)
def test_matches_reference_on_any_input(ops: list[Op], window: int, horizon: int) -> None:
    tracker, ref = apply(ops, window, horizon)
    assert tracker.statistics() == ref.statistics()


def test_hand_pattern_with_window_0() -> None:
    # R L L R L R R L L L, then frame 10 settles frame 9.
    tracker, _ = apply([0, 3, 5, 6, 10], 0, 1000)
    stats = tracker.statistics()
    assert (stats.settled, stats.received, stats.lost, stats.bursts) == (10, 4, 6, 3)
    assert stats.mean_burst == stats.lifetime_mean_burst == 2.0
    assert stats.loss_rate == stats.lifetime_loss_rate == 0.6


def test_late_frames_within_the_window_count_as_received() -> None:
    tracker = LossTracker(reorder_window=3)
    for seq in (0, 2, 3, 1, 4, 5, 6):
        tracker.arrived(seq)
    assert (tracker.settled, tracker.lost) == (3, 0)
    tracker.arrived(10)  # settles 3..6
    tracker.arrived(1)  # already settled: ignored
    tracker.arrived(7)  # 10 - 7 <= 3, not settled yet: received
    tracker.flush()
    assert (tracker.settled, tracker.received, tracker.lost, tracker.bursts) == (11, 9, 2, 1)


def test_nothing_before_the_first_number_counts() -> None:
    tracker = LossTracker(reorder_window=0)
    tracker.arrived(1000)
    tracker.arrived(999)
    tracker.arrived(1001)
    assert (tracker.settled, tracker.lost, tracker.highest) == (1, 0, 1001)


def test_duplicates_are_ignored() -> None:
    tracker = LossTracker(reorder_window=2)
    for seq in (5, 5, 6, 6, 5, 8, 8, 9, 9, 9):
        tracker.arrived(seq)
    tracker.flush()
    assert (tracker.settled, tracker.received, tracker.lost) == (5, 4, 1)


def test_huge_jump_is_settled_in_one_step() -> None:
    tracker = LossTracker(reorder_window=64, horizon=1000)
    tracker.arrived(0)
    tracker.arrived(10**9)
    stats = tracker.statistics()
    assert stats.settled == 10**9 - 64
    assert stats.received == 1
    assert stats.lost == 10**9 - 65
    assert stats.bursts == 1
    assert stats.loss_rate == 1.0
    # Recent window: the last full bucket (1000) and what is left over.
    assert stats.mean_burst == 1000 + (10**9 - 64 - 1000) % 1000
    # Many more such jumps: each is O(1), or this would not finish.
    for i in range(2, 1002):
        tracker.arrived(i * 10**12)
    assert tracker.settled == 1001 * 10**12 - 64
    assert tracker.bursts == 1001
    assert tracker.received == 1001
    tracker.flush()
    assert tracker.received == 1002


def test_recent_view_switches_buckets() -> None:
    tracker = LossTracker(reorder_window=0, horizon=10)
    seq = 0

    def receive(n: int) -> None:
        nonlocal seq
        for _ in range(n):
            tracker.arrived(seq)
            seq += 1

    def lose(n: int) -> None:
        nonlocal seq
        seq += n

    receive(11)  # settles 0..9: a full bucket of receptions
    assert (tracker.loss_rate, tracker.mean_burst) == (0.0, 1.0)
    lose(5)
    receive(1)  # settles 10..15: 1 received, 5 lost, in the current bucket
    assert tracker.loss_rate == 5 / 16
    assert tracker.mean_burst == 5.0
    lose(3)
    receive(2)  # settles 16..20: the bucket of 10..19 fills and becomes previous
    assert tracker.settled == 21
    assert tracker.loss_rate == 8 / 11
    assert tracker.mean_burst == 4.0
    receive(20)  # 20 more receptions: both buckets hold receptions only
    assert tracker.settled == 41
    assert (tracker.loss_rate, tracker.mean_burst) == (0.0, 1.0)
    assert tracker.statistics().lifetime_loss_rate == 8 / 41


def test_independent_loss_gives_mean_burst_near_1_over_1_minus_p() -> None:
    rng = random.Random(7)
    tracker = LossTracker(reorder_window=8, horizon=50_000)
    for seq in range(100_000):
        if rng.random() >= 0.2:
            tracker.arrived(seq)
    stats = tracker.statistics()
    assert stats.lifetime_loss_rate == pytest.approx(0.2, abs=0.01)
    assert stats.lifetime_mean_burst == pytest.approx(1 / 0.8, rel=0.03)


def test_reset_keeps_counters_and_starts_a_new_sequence_space() -> None:
    tracker = LossTracker(reorder_window=0)
    for seq in (100, 102, 103):
        tracker.arrived(seq)
    tracker.flush()
    assert (tracker.settled, tracker.lost, tracker.highest) == (4, 1, 103)
    tracker.reset()
    assert tracker.highest is None
    tracker.arrived(0)  # lower than before: the first number of the new epoch
    tracker.arrived(2)
    assert (tracker.settled, tracker.lost, tracker.bursts) == (6, 2, 2)


def test_flush_on_a_fresh_tracker_does_nothing() -> None:
    tracker = LossTracker()
    tracker.flush()
    tracker.reset()
    assert tracker.statistics() == LinkStatistics(0, 0, 0, 0.0, 1.0, 0.0, 0, 1.0)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"reorder_window": -1}, "reorder_window"),
        ({"horizon": 0}, "horizon"),
        ({"horizon": 1.5}, "horizon"),
    ],
)
def test_bad_config(kwargs: dict[str, float], name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        LossTracker(**kwargs)  # type: ignore[arg-type]


def test_reset_counts_what_was_already_settled() -> None:
    # 0 arrived, 5 arrived: with a window of 3, numbers 0 and 1 are settled
    # (0 received, 1 lost) whether or not anyone read the counters before.
    for read_first in (False, True):
        tracker = LossTracker(reorder_window=3)
        tracker.arrived(0)
        tracker.arrived(5)
        if read_first:
            assert tracker.settled == 2
        tracker.reset()
        assert (tracker.settled, tracker.lost) == (2, 1)


# -- the loss a sender plans for ------------------------------------------------


def test_the_loss_bound_of_a_few_frames_is_wide_and_narrows_with_more() -> None:
    assert loss_upper_bound(0, 0) == 1.0
    assert loss_upper_bound(0, 16) == pytest.approx(0.2)  # z^2 / (n + z^2)
    assert loss_upper_bound(150, 1500) == pytest.approx(0.1166, abs=1e-4)
    assert loss_upper_bound(0, 1500) == pytest.approx(4 / 1504)
    assert loss_upper_bound(16, 16) == 1.0
    tracker = LossTracker(reorder_window=0, horizon=100)
    for seq in range(0, 300, 2):  # every other frame lost
        tracker.arrived(seq)
    stats = tracker.statistics()
    assert stats.recent_lost == round(stats.loss_rate * stats.recent_settled)
    assert stats.loss_bound == loss_upper_bound(stats.recent_lost, stats.recent_settled)
    assert stats.loss_rate < stats.loss_bound < 0.7


@given(st.integers(0, 5000), st.integers(1, 5000))
def test_the_loss_bound_is_above_the_estimate_and_falls_with_more_evidence(
    lost: int, settled: int
) -> None:
    lost = min(lost, settled)
    bound = loss_upper_bound(lost, settled)
    assert lost / settled <= bound <= 1.0
    # the same rate over twice the frames is known better
    assert loss_upper_bound(2 * lost, 2 * settled) <= bound
    # one more loss never lowers it
    if lost < settled:
        assert loss_upper_bound(lost + 1, settled) >= bound
