"""The peer-system soak agents (bench/soak_agents/): schedule, plan, and live runs.

* The publishing schedule is driven by a fake clock: absolute slots, stale
  slots skipped and counted, never a burst.
* For LCM and for Zenoh, three agents (nodes 1..3) run a short plan in one
  private network namespace (loopback multicast): every message published
  must be received by every other node, once, with a latency in (0, 1 s),
  and every agent must exit 0 on time.  Loopback drops nothing at these
  rates, so no slack is allowed.  Skipped when the library is not installed
  or no private network namespace can be made.
* SIGTERM makes an agent flush its records and exit 0.
"""

from __future__ import annotations

import importlib
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from swarmproc import sandbox_problem

from cloudkernel.sandbox import PrivateNetwork

AGENTS_DIR = Path(__file__).resolve().parent.parent / "bench" / "soak_agents"
if str(AGENTS_DIR) not in sys.path:
    sys.path.insert(0, str(AGENTS_DIR))

import agent_runtime  # noqa: E402
from schedule import TopicSchedule, next_step, slot_count, slot_time  # noqa: E402

_SANDBOX_PROBLEM = sandbox_problem()

# --- the schedule, on a fake clock ---------------------------------------------


def test_slot_count_counts_the_slots_strictly_before_the_end() -> None:
    assert slot_count(50.0, 2.0) == 100
    assert slot_count(0.5, 3.0) == 2  # slots at 0 s and 2 s
    # 0.3 * 10 rounds to 3.0000000000000004: slot 3 would be at exactly 0.3 s
    assert slot_count(10.0, 0.3) == 3
    assert slot_count(50.0, 0.0) == 0
    assert slot_count(0.0, 2.0) == 0


def test_an_agent_on_time_sends_every_slot_at_its_time() -> None:
    schedule = TopicSchedule(t0=100.0, rate=50.0, duration=2.0)
    now = 99.5
    sent: list[tuple[int, float]] = []
    for _ in range(1000):  # bounded: 100 sends and 100 sleeps end it
        wait = schedule.poll(now)
        if wait is None:
            break
        if wait > 0:
            now += wait
            continue
        sent.append((schedule.sent(), now))
    assert [seq for seq, _ in sent] == list(range(100))
    assert all(at == pytest.approx(slot_time(100.0, 50.0, seq)) for seq, at in sent)
    assert schedule.missed == 0 and schedule.done


def test_a_slot_late_by_more_than_one_period_is_skipped_and_counted() -> None:
    # period 20 ms; at t0 + 50 ms slots 0 (50 ms late) and 1 (30 ms) are stale
    step = next_step(t0=0.0, rate=50.0, total=100, index=0, now=0.05)
    assert (step.index, step.skipped, step.wait) == (2, 2, 0.0)
    # exactly one period late is still sent
    step = next_step(t0=0.0, rate=50.0, total=100, index=0, now=0.02)
    assert (step.index, step.skipped) == (0, 0)
    # before t0: wait for slot 0
    step = next_step(t0=10.0, rate=50.0, total=100, index=0, now=9.75)
    assert (step.index, step.skipped) == (0, 0)
    assert step.wait == pytest.approx(0.25)
    # long after the end: everything left is skipped
    step = next_step(t0=0.0, rate=50.0, total=100, index=40, now=1000.0)
    assert (step.index, step.skipped, step.wait) == (100, 60, 0.0)


def test_a_finished_schedule_sends_nothing() -> None:
    schedule = TopicSchedule(t0=0.0, rate=10.0, duration=0.0)
    assert schedule.poll(0.0) is None
    with pytest.raises(RuntimeError):
        schedule.sent()


