"""Pi-class CPU for a soak node: a cgroup with a CPU quota (root only).

A Raspberry Pi core is several times slower than a server core; a soak run
approximates it by holding each node's daemon to a share of one core with the
kernel's CFS bandwidth control.  Both cgroup versions are handled:

* **v1** (this kind of host): the ``cpu`` hierarchy (``/sys/fs/cgroup/cpu``);
  ``cpu.cfs_period_us`` / ``cpu.cfs_quota_us``.  With
  ``CONFIG_RT_GROUP_SCHED`` a new group has ``cpu.rt_runtime_us = 0`` and
  SCHED_FIFO fails inside it with EPERM, even for root, so the group also
  gets a real-time budget: the same share as its CPU quota, shrunk until the
  kernel accepts it (all groups' budgets together must fit in the parent's,
  95 % of a CPU by default).  A FIFO thread is not bound by the CFS quota,
  only by this budget, so the budget is what keeps a real-time daemon
  Pi-sized.
* **v2** (Raspberry Pi OS): ``cpu.max`` ("quota period") in a child of a
  group of ours whose ``cgroup.subtree_control`` enables ``cpu``.  v2 has no
  per-group real-time budget; SCHED_FIFO works there when the kernel lacks
  ``CONFIG_RT_GROUP_SCHED`` (Raspberry Pi OS kernels do).

Groups are named ``cloudkernel-soak-<pid>-<name>``; :func:`remove_leftovers`
kills what is left in groups of dead harness processes and removes them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CgroupError",
    "CpuGroup",
    "cgroup_problem",
    "find_cpu_hierarchy",
    "process_alive",
    "remove_leftovers",
]

V1_CPU = Path("/sys/fs/cgroup/cpu")
V2_ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 100_000
_PREFIX = "cloudkernel-soak-"
_NAME = re.compile(r"^cloudkernel-soak-(\d+)(-.*)?$")


class CgroupError(OSError):
    """A CPU cgroup could not be made or used; the message says what to do."""


@dataclass(frozen=True)
class Hierarchy:
    version: int
    root: Path


def find_cpu_hierarchy() -> Hierarchy | None:
    """The cgroup hierarchy with a CPU controller, v1 first; None without one."""
    if (V1_CPU / "cpu.cfs_quota_us").exists():
        return Hierarchy(1, V1_CPU)
    controllers = V2_ROOT / "cgroup.controllers"
    if controllers.exists() and "cpu" in controllers.read_text().split():
        return Hierarchy(2, V2_ROOT)
    return None


def cgroup_problem() -> str | None:
    """Why CPU quotas cannot be set here (a skip reason), or None."""
    if os.geteuid() != 0:
        return "CPU quotas need root (cgroups)"
    if find_cpu_hierarchy() is None:
        return "no cgroup hierarchy with a cpu controller (v1 /sys/fs/cgroup/cpu or v2 cpu)"
    return None


def _write(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (a harness run's, for leftover clean-up)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class CpuGroup:
    """One cgroup holding a node's daemon to ``share`` of a core.

    :param name: a name unique within this harness run (e.g. ``"n3"``)
    :param share: the CPU share, (0, 1]: 0.25 is a quarter of one core
    :param realtime: also give the group a real-time budget (v1), so that
        SCHED_FIFO works inside
    :param realtime_groups: how many such groups the run will make; the
        budget of each is at most the parent's divided by this
    :raises CgroupError: when the group cannot be made
    """

    def __init__(
        self, name: str, share: float, *, realtime: bool = False, realtime_groups: int = 1
    ) -> None:
        if not 0 < share <= 1:
            raise CgroupError(f"CPU share must be in (0, 1], got {share}")
        hierarchy = find_cpu_hierarchy()
        if hierarchy is None:
            raise CgroupError("no cgroup hierarchy with a cpu controller")
        self.version = hierarchy.version
        self.share = share
        self.rt_runtime_us = 0
        quota = max(1000, round(share * PERIOD_US))
        try:
            if self.version == 1:
                self.path = hierarchy.root / f"{_PREFIX}{os.getpid()}-{name}"
                self.path.mkdir(exist_ok=True)
                _write(self.path / "cpu.cfs_period_us", str(PERIOD_US))
                _write(self.path / "cpu.cfs_quota_us", str(quota))
                if realtime:
                    self._set_rt_budget(hierarchy.root, quota, realtime_groups)
            else:
                parent = hierarchy.root / f"{_PREFIX}{os.getpid()}"
                parent.mkdir(exist_ok=True)
                _write(hierarchy.root / "cgroup.subtree_control", "+cpu")
                _write(parent / "cgroup.subtree_control", "+cpu")
                self.path = parent / name
                self.path.mkdir(exist_ok=True)
                _write(self.path / "cpu.max", f"{quota} {PERIOD_US}")
        except OSError as exc:
            raise CgroupError(f"cannot set up the CPU cgroup {name}: {exc}") from exc

    def _set_rt_budget(self, root: Path, quota: int, groups: int) -> None:
        # The group's RT period must not exceed the parent's, and the sum of
        # all children's runtime/period must fit in the parent's: shrink
        # until the kernel takes it (EINVAL / EBUSY otherwise).
        parent_period = int((root / "cpu.rt_period_us").read_text())
        parent_runtime = int((root / "cpu.rt_runtime_us").read_text())
        _write(self.path / "cpu.rt_period_us", str(PERIOD_US))
        fair = parent_runtime * PERIOD_US // parent_period // max(1, groups)
        runtime = min(quota, fair)
        while runtime >= 1000:
            try:
                _write(self.path / "cpu.rt_runtime_us", str(runtime))
            except OSError as exc:
                if exc.errno not in (errno.EBUSY, errno.EINVAL):
                    raise
                runtime //= 2
                continue
            self.rt_runtime_us = runtime
            return
        raise CgroupError(
            "the kernel has no real-time budget left for a new cgroup "
            f"(parent cpu.rt_runtime_us = {parent_runtime})"
        )

    def procs_file(self) -> Path:
        return self.path / "cgroup.procs"

    def join(self) -> None:
        """Move the calling process into the group (use in a child before exec)."""
        _write(self.procs_file(), str(os.getpid()))

    def pids(self) -> list[int]:
        with contextlib.suppress(OSError):
            return [int(x) for x in self.procs_file().read_text().split()]
        return []

    def throttled(self) -> tuple[int, float] | None:
        """Periods in which the quota held the group back, and seconds throttled."""
        try:
            stat = dict(
                line.split(" ", 1) for line in (self.path / "cpu.stat").read_text().splitlines()
            )
            if self.version == 1:
                return int(stat["nr_throttled"]), int(stat["throttled_time"]) / 1e9
            return int(stat["nr_throttled"]), int(stat["throttled_usec"]) / 1e6
        except (OSError, KeyError, ValueError):
            return None

    def close(self) -> None:
        """Kill anything left inside and remove the group."""
        _remove(self.path)
        if self.version == 2:
            with contextlib.suppress(OSError):
                self.path.parent.rmdir()


def _remove(path: Path) -> None:
    for _ in range(50):
        try:
            pids = [int(x) for x in (path / "cgroup.procs").read_text().split()]
        except OSError:
            pids = []
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            # still busy: the killed processes are on their way out
            time.sleep(0.02)


def remove_leftovers() -> list[str]:
    """Remove groups of harness runs whose process is gone; the paths removed."""
    hierarchy = find_cpu_hierarchy()
    if hierarchy is None or os.geteuid() != 0:
        return []
    removed = []
    for entry in hierarchy.root.iterdir():
        match = _NAME.match(entry.name)
        if match is None or not entry.is_dir():
            continue
        pid = int(match.group(1))
        if pid != os.getpid() and process_alive(pid):
            continue
        if hierarchy.version == 2:
            for child in entry.iterdir():
                if child.is_dir():
                    _remove(child)
        _remove(entry)
        removed.append(str(entry))
    return removed
