"""The Python client of the local cloudkernel daemon: :class:`Client` and :class:`AsyncClient`.

Applications publish and read signals through the daemon of their own node,
over its Unix stream control socket (``docs/CONTROL.md``)::

    from cloudkernel.client import Client

    with Client() as ck:
        ck.publish("temp/room", 21.5, confidence=0.9, half_life=30)
        print(ck.get("temp/room")["value"])
        for event in ck.watch("temp/*", duration=10):
            print(event)

:class:`AsyncClient` has the same methods as coroutines, and ``watch`` as an
async iterator (``async for event in ck.watch("temp/*")``).

The rules it keeps:

* The socket is the one named by the caller, else ``$CLOUDKERNEL_SOCKET``,
  else the path the daemon's ``control.socket = "auto"`` stands for
  (:func:`default_socket_path`).
* One connection per client, opened on first use (or on entering ``with``);
  one request at a time on it (a lock), ids increasing from 1 and wrapping
  after 2^32-1.  A watch runs on a connection of its own, so that the client
  can make other requests while it streams; closing the client closes its
  watches.
* Every socket operation of a request (connect, send, the wait for the
  reply) is bounded by ``timeout`` seconds in all.  Waiting for a watch's
  next event is not (a quiet topic is no fault); ``duration`` bounds a watch.
* What can go wrong is one of: :class:`~cloudkernel.errors.DaemonNotRunning`
  (no socket, nobody listening, the connection closed),
  :class:`~cloudkernel.errors.DaemonTimeout`,
  :class:`~cloudkernel.errors.DaemonNotAuthorised` (the socket's file mode
  keeps this user out), :class:`~cloudkernel.errors.DaemonUnreachable` (any
  other reason the socket cannot be used), :class:`~cloudkernel.errors.RequestFailed`
  (the daemon refused the request), :class:`~cloudkernel.errors.ControlError`
  (a request the daemon would refuse, found before it is sent) and
  :class:`~cloudkernel.errors.ControlProtocolError` (the daemon's bytes break
  the protocol).  After a timeout, a protocol error or a dropped connection,
  the connection is closed and the next request opens a new one.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import grp
import math
import os
import socket
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, Self

import msgpack  # type: ignore[import-untyped]

from .config import resolve_socket_path
from .core.control import (
    MAX_BATCH,
    MAX_REQUEST,
    ControlOp,
    Reply,
    ReplyDecoder,
    StreamEvent,
    encode_request,
)
from .core.signals import MAX_U32
from .errors import (
    ControlError,
    ControlProtocolError,
    DaemonNotAuthorised,
    DaemonNotRunning,
    DaemonTimeout,
    DaemonUnreachable,
    RequestFailed,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "SOCKET_ENV",
    "AsyncClient",
    "AsyncWatch",
    "Client",
    "ControlError",
    "ControlProtocolError",
    "DaemonNotAuthorised",
    "DaemonNotRunning",
    "DaemonTimeout",
    "DaemonUnreachable",
    "RequestFailed",
    "Value",
    "Watch",
    "default_socket_path",
]

#: the environment variable naming the control socket
SOCKET_ENV: Final = "CLOUDKERNEL_SOCKET"
#: seconds a request may take, connect to reply, unless the client says otherwise
DEFAULT_TIMEOUT: Final = 5.0
#: bytes asked of the socket per read
_READ_SIZE = 65536

_Item = Reply | StreamEvent
#: what publish takes as a value (docs/CONTROL.md section 4)
Value = float | int | Sequence[float] | bytes | bytearray | memoryview


def default_socket_path(environ: Mapping[str, str] | None = None, euid: int | None = None) -> str:
    """The control socket a client uses when it is given none.

    ``$CLOUDKERNEL_SOCKET`` when set and not empty, else what ``control.socket =
    "auto"`` stands for (:func:`cloudkernel.config.resolve_socket_path`).

    :param environ: the environment; ``os.environ`` when None.
    :param euid: the effective user id; this process's when None.
    """
    env = os.environ if environ is None else environ
    path = env.get(SOCKET_ENV, "")
    if path:
        return path
    return resolve_socket_path("auto", os.geteuid() if euid is None else euid, env)


def _seconds(name: str, value: float) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a number of seconds > 0, got {value!r}")
    return float(value)


def _optional_seconds(name: str, value: float | None) -> float | None:
    return None if value is None else _seconds(name, value)


class _Ids:
    """Request ids of one client: 1, 2, ... 2^32-1, then 1 again (0 is never used,
    so that an error reply with id 0 is never taken for an answer to a request)."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        self._last = self._last % MAX_U32 + 1
        return self._last