@given(
    rate=st.floats(min_value=1.0, max_value=500.0),
    stalls=st.lists(st.floats(min_value=0.0, max_value=0.5), min_size=1, max_size=40),
)
def test_stalls_never_cause_a_burst_and_every_slot_is_sent_or_missed(
    rate: float, stalls: list[float]
) -> None:
    """The agent is stalled for a while after each send (the stalls cycle);
    whatever they are, each slot is sent once or counted missed, in order,
    never before its time nor more than one period after it, and no more
    than two slots go out at one instant (the second only when the first
    was exactly one period late)."""
    t0, duration = 5.0, 1.0
    schedule = TopicSchedule(t0, rate, duration)
    now = t0 - 0.1
    sent: list[tuple[int, float]] = []
    for turn in range(10 * schedule.total + 10):  # bounded
        wait = schedule.poll(now)
        if wait is None:
            break
        if wait > 0:
            now += wait
            continue
        sent.append((schedule.sent(), now))
        now += stalls[turn % len(stalls)]
    assert schedule.done
    seqs = [seq for seq, _ in sent]
    assert seqs == sorted(set(seqs))
    assert len(sent) + schedule.missed == schedule.total == slot_count(rate, duration)
    period = 1 / rate
    for seq, at in sent:
        late = at - slot_time(t0, rate, seq)
        assert -1e-9 <= late <= period + 1e-9
    assert max(Counter(at for _, at in sent).values()) <= 2


# --- the plan ------------------------------------------------------------------


def write_plan(path: Path, **overrides: Any) -> dict[str, Any]:
    plan: dict[str, Any] = {
        "t0": time.monotonic() + 1.0,
        "duration": 2.0,
        "drain": 1.0,
        "nodes": [1, 2, 3],
        "publishers": [
            {"node": 1, "topic": "soak/critical/0", "class": "critical", "rate": 50.0},
            {"node": 1, "topic": "soak/normal/0", "class": "normal", "rate": 50.0},
        ],
        "seed": 7,
    }
    plan.update(overrides)
    path.write_text(json.dumps(plan))
    return plan


def test_a_plan_where_a_node_publishes_a_topic_twice_is_refused(tmp_path: Path) -> None:
    publisher = {"node": 1, "topic": "soak/normal/0", "class": "normal", "rate": 5.0}
    write_plan(tmp_path / "plan.json", publishers=[publisher, publisher])
    with pytest.raises(agent_runtime.PlanError, match="twice"):
        agent_runtime.load_plan(tmp_path / "plan.json")


def test_messages_round_trip_and_fit_the_size_budget() -> None:
    data = agent_runtime.encode_message(3, 41, 123_456_789, 0.25)
    assert len(data) < 64
    assert agent_runtime.decode_message(data) == (3, 41, 123_456_789, 0.25)
    assert agent_runtime.decode_message(data + b"x") is None


# --- live runs -----------------------------------------------------------------


@dataclass
class Records:
    """One agent's record file, parsed."""

    published: dict[tuple[str, int, int], int] = field(default_factory=dict)
    received: dict[tuple[str, int, int], int] = field(default_factory=dict)
    duplicates: int = 0
    failed: list[str] = field(default_factory=list)
    missed: dict[str, int] = field(default_factory=dict)


def read_records(path: Path) -> Records:
    """Parse ``P/R/F/S`` lines; keys are (topic, source node, seq), values t_ns."""
    records = Records()
    for line in path.read_text().splitlines():
        kind, t_ns, topic, *rest = line.split(",")
        if kind in ("P", "R"):
            key = (topic, int(rest[0]), int(rest[1]))
            table = records.published if kind == "P" else records.received
            if key in table:
                records.duplicates += 1
            table[key] = int(t_ns)
        elif kind == "F":
            records.failed.append(line)
        elif kind == "S":
            records.missed[topic] = int(rest[0])
        else:
            raise AssertionError(f"{path}: unknown record {line!r}")
    return records


def library_problem(module: str) -> str | None:
    """Why the agent for ``module`` cannot run here, or None."""
    try:
        # imported, not only found: the lcm wheel links to the system's GLib
        importlib.import_module(module)
    except ImportError as exc:
        return f"{module} cannot be imported ({exc}); pip install -e '.[peers]'"
    if _SANDBOX_PROBLEM is not None:
        return f"no private network namespace: {_SANDBOX_PROBLEM}"
    return None


