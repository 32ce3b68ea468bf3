"""sd_notify: addresses, watchdog interval, messages, the status line, and a real daemon.

The daemon test plays systemd's part: it binds an AF_UNIX datagram socket,
starts ``cloudkernel run`` with ``NOTIFY_SOCKET`` naming it and a watchdog of
0.4 s, and reads what arrives, with the sender's credentials (systemd only
takes notifications from the service's main process).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudkernel.aio.sdnotify import (
    MAX_STATUS,
    NotifyError,
    ServiceNotifier,
    encode,
    notify_address,
    one_line,
    status_line,
    watchdog_interval,
)
from cloudkernel.sandbox import SandboxError

# -- the pure parts -------------------------------------------------------------


def test_address_path_and_abstract() -> None:
    assert notify_address(None) is None
    assert notify_address("") is None
    assert notify_address("/run/systemd/notify") == b"/run/systemd/notify"
    assert notify_address("@/org/freedesktop/systemd1/notify/123") == (
        b"\0/org/freedesktop/systemd1/notify/123"
    )


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("run/notify", "neither an absolute path"),
        ("vsock:2:1234", "neither an absolute path"),
        ("@", "without an abstract socket name"),
        ("/a\0b", "NUL"),
        ("/" + "x" * 107, "at most 107 fit"),
        ("@" + "x" * 107, "at most 107 fit"),
    ],
)
def test_address_refused(value: str, words: str) -> None:
    with pytest.raises(NotifyError, match=words):
        notify_address(value)


def test_address_longest_fits() -> None:
    assert notify_address("/" + "x" * 106) == b"/" + b"x" * 106
    assert notify_address("@" + "x" * 106) == b"\0" + b"x" * 106


@given(st.text(max_size=300))
def test_address_any_text_gives_an_address_or_our_error(value: str) -> None:
    try:
        address = notify_address(value)
    except NotifyError:
        return
    assert address is None or (0 < len(address) <= 107 and address[:1] in (b"/", b"\0"))


def test_watchdog_interval_is_half_the_timeout() -> None:
    assert watchdog_interval({}, 10) is None
    assert watchdog_interval({"WATCHDOG_USEC": "3000000"}, 10) == 1.5
    assert watchdog_interval({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "10"}, 10) == 1.5
    # the watchdog belongs to another process (e.g. a wrapper that started us)
    assert watchdog_interval({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "11"}, 10) is None
    assert watchdog_interval({"WATCHDOG_USEC": "18446744073709551615"}, 10) == (2**64 - 1) / 2e6


@pytest.mark.parametrize(
    "environ",
    [
        {"WATCHDOG_USEC": "0"},
        {"WATCHDOG_USEC": "-5"},
        {"WATCHDOG_USEC": "1.5"},
        {"WATCHDOG_USEC": "lots"},
        {"WATCHDOG_USEC": "100", "WATCHDOG_PID": "me"},
        {"WATCHDOG_USEC": "100", "WATCHDOG_PID": "0"},
        {"WATCHDOG_USEC": "\u00b2"},  # a digit to str.isdigit, not to int()
        {"WATCHDOG_USEC": "18446744073709551616"},  # 2**64
        {"WATCHDOG_USEC": "9" * 400},
    ],
)
def test_watchdog_interval_refused(environ: dict[str, str]) -> None:
    with pytest.raises(NotifyError):
        watchdog_interval(environ, 10)


@given(st.dictionaries(st.sampled_from(["WATCHDOG_USEC", "WATCHDOG_PID"]), st.text(max_size=30)))
def test_watchdog_any_environment_gives_an_interval_or_our_error(environ: dict[str, str]) -> None:
    try:
        interval = watchdog_interval(environ, 42)
    except NotifyError:
        return
    assert interval is None or interval > 0


def test_encode() -> None:
    assert encode([("READY", "1"), ("STATUS", "3 peers alive")]) == (
        b"READY=1\nSTATUS=3 peers alive\n"
    )
    assert encode([("STATUS", "n\u00e4he")]) == "STATUS=n\u00e4he\n".encode()
    for bad in ([("ready", "1")], [("READY=", "1")], [("", "1")], [("1A", "x")]):
        with pytest.raises(NotifyError, match="not a notification key"):
            encode(bad)
    for value in ("two\nlines", "nul\0"):
        with pytest.raises(NotifyError, match="newline or a NUL"):
            encode([("STATUS", value)])


def test_one_line() -> None:
    assert one_line("  a\n b\t\tc\0d ") == "a b c d"
    long = one_line("x" * 500)
    assert len(long) == MAX_STATUS and long.endswith("...")


STATUS = {
    "peers": {"alive": 3, "suspect": 1, "dead": 0},
    "topics": 12,
    "signals": {"published": 20, "delivered": 4567, "recovered": 3, "relayed": 0},
    "drops": {"bad-tag": 4, "replay": 1, "own-frame": 70, "duplicate": 9},
    "realtime": {"active": True, "summary": "real time ok: SCHED_FIFO 50", "warnings": []},
    "reload": {"succeeded": 1, "failed": 0, "last_ok": True, "last_error": ""},
}


def test_status_line() -> None:
    assert status_line(STATUS) == (
        "3 peers alive, 1 suspect; 12 topics; 4567 signals delivered, 20 published; "
        "5 packets dropped; real time ok: SCHED_FIFO 50"
    )
    refused = dict(STATUS, reload={"last_ok": False, "last_error": "x.toml:3: bad\nvalue"})
    assert status_line(refused).startswith("last reload refused: x.toml:3: bad value; 3 peers")
    routine = dict(STATUS, drops={"own-frame": 70, "duplicate": 9, "repair-unneeded": 1})
    assert "dropped" not in status_line(routine)
    assert status_line({}) == "0 peers alive; 0 topics; 0 signals delivered, 0 published"


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)


@given(st.dictionaries(st.sampled_from([*STATUS, "other"]), _json))
def test_status_line_of_anything_is_one_short_line(status: dict[str, object]) -> None:
    line = status_line(status)
    assert "\n" not in line and "\0" not in line and len(line) <= MAX_STATUS
    encode([("STATUS", line)])


# -- the notifier on an event loop ---------------------------------------------------


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    try:
        yield sock, path
    finally:
        sock.close()


def _receive(sock: socket.socket, timeout: float) -> tuple[dict[str, str], int] | None:
    """One notification as a dict, and the sender's pid; None on timeout."""
    if timeout > 0:
        sock.settimeout(timeout)
    try:
        data, ancillary, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(12))
    except (TimeoutError, BlockingIOError):
        return None
    pid = -1
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack("iII", payload[:12])[0]
    assert data.endswith(b"\n"), data
    fields = dict(line.split("=", 1) for line in data.decode().splitlines())
    return fields, pid


