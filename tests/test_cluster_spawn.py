"""The harness's children: signals held back while one starts, none outliving it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cloudkernel.cluster.spawn import DEFERRED_SIGNALS, signals_deferred, spawn


def _blocked_mask(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("SigBlk:"):
                return int(line.split()[1], 16)
    raise AssertionError("no SigBlk line")


def _running(pid: int) -> bool:
    """Whether ``pid`` is alive: not gone, and not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _bit(signum: int) -> int:
    return 1 << (signum - 1)


def test_a_ctrl_c_while_a_child_starts_lands_after_it_is_on_record() -> None:
    started: list[subprocess.Popen[bytes]] = []
    with pytest.raises(KeyboardInterrupt):
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)  # the Ctrl-C arrives mid-start
            started.append(spawn([sys.executable, "-c", "pass"]))
            # still here: the interrupt waits for the block to end
            started.append(spawn([sys.executable, "-c", "pass"]))
    assert len(started) == 2
    for proc in started:
        assert proc.wait(30) == 0
    # and the mask is as before
    assert not (signal.pthread_sigmask(signal.SIG_BLOCK, []) & DEFERRED_SIGNALS)


def test_the_child_gets_the_signals_back_and_dies_with_its_parent(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    # The middle process starts a grandchild through spawn, says so, then
    # waits to be killed; the grandchild must then get SIGTERM.
    script = f"""
import sys, time
sys.path.insert(0, {os.getcwd()!r})
from cloudkernel.cluster.spawn import signals_deferred, spawn
with signals_deferred():
    child = spawn([sys.executable, "-c", "import time; time.sleep(60)"])
open({str(pid_file)!r}, "w").write(str(child.pid))
print("ready", flush=True)
time.sleep(60)
"""
    middle = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert middle.stdout is not None
        assert middle.stdout.readline().strip() == b"ready"
        grandchild = int(pid_file.read_text())
        blocked = _blocked_mask(grandchild)
        for signum in DEFERRED_SIGNALS:
            assert not blocked & _bit(signum), f"{signal.Signals(signum).name} still blocked"
        middle.kill()
        middle.wait(30)
        deadline = time.monotonic() + 10
        while _running(grandchild):
            assert time.monotonic() < deadline, "the grandchild outlived its parent"
            time.sleep(0.05)
    finally:
        if middle.poll() is None:
            middle.kill()
            middle.wait(30)