def start_agents(
    net: PrivateNetwork, system: str, plan_path: Path, base: Path, nodes: list[int]
) -> dict[int, subprocess.Popen[bytes]]:
    procs = {}
    for node in nodes:
        log = open(base / f"node{node}.log", "wb")
        procs[node] = net.popen(
            [
                sys.executable,
                str(AGENTS_DIR / f"{system}_agent.py"),
                "--plan",
                str(plan_path),
                "--node",
                str(node),
                "--out",
                str(base / f"node{node}.csv"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
    return procs


def wait_all(
    procs: dict[int, subprocess.Popen[bytes]], deadline: float, base: Path
) -> dict[int, int]:
    codes = {}
    try:
        for node, proc in procs.items():
            codes[node] = proc.wait(max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        logs = {n: (base / f"node{n}.log").read_text(errors="replace") for n in procs}
        raise AssertionError(f"an agent did not exit by its deadline; logs: {logs}") from None
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return codes


#: seconds from starting the agents to t0: the processes start, open their
#: sessions and (zenoh) find each other and learn the subscriptions before the
#: first slot
LEAD = {"lcm": 1.5, "zenoh": 4.0}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("system", "module"), [("lcm", "lcm"), ("zenoh", "zenoh")], ids=["lcm", "zenoh"]
)
def test_three_agents_on_loopback_deliver_every_message(
    system: str, module: str, tmp_path: Path
) -> None:
    problem = library_problem(module)
    if problem:
        pytest.skip(problem)
    plan_path = tmp_path / "plan.json"
    plan = write_plan(
        plan_path,
        t0=time.monotonic() + LEAD[system],
        publishers=[
            {"node": 1, "topic": "soak/critical/0", "class": "critical", "rate": 50.0},
            {"node": 1, "topic": "soak/normal/0", "class": "normal", "rate": 50.0},
            # a second publisher on a topic: sources are told apart by node
            {"node": 2, "topic": "soak/normal/0", "class": "normal", "rate": 50.0},
        ],
    )
    nodes = [1, 2, 3]
    end = plan["t0"] + plan["duration"] + plan["drain"]
    with PrivateNetwork() as net:
        procs = start_agents(net, system, plan_path, tmp_path, nodes)
        codes = wait_all(procs, end + 10.0, tmp_path)
    logs = {n: (tmp_path / f"node{n}.log").read_text(errors="replace") for n in nodes}
    assert codes == dict.fromkeys(nodes, 0), logs
    records = {n: read_records(tmp_path / f"node{n}.csv") for n in nodes}

    slots = slot_count(50.0, plan["duration"])
    for node, own_topics in ((1, ["soak/critical/0", "soak/normal/0"]), (2, ["soak/normal/0"])):
        mine = records[node]
        assert not mine.failed, mine.failed
        assert sorted(mine.missed) == own_topics
        for topic in own_topics:
            sent = sum(1 for t, _, _ in mine.published if t == topic)
            assert sent > 0
            assert sent + mine.missed[topic] == slots
    for sender in (1, 2):
        for receiver in nodes:
            if receiver == sender:
                continue
            got = records[receiver]
            assert got.duplicates == 0
            for key, sent_ns in records[sender].published.items():
                assert key in got.received, f"node {receiver} never got {key}; logs: {logs}"
                latency = got.received[key] - sent_ns
                assert 0 < latency < 1_000_000_000, (key, latency)
    for node in nodes:
        assert all(src != node for _, src, _ in records[node].received)
        assert records[node].received.keys() <= {key for n in nodes for key in records[n].published}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("system", "module"), [("lcm", "lcm"), ("zenoh", "zenoh")], ids=["lcm", "zenoh"]
)
def test_sigterm_flushes_the_records_and_exits_0(system: str, module: str, tmp_path: Path) -> None:
    problem = library_problem(module)
    if problem:
        pytest.skip(problem)
    plan_path = tmp_path / "plan.json"
    write_plan(plan_path, t0=time.monotonic() + 0.5, duration=60.0)
    with PrivateNetwork() as net:
        procs = start_agents(net, system, plan_path, tmp_path, [1])
        try:
            time.sleep(1.5)  # a second of publishing
            procs[1].send_signal(signal.SIGTERM)
        finally:
            codes = wait_all(procs, time.monotonic() + 10.0, tmp_path)
    assert codes == {1: 0}
    records = read_records(tmp_path / "node1.csv")
    assert len(records.published) > 20
    # the S lines are written on SIGTERM too (their counts depend on the load)
    assert sorted(records.missed) == ["soak/critical/0", "soak/normal/0"]
