"""Tests of :mod:`cloudkernel.core.membership`: the phi detector, the table, a simulated hour.

Everything is driven by a clock in the test's hands and seeded random
numbers; nothing sleeps.  The simulations run one observer and eight peers
for an hour over independent 30 % loss and over Gilbert-Elliott bursts, and
state their measured figures in the assertion messages.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudkernel.core.membership import (
    Heartbeat,
    LinkReported,
    Membership,
    MembershipConfig,
    MembershipEvent,
    PeerDied,
    PeerForgotten,
    PeerJoined,
    PeerRecovered,
    PeerReport,
    PeerRestarted,
    PeerState,
    PeerSuspected,
    PhiAccrualDetector,
    Refuted,
)
from cloudkernel.errors import ConfigError

ME = 1
MY_EPOCH = 7
INTERVAL = 0.5


def hb(
    node: int,
    epoch: int = 1,
    incarnation: int = 0,
    interval: float = INTERVAL,
    reports: tuple[PeerReport, ...] = (),
) -> Heartbeat:
    return Heartbeat(node, epoch, incarnation, interval, reports)


def about_me(
    state: PeerState = PeerState.ALIVE,
    incarnation: int = 0,
    epoch: int = MY_EPOCH,
    loss: float = 0.25,
    burst: float = 2.0,
) -> PeerReport:
    return PeerReport(ME, epoch, incarnation, state, loss, burst)


def steady(m: Membership, node: int, start: float, stop: float, epoch: int = 1) -> float:
    """Heartbeats of ``node`` every INTERVAL from ``start`` while < ``stop``; the last time."""
    t = start
    last = start
    for _ in range(100_000):
        if t >= stop:
            break
        m.heard(hb(node, epoch), t)
        last = t
        t += INTERVAL
    return last


def run_until(m: Membership, stop: float) -> list[MembershipEvent]:
    """Poll at every deadline up to ``stop`` (sending our heartbeats), as an adapter would."""
    events: list[MembershipEvent] = []
    for _ in range(100_000):
        d = m.deadline()
        assert d is not None and math.isfinite(d)
        if d > stop:
            return events
        events += m.poll(d)
        if m.heartbeat_due(d):
            m.make_heartbeat(d, {})
    raise AssertionError("run_until did not reach its stop time")


def kinds(events: list[MembershipEvent]) -> list[str]:
    return [type(e).__name__ for e in events]


# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("heartbeat_interval", 0.0),
        ("heartbeat_interval", -1.0),
        ("heartbeat_interval", math.nan),
        ("heartbeat_interval", math.inf),
        ("heartbeat_interval", 1e9),
        ("phi_threshold", 0.0),
        ("phi_threshold", 5000.0),
        ("acceptable_pause", -0.1),
        ("min_std_deviation", 0.0),
        ("max_samples", 1),
        ("max_samples", 10.0),
        ("max_samples", True),
        ("dead_after", -1.0),
        ("forget_after", math.nan),
        ("max_peers", 0),
        ("max_peers", 10**6),
    ],
)
def test_config_rejects(field: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=field) as info:
        MembershipConfig(**{field: value})
    assert isinstance(info.value, ValueError)
    assert repr(value) in str(info.value)


def test_membership_rejects_bad_identity_and_now() -> None:
    with pytest.raises(ConfigError, match="node"):
        Membership(0, 1, now=0.0)
    with pytest.raises(ConfigError, match="epoch"):
        Membership(1, 2**32, now=0.0)
    m = Membership(ME, MY_EPOCH, now=0.0)
    with pytest.raises(ValueError, match="now"):
        m.poll(math.nan)
    with pytest.raises(ValueError, match="links"):
        m.heard(hb(2), 0.0)
        m.make_heartbeat(0.0, {2: (1.5, 1.0)})


# ---------------------------------------------------------------------------
# Phi accrual detector
# ---------------------------------------------------------------------------


def akka_phi(elapsed: float, mean: float, std: float) -> float:
    """Akka's PhiAccrualFailureDetector.phi, written as Akka writes it."""
    y = (elapsed - mean) / std
    e = math.exp(-y * (1.5976 + 0.070566 * y * y))
    if elapsed > mean:
        return -math.log10(e / (1.0 + e))
    return -math.log10(1.0 - 1.0 / (1.0 + e))


