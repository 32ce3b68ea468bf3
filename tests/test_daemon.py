"""Real daemon processes on one host (tests/swarmproc.py): the node as users run it.

Each test starts daemons with ``python -m cloudkernel run`` in a private
network namespace and talks to them over their control sockets, through the
client API and the CLI.  Skipped where no private network namespace can be
made (util-linux missing, or user namespaces disabled).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from swarmproc import FAST_MEMBERSHIP, ROOT, LocalSwarm

from cloudkernel.client import Client
from cloudkernel.errors import RequestFailed
from cloudkernel.sandbox import PrivateNetwork, SandboxError

pytestmark = pytest.mark.skipif(shutil.which("unshare") is None, reason="util-linux is missing")


def _sandbox_works() -> str | None:
    try:
        PrivateNetwork().close()
    except SandboxError as exc:
        return str(exc)
    return None


_PROBLEM = _sandbox_works() if shutil.which("unshare") else "no unshare"
needs_sandbox = pytest.mark.skipif(
    _PROBLEM is not None, reason=f"no private network namespace: {_PROBLEM}"
)

_PORTS = iter(range(47600, 47700))


@pytest.fixture
def swarm3(tmp_path: Path) -> Iterator[LocalSwarm]:
    swarm = LocalSwarm(tmp_path, 3, port=next(_PORTS), extra=FAST_MEMBERSHIP)
    try:
        swarm.start_all()
        yield swarm
    finally:
        swarm.close()


def cli(swarm: LocalSwarm, node: int, *args: str) -> subprocess.CompletedProcess[str]:
    return swarm.cli(node, *args)


@needs_sandbox
def test_publish_on_each_node_and_read_the_fused_value_everywhere(swarm3: LocalSwarm) -> None:
    for node, value in ((1, "20.0"), (2, "20.4"), (3, "19.8")):
        done = cli(swarm3, node, "publish", "room/temp", value)
        assert done.returncode == 0, done.stderr

    def fused_everywhere() -> bool:
        for node in (1, 2, 3):
            with swarm3.client(node) as client:
                try:
                    estimate = client.get("room/temp")
                except RequestFailed:
                    return False
                if estimate["state"] != "ok" or estimate["sources_used"] != 3:
                    return False
        return True

    swarm3.wait_for(fused_everywhere, 10.0, "the three readings were not fused on every node")
    done = cli(swarm3, 2, "get", "room/temp", "--json")
    assert done.returncode == 0, done.stderr
    estimate = json.loads(done.stdout)
    assert 19.8 <= estimate["value"] <= 20.4
    human = cli(swarm3, 3, "get", "room/temp")
    assert human.returncode == 0 and "room/temp" in human.stdout
    topics = json.loads(cli(swarm3, 1, "topics", "--json").stdout)
    names = (
        [row["topic"] for row in topics]
        if isinstance(topics, list)
        else [row["topic"] for row in topics["topics"]]
    )
    assert names == ["room/temp"]


@needs_sandbox
def test_peers_die_when_killed_and_come_back_with_a_new_epoch(swarm3: LocalSwarm) -> None:
    def states(node: int) -> dict[int, tuple[str, int]]:
        with swarm3.client(node) as client:
            return {p["node"]: (p["state"], p["epoch"]) for p in client.peers()}

    swarm3.wait_for(lambda: all(len(states(n)) == 2 for n in (1, 2, 3)), 10.0, "peers did not meet")
    old_epoch = states(1)[3][1]
    swarm3.kill(3, signal.SIGKILL)
    swarm3.wait_for(
        lambda: states(1)[3][0] == "suspect" or states(1)[3][0] == "dead",
        10.0,
        "node 1 did not suspect the killed node",
    )
    swarm3.wait_for(
        lambda: states(1)[3][0] == "dead" and states(2)[3][0] == "dead",
        15.0,
        "the killed node was not declared dead",
    )
    swarm3.start(3)
    swarm3.wait_ready(3)
    swarm3.wait_for(
        lambda: states(1)[3][0] == "alive" and states(1)[3][1] > old_epoch,
        10.0,
        "the restarted node was not taken back with its new epoch",
    )
    # Its signals, numbered afresh in the new epoch, are delivered.
    with swarm3.client(3) as client:
        client.publish("after/restart", 1.5)

    def arrived() -> bool:
        with swarm3.client(1) as client:
            try:
                return bool(client.get("after/restart")["sources_total"] == 1)
            except RequestFailed:
                return False

    swarm3.wait_for(arrived, 5.0, "a signal of the restarted node did not arrive")
    assert states(2)[3][0] == "alive"


@needs_sandbox
def test_loss_is_recovered_end_to_end(tmp_path: Path) -> None:
    swarm = LocalSwarm(tmp_path, 2, port=next(_PORTS), extra=FAST_MEMBERSHIP, inject_loss=0.10)
    try:
        swarm.start_all()
        sent = 1500
        with swarm.client(1) as client:
            for i in range(sent):
                client.publish("load/seq", float(i), half_life=60.0)
                if i % 50 == 0:
                    time.sleep(0.01)
        time.sleep(1.5)
        with swarm.client(2) as client:
            status = client.status()
        delivered = status["signals"]["delivered"]
        assert status["datagrams"]["injected_drops"] > 50
        assert status["signals"]["recovered"] > 0
        assert status["membership"]["joined"] >= 1
        assert status["membership"]["false_deaths"] == 0
        assert delivered >= 0.999 * sent, f"{delivered} of {sent} delivered"
    finally:
        swarm.close()


@needs_sandbox
def test_bad_traffic_is_counted_and_the_daemon_keeps_serving(swarm3: LocalSwarm) -> None:
    port = int(swarm3.configs[1].read_text().split("port = ")[1].split()[0])
    rss_before = _rss(swarm3.procs[1].pid)
    script = f"""
