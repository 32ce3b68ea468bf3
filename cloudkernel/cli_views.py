"""The chronyc-like views of the ``cloudkernel`` command line: sources,
sourcestats, explain and peers.

Each command asks the daemon through :class:`cloudkernel.client.Client`,
prints a table (``-v`` adds a legend above it) or, with ``--json``, one JSON
document that names its schema in its ``schema`` field (:data:`SCHEMAS`,
described in docs/VIEWS.md).  A document's fields only grow within a schema
version; a field that changes meaning or goes away takes a new version.

Exit status as for every command (``cloudkernel --help``); ``sources`` and
``explain`` (like ``get``) also exit 2 after printing when the topic has no
consensus (state ``no-consensus`` or ``stale``).

The commands are registered on :data:`cloudkernel.cli.main` when
:mod:`cloudkernel.cli` is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from .cli import (
    EXIT_USAGE,
    _age,
    _client,
    _daemon_errors,
    _echo_json,
    _echo_lines,
    _estimate_summary,
    _num,
    _percent,
    _raw_lines,
    _reach,
    _signed,
    _table,
    main,
)
from .explain import SYMBOL_WORDS, explain_view, no_consensus

__all__ = ["SCHEMAS", "explain", "peers", "sources", "sourcestats"]

#: the schema id of each command's --json document
SCHEMAS = {
    "sources": "cloudkernel.sources/1",
    "sourcestats": "cloudkernel.sourcestats/1",
    "explain": "cloudkernel.explain/1",
    "peers": "cloudkernel.peers/1",
}

_verbose_option = click.option(
    "-v", "--verbose", is_flag=True, help="Explain the columns in a legend above the table."
)


_F = TypeVar("_F", bound=Callable[..., Any])


def _json_option(command: str) -> Callable[[_F], _F]:
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        help=f'Print one JSON document, schema "{SCHEMAS[command]}" (docs/VIEWS.md).',
    )


def _document(command: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"schema": SCHEMAS[command], **body}


def _legend(entries: list[tuple[str, str]]) -> list[str]:
    """``name  meaning`` lines, the meanings aligned; a meaning may have several lines."""
    width = max(len(name) for name, _ in entries)
    lines = []
    for name, meaning in entries:
        for n, part in enumerate(meaning.split("\n")):
            lines.append(f"  {(name if n == 0 else '').ljust(width)}  {part}".rstrip())
    return [*lines, ""]


def _no_consensus_exit(view: dict[str, Any]) -> None:
    if no_consensus(view):
        raise click.exceptions.Exit(EXIT_USAGE)


# -- sources ----------------------------------------------------------------------

_SOURCES_LEGEND = [
    (
        "S",
        "the source's state:\n"
        + "\n".join(f"{symbol}  {words}" for symbol, words in SYMBOL_WORDS.items()),
    ),
    ("Source", "the node id of the publisher"),
    (
        "Reach",
        "readings in the last 8 reach intervals, in octal; the newest interval is\n"
        "the lowest bit (377: a reading in each, 376: none in the newest)",
    ),
    ("LastRx", "how long ago its latest reading was taken"),
    (
        "Last reading",
        "the reading [its offset from the estimate] ±its sigma, widened by\n"
        "evaporation (a vector shows its distance to the estimate; a category\n"
        "its label, offset 1 for another label than the estimate's)",
    ),
    ("Rep", "its reputation here, 0..1: how often it agreed with the consensus"),
    ("Weight", "its share of the estimate, 0..1 (0: not used)"),
]

_SOURCES_HEADERS = ("S", "Source", "Reach", "LastRx", "Last reading", "Rep", "Weight")


def _aligned(parts: list[list[str]], how: str) -> list[str]:
    """Cells of several parts each, every part padded to its widest: one column."""
    widths = [max((len(p[i]) for p in parts), default=0) for i in range(len(how))]
    return [
        " ".join(
            part.rjust(width) if side == "r" else part.ljust(width)
            for part, width, side in zip(cell, widths, how, strict=True)
        ).rstrip()
        for cell in parts
    ]


def _sources_lines(view: dict[str, Any], verbose: bool) -> list[str]:
    rows = [row for row in view.get("sources") or [] if isinstance(row, dict)]
    readings = _aligned(
        [
            [
                _num(row.get("value")),
                f"[{_signed(row.get('offset'))}]" if row.get("offset") is not None else "",
                f"±{_num(row.get('sigma'), '.3g')}",
            ]
            for row in rows
        ],
        "rrl",
    )
    table = [
        [
            str(row.get("symbol", "?")),
            _num(row.get("source")),
            _reach(row.get("reach")),
            _age(row.get("age")),
            reading,
            _num(row.get("reputation"), ".2f"),
            _num(row.get("weight"), ".3f"),
        ]
        for row, reading in zip(rows, readings, strict=True)
    ]
    lines = [_estimate_summary(view), ""]
    if verbose:
        lines += _legend(_SOURCES_LEGEND)
    if not table:
        return [*lines, "no sources"]
    return lines + _table(_SOURCES_HEADERS, table, "llrrlrr")


@main.command()
@click.argument("topic")
@_verbose_option
@_json_option("sources")
@click.pass_context
def sources(ctx: click.Context, topic: str, verbose: bool, as_json: bool) -> None:
    """Show the sources of TOPIC's estimate, one row each (as chronyc sources).

    A header line gives the estimate; -v explains the symbols and columns.
    Exits 2 after printing when the topic has no consensus.
    """
    with _daemon_errors(), _client(ctx) as client:
        view = client.get(topic)
    if as_json:
        _echo_json(_document("sources", view))
    elif view.get("state") == "raw":
        _echo_lines(_raw_lines(view))
    else:
        _echo_lines(_sources_lines(view, verbose))
    _no_consensus_exit(view)


# -- sourcestats ------------------------------------------------------------------

_SOURCESTATS_LEGEND = [
    ("Topic", "the topic; Source: the node id of the publisher"),
    ("NP", "readings sampled and held (one per second at most, the newest 32)"),
    (
        "NR",
        "runs of offsets on the same side of their mean: about NP/2 for honest\n"
        "noise, few when the source drifts against the swarm",
    ),
    ("Span", "time from the oldest reading held to the newest"),
    ("Last", "how long ago the newest was taken"),
    (
        "Offset",
        "mean offset from the estimate (a vector: mean distance; a category:\n"
        "share of readings with another label)",
    ),
    ("StdDev", "standard deviation of the offsets"),
    ("Sigma", "RMS of the sigmas the source gave: far below StdDev, it claims too much"),
    ("Used", "share of the readings that were used in the estimate"),
    ("Rep", "its reputation here, 0..1"),
]

_SOURCESTATS_HEADERS = (
    "Topic",
    "Source",
    "NP",
    "NR",
    "Span",
    "Last",
    "Offset",
    "StdDev",
    "Sigma",
    "Used",
    "Rep",
)


def _sourcestats_lines(rows: list[dict[str, Any]], verbose: bool) -> list[str]:
    table = [
        [
            str(row.get("topic")),
            _num(row.get("source")),
            _num(row.get("samples")),
            _num(row.get("runs")),
            _age(row.get("span")),
            _age(row.get("last")),
            _signed(row.get("offset")),
            _num(row.get("stddev"), ".3g"),
            _num(row.get("sigma"), ".3g"),
            _percent(row.get("used")),
            _num(row.get("reputation"), ".2f"),
        ]
        for row in rows
    ]
    lines = _legend(_SOURCESTATS_LEGEND) if verbose else []
    return lines + _table(_SOURCESTATS_HEADERS, table, "lrrrrrrrrrr")


@main.command()
@click.argument("pattern", required=False)
@_verbose_option
@_json_option("sourcestats")
@click.pass_context
def sourcestats(ctx: click.Context, pattern: str | None, verbose: bool, as_json: bool) -> None:
    """Show statistics of each source across its recent readings (as chronyc sourcestats).

    One row per topic (those matching the glob PATTERN) and source: how many
    readings are held, over what time, their mean offset from the estimate
    and its spread, and how often the source was used.
    """
    with _daemon_errors(), _client(ctx) as client:
        rows = client.sourcestats(pattern)
    if as_json:
        _echo_json(_document("sourcestats", {"sourcestats": rows}))
    elif not rows:
        click.echo("no source statistics yet" + (f" for {pattern}" if pattern else ""))
    else:
        _echo_lines(_sourcestats_lines(rows, verbose))


# -- explain ----------------------------------------------------------------------


_EXPLAIN_LEGEND = [
    (
        "(S)",
        "the source's state, after its id:\n"
        + "\n".join(f"{symbol}  {words}" for symbol, words in SYMBOL_WORDS.items()),
    ),
    (
        "weight",
        "how much the source counts in selecting the agreeing set and in the\n"
        "median: confidence (its publisher's) x reputation (here) x evaporation\n"
        "(2^(-age/half-life)) x link (1 - the loss measured on its link)",
    ),
    ("share", "what it holds of the combined value (inverse-variance weighted), 0..1"),
]


@main.command()
@click.argument("topic")
@_verbose_option
@_json_option("explain")
@click.pass_context
def explain(ctx: click.Context, topic: str, verbose: bool, as_json: bool) -> None:
    """Explain TOPIC's estimate: its state, and why each source is or is not used.

    \b
    For each source: its state and the reason in words, its reading, and its
    weight factors: confidence x reputation x evaporation x link quality,
    their product, and its share of the estimate.
    Exits 2 after printing when the topic has no consensus.
    """
    with _daemon_errors(), _client(ctx) as client:
        view = client.get(topic)
    explained = explain_view(view)
    if as_json:
        _echo_json(_document("explain", explained))
    else:
        lines = _legend(_EXPLAIN_LEGEND) if verbose else []
        lines.append(str(explained["explanation"]))
        for entry in explained["sources"]:
            lines += [f"  {entry['explanation']}", f"    {entry['weight_explanation']}"]
        _echo_lines(lines)
    _no_consensus_exit(view)


# -- peers ------------------------------------------------------------------------

_PEERS_LEGEND = [
    ("Node", "the peer's node id"),
    ("State", "alive; suspect (silent too long: phi reached the threshold); dead"),
    ("Epoch", "the peer's epoch: it grows each time its daemon starts"),
    ("Inc", "its incarnation: it grows each time it refutes a suspicion of it"),
    ("Phi", "the phi accrual suspicion of it now; suspect at the configured threshold"),
    (
        "Reach",
        "heartbeats in its last 8 heartbeat intervals, in octal; the newest is the\n"
        "lowest bit (377: all eight heard)",
    ),
    ("LastRx", "time since its last heartbeat"),
    ("Since", "how long it has been in its state"),
    ("HBs", "heartbeats heard from it"),
    ("Loss", "frame loss measured here on its link"),
    ("Rep", "its reputation here, 0..1"),
]


@main.command()
@_verbose_option
@_json_option("peers")
@click.pass_context
def peers(ctx: click.Context, verbose: bool, as_json: bool) -> None:
    """List the peers the daemon hears: state, phi, reach, loss, incarnation.

    -v explains the columns.
    """
    with _daemon_errors(), _client(ctx) as client:
        rows = client.peers()
    if as_json:
        _echo_json(_document("peers", {"peers": rows}))
        return
    if not rows:
        click.echo("no peers")
        return
    table = [
        [
            _num(row.get("node")),
            str(row.get("state")),
            _num(row.get("epoch")),
            _num(row.get("incarnation")),
            _num(row.get("phi"), ".2f"),
            _reach(row.get("reach")),
            _age(row.get("last_heard")),
            _age(row.get("since")),
            _num(row.get("heartbeats")),
            _percent(row.get("loss")),
            _num(row.get("reputation"), ".2f"),
        ]
        for row in rows
    ]
    headers = (
        "Node",
        "State",
        "Epoch",
        "Inc",
        "Phi",
        "Reach",
        "LastRx",
        "Since",
        "HBs",
        "Loss",
        "Rep",
    )
    lines = _legend(_PEERS_LEGEND) if verbose else []
    _echo_lines(lines + _table(headers, table, "rlrrrrrrrrr"))
