"""Benchmark the mesh end to end: real daemons on one host, driven through the client API.

Everything runs in one private network namespace
(:class:`cloudkernel.sandbox.PrivateNetwork`: loopback with multicast, the
host's network untouched) with four real daemons (``python -m cloudkernel
run``, default settings except interface ``lo``, IPv4 only, log level
warning), as two pairs on two UDP ports:

* the **clean pair**: node 1 (A, publishes) and node 2 (B, receives);
* the **loss pair**: node 3 (A) and node 4 (B), which runs with
  ``--inject-loss 0.05``: it throws away 5 % of incoming datagrams at random
  (every datagram: source, repair and heartbeat frames) before its node sees
  them, so FEC repair and loss reports are in play.

Both clients live in this process: a publishing :class:`~cloudkernel.client.Client`
on daemon A and a raw watch (``Client.watch(topic, raw=True, duration=...)``)
on daemon B, each on its own thread and its own connection.

What is measured, in one run:

* **Control-socket round trip**: ``Client.status()`` (and ``topics`` of a
  pattern that matches nothing, a small reply) back to back on one daemon:
  client -> control socket -> daemon -> control socket -> client.
* **(a) One-way latency** at 2,000 signals/s (``--rate``) of 64-byte
  ``bytes`` values, one topic per case.  A value is an 8-byte big-endian
  sequence number followed by 56 fixed bytes; it identifies the signal and is
  checked on arrival.  The latency of a signal is the receiving thread's
  ``time.monotonic()`` when its raw watch event has been decoded by the
  client minus the publishing thread's ``time.monotonic()`` just before
  ``publish``.  That covers the whole path: **client -> control socket ->
  daemon A (publish, batching into a frame, tag) -> UDP multicast on lo ->
  daemon B (tag check, replay window, FEC, delivery) -> control socket raw
  watch event -> client**.  Publishing is paced on an absolute schedule
  (sleep until the slot, never a burst to catch up).  A warm-up (not
  counted) lets A learn B's loss from its heartbeats first.  The percentiles
  cover the delivered signals; lost ones count only in the delivery ratio.
  The same run gives the time ``publish`` takes (its request round trip).
* **(b) Flat out**: one client publishes back to back (``publish`` waits for
  its reply, so that is as fast as the client allows) for a bounded time and
  count, with no watcher; then the same with ``publish_many`` of 512
  signals per call (one request and reply per batch).  The delivered count is daemon B's
  ``signals.delivered`` counter (status) before and after, read once the
  count has settled; both rates are per second of the publishing window.
* **(c) Delivery ratio** of (a) and (b): delivered / published.
* **(d) RSS and CPU of each daemon**: ``VmRSS`` (and the peak, ``VmHWM``)
  from ``/proc/<pid>/status``; CPU from ``utime + stime`` of
  ``/proc/<pid>/stat`` over a measured interval, in % of one core (ticks of
  10 ms, so 0.2 % over 5 s is one tick), with the per-thread scheduler time
  (``/proc/<pid>/task/*/schedstat``, ns) beside it.  Idle: all four daemons
  for 5 s with only heartbeats, before any signal.  Loaded: the pair's
  measured part of (a).
* **The floor**: a plain UDP multicast socket pair in the same namespace,
  in a helper Python process (sender thread and receiver thread, as our two
  clients are), same group and socket options as the daemon's transport:
  one-way latency of 64-byte datagrams at the same rate, and the flat-out
  datagram rate of one sender thread.  It is what any Python program pays
  for the network leg alone.

The targets of the issue are printed as PASS or MISS; a miss does not fail
the run.  The garbage collector of this process is off while timing.  The
machine is shared (2 cores for 4 daemons, the clients and the floor helper),
so read figures of one run side by side, not across runs.

Run ``python bench/bench_mesh.py --help`` for the options; bench/README.md
says what the columns mean.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import glob
import importlib.metadata
import json
import math
import os
import platform
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Make `python bench/bench_mesh.py` work from a source checkout without install.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import cloudkernel  # noqa: E402
from cloudkernel.client import Client  # noqa: E402
from cloudkernel.errors import CloudkernelError  # noqa: E402
from cloudkernel.keyfile import generate_key, write_key_file  # noqa: E402
from cloudkernel.sandbox import PrivateNetwork  # noqa: E402

GROUP = "239.255.67.75"
PORT_CLEAN = 47811
PORT_LOSS = 47812
PORT_FLOOR = 47813
LOSS = 0.05
VALUE_BYTES = 64
#: signals per publish_many call in the batched flat-out case
BATCH = 512
PAD = bytes(range(0x40, 0x40 + VALUE_BYTES - 8))
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Targets of the issue.
TARGET_P50_US = 60.0
TARGET_P99_US = 200.0
TARGET_LOSS_P99_US = 1000.0
TARGET_LOSS_DELIVERED = 0.9999
TARGET_DELIVERED_PER_S = 400_000.0
TARGET_RSS_MB = 25.0
TARGET_IDLE_CPU = 0.5


@dataclass(frozen=True)
class Settings:
    rate: float
    idle_s: float
    warmup_s: float
    latency_s: float
    flat_s: float
    flat_max: int
    rtt_calls: int
    floor_latency_s: float
    floor_flat_s: float
    grace_s: float


FULL = Settings(2000.0, 5.0, 2.0, 10.0, 5.0, 2_000_000, 2000, 10.0, 3.0, 1.5)
QUICK = Settings(2000.0, 1.0, 0.5, 2.0, 1.0, 500_000, 300, 2.0, 1.0, 1.0)


def payload(i: int) -> bytes:
    """The 64-byte value of signal ``i``: its number, then fixed bytes."""
    return struct.pack(">Q", i) + PAD


# --------------------------------------------------------------------------- statistics


@dataclass
class Dist:
    """Percentiles in microseconds (nearest rank) of a list of seconds."""

    n: int = 0
    p50: float = math.nan
    p99: float = math.nan
    p999: float = math.nan
    max: float = math.nan

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Dist:
        xs = sorted(seconds)
        if not xs:
            return cls()

        def rank(q: float) -> float:
            return xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))] * 1e6

        return cls(len(xs), rank(0.50), rank(0.99), rank(0.999), xs[-1] * 1e6)


# --------------------------------------------------------------------------- /proc


@dataclass
class ProcSample:
    t: float
    ticks: int
    sched_ns: int
    rss_kb: int
    hwm_kb: int


def sample_proc(pid: int) -> ProcSample:
    """CPU ticks (utime + stime), scheduler ns over all threads, VmRSS and VmHWM of ``pid``."""
    t = time.monotonic()
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    sched = 0
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        with contextlib.suppress(OSError), open(path) as f:
            sched += int(f.read().split()[0])
    rss = hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return ProcSample(t, ticks, sched, rss, hwm)


@dataclass
class Usage:
    """One daemon over one interval."""

    seconds: float
    cpu_pct: float  # utime + stime, % of one core
    sched_pct: float  # scheduler run time, % of one core
    rss_mb: float  # VmRSS at the end
    hwm_mb: float  # VmHWM at the end

    @classmethod
    def between(cls, a: ProcSample, b: ProcSample) -> Usage:
        dt = max(b.t - a.t, 1e-9)
        return cls(
            round(dt, 3),
            100.0 * (b.ticks - a.ticks) / CLK_TCK / dt,
            100.0 * (b.sched_ns - a.sched_ns) / 1e9 / dt,
            b.rss_kb / 1024,
            b.hwm_kb / 1024,
        )


# --------------------------------------------------------------------------- the daemons


@dataclass
class Node:
    id: int
    role: str
    port: int
    loss: float
    socket: str
    log: Path
    pid: int = 0
    proc: subprocess.Popen[bytes] | None = None


def node_config(base: Path, node: Node) -> str:
    return f"""
