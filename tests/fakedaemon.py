"""A stand-in daemon for the client and CLI tests: the real control server, a fake handler.

:class:`FakeDaemon` runs a real :class:`~cloudkernel.aio.control_server.ControlServer`
on an asyncio loop in a background thread.  Its handler answers each op with
canned results shaped exactly as ``Daemon._request`` shapes them (the dicts
of ``cloudkernel.views``), records every request it is given, and answers a
watch with a few stream events, optionally ending the stream after them.

Also here: :func:`silent_socket` (a socket that accepts connections into its
backlog and never answers) and :func:`dead_socket` (a socket file nobody
listens on), and :func:`short_socket_path` (a socket path that fits
``sun_path``).
"""

from __future__ import annotations

import asyncio
import copy
import fnmatch
import os
import socket
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cloudkernel.aio.control_server import ControlConnection, ControlRefusal, ControlServer
from cloudkernel.core.control import (
    ErrorCode,
    GetRequest,
    PeersRequest,
    PublishRequest,
    Request,
    SourceStatsRequest,
    StatusRequest,
    TopicsRequest,
    WatchRequest,
    encode_reply,
)

NODE_ID = 0x1A2B3C4D

# -- canned results, with the keys of cloudkernel.views ---------------------------


def _source(
    source: int, symbol: str, reason: str, value: float, offset: float, weight: float
) -> dict[str, Any]:
    return {
        "source": source,
        "symbol": symbol,
        "reason": reason,
        "reach": 0o377 if symbol != "x" else 0o17,
        "age": 0.4,
        "value": value,
        "offset": offset,
        "sigma": 0.1,
        "weight": weight,
        "confidence": 0.9,
        "reputation": 1.0,
        "evaporation": 0.97,
        "link_quality": 0.99,
    }


#: get "temp/room": a scalar estimate (estimate_view with sources)
SCALAR_ESTIMATE: dict[str, Any] = {
    "topic": "temp/room",
    "kind": "scalar",
    "state": "ok",
    "reason": "",
    "value": 21.43,
    "sigma": 0.12,
    "interval": [21.19, 21.67],
    "confidence": 0.93,
    "sources_total": 4,
    "sources_used": 3,
    "sources_rejected": 1,
    "age": 0.4,
    "sources": [
        _source(11, "*", "best", 21.4, -0.03, 0.4),
        _source(12, "+", "used", 21.5, 0.07, 0.3),
        _source(13, "+", "used", 21.45, 0.02, 0.3),
        _source(14, "x", "falseticker", 35.0, 13.57, 0.0),
    ],
    "policy": {
        "min_sources": 3,
        "fault_model": "byzantine",
        "agree_sigmas": 3.0,
        "reject_sigmas": 3.5,
        "max_weight_share": 0.5,
        "flag_below": 0.5,
        "distrust_below": 0.1,
    },
}

#: get "pos/robot": a vector topic without consensus
VECTOR_ESTIMATE: dict[str, Any] = {
    "topic": "pos/robot",
    "kind": "vector",
    "state": "no-consensus",
    "reason": "no-majority",
    "value": None,
    "sigma": None,
    "interval": None,
    "confidence": 0.0,
    "sources_total": 2,
    "sources_used": 0,
    "sources_rejected": 0,
    "age": None,
    "sources": [
        _source(21, "?", "no-consensus", 1.5, 0.0, 0.0),
        _source(22, "?", "no-consensus", 2.5, 0.0, 0.0),
    ],
}

#: get "blob/x": a bytes topic (raw_view)
RAW_VIEW: dict[str, Any] = {
    "topic": "blob/x",
    "kind": "bytes",
    "state": "raw",
    "latest": [
        {"source": 11, "value": b"hello", "seq": 3},
        {"source": 12, "value": b"\x00\xff", "seq": 9},
    ],
}

GETS = {view["topic"]: view for view in (SCALAR_ESTIMATE, VECTOR_ESTIMATE, RAW_VIEW)}

#: topics (topic_view rows)
TOPIC_ROWS: list[dict[str, Any]] = [
    {
        "topic": "temp/room",
        "kind": "scalar",
        "sources": 4,
        "updates": 120,
        "last_update_age": 0.4,
        "state": "ok",
        "value": 21.43,
    },
    {
        "topic": "pos/robot",
        "kind": "vector",
        "sources": 2,
        "updates": 8,
        "last_update_age": 3.5,
        "state": "no-consensus",
        "value": None,
    },
    {
        "topic": "blob/x",
        "kind": "bytes",
        "sources": 2,
        "updates": 12,
        "last_update_age": 75.0,
        "state": "raw",
        "value": None,
    },
]