def test_phi_zero_before_first_heartbeat() -> None:
    d = PhiAccrualDetector(0.5)
    assert d.phi(100.0) == 0.0
    assert d.time_of_phi(8.0) is None
    assert d.last is None


def test_phi_matches_formula_at_hand_computed_points() -> None:
    # Seed window 0.75, 1.25: mean 1.0, std 0.25; no pause.
    d = PhiAccrualDetector(1.0, acceptable_pause=0.0, min_std_deviation=0.1)
    d.heartbeat(0.0)
    assert d.mean == 1.0 and d.std_deviation == 0.25
    # y = 4: z = 4 (1.5976 + 0.070566 * 16) = 10.906624, phi = log10(1 + e^z)
    hand = {0.5: 0.009998761630, 1.0: math.log10(2.0), 1.5: 1.6428278855, 2.0: 4.7366945827}
    for t, expected in hand.items():
        assert d.phi(t) == pytest.approx(expected, rel=1e-9), t
        assert d.phi(t) == pytest.approx(akka_phi(t, 1.0, 0.25), rel=1e-12), t


def test_phi_uses_pause_and_min_std() -> None:
    d = PhiAccrualDetector(1.0, acceptable_pause=2.0, min_std_deviation=0.5)
    d.heartbeat(10.0)
    # mean 1.0 + pause 2.0; std max(0.25, 0.5) = 0.5
    for t in (11.0, 13.0, 14.5):
        assert d.phi(t) == pytest.approx(akka_phi(t - 10.0, 3.0, 0.5), rel=1e-12)


def test_phi_grows_monotonically_with_silence_and_stays_finite() -> None:
    rng = random.Random(1)
    d = PhiAccrualDetector(0.5)
    t = 0.0
    for _ in range(300):
        d.heartbeat(t)
        t += 0.5 + rng.uniform(-0.05, 0.05)
    last = d.last
    assert last is not None
    previous = -1.0
    for i in range(4000):
        value = d.phi(last + i * 0.01)
        assert math.isfinite(value) and value >= previous, (i, value, previous)
        previous = value
    huge = [d.phi(last + x) for x in (1e3, 1e6, 1e12, 1e300)]
    assert all(math.isfinite(v) for v in huge) and huge == sorted(huge)
    assert d.phi(last - 5.0) == d.phi(last)  # a clock before the last arrival counts as 0


def test_phi_stays_low_under_steady_heartbeats() -> None:
    rng = random.Random(2)
    d = PhiAccrualDetector(0.5)
    t, worst = 0.0, 0.0
    for _ in range(2000):
        d.heartbeat(t)
        t += 0.5 + rng.uniform(-0.05, 0.05)
        worst = max(worst, d.phi(t))
    assert worst < 0.01, f"phi reached {worst} with steady heartbeats"


def test_phi_crosses_threshold_after_pause_and_a_few_intervals() -> None:
    for pause in (1.0, 9.0):
        d = PhiAccrualDetector(0.5, acceptable_pause=pause)
        for i in range(400):
            d.heartbeat(i * 0.5)
        last = d.last
        assert last is not None
        crossing = d.time_of_phi(8.0)
        assert crossing is not None
        silence = crossing - last
        # mean 0.5 + pause + y* 5.226 x min std 0.1
        assert pause + 0.5 < silence < pause + 4 * 0.5, silence
        assert d.phi(crossing) == pytest.approx(8.0, rel=1e-9)
        assert d.phi(crossing - 1e-6) < 8.0 <= d.phi(crossing + 1e-9)


def test_time_of_phi_inverts_phi() -> None:
    d = PhiAccrualDetector(0.3, acceptable_pause=0.5, min_std_deviation=0.05)
    rng = random.Random(3)
    t = 0.0
    for _ in range(100):
        d.heartbeat(t)
        t += rng.expovariate(3.0)
    for target in (0.01, 0.5, 1.0, 3.0, 8.0, 16.0, 100.0):
        when = d.time_of_phi(target)
        assert when is not None
        assert d.phi(when) == pytest.approx(target, rel=1e-6), target