[node]
id = {node.id}
key_file = "{base / "swarm.key"}"
state_dir = "{base / f"node{node.id}"}"

[mesh]
interfaces = ["lo"]
group = "{GROUP}"
group6 = ""
port = {node.port}

[control]
socket = "{node.socket}"

[log]
level = "warning"
"""


class Mesh:
    """Two pairs of daemons in one private network namespace (see the module docstring)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.net: PrivateNetwork | None = None
        self.nodes: dict[int, Node] = {}
        write_key_file(base / "swarm.key", generate_key())
        for nid, role, port, loss in (
            (1, "A clean", PORT_CLEAN, 0.0),
            (2, "B clean", PORT_CLEAN, 0.0),
            (3, "A loss", PORT_LOSS, 0.0),
            (4, f"B loss {LOSS:.0%}", PORT_LOSS, LOSS),
        ):
            home = base / f"node{nid}"
            home.mkdir()
            self.nodes[nid] = Node(
                nid, role, port, loss, str(home / "control.sock"), home / "daemon.log"
            )

    def start(self) -> None:
        self.net = PrivateNetwork()
        env = dict(os.environ, PYTHONPATH=_ROOT)
        for node in self.nodes.values():
            config = self.base / f"node{node.id}" / "cloudkernel.toml"
            config.write_text(node_config(self.base, node))
            argv = [sys.executable, "-m", "cloudkernel", "run", "--config", str(config)]
            if node.loss:
                argv += ["--inject-loss", str(node.loss)]
            with open(node.log, "ab") as log:
                node.proc = self.net.popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
            node.pid = node.proc.pid  # nsenter execs the daemon: the same process
        for node in self.nodes.values():
            self.wait_ready(node, 30.0)

    def wait_ready(self, node: Node, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert node.proc is not None
            if node.proc.poll() is not None:
                raise RuntimeError(
                    f"daemon {node.id} exited {node.proc.returncode}: {self.log_tail(node)}"
                )
            try:
                with Client(node.socket, timeout=2.0) as client:
                    client.status()
                    return
            except CloudkernelError as exc:
                last = exc
            time.sleep(0.05)
        raise RuntimeError(f"daemon {node.id} not ready after {timeout} s ({last})")

    def log_tail(self, node: Node) -> str:
        text = node.log.read_text(errors="replace") if node.log.exists() else ""
        return text[-2000:]

    def errors_logged(self, node: Node) -> int:
        """Lines of the daemon's log at level ERROR (each a traceback's first line)."""
        if not node.log.exists():
            return 0
        return sum(" ERROR " in line for line in node.log.read_text(errors="replace").splitlines())

    def first_error(self, node: Node) -> str:
        """The first ERROR of the daemon's log with the lines after it (a traceback)."""
        if not node.log.exists():
            return ""
        lines = node.log.read_text(errors="replace").splitlines()
        for k, line in enumerate(lines):
            if " ERROR " in line:
                return "\n".join(lines[k : k + 12])
        return ""

    def wait_peers(self, timeout: float) -> None:
        """Until each daemon hears its partner alive (bounded)."""
        partner = {1: 2, 2: 1, 3: 4, 4: 3}
        deadline = time.monotonic() + timeout
        for nid, other in partner.items():
            with Client(self.nodes[nid].socket, timeout=2.0) as client:
                while time.monotonic() < deadline:
                    peers = {p["node"]: p["state"] for p in client.peers()}
                    if peers.get(other) == "alive":
                        break
                    time.sleep(0.05)

    def close(self) -> None:
        for node in self.nodes.values():
            if node.proc is not None and node.proc.poll() is None:
                node.proc.send_signal(signal.SIGTERM)
        for node in self.nodes.values():
            if node.proc is not None:
                try:
                    node.proc.wait(10)
                except subprocess.TimeoutExpired:
                    node.proc.kill()
                    node.proc.wait()
        if self.net is not None:
            self.net.close()


# --------------------------------------------------------------------------- measurements


@dataclass
class RttRow:
    op: str
    dist: Dist


def measure_rtt(node: Node, calls: int) -> list[RttRow]:
    rows = []
    with Client(node.socket, timeout=5.0) as client:
        for op, call in (
            ("status", client.status),
            ("topics (no match)", lambda: client.topics("no/such/topic/*")),
        ):
            for _ in range(min(50, calls)):  # warm-up
                call()
            times = []
            for _ in range(calls):
                t = time.monotonic()
                call()
                times.append(time.monotonic() - t)
            rows.append(RttRow(op, Dist.of(times)))
    return rows


@dataclass
class LatencyRow:
    case: str
    rate: float
    sent: int
    delivered: int
    duplicates: int
    bad_values: int
    latency: Dist
    publish_rtt: Dist
    achieved_rate: float
    recovered: int  # daemon B's signals.recovered over the run (warm-up included)
    datagrams_per_signal: float  # daemon A's datagrams sent / signals published (whole run)
    events_dropped: int
    drops_b: dict[str, int] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.delivered / self.sent if self.sent else math.nan


def _delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, int]:
    return {k: int(v) - int(before.get(k, 0)) for k, v in after.items() if v != before.get(k, 0)}


