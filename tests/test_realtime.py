"""cloudkernel.realtime: every step and every refusal, on a fake system and for real.

The fake system records the calls made and fails as told, so each cause of a
refusal is provoked without root.  The tests on the real kernel run
``apply_realtime`` in a subprocess: the scheduling, affinity and locked
memory of the test process itself never change.
"""

from __future__ import annotations

import dataclasses
import errno
import gc
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from cloudkernel.config import RealtimeConfig
from cloudkernel.realtime import (
    CAP_IPC_LOCK,
    CAP_SYS_NICE,
    MCL_CURRENT,
    MCL_FUTURE,
    LinuxRealtimeSystem,
    RealtimeStatus,
    apply_realtime,
    describe,
    freeze_gc,
)

ROOT = Path(__file__).resolve().parent.parent
MiB = 1 << 20
IDENTITY_UID_MAP = "         0          0 4294967295\n"
ALL_CAPS = (1 << 41) - 1
INF = resource.RLIM_INFINITY


@dataclasses.dataclass
class FakeSystem:
    """A :class:`~cloudkernel.realtime.RealtimeSystem` in memory; defaults: an unprivileged user."""

    allowed: set[int] = dataclasses.field(default_factory=lambda: {0, 1, 2, 3})
    caps: int = 0
    rtprio: tuple[int, int] = (0, 0)
    memlock: tuple[int, int] = (8 * MiB, 8 * MiB)
    #: errno of sched_setscheduler / mlockall; None: success
    scheduler_error: int | None = None
    mlockall_error: int | None = None
    files: dict[str, str] = dataclasses.field(
        default_factory=lambda: {
            "/proc/self/cgroup": "2:cpuacct:/\n1:cpu:/\n0::/\n",
            "/sys/fs/cgroup/cpu/cpu.rt_runtime_us": "950000\n",
            "/proc/self/uid_map": IDENTITY_UID_MAP,
        }
    )
    cpus: set[int] = dataclasses.field(default_factory=set)
    policy: int = os.SCHED_OTHER
    priority: int = 0
    locked_flags: int = 0
    calls: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        self.cpus = set(self.allowed)

    def sched_setaffinity(self, cpus: set[int]) -> None:
        self.calls.append("sched_setaffinity")
        if not cpus & self.allowed:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        self.cpus = cpus & self.allowed

    def sched_getaffinity(self) -> set[int]:
        return set(self.cpus)

    def sched_setscheduler(self, policy: int, priority: int) -> None:
        self.calls.append("sched_setscheduler")
        if self.scheduler_error is not None:
            raise OSError(self.scheduler_error, os.strerror(self.scheduler_error))
        self.policy, self.priority = policy, priority

    def sched_getscheduler(self) -> tuple[int, int]:
        return self.policy, self.priority

    def mlockall(self, flags: int) -> None:
        self.calls.append("mlockall")
        if self.mlockall_error is not None:
            raise OSError(self.mlockall_error, os.strerror(self.mlockall_error))
        self.locked_flags = flags

    def getrlimit(self, limit: int) -> tuple[int, int]:
        if limit == resource.RLIMIT_RTPRIO:
            return self.rtprio
        if limit == resource.RLIMIT_MEMLOCK:
            return self.memlock
        raise AssertionError(f"unexpected rlimit {limit}")

    def read_text(self, path: str) -> str | None:
        return self.files.get(path)

    def effective_capabilities(self) -> int:
        return self.caps


def root_system(**kwargs: Any) -> FakeSystem:
    return FakeSystem(caps=ALL_CAPS, **kwargs)


def config(priority: int = 0, cpu: int = -1, lock_memory: bool = False) -> RealtimeConfig:
    return RealtimeConfig(priority=priority, cpu=cpu, lock_memory=lock_memory, freeze_gc=True)


def only_warning(status: RealtimeStatus) -> str:
    assert len(status.warnings) == 1, status.warnings
    return status.warnings[0]


# --- success paths -------------------------------------------------------------


