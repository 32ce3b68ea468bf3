"""The ``cloudkernel`` command line.

``demo`` starts a real swarm of daemons on this host, in a private network
namespace, under injected loss and with lying nodes, and shows their
consensus (:mod:`cloudkernel.swarm_demo`).  ``link-demo`` shows the forward
error correction every signal travels under (blocks of packets crossing a
simulated lossy link, bytes corrupted on a noisy one) and the signal pipeline
on a simulated lossy link.  ``keygen`` writes a swarm key file.

``key stage|switch|retire|status`` rotate the swarm key of a running daemon.
``run`` starts the daemon in the foreground (``cloudkernel.daemon.run``),
logging to stderr; ``config check`` checks a config file.  The other commands
talk to the running daemon over its control socket through
:class:`cloudkernel.client.Client`: ``publish`` deposits a signal, ``get``
shows a topic's estimate and its sources (a chronyc ``sources``-like table),
``watch`` streams a pattern's estimates or raw signals, ``topics`` and
``status`` show what the daemon holds; ``sources``, ``sourcestats``,
``explain`` and ``peers`` are chronyc-like views (:mod:`cloudkernel.cli_views`).
Every one of them takes ``--json`` for the daemon's result as JSON (byte
strings as hex, non-finite numbers as null).  The socket is ``--socket
PATH`` (before the command), else ``$CLOUDKERNEL_SOCKET``, else the daemon's
``auto`` path.

Exit status (also in ``cloudkernel --help``):

* 0: success;
* 1: an error: the daemon failed to start or run, or its reply broke the
  control protocol;
* 2: bad usage (a bad option or value) or a bad config file; for ``get``,
  ``sources`` and ``explain``, also a topic without consensus (state
  ``no-consensus`` or ``stale``), after printing it;
* 3: the daemon is not reachable: not running, no answer within
  ``--timeout`` (``DaemonUnreachable``);
* 4: the daemon refused the request (``RequestFailed``), printed as
  ``error: <code>: <message>``;
* 5: not authorised: the daemon refused the request with ``not-authorised``
  (this user may not use it), or the socket's file mode keeps this user out
  (``DaemonNotAuthorised``).

None of these prints a traceback: each is one line on stderr.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import math
import os
import random
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import click
from click.core import ParameterSource

from . import __version__, fec
from .client import DEFAULT_TIMEOUT, SOCKET_ENV, Client
from .config import DEFAULT_CONFIG_PATH, load_config
from .core.control import ErrorCode
from .demo import run_pipeline
from .errors import (
    CloudkernelError,
    ConfigError,
    ControlError,
    ControlProtocolError,
    DaemonNotAuthorised,
    DaemonUnreachable,
    KeyFileError,
    RequestFailed,
)
from .explain import no_consensus
from .keyfile import generate_key, write_key_file
from .swarm_demo import report, run_swarm_demo

#: exit statuses (see the module docstring)
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_REFUSED = 4
EXIT_NOT_AUTHORISED = 5

_EPILOG = """\b
Exit status:
  0  success
  1  error (the daemon failed to start or run, a broken reply)
  2  bad usage or a bad config file; get, sources, explain: no consensus
  3  the daemon is not reachable (not running, no answer)
  4  the daemon refused the request ("error: <code>: <message>")
  5  not authorised: this user may not use the socket or the command
     (join the socket's group, by default cloudkernel)
"""


@dataclass(frozen=True)
class _Options:
    """The group's options, kept in the click context for the commands."""

    socket: str | None
    timeout: float


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=_EPILOG)
@click.version_option(__version__, prog_name="cloudkernel")
@click.option(
    "--socket",
    "socket_path",
    metavar="PATH",
    envvar=SOCKET_ENV,
    help=f"The daemon's control socket [default: ${SOCKET_ENV}, else the daemon's 'auto' path].",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0, 3600, min_open=True),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for the daemon's answer.",
)
@click.pass_context
def main(ctx: click.Context, socket_path: str | None, timeout: float) -> None:
    """cloudkernel: fault-tolerant signals for swarms of small machines."""
    ctx.obj = _Options(socket_path or None, timeout)
    # $CLOUDKERNEL_SOCKET says which daemon a client talks to; it must not move
    # the socket of a daemon started from the same shell (`run`, `demo`).
    from_environment = ctx.get_parameter_source("socket_path") is ParameterSource.ENVIRONMENT
    ctx.meta["cloudkernel.socket_from_environment"] = from_environment


