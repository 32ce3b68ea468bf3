"""The daemons of a soak cluster: one real ``cloudkernel run`` per node namespace.

:class:`ClusterNodes` writes one swarm key and, per node, a config file
(``[node] id = i``, interface ``eth0``, its own state directory and control
socket), starts each daemon inside its node's network namespace (optionally
in a CPU-quota cgroup, see :mod:`cloudkernel.cluster.cgroup`), and can kill
it with SIGKILL and start it again.  Control sockets are files, so clients
in the harness reach every daemon without entering a namespace.

Every exit the harness did not cause is a **crash** and is kept with the
tail of the daemon's log: a soak run must end with none.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..client import Client
from ..errors import CloudkernelError
from ..keyfile import generate_key, write_key_file
from .cgroup import CpuGroup
from .spawn import signals_deferred, spawn

__all__ = [
    "ClusterNodes",
    "Crash",
    "NodeNetwork",
    "ProcSample",
    "sample_process",
]

PACKAGE_ROOT = Path(__file__).resolve().parent.parent.parent


class NodeNetwork(Protocol):
    """What the nodes need of the network: a command line that runs in node i's namespace."""

    def command(self, node: int, argv: Sequence[str]) -> list[str]: ...


@dataclass(frozen=True)
class Crash:
    node: int
    #: seconds since the cluster started
    at: float
    returncode: int | None
    log_tail: str


@dataclass(frozen=True)
class ProcSample:
    rss_bytes: int
    cpu_seconds: float


def sample_process(pid: int) -> ProcSample | None:
    """RSS and CPU time (user + system) of a process, None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            rss_kib = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, StopIteration, IndexError, ValueError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return ProcSample(rss_kib * 1024, (int(fields[11]) + int(fields[12])) / ticks)


@dataclass
class _Node:
    config: Path
    socket: str
    log: Path
    group: CpuGroup | None = None
    proc: subprocess.Popen[bytes] | None = None
    #: True while the harness has it stopped on purpose
    stopped: bool = False
    starts: int = 0
    pids: list[int] = field(default_factory=list)


class ClusterNodes:
    """Daemons 1..N on a network (see the module docstring).

    :param network: gives each node's command line (a ``ClusterNetwork``)
    :param base: a directory for keys, configs, state, sockets and logs
    :param extra_config: TOML appended to every node's config (e.g. a
        ``[qos.critical]`` table or ``[[topic]]`` entries)
    :param cpu_share: hold each daemon to this share of a core (cgroup), or None
    :param interface: the network interface of each node's namespace
    :param priority: the daemon's ``realtime.priority`` (0: not real-time);
        with ``cpu_share`` the groups get a real-time budget too
    """

    def __init__(
        self,
        network: NodeNetwork,
        base: Path,
        nodes: Sequence[int],
        *,
        extra_config: str = "",
        cpu_share: float | None = None,
        priority: int = 0,
        log_level: str = "info",
        interface: str = "eth0",
    ) -> None:
        self.network = network
        self.base = base
        self.started = time.monotonic()
        self.crashes: list[Crash] = []
        base.mkdir(parents=True, exist_ok=True)
        write_key_file(base / "swarm.key", generate_key())
        self._nodes: dict[int, _Node] = {}
        try:
            for node in nodes:
                home = base / f"n{node}"
                home.mkdir(exist_ok=True)
                socket = str(home / "control.sock")
                config = home / "cloudkernel.toml"
                config.write_text(
                    _config(base, node, socket, priority, log_level, interface, extra_config)
                )
                group = None
                if cpu_share is not None:
                    group = CpuGroup(
                        f"n{node}",
                        cpu_share,
                        realtime=priority > 0,
                        realtime_groups=len(nodes),
                    )
                self._nodes[node] = _Node(config, socket, home / "daemon.log", group)
        except BaseException:
            self.close()
            raise

    @property
    def ids(self) -> list[int]:
        return sorted(self._nodes)

    def socket(self, node: int) -> str:
        return self._nodes[node].socket

    def group(self, node: int) -> CpuGroup | None:
        return self._nodes[node].group

    def pid(self, node: int) -> int | None:
        proc = self._nodes[node].proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def log_tail(self, node: int, lines: int = 20) -> str:
        path = self._nodes[node].log
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def start(self, node: int) -> None:
        state = self._nodes[node]
        argv = [sys.executable, "-m", "cloudkernel", "run", "--config", str(state.config)]
        env = {k: v for k, v in os.environ.items() if k != "CLOUDKERNEL_SOCKET"}
        env["PYTHONPATH"] = str(PACKAGE_ROOT)
        with open(state.log, "ab") as log, signals_deferred():
            state.proc = spawn(
                self.network.command(node, argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                setup=state.group.join if state.group is not None else None,
            )
            state.stopped = False
            state.starts += 1
            state.pids.append(state.proc.pid)

    def start_all(self, timeout: float = 30.0) -> None:
        for node in self.ids:
            self.start(node)
        for node in self.ids:
            self.wait_ready(node, timeout)

    def wait_ready(self, node: int, timeout: float = 30.0) -> dict[str, Any]:
        """The node's status once its control socket answers."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            self.check()
            if self._nodes[node].proc is None:
                raise CloudkernelError(f"node {node} is not started")
            try:
                with Client(self.socket(node), timeout=2.0) as client:
                    return client.status()
            except CloudkernelError as exc:
                last = exc
            time.sleep(0.05)
        raise CloudkernelError(
            f"node {node} did not answer within {timeout} s ({last}):\n{self.log_tail(node)}"
        )

    def kill(self, node: int) -> None:
        """SIGKILL the node's daemon (it stays down until :meth:`start`)."""
        state = self._nodes[node]
        state.stopped = True
        if state.proc is not None and state.proc.poll() is None:
            state.proc.send_signal(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                state.proc.wait(10)

    def check(self) -> list[Crash]:
        """Record daemons that exited by themselves; the new crashes."""
        new = []
        for node, state in self._nodes.items():
            proc = state.proc
            if proc is None or state.stopped or proc.poll() is None:
                continue
            crash = Crash(
                node, time.monotonic() - self.started, proc.returncode, self.log_tail(node)
            )
            new.append(crash)
            state.stopped = True  # recorded once; the runner decides whether to restart
        self.crashes.extend(new)
        return new

    def tracebacks(self) -> dict[int, int]:
        """Per node, how many Python tracebacks its log holds (a bug if any)."""
        counts = {}
        for node, state in self._nodes.items():
            if state.log.exists():
                counts[node] = state.log.read_text(errors="replace").count("Traceback")
        return counts

    def close(self) -> None:
        """SIGTERM every daemon (SIGKILL after 10 s), remove the cgroups."""
        procs = [s.proc for s in self._nodes.values() if s.proc is not None]
        for state in self._nodes.values():
            state.stopped = True
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for state in self._nodes.values():
            if state.group is not None:
                state.group.close()


def _config(
    base: Path, node: int, socket: str, priority: int, level: str, interface: str, extra: str
) -> str:
    return f"""
[node]
id = {node}
key_file = "{base / "swarm.key"}"
state_dir = "{base / f"n{node}" / "state"}"

[mesh]
interfaces = ["{interface}"]
group6 = ""
# one daemon per node, as on a real board: no copies of our own datagrams
loopback = {"true" if interface == "lo" else "false"}

[control]
socket = "{socket}"

[realtime]
priority = {priority}

[metrics]
listen = ""

[log]
level = "{level}"
{extra}
"""