#: peers (peer_view rows)
PEER_ROWS: list[dict[str, Any]] = [
    {
        "node": 11,
        "epoch": 3,
        "incarnation": 17,
        "state": "alive",
        "phi": 0.42,
        "last_heard": 0.3,
        "since": 125.0,
        "heartbeats": 250,
        "reach": 0o377,
        "loss": 0.012,
        "reputation": 0.98,
    },
    {
        "node": 14,
        "epoch": 1,
        "incarnation": 2,
        "state": "dead",
        "phi": None,
        "last_heard": None,
        "since": 3900.0,
        "heartbeats": 9,
        "reach": 0,
        "loss": None,
        "reputation": 0.2,
    },
]

#: sourcestats (sourcestats_view rows), sorted by topic and source
SOURCESTATS_ROWS: list[dict[str, Any]] = [
    {
        "topic": "pos/robot",
        "kind": "vector",
        "source": 21,
        "samples": 1,
        "span": 0.0,
        "last": 3.0,
        "offset": 0.2,
        "stddev": None,
        "sigma": 0.5,
        "runs": 1,
        "used": 1.0,
        "reputation": 0.5,
    },
    {
        "topic": "temp/room",
        "kind": "scalar",
        "source": 11,
        "samples": 32,
        "span": 31.0,
        "last": 0.4,
        "offset": -0.012,
        "stddev": 0.097,
        "sigma": 0.1,
        "runs": 17,
        "used": 1.0,
        "reputation": 0.99,
    },
    {
        "topic": "temp/room",
        "kind": "scalar",
        "source": 14,
        "samples": 20,
        "span": 19.5,
        "last": 0.4,
        "offset": 13.6,
        "stddev": 0.35,
        "sigma": 0.1,
        "runs": 3,
        "used": 0.0,
        "reputation": 0.04,
    },
]

#: status (Daemon.status)
STATUS: dict[str, Any] = {
    "version": "0.1.0",
    "node_id": NODE_ID,
    "epoch": 5,
    "uptime": 3723.5,
    "interfaces": ["eth0", "wlan0"],
    "group": "239.255.67.75",
    "group6": "ff02::6b63",
    "port": 47475,
    "relay": False,
    "peers": {"alive": 1, "suspect": 0, "dead": 1},
    "topics": 3,
    "signals": {"published": 40, "delivered": 900, "recovered": 12, "relayed": 0},
    "heartbeats": 7400,
    "drops": {"bad-tag": 2},
    "unfused": {},
    "datagrams": {"received": 5000, "sent": 7500, "send_errors": 0, "injected_drops": 0},
    "realtime": {
        "active": False,
        "summary": "normal scheduling",
        "warnings": ["SCHED_FIFO not permitted (no CAP_SYS_NICE)"],
    },
    "loop_lag": {"p50": 0.0001, "p99": 0.0021, "max": 0.004, "samples": 3600},
    "control": {
        "socket": "/run/cloudkernel/control.sock",
        "watchers": 1,
        "requests": 77,
        "events_dropped": 0,
    },
    "metrics": "127.0.0.1:9475",
    "config": "/etc/cloudkernel/cloudkernel.toml",
}


def estimate_event(view: dict[str, Any]) -> dict[str, Any]:
    """A watch event for an estimate (estimate_view without sources, or raw_view)."""
    body = {key: value for key, value in view.items() if key != "sources"}
    return {"type": "estimate", "estimate": body}


def signal_event(topic: str, value: Any, seq: int) -> dict[str, Any]:
    """A raw watch event (signal_view)."""
    return {
        "type": "signal",
        "signal": {
            "topic": topic,
            "value": value,
            "kind": "scalar",
            "confidence": 0.9,
            "half_life": 10.0,
            "ttl": None,
            "qos": "normal",
            "source": 12,
            "seq": seq,
            "age": 0.002,
            "recovered": seq % 2 == 0,
        },
        "local": False,
    }


# -- the server -------------------------------------------------------------------


