"""The metrics endpoint: a small HTTP/1.1 server on the daemon's own asyncio loop.

:class:`MetricsServer` answers ``GET /metrics`` with the Prometheus text
format, ``GET /`` with a pointer to ``/metrics``, 404 for any other path and
405 for any method but GET and HEAD.  A scrape has two steps: ``render()``
runs on the loop, between two callbacks of the daemon, so it reads the
daemon's state without locks and never concurrently with the data path; it
returns an encoder holding a snapshot, which makes the body on the server's
one worker thread.  Encoding is most of a scrape's work, and there it holds
up the loop only in the interpreter's switch intervals, not all at once.

Rules it keeps (the request comes from the network: untrusted bytes):

* The request head is at most :data:`MAX_HEAD` bytes and
  :data:`MAX_HEADERS` header lines (431 beyond), and must arrive within
  ``read_timeout`` seconds (408 after).  A body is never read.
* :func:`parse_head` is pure: it returns a :class:`RequestHead` or raises
  :class:`HttpRequestError` carrying the status to answer; nothing else.
* One request per connection: every response says ``Connection: close``.
  At most ``max_connections`` at once; one more is answered 503 and closed.
* Writing a response gives up after ``write_timeout`` seconds (a client that
  does not read cannot hold the daemon's memory).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ..errors import CloudkernelError

__all__ = [
    "MAX_HEAD",
    "MAX_HEADERS",
    "HttpRequestError",
    "MetricsServer",
    "MetricsServerError",
    "RequestHead",
    "parse_head",
]

log = logging.getLogger("cloudkernel.metrics")

#: bytes of a request head (request line and headers) at most
MAX_HEAD: Final = 8192
#: header lines at most
MAX_HEADERS: Final = 64
#: after a response, bytes and seconds at most read and dropped before closing
LINGER_BYTES: Final = 1 << 20
LINGER_SECONDS: Final = 2.0
#: content type of the Prometheus text format that prometheus_client renders
METRICS_CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

_REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}
# RFC 9110 section 5.6.2: token = 1*tchar
_TOKEN: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# origin-form target (RFC 9112 section 3.2.1): visible ASCII, starting with "/"
_TARGET: Final = re.compile(rb"/[\x21-\x7e]*")
_VERSION: Final = re.compile(rb"HTTP/([0-9])\.([0-9])")
_INDEX: Final = (
    b"<html><head><title>cloudkernel</title></head><body>"
    b'<p>cloudkernel exporter: the metrics are at <a href="/metrics">/metrics</a>.</p>'
    b"</body></html>\n"
)


class MetricsServerError(CloudkernelError):
    """The exporter cannot listen; the message says why and what to do."""


class HttpRequestError(ValueError):
    """A request that gets an error response; ``status`` is the HTTP status to send."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class RequestHead:
    """A parsed request line and its headers."""

    method: str
    #: the target's path, without a query
    path: str
    #: "HTTP/1.0" or "HTTP/1.1"
    version: str
    #: (lower-case name, value) in arrival order
    headers: tuple[tuple[str, str], ...]


def head_end(data: bytes) -> tuple[int, int] | None:
    """Where the head's first empty line is: (start of the newline that ends
    the last header line, index after the empty line); None if none yet."""
    found = [
        (at, at + width)
        for at, width in ((data.find(b"\n\n"), 2), (data.find(b"\n\r\n"), 3))
        if at >= 0
    ]
    return min(found) if found else None


def parse_head(data: bytes) -> RequestHead:
    """Parse a request head: everything up to and including its blank line.

    Lines may end in CRLF or a bare LF (RFC 9112 section 2.2).

    :raises HttpRequestError: with 400, 431 or 505 for a head we do not take.
    """
    if len(data) > MAX_HEAD:
        raise HttpRequestError(431, f"request head longer than {MAX_HEAD} bytes")
    found = head_end(data)
    if found is None:
        raise HttpRequestError(400, "incomplete request head")
    lines = [line.removesuffix(b"\r") for line in data[: found[0]].split(b"\n")]
    request_line, fields = lines[0], lines[1:]
    parts = request_line.split(b" ")
    if len(parts) != 3:
        raise HttpRequestError(400, "malformed request line")
    method, target, version = parts
    if not _TOKEN.fullmatch(method):
        raise HttpRequestError(400, "malformed method")
    if not _TARGET.fullmatch(target):
        raise HttpRequestError(400, "request target must be a path starting with /")
    matched = _VERSION.fullmatch(version)
    if matched is None:
        raise HttpRequestError(400, "malformed HTTP version")
    if matched.group(1) != b"1":
        raise HttpRequestError(505, "only HTTP/1.0 and HTTP/1.1 are served")
    if len(fields) > MAX_HEADERS:
        raise HttpRequestError(431, f"more than {MAX_HEADERS} header lines")
    headers = []
    for field in fields:
        name, colon, value = field.partition(b":")
        # RFC 9112 section 5.1: no whitespace before the colon; no obs-fold.
        if not colon or not _TOKEN.fullmatch(name):
            raise HttpRequestError(400, "malformed header line")
        text = value.strip(b" \t")
        if any((c < 0x20 and c != 0x09) or c == 0x7F for c in text):
            raise HttpRequestError(400, "control character in a header value")
        headers.append((name.decode("ascii").lower(), text.decode("latin-1")))
    path = target.partition(b"?")[0].decode("ascii")
    return RequestHead(method.decode("ascii"), path, version.decode("ascii"), tuple(headers))


def _response(
    status: int, body: bytes, content_type: str, *, head_only: bool = False, extra: str = ""
) -> bytes:
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"{extra}"
        "Connection: close\r\n\r\n"
    ).encode("ascii")
    return head if head_only else head + body


