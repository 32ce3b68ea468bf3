"""Tests of :mod:`cloudkernel.client` against the real control server and a fake daemon.

* Every method of :class:`Client` and :class:`AsyncClient` gets the canned
  result of ``fakedaemon`` and sends the request the daemon expects.
* A watch consumes the ``{"watching": ...}`` reply, yields the events, and
  stops when the caller stops, after ``duration``, or when the daemon ends
  the stream; it runs on its own connection.
* Failures: no socket file or nobody listening is DaemonNotRunning; no answer
  is DaemonTimeout within the client's timeout; an error reply is
  RequestFailed and the connection stays usable; garbage from the daemon is
  ControlProtocolError; a request the daemon would refuse is ControlError and
  nothing is sent.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import pickle
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fakedaemon import (
    NODE_ID,
    PEER_ROWS,
    RAW_VIEW,
    SCALAR_ESTIMATE,
    SOURCESTATS_ROWS,
    STATUS,
    TOPIC_ROWS,
    FakeDaemon,
    dead_socket,
    estimate_event,
    fake_daemon,
    garbage_socket,
    short_socket_path,
    signal_event,
    silent_socket,
)

from cloudkernel.aio.control_server import ControlConnection, ControlRefusal
from cloudkernel.client import (
    SOCKET_ENV,
    AsyncClient,
    Client,
    ControlError,
    ControlProtocolError,
    DaemonNotRunning,
    DaemonTimeout,
    DaemonUnreachable,
    RequestFailed,
    default_socket_path,
)
from cloudkernel.config import resolve_socket_path
from cloudkernel.core.control import (
    ErrorCode,
    GetRequest,
    PublishRequest,
    Request,
    WatchRequest,
    encode_reply,
)
from cloudkernel.core.signals import QoS
from cloudkernel.errors import CloudkernelError


@pytest.fixture
def path(tmp_path: Path) -> str:
    return short_socket_path(tmp_path)


@pytest.fixture
def daemon(path: str) -> Iterator[FakeDaemon]:
    with fake_daemon(path) as fake:
        yield fake


def _estimates(n: int) -> list[dict[str, object]]:
    return [estimate_event(dict(SCALAR_ESTIMATE, value=21.0 + i)) for i in range(n)]


def _signals(n: int) -> list[dict[str, object]]:
    return [signal_event("temp/room", 21.0 + i, i + 1) for i in range(n)]


# -- the socket path ------------------------------------------------------------


def test_socket_path_is_argument_then_environment_then_auto(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(SOCKET_ENV, "/tmp/from-env.sock")
    assert Client("/tmp/given.sock").socket_path == "/tmp/given.sock"
    assert Client().socket_path == "/tmp/from-env.sock"
    assert AsyncClient().socket_path == "/tmp/from-env.sock"
    monkeypatch.delenv(SOCKET_ENV)
    assert Client().socket_path == resolve_socket_path("auto", os.geteuid(), os.environ)
    assert default_socket_path({}, 0) == "/run/cloudkernel/control.sock"
    assert default_socket_path({SOCKET_ENV: ""}, 1000) == "/tmp/cloudkernel-1000/control.sock"
    assert default_socket_path({SOCKET_ENV: "/x.sock"}, 0) == "/x.sock"


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), True])
def test_bad_timeout_is_refused(timeout: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        Client("/tmp/x.sock", timeout=timeout)
    with pytest.raises(ValueError, match="timeout"):
        AsyncClient("/tmp/x.sock", timeout=timeout)


# -- every method, blocking -------------------------------------------------------


def test_publish_sends_the_signal_and_returns_the_stamp(daemon: FakeDaemon, path: str) -> None:
    with Client(path) as client:
        assert client.publish("temp/room", 21.5) == {
            "topic": "temp/room",
            "source": NODE_ID,
            "seq": 1,
        }
        client.publish("mode", 3, confidence=0.5, ttl=2.0, qos="critical")
        client.publish("pos", (1, 2.5, 3), half_life=4)
        client.publish("blob", bytearray(b"\x00\x01"), half_life=1, ttl=9, qos="bulk")
    signals = [r.signal for r in daemon.requests if isinstance(r, PublishRequest)]
    assert [s.value for s in signals] == [21.5, 3, (1.0, 2.5, 3.0), b"\x00\x01"]
    # Neither lifetime given: the protocol's half-life of 10 s; one given: the other is nil.
    assert [(s.half_life, s.ttl) for s in signals] == [
        (10.0, None),
        (None, 2.0),
        (4.0, None),
        (1.0, 9.0),
    ]
    assert [s.confidence for s in signals] == [1.0, 0.5, 1.0, 1.0]
    assert [s.qos for s in signals] == [QoS.NORMAL, QoS.CRITICAL, QoS.NORMAL, QoS.BULK]


def test_read_only_methods_return_the_daemons_results(daemon: FakeDaemon, path: str) -> None:
    with Client(path) as client:
        assert client.get("temp/room") == SCALAR_ESTIMATE
        assert client.get("blob/x") == RAW_VIEW  # bytes stay bytes
        assert client.topics() == TOPIC_ROWS
        assert client.topics("temp/*") == TOPIC_ROWS[:1]
        assert client.topics("nothing/*") == []
        assert client.status() == STATUS
        assert client.peers() == PEER_ROWS
        assert client.sourcestats() == SOURCESTATS_ROWS
        assert client.sourcestats("temp/*") == SOURCESTATS_ROWS[1:]
    assert daemon.server.counters.connections == 1


def test_request_ids_increase_per_client(daemon: FakeDaemon, path: str) -> None:
    with Client(path) as one, Client(path) as two:
        for _ in range(3):
            one.status()
        two.status()
        one.get("temp/room")
    assert [r.id for r in daemon.requests] == [1, 2, 3, 1, 4]


def test_connects_lazily_and_again_after_close(daemon: FakeDaemon, path: str) -> None:
    client = Client(path)
    assert daemon.server.counters.connections == 0
    assert client.status() == STATUS
    client.close()
    client.close()
    assert client.peers() == PEER_ROWS
    client.close()
    assert daemon.server.counters.connections == 2


def test_error_reply_is_request_failed_and_the_connection_stays(
    daemon: FakeDaemon, path: str
) -> None:
    with Client(path) as client:
        with pytest.raises(RequestFailed) as failed:
            client.get("no/such/topic")
        assert failed.value.code == "not-found"
        assert failed.value.message == "no signal on topic 'no/such/topic' yet"
        assert str(failed.value) == "not-found: no signal on topic 'no/such/topic' yet"
        assert client.get("temp/room")["value"] == 21.43
    assert daemon.server.counters.connections == 1
    copy = pickle.loads(pickle.dumps(failed.value))
    assert (copy.code, copy.message) == ("not-found", failed.value.message)


def test_busy_daemon_is_request_failed(path: str) -> None:
    with fake_daemon(path, max_clients=1), Client(path) as first, Client(path) as second:
        first.status()  # the server has taken the first connection
        with pytest.raises(RequestFailed) as failed:
            second.status()
        assert failed.value.code == "busy"
        first.close()
        # The daemon closed the second connection; a later request opens another.
        deadline = time.monotonic() + 5
        while True:
            try:
                assert second.status() == STATUS
                break
            except RequestFailed:
                assert time.monotonic() < deadline
                time.sleep(0.01)


@pytest.mark.parametrize(
    ("call", "what"),
    [
        (lambda c: c.publish("t", float("nan")), "finite"),
        (lambda c: c.publish("t", True), "bool"),
        (lambda c: c.publish("t", b"x" * 65), "64"),
        (lambda c: c.publish("t", list(range(17))), "16"),
        (lambda c: c.publish("$sys", 1.0), "reserved"),
        (lambda c: c.publish("t", 1.0, confidence=0), "confidence"),
        (lambda c: c.publish("t", 1.0, qos="urgent"), "qos"),
        (lambda c: c.publish("t", 1.0, half_life=100_000), "half_life"),
        (lambda c: c.get(""), "topic"),
        (lambda c: c.topics("x\n"), "control character"),
        (lambda c: c.watch("a" * 129), "129 bytes"),
    ],
)
def test_a_request_the_daemon_would_refuse_is_never_sent(
    daemon: FakeDaemon, path: str, call: Callable[[Client], object], what: str
) -> None:
    client = Client(path)
    with pytest.raises(ControlError, match=what):
        call(client)
    client.close()
    assert daemon.requests == []
    assert daemon.server.counters.connections == 0


# -- watch, blocking ----------------------------------------------------------------


def test_watch_consumes_the_first_reply_and_yields_the_events(
    daemon: FakeDaemon, path: str
) -> None:
    with Client(path) as client, client.watch("temp/*") as stream:
        assert stream.started == {"watching": "temp/*", "raw": False}
        assert list(itertools.islice(stream, 3)) == _estimates(3)
        # Other requests go on while the watch streams, on the client's own connection.
        assert client.status() == STATUS
    assert stream.closed
    watches = [r for r in daemon.requests if isinstance(r, WatchRequest)]
    assert watches == [WatchRequest(1, "temp/*", False)]


def test_watch_stops_after_its_duration(daemon: FakeDaemon, path: str) -> None:
    client = Client(path)
    start = time.monotonic()
    events = list(client.watch("*", raw=True, duration=0.3))
    elapsed = time.monotonic() - start
    client.close()
    assert events == _signals(3)
    assert 0.25 <= elapsed < 2.0


def test_watch_ends_when_the_daemon_ends_the_stream(path: str) -> None:
    with fake_daemon(path, end_stream=True, watch_events=2), Client(path) as client:
        stream = client.watch("temp/*")
        assert list(stream) == _estimates(2)
        assert stream.ended == "shutdown"
        assert stream.closed


def test_breaking_out_and_closing_the_client_close_the_watch(daemon: FakeDaemon, path: str) -> None:
    client = Client(path)
    stream = client.watch("*")
    for _event in stream:
        break
    assert not stream.closed
    client.close()
    assert stream.closed
    assert list(stream) == []


def test_closing_the_client_ends_a_watch_blocked_in_another_thread(
    daemon: FakeDaemon, path: str
) -> None:
    client = Client(path)
    stream = client.watch("*")
    got: list[dict[str, object]] = []
    reader = threading.Thread(target=lambda: got.extend(stream), daemon=True)
    reader.start()
    time.sleep(0.3)  # the reader has taken the events and blocks for more
    client.close()
    reader.join(5.0)
    assert not reader.is_alive(), "the watch kept waiting after the client closed"
    assert got == _estimates(3)


def test_watch_of_a_stopped_daemon_is_daemon_not_running(path: str) -> None:
    fake = FakeDaemon(path, watch_events=1)
    fake.start()
    try:
        with Client(path, timeout=2) as client:
            stream = client.watch("*")
            assert next(stream) == _estimates(1)[0]
            fake.stop()
            with pytest.raises(DaemonNotRunning, match="closed the connection"):
                next(stream)
            assert stream.closed
    finally:
        fake.stop()


def test_watch_error_reply_is_request_failed(daemon: FakeDaemon, path: str) -> None:
    answer = daemon._handle

    def refuse_watch(request: Request, connection: ControlConnection) -> object:
        if isinstance(request, WatchRequest):
            raise ControlRefusal(ErrorCode.NOT_AUTHORISED, "watch is not for you")
        return answer(request, connection)

    daemon.server._handler = refuse_watch
    with Client(path) as client, pytest.raises(RequestFailed) as failed:
        client.watch("*")
    assert failed.value.code == "not-authorised"


# -- failures, blocking -----------------------------------------------------------


def _assert_not_running_message(exc: DaemonNotRunning, path: str) -> None:
    message = str(exc)
    assert path in message
    assert "cloudkernel run" in message and "systemctl start cloudkernel" in message
    assert "--socket" in message and SOCKET_ENV in message
    assert "\n" not in message
    assert exc.socket_path == path


def test_missing_socket_is_daemon_not_running(path: str) -> None:
    client = Client(path)
    with pytest.raises(DaemonNotRunning) as failed:
        client.status()
    _assert_not_running_message(failed.value, path)
    assert "no such socket file" in str(failed.value)
    with pytest.raises(DaemonNotRunning):
        Client(path).__enter__()
    with pytest.raises(DaemonNotRunning):
        client.watch("*")
    copy = pickle.loads(pickle.dumps(failed.value))
    assert str(copy) == str(failed.value) and copy.socket_path == path


def test_socket_nobody_listens_on_is_daemon_not_running(path: str) -> None:
    dead_socket(path)
    with pytest.raises(DaemonNotRunning) as failed:
        Client(path).publish("t", 1.0)
    _assert_not_running_message(failed.value, path)
    assert "nobody listens" in str(failed.value)


def test_a_file_that_is_not_a_socket_is_unreachable(tmp_path: Path) -> None:
    path = tmp_path / "plain-file"
    path.write_text("")
    with pytest.raises(DaemonUnreachable) as failed:
        Client(str(path)).status()
    assert isinstance(failed.value, CloudkernelError)
    assert str(path) in str(failed.value)


def test_silent_daemon_is_daemon_timeout(path: str) -> None:
    with silent_socket(path):
        client = Client(path, timeout=0.2)
        for call in (client.status, lambda: client.watch("*")):
            start = time.monotonic()
            with pytest.raises(DaemonTimeout, match=r"did not answer within 0\.2 s"):
                call()
            assert time.monotonic() - start < 1.5
        client.close()


def test_daemon_timeout_then_a_new_connection(path: str) -> None:
    with silent_socket(path):
        client = Client(path, timeout=0.2)
        with pytest.raises(DaemonTimeout):
            client.status()
    with fake_daemon(path):
        assert client.status() == STATUS
        client.close()


@pytest.mark.parametrize(
    "reply",
    [
        b"\x00\x00\x00\x01\xc1",  # a byte msgpack never uses
        b"\x00\x00\x00\x00",  # length 0
        b"\x00\x00\x00\x01\x90",  # an array, not a map
        encode_reply(99, {"not": "mine"}),  # another request's id
    ],
)
def test_garbage_from_the_daemon_is_control_protocol_error(path: str, reply: bytes) -> None:
    with garbage_socket(path, reply):
        client = Client(path, timeout=2)
        with pytest.raises(ControlProtocolError):
            client.status()
        client.close()


def test_a_result_of_the_wrong_shape_is_control_protocol_error(path: str) -> None:
    with garbage_socket(path, encode_reply(1, {"topics": "many"})):
        client = Client(path, timeout=2)
        with pytest.raises(ControlProtocolError, match="topics"):
            client.topics()
        client.close()


# -- asyncio ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_async_every_method(daemon: FakeDaemon, path: str) -> None:
    async with AsyncClient(path) as client:
        assert await client.publish("temp/room", 21.5, confidence=0.5) == {
            "topic": "temp/room",
            "source": NODE_ID,
            "seq": 1,
        }
        assert await client.publish("v", [1, 2], ttl=1, qos="bulk") == {
            "topic": "v",
            "source": NODE_ID,
            "seq": 2,
        }
        assert await client.get("temp/room") == SCALAR_ESTIMATE
        assert await client.get("blob/x") == RAW_VIEW
        assert await client.topics() == TOPIC_ROWS
        assert await client.topics("pos/*") == TOPIC_ROWS[1:2]
        assert await client.status() == STATUS
        assert await client.peers() == PEER_ROWS
        assert await client.sourcestats("pos/*") == SOURCESTATS_ROWS[:1]
    published = [r.signal for r in daemon.requests if isinstance(r, PublishRequest)]
    assert [(s.value, s.confidence, s.half_life, s.ttl, s.qos) for s in published] == [
        (21.5, 0.5, 10.0, None, QoS.NORMAL),
        ((1.0, 2.0), 1.0, None, 1.0, QoS.BULK),
    ]
    assert [r.id for r in daemon.requests] == list(range(1, 10))
    assert daemon.server.counters.connections == 1


@pytest.mark.asyncio
async def test_async_requests_from_many_tasks_share_one_connection(
    daemon: FakeDaemon, path: str
) -> None:
    async with AsyncClient(path) as client:
        results = await asyncio.gather(*(client.get("temp/room") for _ in range(20)))
    assert results == [SCALAR_ESTIMATE] * 20
    assert sorted(r.id for r in daemon.requests if isinstance(r, GetRequest)) == list(range(1, 21))


@pytest.mark.asyncio
async def test_async_watch(daemon: FakeDaemon, path: str) -> None:
    async with AsyncClient(path) as client:
        events = []
        stream = client.watch("temp/*")
        async for event in stream:
            events.append(event)
            if len(events) == 2:
                break
        assert events == _estimates(2)
        assert stream.started == {"watching": "temp/*", "raw": False}
        async with client.watch("*", raw=True, duration=0.3) as raw:
            start = time.monotonic()
            assert [event async for event in raw] == _signals(3)
            assert 0.2 <= time.monotonic() - start < 2.0
        assert raw.closed
    assert stream.closed  # closed with the client


@pytest.mark.asyncio
async def test_async_watch_ends_with_the_stream(path: str) -> None:
    with fake_daemon(path, end_stream=True, watch_events=1):
        async with AsyncClient(path) as client:
            stream = client.watch("temp/*")
            assert [event async for event in stream] == _estimates(1)
            assert stream.ended == "shutdown"


@pytest.mark.asyncio
async def test_async_failures(path: str, tmp_path: Path) -> None:
    client = AsyncClient(path, timeout=0.2)
    with pytest.raises(DaemonNotRunning) as failed:
        await client.status()
    _assert_not_running_message(failed.value, path)
    with pytest.raises(DaemonNotRunning):
        await client.connect()
    with pytest.raises(DaemonNotRunning):
        async for _event in client.watch("*"):
            pass
    with pytest.raises(ControlError):
        client.watch("")
    with pytest.raises(ControlError):
        await client.publish("t", float("inf"))

    with silent_socket(path):
        start = time.monotonic()
        with pytest.raises(DaemonTimeout):
            await client.get("temp/room")
        with pytest.raises(DaemonTimeout):
            await client.watch("*").start()
        assert time.monotonic() - start < 2.0

    dead_socket(path)
    with pytest.raises(DaemonNotRunning, match="nobody listens"):
        await client.peers()

    other = short_socket_path(tmp_path / "garbage")
    (tmp_path / "garbage").mkdir(exist_ok=True)
    with garbage_socket(other, b"\x00\x00\x00\x01\xc1"):
        async with AsyncClient(other, timeout=2) as broken:
            with pytest.raises(ControlProtocolError):
                await broken.status()
    await client.close()


@pytest.mark.asyncio
async def test_async_error_reply_is_request_failed(daemon: FakeDaemon, path: str) -> None:
    async with AsyncClient(path) as client:
        with pytest.raises(RequestFailed) as failed:
            await client.get("missing")
        assert failed.value.code == "not-found"
        assert await client.get("temp/room") == SCALAR_ESTIMATE
    assert daemon.server.counters.connections == 1