def _collect(sock: socket.socket, seconds: float) -> list[dict[str, str]]:
    out, deadline = [], time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        got = _receive(sock, left)
        if got is not None:
            out.append(got[0])
    return out


def test_notifier_ready_pings_status_stopping(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    calls = [0]
    messages: list[dict[str, str]] = []

    def status() -> str:
        calls[0] += 1
        return f"summary {calls[0]}\nsecond line"

    def readable() -> None:
        got = _receive(sock, 0.0)
        if got is not None:
            messages.append(got[0])

    async def main() -> None:
        sock.setblocking(False)
        asyncio.get_running_loop().add_reader(sock.fileno(), readable)
        environ = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"}
        notifier = ServiceNotifier(
            notify_address(environ["NOTIFY_SOCKET"]),
            watchdog=watchdog_interval(environ, os.getpid()),
            status=status,
            status_interval=0.12,
        )
        assert notifier.enabled and notifier.watchdog == 0.05
        notifier.ready(asyncio.get_running_loop())
        await asyncio.sleep(0.5)
        notifier.stopping("shutting down")
        await asyncio.sleep(0.05)
        asyncio.get_running_loop().remove_reader(sock.fileno())
        stats = notifier.statistics()
        assert stats.errors == 0 and stats.watchdog_pings >= 3
        assert stats.sent == len(messages)

    asyncio.run(main())
    assert messages[0] == {"READY": "1", "STATUS": "summary 1 second line"}
    assert sum(m == {"WATCHDOG": "1"} for m in messages) >= 3
    assert {"STATUS": "summary 2 second line"} in messages
    assert messages[-1] == {"STOPPING": "1", "STATUS": "shutting down"}


def test_notifier_abstract_address() -> None:
    name = f"cloudkernel-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind("\0" + name)
        notifier = ServiceNotifier.from_environ(environ={"NOTIFY_SOCKET": "@" + name})
        assert notifier.send(("READY", "1"))
        assert _receive(sock, 2.0) == ({"READY": "1"}, -1)
    finally:
        sock.close()


def test_notifier_without_socket_does_nothing() -> None:
    notifier = ServiceNotifier.from_environ(environ={"WATCHDOG_USEC": "1000"})
    assert not notifier.enabled and notifier.watchdog is None
    assert not notifier.send(("READY", "1"))

    async def main() -> None:
        notifier.ready(asyncio.get_running_loop())
        notifier.stopping()

    asyncio.run(main())
    assert notifier.statistics().sent == 0


def test_notifier_bad_environment_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    notifier = ServiceNotifier.from_environ(
        environ={"NOTIFY_SOCKET": "relative", "WATCHDOG_USEC": "x"}
    )
    assert not notifier.enabled
    assert "not notifying systemd: NOTIFY_SOCKET 'relative'" in caplog.text
    assert "watchdog" not in caplog.text  # no socket: nothing to ping, nothing to say
    caplog.clear()
    notifier = ServiceNotifier.from_environ(
        environ={"NOTIFY_SOCKET": "/run/notify", "WATCHDOG_USEC": "x"}
    )
    assert notifier.enabled and notifier.watchdog is None
    assert "no watchdog pings: WATCHDOG_USEC is 'x'" in caplog.text


def test_notifier_send_failure_is_counted_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = ServiceNotifier.from_environ(environ={"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert not notifier.send(("READY", "1"))
    assert not notifier.send(("STATUS", "x"))
    assert notifier.statistics().errors == 2
    assert caplog.text.count("cannot notify systemd") == 1


# -- a real daemon ------------------------------------------------------------------


def test_daemon_notifies_ready_watchdog_and_stopping(
    tmp_path: Path, listener: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from swarmproc import LocalSwarm

    from cloudkernel.client import Client

    sock, path = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # a ping every 0.2 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    try:
        swarm = LocalSwarm(tmp_path, 1, port=47601)
    except SandboxError as exc:
        pytest.skip(f"no private network for the daemon: {exc}")
    try:
        swarm.start(1)
        daemon_pid = swarm.procs[1].pid
        got = _receive(sock, 20.0)
        assert got is not None, f"no READY=1 in 20 s:\n{swarm.log(1)}"
        ready, sender = got
        assert ready.get("READY") == "1", ready
        assert sender == daemon_pid  # NotifyAccess=main takes only the main process's
        assert "peers alive" in ready["STATUS"] and "topics" in ready["STATUS"]
        # READY=1 comes once the control socket is open: it answers at once.
        with Client(swarm.socket(1), timeout=5.0) as client:
            assert client.status()["node_id"] == 1

        pings = [m for m in _collect(sock, 1.2) if m == {"WATCHDOG": "1"}]
        assert len(pings) >= 3, pings

        # A frozen daemon sends nothing: its loop is what pings.
        os.kill(daemon_pid, signal.SIGSTOP)
        try:
            time.sleep(0.1)
            _collect(sock, 0.05)  # what was sent before the stop took effect
            assert _collect(sock, 1.0) == []
        finally:
            os.kill(daemon_pid, signal.SIGCONT)
        assert {"WATCHDOG": "1"} in _collect(sock, 1.0)

        swarm.procs[1].send_signal(signal.SIGTERM)
        assert swarm.procs[1].wait(20) == 0, swarm.log(1)
        rest = _collect(sock, 0.3)
        assert rest and rest[-1] == {"STOPPING": "1", "STATUS": "stopping"}, rest
    finally:
        swarm.close()