import random, socket, struct, time
rng = random.Random(3)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
dst = ("239.255.67.75", {port})
for i in range(3000):
    kind = i % 4
    if kind == 0:
        data = rng.randbytes(rng.randrange(1, 1400))
    elif kind == 1:
        data = b"CK" + rng.randbytes(rng.randrange(0, 60))
    elif kind == 2:  # a well-formed header with a forged tag
        body = rng.randbytes(40)
        header = struct.pack(
            ">2sBBBBHIIIIBBBB", b"CK", 1, 4, 0, 0, len(body), 99, 1, i, 0, 0, 0, 0, 0
        )
        data = header + body + bytes(16)
    else:
        data = rng.randbytes(2000)
    s.sendto(data, dst)
    if i % 25 == 24:
        time.sleep(0.002)  # a steady flood: the daemon reads it all, not the kernel's drops
"""
    done = swarm3.net.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    time.sleep(0.5)
    with swarm3.client(1) as client:
        status = client.status()
        client.publish("still/serving", 1.0)
    drops = status["drops"]
    # Every datagram is accounted for: dropped by reason, or shed unread when
    # the daemon fell behind (bulk class bits in the garbage).  A few may be
    # lost in the kernel when the machine is busy.
    reasons = ("malformed", "unknown-key", "bad-tag", "too-large", "unsupported-version")
    counted = sum(drops.get(r, 0) for r in reasons)
    shed = sum(status["datagrams"]["shed_received"].values())
    assert counted + shed >= 0.9 * 3000, (drops, shed)
    assert counted >= 0.5 * 3000, drops
    assert swarm3.procs[1].poll() is None
    assert _rss(swarm3.procs[1].pid) - rss_before < 20 * 1024 * 1024


@needs_sandbox
def test_malformed_control_requests_get_error_replies(swarm3: LocalSwarm) -> None:
    path = swarm3.socket(1)

    def exchange(data: bytes) -> bytes:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(path)
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
            return b"".join(chunks)

    import msgpack  # type: ignore[import-untyped]

    def frame(obj: object) -> bytes:
        body: bytes = msgpack.packb(obj)
        return struct.pack(">I", len(body)) + body

    def codes(reply: bytes) -> list[str]:
        out, view = [], reply
        while len(view) >= 4:
            (n,) = struct.unpack(">I", view[:4])
            message: Any = msgpack.unpackb(view[4 : 4 + n])
            out.append(message["error"]["code"] if not message["ok"] else "ok")
            view = view[4 + n :]
        return out

    assert codes(exchange(struct.pack(">I", 5) + b"\xc1\xc1\xc1\xc1\xc1")) == ["malformed"]
    assert codes(exchange(struct.pack(">I", 1 << 30))) == ["too-large"]
    assert codes(exchange(frame({"v": 9, "id": 1, "op": "status"}))) == ["unsupported-version"]
    assert codes(exchange(frame({"v": 1, "id": 2, "op": "reboot"}))) == ["unknown-op"]
    assert codes(exchange(frame({"v": 1, "id": 3, "op": "get", "args": {"topic": "none"}}))) == [
        "not-found"
    ]
    rng = random.Random(4)
    for _ in range(50):
        exchange(rng.randbytes(rng.randrange(1, 300)))
    with Client(path) as client:
        assert client.status()["node_id"] == 1


@needs_sandbox
def test_without_the_right_to_real_time_the_daemon_warns_and_runs(tmp_path: Path) -> None:
    swarm = LocalSwarm(tmp_path, 1, port=next(_PORTS), priority=40)
    try:
        swarm.start_all()
        with swarm.client(1) as client:
            realtime = client.status()["realtime"]
        # In a user namespace there is no real CAP_SYS_NICE: SCHED_FIFO is refused.
        assert not realtime["active"]
        assert realtime["warnings"] and "SCHED_FIFO" in realtime["warnings"][0]
        assert "SCHED_FIFO" in swarm.log(1)  # the warning is logged too
    finally:
        swarm.close()


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


@needs_sandbox
def test_demo_runs_a_swarm_and_sums_it_up() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "cloudkernel", "demo", "--nodes", "4", "--duration", "4"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "deliveries made" in out and "rebuilt by FEC" in out
    assert "liar 4: reputation on the honest nodes" in out
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert len(rows) == 4 and all(row[2] == "ok" for row in rows), out


@needs_sandbox
def test_demo_stops_cleanly_on_ctrl_c() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-u",
            "-m",
            "cloudkernel",
            "demo",
            "--nodes",
            "3",
            "--liars",
            "0",
            "--duration",
            "60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # "starting ..."
        assert "starting 3 daemons" in first
        proc.stdout.readline()  # the first live line: the swarm is up
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert "Traceback" not in err and "nothing left behind" in err


@needs_sandbox
def test_a_client_that_floods_and_reads_nothing_does_not_swell_the_daemon(
    swarm3: LocalSwarm,
) -> None:
    from cloudkernel.core.control import ControlOp, encode_request

    flood = b"".join(encode_request(ControlOp.STATUS, None, i + 1) for i in range(3000))
    rss_before = _rss(swarm3.procs[1].pid)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as greedy:
        greedy.connect(swarm3.socket(1))
        greedy.setblocking(False)
        sent = 0
        deadline = time.monotonic() + 5.0
        while sent < len(flood) and time.monotonic() < deadline:
            try:
                sent += greedy.send(flood[sent:])
            except BlockingIOError:
                time.sleep(0.01)
        time.sleep(0.5)
        # Meanwhile another client is served, and the daemon holds about one
        # reply for the greedy one, not 3000.
        start = time.monotonic()
        with swarm3.client(1) as other:
            assert other.status()["node_id"] == 1
        assert time.monotonic() - start < 2.0
        assert _rss(swarm3.procs[1].pid) - rss_before < 10 * 1024 * 1024


@needs_sandbox
def test_watches_per_connection_are_bounded(swarm3: LocalSwarm) -> None:
    from cloudkernel.core.control import ControlOp, ReplyDecoder, encode_request

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(swarm3.socket(1))
        requests = [encode_request(ControlOp.WATCH, {"pattern": "*"}, i) for i in range(1, 20)]
        requests.append(encode_request(ControlOp.WATCH, {"pattern": "*"}, 1))
        s.sendall(b"".join(requests))
        decoder = ReplyDecoder()
        replies: list[Any] = []
        deadline = time.monotonic() + 5
        while len(replies) < 20 and time.monotonic() < deadline:
            replies.extend(r for r in decoder.feed(s.recv(65536)) if hasattr(r, "ok"))
    codes = [r.error_code for r in replies]
    assert codes[:16] == [None] * 16
    assert codes[16:19] == ["busy"] * 3
    assert codes[19] == "bad-argument"  # id 1 is in use on this connection


CAPTURE = """
import json, socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("239.255.67.75", {port}))
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
             struct.pack("4s4si", socket.inet_aton("239.255.67.75"), bytes(4), 0))
