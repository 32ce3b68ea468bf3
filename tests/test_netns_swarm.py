"""Real daemons on separate hosts: network namespaces joined by Linux bridges (tests/netns.py).

Each host is a network namespace with a veth interface into a bridge (a
network segment) in a "switch" namespace; each runs one daemon
(``ip netns exec <host> python -m cloudkernel run``) that sees only its
host's interfaces, and the tests drive the daemons over their control
sockets through :class:`cloudkernel.client.Client`.

* Three hosts on one segment: what each publishes is fused on every node,
  and each node sees the other two alive — over IPv4 only, over IPv4 and
  IPv6 together, and over IPv6 alone (hosts without IPv4 addresses, whose
  IPv4 multicast the receivers drop: what arrives came over IPv6).
* A line A - B - C of two segments, B on both: with ``mesh.relay`` every
  signal of A reaches C exactly once and C sees A alive through relayed
  heartbeats; without relaying on B, nothing of A reaches C.

Needs root (``ip netns``, veth pairs, bridges); skipped otherwise.  The
topology is made and deleted by each test, and the host's own interfaces
and routes are checked to be unchanged afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from netns import Topology, host_network_snapshot, namespaces, problem, remove_leftovers
from swarmproc import FAST_MEMBERSHIP, ROOT

from cloudkernel.client import Client
from cloudkernel.errors import CloudkernelError, RequestFailed
from cloudkernel.keyfile import generate_key, write_key_file

_PROBLEM = problem()
pytestmark = pytest.mark.skipif(_PROBLEM is not None, reason=f"no network namespaces: {_PROBLEM}")

GROUP6 = "ff02::6b63"
_PORTS = iter(range(47800, 47900))


class Swarm:
    """Daemons on the hosts of a :class:`Topology`, one per host; their files under ``base``."""

    def __init__(self, topology: Topology, base: Path, port: int) -> None:
        self.topology = topology
        self.base = base
        self.port = port
        self.key = base / "swarm.key"
        write_key_file(self.key, generate_key())
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def home(self, node: int) -> Path:
        return self.base / f"node{node}"

    def socket(self, node: int) -> str:
        return str(self.home(node) / "control.sock")

    def log(self, node: int) -> str:
        path = self.home(node) / "daemon.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def logs(self) -> str:
        return "\n".join(f"--- node {n} ---\n{self.log(n)}" for n in sorted(self.procs))

    def start(
        self,
        node: int,
        host: str,
        interfaces: list[str],
        *,
        group6: str = GROUP6,
        relay: bool = False,
    ) -> None:
        home = self.home(node)
        home.mkdir(parents=True, exist_ok=True)
        names = ", ".join(f'"{name}"' for name in interfaces)
        config = home / "cloudkernel.toml"
        config.write_text(
            f"""
[node]
id = {node}
key_file = "{self.key}"
state_dir = "{home / "state"}"

[mesh]
interfaces = [{names}]
group = "239.255.67.75"
group6 = "{group6}"
port = {self.port}
relay = {"true" if relay else "false"}

[control]
socket = "{self.socket(node)}"

[metrics]
listen = ""
{FAST_MEMBERSHIP}
"""
        )
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        with open(home / "daemon.log", "ab") as log:
            self.procs[node] = self.topology.popen(
                host,
                [sys.executable, "-m", "cloudkernel", "run", "--config", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        for node, proc in self.procs.items():
            while True:
                if proc.poll() is not None:
                    raise AssertionError(f"node {node} exited {proc.returncode}:\n{self.log(node)}")
                try:
                    with Client(self.socket(node), timeout=2.0) as client:
                        client.status()
                    break
                except CloudkernelError as exc:
                    if time.monotonic() > deadline:
                        raise AssertionError(
                            f"node {node} not ready after {timeout} s ({exc}):\n{self.log(node)}"
                        ) from None
                time.sleep(0.05)

    def client(self, node: int) -> Client:
        return Client(self.socket(node), timeout=5.0)

    def peers(self, node: int) -> dict[int, str]:
        with self.client(node) as client:
            return {row["node"]: row["state"] for row in client.peers()}

    def status(self, node: int) -> dict[str, Any]:
        with self.client(node) as client:
            return client.status()

    def wait_for(self, what: Callable[[], bool], timeout: float, message: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if what():
                return
            time.sleep(0.05)
        raise AssertionError(f"{message} within {timeout} s\n{self.logs()}")


@pytest.fixture
def topology() -> Iterator[Topology]:
    """A fresh topology, deleted afterwards; the host's network is checked unchanged."""
    remove_leftovers()
    before = host_network_snapshot()
    topo = Topology()
    try:
        yield topo
    finally:
        topo.close()
        left = [name for name in namespaces() if name.startswith(topo.tag + "-")]
        assert not left, f"namespaces left behind: {left}"
        assert host_network_snapshot() == before, "the host's interfaces or routes changed"