@main.command("link-demo")
@click.option("-k", "k", default=32, show_default=True, help="Source packets per block.")
@click.option("-m", "m", default=8, show_default=True, help="Repair packets per block.")
@click.option("--size", default=1200, show_default=True, help="Packet size in bytes.")
@click.option(
    "--loss",
    default=0.10,
    show_default=True,
    type=click.FloatRange(0.0, 1.0),
    help="Probability that the link drops a packet.",
)
@click.option("--blocks", default=2000, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--seed", default=1, show_default=True, help="Seed of the simulated link.")
@click.option(
    "--signals",
    default=20_000,
    show_default=True,
    type=click.IntRange(0, 10_000_000),
    help="Signals sent through the pipeline part (0 skips it).",
)
def link_demo(k: int, m: int, size: int, loss: float, blocks: int, seed: int, signals: int) -> None:
    """Send blocks and signals across a simulated lossy link and rebuild them."""
    try:
        code = fec.ErasureCode(k, m)
    except fec.FECError as exc:
        raise click.BadParameter(str(exc)) from None
    if not 1 <= size <= 65536:
        raise click.BadParameter(f"--size must be 1..65536, got {size}")
    if not math.isfinite(loss):
        raise click.BadParameter(f"--loss must be a number in 0..1, got {loss}")
    rng = random.Random(seed)
    click.echo(f"cloudkernel {__version__}: FEC {fec.IMPLEMENTATION}, kernel {fec.kernel()}")
    click.echo(
        f"erasure code k={k} m={m}, {size}-byte packets, {loss:.0%} iid loss, {blocks} blocks"
    )

    sources = [rng.randbytes(size) for _ in range(k)]
    packets = sources + code.encode(sources)
    delivered = rebuilt = failed = packets_lost = 0
    decode_ns = 0
    for _ in range(blocks):
        received = {i: p for i, p in enumerate(packets) if rng.random() >= loss}
        packets_lost += k + m - len(received)
        missing = [i for i in range(k) if i not in received]
        if len(received) < k:
            failed += 1
            delivered += k - len(missing)
            continue
        start = time.perf_counter_ns()
        block = code.decode(received)
        decode_ns += time.perf_counter_ns() - start
        if block != sources:
            raise click.ClickException("decode returned the wrong packets")
        delivered += k
        rebuilt += len(missing)
    total = blocks * k
    click.echo(
        f"  packets lost on the link: {packets_lost} of {blocks * (k + m)} "
        f"({packets_lost / (blocks * (k + m)):.1%})"
    )
    click.echo(f"  source packets rebuilt:   {rebuilt}")
    click.echo(f"  blocks beyond repair:     {failed} of {blocks}")
    click.echo(f"  source packets delivered: {delivered} of {total} ({delivered / total:.3%})")
    decoded = blocks - failed
    if decoded and decode_ns:
        click.echo(
            f"  decode: {decode_ns / decoded / 1000:.1f} us per block, "
            f"{decoded * k * size / decode_ns * 1000:.0f} MB/s"
        )

    codec = fec.RSCodec(32)
    message = b"pheromone: temperature=21.5C confidence=0.9 half-life=30s"
    codeword = bytearray(codec.encode(message))
    for position in rng.sample(range(len(codeword)), 16):
        codeword[position] ^= rng.randrange(1, 256)
    repaired = codec.decode(bytes(codeword))
    click.echo(f"byte-level RS(32): 16 of {len(codeword)} bytes corrupted, decoded: {repaired!r}")
    if repaired != message:
        raise click.ClickException("RSCodec returned the wrong message")

    if not signals:
        return
    if loss >= 1.0:
        click.echo("signal pipeline: skipped, nothing crosses a link that loses everything")
        return
    click.echo(
        f"signal pipeline: {signals} signals, {loss:.0%} iid frame loss, adaptive FEC, "
        "ChaCha20-Poly1305 tags"
    )
    result = run_pipeline(signals, loss, seed)
    click.echo(
        f"  frames sent: {result.frames_sent} ({result.repair_frames} repair), "
        f"lost on the link: {result.frames_lost} (receiver measured {result.measured_loss:.1%})"
    )
    click.echo(f"  signals rebuilt from repair frames: {result.recovered}")
    click.echo(
        f"  signals delivered: {result.delivered} of {result.signals} "
        f"({result.delivered / result.signals:.3%}), duplicates: {result.duplicates}"
    )
    drops = ", ".join(f"{k} {v}" for k, v in sorted(result.drops.items())) or "none"
    click.echo(f"  frames not delivered, by reason: {drops}")
    if result.duplicates:
        raise click.ClickException("a signal was delivered twice")


@main.command()
@click.option(
    "--nodes", default=5, show_default=True, type=click.IntRange(3, 32), help="Daemons to start."
)
@click.option(
    "--loss",
    default=0.10,
    show_default=True,
    type=click.FloatRange(0.0, 0.9),
    help="Fraction of datagrams every daemon drops on receipt.",
)
@click.option(
    "--liars",
    default=1,
    show_default=True,
    type=click.IntRange(0, 10),
    help="Nodes that publish a wrong value (at most (nodes-1)//3).",
)
@click.option(
    "--duration",
    default=15.0,
    show_default=True,
    type=click.FloatRange(1.0, 3600.0),
    help="Seconds of publishing.",
)
@click.option("--seed", default=1, show_default=True, help="Seed of the readings' noise.")
def demo(nodes: int, loss: float, liars: int, duration: float, seed: int) -> None:
    """Start a real swarm of daemons on this host and watch their consensus.

    The daemons run in a private network namespace (no root needed; the
    host's network is not touched), each dropping --loss of what it
    receives.  Every node publishes a noisy reading of one true temperature,
    the liars a wrong one; every second the swarm's values are shown, and a
    summary follows: delivery, FEC recovery, each node's value against the
    truth, and the liars' reputation.
    """
    if liars > (nodes - 1) // 3:
        raise click.UsageError(
            f"--liars {liars} is too many for {nodes} nodes: at most (nodes-1)//3 = "
            f"{(nodes - 1) // 3} can lie for the consensus to hold"
        )
    try:
        result = run_swarm_demo(
            nodes=nodes,
            loss=loss,
            liars=liars,
            duration=duration,
            seed=seed,
            show=lambda line: click.echo(line),
        )
    except KeyboardInterrupt:
        click.echo("interrupted: every daemon stopped, nothing left behind", err=True)
        sys.exit(130)
    except CloudkernelError as exc:
        _fail(f"error: {exc}", 1)
    for line in report(result):
        click.echo(line)


@main.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Replace an existing key file.")
def keygen(path: str, force: bool) -> None:
    """Write a new random swarm key to PATH (mode 0600).

    Copy the same file to every node of the swarm.
    """
    try:
        write_key_file(path, generate_key(), overwrite=force)
    except KeyFileError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote a new swarm key to {path} (mode 0600)")


# -- talking to the daemon --------------------------------------------------------


def _fail(message: str, code: int) -> NoReturn:
    """Print ``message`` as one line on stderr and exit with ``code``."""
    click.echo(" ".join(message.split()), err=True)
    raise click.exceptions.Exit(code)


@contextlib.contextmanager
def _daemon_errors() -> Iterator[None]:
    """Turn the client's errors into one line on stderr and the documented exit status."""
    try:
        yield
    except DaemonNotAuthorised as exc:
        _fail(f"error: {exc}", EXIT_NOT_AUTHORISED)
    except DaemonUnreachable as exc:
        _fail(f"error: {exc}", EXIT_UNREACHABLE)
    except RequestFailed as exc:
        code = EXIT_NOT_AUTHORISED if exc.code == ErrorCode.NOT_AUTHORISED else EXIT_REFUSED
        _fail(f"error: {exc.code}: {exc.message}", code)
    except ControlError as exc:  # a request the daemon would refuse, caught before sending
        _fail(f"error: {exc}", EXIT_USAGE)
    except ControlProtocolError as exc:
        _fail(f"error: the daemon's reply breaks the control protocol: {exc}", EXIT_ERROR)


def _client(ctx: click.Context) -> Client:
    options = ctx.find_object(_Options) or _Options(None, DEFAULT_TIMEOUT)
    return Client(options.socket, timeout=options.timeout)


def _plain(value: Any) -> Any:
    """``value`` as JSON can hold it: bytes as hex, non-finite floats as null."""
    if isinstance(value, dict):
        return {
            (key.hex() if isinstance(key, bytes) else str(key)): _plain(item)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _echo_json(value: Any, *, line: bool = False) -> None:
    click.echo(
        json.dumps(_plain(value), indent=None if line else 2, ensure_ascii=False, allow_nan=False)
    )


_json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


# -- formatting -------------------------------------------------------------------


def _num(value: Any, spec: str = ".6g") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) and not spec.endswith("f"):
        # An id, a count or a category: every digit, never an exponent.
        return f"{value:+d}" if spec.startswith("+") else str(value)
    if isinstance(value, (int, float)):
        return format(value, spec)
    return str(value)


def _signed(value: Any) -> str:
    return _num(value, "+.4g")


def _bytes(value: bytes) -> str:
    """Bytes as ``publish --kind bytes`` takes them: ``text:...`` when printable, else hex."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return value.hex()
    return "text:" + text if text.isprintable() else value.hex()


def _value(value: Any) -> str:
    """A signal's or an estimate's value: a number, a category, a vector or bytes."""
    if isinstance(value, (bytes, bytearray)):
        return _bytes(bytes(value))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_num(v) for v in value) + "]"
    return _num(value)


def _age(seconds: Any) -> str:
    """An age as chronyc shows LastRx: short, its unit attached."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        return "-"
    if not math.isfinite(seconds):
        return "-"
    if seconds < 0.1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"


def _uptime(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        return "-"
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours}h {minutes:02d}m {secs:02d}s" if hours or days else f"{minutes}m {secs:02d}s"
    return f"{days}d {text}" if days else text


def _percent(value: Any) -> str:
    return "-" if not isinstance(value, (int, float)) else f"{value:.1%}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> list[str]:
    """Aligned columns under a header and a rule of '=' (as chronyc draws them).

    ``align`` has one letter per column: ``l`` (left) or ``r`` (right).
    """
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(width) if how == "l" else cell.rjust(width)
            for cell, width, how in zip(cells, widths, align, strict=True)
        ).rstrip()

    rule = "=" * (sum(widths) + 2 * (len(widths) - 1))
    return [line(headers), rule, *(line(row) for row in rows)]


