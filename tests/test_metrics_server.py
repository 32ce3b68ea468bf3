"""The metrics endpoint (cloudkernel/aio/metrics_server.py): its request parser and its server.

The parser takes untrusted bytes: it is fuzzed, and each malformed head must
give our own error with the status to answer.  The server runs on this
test's loop, on loopback, with a port the kernel picks.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import threading
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudkernel.aio import metrics_server
from cloudkernel.aio.metrics_server import (
    MAX_HEAD,
    MAX_HEADERS,
    HttpRequestError,
    MetricsServer,
    MetricsServerError,
    RequestHead,
    parse_head,
)

# -- the request parser -------------------------------------------------------


def test_parse_head_takes_a_scrape_request() -> None:
    head = parse_head(
        b"GET /metrics?x=1 HTTP/1.1\r\nHost: 127.0.0.1:9475\r\n"
        b"Accept: application/openmetrics-text;version=1.0.0\r\n\r\n"
    )
    assert head == RequestHead(
        "GET",
        "/metrics",
        "HTTP/1.1",
        (("host", "127.0.0.1:9475"), ("accept", "application/openmetrics-text;version=1.0.0")),
    )
    assert parse_head(b"HEAD / HTTP/1.0\n\n").method == "HEAD"


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GET /metrics\r\n\r\n", 400),
        (b"GET  /metrics HTTP/1.1\r\n\r\n", 400),
        (b"GET metrics HTTP/1.1\r\n\r\n", 400),
        (b"G(T /metrics HTTP/1.1\r\n\r\n", 400),
        (b"GET /metrics HTTP/2.0\r\n\r\n", 505),
        (b"GET /metrics HTTP/1.1\r\nHost : x\r\n\r\n", 400),
        (b"GET /metrics HTTP/1.1\r\n folded\r\n\r\n", 400),
        (b"GET /metrics HTTP/1.1\r\nX: a\x01b\r\n\r\n", 400),
        (b"GET /metrics HTTP/1.1\r\n", 400),
        (b"GET /metrics HTTP/1.1\r\n" + b"X: y\r\n" * (MAX_HEADERS + 1) + b"\r\n", 431),
        (b"GET /" + b"a" * MAX_HEAD + b" HTTP/1.1\r\n\r\n", 431),
    ],
)
def test_parse_head_refuses_with_the_status_to_answer(data: bytes, status: int) -> None:
    with pytest.raises(HttpRequestError) as caught:
        parse_head(data)
    assert caught.value.status == status


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=2 * MAX_HEAD),
        st.lists(
            st.sampled_from(
                [
                    b"GET",
                    b" ",
                    b"/metrics",
                    b"HTTP/1.1",
                    b"\r\n",
                    b"\n",
                    b":",
                    b"Host",
                    b"\x00",
                    b"\xff",
                ]
            ),
            max_size=60,
        ).map(b"".join),
    )
)
def test_parse_head_fuzz_gives_a_head_or_our_error(data: bytes) -> None:
    try:
        head = parse_head(data)
    except HttpRequestError as exc:
        assert exc.status in (400, 431, 505)
        return
    assert head.path.startswith("/") and len(head.headers) <= MAX_HEADERS


SCRAPE = (
    b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9475\r\nUser-Agent: Prometheus/2.42.0\r\n"
    b"Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n"
    b"X-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n"
)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, len(SCRAPE)), st.integers(0, 3), st.binary(max_size=4)),
        max_size=6,
    )
)
def test_parse_head_fuzz_on_mutated_scrapes(edits: list[tuple[int, int, bytes]]) -> None:
    data = SCRAPE
    for at, cut, insert in edits:
        data = data[:at] + insert + data[at + cut :]
    try:
        head = parse_head(data)
    except HttpRequestError as exc:
        assert exc.status in (400, 431, 505)
        return
    assert head.method and head.path.startswith("/")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, len(SCRAPE)), max_size=8), st.binary(max_size=64))
def test_the_head_reads_the_same_however_it_is_split(cuts: list[int], after: bytes) -> None:
    """Whole or in pieces, and whatever follows it: the same head."""

    async def read(pieces: list[bytes]) -> RequestHead:
        reader = asyncio.StreamReader()
        for piece in pieces:
            reader.feed_data(piece)
        reader.feed_eof()
        return parse_head(await metrics_server._read_head(reader))

    data = SCRAPE + after
    bounds = [0, *sorted(set(cuts)), len(data)]
    pieces = [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]
    assert asyncio.run(read(pieces)) == parse_head(SCRAPE)


# -- the HTTP server on this loop ----------------------------------------------


async def _request(port: int, data: bytes, *, close_write: bool = False) -> bytes:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5.0)
    try:
        writer.write(data)
        await writer.drain()
        if close_write:
            writer.write_eof()
        return await asyncio.wait_for(reader.read(), 10.0)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


@pytest.mark.asyncio
async def test_server_answers_scrapes_and_refuses_bad_requests() -> None:
    renders = 0

    def render() -> Callable[[], bytes]:
        nonlocal renders
        renders += 1
        return lambda: b"up 1\n"

    server = MetricsServer("127.0.0.1", 0, render, read_timeout=0.5, max_connections=2)
    await server.start()
    try:
        assert server.address is not None
        port = server.address[1]
        ok = await _request(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _status(ok) == 200 and ok.endswith(b"\r\n\r\nup 1\n")
        assert b"Connection: close" in ok and b"version=0.0.4" in ok
        head = await _request(port, b"HEAD /metrics HTTP/1.1\r\n\r\n")
        assert _status(head) == 200 and head.endswith(b"\r\n\r\n") and b"Content-Length: 5" in head
        assert _status(await _request(port, b"GET / HTTP/1.0\r\n\r\n")) == 200
        assert _status(await _request(port, b"GET /nope HTTP/1.1\r\n\r\n")) == 404
        refused = await _request(port, b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
        assert _status(refused) == 405 and b"Allow: GET, HEAD" in refused
        assert (
            _status(await _request(port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n\n"))
            == 400
        )
        assert _status(await _request(port, b"GET /" + b"a" * (2 * MAX_HEAD))) == 431
        assert _status(await _request(port, b"GET /metrics HTTP/1.1\r\n", close_write=True)) == 400
        # A client that sends half a head and waits gets 408, in bounded time.
        assert _status(await _request(port, b"GET /metrics HTTP/1.1\r\n")) == 408
        # Two slow clients hold both places: a third is answered 503 at once.
        slow = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        await asyncio.sleep(0.05)
        assert _status(await _request(port, b"GET /metrics HTTP/1.1\r\n\r\n")) == 503
        for _, w in slow:
            w.close()
        await asyncio.sleep(0.6)
        assert renders == 2
        assert _status(await _request(port, b"GET /metrics HTTP/1.1\r\n\r\n")) == 200
        assert server.counters.refused == 1 and server.counters.errors >= 7
    finally:
        await server.close()
    assert server.address is None


@pytest.mark.asyncio
async def test_a_failing_render_is_a_500_and_the_server_serves_on() -> None:
    calls = 0

    def render() -> Callable[[], bytes]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug on the loop")
        if calls == 2:
            return lambda: 1 / 0  # type: ignore[return-value]  # a bug in the encoder
        return lambda: threading.current_thread().name.encode()

    server = MetricsServer("127.0.0.1", 0, render)
    await server.start()
    try:
        assert server.address is not None
        port = server.address[1]
        assert _status(await _request(port, b"GET /metrics HTTP/1.1\r\n\r\n")) == 500
        assert _status(await _request(port, b"GET /metrics HTTP/1.1\r\n\r\n")) == 500
        ok = await _request(port, b"GET /metrics HTTP/1.1\r\n\r\n")
        # The body was encoded on the server's worker thread, not the loop's.
        assert _status(ok) == 200 and ok.endswith(b"\r\n\r\ncloudkernel-metrics_0")
        assert server.counters.errors == 2
    finally:
        await server.close()


@pytest.mark.asyncio
async def test_an_address_in_use_is_one_clear_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = MetricsServer("127.0.0.1", port, lambda: lambda: b"")
        with pytest.raises(MetricsServerError) as caught:
            await server.start()
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message and "metrics.listen" in message
    assert "\n" not in message
