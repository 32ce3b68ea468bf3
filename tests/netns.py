"""Hosts on separate network namespaces joined by Linux bridges (root only).

A :class:`Topology` makes named network namespaces (``ip netns``) for hosts
and for a "switch" holding one Linux bridge per network segment, and wires
a host to a segment with a veth pair: one end a port of the segment's
bridge, the other end the host's network interface.  Daemons started in a
host namespace (:meth:`Topology.popen`, ``ip netns exec``) see only that
host's interfaces, so cloudkernel's multicast crosses the bridges as it
would cross a real link between robots.

Every interface is made inside the topology's own namespaces (``ip -n``):
the host's own interfaces, routes and firewall are never touched.  Names
start with ``ckt<pid>-``; :func:`remove_leftovers` deletes namespaces of that
form whose process is gone (a crashed earlier run), and :meth:`Topology.close`
stops every process started inside (SIGTERM, then SIGKILL) and deletes every
namespace the topology made.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from typing import Any

from cloudkernel.cluster.cgroup import process_alive

__all__ = ["Topology", "host_network_snapshot", "ip", "namespaces", "problem", "remove_leftovers"]

#: namespace names this module makes: ckt<pid of the test process>-<topology>-<role>
PREFIX = f"ckt{os.getpid()}-"
_NAME = re.compile(r"^ckt(\d+)-\S*$")
_PR_SET_PDEATHSIG = 1
_topologies = itertools.count(1)
_NO_DAD = "f=/proc/sys/net/ipv6/conf/{conf}/accept_dad; [ ! -e $f ] || echo 0 > $f"
#: namespaces of this process that are in use (never deleted as leftovers)
_live: set[str] = set()


def _die_with_parent() -> None:
    """In the child: SIGTERM when the test process dies (the daemon never outlives it)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def ip(*args: str, ns: str | None = None, check: bool = True) -> str:
    """Run ``ip [-n ns] args``; its standard output.

    :raises RuntimeError: with ip's message when it fails and ``check``.
    """
    argv = ["ip", *(["-n", ns] if ns else []), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def namespaces() -> list[str]:
    """The names of the named network namespaces (``ip netns list``)."""
    return [line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()]


def remove_leftovers() -> list[str]:
    """Delete namespaces named ``ckt<pid>-...`` whose process is gone, and this
    process's own ones not in use (its pid was that of a crashed run); the
    names deleted.  Namespaces with any other name are never touched.
    """
    removed = []
    for name in namespaces():
        match = _NAME.match(name)
        if match is None or name in _live:
            continue
        pid = int(match.group(1))
        if pid != os.getpid() and process_alive(pid):
            continue  # another test run, still going
        ip("netns", "del", name, check=False)
        removed.append(name)
    return removed


def problem() -> str | None:
    """Why this machine cannot run the topology (a skip reason), or None."""
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed"
    if os.geteuid() != 0:
        return "needs root (ip netns, veth pairs, bridges)"
    name = f"{PREFIX}probe"
    try:
        ip("netns", "add", name)
    except RuntimeError as exc:
        return f"cannot make a network namespace: {exc}"
    finally:
        ip("netns", "del", name, check=False)
    return None


def host_network_snapshot() -> str:
    """The host namespace's interfaces and routes, as ``ip`` lists them
    (remaining lifetimes of learnt routes left out: they count down by themselves).
    """
    text = "\n".join(ip(*args) for args in (("-o", "link"), ("-4", "route"), ("-6", "route")))
    return re.sub(r"\bexpires \d+sec\b", "", text)


class Topology:
    """Host namespaces wired to bridged segments in a switch namespace.

    Use as a context manager; :meth:`close` undoes everything, also after a
    failure half-way through building it.
    """

    def __init__(self) -> None:
        self.tag = f"{PREFIX}{next(_topologies)}"
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen[Any]] = []
        self._ports = itertools.count(1)
        self._routes: dict[str, int] = {}
        try:
            self.switch = self.add_namespace("sw")
        except BaseException:
            self.close()
            raise

    def add_namespace(self, role: str) -> str:
        """A new namespace with its loopback up; its full name."""
        name = f"{self.tag}-{role}"
        ip("netns", "add", name)
        _live.add(name)
        self.namespaces.append(name)  # from here on, close() deletes it
        # No duplicate address detection (best effort: the kernel may lack
        # IPv6): every address here is unique by construction, and so an
        # interface's link-local address is usable as soon as it is up.
        for conf in ("all", "default"):
            self.run(ns=name, argv=["sh", "-c", _NO_DAD.format(conf=conf)], capture_output=True)
        ip("link", "set", "lo", "up", ns=name)
        return name

    def add_host(self, role: str) -> str:
        return self.add_namespace(role)

    def add_segment(self, bridge: str, *, snooping: bool = True) -> str:
        """A bridge ``bridge`` in the switch namespace: one network segment.

        ``snooping``: the bridge forwards a multicast group only to the ports
        that joined it (IGMP / MLD snooping, the Linux default); off, it
        floods every multicast datagram to every port.
        """
        ip(
            "link",
            "add",
            bridge,
            "type",
            "bridge",
            "mcast_snooping",
            "1" if snooping else "0",
            ns=self.switch,
        )
        ip("link", "set", bridge, "up", ns=self.switch)
        return bridge

    def wire(self, host: str, segment: str, interface: str, address: str | None) -> None:
        """Connect ``host`` to ``segment`` by an interface ``interface``, with
        ``address`` (e.g. "10.77.0.1/24"; None: only the IPv6 link-local one)
        and a route for the IPv4 multicast groups through it.
        """
        port = f"p{next(self._ports)}"
        ip(
            "link",
            "add",
            port,
            "type",
            "veth",
            "peer",
            "name",
            interface,
            "netns",
            host,
            ns=self.switch,
        )
        ip("link", "set", port, "master", segment, "up", ns=self.switch)
        if address is not None:
            ip("addr", "add", address, "dev", interface, ns=host)
        ip("link", "set", interface, "up", ns=host)
        # A second interface of the same host gets the same route with a
        # higher metric (the daemon picks the interface of each send itself).
        metric = self._routes.get(host, 0)
        self._routes[host] = metric + 1
        ip("route", "add", "224.0.0.0/4", "dev", interface, "metric", str(metric), ns=host)

    def wait_link_local(self, host: str, interface: str, timeout: float = 10.0) -> str:
        """The IPv6 link-local address of ``interface``, once it is usable."""
        deadline = time.monotonic() + timeout
        shown = ""
        while time.monotonic() < deadline:
            shown = ip("-6", "-o", "addr", "show", "dev", interface, "scope", "link", ns=host)
            match = re.search(r"inet6 (fe80::\S+)/64", shown)
            if match and "tentative" not in shown:
                return match.group(1)
            time.sleep(0.05)
        raise AssertionError(f"{interface} in {host} has no link-local address: {shown!r}")

    def command(self, ns: str, argv: Sequence[str]) -> list[str]:
        """``argv`` wrapped to run inside namespace ``ns``."""
        return ["ip", "netns", "exec", ns, *argv]

    def popen(self, ns: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` in ``ns`` (``ip netns exec`` becomes the program itself);
        it gets SIGTERM if the test process dies.
        """
        proc = subprocess.Popen(self.command(ns, argv), preexec_fn=_die_with_parent, **kwargs)
        self.procs.append(proc)
        return proc

    def run(self, ns: str, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        kwargs.setdefault("timeout", 30)
        return subprocess.run(self.command(ns, argv), check=False, **kwargs)

    def stop(self, proc: subprocess.Popen[Any], timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds."""
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        """Stop every process started inside, then delete every namespace made."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            self.stop(proc)
        errors = []
        for name in reversed(self.namespaces):
            try:
                ip("netns", "del", name)
            except RuntimeError as exc:
                errors.append(str(exc))
            _live.discard(name)
        self.namespaces.clear()
        if errors:
            raise RuntimeError("; ".join(errors))

    def __enter__(self) -> Topology:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