def measure_latency(
    case: str, a: Node, b: Node, s: Settings, usage: dict[int, Usage]
) -> LatencyRow:
    """(a): paced publishes on A, a raw watch on B; fills ``usage`` for A and B (loaded)."""
    n_warm = round(s.rate * s.warmup_s)
    n = n_warm + round(s.rate * s.latency_s)
    topic = f"bench/latency/{case.replace(' ', '-')}"
    sent = [math.nan] * n
    back = [math.nan] * n
    recv = [math.nan] * n
    counts = {"dup": 0, "bad": 0}
    errors: list[BaseException] = []
    measuring = threading.Event()
    done = threading.Event()
    budget = n / s.rate + 1.0  # the publisher stops by then, whatever happens
    marks: dict[str, float] = {}

    with Client(a.socket, timeout=5.0) as pub, Client(b.socket, timeout=5.0) as sub:
        a0, b0 = pub.status(), sub.status()
        watch = sub.watch(topic, raw=True, duration=budget + s.grace_s)

        def watcher() -> None:
            got = 0
            try:
                for event in watch:
                    t = time.monotonic()
                    if event.get("type") != "signal":
                        continue
                    value = event["signal"]["value"]
                    if not isinstance(value, bytes) or len(value) != VALUE_BYTES:
                        counts["bad"] += 1
                        continue
                    (i,) = struct.unpack_from(">Q", value)
                    if i >= n or value != payload(i):
                        counts["bad"] += 1
                    elif recv[i] == recv[i]:  # not NaN: seen already
                        counts["dup"] += 1
                    else:
                        recv[i] = t
                        got += 1
                        if got == n:
                            break
            except BaseException as exc:
                errors.append(exc)
            finally:
                watch.close()

        def publisher() -> None:
            try:
                t0 = time.monotonic()
                hard = t0 + budget
                for i in range(n):
                    if i == n_warm:
                        marks["start"] = time.monotonic()
                        measuring.set()
                    target = t0 + i / s.rate
                    now = time.monotonic()
                    if now > hard:
                        break
                    if target > now:
                        time.sleep(target - now)
                    t = time.monotonic()
                    pub.publish(topic, payload(i))
                    back[i] = time.monotonic()
                    sent[i] = t
                marks["end"] = time.monotonic()
            except BaseException as exc:
                errors.append(exc)
            finally:
                measuring.set()
                done.set()

        threads = [threading.Thread(target=watcher), threading.Thread(target=publisher)]
        for th in threads:
            th.start()
        measuring.wait(budget + 5.0)
        before = {node.id: sample_proc(node.pid) for node in (a, b)}
        done.wait(budget + 5.0)
        after = {node.id: sample_proc(node.pid) for node in (a, b)}
        for th in threads:
            th.join(budget + s.grace_s + 10.0)
        if errors:
            raise errors[0]
        a1, b1 = pub.status(), sub.status()

    for node in (a, b):
        usage[node.id] = Usage.between(before[node.id], after[node.id])
    measured = range(n_warm, n)
    lat = [recv[i] - sent[i] for i in measured if sent[i] == sent[i] and recv[i] == recv[i]]
    rtt = [back[i] - sent[i] for i in measured if sent[i] == sent[i]]
    n_sent = sum(1 for i in measured if sent[i] == sent[i])
    published = a1["signals"]["published"] - a0["signals"]["published"]
    datagrams = a1["datagrams"]["sent"] - a0["datagrams"]["sent"]
    span = marks.get("end", 0.0) - marks.get("start", 0.0)
    return LatencyRow(
        case=case,
        rate=s.rate,
        sent=n_sent,
        delivered=len(lat),
        duplicates=counts["dup"],
        bad_values=counts["bad"],
        latency=Dist.of(lat),
        publish_rtt=Dist.of(rtt),
        achieved_rate=n_sent / span if span > 0 else math.nan,
        recovered=b1["signals"]["recovered"] - b0["signals"]["recovered"],
        datagrams_per_signal=datagrams / published if published else math.nan,
        events_dropped=b1["control"]["events_dropped"] - b0["control"]["events_dropped"],
        drops_b=_delta(b1["drops"], b0["drops"]),
    )