def _echo_lines(lines: Sequence[str]) -> None:
    for text in lines:
        click.echo(text)


def _state(view: dict[str, Any]) -> str:
    state = str(view.get("state", "-"))
    reason = view.get("reason")
    return f"{state} ({reason})" if reason else state


def _estimate_summary(view: dict[str, Any]) -> str:
    """The header line of ``get``: value, sigma, interval, state, confidence, sources, age."""
    value = f"{view.get('topic')}: {_value(view.get('value'))}"
    if view.get("sigma") is not None:
        value += f" ±{_num(view.get('sigma'), '.3g')}"
    parts = [value]
    interval = view.get("interval")
    if isinstance(interval, list) and len(interval) == 2:
        parts.append(f"95% [{_num(interval[0])}, {_num(interval[1])}]")
    parts.append(f"state {_state(view)}")
    parts.append(f"confidence {_num(view.get('confidence'), '.3f')}")
    parts.append(
        f"sources {_num(view.get('sources_used'))}/{_num(view.get('sources_total'))} used, "
        f"{_num(view.get('sources_rejected'))} rejected"
    )
    parts.append(f"age {_age(view.get('age'))}")
    return "  ".join(parts)


_SOURCE_HEADERS = (
    "S",
    "Source",
    "Reach",
    "Age",
    "Value",
    "Offset",
    "Sigma",
    "Weight",
    "Conf",
    "Rep",
    "Evap",
    "Link",
)