def test_window_is_bounded_and_exact() -> None:
    rng = random.Random(4)
    d = PhiAccrualDetector(0.5, max_samples=50)
    t = 0.0
    intervals: list[float] = []
    for _ in range(1234):
        d.heartbeat(t)
        step = rng.uniform(0.1, 2.0)
        intervals.append(step)
        t += step
    assert d.samples == 50
    window = intervals[-51:-1]  # the last interval has not ended with a heartbeat
    assert d.mean == pytest.approx(statistics.fmean(window), rel=1e-12)
    assert d.std_deviation == pytest.approx(statistics.pstdev(window), rel=1e-9)


def test_detector_reset_and_validation() -> None:
    d = PhiAccrualDetector(0.5)
    for i in range(10):
        d.heartbeat(float(i))
    d.reset(2.0)
    assert d.last is None and d.samples == 2 and d.mean == 2.0
    with pytest.raises(ConfigError, match="expected_interval"):
        PhiAccrualDetector(0.0)
    with pytest.raises(ConfigError, match="max_samples"):
        PhiAccrualDetector(0.5, max_samples=1)
    with pytest.raises(ConfigError, match="expected_interval"):
        d.reset(math.inf)


# ---------------------------------------------------------------------------
# Transitions
# ---------------------------------------------------------------------------


def test_join_and_heartbeat_schedule() -> None:
    m = Membership(ME, MY_EPOCH, now=100.0)
    assert m.heartbeat_due(100.0)
    assert m.heard(hb(5, epoch=3), 100.1) == [PeerJoined(5, 3)]
    assert m.heard(hb(5, epoch=3), 100.6) == []
    out = m.make_heartbeat(100.2, {})
    assert not m.heartbeat_due(100.69) and m.heartbeat_due(100.7)
    assert out == Heartbeat(
        ME, MY_EPOCH, 0, INTERVAL, (PeerReport(5, 3, 0, PeerState.ALIVE, 0.0, 1.0),)
    )
    (view,) = m.peers(101.0)
    assert (view.node, view.epoch, view.state, view.heartbeats) == (5, 3, PeerState.ALIVE, 2)
    assert view.last_heard == pytest.approx(0.4) and view.since == pytest.approx(0.9)
    stats = m.statistics()
    assert (stats.received, stats.accepted, stats.joined, stats.peers) == (2, 2, 1, 1)


def test_suspect_recover_die_forget() -> None:
    config = MembershipConfig()
    m = Membership(ME, MY_EPOCH, config, now=0.0)
    last = steady(m, 2, 0.0, 60.0)
    events = run_until(m, last + 9.9)
    assert events == []
    events = run_until(m, last + 10.1)
    assert kinds(events) == ["PeerSuspected"]
    suspected = events[0]
    assert isinstance(suspected, PeerSuspected)
    assert suspected.phi == pytest.approx(config.phi_threshold, rel=1e-6)
    # Heard again: a false suspicion.
    assert m.heard(hb(2), last + 10.5) == [PeerRecovered(2, 1)]
    last = steady(m, 2, last + 11.0, last + 60.0)
    events = run_until(m, last + 100.0)
    assert kinds(events) == ["PeerSuspected", "PeerDied"]
    (view,) = m.peers(last + 100.0)
    assert view.state is PeerState.DEAD
    suspect_at = events[0]
    assert isinstance(suspect_at, PeerSuspected)
    # Dead peers are reported as dead, then forgotten after forget_after.
    assert m.make_heartbeat(last + 100.0, {}).reports[0].state is PeerState.DEAD
    events = run_until(m, last + 400.0)
    assert events == [PeerForgotten(2, 1)]
    assert m.peers(last + 400.0) == []
    stats = m.statistics()
    assert (stats.suspicions, stats.false_suspicions, stats.deaths, stats.forgotten) == (2, 1, 1, 1)
    assert stats.recoveries == 1 and stats.false_deaths == 0


def test_dead_peer_recovers_with_a_fresh_window() -> None:
    m = Membership(ME, MY_EPOCH, now=0.0)
    last = steady(m, 2, 0.0, 20.0)
    assert kinds(run_until(m, last + 30.0)) == ["PeerSuspected", "PeerDied"]
    assert m.heard(hb(2), last + 40.0) == [PeerRecovered(2, 1)]
    assert m.statistics().false_deaths == 1
    # The long silence did not enter the window: phi crosses as soon as for a new peer.
    (view,) = m.peers(last + 41.0)
    assert view.state is PeerState.ALIVE and view.since == pytest.approx(1.0)
    assert kinds(run_until(m, last + 40.0 + 10.7)) == ["PeerSuspected"]