@dataclass
class FlatRow:
    case: str
    seconds: float
    published: int
    delivered: int
    delivered_at_end: int  # delivered by the end of the publishing window
    datagrams: int  # sent by A in the window (source, repair, heartbeats)
    cpu_a: float
    cpu_b: float
    drops_a: dict[str, int] = field(default_factory=dict)
    drops_b: dict[str, int] = field(default_factory=dict)

    @property
    def publish_rate(self) -> float:
        return self.published / self.seconds

    @property
    def delivered_rate(self) -> float:
        return self.delivered / self.seconds

    @property
    def ratio(self) -> float:
        return self.delivered / self.published if self.published else math.nan


def measure_flat(case: str, a: Node, b: Node, s: Settings, batch: int = 1) -> FlatRow:
    """(b): back-to-back publishes on A for a bounded time and count; B's counter.

    With ``batch`` > 1, ``publish_many`` of ``batch`` signals per call.
    """
    topic = f"bench/flat/{case.replace(' ', '-').replace(',', '')}"
    with Client(a.socket, timeout=5.0) as pub, Client(b.socket, timeout=5.0) as sub:
        a0, b0 = pub.status(), sub.status()
        pa, pb = sample_proc(a.pid), sample_proc(b.pid)
        i = 0
        t0 = time.monotonic()
        end = t0 + s.flat_s
        if batch > 1:
            while i < s.flat_max and time.monotonic() < end:
                pub.publish_many({"topic": topic, "value": payload(k)} for k in range(i, i + batch))
                i += batch
        else:
            while i < s.flat_max:
                pub.publish(topic, payload(i))
                i += 1
                if not i & 63 and time.monotonic() >= end:
                    break
        t1 = time.monotonic()
        pa1, pb1 = sample_proc(a.pid), sample_proc(b.pid)
        at_end = sub.status()["signals"]["delivered"]
        a1 = pub.status()
        # Let B's count settle: unchanged over 0.2 s, at most 5 s.
        last, b1 = -1, sub.status()
        settle = time.monotonic() + 5.0
        while b1["signals"]["delivered"] != last and time.monotonic() < settle:
            last = b1["signals"]["delivered"]
            time.sleep(0.2)
            b1 = sub.status()
    d0 = b0["signals"]["delivered"]
    return FlatRow(
        case=case,
        seconds=t1 - t0,
        published=a1["signals"]["published"] - a0["signals"]["published"],
        delivered=b1["signals"]["delivered"] - d0,
        delivered_at_end=at_end - d0,
        datagrams=a1["datagrams"]["sent"] - a0["datagrams"]["sent"],
        cpu_a=Usage.between(pa, pa1).cpu_pct,
        cpu_b=Usage.between(pb, pb1).cpu_pct,
        drops_a=_delta(a1["drops"], a0["drops"]),
        drops_b=_delta(b1["drops"], b0["drops"]),
    )