# -- three hosts on one segment ---------------------------------------------------


@pytest.mark.parametrize(
    "family",
    [
        "ipv4",  # group6 = "": IPv4 multicast only
        "dual",  # IPv4 and IPv6 (link-local ff02::6b63): both cross the bridge
        # No IPv4 address on the hosts: the daemons' IPv4 datagrams leave with
        # source 0.0.0.0 and every receiver's kernel drops them, so all that
        # arrives came over IPv6.
        "ipv6",
    ],
)
def test_three_hosts_fuse_each_others_readings(
    topology: Topology, tmp_path: Path, family: str
) -> None:
    segment = topology.add_segment("br0")
    swarm = Swarm(topology, tmp_path, next(_PORTS))
    hosts = {}
    for node in (1, 2, 3):
        host = hosts[node] = topology.add_host(f"h{node}")
        topology.wire(host, segment, "eth0", None if family == "ipv6" else f"10.77.0.{node}/24")
    for node in (1, 2, 3):
        if family != "ipv4":
            topology.wait_link_local(hosts[node], "eth0")
        swarm.start(node, hosts[node], ["eth0"], group6="" if family == "ipv4" else GROUP6)
    swarm.wait_ready()

    for node, value in ((1, 20.0), (2, 20.4), (3, 19.8)):
        with swarm.client(node) as client:
            client.publish("room/temp", value, half_life=60.0)

    def fused_everywhere() -> bool:
        for node in (1, 2, 3):
            with swarm.client(node) as client:
                try:
                    estimate = client.get("room/temp")
                except RequestFailed:
                    return False
            if estimate["state"] != "ok" or estimate["sources_used"] != 3:
                return False
        return True

    swarm.wait_for(fused_everywhere, 15.0, "the three readings were not fused on every node")
    for node in (1, 2, 3):
        with swarm.client(node) as client:
            estimate = client.get("room/temp")
        assert sorted(row["source"] for row in estimate["sources"]) == [1, 2, 3]
        assert 19.8 <= estimate["value"] <= 20.4

    others = {node: {n: "alive" for n in (1, 2, 3) if n != node} for node in (1, 2, 3)}
    swarm.wait_for(
        lambda: all(swarm.peers(node) == others[node] for node in (1, 2, 3)),
        10.0,
        "every node did not see the other two alive",
    )
    for node in (1, 2, 3):
        status = swarm.status(node)
        assert status["interfaces"] == ["eth0"]
        assert status["group6"] == ("" if family == "ipv4" else GROUP6)
        # Over both families every frame arrives twice, and the second copy
        # is dropped as a duplicate; over one family, never.
        duplicates = status["drops"].get("duplicate", 0)
        assert duplicates > 0 if family == "dual" else duplicates == 0, status["drops"]


# -- a line A - B - C ---------------------------------------------------------------

A, B, C = 1, 2, 3
N_SIGNALS = 20