def test_restart_and_stale_heartbeats() -> None:
    m = Membership(ME, MY_EPOCH, now=0.0)
    m.heard(hb(3, epoch=5, incarnation=4), 0.0)
    assert m.heard(hb(3, epoch=4, incarnation=9), 0.5) == []  # older epoch
    assert m.heard(hb(3, epoch=5, incarnation=3), 0.6) == []  # lower incarnation
    assert m.statistics().stale == 2
    assert m.heard(hb(3, epoch=5, incarnation=6), 0.7) == []  # higher incarnation: taken
    assert m.peers(0.7)[0].incarnation == 6
    # A newer epoch restarts the peer, whatever its state, with the new incarnation.
    assert kinds(run_until(m, 30.0)) == ["PeerSuspected", "PeerDied"]
    assert m.heard(hb(3, epoch=6, incarnation=0), 31.0) == [PeerRestarted(3, 5, 6)]
    (view,) = m.peers(31.0)
    assert (view.epoch, view.incarnation, view.state) == (6, 0, PeerState.ALIVE)
    assert m.heard(hb(3, epoch=5, incarnation=99), 31.5) == []
    stats = m.statistics()
    assert (stats.restarts, stats.stale, stats.recoveries) == (1, 3, 0)


def test_own_heartbeats_are_ignored() -> None:
    m = Membership(ME, MY_EPOCH, now=0.0)
    assert m.heard(hb(ME, epoch=MY_EPOCH), 0.0) == []
    assert m.heard(hb(ME, epoch=MY_EPOCH + 1), 0.0) == []
    assert m.peers(0.0) == [] and m.statistics().from_self == 2


def test_link_report_about_us() -> None:
    m = Membership(ME, MY_EPOCH, now=0.0)
    reports = (
        about_me(loss=0.3, burst=4.0),
        PeerReport(9, 1, 0, PeerState.ALIVE, 0.9, 9.0),  # about someone else
    )
    assert m.heard(hb(2, reports=reports), 0.0) == [PeerJoined(2, 1), LinkReported(2, 0.3, 4.0)]
    # About our previous epoch: not about us any more.
    assert m.heard(hb(2, reports=(about_me(epoch=MY_EPOCH - 1),)), 0.5) == []
    assert m.incarnation == 0


def test_refutation_bumps_incarnation_and_makes_a_heartbeat_due() -> None:
    m = Membership(ME, MY_EPOCH, now=0.0)
    m.make_heartbeat(0.0, {})
    assert not m.heartbeat_due(0.1)
    report = about_me(PeerState.SUSPECT, incarnation=0, loss=0.1, burst=1.5)
    events = m.heard(hb(2, reports=(report,)), 0.1)
    assert events == [PeerJoined(2, 1), Refuted(1), LinkReported(2, 0.1, 1.5)]
    assert m.incarnation == 1 and m.heartbeat_due(0.1) and m.deadline() == 0.1
    assert m.make_heartbeat(0.1, {}).incarnation == 1
    # A suspicion of an older incarnation is already refuted.
    assert kinds(m.heard(hb(2, reports=(about_me(PeerState.DEAD, 0),)), 0.2)) == ["LinkReported"]
    # One of a later incarnation (a peer confused about us) is refuted above it.
    events = m.heard(hb(2, reports=(about_me(PeerState.DEAD, 41),)), 0.3)
    assert events[0] == Refuted(42) and m.incarnation == 42
    # Alive reports never refute.
    m.heard(hb(2, reports=(about_me(PeerState.ALIVE, 100),)), 0.4)
    assert m.incarnation == 42 and m.statistics().refutations == 2


def test_incarnation_saturates_without_a_storm_of_refutations() -> None:
    m = Membership(ME, MY_EPOCH, now=0.0)
    m.heard(hb(2, reports=(about_me(PeerState.SUSPECT, 2**32 - 2),)), 0.0)
    assert m.incarnation == 2**32 - 1
    m.make_heartbeat(0.0, {})
    # Nothing is above the last incarnation: no refutation, no heartbeat out of turn.
    for t in (0.1, 0.2, 0.3):
        events = m.heard(hb(2, reports=(about_me(PeerState.SUSPECT, 2**32 - 1),)), t)
        assert not any(isinstance(e, Refuted) for e in events)
        assert not m.heartbeat_due(t)
    assert m.incarnation == 2**32 - 1 and m.statistics().refutations == 1