s.settimeout(0.2)
frames, end = [], time.monotonic() + {seconds}
while time.monotonic() < end:
    try:
        data = s.recv(2048)
    except TimeoutError:
        continue
    if len(data) > 12 and struct.unpack(">I", data[8:12])[0] == {node}:
        frames.append(data.hex())
print(json.dumps(frames))
"""

REPLAY = """
import json, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
for frame in json.loads(sys.stdin.read()):
    s.sendto(bytes.fromhex(frame), ("239.255.67.75", {port}))
"""


@needs_sandbox
def test_frames_of_an_old_epoch_are_not_replayable(swarm3: LocalSwarm) -> None:
    port = int(swarm3.configs[1].read_text().split("port = ")[1].split()[0])
    capture = swarm3.net.popen(
        [sys.executable, "-c", CAPTURE.format(port=port, seconds=2.0, node=3)],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.3)
    with swarm3.client(3) as client:
        for i in range(5):
            client.publish("old/epoch", float(i))
    old_frames, _ = capture.communicate(timeout=30)
    assert len(json.loads(old_frames)) >= 5
    swarm3.kill(3, signal.SIGKILL)
    swarm3.start(3)
    swarm3.wait_ready(3)
    with swarm3.client(3) as client:
        client.publish("new/epoch", 1.0)  # node 1 hears the new epoch
    time.sleep(0.5)
    with swarm3.client(1) as client:
        before = client.status()["drops"].get("stale-epoch", 0)
        updates_before = next(
            t["updates"] for t in client.topics("old/epoch") if t["topic"] == "old/epoch"
        )
    replay = swarm3.net.run(
        [sys.executable, "-c", REPLAY.format(port=port)],
        input=old_frames,
        text=True,
        capture_output=True,
        timeout=30,
    )
    assert replay.returncode == 0, replay.stderr
    time.sleep(0.5)
    with swarm3.client(1) as client:
        after = client.status()["drops"].get("stale-epoch", 0)
        updates_after = next(
            t["updates"] for t in client.topics("old/epoch") if t["topic"] == "old/epoch"
        )
    assert after - before >= len(json.loads(old_frames))
    assert updates_after == updates_before  # nothing of the old run was taken again
