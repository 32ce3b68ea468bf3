"""The chronyc-like views on real daemons (tests/swarmproc.py): a swarm with one liar.

Four daemons in a private network namespace; three publish readings near
20 and one publishes 35.  Every node must show the liar rejected, with the
reason, in ``sources``, ``explain`` and ``sourcestats``, and its peers with a
reach register in ``peers``.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from swarmproc import FAST_MEMBERSHIP, LocalSwarm, running_swarm, sandbox_problem

from cloudkernel.errors import RequestFailed

_PROBLEM = sandbox_problem()
pytestmark = pytest.mark.skipif(
    _PROBLEM is not None, reason=f"no private network namespace: {_PROBLEM}"
)

LIAR = 4
READINGS = {1: 20.0, 2: 20.3, 3: 19.8, LIAR: 35.0}


@pytest.fixture
def swarm4(tmp_path: Path) -> Iterator[LocalSwarm]:
    with running_swarm(tmp_path, 4, port=47790, extra=FAST_MEMBERSHIP) as swarm:
        yield swarm


def ck(swarm: LocalSwarm, node: int, *args: str) -> subprocess.CompletedProcess[str]:
    return swarm.cli(node, *args)


def test_the_liar_is_shown_rejected_with_its_reason(swarm4: LocalSwarm) -> None:
    def publish_round(n: int) -> None:
        for node, value in READINGS.items():
            with swarm4.client(node) as client:
                client.publish("room/temp", value + 0.01 * n, half_life=30.0)

    def fused_everywhere() -> bool:
        for node in READINGS:
            with swarm4.client(node) as client:
                try:
                    estimate = client.get("room/temp")
                except RequestFailed:
                    return False
                if estimate["state"] != "ok" or estimate["sources_total"] != 4:
                    return False
        return True

    publish_round(0)
    swarm4.wait_for(fused_everywhere, 15.0, "the four readings were not fused on every node")
    # More rounds, more than a second apart: each is a sample for sourcestats.
    for n in (1, 2):
        time.sleep(1.1)
        publish_round(n)
    time.sleep(1.5)

    for node in READINGS:
        done = ck(swarm4, node, "sources", "room/temp", "--json")
        assert done.returncode == 0, done.stderr
        view = json.loads(done.stdout)
        assert view["schema"] == "cloudkernel.sources/1" and view["state"] == "ok"
        assert view["policy"]["min_sources"] == 3
        assert 19.8 <= view["value"] <= 20.4
        rows = {row["source"]: row for row in view["sources"]}
        assert set(rows) == set(READINGS)
        assert rows[LIAR]["symbol"] in ("x", "~")
        assert rows[LIAR]["reason"] in ("falseticker", "distrusted")
        assert rows[LIAR]["weight"] == 0.0
        assert rows[LIAR]["offset"] == pytest.approx(15.0, abs=0.6)
        assert all(rows[s]["symbol"] in ("*", "+") for s in (1, 2, 3))

    human = ck(swarm4, 1, "sources", "room/temp", "-v")
    assert human.returncode == 0, human.stderr
    liar_line = next(line for line in human.stdout.splitlines() if line[3:].startswith(f"{LIAR} "))
    assert liar_line[0] in "x~" and re.search(r"\[\+1[45]\.\d+\]", liar_line), liar_line
    assert "falseticker: outside the largest set" in human.stdout  # the -v legend

    explained = ck(swarm4, 2, "explain", "room/temp")
    assert explained.returncode == 0, explained.stderr
    liar_sentence = next(
        line for line in explained.stdout.splitlines() if line.startswith(f"  source {LIAR} ")
    )
    assert "not used: a falseticker" in liar_sentence or "not used: distrusted" in liar_sentence
    assert "weight " in explained.stdout and " x link " in explained.stdout
    assert "up to 1 of its 4 fresh readings may lie" in explained.stdout

    stats = ck(swarm4, 3, "sourcestats", "room/*", "--json")
    assert stats.returncode == 0, stats.stderr
    document = json.loads(stats.stdout)
    assert document["schema"] == "cloudkernel.sourcestats/1"
    rows = {row["source"]: row for row in document["sourcestats"]}
    assert set(rows) == set(READINGS)
    assert all(row["samples"] >= 2 for row in rows.values())
    assert rows[LIAR]["used"] == 0.0 and rows[LIAR]["offset"] == pytest.approx(15.0, abs=0.6)
    assert all(abs(rows[s]["offset"]) < 0.6 for s in (1, 2, 3))

    # One source alone is no consensus: printed, then exit 2.
    with swarm4.client(1) as client:
        client.publish("lonely/topic", 1.0)
    lonely = ck(swarm4, 1, "sources", "lonely/topic")
    assert lonely.returncode == 2, lonely.stderr
    assert "state no-consensus (too-few-sources)" in lonely.stdout
    assert ck(swarm4, 1, "explain", "lonely/topic").returncode == 2
    assert ck(swarm4, 1, "sources", "no/such/topic").returncode == 4

    peers = ck(swarm4, 1, "peers", "--json")
    assert peers.returncode == 0, peers.stderr
    heard = {row["node"]: row for row in json.loads(peers.stdout)["peers"]}
    assert set(heard) == {2, 3, 4}
    # heartbeats every 0.1 s: the newest intervals were heard
    assert all(row["reach"] & 0b1100 for row in heard.values()), heard
    table = ck(swarm4, 1, "peers", "-v")
    assert table.returncode == 0 and "Reach" in table.stdout and "in octal" in table.stdout