def test_full_table_evicts_the_peer_dead_longest_else_drops() -> None:
    m = Membership(ME, MY_EPOCH, MembershipConfig(max_peers=3), now=0.0)
    m.heard(hb(10), 0.0)
    m.heard(hb(11), 5.0)
    m.heard(hb(12), 100.0)
    run_until(m, 40.0)  # 10 and 11 die, 10 first
    assert [v.state for v in m.peers(40.0)] == [PeerState.DEAD, PeerState.DEAD, PeerState.ALIVE]
    assert m.heard(hb(13), 40.0) == [PeerForgotten(10, 1), PeerJoined(13, 1)]
    assert m.heard(hb(14), 40.1) == [PeerForgotten(11, 1), PeerJoined(14, 1)]
    assert m.heard(hb(15), 40.2) == []  # everyone alive: dropped
    assert [v.node for v in m.peers(40.2)] == [12, 13, 14]
    stats = m.statistics()
    assert (stats.dropped_full, stats.evicted, stats.forgotten, stats.peers) == (1, 2, 2, 3)


GOOD = PeerReport(ME, MY_EPOCH, 0, PeerState.SUSPECT, 0.5, 2.0)


@pytest.mark.parametrize(
    "bad",
    [
        hb(0),
        hb(2**32),
        hb(-1),
        hb(2, epoch=2**32),
        hb(2, epoch=-1),
        hb(2, incarnation=2**32),
        hb(2, interval=0.0),
        hb(2, interval=-0.5),
        hb(2, interval=math.nan),
        hb(2, interval=math.inf),
        hb(2, interval=1e7),
        hb(True),
        hb(2.0),  # type: ignore[arg-type]
        hb(2, reports=(replace(GOOD, loss=1.5),)),
        hb(2, reports=(replace(GOOD, loss=-0.1),)),
        hb(2, reports=(replace(GOOD, loss=math.nan),)),
        hb(2, reports=(replace(GOOD, mean_burst=0.5),)),
        hb(2, reports=(replace(GOOD, mean_burst=math.inf),)),
        hb(2, reports=(replace(GOOD, node=0),)),
        hb(2, reports=(replace(GOOD, epoch=2**40),)),
        hb(2, reports=(replace(GOOD, state="zombie"),)),  # type: ignore[arg-type]
        hb(2, reports=(GOOD, GOOD)),  # the same node twice
        hb(2, reports=tuple(replace(GOOD, node=n) for n in range(2, 7))),  # > max_peers
        hb(2, reports=[GOOD]),  # type: ignore[arg-type]
        hb(2, reports=("x",)),  # type: ignore[arg-type]
        "not a heartbeat",
        None,
    ],
)
def test_invalid_heartbeats_are_counted_and_dropped(bad: Any) -> None:
    m = Membership(ME, MY_EPOCH, MembershipConfig(max_peers=4), now=0.0)
    assert m.heard(bad, 0.0) == []
    stats = m.statistics()
    assert (stats.invalid, stats.received, stats.accepted, stats.peers) == (1, 1, 0, 0)
    assert m.incarnation == 0


def test_poll_before_deadline_does_nothing_and_at_it_moves() -> None:
    m = Membership(ME, MY_EPOCH, now=0.0)
    m.make_heartbeat(0.0, {})
    rng = random.Random(5)
    for node in range(2, 10):
        steady(m, node, rng.uniform(0.0, 0.5), rng.uniform(1.0, 30.0))
    moved = 0
    for _ in range(1000):
        d = m.deadline()
        assert d is not None
        if d > 1000.0:
            break
        assert m.poll(math.nextafter(d, -math.inf)) == []
        events = m.poll(d)
        due = m.heartbeat_due(d)
        assert events or due
        moved += len(events)
        if due:
            m.make_heartbeat(d, {})
    assert moved == 8 * 3  # every peer suspected, dead, forgotten


