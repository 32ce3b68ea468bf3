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
