"""UDP multicast on several interfaces: cloudkernel.aio.transport.

The real-socket tests run inside a private network namespace
(cloudkernel.sandbox): loopback multicast, nothing of the host touched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cloudkernel.aio.transport import (
    MulticastTransport,
    TransportError,
    TransportSettings,
    interface_flags,
    resolve_interfaces,
)
from cloudkernel.sandbox import PrivateNetwork, SandboxError

ROOT = Path(__file__).resolve().parent.parent


UP_MULTICAST = 0x1 | 0x1000
LOOPBACK = 0x1 | 0x8


def resolve(names: list[str], flags: dict[str, int]) -> tuple[str, ...]:
    return resolve_interfaces(names, flags_of=flags.get, all_names=lambda: sorted(flags))


def test_auto_takes_every_up_multicast_interface_but_loopback() -> None:
    flags = {"lo": LOOPBACK | 0x1000, "wlan0": UP_MULTICAST, "wlan1": UP_MULTICAST, "eth0": 0x1000}
    assert resolve(["auto"], flags) == ("wlan0", "wlan1")


def test_auto_falls_back_to_loopback() -> None:
    assert resolve(["auto"], {"lo": LOOPBACK}) == ("lo",)


@pytest.mark.parametrize(
    ("flags", "message"),
    [(None, "does not exist"), (0x1000, "is down"), (0x1, "multicast off")],
)
def test_named_interfaces_are_checked(flags: int | None, message: str) -> None:
    with pytest.raises(TransportError, match=message):
        resolve(["wlan0"], {} if flags is None else {"wlan0": flags})


def test_flags_come_from_the_kernel() -> None:
    lo = interface_flags("lo")
    assert lo is not None and lo & LOOPBACK == LOOPBACK
    assert interface_flags("no-such-if0") is None
    assert interface_flags("x" * 40) is None


@pytest.mark.parametrize(
    ("group", "group6", "message"),
    [
        ("", "", "no multicast group"),
        ("10.0.0.1", "", "not an IPv4 multicast group"),
        ("not-an-address", "", "not an IPv4 address"),
        ("", "fe80::1", "not an IPv6 multicast group"),
    ],
)
def test_bad_groups_are_refused(group: str, group6: str, message: str) -> None:
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        transport = MulticastTransport(
            TransportSettings(group=group, group6=group6, port=47475, interfaces=("lo",)),
            lambda data, now: None,
        )
        with pytest.raises(TransportError, match=message):
            transport.open(loop)
    finally:
        loop.close()


# -- real sockets in a private network ------------------------------------------------

SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    from cloudkernel.aio.transport import MulticastTransport, TransportSettings

    async def main():
        loop = asyncio.get_running_loop()
        got_a, got_b = [], []
        base = dict(group="239.255.67.75", group6="", port=47999, interfaces=("lo",))
        a = MulticastTransport(TransportSettings(**base), lambda d, t: got_a.append(d))
        b = MulticastTransport(TransportSettings(**base), lambda d, t: got_b.append(d))
        lossy = MulticastTransport(
            TransportSettings(**base, drop_incoming=0.5), lambda d, t: None
        )
        for t in (a, b, lossy):
            t.open(loop)
        sent = [bytes([i]) * (i + 1) for i in range(200)]
        for i in range(0, 200, 20):
            a.send(sent[i : i + 20])
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.2)
        out = {
            "b_got_all": sorted(got_b) == sorted(sent),
            "a_got_own": len(got_a),
            "a_stats": a.statistics().sent,
            "lossy": lossy.statistics().injected_drops,
            "lossy_received": lossy.statistics().received,
            "too_long": None,
        }
        b.send([b"x" * 2000])  # longer than max_datagram: truncated and counted
        await asyncio.sleep(0.1)
        out["too_long"] = a.statistics().truncated
        for t in (a, b, lossy):
            t.close()
        print(json.dumps(out))

    asyncio.run(main())
    """
)


def private_network() -> PrivateNetwork:
    try:
        return PrivateNetwork()
    except SandboxError as exc:
        pytest.skip(f"no private network namespace here: {exc}")