def _error(status: int, message: str, *, extra: str = "") -> bytes:
    return _response(status, (message + "\n").encode(), "text/plain; charset=utf-8", extra=extra)


@dataclass
class ServerCounters:
    """What the exporter has answered since it started."""

    #: requests answered 200
    scrapes: int = 0
    #: requests answered with an error status (4xx, 5xx)
    errors: int = 0
    #: connections closed with 503 because too many were open
    refused: int = 0


class MetricsServer:
    """The exporter's HTTP server (see the module docstring).

    :param host: address to bind ("127.0.0.1", "::1", "0.0.0.0", ...).
    :param port: TCP port; 0 for any free one (tests).
    :param render: runs on the loop and returns the encoder of the
        ``/metrics`` body, which runs on a worker thread and must read
        nothing but what ``render`` gave it.
    """

    def __init__(
        self,
        host: str,
        port: int,
        render: Callable[[], Callable[[], bytes]],
        *,
        max_connections: int = 8,
        read_timeout: float = 5.0,
        write_timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self._render = render
        self.max_connections = max_connections
        self.read_timeout = read_timeout
        self.write_timeout = write_timeout
        self.counters = ServerCounters()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._render_failed = False
        self._encoder: concurrent.futures.ThreadPoolExecutor | None = None

    @property
    def address(self) -> tuple[str, int] | None:
        """The bound (host, port), None before :meth:`start`."""
        if self._server is None or not self._server.sockets:
            return None
        name = self._server.sockets[0].getsockname()
        return str(name[0]), int(name[1])

    def shown(self) -> str:
        """The bound address as "host:port" ("[v6]:port"), "" when not serving."""
        address = self.address
        if address is None:
            return ""
        host, port = address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    async def start(self) -> None:
        """Listen.

        :raises MetricsServerError: one line naming the address and the cause.
        """
        shown = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        self._encoder = concurrent.futures.ThreadPoolExecutor(1, "cloudkernel-metrics")
        try:
            self._server = await asyncio.start_server(
                self._connection, self.host, self.port, reuse_address=True
            )
        except OSError as exc:
            self._encoder.shutdown(wait=False)
            self._encoder = None
            cause = exc.strerror or str(exc)
            raise MetricsServerError(
                f"cannot serve metrics on {shown}: {cause}; set metrics.listen to a free "
                f'"host:port", or to "" for no exporter'
            ) from None

    async def close(self) -> None:
        """Stop listening and end every open connection (safe to call twice)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        if self._encoder is not None:
            # An encoding under way finishes on its own; nobody waits for it.
            self._encoder.shutdown(wait=False, cancel_futures=True)
            self._encoder = None

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._tasks) >= self.max_connections:
            self.counters.refused += 1
            await self._send(reader, writer, _error(503, "too many connections"))
            return
        self._tasks.add(task)
        try:
            await self._send(reader, writer, await self._answer(reader))
        except asyncio.CancelledError:
            # close(): the server owns this task and ends it here.
            writer.transport.abort()
        finally:
            self._tasks.discard(task)

    async def _answer(self, reader: asyncio.StreamReader) -> bytes:
        try:
            data = await asyncio.wait_for(_read_head(reader), self.read_timeout)
            head = parse_head(data)
        except TimeoutError:
            self.counters.errors += 1
            return _error(408, "request head not received in time")
        except HttpRequestError as exc:
            self.counters.errors += 1
            return _error(exc.status, str(exc))
        except OSError:
            return b""
        if head.method not in ("GET", "HEAD"):
            self.counters.errors += 1
            return _error(405, f"method {head.method} not allowed", extra="Allow: GET, HEAD\r\n")
        head_only = head.method == "HEAD"
        if head.path == "/":
            self.counters.scrapes += 1
            return _response(200, _INDEX, "text/html; charset=utf-8", head_only=head_only)
        if head.path != "/metrics":
            self.counters.errors += 1
            return _error(404, f"no such page: {head.path}; the metrics are at /metrics")
        try:
            encode = self._render()
            body = await asyncio.get_running_loop().run_in_executor(self._encoder, encode)
        except Exception as exc:  # a bug in a collector: answer, log once, keep serving
            self.counters.errors += 1
            if not self._render_failed:
                self._render_failed = True
                log.error("metrics not rendered (further failures are counted): %r", exc)
            return _error(500, "metrics could not be rendered; see the daemon's log")
        self.counters.scrapes += 1
        return _response(200, body, METRICS_CONTENT_TYPE, head_only=head_only)

    async def _send(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, response: bytes
    ) -> None:
        try:
            if response:
                writer.write(response)
                await asyncio.wait_for(writer.drain(), self.write_timeout)
                # Lingering close: read what the client still sends (a body, a
                # head cut short), so that closing does not reset the
                # connection before the client has read the response.
                if writer.can_write_eof():
                    writer.write_eof()
                await asyncio.wait_for(_discard(reader, LINGER_BYTES), LINGER_SECONDS)
        except (OSError, TimeoutError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)


async def _discard(reader: asyncio.StreamReader, limit: int) -> None:
    """Read and drop up to ``limit`` bytes, until the client closes."""
    while limit > 0:
        chunk = await reader.read(min(limit, 65536))
        if not chunk:
            return
        limit -= len(chunk)


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    """Read until the blank line that ends the head; at most MAX_HEAD bytes."""
    data = b""
    while True:
        chunk = await reader.read(4096)
        if not chunk:
            # The client closed before finishing its head.
            raise HttpRequestError(400, "connection closed before the request head ended")
        data += chunk
        found = head_end(data)
        if found is not None:
            return data[: found[1]]
        if len(data) > MAX_HEAD:
            raise HttpRequestError(431, f"request head longer than {MAX_HEAD} bytes")
