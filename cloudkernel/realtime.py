"""Real-time scheduling, CPU pinning and locked memory for the daemon.

What this module holds:

* :func:`apply_realtime` applies a :class:`~cloudkernel.config.RealtimeConfig`
  to the calling process, in this order: CPU pinning, SCHED_FIFO, mlockall.
  It returns a :class:`RealtimeStatus`, read back from the kernel.
* :func:`freeze_gc`, which the daemon calls once start-up is over.
* :func:`describe`, the status as one line for the log and ``status``.
* :class:`RealtimeSystem`, every system call this module makes, as one small
  object; :class:`LinuxRealtimeSystem` is the real one.  Tests pass a fake
  and provoke every failure without root.

Rules it keeps:

* A step that is not permitted never raises and never stops the daemon: it
  adds exactly one warning to the status (and the log) that names the cause
  and the fix, and the other steps go on.
* A SCHED_FIFO refusal (EPERM) is diagnosed, first cause that holds wins:

  1. no CAP_SYS_NICE and RLIMIT_RTPRIO below the priority;
  2. the process's cgroup has no real-time budget (``cpu.rt_runtime_us`` is
     0): kernels built with ``CONFIG_RT_GROUP_SCHED`` refuse SCHED_FIFO there,
     even to root, and a new cgroup starts with no budget;
  3. a user namespace, whose CAP_SYS_NICE is not the host's;
  4. otherwise the error as the kernel gave it.

* mlockall is asked for MCL_CURRENT | MCL_FUTURE.  Without CAP_IPC_LOCK it is
  only tried when RLIMIT_MEMLOCK is unlimited: under a finite limit,
  MCL_FUTURE would make every later allocation past the limit fail, which is
  worse for the daemon than memory that can be paged out.
* Nothing is touched that the config does not ask for: priority 0 leaves the
  scheduling policy as it is, cpu -1 the affinity, lock_memory false the
  memory.
"""

from __future__ import annotations

import ctypes
import errno
import gc
import logging
import os
import resource
from dataclasses import dataclass
from typing import Final, Protocol

from .config import RealtimeConfig

__all__ = [
    "CAP_IPC_LOCK",
    "CAP_SYS_NICE",
    "MCL_CURRENT",
    "MCL_FUTURE",
    "LinuxRealtimeSystem",
    "RealtimeStatus",
    "RealtimeSystem",
    "apply_realtime",
    "describe",
    "freeze_gc",
]

log = logging.getLogger("cloudkernel.realtime")

#: capability numbers (linux/capability.h)
CAP_IPC_LOCK: Final = 14
CAP_SYS_NICE: Final = 23

#: mlockall flags (asm-generic/mman-common.h; the same on x86 and arm)
MCL_CURRENT: Final = 1
MCL_FUTURE: Final = 2

_CGROUP_ROOT = "/sys/fs/cgroup"
_IDENTITY_UID_MAP = ("0", "0", "4294967295")

_POLICY_NAMES: Final = {
    os.SCHED_OTHER: "SCHED_OTHER",
    os.SCHED_FIFO: "SCHED_FIFO",
    os.SCHED_RR: "SCHED_RR",
    os.SCHED_BATCH: "SCHED_BATCH",
    os.SCHED_IDLE: "SCHED_IDLE",
}


class RealtimeSystem(Protocol):
    """The system calls :func:`apply_realtime` makes, all on the calling process.

    Failures are raised as :class:`OSError` with the kernel's errno, as the
    :mod:`os` functions of the same names raise them.
    """

    def sched_setaffinity(self, cpus: set[int]) -> None: ...

    def sched_getaffinity(self) -> set[int]: ...

    def sched_setscheduler(self, policy: int, priority: int) -> None: ...

    def sched_getscheduler(self) -> tuple[int, int]:
        """The policy in force and its static priority."""
        ...

    def mlockall(self, flags: int) -> None: ...

    def getrlimit(self, limit: int) -> tuple[int, int]:
        """(soft, hard) for a ``resource.RLIMIT_*``; ``resource.RLIM_INFINITY`` if unlimited."""
        ...

    def read_text(self, path: str) -> str | None:
        """The file's text, None when it cannot be read."""
        ...

    def effective_capabilities(self) -> int:
        """The CapEff bit mask of /proc/self/status (0 when unknown)."""
        ...