def test_priority_zero_touches_nothing() -> None:
    system = root_system()
    status = apply_realtime(config(), system=system)
    assert system.calls == []
    assert status == RealtimeStatus(
        requested=config(),
        policy="SCHED_OTHER",
        priority=0,
        cpus=(0, 1, 2, 3),
        memory_locked=False,
        active=False,
        warnings=(),
    )
    assert describe(status) == "real time off: SCHED_OTHER, CPUs 0-3, memory not locked"


def test_priority_zero_leaves_an_inherited_policy_as_it_is() -> None:
    system = root_system(policy=os.SCHED_FIFO, priority=20)
    status = apply_realtime(config(), system=system)
    assert system.calls == []
    assert (status.policy, status.priority, status.active) == ("SCHED_FIFO", 20, False)


def test_everything_applied_in_order_as_root() -> None:
    system = root_system()
    status = apply_realtime(config(priority=50, cpu=2, lock_memory=True), system=system)
    assert system.calls == ["sched_setaffinity", "sched_setscheduler", "mlockall"]
    assert system.locked_flags == MCL_CURRENT | MCL_FUTURE == 3
    assert status.policy == "SCHED_FIFO"
    assert status.priority == 50
    assert status.cpus == (2,)
    assert status.memory_locked
    assert status.active
    assert status.warnings == ()
    assert describe(status) == "real time ok: SCHED_FIFO 50, CPU 2, memory locked"


@pytest.mark.parametrize(
    ("caps", "rtprio"),
    [
        pytest.param(1 << CAP_SYS_NICE, (0, 0), id="CAP_SYS_NICE"),
        pytest.param(0, (50, 50), id="LimitRTPRIO"),
        pytest.param(0, (INF, INF), id="unlimited-RLIMIT_RTPRIO"),
    ],
)
def test_fifo_without_root(caps: int, rtprio: tuple[int, int]) -> None:
    system = FakeSystem(caps=caps, rtprio=rtprio)
    status = apply_realtime(config(priority=50), system=system)
    assert system.calls == ["sched_setscheduler"]
    assert (status.policy, status.priority, status.active, status.warnings) == (
        "SCHED_FIFO",
        50,
        True,
        (),
    )


@pytest.mark.parametrize(
    ("caps", "memlock"),
    [
        pytest.param(1 << CAP_IPC_LOCK, (64 * 1024, 64 * 1024), id="CAP_IPC_LOCK"),
        pytest.param(0, (INF, INF), id="LimitMEMLOCK=infinity"),
    ],
)
def test_lock_memory_without_root(caps: int, memlock: tuple[int, int]) -> None:
    system = FakeSystem(caps=caps, memlock=memlock)
    status = apply_realtime(config(lock_memory=True), system=system)
    assert system.calls == ["mlockall"]
    assert status.memory_locked
    assert status.warnings == ()
    assert not status.active  # SCHED_FIFO was not asked for


def test_pin_only() -> None:
    system = FakeSystem()
    status = apply_realtime(config(cpu=3), system=system)
    assert system.calls == ["sched_setaffinity"]
    assert status.cpus == (3,)
    assert status.warnings == ()
    assert describe(status) == "real time ok: SCHED_OTHER, CPU 3, memory not locked"


# --- each failure: exactly one warning naming its cause and fix -----------------


def test_fifo_refused_without_cap_sys_nice_or_rtprio() -> None:
    system = FakeSystem(rtprio=(10, 10), scheduler_error=errno.EPERM)
    status = apply_realtime(config(priority=50), system=system)
    warning = only_warning(status)
    assert "CAP_SYS_NICE" in warning
    assert "RLIMIT_RTPRIO is 10 (below 50)" in warning
    for fix in ("root", "AmbientCapabilities=CAP_SYS_NICE", "LimitRTPRIO=50"):
        assert fix in warning
    assert (status.policy, status.active) == ("SCHED_OTHER", False)


