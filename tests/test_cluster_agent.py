"""The soak agent against real daemons (loopback in a private network, no root needed)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from swarmproc import ROOT, sandbox_problem

from cloudkernel.cluster.nodes import ClusterNodes
from cloudkernel.cluster.plan import Plan, make_plan
from cloudkernel.cluster.records import Availability, NodeRecords, analyse, parse_records
from cloudkernel.sandbox import PrivateNetwork

problem = sandbox_problem()
pytestmark = pytest.mark.skipif(problem is not None, reason=problem or "")
IDS = [1, 2, 3]


class _Loopback:
    """All nodes in one private network, on loopback: no impairment, no root."""

    def __init__(self) -> None:
        self.net = PrivateNetwork()

    def command(self, node: int, argv: Sequence[str]) -> list[str]:
        return self.net.command(argv)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ClusterNodes]:
    network = _Loopback()
    nodes = ClusterNodes(network, tmp_path / "cluster", IDS, interface="lo", log_level="warning")
    try:
        nodes.start_all()
        yield nodes
    finally:
        nodes.close()
        network.net.close()


def _agents(nodes: ClusterNodes, plan: Plan, home: Path) -> dict[int, subprocess.Popen[bytes]]:
    path = home / "plan.json"
    path.write_text(json.dumps(plan.to_dict()))
    return {
        node: subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cloudkernel.cluster.agent",
                "--plan",
                str(path),
                "--node",
                str(node),
                "--out",
                str(home / f"records-{node}.csv"),
                "--socket",
                nodes.socket(node),
            ],
            cwd=ROOT,
        )
        for node in IDS
    }


def _records(home: Path) -> dict[int, NodeRecords]:
    return {n: parse_records(n, (home / f"records-{n}.csv").read_text().splitlines()) for n in IDS}


def test_every_signal_reaches_every_other_node_and_the_estimates_follow_the_truth(
    cluster: ClusterNodes, tmp_path: Path
) -> None:
    plan = make_plan(
        nodes=IDS,
        t0=time.monotonic() + 2.0,
        duration=4.0,
        drain=1.0,
        topics_per_class=1,
        publishers_per_topic=3,
        rates={"critical": 20.0, "normal": 20.0, "bulk": 10.0},
    )
    agents = _agents(cluster, plan, tmp_path)
    for agent in agents.values():
        assert agent.wait(30) == 0
    records = _records(tmp_path)
    for rec in records.values():
        assert rec.bad_lines == 0
        assert rec.failed == []
        # 20 + 20 + 10 a second for 4 s, on a schedule: none skipped on a quiet link
        assert len(rec.published) == pytest.approx(200, abs=3)
    figures = analyse(plan, records, Availability(), window=lambda c: 1.0)
    for name, c in figures.classes.items():
        assert c.expected > 0, name
        assert c.delivered == c.expected, (name, c.examples_lost)
        assert c.duplicates == 0
        assert 0 < min(c.latencies) and max(c.latencies) < 1.0
    consensus = figures.consensus
    assert consensus["estimates"] >= 3 * 2 * 3  # nodes x float topics x ~seconds
    assert consensus["abs_error"]["p99"] < 0.5  # noise sigma 0.1, truth moves slowly
    assert consensus["inside_honest_hull"] == 1.0


def test_the_agent_rides_out_its_daemon_being_killed_and_restarted(
    cluster: ClusterNodes, tmp_path: Path
) -> None:
    plan = make_plan(
        nodes=IDS,
        t0=time.monotonic() + 1.0,
        duration=6.0,
        drain=1.0,
        topics_per_class=1,
        publishers_per_topic=3,
    )
    agents = _agents(cluster, plan, tmp_path)
    time.sleep(1.0 + 2.0)
    cluster.kill(2)
    time.sleep(1.0)
    cluster.start(2)
    cluster.wait_ready(2)
    for agent in agents.values():
        assert agent.wait(30) == 0
    assert cluster.check() == []  # the kill was ours: no crash recorded
    records = _records(tmp_path)
    node2 = records[2]
    assert node2.failed, "publishes while the daemon was down are recorded as failed"
    ups = [t for t, up in node2.watch if up]
    assert len(ups) >= 2, "the watch is opened again once the daemon is back"
    # after the restart node 2 publishes and receives again
    restarted = ups[-1]
    assert any(t > restarted for t, *_ in node2.published)
    assert any(t > restarted for t, *_ in node2.received)
