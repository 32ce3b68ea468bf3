"""A soak node's CPU cgroup: the quota holds, SCHED_FIFO still works inside, nothing is left."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from cloudkernel.cluster import cgroup
from cloudkernel.cluster.cgroup import CgroupError, CpuGroup

problem = cgroup.cgroup_problem()
pytestmark = pytest.mark.skipif(problem is not None, reason=problem or "")

BUSY = textwrap.dedent(
    """
    import os, sys, time
    if sys.argv[1] == "fifo":
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    # the loop's CPU only, not the interpreter's start-up (a quarter of a
    # second of CPU under emulation) before it
    t0 = os.times()
    start = time.monotonic()
    while time.monotonic() - start < 1.0:
        pass
    t = os.times()
    print(t.user + t.system - t0.user - t0.system)
    """
)


def _run_inside(group: CpuGroup, mode: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", BUSY, mode],
        preexec_fn=group.join,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return float(done.stdout)


def test_a_quarter_core_quota_holds_a_busy_loop() -> None:
    group = CpuGroup("quota-test", 0.25)
    try:
        used = _run_inside(group, "plain")
        # one wall-clock second at 25 % of a core: about 0.25 s of CPU
        assert 0.1 < used < 0.45, used
        throttled = group.throttled()
        assert throttled is not None and throttled[0] > 0
    finally:
        group.close()
    assert not group.path.exists()


def test_sched_fifo_works_inside_a_group_with_a_realtime_budget() -> None:
    group = CpuGroup("rt-test", 0.25, realtime=True, realtime_groups=8)
    try:
        if group.version == 1:
            assert group.rt_runtime_us > 0
        _run_inside(group, "fifo")  # raises CalledProcessError on EPERM
    finally:
        group.close()


def test_groups_of_a_dead_harness_are_removed() -> None:
    # A harness killed with SIGKILL leaves its group and the process in it.
    code = textwrap.dedent(
        """
        import os, subprocess, sys, time
        from cloudkernel.cluster.cgroup import CpuGroup
        group = CpuGroup("orphan", 0.5)
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                 preexec_fn=group.join)
        print(group.path, child.pid, flush=True)
        time.sleep(60)
        """
    )
    harness = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=dict(os.environ)
    )
    try:
        assert harness.stdout is not None
        path, child = harness.stdout.readline().split()
        harness.kill()
        harness.wait(10)
        assert os.path.isdir(path)
        removed = cgroup.remove_leftovers()
        assert any(path.startswith(r) or r == path for r in removed), removed
        assert not os.path.exists(path)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and os.path.exists(f"/proc/{child}"):
            time.sleep(0.05)
        status = open(f"/proc/{child}/status").read() if os.path.exists(f"/proc/{child}") else ""
        assert "zombie" in status or status == "", "the process left in the group was not killed"
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait(10)


def test_a_share_out_of_range_is_refused() -> None:
    with pytest.raises(CgroupError, match="share"):
        CpuGroup("bad", 1.5)