# -- the requests and their results, for both clients ----------------------------


def _publish_args(
    topic: str,
    value: Value,
    confidence: float,
    half_life: float | None,
    ttl: float | None,
    qos: str | None,
) -> dict[str, Any]:
    if isinstance(value, (bytearray, memoryview)):
        value = bytes(value)
    elif isinstance(value, Sequence) and not isinstance(value, (bytes, str)):
        value = list(value)
    args: dict[str, Any] = {"topic": topic, "value": value, "confidence": confidence}
    # An absent qos takes the topic's class from the daemon's config.
    if qos is not None:
        args["qos"] = qos
    # An absent half_life / ttl takes the protocol's default; a nil one does not.
    if half_life is not None:
        args["half_life"] = half_life
    if ttl is not None:
        args["ttl"] = ttl
    return args


_SIGNAL_KEYS = frozenset({"topic", "value", "confidence", "half_life", "ttl", "qos"})
#: room left in a request for its envelope around the signals
_ENVELOPE_BYTES = 256


def _batches(signals: Iterable[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
    """The publish_many arguments for ``signals``: batches of at most
    MAX_BATCH signals that fit in a request, in order."""
    batch: list[dict[str, Any]] = []
    size = 0
    for index, item in enumerate(signals):
        if not isinstance(item, Mapping):
            raise ControlError(f"signal {index} is a {type(item).__name__}; give a mapping")
        unknown = sorted(map(str, set(item) - _SIGNAL_KEYS))
        if unknown or "topic" not in item or "value" not in item:
            raise ControlError(
                f"signal {index} has keys {sorted(map(str, item))}; it needs topic and value "
                f"and may have confidence, half_life, ttl and qos"
                + (f" (unknown: {', '.join(unknown)})" if unknown else "")
            )
        args = _publish_args(
            item["topic"],
            item["value"],
            item.get("confidence", 1.0),
            item.get("half_life"),
            item.get("ttl"),
            item.get("qos"),
        )
        try:
            n = len(msgpack.packb(args, use_bin_type=True))
        except (TypeError, ValueError, OverflowError) as exc:
            raise ControlError(f"signal {index} cannot be sent: {exc}") from None
        if batch and (len(batch) == MAX_BATCH or size + n > MAX_REQUEST - _ENVELOPE_BYTES):
            yield {"signals": batch}
            batch, size = [], 0
        batch.append(args)
        size += n
    if batch:
        yield {"signals": batch}


def _sum_batches(results: list[dict[str, Any]]) -> dict[str, Any]:
    if not results:
        return {"published": 0, "source": None, "first_seq": None, "last_seq": None}
    return {
        "published": sum(int(r.get("published", 0)) for r in results),
        "source": results[0].get("source"),
        "first_seq": results[0].get("first_seq"),
        "last_seq": results[-1].get("last_seq"),
    }


def _stage_args(path: str | os.PathLike[str]) -> dict[str, Any]:
    return {"path": os.path.abspath(os.fspath(path))}


def _switch_args(window: float | None) -> dict[str, Any]:
    return {} if window is None else {"window": window}


def _matching(item: _Item, id: int, op: str) -> Reply:
    """``item`` as the reply to request ``id``; ControlProtocolError if it is not one."""
    if isinstance(item, StreamEvent):
        raise ControlProtocolError(f"an event (id {item.id}) came in answer to {op} request {id}")
    # An error the daemon cannot tie to a request (busy, a framing error) has id 0.
    if item.id != id and not (item.id == 0 and not item.ok):
        raise ControlProtocolError(f"reply has id {item.id}; the {op} request had id {id}")
    return item


def _answer(reply: Reply) -> Any:
    """The result of ``reply``; RequestFailed for an error reply."""
    if not reply.ok:
        raise RequestFailed(str(reply.error_code), reply.error_message or "")
    return reply.result


def _dict(op: str, result: Any) -> dict[str, Any]:
    if not isinstance(result, dict):
        raise ControlProtocolError(f"the result of {op} is a {type(result).__name__}, not a map")
    return result


def _rows(op: str, result: Any) -> list[dict[str, Any]]:
    rows = _dict(op, result).get(op)
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise ControlProtocolError(f"the result of {op} has no array of maps {op!r}")
    return rows


def _not_running(path: str, why: str) -> DaemonNotRunning:
    return DaemonNotRunning(
        f"no cloudkernel daemon at {path} ({why}); start it with `cloudkernel run` or "
        "`systemctl start cloudkernel`, or name its socket with --socket PATH or "
        f"{SOCKET_ENV}",
        socket_path=path,
    )


def _timed_out(path: str, timeout: float) -> DaemonTimeout:
    return DaemonTimeout(
        f"the cloudkernel daemon at {path} did not answer within {timeout:g} s",
        socket_path=path,
    )


def _os_error(path: str, exc: OSError, timeout: float) -> DaemonUnreachable:
    """The client's error for ``exc``, raised by connect, send or receive on ``path``."""
    if isinstance(exc, TimeoutError):
        return _timed_out(path, timeout)
    if exc.errno == errno.ENOENT:
        return _not_running(path, "no such socket file")
    if exc.errno == errno.ECONNREFUSED:
        return _not_running(path, "nobody listens on the socket")
    if exc.errno == errno.ENOTSOCK:
        return _not_running(path, "the file is not a socket")
    if exc.errno in (errno.EPIPE, errno.ECONNRESET, errno.ECONNABORTED):
        return _not_running(path, "the daemon closed the connection")
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno in (errno.EACCES, errno.EPERM):
        return DaemonNotAuthorised(
            f"not authorised: cannot open the cloudkernel daemon's socket {path}: {reason}; "
            f"it is open to root, the daemon's user and {_socket_group(path)}: join it "
            "(usermod -aG GROUP USER, then log in again) or run as root",
            socket_path=path,
        )
    return DaemonUnreachable(
        f"cannot use the cloudkernel daemon's socket {path}: {reason}", socket_path=path
    )


def _socket_group(path: str) -> str:
    """``group NAME`` of the socket file at ``path``, for a message."""
    try:
        gid = os.stat(path).st_gid
    except OSError:  # the directory may be closed to us too
        return "the daemon's group (control.group)"
    try:
        return f"group {grp.getgrgid(gid).gr_name}"
    except KeyError:
        return f"group {gid}"


class _Inbox:
    """Replies and events decoded from one connection, waiting to be taken."""

    __slots__ = ("_decoder", "_error", "_items")

    def __init__(self) -> None:
        self._decoder = ReplyDecoder()
        self._items: collections.deque[_Item] = collections.deque()
        self._error: ControlProtocolError | None = None

    def feed(self, data: bytes) -> None:
        try:
            self._items.extend(self._decoder.feed(data))
        except ControlProtocolError as exc:
            # What came before the bad bytes is still delivered, then the error.
            self._items.extend(item for item in exc.decoded if isinstance(item, _Item))
            self._error = exc

    def take(self) -> _Item | None:
        if self._items:
            return self._items.popleft()
        if self._error is not None:
            raise self._error
        return None


# -- blocking -------------------------------------------------------------------


class _Connection:
    """One blocking connection to the control socket."""

    __slots__ = ("_inbox", "_sock", "path", "timeout")

    def __init__(self, path: str, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self._inbox = _Inbox()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(path)
        except OSError as exc:
            sock.close()
            raise _os_error(path, exc, timeout) from None
        except BaseException:
            sock.close()
            raise
        self._sock = sock

    def send(self, data: bytes, deadline: float) -> None:
        try:
            self._sock.settimeout(max(deadline - time.monotonic(), 1e-6))
            self._sock.sendall(data)
        except ConnectionError:
            # The daemon closed the connection, perhaps after saying why (busy):
            # receive() reads what it sent, then reports the close.
            pass
        except OSError as exc:
            raise _os_error(self.path, exc, self.timeout) from None

    def receive(self, deadline: float | None) -> _Item | None:
        """The next reply or event; None when ``deadline`` passes first (None: wait)."""
        while (item := self._inbox.take()) is None:
            if deadline is None:
                self._sock.settimeout(None)
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._sock.settimeout(remaining)
            try:
                data = self._sock.recv(_READ_SIZE)
            except TimeoutError:
                return None
            except OSError as exc:
                raise _os_error(self.path, exc, self.timeout) from None
            if not data:
                raise _not_running(self.path, "the daemon closed the connection")
            self._inbox.feed(data)
        return item

    def close(self) -> None:
        # shutdown first: close() alone leaves a recv blocked in another
        # thread waiting, and the daemon never sees the end of the stream.
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()


class Watch(Iterator[dict[str, Any]]):
    """An open watch stream: iterate it for the events' dicts.

    Made by :meth:`Client.watch`, which has already sent the request and read
    the daemon's ``{"watching": ...}`` reply.  The iteration ends when
    ``duration`` has passed, when the daemon ends the stream (:attr:`ended`
    then holds its reason), or when the watch is closed; leaving a ``with``
    block closes it.
    """

    def __init__(
        self, path: str, timeout: float, id: int, request: bytes, duration: float | None
    ) -> None:
        #: the reason the daemon gave for ending the stream, if it did
        self.ended: str | None = None
        #: the daemon's reply to the watch request, e.g. ``{"watching": "temp/*", "raw": False}``
        self.started: dict[str, Any] = {}
        self._id = id
        self._early: collections.deque[dict[str, Any]] = collections.deque()
        self._connection: _Connection | None = None
        start = time.monotonic()
        self._end = None if duration is None else start + duration
        connection = _Connection(path, timeout)
        try:
            deadline = start + timeout
            connection.send(request, deadline)
            while True:
                item = connection.receive(deadline)
                if item is None:
                    raise _timed_out(path, timeout)
                if isinstance(item, StreamEvent):
                    self._take_event(item)
                    continue
                self.started = _dict("watch", _answer(_matching(item, id, "watch")))
                break
        except BaseException:
            connection.close()
            raise
        self._connection = connection

    def _take_event(self, item: StreamEvent) -> None:
        if item.id != self._id:
            raise ControlProtocolError(f"event has id {item.id}; the watch has id {self._id}")
        self._early.append(item.event)

    @property
    def closed(self) -> bool:
        """True once the stream is over: closed, ended or run for its duration."""
        return self._connection is None and not self._early

    def __next__(self) -> dict[str, Any]:
        if self._early:
            return self._early.popleft()
        connection = self._connection
        if connection is None:
            raise StopIteration
        try:
            item = connection.receive(self._end)
            if item is None:
                raise StopIteration
            if isinstance(item, Reply):
                result = _answer(_matching(item, self._id, "watch"))
                self.ended = str(_dict("watch", result).get("ended", ""))
                raise StopIteration
            self._take_event(item)
        except StopIteration:
            self.close()
            raise
        except BaseException:
            closed_here = self._connection is not connection
            self.close()
            if closed_here:  # closed from another thread while waiting: the end
                raise StopIteration from None
            raise
        return self._early.popleft()

    def close(self) -> None:
        """Stop the stream and close its connection; idempotent."""
        self._early.clear()
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


class Client:
    """A blocking client of the local daemon.

    Safe to share between threads (one request at a time).  Use it as a
    context manager, or call :meth:`close`.

    :param socket_path: the control socket; None for :func:`default_socket_path`.
    :param timeout: seconds each request may take in all (connect, send, the
        reply), > 0.
    :raises ValueError: for a bad ``timeout``.
    """

    def __init__(self, socket_path: str | None = None, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.socket_path = default_socket_path() if socket_path is None else socket_path
        self.timeout = _seconds("timeout", timeout)
        self._ids = _Ids()
        self._lock = threading.Lock()
        self._connection: _Connection | None = None
        self._watches: weakref.WeakSet[Watch] = weakref.WeakSet()

    def connect(self) -> None:
        """Open the connection now rather than on the first request.

        :raises DaemonNotRunning: no daemon serves the socket.
        :raises DaemonTimeout: the connect took longer than ``timeout``.
        :raises DaemonUnreachable: for any other reason the socket cannot be used.
        """
        with self._lock:
            if self._connection is None:
                self._connection = _Connection(self.socket_path, self.timeout)

    def close(self) -> None:
        """Close the connection and every watch of this client; idempotent."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
        for watch in list(self._watches):
            watch.close()

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, op: ControlOp, args: dict[str, Any]) -> Any:
        with self._lock:
            id = self._ids.next()
            request = encode_request(op, args, id)  # ControlError before anything is sent
            deadline = time.monotonic() + self.timeout
            try:
                if self._connection is None:
                    self._connection = _Connection(self.socket_path, self.timeout)
                connection = self._connection
                connection.send(request, deadline)
                item = connection.receive(deadline)
                if item is None:
                    raise _timed_out(self.socket_path, self.timeout)
                reply = _matching(item, id, op)
                if reply.id == 0:
                    # busy or a framing error: the daemon closes the connection after it.
                    self._drop_connection()
            except BaseException:
                # Half an exchange leaves the stream out of step: start afresh.
                self._drop_connection()
                raise
        return _answer(reply)

    def _drop_connection(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def publish(
        self,
        topic: str,
        value: Value,
        *,
        confidence: float = 1.0,
        half_life: float | None = None,
        ttl: float | None = None,
        qos: str | None = None,
    ) -> dict[str, Any]:
        """Deposit a signal; the daemon stamps it with this node's id and a sequence number.

        :param topic: 1..128 bytes of UTF-8, no control characters, not starting with ``$``.
        :param value: a finite float; an int category 0..2^32-1; a sequence of
            1..16 finite numbers; or 1..64 bytes.
        :param confidence: 0 < confidence <= 1.
        :param half_life: seconds, > 0, at most 86 400.  When neither it nor
            ``ttl`` is given, the daemon takes a half-life of 10 s.
        :param ttl: seconds, as ``half_life``.
        :param qos: ``"critical"``, ``"normal"`` or ``"bulk"``; None: the
            topic's class in the daemon's config (``[consensus] qos``,
            ``[[topic]] qos``; ``normal`` unless configured).
        :returns: ``{"topic": str, "source": int, "seq": int}``.
        :raises ControlError: when an argument breaks a limit (nothing is sent).
        """
        args = _publish_args(topic, value, confidence, half_life, ttl, qos)
        return _dict("publish", self._call(ControlOp.PUBLISH, args))

    def publish_many(self, signals: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        """Deposit many signals, in order, in as few requests as fit (up to
        1,024 signals and 64 KiB each): far cheaper per signal than
        :meth:`publish` one by one.

        :param signals: mappings with the arguments of :meth:`publish`:
            ``topic`` and ``value``, and optionally ``confidence``,
            ``half_life``, ``ttl``, ``qos``.
        :returns: ``{"published": int, "source": int, "first_seq": int,
            "last_seq": int}`` (``published`` 0 and the rest None for none).
        :raises ControlError: when a signal breaks a limit; the daemon checks
            each request whole, so a request is published all or not at all,
            but the requests before the failing one stay published.
        """
        return _sum_batches(
            [
                _dict("publish-many", self._call(ControlOp.PUBLISH_MANY, b))
                for b in _batches(signals)
            ]
        )

    def get(self, topic: str) -> dict[str, Any]:
        """The current estimate of ``topic`` with its per-source breakdown
        (for a bytes topic: the latest value of each source).

        :raises RequestFailed: ``not-found`` when the daemon has no signal on the topic.
        """
        return _dict("get", self._call(ControlOp.GET, {"topic": topic}))

    def topics(self, pattern: str | None = None) -> list[dict[str, Any]]:
        """The topics the daemon knows, those matching the glob ``pattern`` when given."""
        args = {} if pattern is None else {"pattern": pattern}
        return _rows("topics", self._call(ControlOp.TOPICS, args))

    def status(self) -> dict[str, Any]:
        """The daemon's status: version, node id, counters, sockets, real-time settings."""
        return _dict("status", self._call(ControlOp.STATUS, {}))

    def peers(self) -> list[dict[str, Any]]:
        """The peers the daemon hears, with their liveness, loss and reputation."""
        return _rows("peers", self._call(ControlOp.PEERS, {}))

    def reload(self) -> dict[str, Any]:
        """Make the daemon read its config file again and apply the live settings.

        :returns: ``{"config", "changed", "restart_required", "topics_rebuilt"}``
        :raises RequestFailed: (``invalid-config``) when the file is bad; the
            running config stays
        """
        return _dict("reload", self._call(ControlOp.RELOAD, {}))

    def key_stage(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """Have the daemon load the key file ``path`` and hold its key as *next*
        (accepted on receive, not yet sent with).

        ``path`` is made absolute here; the daemon reads the file itself, with
        the checks of start-up (regular file, mode 0600, 32 bytes).

        :returns: ``{"staged": key_id, ...}`` and the fields of :meth:`key_status`.
        :raises RequestFailed: ``bad-argument`` with the key file's problem;
            ``not-authorised`` for a client that may not change keys.
        """
        return _dict("key-stage", self._call(ControlOp.KEY_STAGE, _stage_args(path)))

    def key_switch(self, window: float | None = None) -> dict[str, Any]:
        """Send with the staged key from now on; the old key stays accepted for
        ``window`` seconds (None: the daemon's default, one hour).

        :raises RequestFailed: ``not-found`` when no key is staged.
        """
        return _dict("key-switch", self._call(ControlOp.KEY_SWITCH, _switch_args(window)))

    def key_retire(self) -> dict[str, Any]:
        """Stop accepting the previous key now.

        :returns: ``{"retired": key_id, ...}`` and the fields of :meth:`key_status`.
        :raises RequestFailed: ``not-found`` when no previous key is held.
        """
        return _dict("key-retire", self._call(ControlOp.KEY_RETIRE, {}))

    def key_status(self) -> dict[str, Any]:
        """The keys held: ``{"keys": [{"role", "key_id"}, ...], "current": id,
        "next": id | None, "previous": id | None, "window_left": seconds | None}``."""
        return _dict("key-status", self._call(ControlOp.KEY_STATUS, {}))

    def sourcestats(self, pattern: str | None = None) -> list[dict[str, Any]]:
        """Per-source statistics across readings (``docs/VIEWS.md``), one row per
        topic and source, of the topics matching the glob ``pattern`` when given."""
        args = {} if pattern is None else {"pattern": pattern}
        return _rows("sourcestats", self._call(ControlOp.SOURCESTATS, args))

    def watch(self, pattern: str, *, raw: bool = False, duration: float | None = None) -> Watch:
        """Stream the estimates (or, with ``raw``, every raw signal) of the topics
        matching the glob ``pattern``.

        The stream runs on a connection of its own.  The daemon's first reply
        (``{"watching": ...}``) is read here and kept in :attr:`Watch.started`;
        the iterator yields the events' dicts (``{"type": "estimate",
        "estimate": {...}}`` or ``{"type": "signal", "signal": {...}, "local":
        bool}``).  A non-raw watch starts with the current value of each
        matching topic.

        :param duration: seconds after which the iteration ends; None: it runs
            until the caller stops it (``break``, :meth:`Watch.close`) or the
            daemon ends the stream.
        :raises ControlError: for a bad pattern (nothing is sent).
        """
        checked = _optional_seconds("duration", duration)
        id = self._ids.next()
        request = encode_request(ControlOp.WATCH, {"pattern": pattern, "raw": raw}, id)
        stream = Watch(self.socket_path, self.timeout, id, request, checked)
        self._watches.add(stream)
        return stream


# -- asyncio --------------------------------------------------------------------


class _AsyncConnection:
    """One asyncio connection to the control socket."""

    __slots__ = ("_inbox", "_reader", "_writer", "path", "timeout")

    def __init__(
        self, path: str, timeout: float, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.path = path
        self.timeout = timeout
        self._reader = reader
        self._writer = writer
        self._inbox = _Inbox()

    @classmethod
    async def open(cls, path: str, timeout: float) -> _AsyncConnection:
        """Connect; the caller bounds the time."""
        try:
            reader, writer = await asyncio.open_unix_connection(path)
        except OSError as exc:
            raise _os_error(path, exc, timeout) from None
        return cls(path, timeout, reader, writer)

    async def send(self, data: bytes) -> None:
        try:
            self._writer.write(data)
            await self._writer.drain()
        except ConnectionError:
            pass  # as in _Connection.send: receive() reads what came before the close
        except OSError as exc:
            raise _os_error(self.path, exc, self.timeout) from None

    async def receive(self) -> _Item:
        """The next reply or event; the caller bounds the time."""
        while (item := self._inbox.take()) is None:
            try:
                data = await self._reader.read(_READ_SIZE)
            except OSError as exc:
                raise _os_error(self.path, exc, self.timeout) from None
            if not data:
                raise _not_running(self.path, "the daemon closed the connection")
            self._inbox.feed(data)
        return item

    def close(self) -> None:
        self._writer.close()

    async def wait_closed(self) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.timeout):
                await self._writer.wait_closed()


class AsyncWatch(AsyncIterator[dict[str, Any]]):
    """An open watch stream of :class:`AsyncClient`: ``async for`` it for the events' dicts.

    The request is sent on the first ``__anext__`` (or on entering ``async
    with``, which also closes it on the way out).  It ends as :class:`Watch`
    does; :attr:`started` holds the daemon's ``{"watching": ...}`` reply once
    it has started.
    """

    def __init__(
        self, path: str, timeout: float, id: int, request: bytes, duration: float | None
    ) -> None:
        #: the reason the daemon gave for ending the stream, if it did
        self.ended: str | None = None
        #: the daemon's reply to the watch request, once started
        self.started: dict[str, Any] | None = None
        self._path = path
        self._timeout = timeout
        self._id = id
        self._request = request
        self._duration = duration
        self._end: float | None = None
        self._early: collections.deque[dict[str, Any]] = collections.deque()
        self._connection: _AsyncConnection | None = None
        self._done = False

    @property
    def closed(self) -> bool:
        """True once the stream is over: closed, ended or run for its duration."""
        return self._done and not self._early

    async def start(self) -> None:
        """Connect, send the watch request and read the reply (bounded by the timeout)."""
        if self._done or self.started is not None:
            return
        loop = asyncio.get_running_loop()
        if self._duration is not None:
            self._end = loop.time() + self._duration
        connection: _AsyncConnection | None = None
        try:
            async with asyncio.timeout(self._timeout):
                connection = await _AsyncConnection.open(self._path, self._timeout)
                await connection.send(self._request)
                while True:
                    item = await connection.receive()
                    if isinstance(item, StreamEvent):
                        self._take_event(item)
                        continue
                    self.started = _dict("watch", _answer(_matching(item, self._id, "watch")))
                    break
        except TimeoutError:
            self._close(connection)
            raise _timed_out(self._path, self._timeout) from None
        except BaseException:
            self._close(connection)
            raise
        self._connection = connection

    def _close(self, connection: _AsyncConnection | None) -> None:
        self._done = True
        if connection is not None:
            connection.close()

    def _take_event(self, item: StreamEvent) -> None:
        if item.id != self._id:
            raise ControlProtocolError(f"event has id {item.id}; the watch has id {self._id}")
        self._early.append(item.event)

    async def __anext__(self) -> dict[str, Any]:
        if self.started is None and not self._done:
            await self.start()
        if self._early:
            return self._early.popleft()
        connection = self._connection
        if connection is None:
            raise StopAsyncIteration
        try:
            try:
                async with asyncio.timeout_at(self._end):
                    item = await connection.receive()
            except TimeoutError:
                raise StopAsyncIteration from None
            if isinstance(item, Reply):
                result = _answer(_matching(item, self._id, "watch"))
                self.ended = str(_dict("watch", result).get("ended", ""))
                raise StopAsyncIteration
            self._take_event(item)
        except BaseException:
            await self.aclose()
            raise
        return self._early.popleft()

    async def aclose(self) -> None:
        """Stop the stream and close its connection; idempotent."""
        self._early.clear()
        self._done = True
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
            await connection.wait_closed()

    def close_nowait(self) -> None:
        """Close the connection without waiting for it to be closed."""
        self._early.clear()
        self._done = True
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class AsyncClient:
    """An asyncio client of the local daemon: the methods of :class:`Client` as coroutines.

    Tasks may share it (one request at a time).  Use it with ``async with``,
    or await :meth:`close`.

    :param socket_path: the control socket; None for :func:`default_socket_path`.
    :param timeout: seconds each request may take in all, > 0.
    :raises ValueError: for a bad ``timeout``.
    """

    def __init__(self, socket_path: str | None = None, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.socket_path = default_socket_path() if socket_path is None else socket_path
        self.timeout = _seconds("timeout", timeout)
        self._ids = _Ids()
        self._lock = asyncio.Lock()
        self._connection: _AsyncConnection | None = None
        self._watches: weakref.WeakSet[AsyncWatch] = weakref.WeakSet()

    async def connect(self) -> None:
        """Open the connection now rather than on the first request.

        Raises as :meth:`Client.connect`.
        """
        async with self._lock:
            if self._connection is None:
                try:
                    async with asyncio.timeout(self.timeout):
                        self._connection = await _AsyncConnection.open(
                            self.socket_path, self.timeout
                        )
                except TimeoutError:
                    raise _timed_out(self.socket_path, self.timeout) from None

    async def close(self) -> None:
        """Close the connection and every watch of this client; idempotent."""
        for watch in list(self._watches):
            await watch.aclose()
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
            await connection.wait_closed()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _drop_connection(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def _call(self, op: ControlOp, args: dict[str, Any]) -> Any:
        async with self._lock:
            id = self._ids.next()
            request = encode_request(op, args, id)  # ControlError before anything is sent
            try:
                async with asyncio.timeout(self.timeout):
                    if self._connection is None:
                        self._connection = await _AsyncConnection.open(
                            self.socket_path, self.timeout
                        )
                    connection = self._connection
                    await connection.send(request)
                    item = await connection.receive()
                reply = _matching(item, id, op)
                if reply.id == 0:
                    # busy or a framing error: the daemon closes the connection after it.
                    self._drop_connection()
            except TimeoutError:
                self._drop_connection()
                raise _timed_out(self.socket_path, self.timeout) from None
            except BaseException:
                # Half an exchange (or a cancelled one) leaves the stream out of step.
                self._drop_connection()
                raise
        return _answer(reply)

    async def publish(
        self,
        topic: str,
        value: Value,
        *,
        confidence: float = 1.0,
        half_life: float | None = None,
        ttl: float | None = None,
        qos: str | None = None,
    ) -> dict[str, Any]:
        """As :meth:`Client.publish`."""
        args = _publish_args(topic, value, confidence, half_life, ttl, qos)
        return _dict("publish", await self._call(ControlOp.PUBLISH, args))

    async def publish_many(self, signals: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        """As :meth:`Client.publish_many`."""
        results = []
        for batch in _batches(signals):
            results.append(_dict("publish-many", await self._call(ControlOp.PUBLISH_MANY, batch)))
        return _sum_batches(results)

    async def get(self, topic: str) -> dict[str, Any]:
        """As :meth:`Client.get`."""
        return _dict("get", await self._call(ControlOp.GET, {"topic": topic}))

    async def topics(self, pattern: str | None = None) -> list[dict[str, Any]]:
        """As :meth:`Client.topics`."""
        args = {} if pattern is None else {"pattern": pattern}
        return _rows("topics", await self._call(ControlOp.TOPICS, args))

    async def sourcestats(self, pattern: str | None = None) -> list[dict[str, Any]]:
        """As :meth:`Client.sourcestats`."""
        args = {} if pattern is None else {"pattern": pattern}
        return _rows("sourcestats", await self._call(ControlOp.SOURCESTATS, args))

    async def status(self) -> dict[str, Any]:
        """As :meth:`Client.status`."""
        return _dict("status", await self._call(ControlOp.STATUS, {}))

    async def peers(self) -> list[dict[str, Any]]:
        """As :meth:`Client.peers`."""
        return _rows("peers", await self._call(ControlOp.PEERS, {}))

    async def reload(self) -> dict[str, Any]:
        """As :meth:`Client.reload`."""
        return _dict("reload", await self._call(ControlOp.RELOAD, {}))

    async def key_stage(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """As :meth:`Client.key_stage`."""
        return _dict("key-stage", await self._call(ControlOp.KEY_STAGE, _stage_args(path)))

    async def key_switch(self, window: float | None = None) -> dict[str, Any]:
        """As :meth:`Client.key_switch`."""
        return _dict("key-switch", await self._call(ControlOp.KEY_SWITCH, _switch_args(window)))

    async def key_retire(self) -> dict[str, Any]:
        """As :meth:`Client.key_retire`."""
        return _dict("key-retire", await self._call(ControlOp.KEY_RETIRE, {}))

    async def key_status(self) -> dict[str, Any]:
        """As :meth:`Client.key_status`."""
        return _dict("key-status", await self._call(ControlOp.KEY_STATUS, {}))

    def watch(
        self, pattern: str, *, raw: bool = False, duration: float | None = None
    ) -> AsyncWatch:
        """As :meth:`Client.watch`, as an async iterator (``async for event in ck.watch(p)``).

        Not a coroutine: the request is sent on the first iteration, or on
        entering ``async with ck.watch(p) as stream``.

        :raises ControlError: for a bad pattern, at once (nothing is sent).
        """
        checked = _optional_seconds("duration", duration)
        id = self._ids.next()
        request = encode_request(ControlOp.WATCH, {"pattern": pattern, "raw": raw}, id)
        stream = AsyncWatch(self.socket_path, self.timeout, id, request, checked)
        self._watches.add(stream)
        return stream