def _reach(value: Any) -> str:
    """The 8-bit reach register in octal, as chronyc shows it (377: the last 8 all heard)."""
    return f"{value:o}" if isinstance(value, int) and not isinstance(value, bool) else "-"


def _estimate_lines(view: dict[str, Any]) -> list[str]:
    rows = [
        [
            str(row.get("symbol", "?")),
            _num(row.get("source")),
            _reach(row.get("reach")),
            _age(row.get("age")),
            _num(row.get("value")),
            _signed(row.get("offset")),
            _num(row.get("sigma"), ".3g"),
            _num(row.get("weight"), ".3f"),
            _num(row.get("confidence"), ".2f"),
            _num(row.get("reputation"), ".2f"),
            _num(row.get("evaporation"), ".2f"),
            _num(row.get("link_quality"), ".2f"),
        ]
        for row in view.get("sources") or []
        if isinstance(row, dict)
    ]
    lines = [_estimate_summary(view)]
    if rows:
        lines += ["", *_table(_SOURCE_HEADERS, rows, "llrrrrrrrrrr")]
    return lines


def _raw_lines(view: dict[str, Any]) -> list[str]:
    latest = [row for row in view.get("latest") or [] if isinstance(row, dict)]
    lines = [
        f"{view.get('topic')}: bytes, no consensus: the latest value of each of "
        f"{len(latest)} sources"
    ]
    rows = [
        [_num(row.get("source")), _num(row.get("seq")), _value(row.get("value"))] for row in latest
    ]
    if rows:
        lines += ["", *_table(("Source", "Seq", "Value"), rows, "lrl")]
    return lines