class LinuxRealtimeSystem:
    """:class:`RealtimeSystem` on the running Linux kernel."""

    def sched_setaffinity(self, cpus: set[int]) -> None:
        os.sched_setaffinity(0, cpus)

    def sched_getaffinity(self) -> set[int]:
        return os.sched_getaffinity(0)

    def sched_setscheduler(self, policy: int, priority: int) -> None:
        os.sched_setscheduler(0, policy, os.sched_param(priority))

    def sched_getscheduler(self) -> tuple[int, int]:
        return os.sched_getscheduler(0), os.sched_getparam(0).sched_priority

    def mlockall(self, flags: int) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.mlockall(ctypes.c_int(flags)) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))

    def getrlimit(self, limit: int) -> tuple[int, int]:
        return resource.getrlimit(limit)

    def read_text(self, path: str) -> str | None:
        try:
            with open(path, encoding="utf-8") as f:
                return f.read()
        except (OSError, UnicodeDecodeError):
            return None

    def effective_capabilities(self) -> int:
        return _cap_eff(self.read_text("/proc/self/status"))


@dataclass(frozen=True, slots=True)
class RealtimeStatus:
    """What :func:`apply_realtime` was asked for and what is in force, read back."""

    #: the configuration applied
    requested: RealtimeConfig
    #: scheduling policy in force: "SCHED_FIFO", "SCHED_OTHER" (or another SCHED_* name)
    policy: str
    #: static priority in force (0 under SCHED_OTHER)
    priority: int
    #: CPUs the process may run on, sorted
    cpus: tuple[int, ...]
    #: mlockall succeeded
    memory_locked: bool
    #: SCHED_FIFO was requested and is in force
    active: bool
    #: one line per step that failed, naming the cause and the fix
    warnings: tuple[str, ...]


def apply_realtime(
    config: RealtimeConfig, *, system: RealtimeSystem | None = None
) -> RealtimeStatus:
    """Pin the CPU, set SCHED_FIFO and lock memory as ``config`` asks.

    Steps that are not permitted are reported in ``warnings`` (and logged
    once each); nothing is raised for them.

    :param config: the ``[realtime]`` settings; ``freeze_gc`` is left to
        :func:`freeze_gc`, called once start-up is over.
    :param system: the system calls to use; :class:`LinuxRealtimeSystem` if None.
    """
    sys_ = LinuxRealtimeSystem() if system is None else system
    warnings: list[str] = []
    if config.cpu >= 0:
        _append(warnings, _pin_cpu(sys_, config.cpu))
    if config.priority > 0:
        _append(warnings, _set_fifo(sys_, config.priority))
    memory_locked = False
    if config.lock_memory:
        message = _lock_memory(sys_)
        memory_locked = message is None
        _append(warnings, message)

    policy, priority = sys_.sched_getscheduler()
    policy_name = _POLICY_NAMES.get(policy, f"policy {policy}")
    return RealtimeStatus(
        requested=config,
        policy=policy_name,
        priority=priority,
        cpus=tuple(sorted(sys_.sched_getaffinity())),
        memory_locked=memory_locked,
        active=config.priority > 0 and policy == os.SCHED_FIFO,
        warnings=tuple(warnings),
    )


