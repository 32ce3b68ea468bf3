"""The soak harness's pure parts: chaos schedule, workload plan, record analysis."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import pytest

from cloudkernel.cluster.chaos import ChaosError, schedule
from cloudkernel.cluster.plan import Plan, PlanError, make_plan, next_slot, truth
from cloudkernel.cluster.records import Availability, Interval, analyse, parse_records

# -- chaos ---------------------------------------------------------------------


def test_chaos_schedule_repeats_from_its_seed_and_alternates_kinds() -> None:
    nodes = list(range(1, 9))
    a = schedule(seed=3, nodes=nodes, duration=300, every=30, down_for=10)
    b = schedule(seed=3, nodes=nodes, duration=300, every=30, down_for=10)
    c = schedule(seed=4, nodes=nodes, duration=300, every=30, down_for=10)
    assert a == b
    assert a != c
    assert [e.kind for e in a[:4]] == ["kill", "partition", "kill", "partition"]
    assert [e.at for e in a] == [30.0 * k for k in range(1, 10)]
    for event in a:
        assert event.ends <= 300
        assert set(event.nodes) <= set(nodes)
        if event.kind == "kill":
            assert len(event.nodes) == 1
        else:
            # a minority: the rest of the swarm stays whole
            assert 1 <= len(event.nodes) <= len(nodes) // 3


def test_chaos_events_never_overlap_or_outlast_the_run() -> None:
    events = schedule(seed=1, nodes=[1, 2, 3], duration=100, every=20, down_for=19)
    for earlier, later in itertools.pairwise(events):
        assert earlier.ends <= later.at
    assert events[-1].ends <= 100
    assert schedule(seed=1, nodes=[1, 2], duration=10, every=20, down_for=5) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"nodes": [1]}, "at least 2 nodes"),
        ({"down_for": 30.0}, "shorter than every"),
        ({"every": 0.0}, "positive"),
        ({"kinds": ("reboot",)}, "unknown chaos kind"),
    ],
)
def test_chaos_settings_out_of_range_are_refused(kwargs: dict[str, Any], message: str) -> None:
    settings: dict[str, Any] = {
        "seed": 0,
        "nodes": [1, 2, 3],
        "duration": 100.0,
        "every": 30.0,
        "down_for": 5.0,
    }
    settings.update(kwargs)
    with pytest.raises(ChaosError, match=message):
        schedule(**settings)


# -- plan ----------------------------------------------------------------------


def test_plan_spreads_distinct_publishers_over_the_nodes_and_round_trips() -> None:
    plan = make_plan(nodes=range(1, 9), t0=100.0, duration=60, liars=[8], seed=2)
    by_topic: dict[str, list[int]] = {}
    for p in plan.publishers:
        by_topic.setdefault(p.topic, []).append(p.node)
        assert p.liar == (p.node == 8)
    assert len(by_topic) == 6
    for publishers in by_topic.values():
        assert len(set(publishers)) == 4
    assert plan.rate() == pytest.approx(2 * 4 * (10 + 10 + 5))
    again = Plan.from_dict(plan.to_dict())
    assert again == plan
    with pytest.raises(PlanError):
        make_plan(nodes=[1, 2, 3], t0=0, duration=1)


def test_publishers_start_at_seeded_phases_unless_aligned() -> None:
    plan = make_plan(nodes=range(1, 9), t0=100.0, duration=60, seed=2)
    phases = [p.phase for p in plan.publishers]
    # within each publisher's period, and not phase-locked to one another
    assert all(0.0 <= p.phase < 1.0 / p.rate for p in plan.publishers)
    assert len(set(phases)) == len(phases)
    assert plan.publishers[0].start(plan.t0) == 100.0 + phases[0]
    assert make_plan(nodes=range(1, 9), t0=100.0, duration=60, seed=2) == plan
    aligned = make_plan(nodes=range(1, 9), t0=100.0, duration=60, seed=2, aligned=True)
    assert {p.phase for p in aligned.publishers} == {0.0}
    # a plan from before phases existed reads as aligned
    old = plan.to_dict()
    for p in old["publishers"]:
        del p["phase"]
    assert {p.phase for p in Plan.from_dict(old).publishers} == {0.0}


@pytest.mark.parametrize(
    "broken",
    [
        {},
        {"t0": "x", "duration": 1, "drain": 1, "nodes": [1], "publishers": []},
        {
            "t0": 0,
            "duration": 1,
            "drain": 1,
            "nodes": [1],
            "publishers": [{"node": 2, "topic": "a", "class": "normal", "rate": 1}],
        },
        {
            "t0": 0,
            "duration": 1,
            "drain": 1,
            "nodes": [1],
            "publishers": [{"node": 1, "topic": "a", "class": "urgent", "rate": 1}],
        },
        {
            "t0": 0,
            "duration": 1,
            "drain": 1,
            "nodes": [1],
            "publishers": [{"node": 1, "topic": "a", "class": "normal", "rate": 10, "phase": 0.1}],
        },
    ],
)
def test_a_broken_plan_is_a_plan_error(broken: dict[str, Any]) -> None:
    with pytest.raises(PlanError):
        Plan.from_dict(broken)


def test_next_slot_never_bursts_to_catch_up() -> None:
    # on time or less than a period late: publish the slot as planned
    assert next_slot(0.0, 10.0, 5, 0.55) == (5, 0)
    assert next_slot(0.0, 10.0, 5, 0.65) == (5, 0)
    # 3 periods late: resume at the latest slot due, counting the skipped ones
    assert next_slot(0.0, 10.0, 5, 0.85) == (8, 3)
    # before t0 nothing is skipped
    assert next_slot(10.0, 10.0, 0, 5.0) == (0, 0)


# -- records -------------------------------------------------------------------


def _ns(t: float) -> int:
    return round(t * 1e9)


def _plan() -> Plan:
    return Plan.from_dict(
        {
            "t0": 100.0,
            "duration": 10.0,
            "drain": 1.0,
            "nodes": [1, 2, 3],
            "publishers": [
                {"node": 1, "topic": "soak/critical/0", "class": "critical", "rate": 1.0},
                {
                    "node": 3,
                    "topic": "soak/critical/0",
                    "class": "critical",
                    "rate": 1.0,
                    "liar": True,
                },
            ],
        }
    )


def test_records_join_into_delivery_latency_and_duplicates() -> None:
    plan = _plan()
    topic = "soak/critical/0"
    n1 = [f"P,{_ns(100 + k)},{topic},1,{k}" for k in range(10)]
    # node 2 gets every signal 2 ms later, one of them twice
    n2 = [f"W,{_ns(90)},up"]
    n2 += [f"R,{_ns(100 + k + 0.002)},{topic},1,{k}" for k in range(10)]
    n2 += [f"R,{_ns(104.5)},{topic},1,4"]
    # node 3 misses seq 7 and has one line it cannot parse
    n3 = [f"W,{_ns(90)},up"]
    n3 += [f"R,{_ns(100 + k + 0.004)},{topic},1,{k}" for k in range(10) if k != 7]
    n3 += ["R,not-a-number"]
    records = {1: parse_records(1, n1), 2: parse_records(2, n2), 3: parse_records(3, n3)}
    figures = analyse(plan, records, Availability(), window=lambda c: 1.0)
    critical = figures.classes["critical"]
    assert critical.expected == 20
    assert critical.delivered == 19
    assert critical.duplicates == 1
    assert critical.examples_lost == [(7.0, topic, 1, 7, 3)]
    assert max(critical.latencies) == pytest.approx(0.004, abs=1e-6)
    assert figures.bad_lines == 1
    expected, delivered, p99 = figures.timeline[7]
    assert (expected, delivered) == (2, 1)
    assert p99 == pytest.approx(0.002, abs=1e-6)


def test_records_tell_the_latency_of_signals_rebuilt_by_fec_apart() -> None:
    plan = _plan()
    topic = "soak/critical/0"
    n1 = [f"P,{_ns(100 + k)},{topic},1,{k}" for k in range(10)]
    # node 2: seqs 3 and 8 rebuilt (flag 1) 12 ms late; the rest direct (flag 0)
    n2 = [f"W,{_ns(90)},up"]
    n2 += [
        f"R,{_ns(100 + k + (0.012 if k in (3, 8) else 0.001))},{topic},1,{k},{int(k in (3, 8))}"
        for k in range(10)
    ]
    # node 3's agent does not tell (a peer system's): nothing counts as rebuilt
    n3 = [f"W,{_ns(90)},up"] + [f"R,{_ns(100 + k + 0.001)},{topic},1,{k}" for k in range(10)]
    records = {1: parse_records(1, n1), 2: parse_records(2, n2), 3: parse_records(3, n3)}
    critical = analyse(plan, records, Availability(), window=lambda c: 1.0).classes["critical"]
    assert critical.delivered == 20
    assert critical.recovered_latencies == pytest.approx([0.012, 0.012], abs=1e-6)
    summary = critical.summary()
    assert summary["recovered"] == 2
    assert summary["recovered_latency_ms"]["p50"] == pytest.approx(12.0, abs=1e-3)
    assert summary["latency_ms"]["max"] == pytest.approx(12.0, abs=1e-3)


def test_records_expect_nothing_of_a_node_down_or_cut_off() -> None:
    plan = _plan()
    topic = "soak/critical/0"
    n1 = [f"P,{_ns(100 + k)},{topic},1,{k}" for k in range(10)]
    n2 = [f"W,{_ns(90)},up"]
    n2 += [f"R,{_ns(100 + k + 0.002)},{topic},1,{k}" for k in range(10) if not 3 <= k <= 5]
    n3 = [f"W,{_ns(90)},up"]
    n3 += [f"R,{_ns(100 + k + 0.002)},{topic},1,{k}" for k in range(10) if k < 6]
    records = {1: parse_records(1, n1), 2: parse_records(2, n2), 3: parse_records(3, n3)}
    availability = Availability()
    availability.mark_down(2, 102.5, 105.5)  # killed and restarted
    availability.partitions.append((Interval(105.5, math.inf), frozenset({3})))
    figures = analyse(plan, records, availability, window=lambda c: 1.0, settle=0.0)
    critical = figures.classes["critical"]
    assert critical.delivered == critical.expected
    # node 2: 10 - 3 (down from 102.5, within the window of seq 2, to 105.5)
    # node 3: seqs 0..4 (seq 5 at 105 has its window cut by the partition)
    assert critical.expected == (10 - 4) + 5


def test_records_a_watch_gap_is_not_counted_as_loss() -> None:
    plan = _plan()
    topic = "soak/critical/0"
    n1 = [f"P,{_ns(100 + k)},{topic},1,{k}" for k in range(10)]
    n2 = [f"W,{_ns(90)},up", f"W,{_ns(104.1)},down", f"W,{_ns(106.9)},up"]
    n2 += [f"R,{_ns(100 + k + 0.002)},{topic},1,{k}" for k in range(10) if k not in (4, 5, 6)]
    records = {1: parse_records(1, n1), 2: parse_records(2, n2)}
    figures = analyse(plan, records, Availability(), window=lambda c: 1.0, settle=0.0)
    critical = figures.classes["critical"]
    assert (critical.expected, critical.delivered) == (7, 7)


def test_consensus_error_and_hull_from_estimates() -> None:
    plan = _plan()
    t = 105.0
    lines = [
        f"E,{_ns(t)},soak/critical/0,{truth(t) + 0.1},{truth(t) - 0.2},{truth(t) + 0.2},ok",
        f"E,{_ns(t)},soak/critical/0,{truth(t) + 0.5},{truth(t) - 0.2},{truth(t) + 0.2},ok",
        f"E,{_ns(t)},soak/critical/0,{truth(t)},,,ok",
    ]
    figures = analyse(plan, {2: parse_records(2, lines)}, Availability(), window=lambda c: 1.0)
    assert figures.consensus["estimates"] == 3
    assert figures.consensus["abs_error"]["max"] == pytest.approx(0.5)
    assert figures.consensus["inside_honest_hull"] == 0.5


@pytest.mark.parametrize("text", ["", "[1, 2]", '{"t0": 1}', "\xff\xfe", '{"publishers": "x"}'])
def test_the_agent_refuses_a_bad_plan_with_a_message_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    from cloudkernel.cluster import agent

    plan = tmp_path / "plan.json"
    plan.write_text(text, errors="surrogateescape")
    argv = ["--plan", str(plan), "--node", "1", "--out", str(tmp_path / "r.csv")]
    assert agent.main([*argv, "--socket", str(tmp_path / "none.sock")]) == 2
    assert "bad plan" in capsys.readouterr().err
    assert agent.main(["--plan", str(tmp_path / "missing.json"), *argv[2:], "--socket", "x"]) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--loss", "2"], "out of range"),
        (["--chaos-every", "5", "--chaos-down", "10"], "shorter than every"),
        (["--chaos-every", "30", "--chaos-kinds", "reboot"], "unknown kind"),
    ],
)
def test_soak_refuses_bad_options_as_usage_errors(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchload import load_bench

    soak = load_bench("soak.py", "soak_under_test")
    with pytest.raises(SystemExit) as exit_:
        soak.parse_args(["--nodes", "3", *args])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