def test_make_heartbeat_reports_links() -> None:
    m = Membership(ME, MY_EPOCH, now=0.0)
    for node in (4, 2, 3):
        m.heard(hb(node, epoch=node, incarnation=node * 10), 0.0)
    out = m.make_heartbeat(0.0, {3: (0.2, 3.5), 99: (0.5, 2.0)})
    assert out.reports == (
        PeerReport(2, 2, 20, PeerState.ALIVE, 0.0, 1.0),
        PeerReport(3, 3, 30, PeerState.ALIVE, 0.2, 3.5),
        PeerReport(4, 4, 40, PeerState.ALIVE, 0.0, 1.0),
    )
    for bad in ((-0.1, 1.0), (0.1, 0.5), (math.nan, 1.0)):
        with pytest.raises(ValueError, match="links"):
            m.make_heartbeat(0.0, {2: bad})


def test_two_nodes_on_a_perfect_link() -> None:
    a = Membership(1, 1, now=0.0)
    b = Membership(2, 1, now=0.25)
    events: dict[int, list[MembershipEvent]] = {1: [], 2: []}
    t = 0.0
    for _ in range(400):
        for me, other in ((a, b), (b, a)):
            if me.heartbeat_due(t):
                events[other.node] += other.heard(me.make_heartbeat(t, {other.node: (0.1, 1.2)}), t)
            events[me.node] += me.poll(t)
        t += 0.05
    assert events[1][0] == PeerJoined(2, 1) and events[2][0] == PeerJoined(1, 1)
    assert set(kinds(events[1][1:])) == {"LinkReported"}
    assert LinkReported(2, 0.1, 1.2) in events[1]
    assert a.statistics().suspicions == b.statistics().suspicions == 0


# ---------------------------------------------------------------------------
# A simulated hour
# ---------------------------------------------------------------------------


def iid_loss(rng: random.Random, loss: float) -> Callable[[], bool]:
    return lambda: rng.random() < loss


def gilbert_loss(rng: random.Random, loss: float, burst: float) -> Callable[[], bool]:
    """Gilbert-Elliott loss: the bad state loses every heartbeat, the good none.

    Loss runs are geometric with mean ``burst``; the stationary loss rate is ``loss``.
    """
    r = 1.0 / burst
    q = loss * r / (1.0 - loss)
    bad = False

    def lose() -> bool:
        nonlocal bad
        bad = rng.random() >= r if bad else rng.random() < q
        return bad

    return lose


@dataclass
class Hour:
    suspicions: int
    false_deaths: int
    loss: float
    longest_silence: float
    suspect_after: float
    dead_after: float


def simulate_hour(seed: int, make_loss: Callable[[random.Random], Callable[[], bool]]) -> Hour:
    """Eight peers heartbeat at the default interval for an hour; then peer 100 stops."""
    rng = random.Random(seed)
    m = Membership(ME, MY_EPOCH, now=0.0)
    interval = m.config.heartbeat_interval
    end = 3600.0
    arrivals: list[tuple[float, int]] = []
    sent = 0
    for node in range(100, 108):
        lose = make_loss(rng)
        phase = rng.uniform(0.0, interval)
        for k in range(int(end / interval)):
            sent += 1
            if not lose():
                arrivals.append((phase + k * interval + rng.uniform(0.0, 0.02), node))
    arrivals.sort()
    last_heard: dict[int, float] = {}
    longest = 0.0
    for t, node in arrivals:
        run_until(m, t)
        m.heard(hb(node), t)
        longest = max(longest, t - last_heard.get(node, t))
        last_heard[node] = t
    stats = m.statistics()
    suspicions, false_deaths = stats.suspicions, stats.false_deaths
    # Peer 100 stops; the others go on, perfectly, while we watch.
    stopped = last_heard[100]
    suspect_at = dead_at = math.nan
    t = end
    for _ in range(200):
        for node in range(101, 108):
            m.heard(hb(node), t)
        for event in run_until(m, t):
            assert isinstance(event, PeerSuspected | PeerDied) and event.node == 100, event
            # peers() is sorted by node: 100 comes first; since = seconds in its state.
            entered = t - m.peers(t)[0].since
            if isinstance(event, PeerSuspected):
                suspect_at = entered
            else:
                dead_at = entered
        if not math.isnan(dead_at):
            break
        t += interval
    return Hour(
        suspicions=suspicions,
        false_deaths=false_deaths,
        loss=1.0 - len(arrivals) / sent,
        longest_silence=longest,
        suspect_after=suspect_at - stopped,
        dead_after=dead_at - stopped,
    )


