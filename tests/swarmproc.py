"""Real daemon processes on one host: a local swarm in a private network namespace.

:class:`LocalSwarm` writes one swarm key and, per node, a config file, a state
directory and a control socket path under a temporary directory, and starts
each node as ``python -m cloudkernel run`` inside a
:class:`~cloudkernel.sandbox.PrivateNetwork` (loopback multicast, nothing of
the host's network touched).  Tests drive the nodes through the client API
and the CLI, kill them with any signal, and start them again (a new epoch).
Every wait is bounded; everything is stopped on :meth:`close`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cloudkernel.client import Client
from cloudkernel.errors import CloudkernelError
from cloudkernel.keyfile import generate_key, write_key_file
from cloudkernel.sandbox import PrivateNetwork, SandboxError

ROOT = Path(__file__).resolve().parent.parent

#: membership settings that make a test's failure detection quick
FAST_MEMBERSHIP = """
[membership]
heartbeat_interval = 0.1
acceptable_pause = 0.3
min_std_deviation = 0.05
dead_after = 1.0
"""


#: the metrics exporter of node N listens on 127.0.0.1:(METRICS_PORT + N) when asked for
METRICS_PORT = 9500


def sandbox_problem() -> str | None:
    """Why no private network namespace can be made here, or None when one can."""
    if shutil.which("unshare") is None:
        return "util-linux (unshare) is missing"
    try:
        PrivateNetwork().close()
    except SandboxError as exc:
        return str(exc)
    return None


def node_config(
    base: Path,
    node: int,
    port: int,
    extra: str = "",
    priority: int = 0,
    control: str = "",
    metrics: bool = False,
) -> str:
    # Off unless asked for: the nodes share one network namespace and the
    # default address would be taken by the first.
    listen = f"127.0.0.1:{METRICS_PORT + node}" if metrics else ""
    return f"""
[node]
id = {node}
key_file = "{base / "swarm.key"}"
state_dir = "{base / f"node{node}" / "state"}"

[mesh]
interfaces = ["lo"]
group = "239.255.67.75"
group6 = ""
port = {port}

[control]
socket = "{base / f"node{node}" / "control.sock"}"
{control}

[realtime]
priority = {priority}

[log]
level = "info"

[metrics]
listen = "{listen}"
{extra}
"""


class LocalSwarm:
    """N daemons (ids 1..N) in one private network (see the module docstring)."""

    def __init__(
        self,
        base: Path,
        n: int,
        *,
        port: int = 47475,
        extra: str = "",
        per_node: Callable[[int], str] | None = None,
        inject_loss: float = 0.0,
        priority: int = 0,
        control: Callable[[int], str] | None = None,
        user_namespace: bool = True,
        metrics: bool = False,
    ) -> None:
        self.base = base
        self.n = n
        self.inject_loss = inject_loss
        write_key_file(base / "swarm.key", generate_key())
        self.net = PrivateNetwork(user_namespace=user_namespace)
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.configs: dict[int, Path] = {}
        for node in range(1, n + 1):
            home = base / f"node{node}"
            home.mkdir(parents=True, exist_ok=True)
            text = node_config(
                base,
                node,
                port,
                extra + (per_node(node) if per_node else ""),
                priority,
                control(node) if control else "",
                metrics,
            )
            path = home / "cloudkernel.toml"
            path.write_text(text)
            self.configs[node] = path

    def socket(self, node: int) -> str:
        return str(self.base / f"node{node}" / "control.sock")

    def log(self, node: int) -> str:
        path = self.base / f"node{node}" / "daemon.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self, node: int, *extra_args: str) -> None:
        log = open(self.base / f"node{node}" / "daemon.log", "ab")
        args = [sys.executable, "-m", "cloudkernel", "run", "--config", str(self.configs[node])]
        if self.inject_loss:
            args += ["--inject-loss", str(self.inject_loss)]
        env = {k: v for k, v in os.environ.items() if k != "CLOUDKERNEL_SOCKET"}
        env["PYTHONPATH"] = str(ROOT)
        self.procs[node] = self.net.popen(
            [*args, *extra_args], stdout=log, stderr=subprocess.STDOUT, env=env
        )
        log.close()

    def start_all(self) -> None:
        for node in range(1, self.n + 1):
            self.start(node)
        for node in range(1, self.n + 1):
            self.wait_ready(node)

    def wait_ready(self, node: int, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            proc = self.procs.get(node)
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"node {node} exited {proc.returncode}:\n{self.log(node)}")
            try:
                with Client(self.socket(node), timeout=2.0) as client:
                    return client.status()
            except CloudkernelError as exc:
                last = exc
            time.sleep(0.05)
        raise AssertionError(f"node {node} not ready after {timeout} s ({last}):\n{self.log(node)}")

    def cli(self, node: int, *args: str) -> subprocess.CompletedProcess[str]:
        """``cloudkernel --socket <node's socket> ARGS`` run to completion (bounded)."""
        env = {k: v for k, v in os.environ.items() if k != "CLOUDKERNEL_SOCKET"}
        env["PYTHONPATH"] = str(ROOT)
        return subprocess.run(
            [sys.executable, "-m", "cloudkernel", "--socket", self.socket(node), *args],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
            check=False,
        )

    def client(self, node: int) -> Client:
        return Client(self.socket(node), timeout=5.0)

    def kill(self, node: int, signum: int = signal.SIGKILL) -> None:
        proc = self.procs[node]
        proc.send_signal(signum)
        proc.wait(10)

    def wait_for(self, what: Callable[[], bool], timeout: float, message: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if what():
                return
            time.sleep(0.05)
        raise AssertionError(message)

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.net.close()


@contextlib.contextmanager
def running_swarm(base: Path, n: int, **kwargs: Any) -> Iterator[LocalSwarm]:
    """``LocalSwarm(base, n, **kwargs)`` with every node started and ready; closed after."""
    swarm = LocalSwarm(base, n, **kwargs)
    try:
        swarm.start_all()
        yield swarm
    finally:
        swarm.close()