# --------------------------------------------------------------------------- the floor

# Run inside the namespace as `python -c FLOOR_SCRIPT '<json settings>'`; prints JSON.
FLOOR_SCRIPT = r"""
import json, math, socket, struct, sys, threading, time
cfg = json.loads(sys.argv[1])
group, port, rate = cfg["group"], cfg["port"], cfg["rate"]
index = socket.if_nametoindex("lo")
rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
rx.bind((group, port))
rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
              struct.pack("4s4si", socket.inet_aton(group), bytes(4), index))
rx.settimeout(0.2)
tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
ifreq = struct.pack("4s4si", bytes(4), bytes(4), index)
tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, ifreq)
tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
dst = (group, port)
pad = bytes(56)

def receive(recv, stop, limit):
    got = 0
    while got < limit:
        try:
            data = rx.recv(2048)
        except (TimeoutError, socket.timeout):
            if stop.is_set():
                return got
            continue
        t = time.monotonic()
        (i,) = struct.unpack_from(">Q", data)
        if recv is not None and i < len(recv) and recv[i] != recv[i]:
            recv[i] = t
        got += 1
    return got

def latency(seconds, warmup):
    n_warm, n = round(rate * warmup), round(rate * (warmup + seconds))
    sent, recv = [math.nan] * n, [math.nan] * n
    stop = threading.Event()
    th = threading.Thread(target=receive, args=(recv, stop, n))
    th.start()
    t0 = time.monotonic()
    for i in range(n):
        target = t0 + i / rate
        now = time.monotonic()
        if target > now:
            time.sleep(target - now)
        t = time.monotonic()
        tx.sendto(struct.pack(">Q", i) + pad, dst)
        sent[i] = t
    stop.set()
    th.join(5)
    lat = [recv[i] - sent[i] for i in range(n_warm, n) if recv[i] == recv[i]]
    return {"sent": n - n_warm, "delivered": len(lat), "latency_s": lat}

def flat(seconds, limit):
    counted = [0]
    stop = threading.Event()
    th = threading.Thread(target=lambda: counted.__setitem__(0, receive(None, stop, 1 << 62)))
    th.start()
    sent = errors = 0
    t0 = time.monotonic()
    end = t0 + seconds
    while sent < limit:
        try:
            tx.sendto(struct.pack(">Q", sent) + pad, dst)
        except OSError:
            errors += 1
        sent += 1
        if not sent & 255 and time.monotonic() >= end:
            break
    t1 = time.monotonic()
    stop.set()
    th.join(5)
    return {"seconds": t1 - t0, "sent": sent, "send_errors": errors, "delivered": counted[0]}

out = {"latency": latency(cfg["latency_s"], cfg["warmup_s"]),
       "flat": flat(cfg["flat_s"], cfg["flat_max"])}
print(json.dumps(out))
"""


@dataclass
class Floor:
    latency_row: LatencyRow
    flat_row: FlatRow
    flat_sent: int