@pytest.mark.parametrize(
    ("name", "make_loss", "suspect_within"),
    [
        ("iid 30 %", lambda rng: iid_loss(rng, 0.3), 13.0),
        ("Gilbert 10 %, burst 4", lambda rng: gilbert_loss(rng, 0.1, 4.0), 13.0),
    ],
    ids=["iid-30", "gilbert-10-burst-4"],
)
def test_simulated_hour_of_lossy_heartbeats(
    name: str, make_loss: Callable[[random.Random], Callable[[], bool]], suspect_within: float
) -> None:
    """At most one false suspicion per peer-hour, in total over 8 peers; a stopped peer is
    suspected within ``suspect_within`` s and declared dead ``dead_after`` (5 s) later."""
    hour = simulate_hour(20240601, make_loss)
    figures = (
        f"{name}: measured loss {hour.loss:.3f}, longest silence {hour.longest_silence:.1f} s, "
        f"{hour.suspicions} false suspicions and {hour.false_deaths} false deaths in 8 "
        f"peer-hours; stopped peer suspect after {hour.suspect_after:.2f} s, "
        f"dead after {hour.dead_after:.2f} s"
    )
    assert hour.suspicions <= 8, figures
    assert hour.false_deaths <= 1, figures
    assert 9.5 <= hour.suspect_after <= suspect_within, figures
    assert hour.dead_after == pytest.approx(hour.suspect_after + 5.0, abs=1e-6), figures


# ---------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------

u32ish = st.one_of(
    st.integers(min_value=0, max_value=6),
    st.integers(min_value=-2, max_value=2**33),
    st.sampled_from([2**32 - 1, 2**32, True]),
)
floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0.0, max_value=2.0),
    st.integers(min_value=-1, max_value=3),
)
states = st.one_of(st.sampled_from(PeerState), st.just("alive"), st.just(None))


@st.composite
def reports(draw: st.DrawFn) -> PeerReport:
    # Deliberately ill-typed values: the transport may hand anything over.
    return PeerReport(
        node=draw(st.one_of(st.just(ME), u32ish)),
        epoch=draw(st.one_of(st.just(MY_EPOCH), u32ish)),
        incarnation=draw(u32ish),
        state=draw(states),  # type: ignore[arg-type]
        loss=draw(floats),
        mean_burst=draw(floats),
    )


@st.composite
def heartbeats(draw: st.DrawFn) -> Heartbeat:
    return Heartbeat(
        node=draw(st.one_of(st.integers(min_value=1, max_value=8), u32ish)),
        epoch=draw(st.one_of(st.integers(min_value=0, max_value=3), u32ish)),
        incarnation=draw(st.one_of(st.integers(min_value=0, max_value=3), u32ish)),
        interval=draw(st.one_of(st.just(0.5), floats)),
        reports=tuple(draw(st.lists(reports(), max_size=5))),
    )


operations = st.lists(
    st.tuples(
        st.sampled_from(["heard", "heard", "poll", "beat", "deadline"]),
        st.floats(min_value=0.0, max_value=30.0),
        heartbeats(),
    ),
    max_size=60,
)


@settings(max_examples=150)
@given(operations, st.integers(min_value=1, max_value=4))
def test_any_sequence_keeps_the_invariants(
    ops: list[tuple[str, float, Heartbeat]], max_peers: int
) -> None:
    config = MembershipConfig(max_peers=max_peers, dead_after=2.0, forget_after=5.0)
    m = Membership(ME, MY_EPOCH, config, now=0.0)
    now = 0.0
    for op, step, heartbeat in ops:
        before = m.deadline()
        now += step
        if op == "heard":
            events = m.heard(heartbeat, now)
            assert all(not isinstance(e, PeerSuspected | PeerDied) for e in events)
        elif op == "poll":
            events = m.poll(now)
            if before is not None and now < before:
                assert events == []
        elif op == "beat":
            out = m.make_heartbeat(now, {})
            assert len(out.reports) <= max_peers and out.incarnation == m.incarnation
            assert m.heard(out, now) == []  # our own
        d = m.deadline()
        assert d is None or math.isfinite(d)
        views = m.peers(now)
        assert len(views) <= max_peers
        assert [v.node for v in views] == sorted({v.node for v in views})
        for v in views:
            assert v.state in set(PeerState)
            assert math.isfinite(v.phi) and v.phi >= 0.0
            assert 1 <= v.node <= 2**32 - 1 and v.node != ME
    stats = m.statistics()
    assert stats.received == stats.accepted + stats.stale + stats.from_self + stats.dropped_full + (
        stats.invalid
    )
    assert stats.recoveries == stats.false_suspicions + stats.false_deaths