class FakeDaemon:
    """The control server on its own thread, answering with the canned results.

    :param path: the socket path.
    :param watch_events: events sent after the reply to each watch.
    :param end_stream: after them, end the stream with ``{"ended": "shutdown"}``.
    :param max_clients: as :class:`ControlServer` takes it.
    """

    def __init__(
        self,
        path: str,
        *,
        watch_events: int = 3,
        end_stream: bool = False,
        max_clients: int = 64,
    ) -> None:
        self.path = path
        self.watch_events = watch_events
        self.end_stream = end_stream
        #: every request the handler was given, in order
        self.requests: list[Request] = []
        self.loop = asyncio.new_event_loop()
        self.server = ControlServer(path, self._handle, max_clients=max_clients)
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(5)

    def stop(self) -> None:
        """Close the server (and every connection) and the loop; idempotent."""
        if self.loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()

    async def _shutdown(self) -> None:
        await self.server.close()
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # The transports close in callbacks of the next iterations.
        for _ in range(3):
            await asyncio.sleep(0)

    def _handle(self, request: Request, connection: ControlConnection) -> object:
        self.requests.append(request)
        if isinstance(request, PublishRequest):
            seq = sum(isinstance(r, PublishRequest) for r in self.requests)
            return {"topic": request.signal.topic, "source": NODE_ID, "seq": seq}
        if isinstance(request, GetRequest):
            view = GETS.get(request.topic)
            if view is None:
                raise ControlRefusal(
                    ErrorCode.NOT_FOUND, f"no signal on topic {request.topic!r} yet"
                )
            return copy.deepcopy(view)
        if isinstance(request, WatchRequest):
            self.loop.call_soon(self._stream, request, connection)
            return {"watching": request.pattern, "raw": request.raw}
        if isinstance(request, TopicsRequest):
            rows = [
                row
                for row in TOPIC_ROWS
                if request.pattern is None or fnmatch.fnmatchcase(row["topic"], request.pattern)
            ]
            return {"topics": copy.deepcopy(rows)}
        if isinstance(request, StatusRequest):
            return copy.deepcopy(STATUS)
        if isinstance(request, PeersRequest):
            return {"peers": copy.deepcopy(PEER_ROWS)}
        if isinstance(request, SourceStatsRequest):
            rows = [
                row
                for row in SOURCESTATS_ROWS
                if request.pattern is None or fnmatch.fnmatchcase(row["topic"], request.pattern)
            ]
            return {"sourcestats": copy.deepcopy(rows)}
        raise ControlRefusal(ErrorCode.INTERNAL, f"no handler for {request.op}")

    def _stream(self, request: WatchRequest, connection: ControlConnection) -> None:
        for n in range(self.watch_events):
            if request.raw:
                event = signal_event("temp/room", 21.0 + n, n + 1)
            else:
                view = dict(SCALAR_ESTIMATE, value=21.0 + n)
                event = estimate_event(view)
            connection.send_event(request.id, event)
        if self.end_stream and not connection.closed:
            connection._write(encode_reply(request.id, {"ended": "shutdown"}))


def short_socket_path(tmp_path: Path) -> str:
    """``tmp_path/c.sock``, or a path in a new short directory when that is too long
    for a socket address (108 bytes)."""
    path = str(tmp_path / "c.sock")
    if len(os.fsencode(path)) < 100:
        return path
    return os.path.join(tempfile.mkdtemp(prefix="ck"), "c.sock")


@contextmanager
def fake_daemon(path: str, **kw: Any) -> Iterator[FakeDaemon]:
    daemon = FakeDaemon(path, **kw)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


@contextmanager
def silent_socket(path: str) -> Iterator[None]:
    """A socket that takes connections into its backlog and never reads or answers."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(8)
        yield
    finally:
        sock.close()
        os.unlink(path)


def dead_socket(path: str) -> None:
    """Leave a socket file at ``path`` that nobody listens on."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.close()


@contextmanager
def garbage_socket(path: str, reply: bytes) -> Iterator[None]:
    """A socket that answers the first request of each connection with ``reply``,
    then closes the connection."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(8)
    sock.settimeout(5)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                peer, _ = sock.accept()
            except OSError:
                return
            with peer:
                peer.settimeout(5)
                try:
                    if peer.recv(65536):
                        peer.sendall(reply)
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        thread.join(5)
        os.unlink(path)