@pytest.mark.parametrize(
    ("cgroup", "budget_file"),
    [
        pytest.param(
            "4:cpu,cpuacct:/system.slice/cloudkernel.service\n0::/system.slice\n",
            "/sys/fs/cgroup/cpu,cpuacct/system.slice/cloudkernel.service/cpu.rt_runtime_us",
            id="cpu,cpuacct",
        ),
        pytest.param(
            "2:cpuacct:/ck\n1:cpu:/ck\n0::/\n",
            "/sys/fs/cgroup/cpu/ck/cpu.rt_runtime_us",
            id="cpu",
        ),
        pytest.param(
            "4:cpuacct,cpu:/ck\n",
            "/sys/fs/cgroup/cpu/ck/cpu.rt_runtime_us",
            id="cpu-link-only",
        ),
    ],
)
def test_fifo_refused_in_a_cgroup_without_rt_budget(cgroup: str, budget_file: str) -> None:
    system = root_system(scheduler_error=errno.EPERM)
    system.files["/proc/self/cgroup"] = cgroup
    system.files[budget_file] = "0\n"
    warning = only_warning(apply_realtime(config(priority=50), system=system))
    assert f"{budget_file} is 0" in warning
    assert f"write 100000 to {budget_file}" in warning
    assert "CPUQuota= is not enough" in warning


def test_fifo_refused_in_a_user_namespace() -> None:
    system = root_system(scheduler_error=errno.EPERM)
    system.files["/proc/self/uid_map"] = "         0       1000          1\n"
    warning = only_warning(apply_realtime(config(priority=50), system=system))
    assert "user namespace" in warning
    assert "'0 1000 1'" in warning
    assert "LimitRTPRIO=50" in warning


def test_fifo_refused_for_another_reason_gives_the_errno() -> None:
    system = root_system(scheduler_error=errno.EPERM)
    warning = only_warning(apply_realtime(config(priority=50), system=system))
    assert warning.endswith("EPERM (Operation not permitted)")
    assert "cgroup" not in warning and "namespace" not in warning


def test_fifo_error_other_than_eperm_gives_the_errno() -> None:
    system = root_system(scheduler_error=errno.EINVAL)
    warning = only_warning(apply_realtime(config(priority=50), system=system))
    assert warning.endswith("EINVAL (Invalid argument)")


def test_fifo_causes_are_named_in_order_first_one_only() -> None:
    # All three causes hold: only the first (capability / rlimit) is named.
    system = FakeSystem(scheduler_error=errno.EPERM)
    system.files["/sys/fs/cgroup/cpu/cpu.rt_runtime_us"] = "0\n"
    system.files["/proc/self/uid_map"] = "0 1000 1\n"
    warning = only_warning(apply_realtime(config(priority=50), system=system))
    assert "CAP_SYS_NICE" in warning and "cgroup" not in warning
    # Capability present: the cgroup comes before the user namespace.
    system.caps = ALL_CAPS
    warning = only_warning(apply_realtime(config(priority=50), system=system))
    assert "rt_runtime_us" in warning and "namespace" not in warning


def test_fifo_cgroup_with_a_budget_is_not_blamed() -> None:
    system = root_system(scheduler_error=errno.EPERM)
    system.files["/proc/self/cgroup"] = "1:cpu:/ck\n"
    system.files["/sys/fs/cgroup/cpu/ck/cpu.rt_runtime_us"] = "100000\n"
    warning = only_warning(apply_realtime(config(priority=50), system=system))
    assert "cgroup" not in warning


def test_lock_memory_refused_by_rlimit_memlock() -> None:
    system = FakeSystem()
    status = apply_realtime(config(lock_memory=True), system=system)
    warning = only_warning(status)
    assert "RLIMIT_MEMLOCK is 8 MiB without CAP_IPC_LOCK" in warning
    assert "LimitMEMLOCK=infinity" in warning and "CAP_IPC_LOCK" in warning
    # Not even tried: MCL_FUTURE under a finite limit breaks later allocations.
    assert system.calls == []
    assert not status.memory_locked


def test_lock_memory_failing_with_the_capability_gives_the_errno() -> None:
    system = root_system(mlockall_error=errno.ENOMEM)
    status = apply_realtime(config(lock_memory=True), system=system)
    warning = only_warning(status)
    assert "mlockall failed: ENOMEM" in warning
    assert not status.memory_locked