def test_detector_rejects_a_non_finite_clock() -> None:
    d = PhiAccrualDetector(0.5)
    with pytest.raises(ValueError, match="now"):
        d.heartbeat(math.inf)
    assert d.last is None


# ---------------------------------------------------------------------------
# Reach register
# ---------------------------------------------------------------------------


def reach_of(m: Membership, node: int, now: float) -> int:
    (view,) = [v for v in m.peers(now) if v.node == node]
    return view.reach


def test_reach_fills_with_steady_heartbeats_and_tolerates_jitter() -> None:
    m = Membership(ME, MY_EPOCH, now=0.0)
    rng = random.Random(5)
    m.heard(hb(2), 0.0)
    assert reach_of(m, 2, 0.0) == 0o1
    t = 0.0
    for n in range(1, 8):
        # jitter of up to 0.2 interval either way (gaps of 0.6..1.4 intervals) is no loss
        t = n * INTERVAL + rng.uniform(-0.2, 0.2) * INTERVAL
        m.heard(hb(2), t)
        assert reach_of(m, 2, t) == (1 << (n + 1)) - 1
    assert reach_of(m, 2, t) == 0o377
    # a duplicate in the same interval changes nothing
    m.heard(hb(2), t + 0.01)
    assert reach_of(m, 2, t + 0.01) == 0o377


def test_a_lost_heartbeat_is_a_zero_bit_that_moves_out() -> None:
    m = Membership(ME, MY_EPOCH, now=0.0)
    for n in range(10):
        if n != 6:
            m.heard(hb(2), n * INTERVAL)
    # heartbeat 6 lost: 8 intervals 2..9 read 1 1 1 1 0 1 1 1 (newest last)
    assert reach_of(m, 2, 9 * INTERVAL) == 0b11110111 == 0o367
    for n in range(10, 16):
        m.heard(hb(2), n * INTERVAL)
    assert reach_of(m, 2, 15 * INTERVAL) == 0o377


def test_reach_decays_while_silent_and_restarts_at_one() -> None:
    m = Membership(ME, MY_EPOCH, now=0.0)
    steady(m, 2, 0.0, 8 * INTERVAL)
    last = 7 * INTERVAL
    # not missed until half an interval late
    assert reach_of(m, 2, last + 1.4 * INTERVAL) == 0o377
    assert reach_of(m, 2, last + 1.6 * INTERVAL) == 0o376
    assert reach_of(m, 2, last + 3.6 * INTERVAL) == 0o370
    assert reach_of(m, 2, last + 8.6 * INTERVAL) == 0
    # heard again after a long silence: only the newest bit
    m.heard(hb(2), last + 20 * INTERVAL)
    assert reach_of(m, 2, last + 20 * INTERVAL) == 0o1
    # the read-out and the arrival agree: two intervals late sets bit 0 after one empty bit
    m.heard(hb(2), last + 22 * INTERVAL)
    assert reach_of(m, 2, last + 22 * INTERVAL) == 0b101


def test_reach_counts_in_the_peers_own_interval() -> None:
    m = Membership(ME, MY_EPOCH, now=0.0)
    for n in range(8):
        m.heard(hb(3, interval=2.0), n * 2.0)
    assert reach_of(m, 3, 14.0) == 0o377
    assert reach_of(m, 3, 16.9) == 0o377  # 1.45 of its intervals: not missed yet
    assert reach_of(m, 3, 17.1) == 0o376


@given(
    st.lists(st.floats(min_value=0.0, max_value=5.0, allow_nan=False), max_size=40),
    st.floats(min_value=1e-3, max_value=10.0),
)
def test_reach_register_is_8_bits_whatever_the_arrivals(gaps: list[float], interval: float) -> None:
    m = Membership(ME, MY_EPOCH, now=0.0)
    t = 0.0
    for gap in gaps:
        t += gap
        m.heard(hb(4, interval=interval), t)
        reach = reach_of(m, 4, t)
        assert 0 <= reach <= 0xFF and reach & 1
        assert 0 <= reach_of(m, 4, t + gap * 3) <= 0xFF
