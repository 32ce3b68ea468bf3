"""The chronyc-like views (cloudkernel.cli_views) run against tests/fakedaemon.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from fakedaemon import (
    PEER_ROWS,
    RAW_VIEW,
    SCALAR_ESTIMATE,
    SOURCESTATS_ROWS,
    VECTOR_ESTIMATE,
    FakeDaemon,
    dead_socket,
    fake_daemon,
    short_socket_path,
)

from cloudkernel.cli import main
from cloudkernel.cli_views import SCHEMAS
from cloudkernel.core.control import SourceStatsRequest
from cloudkernel.explain import SYMBOL_WORDS


@pytest.fixture
def path(tmp_path: Path) -> str:
    return short_socket_path(tmp_path)


@pytest.fixture
def daemon(path: str) -> Iterator[FakeDaemon]:
    with fake_daemon(path) as fake:
        yield fake


def ck(path: str, *args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(main, ["--socket", path, *args])
    assert result.exit_code == code, (result.output, result.exception)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result


def table(lines: list[str], first: str) -> list[list[str]]:
    """The rows under the header line that starts with ``first`` (split on spaces)."""
    start = next(n for n, line in enumerate(lines) if line.startswith(first))
    assert set(lines[start + 1]) == {"="}
    return [line.split() for line in lines[start + 2 :] if line.strip()]


# -- sources --------------------------------------------------------------------------


def test_sources_header_and_one_row_per_source(daemon: FakeDaemon, path: str) -> None:
    lines = ck(path, "sources", "temp/room").stdout.splitlines()
    assert lines[0].startswith("temp/room: 21.43 ±0.12  95% [21.19, 21.67]  state ok")
    start = next(n for n, line in enumerate(lines) if line.startswith("S "))
    assert lines[start].split() == ["S", "Source", "Reach", "LastRx", "Last", "reading", "Rep",
                                    "Weight"]  # fmt: skip
    rows = table(lines, "S ")
    assert rows == [
        ["*", "11", "377", "0.4s", "21.4", "[-0.03]", "±0.1", "1.00", "0.400"],
        ["+", "12", "377", "0.4s", "21.5", "[+0.07]", "±0.1", "1.00", "0.300"],
        ["+", "13", "377", "0.4s", "21.45", "[+0.02]", "±0.1", "1.00", "0.300"],
        ["x", "14", "17", "0.4s", "35", "[+13.57]", "±0.1", "1.00", "0.000"],
    ]
    # aligned: the values end, the sigmas start, in one place on every row
    body = lines[start + 2 :]
    assert len({line.index("±") for line in body}) == 1
    assert len({line.index("]") for line in body}) == 1
    assert "the source's state" not in "\n".join(lines)  # no legend without -v


def test_sources_verbose_explains_every_symbol_and_column(daemon: FakeDaemon, path: str) -> None:
    out = ck(path, "sources", "temp/room", "-v").stdout
    for symbol, words in SYMBOL_WORDS.items():
        assert f"{symbol}  {words}" in out
    for column in ("Reach", "LastRx", "Last reading", "Rep", "Weight"):
        assert f"\n  {column}  " in out
    assert "in octal" in out
    assert out.index("the source's state") < out.index("S  Source")


def test_sources_without_consensus_prints_then_exits_2(daemon: FakeDaemon, path: str) -> None:
    lines = ck(path, "sources", "pos/robot", code=2).stdout.splitlines()
    assert lines[0].startswith("pos/robot: -  state no-consensus (no-majority)")
    assert [row[0] for row in table(lines, "S ")] == ["?", "?"]
    document = json.loads(ck(path, "sources", "pos/robot", "--json", code=2).stdout)
    assert document == {"schema": SCHEMAS["sources"], **VECTOR_ESTIMATE}


def test_sources_json_is_the_estimate_with_its_schema(daemon: FakeDaemon, path: str) -> None:
    document = json.loads(ck(path, "sources", "temp/room", "--json").stdout)
    assert document == {"schema": "cloudkernel.sources/1", **SCALAR_ESTIMATE}


def test_sources_of_a_bytes_topic(daemon: FakeDaemon, path: str) -> None:
    out = ck(path, "sources", "blob/x").stdout
    assert "bytes, no consensus" in out and "text:hello" in out
    document = json.loads(ck(path, "sources", "blob/x", "--json").stdout)
    assert document["schema"] == SCHEMAS["sources"] and document["state"] == RAW_VIEW["state"]


def test_sources_of_an_unknown_topic_is_refused(daemon: FakeDaemon, path: str) -> None:
    result = ck(path, "sources", "nope", code=4)
    assert result.output.strip() == "error: not-found: no signal on topic 'nope' yet"


@pytest.mark.parametrize(
    "args",
    [["sources", "t"], ["sourcestats"], ["explain", "t"], ["peers"], ["peers", "-v", "--json"]],
)
def test_no_daemon_exits_3(path: str, args: list[str]) -> None:
    dead_socket(path)
    result = ck(path, *args, code=3)
    assert result.output.startswith("error: ") and len(result.output.splitlines()) == 1


@pytest.mark.parametrize(
    "args", [["sources"], ["explain"], ["sources", "t", "--bogus"], ["sourcestats", "a", "b"]]
)
def test_bad_usage_exits_2(daemon: FakeDaemon, path: str, args: list[str]) -> None:
    ck(path, *args, code=2)
    assert daemon.requests == []


def test_a_pattern_the_daemon_would_refuse_exits_2(daemon: FakeDaemon, path: str) -> None:
    result = ck(path, "sourcestats", "a\x01", code=2)
    assert "control character" in result.output and daemon.requests == []


# -- sourcestats ----------------------------------------------------------------------


def test_sourcestats_table(daemon: FakeDaemon, path: str) -> None:
    lines = ck(path, "sourcestats").stdout.splitlines()
    assert lines[0].split() == ["Topic", "Source", "NP", "NR", "Span", "Last", "Offset",
                                "StdDev", "Sigma", "Used", "Rep"]  # fmt: skip
    assert table(lines, "Topic") == [
        ["pos/robot", "21", "1", "1", "0ms", "3.0s", "+0.2", "-", "0.5", "100.0%", "0.50"],
        ["temp/room", "11", "32", "17", "31s", "0.4s", "-0.012", "0.097", "0.1", "100.0%", "0.99"],
        ["temp/room", "14", "20", "3", "20s", "0.4s", "+13.6", "0.35", "0.1", "0.0%", "0.04"],
    ]


def test_sourcestats_pattern_legend_json_and_nothing(daemon: FakeDaemon, path: str) -> None:
    lines = ck(path, "sourcestats", "temp/*", "-v").stdout.splitlines()
    assert [row[1] for row in table(lines, "Topic ")] == ["11", "14"]
    assert any(line.startswith("  NR ") for line in lines)
    assert daemon.requests[-1] == SourceStatsRequest(daemon.requests[-1].id, "temp/*")
    document = json.loads(ck(path, "sourcestats", "--json").stdout)
    assert document == {"schema": "cloudkernel.sourcestats/1", "sourcestats": SOURCESTATS_ROWS}
    assert ck(path, "sourcestats", "zzz*").stdout.strip() == "no source statistics yet for zzz*"


# -- explain --------------------------------------------------------------------------


def test_explain_in_sentences(daemon: FakeDaemon, path: str) -> None:
    lines = ck(path, "explain", "temp/room").stdout.splitlines()
    assert lines[0].startswith("temp/room is 21.43 ±0.12 (95% between 21.19 and 21.67): 3 of its")
    assert len(lines) == 1 + 2 * 4
    assert lines[1].startswith("  source 11 (*): used, with the largest share")
    assert lines[2] == (
        "    weight 0.864 = confidence 0.9 x reputation 1 x evaporation 0.97 x link 0.99; "
        "its share of the estimate: 0.400."
    )
    assert lines[0].endswith("up to 1 of its 4 fresh readings may lie.")
    assert lines[7].startswith("  source 14 (x): not used: a falseticker;")
    assert "(widened to ±3 sigmas)" in lines[7]
    assert "+13.57 from the estimate" in lines[7]
    assert lines[8].endswith("its share of the estimate: 0.")


def test_explain_verbose_has_a_legend(daemon: FakeDaemon, path: str) -> None:
    lines = ck(path, "explain", "temp/room", "-v").stdout.splitlines()
    assert lines[0].startswith("  (S)  ") and "x  falseticker" in "\n".join(lines)
    assert any(line.startswith("  weight  ") for line in lines)
    assert sum(line.startswith("temp/room is 21.43") for line in lines) == 1


def test_explain_without_consensus_says_why_and_exits_2(daemon: FakeDaemon, path: str) -> None:
    lines = ck(path, "explain", "pos/robot", code=2).stdout.splitlines()
    assert lines[0].startswith("pos/robot has no value (state no-consensus, no-majority): no set")
    assert "the topic has no consensus" in lines[1]
    document = json.loads(ck(path, "explain", "pos/robot", "--json", code=2).stdout)
    assert document["schema"] == "cloudkernel.explain/1"
    assert [s["used"] for s in document["sources"]] == [False, False]


def test_explain_json(daemon: FakeDaemon, path: str) -> None:
    document = json.loads(ck(path, "explain", "temp/room", "--json").stdout)
    assert document["schema"] == SCHEMAS["explain"]
    assert (document["topic"], document["state"], document["reason"]) == ("temp/room", "ok", "")
    first = document["sources"][0]
    assert first["factors"] == {
        "confidence": 0.9,
        "reputation": 1.0,
        "evaporation": 0.97,
        "link_quality": 0.99,
    }
    assert first["trust"] == pytest.approx(0.9 * 1.0 * 0.97 * 0.99)
    assert (first["used"], first["weight"], first["reason"]) == (True, 0.4, "best")
    assert [s["used"] for s in document["sources"]] == [True, True, True, False]


# -- peers ----------------------------------------------------------------------------


def test_peers_verbose_legend_and_json(daemon: FakeDaemon, path: str) -> None:
    lines = ck(path, "peers", "-v").stdout.splitlines()
    assert lines[0].startswith("  Node  ") and any(x.startswith("  Reach ") for x in lines)
    rows = table(lines, "Node ")
    assert [row[5] for row in rows] == ["377", "0"]  # reach in octal
    document = json.loads(ck(path, "peers", "--json").stdout)
    assert document == {"schema": "cloudkernel.peers/1", "peers": PEER_ROWS}