def _event_line(event: dict[str, Any]) -> str:
    """One line for a watch event, stamped with the local time it arrived."""
    stamp = datetime.datetime.now().strftime("%H:%M:%S.%f")[:-3]
    kind = event.get("type")
    estimate = event.get("estimate")
    signal = event.get("signal")
    if kind == "estimate" and isinstance(estimate, dict):
        topic = estimate.get("topic")
        if estimate.get("state") == "raw":
            latest = [row for row in estimate.get("latest") or [] if isinstance(row, dict)]
            values = " ".join(f"{_num(r.get('source'))}={_value(r.get('value'))}" for r in latest)
            return f"{stamp} {topic} raw {values}".rstrip()
        value = _value(estimate.get("value"))
        if estimate.get("sigma") is not None:
            value += f" ±{_num(estimate.get('sigma'), '.3g')}"
        return (
            f"{stamp} {topic} {value} {_state(estimate)} "
            f"confidence {_num(estimate.get('confidence'), '.3f')} "
            f"sources {_num(estimate.get('sources_used'))}/{_num(estimate.get('sources_total'))}"
        )
    if kind == "signal" and isinstance(signal, dict):
        flags = "".join(
            f" {name}"
            for name, on in (("recovered", signal.get("recovered")), ("local", event.get("local")))
            if on
        )
        return (
            f"{stamp} {signal.get('topic')} {_value(signal.get('value'))} "
            f"from {_num(signal.get('source'))} seq {_num(signal.get('seq'))} "
            f"confidence {_num(signal.get('confidence'), '.3f')} {signal.get('qos')} "
            f"age {_age(signal.get('age'))}{flags}"
        )
    return f"{stamp} " + json.dumps(_plain(event), ensure_ascii=False)


# -- value parsing for publish ----------------------------------------------------

_KINDS = ("float", "category", "vector", "bytes")
#: limits of docs/CONTROL.md section 4 (publish), checked here for a clear message
_MAX_VECTOR = 16
_MAX_BYTES = 64
_MAX_CATEGORY = 2**32 - 1