def test_lock_memory_refused_in_a_user_namespace() -> None:
    system = root_system(mlockall_error=errno.EPERM)
    system.files["/proc/self/uid_map"] = "0 1000 1\n"
    warning = only_warning(apply_realtime(config(lock_memory=True), system=system))
    assert "user namespace" in warning and "CAP_IPC_LOCK" in warning


def test_cpu_outside_the_allowed_set() -> None:
    system = root_system(allowed={0, 1, 2, 5})
    status = apply_realtime(config(cpu=7), system=system)
    warning = only_warning(status)
    assert "CPU 7 is not in the allowed set 0-2,5" in warning
    assert "realtime.cpu" in warning
    assert status.cpus == (0, 1, 2, 5)
    assert describe(status).startswith("real time degraded (1 warning): SCHED_OTHER, CPUs 0-2,5")


def test_every_step_failing_gives_three_warnings_and_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    system = FakeSystem(allowed={0, 1}, scheduler_error=errno.EPERM)
    with caplog.at_level(logging.WARNING, logger="cloudkernel.realtime"):
        status = apply_realtime(config(priority=50, cpu=3, lock_memory=True), system=system)
    assert len(status.warnings) == 3
    cpu, fifo, memory = status.warnings
    assert "CPU 3" in cpu and "CAP_SYS_NICE" in fifo and "RLIMIT_MEMLOCK" in memory
    assert [r.getMessage() for r in caplog.records] == list(status.warnings)
    assert (status.policy, status.active, status.memory_locked) == ("SCHED_OTHER", False, False)
    assert describe(status) == (
        "real time degraded (3 warnings): SCHED_OTHER (SCHED_FIFO 50 requested), "
        "CPUs 0-1 (CPU 3 requested), memory not locked (requested)"
    )


def test_one_failure_does_not_stop_the_other_steps() -> None:
    system = FakeSystem(caps=1 << CAP_IPC_LOCK, scheduler_error=errno.EPERM)
    status = apply_realtime(config(priority=50, cpu=1, lock_memory=True), system=system)
    assert system.calls == ["sched_setaffinity", "sched_setscheduler", "mlockall"]
    assert len(status.warnings) == 1
    assert status.cpus == (1,) and status.memory_locked and not status.active


# --- the real system's read-only parts, and freeze_gc ---------------------------


def test_linux_system_reads() -> None:
    system = LinuxRealtimeSystem()
    assert system.sched_getaffinity() == os.sched_getaffinity(0)
    assert system.sched_getscheduler() == (
        os.sched_getscheduler(0),
        os.sched_getparam(0).sched_priority,
    )
    assert system.getrlimit(resource.RLIMIT_MEMLOCK) == resource.getrlimit(resource.RLIMIT_MEMLOCK)
    assert system.read_text("/nonexistent/cloudkernel") is None
    assert system.read_text("/proc/self/status") is not None
    assert system.effective_capabilities() >= 0


def test_linux_system_parses_cap_eff() -> None:
    class Status(LinuxRealtimeSystem):
        def __init__(self, text: str | None) -> None:
            self.text = text

        def read_text(self, path: str) -> str | None:
            assert path == "/proc/self/status"
            return self.text

    assert Status("Name:\tx\nCapEff:\t000001ffffffffff\n").effective_capabilities() == (1 << 41) - 1
    assert Status(
        "CapInh:\t0000000000000000\nCapEff:\t0000000000800000\n"
    ).effective_capabilities() == (1 << CAP_SYS_NICE)
    assert Status("CapEff:\tzz\n").effective_capabilities() == 0
    assert Status(None).effective_capabilities() == 0


def test_freeze_gc() -> None:
    try:
        frozen = freeze_gc()
        assert frozen == gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


# --- the real kernel, in subprocesses -------------------------------------------