@pytest.mark.skipif(shutil.which("unshare") is None, reason="util-linux unshare is missing")
def test_multicast_between_transports_on_loopback() -> None:
    with private_network() as net:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        done = net.run(
            [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, env=env
        )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["b_got_all"], out
    assert out["a_got_own"] == 200  # loopback on: our own datagrams come back too
    assert out["a_stats"] == 200
    assert 50 < out["lossy"] < 150 and out["lossy_received"] == 200
    assert out["too_long"] == 1


@pytest.mark.skipif(shutil.which("unshare") is None, reason="util-linux unshare is missing")
def test_the_host_network_is_left_alone() -> None:
    before = subprocess.run(["ip", "route"], capture_output=True, text=True).stdout
    with private_network() as net:
        inside = net.run(["ip", "route"], capture_output=True, text=True).stdout
    after = subprocess.run(["ip", "route"], capture_output=True, text=True).stdout
    assert "224.0.0.0/4 dev lo" in inside
    assert before == after


# -- shedding under overload, with sockets that refuse on cue -------------------------


class FullSocket:
    """A socket whose send buffer is full until ``room`` is set."""

    def __init__(self) -> None:
        self.room = False
        self.sent: list[bytes] = []

    def sendto(self, data: bytes, address: object) -> int:
        if not self.room:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        self.sent.append(data)
        return len(data)

    def fileno(self) -> int:
        return 99

    def close(self) -> None:
        pass


class FakeLoop:
    def __init__(self) -> None:
        self.writers: dict[int, object] = {}

    def add_writer(self, fd: int, callback: object, *args: object) -> None:
        self.writers[fd] = (callback, args)

    def remove_writer(self, fd: int) -> bool:
        return self.writers.pop(fd, None) is not None


def frame(qos: int, n: int) -> bytes:
    return b"CK\x01" + bytes([qos << 2]) + n.to_bytes(4, "big")


def transport_with(sock: FullSocket, limit: int) -> tuple[MulticastTransport, FakeLoop]:
    settings = TransportSettings(
        group="239.255.67.75", group6="", port=47475, interfaces=("lo",), send_queue_limit=limit
    )
    transport = MulticastTransport(settings, lambda data, now: None)
    loop = FakeLoop()
    transport._loop = loop  # type: ignore[assignment]
    transport._senders.append((sock, ("239.255.67.75", 47475)))  # type: ignore[arg-type]
    from cloudkernel.aio.transport import _SendQueue

    transport._queues.append(_SendQueue())
    return transport, loop


def test_a_full_socket_queues_and_sheds_bulk_first() -> None:
    sock = FullSocket()
    transport, loop = transport_with(sock, limit=6)
    transport.send([frame(q, i) for i, q in enumerate([2, 2, 1, 0, 2, 1, 0, 2, 1, 0])])
    stats = transport.statistics()
    # 10 waiting, 6 allowed: the 4 bulk go first (oldest first), nothing else
    assert stats.queued == 6 and stats.shed_sent == (0, 0, 4)
    assert 99 in loop.writers
    transport.send([frame(0, 10), frame(1, 11)])  # two more: normal is shed next
    assert transport.statistics().shed_sent == (0, 2, 4)
    sock.room = True
    transport._flush(0)
    # critical first, then normal, each in order
    assert [d[3] >> 2 for d in sock.sent] == [0, 0, 0, 0, 1, 1]
    assert [int.from_bytes(d[4:8], "big") for d in sock.sent[:4]] == [3, 6, 9, 10]
    assert transport.statistics().queued == 0 and 99 not in loop.writers


def test_sends_go_straight_out_when_there_is_room() -> None:
    sock = FullSocket()
    sock.room = True
    transport, loop = transport_with(sock, limit=16)
    transport.send([frame(1, i) for i in range(5)])
    assert len(sock.sent) == 5 and not loop.writers
    assert transport.statistics().sent == 5


class Backlog:
    """A receive socket holding a queue of datagrams."""

    def __init__(self, datagrams: list[bytes]) -> None:
        self.datagrams = list(datagrams)

    def recv(self, size: int) -> bytes:
        if not self.datagrams:
            raise BlockingIOError(11, "empty")
        return self.datagrams.pop(0)


def test_a_receive_backlog_sheds_bulk_then_normal_never_critical() -> None:
    got: list[bytes] = []
    settings = TransportSettings(
        group="239.255.67.75",
        group6="",
        port=47475,
        interfaces=("lo",),
        batch=4,
        receive_backlog_limit=16,
    )
    transport = MulticastTransport(settings, lambda data, now: got.append(data))
    mixed = [frame(q, i) for i, q in enumerate([0, 1, 2] * 20)]
    sock = Backlog(mixed)
    for _ in range(30):
        transport._readable(sock)  # type: ignore[arg-type]
    stats = transport.statistics()
    kept = [d[3] >> 2 for d in got]
    assert stats.shed_received[0] == 0 and kept.count(0) == 20  # every critical frame read
    assert stats.shed_received[2] > 0  # bulk shed once behind
    assert stats.shed_received[1] > 0  # normal too once 16 were read without catching up
    assert len(got) + sum(stats.shed_received) == len(mixed)
    # Caught up: nothing is shed any more.  (The shedding above needed a
    # backlog of a quarter of the limit for bulk: 4, one batch here.)
    sock.datagrams = [frame(2, 100)]
    transport._readable(sock)  # type: ignore[arg-type]
    sock.datagrams = [frame(2, 101)]
    transport._readable(sock)  # type: ignore[arg-type]
    assert got[-1][4:8] == (101).to_bytes(4, "big")


def test_a_burst_shorter_than_a_quarter_of_the_backlog_limit_is_read_in_full() -> None:
    got: list[bytes] = []
    settings = TransportSettings(
        group="239.255.67.75",
        group6="",
        port=47475,
        interfaces=("lo",),
        batch=64,
        receive_backlog_limit=4096,
    )
    transport = MulticastTransport(settings, lambda data, now: got.append(data))
    # 1,000 datagrams waiting at once: 15 full wake-ups, 960 read behind, < 1024
    burst = [frame(q, i) for i, q in enumerate([0, 1, 2] * 333 + [2])]
    sock = Backlog(burst)
    for _ in range(20):
        transport._readable(sock)  # type: ignore[arg-type]
    assert transport.statistics().shed_received == (0, 0, 0)
    assert len(got) == len(burst)
    # A sustained backlog still sheds bulk first.
    sock.datagrams = [frame(2, i) for i in range(3000)]
    for _ in range(60):
        transport._readable(sock)  # type: ignore[arg-type]
    assert transport.statistics().shed_received[2] > 0


def test_loopback_has_an_ipv4_address_and_a_missing_interface_none() -> None:
    from cloudkernel.aio.transport import interface_has_ipv4

    assert interface_has_ipv4("lo")
    assert not interface_has_ipv4("no-such-if0")
    assert not interface_has_ipv4("")