def _line(topology: Topology, swarm: Swarm, *, relay_on_b: bool) -> None:
    """Hosts A and B on segment 1, B and C on segment 2 (A and C do not hear
    each other); daemons relaying on A and C, on B as ``relay_on_b`` says.
    IPv6 multicast crosses the bridges here, so the swarm uses both families
    (each frame arrives twice; the copies are dropped as duplicates).
    """
    seg1 = topology.add_segment("seg1")
    seg2 = topology.add_segment("seg2")
    host_a = topology.add_host("a")
    host_b = topology.add_host("b")
    host_c = topology.add_host("c")
    topology.wire(host_a, seg1, "eth0", "10.77.1.1/24")
    topology.wire(host_b, seg1, "eth0", "10.77.1.2/24")
    topology.wire(host_b, seg2, "eth1", "10.77.2.2/24")
    topology.wire(host_c, seg2, "eth0", "10.77.2.3/24")
    swarm.start(A, host_a, ["eth0"], relay=True)
    swarm.start(B, host_b, ["eth0", "eth1"], relay=relay_on_b)
    swarm.start(C, host_c, ["eth0"], relay=True)
    swarm.wait_ready()


def _watch_c_while_a_publishes(
    swarm: Swarm, duration: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """C's raw signals on line/* for ``duration`` seconds, A publishing
    N_SIGNALS signals meanwhile; (the signals, A's publish replies).
    """
    with swarm.client(C) as watcher:
        with watcher.watch("line/*", raw=True, duration=duration) as stream:
            with swarm.client(A) as client:
                published = [
                    client.publish("line/a", 100.0 + i, half_life=60.0) for i in range(N_SIGNALS)
                ]
            events = list(stream)
    assert all(event["type"] == "signal" for event in events), events
    return [event["signal"] for event in events], published


def test_relay_carries_a_line_of_three_hosts(topology: Topology, tmp_path: Path) -> None:
    swarm = Swarm(topology, tmp_path, next(_PORTS))
    # Relaying on every node: copies come back around (A hears its own
    # signals from B, B hears A's again from C) and are dropped as such.
    _line(topology, swarm, relay_on_b=True)
    swarm.wait_for(
        lambda: (
            swarm.peers(C) == {A: "alive", B: "alive"}
            and swarm.peers(A) == {B: "alive", C: "alive"}
        ),
        15.0,
        "A and C did not see each other alive through B's relayed heartbeats",
    )

    signals, published = _watch_c_while_a_publishes(swarm, duration=4.0)
    assert sorted(s["value"] for s in signals) == [100.0 + i for i in range(N_SIGNALS)], signals
    keys = [(s["source"], s["seq"]) for s in signals]
    assert len(keys) == len(set(keys)) == N_SIGNALS, f"not exactly once: {keys}"
    assert set(keys) == {(A, reply["seq"]) for reply in published}
    assert all(s["topic"] == "line/a" for s in signals)

    status_b = swarm.status(B)
    assert status_b["interfaces"] == ["eth0", "eth1"]
    assert status_b["relay"] is True
    assert status_b["signals"]["relayed"] >= N_SIGNALS
    # C relays A's signals back to B, which drops them as seen already.
    assert status_b["drops"].get("duplicate-signal", 0) >= N_SIGNALS, status_b["drops"]
    assert swarm.status(A)["drops"].get("own-signal", 0) >= N_SIGNALS
    assert swarm.status(C)["signals"]["delivered"] == N_SIGNALS
    with swarm.client(C) as client:
        estimate = client.get("line/a")
    assert [row["source"] for row in estimate["sources"]] == [A]


def test_without_relay_a_and_c_do_not_hear_each_other(topology: Topology, tmp_path: Path) -> None:
    swarm = Swarm(topology, tmp_path, next(_PORTS))
    _line(topology, swarm, relay_on_b=False)
    # B hears both: the links are up, only the relaying is missing.
    swarm.wait_for(
        lambda: (
            swarm.peers(B) == {A: "alive", C: "alive"}
            and swarm.peers(C) == {B: "alive"}
            and swarm.peers(A) == {B: "alive"}
        ),
        15.0,
        "B and its neighbours did not meet",
    )

    signals, _ = _watch_c_while_a_publishes(swarm, duration=2.0)
    assert signals == []
    with swarm.client(B) as client:
        assert client.get("line/a")["sources_total"] == 1  # B did get them
    with swarm.client(C) as client, pytest.raises(RequestFailed):
        client.get("line/a")
    assert swarm.peers(C) == {B: "alive"}
    assert swarm.status(B)["signals"]["relayed"] == 0
    assert swarm.status(C)["signals"]["delivered"] == 0