# Runs apply_realtime and prints the status as JSON.  argv[1]: the config as
# JSON; argv[2]: a cgroup.procs file to move into first, or "".
CHILD = """
import dataclasses, json, os, resource, sys
from cloudkernel.config import RealtimeConfig
from cloudkernel.realtime import apply_realtime

if sys.argv[2]:
    with open(sys.argv[2], "w") as f:
        f.write(str(os.getpid()))
# Whatever the environment allows, start from no RT priority and a small
# memlock limit (lowering a limit is always permitted).
resource.setrlimit(resource.RLIMIT_RTPRIO, (0, 0))
soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
if soft == resource.RLIM_INFINITY or soft > 65536:
    resource.setrlimit(resource.RLIMIT_MEMLOCK, (65536, 65536))
status = apply_realtime(RealtimeConfig(**json.loads(sys.argv[1])))
print(json.dumps(dataclasses.asdict(status)))
"""


def run_child(
    realtime: RealtimeConfig, *, prefix: tuple[str, ...] = (), cgroup_procs: str = ""
) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run(
        [
            *prefix,
            sys.executable,
            "-c",
            CHILD,
            json.dumps(dataclasses.asdict(realtime)),
            cgroup_procs,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    status: dict[str, Any] = json.loads(result.stdout)
    return status


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (to switch to an unprivileged user, or to be allowed SCHED_FIFO)")


def test_real_unprivileged_user_gets_warnings_not_errors() -> None:
    need_root()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed")
    status = run_child(
        config(priority=50, cpu=4095, lock_memory=True),
        prefix=(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"),
    )
    assert status["policy"] == "SCHED_OTHER"
    assert not status["active"] and not status["memory_locked"]
    cpu, fifo, memory = status["warnings"]
    assert "CPU 4095 is not in the allowed set" in cpu
    assert "no CAP_SYS_NICE and RLIMIT_RTPRIO is 0" in fifo
    assert "RLIMIT_MEMLOCK is 64 KiB without CAP_IPC_LOCK" in memory


def test_real_sched_fifo_as_root() -> None:
    need_root()
    status = run_child(config(priority=10, lock_memory=True))
    if not status["active"]:
        fifo = next(w for w in status["warnings"] if w.startswith("SCHED_FIFO"))
        budget = _own_rt_runtime_file()
        if budget is not None and Path(budget).read_text().strip() == "0":
            assert f"{budget} is 0" in fifo
        pytest.skip(f"SCHED_FIFO refused even to root here: {fifo}")
    assert (status["policy"], status["priority"]) == ("SCHED_FIFO", 10)
    if LinuxRealtimeSystem().effective_capabilities() & (1 << CAP_IPC_LOCK):
        assert status["memory_locked"], status["warnings"]
        assert status["warnings"] == []
    # The test process itself is untouched.
    assert os.sched_getscheduler(0) != os.SCHED_FIFO


def _own_rt_runtime_file() -> str | None:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            for mount in (controllers, "cpu", "cpu,cpuacct"):
                candidate = f"/sys/fs/cgroup/{mount}{path.rstrip('/')}/cpu.rt_runtime_us"
                if os.path.exists(candidate):
                    return candidate
    return None


def test_real_cgroup_without_rt_budget_is_named() -> None:
    """PLATFORM.md's RT-budget trap, built for real: a new cgroup starts with 0 µs."""
    need_root()
    budget = _own_rt_runtime_file()
    if budget is None:
        pytest.skip("no cgroup v1 cpu controller with cpu.rt_runtime_us (no RT group scheduling)")
    group = Path(budget).parent / f"cloudkernel-test-{uuid.uuid4().hex[:12]}"
    try:
        group.mkdir()
    except OSError as e:
        pytest.skip(f"cannot create a cgroup under {group.parent}: {e}")
    try:
        if (group / "cpu.rt_runtime_us").read_text().strip() != "0":
            pytest.skip("a new cgroup gets a real-time budget on this kernel")
        status = run_child(config(priority=10), cgroup_procs=str(group / "cgroup.procs"))
        [fifo] = status["warnings"]
        assert f"{group}/cpu.rt_runtime_us is 0" in fifo
        assert status["policy"] == "SCHED_OTHER"
    finally:
        # The child has exited; the kernel may take a moment to empty the group.
        for _ in range(50):
            try:
                group.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.02)
