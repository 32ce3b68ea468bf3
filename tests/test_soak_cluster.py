"""The soak runner, short: 5 nodes, 10 % loss on every link, one node killed and restarted.

This is bench/soak.py as CI runs it, with the issue's assertions scaled to
a run of about a minute: every expected signal delivered to every live node
(>= 99.99 % of them: at this length that allows a handful), no daemon crash
and no traceback, no signal delivered twice, the killed node rejoins, and
no false suspicion (<= 1 per node-hour is 0 in 0.1 node-hours).  Latency
is reported, never judged here: CI machines are shared and noisy; the
latency targets are judged by the soak runs quoted in bench/README.md.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cloudkernel.cluster import cgroup, network

ROOT = Path(__file__).resolve().parent.parent
problem = network.problem()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(problem is not None, reason=problem or ""),
]


def test_short_soak_with_loss_and_a_kill(tmp_path: Path) -> None:
    report_path = tmp_path / "soak.json"
    plot_path = tmp_path / "soak.png"
    argv = [
        sys.executable,
        str(ROOT / "bench" / "soak.py"),
        "--nodes=5",
        "--duration=60",
        # long enough for 20 heartbeats per peer: every sender has learnt the
        # 10 % loss before its first block (a block sent before that can fail)
        "--warmup=10",
        "--loss=0.10",
        "--chaos-every=20",
        "--chaos-down=14",
        "--chaos-kinds=kill",
        "--rate=10",
        "--topics=1",
        "--seed=7",
        f"--json={report_path}",
        f"--plot={plot_path}",
        f"--keep={tmp_path / 'run'}",
    ]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=420, check=False, env=dict(os.environ)
    )
    print(done.stdout)
    print(done.stderr, file=sys.stderr)
    assert report_path.exists(), f"no report (exit {done.returncode}):\n{done.stderr[-3000:]}"
    report = json.loads(report_path.read_text())
    ck = report["systems"]["cloudkernel"]
    classes = ck["delivery"]["classes"]
    for name in ("critical", "normal", "bulk"):
        c = classes[name]
        assert c["expected"] > 1000, (name, c)
        assert c["ratio"] >= 0.9999, (name, c["ratio"], c["examples_lost"])
    assert ck["crashes"] == []
    assert sum(ck["tracebacks"].values()) == 0
    assert ck["delivery"]["all"]["duplicates"] == 0
    membership = ck["membership"]
    kills = [event for event in membership["chaos"] if event["kind"] == "kill"]
    assert len(kills) == 2
    for kill in kills:
        assert kill["detected_s"] is not None, kill
        assert kill["rejoined_s"] is not None, kill
    assert membership["false_suspicions"] == 0
    # the switch really impaired the links: about 10 % of forwarded copies lost
    switch = ck["switch"]
    dropped = switch["dropped_iid"]
    assert 0.07 < dropped / switch["frames_in"] < 0.13, switch
    # the FEC rebuilt what was lost
    assert ck["fec"]["signals_recovered"] > 0
    assert plot_path.stat().st_size > 10_000
    assert done.returncode == 0, done.stdout[-3000:]


def _soak_process(tmp_path: Path, *extra: str) -> subprocess.Popen[str]:
    argv = [
        sys.executable,
        str(ROOT / "bench" / "soak.py"),
        "--nodes=3",
        "--duration=120",
        "--cpu-quota=0.5",
        f"--keep={tmp_path / 'run'}",
        *extra,
    ]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=dict(os.environ))


def _wait_for_daemons(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    for _ in range(20):  # bounded: the runner prints a few lines before this one
        line = proc.stdout.readline()
        # Interrupted once its agents run, in the steady state.  A Ctrl-C that
        # lands while the runner is starting a child process can still hang it
        # (KeyboardInterrupt inside subprocess's fork), which this does not cover.
        if "workload running" in line or not line:
            break
    assert proc.poll() is None, "the soak runner ended early"


def _ours(pid: int) -> list[str]:
    names = [n for n in network.cluster_namespaces() if f"ckc{pid}-" in n]
    groups = [p for p in os.listdir(cgroup_root()) if p.startswith(f"cloudkernel-soak-{pid}")]
    return names + groups


def cgroup_root() -> str:
    from cloudkernel.cluster.cgroup import find_cpu_hierarchy

    hierarchy = find_cpu_hierarchy()
    assert hierarchy is not None
    return str(hierarchy.root)


def _daemons_of(tmp_path: Path) -> list[int]:
    """Daemon processes whose config lies under this test's directory."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().decode(errors="replace")
        except OSError:
            continue
        if str(tmp_path) in cmdline and "cloudkernel\0run" in cmdline:
            pids.append(int(entry))
    return pids


def _eventually(what: Any, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what():
            return True
        time.sleep(0.1)
    return bool(what())


@pytest.mark.skipif(cgroup.cgroup_problem() is not None, reason=cgroup.cgroup_problem() or "")
def test_ctrl_c_tears_the_cluster_down(tmp_path: Path) -> None:
    proc = _soak_process(tmp_path)
    try:
        _wait_for_daemons(proc)
        assert _ours(proc.pid), "the cluster was not built"
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
        assert _ours(proc.pid) == []
        assert _eventually(lambda: _daemons_of(tmp_path) == [])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.mark.skipif(cgroup.cgroup_problem() is not None, reason=cgroup.cgroup_problem() or "")
def test_a_later_run_cleans_up_after_a_crashed_harness(tmp_path: Path) -> None:
    proc = _soak_process(tmp_path)
    try:
        _wait_for_daemons(proc)
        proc.kill()  # no chance to clean up
        proc.wait(10)
        # its daemons die with it; its namespaces and groups stay behind...
        assert _eventually(lambda: _daemons_of(tmp_path) == [])
        assert _ours(proc.pid)
        # ...until the next run (the first thing bench/soak.py does) removes them
        network.remove_leftovers()
        cgroup.remove_leftovers()
        assert _ours(proc.pid) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
