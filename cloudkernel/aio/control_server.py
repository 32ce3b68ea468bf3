"""The control socket: a Unix stream server speaking docs/CONTROL.md.

Each connection has its own :class:`~cloudkernel.core.control.RequestDecoder`;
every request it yields goes to the daemon's handler, whose result (or
:class:`ControlRefusal`) is sent back as the reply.  A malformed request is
answered with its error and the connection reads on; a framing error is
answered and the connection closed.  Nothing a client sends can stop the
daemon: an exception from the handler is answered as ``internal`` and logged.

Bounds: at most ``max_clients`` connections (more are answered ``busy`` and
closed); a client that does not read its stream falls behind by at most
``max_backlog`` bytes, after which its stream events are dropped and
counted (the reply to a request is always sent).

Access: with an :class:`~cloudkernel.core.access.AccessPolicy`, the socket is
chowned to the control group, each connection's peer credentials are read
once (:func:`~.peercred.peer_credentials`) and every request is checked with
:func:`~cloudkernel.core.access.authorise` before the handler sees it; a
refused one is answered ``not-authorised`` and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from ..core.access import AccessPolicy, Credentials, authorise
from ..core.control import (
    ControlFailure,
    ErrorCode,
    Request,
    RequestDecoder,
    encode_error,
    encode_event,
    encode_reply,
)
from ..errors import CloudkernelError, ControlError
from .peercred import peer_credentials, user_name

__all__ = ["ControlConnection", "ControlRefusal", "ControlServer", "ControlServerError"]

log = logging.getLogger("cloudkernel.control")

#: requests of one connection answered in a row before the loop's other work runs
_TURN = 16


class ControlServerError(CloudkernelError):
    """The control socket could not be opened; the message says why."""


class ControlRefusal(Exception):
    """Raised by a handler to answer a request with an error."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class _Counters:
    connections: int = 0
    refused_busy: int = 0
    requests: int = 0
    errors: int = 0
    events_dropped: int = 0
    not_authorised: int = 0
    #: error replies by code (every code, 0 until one is sent)
    errors_by_code: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys((code.value for code in ErrorCode), 0)
    )

    def error(self, code: ErrorCode) -> None:
        self.errors += 1
        self.errors_by_code[code.value] += 1


class ControlConnection:
    """One client, as the handler sees it."""

    def __init__(
        self,
        server: ControlServer,
        writer: asyncio.StreamWriter,
        credentials: Credentials | None = None,
    ) -> None:
        self._server = server
        self._writer = writer
        self.closed = False
        #: the client's credentials (None when the server checks no access)
        self.credentials = credentials
        #: how refusals name the client; set at the first one (one user look-up)
        self._who: str | None = None
        #: called once when the connection closes (watchers unregister here)
        self.on_close: list[Callable[[], None]] = []

    def _write(self, data: bytes) -> None:
        if not self.closed:
            self._writer.write(data)

    def send_event(self, id: int, event: dict[str, object]) -> bool:
        """Send one stream event; False (and counted) when the client is too far behind."""
        if self.closed:
            return False
        transport = self._writer.transport
        if transport.get_write_buffer_size() > self._server.max_backlog:
            self._server.counters.events_dropped += 1
            return False
        try:
            self._write(encode_event(id, event))
        except ControlError as exc:
            log.warning("stream event not sent: %s", exc)
            return False
        return True

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for callback in self.on_close:
            try:
                callback()
            except Exception:  # a bug in a callback must not leak the connection
                log.exception("error closing a control connection")
        self.on_close.clear()
        self._writer.close()


Handler = Callable[[Request, ControlConnection], object]


