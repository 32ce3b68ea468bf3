"""Config reload of a running daemon: SIGHUP and ``cloudkernel reload`` (tests/swarmproc.py).

A valid file's live settings take effect at once (a topic's estimate is
rebuilt from the readings it holds); settings that need a restart keep their
running values and are named; a bad file changes nothing, is logged, and is
counted in the status.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from swarmproc import LocalSwarm, running_swarm, sandbox_problem

pytestmark = pytest.mark.skipif(
    (problem := sandbox_problem()) is not None,
    reason=f"no private network namespace: {problem}",
)

_PORTS = iter(range(47900, 47950))


@pytest.fixture
def node(tmp_path: Path) -> Iterator[LocalSwarm]:
    with running_swarm(tmp_path, 1, port=next(_PORTS)) as swarm:
        yield swarm


def cli(swarm: LocalSwarm, *args: str) -> subprocess.CompletedProcess[str]:
    return swarm.cli(1, *args)


def reloads(swarm: LocalSwarm) -> dict[str, object]:
    with swarm.client(1) as client:
        result: dict[str, object] = client.status()["reload"]
    return result


def test_sighup_applies_live_settings_and_rebuilds_topics(node: LocalSwarm) -> None:
    with node.client(1) as client:
        for source_value in (20.0, 20.2):
            client.publish("temp", source_value)
        # One source (this node) and the default min_sources of 3: no consensus.
        assert client.get("temp")["state"] != "ok"
    config = node.configs[1]
    config.write_text(config.read_text() + "\n[consensus]\nmin_sources = 1\n")
    with node.client(1) as watcher:
        stream = watcher.watch("temp", duration=10.0)
        first = next(stream)  # the current value, without consensus
        assert first["estimate"]["state"] != "ok"
        node.procs[1].send_signal(signal.SIGHUP)
        # A watcher hears the rebuilt topic's new estimate without a new reading.
        again = next(stream)
        assert again["estimate"]["state"] == "ok"
        stream.close()
    node.wait_for(lambda: reloads(node)["succeeded"] == 1, 10.0, "SIGHUP did not reload")
    with node.client(1) as client:
        estimate = client.get("temp")
    # Rebuilt from the reading it held: nobody published again.
    assert estimate["state"] == "ok" and estimate["value"] == pytest.approx(20.2)
    assert reloads(node)["last_ok"] is True
    assert "reloaded" in node.log(1)


def test_reload_command_names_changes_and_restart_only_settings(node: LocalSwarm) -> None:
    config = node.configs[1]
    text = config.read_text()
    port = int(text.split("port = ")[1].split()[0])
    config.write_text(
        text.replace(f"port = {port}", f"port = {port + 1}")
        + "\n[membership]\nphi_threshold = 7.0\n"
    )
    done = cli(node, "reload", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["changed"] == ["membership.phi_threshold"]
    assert result["restart_required"] == ["mesh.port"]
    with node.client(1) as client:
        assert client.status()["port"] == port  # still on the running port
    human = cli(node, "reload")
    assert human.returncode == 0
    assert "no live setting changed" in human.stdout
    assert "needs a restart to take effect: mesh.port" in human.stdout
    assert "mesh.port changed but need(s) a restart" in node.log(1)


def test_a_bad_config_is_never_applied(node: LocalSwarm) -> None:
    config = node.configs[1]
    good = config.read_text()
    config.write_text(good + '\n[consensus]\nmin_sources = "three"\n')
    refused = cli(node, "reload")
    assert refused.returncode == 4
    line = refused.stderr.strip()
    assert line.count("\n") == 0 and "invalid-config" in line and "consensus.min_sources" in line
    assert "Traceback" not in refused.stderr
    state = reloads(node)
    assert state["failed"] == 1 and state["last_ok"] is False
    assert "consensus.min_sources" in str(state["last_error"])
    # SIGHUP with a file that is not TOML at all: refused and counted too.
    config.write_text("[[[ not toml")
    node.procs[1].send_signal(signal.SIGHUP)
    node.wait_for(lambda: reloads(node)["failed"] == 2, 10.0, "bad SIGHUP reload not counted")
    assert "reload refused, the running config stays" in node.log(1)
    # Still serving with the running settings; a good file applies again.
    with node.client(1) as client:
        client.publish("x", 1.0)
        assert client.get("x")["sources_total"] == 1
    config.write_text(good)
    assert cli(node, "reload").returncode == 0
    assert reloads(node)["last_ok"] is True
    status = cli(node, "status")
    assert "1 applied, 2 refused" in status.stdout