def freeze_gc() -> int:
    """Collect, then move every object alive into the permanent generation.

    Called once start-up is over: the collector no longer walks the
    long-lived objects, so its pauses get shorter.

    :returns: the number of objects frozen.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def describe(status: RealtimeStatus) -> str:
    """``status`` as one line, e.g. ``real time ok: SCHED_FIFO 50, CPU 1, memory locked``."""
    req = status.requested
    requested_any = req.priority > 0 or req.cpu >= 0 or req.lock_memory
    if status.warnings:
        count = len(status.warnings)
        state = f"degraded ({count} warning{'s' if count > 1 else ''})"
    else:
        state = "ok" if requested_any else "off"

    sched = status.policy
    if status.policy in ("SCHED_FIFO", "SCHED_RR"):
        sched += f" {status.priority}"
    if req.priority > 0 and not (status.active and status.priority == req.priority):
        sched += f" (SCHED_FIFO {req.priority} requested)"

    cpus = f"CPU{'s' if len(status.cpus) != 1 else ''} {_cpu_list(status.cpus)}"
    if req.cpu >= 0 and status.cpus != (req.cpu,):
        cpus += f" (CPU {req.cpu} requested)"

    memory = "memory locked" if status.memory_locked else "memory not locked"
    if req.lock_memory and not status.memory_locked:
        memory += " (requested)"
    return f"real time {state}: {sched}, {cpus}, {memory}"


# --- the steps: each returns None on success, else its one warning ---------


def _pin_cpu(system: RealtimeSystem, cpu: int) -> str | None:
    allowed = system.sched_getaffinity()
    try:
        system.sched_setaffinity({cpu})
    except (OSError, ValueError, OverflowError) as e:
        what = f"CPU pinning (realtime.cpu = {cpu}) failed"
        if cpu not in allowed:
            return (
                f"{what}: CPU {cpu} is not in the allowed set {_cpu_list(allowed)} "
                f"(the CPUs this process may run on); "
                f"fix: set realtime.cpu to one of {_cpu_list(allowed)}, or -1"
            )
        return f"{what}: {_error_text(e)}"
    return None


def _set_fifo(system: RealtimeSystem, priority: int) -> str | None:
    try:
        system.sched_setscheduler(os.SCHED_FIFO, priority)
    except OSError as e:
        what = f"SCHED_FIFO (realtime.priority = {priority}) not set"
        if e.errno != errno.EPERM:
            return f"{what}: {_error_text(e)}"
        return f"{what}: {_diagnose_fifo_eperm(system, priority, e)}"
    return None


def _diagnose_fifo_eperm(system: RealtimeSystem, priority: int, error: OSError) -> str:
    caps = system.effective_capabilities()
    rtprio, _ = system.getrlimit(resource.RLIMIT_RTPRIO)
    if not caps & (1 << CAP_SYS_NICE) and rtprio != resource.RLIM_INFINITY and rtprio < priority:
        return (
            f"no CAP_SYS_NICE and RLIMIT_RTPRIO is {rtprio} (below {priority}); "
            f"fix: run as root, or add AmbientCapabilities=CAP_SYS_NICE "
            f"or LimitRTPRIO={priority} to the systemd unit"
        )

    budget_file = _rt_runtime_file(system)
    if budget_file is not None:
        budget = (system.read_text(budget_file) or "").strip()
        if budget == "0":
            return (
                f"the process's cgroup has no real-time budget ({budget_file} is 0), "
                f"and this kernel (CONFIG_RT_GROUP_SCHED) refuses SCHED_FIFO there even to root; "
                f"fix: give the cgroup an RT budget, e.g. write 100000 to {budget_file} "
                f"(its parent cgroups need at least as much); CPUQuota= is not enough"
            )

    uid_map = _user_namespace_uid_map(system)
    if uid_map is not None:
        return (
            f"the process runs in a user namespace (/proc/self/uid_map is {uid_map!r}), "
            f"whose CAP_SYS_NICE is not the host's; fix: run the daemon outside the user "
            f"namespace, or raise its RLIMIT_RTPRIO to {priority} from outside "
            f"(LimitRTPRIO={priority})"
        )
    return _error_text(error)


def _lock_memory(system: RealtimeSystem) -> str | None:
    what = "memory locking (realtime.lock_memory) failed"
    has_ipc_lock = bool(system.effective_capabilities() & (1 << CAP_IPC_LOCK))
    memlock, _ = system.getrlimit(resource.RLIMIT_MEMLOCK)
    fix = "fix: add LimitMEMLOCK=infinity or AmbientCapabilities=CAP_IPC_LOCK to the systemd unit"
    if not has_ipc_lock and memlock != resource.RLIM_INFINITY:
        return (
            f"{what}: RLIMIT_MEMLOCK is {_bytes(memlock)} without CAP_IPC_LOCK, too low for "
            f"mlockall (with MCL_FUTURE, allocations past the limit would fail); {fix}"
        )
    try:
        system.mlockall(MCL_CURRENT | MCL_FUTURE)
    except OSError as e:
        cause = f"mlockall failed: {_error_text(e)}"
        uid_map = _user_namespace_uid_map(system)
        if uid_map is not None and e.errno in (errno.EPERM, errno.ENOMEM):
            return (
                f"{what}: {cause}; the process runs in a user namespace (/proc/self/uid_map "
                f"is {uid_map!r}), whose CAP_IPC_LOCK is not the host's; {fix}"
            )
        if e.errno == errno.ENOMEM and has_ipc_lock:
            return f"{what}: {cause} (not enough RAM to lock the daemon's memory)"
        return f"{what}: {cause}"
    return None


# --- helpers -----------------------------------------------------------------


def _append(warnings: list[str], message: str | None) -> None:
    if message is not None:
        log.warning("%s", message)
        warnings.append(message)


def _error_text(e: Exception) -> str:
    if isinstance(e, OSError) and e.errno is not None:
        return f"{errno.errorcode.get(e.errno, str(e.errno))} ({e.strerror})"
    return str(e) or type(e).__name__


def _cap_eff(status: str | None) -> int:
    for line in (status or "").splitlines():
        key, _, value = line.partition(":")
        if key == "CapEff":
            try:
                return int(value.strip(), 16)
            except ValueError:
                return 0
    return 0


def _rt_runtime_file(system: RealtimeSystem) -> str | None:
    """``cpu.rt_runtime_us`` of the process's cgroup (cgroup v1 ``cpu`` controller)."""
    text = system.read_text("/proc/self/cgroup")
    for line in (text or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3 or "cpu" not in parts[1].split(","):
            continue
        controllers, path = parts[1], parts[2].rstrip("/")
        # The hierarchy is mounted under its controller list ("cpu,cpuacct"),
        # usually with a "cpu" link beside it.
        for mount in dict.fromkeys((controllers, "cpu", "cpu,cpuacct")):
            candidate = f"{_CGROUP_ROOT}/{mount}{path}/cpu.rt_runtime_us"
            if system.read_text(candidate) is not None:
                return candidate
    return None


def _user_namespace_uid_map(system: RealtimeSystem) -> str | None:
    """The uid map when the process is in a user namespace other than the initial one."""
    text = system.read_text("/proc/self/uid_map")
    if text is None:
        return None
    if tuple(text.split()) == _IDENTITY_UID_MAP:
        return None
    return " ".join(text.split())


def _cpu_list(cpus: set[int] | tuple[int, ...]) -> str:
    """CPUs as the kernel lists them: ``0-3,6``."""
    ordered = sorted(cpus)
    if not ordered:
        return "none"
    ranges: list[str] = []
    start = prev = ordered[0]
    for cpu in [*ordered[1:], None]:
        if cpu is not None and cpu == prev + 1:
            prev = cpu
            continue
        ranges.append(str(start) if start == prev else f"{start}-{prev}")
        if cpu is not None:
            start = prev = cpu
    return ",".join(ranges)


def _bytes(n: int) -> str:
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20} MiB"
    if n >= 1 << 10 and n % (1 << 10) == 0:
        return f"{n >> 10} KiB"
    return f"{n} bytes"