def measure_floor(net: PrivateNetwork, s: Settings) -> Floor:
    cfg: dict[str, Any] = {
        "group": GROUP,
        "port": PORT_FLOOR,
        "rate": s.rate,
        "latency_s": s.floor_latency_s,
        "warmup_s": s.warmup_s,
        "flat_s": s.floor_flat_s,
        "flat_max": 20 * s.flat_max,
    }
    timeout = s.warmup_s + s.floor_latency_s + s.floor_flat_s + 30.0
    done = net.run(
        [sys.executable, "-c", FLOOR_SCRIPT, json.dumps(cfg)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the floor helper failed ({done.returncode}): {done.stderr[-2000:]}")
    doc = json.loads(done.stdout)
    lat, flat = doc["latency"], doc["flat"]
    latency_row = LatencyRow(
        case="floor: UDP socket pair",
        rate=s.rate,
        sent=lat["sent"],
        delivered=lat["delivered"],
        duplicates=0,
        bad_values=0,
        latency=Dist.of(lat["latency_s"]),
        publish_rtt=Dist(),
        achieved_rate=math.nan,
        recovered=0,
        datagrams_per_signal=1.0,
        events_dropped=0,
    )
    flat_row = FlatRow(
        case="floor: UDP socket pair",
        seconds=flat["seconds"],
        published=flat["sent"] - flat["send_errors"],
        delivered=flat["delivered"],
        delivered_at_end=flat["delivered"],
        datagrams=flat["sent"] - flat["send_errors"],
        cpu_a=math.nan,
        cpu_b=math.nan,
    )
    return Floor(latency_row, flat_row, flat["sent"])


# --------------------------------------------------------------------------- output


def _us(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:,.0f}"


def _pct(x: float, digits: int = 2) -> str:
    return "-" if math.isnan(x) else f"{100 * x:.{digits}f}"


def print_rtt(rows: list[RttRow]) -> None:
    print("\nControl-socket round trip, one client, one daemon, back to back (us)")
    print(f"  {'request':<20} {'n':>6} {'p50':>8} {'p99':>8} {'max':>8}")
    for r in rows:
        d = r.dist
        print(f"  {r.op:<20} {d.n:>6} {_us(d.p50):>8} {_us(d.p99):>8} {_us(d.max):>8}")


def print_latency(rows: list[LatencyRow], rate: float) -> None:
    print(
        f"\n(a) One-way latency at {rate:,.0f} signals/s, 64-byte bytes values (us); "
        "(c) delivery ratio"
    )
    print(
        f"  {'case':<24} {'sent':>7} {'deliv':>7} {'ratio %':>8} {'p50':>7} {'p99':>7} "
        f"{'p99.9':>7} {'max':>7} {'pub p50':>8} {'pub p99':>8} {'rate/s':>7} {'recov':>6} "
        f"{'dg/sig':>6}"
    )
    for r in rows:
        d, p = r.latency, r.publish_rtt
        print(
            f"  {r.case:<24} {r.sent:>7,} {r.delivered:>7,} {_pct(r.ratio, 3):>8} "
            f"{_us(d.p50):>7} {_us(d.p99):>7} {_us(d.p999):>7} {_us(d.max):>7} "
            f"{_us(p.p50):>8} {_us(p.p99):>8} {_us(r.achieved_rate):>7} {r.recovered:>6} "
            f"{r.datagrams_per_signal:>6.2f}"
        )
    for r in rows:
        extra = []
        if r.duplicates or r.bad_values:
            extra.append(f"{r.duplicates} duplicates, {r.bad_values} bad values")
        if r.events_dropped:
            extra.append(f"{r.events_dropped} watch events dropped by B")
        if r.drops_b:
            extra.append(f"B drops {r.drops_b}")
        if extra:
            print(f"  {r.case}: " + "; ".join(extra))


def print_flat(rows: list[FlatRow]) -> None:
    print("\n(b) Flat out: one client publishing back to back; (c) delivery ratio")
    print(
        f"  {'case':<24} {'s':>5} {'published':>10} {'publish/s':>10} {'delivered':>10} "
        f"{'deliv/s':>10} {'ratio %':>8} {'sig/dgram':>9} {'cpu A %':>8} {'cpu B %':>8}"
    )
    for r in rows:
        per = r.published / r.datagrams if r.datagrams else math.nan
        cpu_a = "-" if math.isnan(r.cpu_a) else f"{r.cpu_a:.0f}"
        cpu_b = "-" if math.isnan(r.cpu_b) else f"{r.cpu_b:.0f}"
        print(
            f"  {r.case:<24} {r.seconds:>5.2f} {r.published:>10,} {r.publish_rate:>10,.0f} "
            f"{r.delivered:>10,} {r.delivered_rate:>10,.0f} {_pct(r.ratio, 3):>8} "
            f"{per:>9.2f} {cpu_a:>8} {cpu_b:>8}"
        )
    for r in rows:
        if r.drops_a or r.drops_b:
            print(f"  {r.case}: drops A {r.drops_a}, B {r.drops_b}")


def print_usage(
    mesh: Mesh, idle: dict[int, Usage], loaded: dict[int, Usage], errors: dict[int, int]
) -> None:
    print("\n(d) Daemons: RSS (MB) and CPU (% of one core; ticks, then scheduler ns)")
    print(
        f"  {'node':<18} {'idle RSS':>9} {'idle cpu':>9} {'(sched)':>8} {'load RSS':>9} "
        f"{'load cpu':>9} {'(sched)':>8} {'peak RSS':>9} {'log ERRORs':>10}"
    )
    for node in mesh.nodes.values():
        i, lo = idle[node.id], loaded.get(node.id)
        print(
            f"  {node.id} {node.role:<16} {i.rss_mb:>9.1f} {i.cpu_pct:>9.2f} {i.sched_pct:>8.2f} "
            + (
                f"{lo.rss_mb:>9.1f} {lo.cpu_pct:>9.1f} {lo.sched_pct:>8.1f} {lo.hwm_mb:>9.1f}"
                if lo
                else f"{'':>47}"
            )
            + f" {errors.get(node.id, 0):>10}"
        )
    seconds = next(iter(idle.values())).seconds
    print(
        f"  idle: {seconds:.1f} s, all four daemons, heartbeats only; loaded: the pair's "
        "measured part of (a)."
    )


@dataclass
class Verdict:
    target: str
    measured: str
    status: str


def judge(
    lat: list[LatencyRow],
    flat: list[FlatRow],
    idle: dict[int, Usage],
    loaded: dict[int, Usage],
    peak_mb: dict[int, float],
) -> list[Verdict]:
    clean, lossy = lat[0], lat[1]

    def ok(cond: bool) -> str:
        return "PASS" if cond else "MISS"

    rss = max(max(u.rss_mb for u in idle.values()), max(peak_mb.values()))
    cpu = max(u.cpu_pct for u in idle.values())
    return [
        Verdict(
            f"clean p50 <= {TARGET_P50_US:.0f} us",
            f"{clean.latency.p50:,.0f} us",
            ok(clean.latency.p50 <= TARGET_P50_US),
        ),
        Verdict(
            f"clean p99 <= {TARGET_P99_US:.0f} us",
            f"{clean.latency.p99:,.0f} us",
            ok(clean.latency.p99 <= TARGET_P99_US),
        ),
        Verdict(
            f"{LOSS:.0%} loss p99 <= {TARGET_LOSS_P99_US:,.0f} us",
            f"{lossy.latency.p99:,.0f} us",
            ok(lossy.latency.p99 <= TARGET_LOSS_P99_US),
        ),
        Verdict(
            f"{LOSS:.0%} loss delivered >= {TARGET_LOSS_DELIVERED:.2%}",
            f"{lossy.ratio:.3%} ({lossy.delivered:,} of {lossy.sent:,})",
            ok(lossy.ratio >= TARGET_LOSS_DELIVERED),
        ),
        Verdict(
            f"delivered >= {TARGET_DELIVERED_PER_S:,.0f} signals/s (batched)",
            f"{flat[2].delivered_rate:,.0f} signals/s",
            ok(flat[2].delivered_rate >= TARGET_DELIVERED_PER_S),
        ),
        Verdict(
            f"RSS <= {TARGET_RSS_MB:.0f} MB per daemon",
            f"largest {rss:.1f} MB (VmHWM included)",
            ok(rss <= TARGET_RSS_MB),
        ),
        Verdict(
            f"idle CPU <= {TARGET_IDLE_CPU} % of a core",
            f"largest {cpu:.2f} %",
            ok(cpu <= TARGET_IDLE_CPU),
        ),
    ]


def machine_facts() -> dict[str, Any]:
    model = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            key, _, val = line.partition(":")
            if key.strip() == "model name":
                model = val.strip()
                break
    try:
        uvloop = importlib.metadata.version("uvloop")
    except importlib.metadata.PackageNotFoundError:
        uvloop = "not installed (asyncio's own loop)"
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "cloudkernel": cloudkernel.__version__,
        "uvloop": uvloop,
    }


def _no_nan(obj: Any) -> Any:
    """``obj`` with every NaN float as None (NaN is not JSON)."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _no_nan(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_no_nan(v) for v in obj]
    return obj


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="short phases (smoke run, ~25 s)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    p.add_argument(
        "--rate",
        type=float,
        default=2000.0,
        metavar="N",
        help="signals/s of the latency phase (default 2000)",
    )
    p.add_argument(
        "--seconds",
        type=float,
        metavar="S",
        help=f"measured seconds of each latency case (default {FULL.latency_s:g}; "
        f"--quick {QUICK.latency_s:g})",
    )
    args = p.parse_args(argv)
    if not 1.0 <= args.rate <= 50_000.0:
        p.error("--rate must be in 1..50000")
    if args.seconds is not None and not 0.1 <= args.seconds <= 60.0:
        p.error("--seconds must be in 0.1..60")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    base_settings = QUICK if args.quick else FULL
    overrides: dict[str, float] = {"rate": args.rate}
    if args.seconds is not None:
        overrides["latency_s"] = args.seconds
        overrides["floor_latency_s"] = args.seconds
    s = Settings(**{**asdict(base_settings), **overrides})
    for tool in ("unshare", "nsenter", "ip"):
        if shutil.which(tool) is None:
            print(f"bench_mesh: {tool} is not installed", file=sys.stderr)
            return 2
    facts = machine_facts()
    mode = "quick" if args.quick else "full"
    print(f"cloudkernel mesh benchmark ({mode}): two daemons on one host, through the client API")
    for key, val in facts.items():
        shown = ", ".join(map(str, val)) if isinstance(val, list) else val
        print(f"  {key + ':':<13} {shown}")
    print(
        "  path timed:  client publish -> control socket -> daemon A -> UDP multicast on lo "
        "(private netns)\n"
        "               -> daemon B -> control socket raw watch event -> client "
        "(both clients in this process)"
    )
    print(
        f"  pairs:       nodes 1->2 clean; nodes 3->4 with --inject-loss {LOSS} on node 4; "
        "default settings otherwise",
        flush=True,
    )

    t_start = time.monotonic()
    base = Path(tempfile.mkdtemp(prefix="ck-bench-mesh-"))
    mesh = Mesh(base)
    idle: dict[int, Usage] = {}
    loaded: dict[int, Usage] = {}
    try:
        print("  starting daemons", file=sys.stderr, flush=True)
        mesh.start()
        mesh.wait_peers(10.0)
        n = mesh.nodes
        print(f"  idle {s.idle_s:g} s", file=sys.stderr, flush=True)
        before = {nid: sample_proc(node.pid) for nid, node in n.items()}
        time.sleep(s.idle_s)
        idle = {nid: Usage.between(before[nid], sample_proc(node.pid)) for nid, node in n.items()}

        gc.collect()
        gc.disable()
        print("  control-socket round trips", file=sys.stderr, flush=True)
        rtt = measure_rtt(n[2], s.rtt_calls)
        print("  (a) latency, clean", file=sys.stderr, flush=True)
        lat = [measure_latency("clean", n[1], n[2], s, loaded)]
        print(f"  (a) latency, {LOSS:.0%} loss", file=sys.stderr, flush=True)
        lat.append(measure_latency(f"{LOSS:.0%} loss", n[3], n[4], s, loaded))
        print("  (b) flat out", file=sys.stderr, flush=True)
        flat = [
            measure_flat("clean", n[1], n[2], s),
            measure_flat(f"{LOSS:.0%} loss", n[3], n[4], s),
            measure_flat(f"clean, batches of {BATCH}", n[1], n[2], s, BATCH),
        ]
        print("  floor", file=sys.stderr, flush=True)
        assert mesh.net is not None
        floor = measure_floor(mesh.net, s)
        peak_mb = {nid: sample_proc(node.pid).hwm_kb / 1024 for nid, node in n.items()}
        errors = {nid: mesh.errors_logged(node) for nid, node in n.items()}
        first_errors = {nid: mesh.first_error(node) for nid, node in n.items()}
        for node in n.values():
            assert node.proc is not None
            if node.proc.poll() is not None:
                raise RuntimeError(f"daemon {node.id} died: {mesh.log_tail(node)}")
    except BaseException:
        for node in mesh.nodes.values():
            tail = mesh.log_tail(node)
            if tail.strip():
                print(f"--- daemon {node.id} log ---\n{tail}", file=sys.stderr)
        raise
    finally:
        gc.enable()
        mesh.close()
        shutil.rmtree(base, ignore_errors=True)
    elapsed = time.monotonic() - t_start

    print_rtt(rtt)
    print_latency([*lat, floor.latency_row], s.rate)
    print_flat([*flat, floor.flat_row])
    print(
        f"  floor flat out: {floor.flat_sent:,} sendto calls by one thread; the receiver thread "
        "shares the process."
    )
    print_usage(mesh, idle, loaded, errors)
    if any(errors.values()):
        print(
            "  log ERRORs: lines logged at level ERROR by the daemon over the run (each costs "
            "a logged traceback); the JSON has the first one."
        )
    for node in mesh.nodes.values():
        loaded.setdefault(node.id, idle[node.id])
    verdicts = judge(lat, flat, idle, loaded, peak_mb)
    print("\nTargets (a miss does not fail the run):")
    for v in verdicts:
        print(f"  {v.status:<4}  {v.target:<34} {v.measured}")
    print(f"\nrun took {elapsed:.1f} s")

    if args.json:
        doc = {
            "machine": facts,
            "mode": mode,
            "settings": asdict(s),
            "path": "client -> control socket -> daemon A -> multicast -> daemon B -> "
            "control socket watch -> client",
            "control_rtt_us": [{"op": r.op, **asdict(r.dist)} for r in rtt],
            "latency": [{**asdict(r), "ratio": r.ratio} for r in [*lat, floor.latency_row]],
            "flat": [
                {
                    **asdict(r),
                    "publish_rate": r.publish_rate,
                    "delivered_rate": r.delivered_rate,
                    "ratio": r.ratio,
                }
                for r in [*flat, floor.flat_row]
            ],
            "daemons": [
                {
                    "node": node.id,
                    "role": node.role,
                    "idle": asdict(idle[node.id]),
                    "loaded": asdict(loaded[node.id]),
                    "peak_rss_mb": peak_mb[node.id],
                    "log_errors": errors[node.id],
                    "first_error": first_errors.get(node.id, ""),
                }
                for node in mesh.nodes.values()
            ],
            "targets": [asdict(v) for v in verdicts],
        }
        with open(args.json, "w") as f:
            json.dump(_no_nan(doc), f, indent=2)
            f.write("\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