def _finite(text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a number", param_hint="VALUE") from None
    if not math.isfinite(number):
        raise click.BadParameter(f"{text!r} is not a finite number", param_hint="VALUE")
    return number


def parse_value(text: str, kind: str) -> float | int | list[float] | bytes:
    """VALUE of ``cloudkernel publish`` as ``--kind`` reads it.

    * ``float``: a finite number (``21.5``, ``-3``, ``1e-3``);
    * ``category``: an integer 0..2^32-1;
    * ``vector``: 1..16 comma-separated finite numbers (``1,2.5,3``);
    * ``bytes``: 1..64 bytes as hex (``0a0b``) or as UTF-8 text after ``text:``.

    :raises click.BadParameter: naming the value and the rule.
    """
    if kind == "float":
        return _finite(text)
    if kind == "category":
        try:
            category = int(text, 10)
        except ValueError:
            raise click.BadParameter(
                f"{text!r} is not an integer; a category is 0..{_MAX_CATEGORY}", param_hint="VALUE"
            ) from None
        if not 0 <= category <= _MAX_CATEGORY:
            raise click.BadParameter(
                f"category {category} is out of range 0..{_MAX_CATEGORY}", param_hint="VALUE"
            )
        return category
    if kind == "vector":
        items = text.split(",")
        if not 1 <= len(items) <= _MAX_VECTOR or not all(item.strip() for item in items):
            raise click.BadParameter(
                f"{text!r} is not a vector: give 1..{_MAX_VECTOR} comma-separated numbers, "
                "e.g. 1,2.5,3",
                param_hint="VALUE",
            )
        return [_finite(item.strip()) for item in items]
    if text.startswith("text:"):
        data = text[len("text:") :].encode("utf-8", "surrogateescape")
    else:
        try:
            data = bytes.fromhex(text)
        except ValueError:
            raise click.BadParameter(
                f"{text!r} is not hex: give hex digits (0a0b) or text:... for text",
                param_hint="VALUE",
            ) from None
    if not 1 <= len(data) <= _MAX_BYTES:
        raise click.BadParameter(
            f"{len(data)} bytes; a bytes value is 1..{_MAX_BYTES} bytes", param_hint="VALUE"
        )
    return data


# -- commands that talk to the daemon ---------------------------------------------


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("topic")
@click.argument("value")
@click.option(
    "--kind",
    type=click.Choice(_KINDS),
    default="float",
    show_default=True,
    help="How to read VALUE: a number; an integer category; comma-separated numbers; "
    "bytes as hex or text:... .",
)
@click.option(
    "--confidence",
    type=click.FloatRange(0, 1, min_open=True),
    default=1.0,
    show_default=True,
    help="The publisher's confidence in the value, 0 < C <= 1.",
)
@click.option(
    "--half-life",
    type=click.FloatRange(0, min_open=True),
    metavar="SECONDS",
    help="Seconds for the signal's weight to halve [default: 10 unless --ttl is given].",
)
@click.option(
    "--ttl",
    type=click.FloatRange(0, min_open=True),
    metavar="SECONDS",
    help="Seconds after which the signal expires.",
)
@click.option(
    "--qos",
    type=click.Choice(["critical", "normal", "bulk"]),
    help="The signal's class of service [default: the topic's class in the daemon's "
    "config, normal unless configured].",
)
@_json_option
@click.pass_context
def publish(
    ctx: click.Context,
    topic: str,
    value: str,
    kind: str,
    confidence: float,
    half_life: float | None,
    ttl: float | None,
    qos: str | None,
    as_json: bool,
) -> None:
    """Publish VALUE on TOPIC through the local daemon.

    A negative VALUE may be given as it is (-3.5), or after "--".
    """
    parsed = parse_value(value, kind)
    with _daemon_errors(), _client(ctx) as client:
        result = client.publish(
            topic, parsed, confidence=confidence, half_life=half_life, ttl=ttl, qos=qos
        )
    if as_json:
        _echo_json(result)
        return
    click.echo(
        f"published {result.get('topic')}: source {_num(result.get('source'))}, "
        f"seq {_num(result.get('seq'))}"
    )


@main.command()
@click.argument("topic")
@_json_option
@click.pass_context
def get(ctx: click.Context, topic: str, as_json: bool) -> None:
    """Show TOPIC's estimate and the sources it was fused from.

    \b
    The header gives the value, its sigma and 95 % interval, the state (and
    why it is not ok), the confidence, the sources used of those heard and
    those rejected, and the age of the newest reading used.  Then one row
    per source, as chronyc shows its sources:
      S       * best, + used, - outlier, x falseticker, ~ distrusted, ? other
      Reach   the last 8 reach intervals in octal (377: a reading in each)
      Offset  the reading minus the estimate
      Weight  its share of the estimate; Conf, Rep, Evap, Link: the
              publisher's confidence, its reputation here, the evaporation
              of its reading and the quality of its link
    A bytes topic shows the latest value of each source instead.
    Exits 2 after printing when the topic has no consensus.
    """
    with _daemon_errors(), _client(ctx) as client:
        view = client.get(topic)
    if as_json:
        _echo_json(view)
    elif view.get("state") == "raw":
        _echo_lines(_raw_lines(view))
    else:
        _echo_lines(_estimate_lines(view))
    if no_consensus(view):
        raise click.exceptions.Exit(EXIT_USAGE)


@main.command()
@click.argument("pattern")
@click.option("--raw", is_flag=True, help="Every raw signal as it arrives, not the estimates.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event and line.")
@click.option("--count", type=click.IntRange(min=1), metavar="N", help="Stop after N events.")
@click.option(
    "--duration",
    type=click.FloatRange(0, min_open=True),
    metavar="SECONDS",
    help="Stop after this many seconds.",
)
@click.pass_context
def watch(
    ctx: click.Context,
    pattern: str,
    raw: bool,
    as_json: bool,
    count: int | None,
    duration: float | None,
) -> None:
    """Print the estimates of the topics matching PATTERN as they change.

    PATTERN is a glob ("temp/*").  It runs until --count events, --duration
    seconds, the daemon ends the stream, or Ctrl-C.
    """
    client = _client(ctx)
    seen = 0
    try:
        with _daemon_errors(), client.watch(pattern, raw=raw, duration=duration) as stream:
            for event in stream:
                if as_json:
                    _echo_json(event, line=True)
                else:
                    click.echo(_event_line(event))
                seen += 1
                if count is not None and seen >= count:
                    break
            if stream.ended is not None:
                click.echo(f"the daemon ended the stream: {stream.ended}", err=True)
    except KeyboardInterrupt:
        pass
    finally:
        client.close()


@main.command()
@click.argument("pattern", required=False)
@click.option(
    "--json", "as_json", is_flag=True, help='Print the result as JSON: {"topics": [...]}.'
)
@click.pass_context
def topics(ctx: click.Context, pattern: str | None, as_json: bool) -> None:
    """List the topics the daemon knows (those matching the glob PATTERN)."""
    with _daemon_errors(), _client(ctx) as client:
        rows = client.topics(pattern)
    if as_json:
        _echo_json({"topics": rows})
        return
    if not rows:
        click.echo("no topics" + (f" match {pattern}" if pattern else ""))
        return
    table = [
        [
            str(row.get("topic")),
            str(row.get("kind")),
            str(row.get("state")),
            _num(row.get("sources")),
            _num(row.get("updates")),
            _age(row.get("last_update_age")),
            _value(row.get("value")),
        ]
        for row in rows
    ]
    _echo_lines(
        _table(("Topic", "Kind", "State", "Sources", "Updates", "Last", "Value"), table, "lllrrrl")
    )


def _ms(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        return "-"
    return f"{seconds * 1000:.3g} ms"


def _counts(counts: Any) -> str:
    if not isinstance(counts, dict) or not counts:
        return "none"
    return ", ".join(f"{_num(value)} {str(key).replace('_', ' ')}" for key, value in counts.items())


def _metrics_text(listen: Any) -> str:
    if listen is None:
        return "-"
    return f"http://{listen}/metrics" if listen else "off"


def _status_lines(status: dict[str, Any]) -> list[str]:
    def get(section: str, key: str) -> Any:
        part = status.get(section)
        return part.get(key) if isinstance(part, dict) else None

    node = status.get("node_id")
    node_text = f"{node} (0x{node:08x})" if isinstance(node, int) else _num(node)
    groups = ", ".join(str(g) for g in (status.get("group"), status.get("group6")) if g)
    interfaces = status.get("interfaces")
    lag = status.get("loop_lag")
    lag_text = "-"
    if isinstance(lag, dict):
        lag_text = (
            f"p50 {_ms(lag.get('p50'))}, p99 {_ms(lag.get('p99'))}, max {_ms(lag.get('max'))}, "
            f"{_num(lag.get('samples'))} samples"
        )
    realtime = str(get("realtime", "summary") or "-")
    warnings = get("realtime", "warnings")
    fields = [
        ("Version", _num(status.get("version"))),
        ("Node ID", node_text),
        ("Epoch", _num(status.get("epoch"))),
        ("Uptime", _uptime(status.get("uptime"))),
        ("Interfaces", ", ".join(map(str, interfaces)) if isinstance(interfaces, list) else "-"),
        ("Groups", f"{groups or '-'} port {_num(status.get('port'))}"),
        ("Relay", _num(status.get("relay"))),
        ("Peers", _counts(status.get("peers"))),
        ("Topics", _num(status.get("topics"))),
        ("Signals", _counts(status.get("signals"))),
        ("Heartbeats sent", _num(status.get("heartbeats"))),
        ("Drops", _counts(status.get("drops"))),
        ("Unfused", _counts(status.get("unfused"))),
        ("Datagrams", _counts(status.get("datagrams"))),
        ("Real time", realtime),
        *(("", f"warning: {w}") for w in (warnings if isinstance(warnings, list) else [])),
        ("Loop lag", lag_text),
        ("Control socket", _num(get("control", "socket"))),
        (
            "Control",
            f"{_num(get('control', 'watchers'))} watchers, "
            f"{_num(get('control', 'requests'))} requests, "
            f"{_num(get('control', 'events_dropped'))} events dropped, "
            f"{_num(get('control', 'not_authorised'))} not authorised",
        ),
        ("Metrics", _metrics_text(status.get("metrics"))),
        ("Config", _num(status.get("config") or "built-in defaults")),
        ("Reloads", _reloads(status.get("reload"))),
    ]
    width = max(len(name) for name, _ in fields)
    return [
        f"{name.ljust(width)} : {value}" if name else f"{''.ljust(width)}   {value}"
        for name, value in fields
    ]


def _reloads(reload: Any) -> str:
    if not isinstance(reload, dict):
        return "-"
    text = f"{_num(reload.get('succeeded'))} applied, {_num(reload.get('failed'))} refused"
    if reload.get("last_ok") is False:
        text += f"; the last was refused: {_num(reload.get('last_error'))}"
    return text


@main.command()
@_json_option
@click.pass_context
def reload(ctx: click.Context, as_json: bool) -> None:
    """Make the daemon read its config file again (as SIGHUP does).

    The whole file is checked first: a bad one changes nothing and the
    command fails with the daemon's one-line reason (exit 4).  Settings that
    need a restart keep their running values and are listed.
    """
    with _daemon_errors(), _client(ctx) as client:
        result = client.reload()
    if as_json:
        _echo_json(result)
        return
    changed = result.get("changed") or []
    restart = result.get("restart_required") or []
    source = result.get("config") or "built-in defaults"
    if changed:
        click.echo(
            f"reloaded {source}: {len(changed)} setting(s) changed: {', '.join(map(str, changed))}"
        )
    else:
        click.echo(f"reloaded {source}: no live setting changed")
    if restart:
        click.echo(f"needs a restart to take effect: {', '.join(map(str, restart))}")


@main.command()
@_json_option
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show the daemon's status: node, sockets, counters, real-time settings."""
    with _daemon_errors(), _client(ctx) as client:
        result = client.status()
    if as_json:
        _echo_json(result)
    else:
        _echo_lines(_status_lines(result))


# -- swarm key rotation -------------------------------------------------------------


@main.group("key")
def key_group() -> None:
    """Rotate the swarm key without losing signals.

    \b
    Each step on every node before the next step:
      1. cloudkernel key stage NEW.key   accept the new key too
      2. cloudkernel key switch          send with it (old accepted 1 h more)
      3. copy NEW.key over node.key_file, so that a restart sends with it
      4. cloudkernel key retire          stop accepting the old key
    node.next_key_file = NEW.key keeps a node restarted during steps 1-3 in step.
    """


def _key_id(value: Any) -> str:
    return f"0x{value:02x}" if isinstance(value, int) else "-"


def _key_line(result: dict[str, Any]) -> str:
    window = result.get("window_left")
    line = (
        f"current {_key_id(result.get('current'))}, next {_key_id(result.get('next'))}, "
        f"previous {_key_id(result.get('previous'))}"
    )
    if isinstance(window, (int, float)):
        line += f" (accepted for {window:.0f} s more)"
    return line


@key_group.command("stage")
@click.argument("file", type=click.Path(dir_okay=False))
@_json_option
@click.pass_context
def key_stage(ctx: click.Context, file: str, as_json: bool) -> None:
    """Have the daemon load FILE (mode 0600) and accept its key; not sent with yet."""
    with _daemon_errors(), _client(ctx) as client:
        result = client.key_stage(file)
    if as_json:
        _echo_json(result)
    else:
        click.echo(f"staged key {_key_id(result.get('staged'))}: {_key_line(result)}")


@key_group.command("switch")
@click.option(
    "--window",
    type=click.FloatRange(0, 7 * 86400),
    metavar="SECONDS",
    help="How long the old key stays accepted [default: 3600].",
)
@_json_option
@click.pass_context
def key_switch(ctx: click.Context, window: float | None, as_json: bool) -> None:
    """Send with the staged key from now on; the old key stays accepted for a while."""
    with _daemon_errors(), _client(ctx) as client:
        result = client.key_switch(window)
    if as_json:
        _echo_json(result)
    else:
        click.echo(f"switched to key {_key_id(result.get('current'))}: {_key_line(result)}")


@key_group.command("retire")
@_json_option
@click.pass_context
def key_retire(ctx: click.Context, as_json: bool) -> None:
    """Stop accepting the previous key now."""
    with _daemon_errors(), _client(ctx) as client:
        result = client.key_retire()
    if as_json:
        _echo_json(result)
    else:
        click.echo(f"retired key {_key_id(result.get('retired'))}: {_key_line(result)}")


@key_group.command("status")
@_json_option
@click.pass_context
def key_status(ctx: click.Context, as_json: bool) -> None:
    """Show the key ids the daemon holds and which one it sends with."""
    with _daemon_errors(), _client(ctx) as client:
        result = client.key_status()
    if as_json:
        _echo_json(result)
    else:
        click.echo(_key_line(result))


# -- configuration and the daemon itself ----------------------------------------------


@main.group("config")
def config_group() -> None:
    """Check configuration files."""


@config_group.command("check")
@click.argument("file")
def config_check(file: str) -> None:
    """Load FILE as the daemon would; print "FILE: ok" or the first problem (exit 2)."""
    try:
        load_config(file)
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE)
    click.echo(f"{file}: ok")


_LOG_FORMAT = "cloudkernel[%(process)d]: %(levelname)s %(message)s"
_LOG_LEVELS = ("debug", "info", "warning", "error")


@main.command()
@click.option(
    "--config",
    "config_path",
    metavar="FILE",
    help=f"The config file [default: {DEFAULT_CONFIG_PATH} when it exists, else the "
    "built-in defaults].",
)
@click.option(
    "--log-level",
    type=click.Choice(_LOG_LEVELS),
    help="The least severe level logged [default: the config's log.level].",
)
@click.option("--inject-loss", type=click.FloatRange(0, 1), default=0.0, hidden=True)
@click.pass_context
def run(
    ctx: click.Context, config_path: str | None, log_level: str | None, inject_loss: float
) -> None:
    """Run the daemon in the foreground until SIGTERM or SIGINT, logging to stderr.

    The control socket is --socket (given before "run") when set, else the
    config's control.socket; $CLOUDKERNEL_SOCKET, which names the daemon a
    client talks to, does not move it.
    """
    if config_path is None and os.path.exists(DEFAULT_CONFIG_PATH):
        config_path = DEFAULT_CONFIG_PATH
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE)
    options = ctx.find_object(_Options) or _Options(None, DEFAULT_TIMEOUT)
    socket_path = None if ctx.meta.get("cloudkernel.socket_from_environment") else options.socket
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    root = logging.getLogger()
    saved_level = root.level
    root.addHandler(handler)
    root.setLevel(getattr(logging, (log_level or config.log.level).upper()))
    try:
        # The daemon's modules (asyncio, sockets, uvloop) load for `run` only.
        from . import daemon

        daemon.run(
            config,
            socket_path=socket_path,
            drop_incoming=inject_loss,
            config_path=config_path,
            log_level_fixed=log_level is not None,
        )
    except (CloudkernelError, OSError) as exc:
        _fail(f"error: {exc}", EXIT_ERROR)
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_level)


# The chronyc-like views register their commands on `main`.
from . import cli_views  # noqa: E402, F401