class ControlServer:
    """The daemon's control socket (see the module docstring).

    :param path: the socket's path; its directory is created if missing.
    :param handler: turns one request into its result (plain data), or raises
        :class:`ControlRefusal`.
    """

    def __init__(
        self,
        path: str,
        handler: Handler,
        *,
        mode: int = 0o660,
        max_clients: int = 64,
        max_backlog: int = 1 << 20,
        access: AccessPolicy | None = None,
    ) -> None:
        self.path = path
        self.mode = mode
        self.access = access
        self.max_clients = max_clients
        self.max_backlog = max_backlog
        self.counters = _Counters()
        self._handler = handler
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[ControlConnection] = set()

    async def start(self) -> None:
        """Create the socket and start serving.

        :raises ControlServerError: when the path is taken by a running daemon,
            or cannot be created.
        """
        directory = os.path.dirname(self.path) or "."
        try:
            os.makedirs(directory, mode=0o755, exist_ok=True)
        except OSError as exc:
            raise ControlServerError(
                f"cannot create the control socket's directory {directory}: {exc.strerror}"
            ) from None
        self._remove_stale()
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=self.path)
            os.chmod(self.path, self.mode)
        except OSError as exc:
            raise ControlServerError(
                f"cannot open the control socket {self.path}: {exc.strerror}"
            ) from None
        if self.access is not None:
            try:
                if os.stat(self.path).st_gid != self.access.group_gid:
                    os.chown(self.path, -1, self.access.group_gid)
            except OSError as exc:
                log.warning(
                    "cannot give the control socket %s to group %s: %s; only the daemon's "
                    "user can reach it",
                    self.path,
                    self.access.group_name,
                    exc.strerror,
                )

    def _remove_stale(self) -> None:
        """Remove a socket file left by a daemon that is gone; refuse one that answers."""
        if not os.path.exists(self.path):
            return
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(self.path)
        except OSError as exc:
            if exc.errno not in (errno.ECONNREFUSED, errno.ENOTSOCK, errno.ENOENT):
                raise ControlServerError(
                    f"cannot check the control socket {self.path}: {exc.strerror}"
                ) from None
        else:
            raise ControlServerError(
                f"another daemon is serving {self.path}; stop it first, or give this one "
                "another control.socket"
            )
        finally:
            probe.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    async def close(self) -> None:
        """Stop accepting, close every connection and remove the socket file."""
        if self._server is not None:
            self._server.close()
        # Connections first: on newer Pythons wait_closed waits for them.
        for connection in list(self._connections):
            connection._close()
        self._connections.clear()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(OSError):
            os.unlink(self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        credentials = None
        if self.access is not None:
            try:
                credentials = peer_credentials(writer.get_extra_info("socket"))
            except (OSError, AttributeError) as exc:
                # Nobody is authorised without credentials: uid -1 matches no one.
                log.warning("cannot read a control client's credentials: %s", exc)
                credentials = Credentials(0, -1, -1, frozenset())
        connection = ControlConnection(self, writer, credentials)
        if len(self._connections) >= self.max_clients:
            self.counters.refused_busy += 1
            self.counters.errors_by_code[ErrorCode.BUSY.value] += 1
            writer.write(
                encode_error(0, ErrorCode.BUSY, f"too many clients (at most {self.max_clients})")
            )
            with contextlib.suppress(OSError):
                await writer.drain()
            writer.close()
            return
        self.counters.connections += 1
        self._connections.add(connection)
        decoder = RequestDecoder()
        answered = 0
        try:
            while not connection.closed:
                try:
                    data = await reader.read(65536)
                except (ConnectionError, OSError):
                    break
                if not data:
                    break
                for item in decoder.feed(data):
                    if isinstance(item, ControlFailure):
                        self.counters.error(item.code)
                        connection._write(encode_error(item.id, item.code, item.message))
                        if item.fatal:
                            with contextlib.suppress(OSError):
                                await writer.drain()
                            connection._close()
                            break
                    else:
                        self._answer(item, connection)
                        answered += 1
                        if answered % _TURN == 0:
                            await asyncio.sleep(0)  # the loop's other work gets its turn
                    # One reply at a time reaches the client before the next
                    # request is answered: a client that sends many requests
                    # and reads nothing holds the daemon's buffer to about one
                    # reply, and other clients get their turn in between.
                    try:
                        await writer.drain()
                    except (ConnectionError, OSError):
                        connection._close()
                        break
        finally:
            self._connections.discard(connection)
            connection._close()

    def _refusal(self, request: Request, connection: ControlConnection) -> str | None:
        """Why this connection may not send ``request``, or None (see the module docstring)."""
        who = connection.credentials
        if self.access is None or who is None:
            return None
        why = authorise(request.op, who.uid, who.groups, self.access)
        if why is None:
            return None
        self.counters.not_authorised += 1
        if connection._who is None:  # logged once per connection: a loop cannot flood the log
            connection._who = who.describe(user_name(who.uid))
            log.warning("control request refused: %s %s", connection._who, why)
        return f"{connection._who} {why}"

    def _answer(self, request: Request, connection: ControlConnection) -> None:
        self.counters.requests += 1
        refused = self._refusal(request, connection)
        if refused is not None:
            self.counters.error(ErrorCode.NOT_AUTHORISED)
            connection._write(encode_error(request.id, ErrorCode.NOT_AUTHORISED, refused))
            return
        try:
            result = self._handler(request, connection)
            reply = encode_reply(request.id, result)
        except ControlRefusal as refusal:
            self.counters.error(refusal.code)
            reply = encode_error(request.id, refusal.code, refusal.message)
        except Exception as exc:  # a bug: answer, log, keep serving
            self.counters.error(ErrorCode.INTERNAL)
            log.exception("control request %s failed", request.op)
            reply = encode_error(request.id, ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}")
        connection._write(reply)
