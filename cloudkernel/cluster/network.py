"""A cluster's network on one Linux host: a namespace per node, joined by the
impairing switch of :mod:`cloudkernel.cluster.switch` (root only).

Layout of ``ClusterNetwork(3, name="ck")`` run by process 4242::

    ckc4242-ck-n1  eth0 10.77.0.1/24 ──veth── n1 ┐
    ckc4242-ck-n2  eth0 10.77.0.2/24 ──veth── n2 ├ ckc4242-ck-sw: switch process
    ckc4242-ck-n3  eth0 10.77.0.3/24 ──veth── n3 ┘

Nodes are numbered from 1.  Each node has its loopback up (with
multicast), ``eth0`` with 10.77.0.<i>/24 and an IPv6 link-local address,
and the IPv4 multicast route 224.0.0.0/4 through ``eth0``.  Transmit
checksum offload is off on ``eth0``: the switch forwards frames as it reads
them, and a frame whose checksum was left to the hardware would reach the
receiver with a wrong one.  The switch-side ends (``n<i>``) belong to the
switch process, not to a Linux bridge, so every frame crosses its
impairment model; the switch namespace has IPv6 off, so its kernel sends
nothing of its own into the cluster.

Cleanup: :meth:`ClusterNetwork.close` (the context manager's exit, and an
``atexit`` hook, so Ctrl-C and a normal exit both tear everything down)
stops every process started inside, the switch, and deletes the namespaces
and the working directory.  A harness killed by SIGKILL cannot clean up: its
switch gets SIGTERM from the kernel (``PR_SET_PDEATHSIG``), and the next
:func:`remove_leftovers` (which every new network calls first) kills what
still runs in namespaces named ``ckc<pid>-...`` whose pid is gone, then
deletes them.  SIGTERM to the harness ends it without cleanup, like SIGKILL,
unless the harness turns SIGTERM into an exception itself.  Processes are
started with ``PR_SET_PDEATHSIG``, which fires when the *thread* that
started them ends: start them from the main thread or a long-lived one.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .cgroup import process_alive
from .spawn import signals_deferred, spawn
from .switch import SwitchConfigError, parse_switch_config

__all__ = ["ClusterNetwork", "cluster_namespaces", "problem", "remove_leftovers"]

_NAMESPACE = re.compile(r"^ckc(\d+)-([a-z0-9]+)-(sw|n\d+)$")
_WORKDIR = re.compile(r"^ckc(\d+)-[a-z0-9]+-")
_RATE = re.compile(r"^(\d+(?:\.\d+)?)(bit|kbit|mbit|gbit|bps|kbps|mbps|gbps)$")
_RATE_BITS = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9}
_NFT_TABLE = "ckc_drop"
#: the longest wait for the switch to start, reload or write its stats
SWITCH_TIMEOUT = 10.0
#: namespaces of this process's open networks (never removed as leftovers)
_live: set[str] = set()


def _run(argv: Sequence[str], *, check: bool = True, stdin: str | None = None) -> str:
    """Run a command to completion; its standard output.

    :raises RuntimeError: with its standard error when it fails and ``check``.
    """
    done = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=30, check=False
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def cluster_namespaces() -> list[str]:
    """The names of the namespaces of every cluster network on this host."""
    listed = _run(["ip", "netns", "list"]).splitlines()
    return [
        line.split()[0] for line in listed if line.strip() and _NAMESPACE.match(line.split()[0])
    ]


def _is_leftover(pid: int, name: str) -> bool:
    # This process's own names not in use come from a crashed run that had its pid.
    return name not in _live and (pid == os.getpid() or not process_alive(pid))


def remove_leftovers() -> list[str]:
    """Remove what crashed cluster runs left: kill the processes in their
    namespaces (their switch, their nodes' daemons), delete the namespaces
    and working directories; the namespaces removed.  Only names of the form
    ``ckc<pid>-<name>-(sw|n<i>)`` whose process is gone are touched.
    """
    removed = []
    for name in cluster_namespaces():
        match = _NAMESPACE.match(name)
        if match is None or not _is_leftover(int(match.group(1)), name):
            continue
        for inside in _run(["ip", "netns", "pids", name], check=False).split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(inside), signal.SIGKILL)
        _run(["ip", "netns", "del", name], check=False)
        removed.append(name)
    # A switch can outlive its namespace's name (deleted by hand, say): find it
    # by the working directory of its run on its command line.
    for pid, argv in _switch_processes():
        match = _WORKDIR.match(os.path.basename(os.path.dirname(_option(argv, "--stats"))))
        if match and _is_leftover(int(match.group(1)), _run_namespace(argv)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for path in glob.glob(os.path.join(tempfile.gettempdir(), "ckc*")):
        match = _WORKDIR.match(os.path.basename(path))
        if match and int(match.group(1)) != os.getpid() and not process_alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)
    return removed


def _switch_processes() -> list[tuple[int, list[str]]]:
    """(pid, argv) of every cluster switch process on the host."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as file:
                argv = file.read().decode(errors="replace").split("\0")
        except OSError:
            continue  # gone meanwhile
        if "cloudkernel.cluster.switch" in argv:
            found.append((int(entry), argv))
    return found


def _option(argv: Sequence[str], option: str) -> str:
    """The value after ``option`` in ``argv`` ("" if absent)."""
    for i, arg in enumerate(argv[:-1]):
        if arg == option:
            return argv[i + 1]
    return ""


def _run_namespace(argv: Sequence[str]) -> str:
    """The switch namespace name of the run a switch's working directory belongs to."""
    workdir = os.path.basename(os.path.dirname(_option(argv, "--stats")))
    return workdir.rsplit("-", 1)[0] + "-sw"


def problem() -> str | None:
    """Why this host cannot build a cluster network (a reason to skip), or None."""
    for tool in ("ip", "ethtool"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (bash tools/setup.sh installs it as root)"
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth pairs, AF_PACKET sockets)"
    probe = f"ckc{os.getpid()}-probe-sw"
    try:
        _run(["ip", "netns", "add", probe])
    except RuntimeError as exc:
        return f"cannot make a network namespace: {exc}"
    finally:
        _run(["ip", "netns", "del", probe], check=False)
    return None


def _tbf_burst_bytes(rate: str) -> int:
    """A token bucket of 10 ms at ``rate`` (at least a few frames): big enough
    for the kernel's timer granularity, small enough to shape.
    """
    match = _RATE.match(rate)
    if match is None:
        raise ValueError(f"rate {rate!r} is not like '10mbit' (units: bit kbit mbit gbit bps ...)")
    value, unit = float(match.group(1)), match.group(2)
    bits = value * (_RATE_BITS[unit] if unit in _RATE_BITS else 8 * _RATE_BITS[unit[:-2] + "bit"])
    if bits <= 0:
        raise ValueError(f"rate {rate!r} must be above 0")
    return max(int(bits / 8 / 100), 16_000)


class ClusterNetwork:
    """Node namespaces joined by the impairing switch; a context manager.

    ``impairment``: the switch config (``{"default": ..., "links": ...}``, see
    :mod:`cloudkernel.cluster.switch`); ``seed``: the switch's random seed;
    ``rate_limit``: a token-bucket rate (e.g. ``"10mbit"``) on every node's
    egress; ``realtime_switch``: a SCHED_FIFO priority for the switch.
    """

    def __init__(
        self,
        nodes: int,
        *,
        name: str = "ck",
        impairment: Mapping[str, Any] | None = None,
        seed: int = 0,
        rate_limit: str | None = None,
        realtime_switch: int | None = None,
    ) -> None:
        if not 1 <= nodes <= 250:
            raise ValueError(f"nodes={nodes} must be in [1, 250] (10.77.0.<i>/24)")
        if not re.fullmatch(r"[a-z0-9]{1,12}", name):
            raise ValueError(f"name={name!r} must be 1 to 12 of a-z, 0-9")
        self.nodes = nodes
        self.prefix = f"ckc{os.getpid()}-{name}"
        self.switch_namespace = f"{self.prefix}-sw"
        if self.switch_namespace in _live:
            raise ValueError(f"a cluster network named {name!r} is already up in this process")
        self.seed = seed
        self.port_names = [f"n{i}" for i in range(1, nodes + 1)]
        self._impairment: dict[str, Any] = dict(impairment or {})
        self._cuts: list[frozenset[int]] = []
        self._unplugged: set[int] = set()
        self._nft_nodes: set[int] = set()
        self._namespaces: list[str] = []
        self._procs: list[subprocess.Popen[Any]] = []
        self.switch_process: subprocess.Popen[bytes] | None = None
        #: the switch's stats as it wrote them on exit (after close())
        self.final_stats: dict[str, Any] | None = None
        self._closed = False
        # bad arguments fail before any root work
        self._check_config(self._switch_config())
        if rate_limit is not None:
            _tbf_burst_bytes(rate_limit)
        self.workdir = tempfile.mkdtemp(prefix=f"{self.prefix}-")
        self.config_path = os.path.join(self.workdir, "switch.json")
        self.stats_path = os.path.join(self.workdir, "stats.json")
        self.switch_log = os.path.join(self.workdir, "switch.log")
        atexit.register(self.close)
        try:
            remove_leftovers()
            self._build(rate_limit, realtime_switch)
        except BaseException:
            self.close()
            raise

    # -- building ----------------------------------------------------------------------

    def _add_namespace(self, name: str) -> None:
        _run(["ip", "netns", "add", name])
        _live.add(name)
        self._namespaces.append(name)  # from here on, close() deletes it

    def _build(self, rate_limit: str | None, realtime_switch: int | None) -> None:
        switch = self.switch_namespace
        self._add_namespace(switch)
        self._sysctl(
            switch, "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"
        )
        for i in range(1, self.nodes + 1):
            node = self.ns(i)
            self._add_namespace(node)
            # Every address is unique by construction: no duplicate address
            # detection, so the link-local address is usable at once.
            self._sysctl(
                node, "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"
            )
            mac = f"02:00:0a:4d:00:{i:02x}"
            peer = ["peer", "name", "eth0", "address", mac, "netns", node]
            _run(["ip", "-n", switch, "link", "add", f"n{i}", "type", "veth", *peer])
            _run(["ip", "-n", switch, "link", "set", f"n{i}", "up"])
            batch = "\n".join(
                [
                    "link set lo multicast on",
                    "link set lo up",
                    f"addr add {self.address(i)}/24 dev eth0",
                    "link set eth0 up",
                    "route add 224.0.0.0/4 dev eth0",
                ]
            )
            _run(["ip", "-n", node, "-batch", "-"], stdin=batch + "\n")
            _run(self.command(i, ["ethtool", "-K", "eth0", "tx", "off"]))
        self._write_config(self._switch_config())
        self._start_switch(realtime_switch)
        if rate_limit is not None:
            for i in range(1, self.nodes + 1):
                self.rate_limit(i, rate_limit)

    @staticmethod
    def _sysctl(namespace: str, *settings: str) -> None:
        _run(["ip", "netns", "exec", namespace, "sysctl", "-q", "-w", *settings], check=False)

    def _start_switch(self, realtime: int | None) -> None:
        argv = [sys.executable, "-m", "cloudkernel.cluster.switch"]
        for port in self.port_names:
            argv += ["--port", f"{port}={port}"]
        argv += ["--config", self.config_path, "--stats", self.stats_path, "--seed", str(self.seed)]
        if realtime is not None:
            argv += ["--realtime", str(realtime)]
        with open(self.switch_log, "wb") as log, signals_deferred():
            self.switch_process = spawn(
                ["ip", "netns", "exec", self.switch_namespace, *argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        self._wait("the switch to open its ports", lambda: os.path.exists(self.stats_path))

    # -- names and processes -----------------------------------------------------------

    def _check_node(self, i: int) -> None:
        if not 1 <= i <= self.nodes:
            raise ValueError(f"node {i} does not exist (nodes are 1..{self.nodes})")

    def ns(self, i: int) -> str:
        """The namespace of node ``i`` (from 1)."""
        self._check_node(i)
        return f"{self.prefix}-n{i}"

    def address(self, i: int) -> str:
        """Node ``i``'s IPv4 address on ``eth0``."""
        self._check_node(i)
        return f"10.77.0.{i}"

    def command(self, i: int, argv: Sequence[str]) -> list[str]:
        """``argv`` wrapped to run inside node ``i``'s namespace."""
        return ["ip", "netns", "exec", self.ns(i), *argv]

    def popen(self, i: int, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` in node ``i`` (``ip netns exec`` becomes the program itself);
        it gets SIGTERM when the harness dies, and :meth:`close` stops it.
        """
        with signals_deferred():
            proc = spawn(self.command(i, argv), **kwargs)
            self._procs.append(proc)
        return proc

    def run(self, i: int, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """Run ``argv`` in node ``i`` to completion (30 s timeout unless given)."""
        kwargs.setdefault("timeout", 30)
        return subprocess.run(self.command(i, argv), check=False, **kwargs)

    # -- impairment --------------------------------------------------------------------

    def _switch_config(self) -> dict[str, Any]:
        config = dict(self._impairment)
        blocked = set(config.get("blocked", []))
        for cut in self._cuts:
            for a in cut:
                for b in set(range(1, self.nodes + 1)) - cut:
                    blocked |= {f"n{a}>n{b}", f"n{b}>n{a}"}
        if blocked:
            config["blocked"] = sorted(blocked)
        return config

    def _check_config(self, config: Mapping[str, Any]) -> None:
        try:
            parse_switch_config(config, self.port_names)
        except SwitchConfigError as exc:
            raise ValueError(f"switch config: {exc}") from None

    def _write_config(self, config: Mapping[str, Any]) -> None:
        temporary = f"{self.config_path}.tmp"
        with open(temporary, "w", encoding="utf-8") as file:
            json.dump(config, file, indent=1)
        os.replace(temporary, self.config_path)

    def _apply(self) -> None:
        """Send the switch the current config; return once it has taken it."""
        config = self._switch_config()
        self._check_config(config)
        self._write_config(config)
        before = self._read_stats()
        done_before = before["config_reloads"] + before["config_errors"]
        self._signal_switch(signal.SIGHUP)
        self._wait(
            "the switch to reload its config",
            lambda: (
                self._read_stats()["config_reloads"] + self._read_stats()["config_errors"]
                > done_before
            ),
        )
        if self._read_stats()["config_errors"] > before["config_errors"]:
            raise RuntimeError(f"the switch refused the config: {self._switch_log_tail()}")

    def set_impairment(self, config: Mapping[str, Any]) -> None:
        """Replace the switch config (partitions made by :meth:`partition` stay)."""
        self._impairment = dict(config)
        self._apply()

    def partition(self, nodes: Iterable[int]) -> None:
        """Cut ``nodes`` off from every other node, both ways; the nodes on
        each side still reach each other.  Partitions add up: each call is
        one more cut, which :meth:`heal` with the same nodes removes.
        """
        side = frozenset(nodes)
        for i in side:
            self._check_node(i)
        if not side or len(side) == self.nodes:
            raise ValueError(f"a partition needs some but not all nodes, not {sorted(side)}")
        self._cuts.append(side)
        self._apply()

    def heal(self, nodes: Iterable[int] | None = None) -> None:
        """Remove the cut that ``partition(nodes)`` made (None: every cut)."""
        if nodes is None:
            self._cuts.clear()
        else:
            side = frozenset(nodes)
            if side not in self._cuts:
                raise ValueError(f"no partition of nodes {sorted(side)} to heal")
            self._cuts.remove(side)
        self._apply()

    def unplug(self, i: int) -> None:
        """Pull node ``i``'s cable: its switch port goes down, its ``eth0`` loses carrier."""
        self._check_node(i)
        _run(["ip", "-n", self.switch_namespace, "link", "set", f"n{i}", "down"])
        self._unplugged.add(i)

    def plug(self, i: int) -> None:
        """Put node ``i``'s cable back."""
        self._check_node(i)
        _run(["ip", "-n", self.switch_namespace, "link", "set", f"n{i}", "up"])
        self._unplugged.discard(i)

    def nft_drop(self, i: int, percent: float, port: int | None = None) -> None:
        """Drop ``percent`` % of what node ``i`` receives (only UDP to ``port`` if
        given), at random, in its kernel (nftables); 0 removes the rule.
        """
        self._check_node(i)
        if not 0 <= percent <= 100:
            raise ValueError(f"percent={percent} must be in [0, 100]")
        if port is not None and not 1 <= port <= 65535:
            raise ValueError(f"port={port} must be in [1, 65535]")
        # "add" then "delete" makes the script work whether or not the table exists
        script = [f"add table inet {_NFT_TABLE}", f"delete table inet {_NFT_TABLE}"]
        if percent > 0:
            match = f"udp dport {port} " if port is not None else ""
            script += [
                f"table inet {_NFT_TABLE} {{",
                "  chain input {",
                "    type filter hook input priority 0; policy accept;",
                f"    {match}numgen random mod 10000 < {round(percent * 100)} counter drop",
                "  }",
                "}",
            ]
        _run(self.command(i, ["nft", "-f", "-"]), stdin="\n".join(script) + "\n")
        self._nft_nodes.add(i)

    def rate_limit(self, i: int, rate: str | None) -> None:
        """Shape node ``i``'s egress to ``rate`` (e.g. "10mbit", a token bucket);
        None removes the limit.
        """
        self._check_node(i)
        if rate is None:
            _run(self.command(i, ["tc", "qdisc", "del", "dev", "eth0", "root"]), check=False)
            return
        burst = _tbf_burst_bytes(rate)
        tbf = ["tbf", "rate", rate, "burst", str(burst), "latency", "50ms"]
        _run(self.command(i, ["tc", "qdisc", "replace", "dev", "eth0", "root", *tbf]))

    # -- the switch's stats ------------------------------------------------------------

    def _read_stats(self) -> dict[str, Any]:
        with open(self.stats_path, encoding="utf-8") as file:
            stats: dict[str, Any] = json.load(file)
        return stats

    def stats(self) -> dict[str, Any]:
        """The switch's counters, fresh (per link, totals, reloads; see the switch)."""
        if self._closed:
            if self.final_stats is None:
                raise RuntimeError("the network is closed and its switch left no stats")
            return self.final_stats
        before = self._read_stats()["stats_writes"]
        self._signal_switch(signal.SIGUSR1)
        self._wait(
            "the switch to write its stats", lambda: self._read_stats()["stats_writes"] > before
        )
        return self._read_stats()

    def _signal_switch(self, signum: int) -> None:
        if self.switch_process is None or self.switch_process.poll() is not None:
            raise RuntimeError(f"the switch is not running: {self._switch_log_tail()}")
        self.switch_process.send_signal(signum)

    def _switch_log_tail(self) -> str:
        try:
            with open(self.switch_log, encoding="utf-8", errors="replace") as file:
                return file.read()[-2000:].strip() or "(no output)"
        except OSError:
            return "(no log)"

    def _wait(self, what: str, done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + SWITCH_TIMEOUT
        while time.monotonic() < deadline:
            if self.switch_process is not None and self.switch_process.poll() is not None:
                raise RuntimeError(
                    f"the switch exited ({self.switch_process.returncode}) while waiting for "
                    f"{what}: {self._switch_log_tail()}"
                )
            with contextlib.suppress(OSError, ValueError, KeyError):
                if done():
                    return
            time.sleep(0.005)
        raise TimeoutError(f"waited {SWITCH_TIMEOUT} s for {what}")

    # -- teardown ----------------------------------------------------------------------

    @staticmethod
    def _stop(proc: subprocess.Popen[Any], timeout: float = 5.0) -> None:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        """Stop every process, the switch, and delete every namespace (idempotent)."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        errors = []
        for proc in self._procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self._procs:
            self._stop(proc)
        if self.switch_process is not None:
            self._stop(self.switch_process)
            with contextlib.suppress(OSError, ValueError):
                self.final_stats = self._read_stats()
        for i in sorted(self._nft_nodes):
            _run(self.command(i, ["nft", "delete", "table", "inet", _NFT_TABLE]), check=False)
        for name in reversed(self._namespaces):
            try:
                _run(["ip", "netns", "del", name])
            except RuntimeError as exc:
                errors.append(str(exc))
            _live.discard(name)
        self._namespaces.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)
        if errors:
            raise RuntimeError("; ".join(errors))

    def __enter__(self) -> ClusterNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
