"""The ``cloudkernel`` command line as a user runs it."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from fakedaemon import (
    NODE_ID,
    PEER_ROWS,
    RAW_VIEW,
    SCALAR_ESTIMATE,
    STATUS,
    TOPIC_ROWS,
    VECTOR_ESTIMATE,
    FakeDaemon,
    dead_socket,
    estimate_event,
    fake_daemon,
    garbage_socket,
    short_socket_path,
    signal_event,
    silent_socket,
)

from cloudkernel import cli
from cloudkernel import daemon as daemon_module
from cloudkernel.aio.control_server import ControlConnection, ControlRefusal
from cloudkernel.cli import main, parse_value
from cloudkernel.config import Config
from cloudkernel.core.control import (
    ErrorCode,
    KeyRetireRequest,
    KeyStageRequest,
    KeySwitchRequest,
    PublishRequest,
    Request,
)
from cloudkernel.core.signals import QoS
from cloudkernel.daemon import DaemonError
from cloudkernel.keyfile import load_key_file


def test_demo_rebuilds_blocks_and_corrects_bytes() -> None:
    result = CliRunner().invoke(
        main, ["link-demo", "--blocks", "50", "--loss", "0.05", "--signals", "3000"]
    )
    assert result.exit_code == 0, result.output
    assert "source packets rebuilt" in result.output
    assert "decoded: b'pheromone" in result.output
    assert "signals delivered: 3000 of 3000 (100.000%), duplicates: 0" in result.output


def test_demo_pipeline_can_be_skipped() -> None:
    result = CliRunner().invoke(main, ["link-demo", "--blocks", "5", "--signals", "0"])
    assert result.exit_code == 0, result.output
    assert "signal pipeline" not in result.output


def test_keygen_writes_a_private_key_file_once(tmp_path: Path) -> None:
    path = tmp_path / "swarm.key"
    result = CliRunner().invoke(main, ["keygen", str(path)])
    assert result.exit_code == 0, result.output
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(load_key_file(path)) == 32
    again = CliRunner().invoke(main, ["keygen", str(path)])
    assert again.exit_code == 1
    assert "already exists" in again.output and "Traceback" not in again.output
    forced = CliRunner().invoke(main, ["keygen", "--force", str(path)])
    assert forced.exit_code == 0, forced.output


def test_demo_with_total_loss_reports_every_block_lost() -> None:
    result = CliRunner().invoke(main, ["link-demo", "--blocks", "5", "--loss", "1"])
    assert result.exit_code == 0, result.output
    assert "blocks beyond repair:     5 of 5" in result.output
    assert "nothing crosses a link that loses everything" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-k", "0"], "k must be 1..256, got 0"),
        (["-k", "200", "-m", "100"], "got 100"),
        (["--size", "0"], "--size must be 1..65536, got 0"),
        (["--loss", "1.5"], "1.5"),
        (["--loss", "nan"], "--loss must be a number in 0..1, got nan"),
        (["--blocks", "0"], "0"),
        (["-k", "ten"], "ten"),
    ],
)
def test_demo_bad_arguments_are_clear_errors(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["link-demo", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert "cloudkernel" in result.output


# -- the commands that talk to the daemon -------------------------------------------
#
# A fake daemon (tests/fakedaemon.py) serves the real control server on a socket
# in tmp_path; the commands run through CliRunner with --socket pointing at it.


@pytest.fixture
def path(tmp_path: Path) -> str:
    return short_socket_path(tmp_path)


@pytest.fixture
def daemon(path: str) -> Iterator[FakeDaemon]:
    with fake_daemon(path) as fake:
        yield fake


def _invoke(args: Sequence[str], code: int = 0, env: dict[str, str] | None = None) -> Result:
    """Run ``cloudkernel ARGS``; check the exit status and that nothing printed a traceback."""
    result = CliRunner(env=env).invoke(main, list(args))
    assert result.exit_code == code, (result.output, result.exception)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result


def _ck(path: str, *args: str, code: int = 0) -> Result:
    return _invoke(["--socket", path, *args], code)


def test_help_documents_the_exit_statuses() -> None:
    result = _invoke(["--help"])
    for line in ("0  success", "1  error", "2  bad usage", "3  the daemon is not reachable"):
        assert line in result.output
    assert '4  the daemon refused the request ("error: <code>: <message>")' in result.output
    assert "5  not authorised: this user may not use the socket or the command" in result.output
    assert "--inject-loss" not in _invoke(["run", "--help"]).output


def test_get_shows_the_estimate_and_a_row_per_source(daemon: FakeDaemon, path: str) -> None:
    lines = _ck(path, "get", "temp/room").stdout.splitlines()
    header = lines[0]
    for field in (
        "temp/room: 21.43 ±0.12",
        "95% [21.19, 21.67]",
        "state ok",
        "confidence 0.930",
        "sources 3/4 used, 1 rejected",
        "age 0.4s",
    ):
        assert field in header
    table = lines[next(n for n, line in enumerate(lines) if line.startswith("S ")) :]
    assert table[0].split() == [
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
    ]
    assert set(table[1]) == {"="}
    rows = [line.split() for line in table[2:]]
    assert rows[0] == ["*", "11", "377", "0.4s", "21.4", "-0.03", "0.1", "0.400", "0.90", "1.00",
                       "0.97", "0.99"]  # fmt: skip
    assert [row[0] for row in rows] == ["*", "+", "+", "x"]
    assert rows[3][1:3] == ["14", "17"]  # reach in octal
    # Columns are aligned: every row is as wide as the rule.
    assert {len(line) for line in table[1:]} == {len(table[1])}


def test_get_shows_why_there_is_no_value(daemon: FakeDaemon, path: str) -> None:
    # printed, then exit 2: no consensus
    header = _ck(path, "get", "pos/robot", code=2).stdout.splitlines()[0]
    assert header.startswith("pos/robot: -  state no-consensus (no-majority)")
    assert "sources 0/2 used" in header and "age -" in header


def test_get_of_a_bytes_topic_shows_the_latest_value_per_source(
    daemon: FakeDaemon, path: str
) -> None:
    lines = _ck(path, "get", "blob/x").stdout.splitlines()
    assert "blob/x" in lines[0] and "2 sources" in lines[0]
    rows = [line.split() for line in lines[lines.index(lines[1]) + 3 :]]
    assert ["11", "3", "text:hello"] in rows
    assert ["12", "9", "00ff"] in rows


#: RAW_VIEW as --json prints it: bytes as hex
RAW_VIEW_JSON = {
    **RAW_VIEW,
    "latest": [
        {"source": 11, "value": "68656c6c6f", "seq": 3},
        {"source": 12, "value": "00ff", "seq": 9},
    ],
}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["get", "temp/room"], SCALAR_ESTIMATE),
        (["get", "blob/x"], RAW_VIEW_JSON),
        (["status"], STATUS),
        (["topics"], {"topics": TOPIC_ROWS}),
        (["topics", "temp/*"], {"topics": TOPIC_ROWS[:1]}),
        (["peers"], {"schema": "cloudkernel.peers/1", "peers": PEER_ROWS}),
        (["publish", "a/b", "1.5"], {"topic": "a/b", "source": NODE_ID, "seq": 1}),
    ],
)
def test_json_is_the_result(
    daemon: FakeDaemon, path: str, args: list[str], expected: dict[str, Any]
) -> None:
    assert json.loads(_ck(path, *args, "--json").stdout) == expected


def test_json_without_consensus_exits_2(daemon: FakeDaemon, path: str) -> None:
    assert json.loads(_ck(path, "get", "pos/robot", "--json", code=2).stdout) == VECTOR_ESTIMATE


def test_topics_table(daemon: FakeDaemon, path: str) -> None:
    lines = _ck(path, "topics").stdout.splitlines()
    assert lines[0].split() == ["Topic", "Kind", "State", "Sources", "Updates", "Last", "Value"]
    assert lines[2].split() == ["temp/room", "scalar", "ok", "4", "120", "0.4s", "21.43"]
    assert lines[4].split() == ["blob/x", "bytes", "raw", "2", "12", "75s", "-"]
    # Left-aligned columns start, right-aligned ones end, under their headers.
    assert lines[2].index("scalar") == lines[0].index("Kind")
    assert lines[2].index("21.43") == lines[0].index("Value")
    assert lines[2].index("120") + 3 == lines[0].index("Updates") + len("Updates")
    only = _ck(path, "topics", "pos/*").stdout.splitlines()
    assert len(only) == 3 and only[2].startswith("pos/robot ")
    assert _ck(path, "topics", "zzz*").stdout.strip() == "no topics match zzz*"


def test_status_lines(daemon: FakeDaemon, path: str) -> None:
    out = _ck(path, "status").stdout
    for field in (
        "Version         : 0.1.0",
        f"Node ID         : {NODE_ID} (0x1a2b3c4d)",
        "Uptime          : 1h 02m 03s",
        "Interfaces      : eth0, wlan0",
        "Groups          : 239.255.67.75, ff02::6b63 port 47475",
        "Peers           : 1 alive, 0 suspect, 1 dead",
        "Signals         : 40 published, 900 delivered, 12 recovered, 0 relayed",
        "Drops           : 2 bad-tag",
        "Unfused         : none",
        "warning: SCHED_FIFO not permitted",
        "Loop lag        : p50 0.1 ms, p99 2.1 ms, max 4 ms, 3600 samples",
        "Control socket  : /run/cloudkernel/control.sock",
        "Metrics         : http://127.0.0.1:9475/metrics",
        "Config          : /etc/cloudkernel/cloudkernel.toml",
    ):
        assert field in out


def test_peers_table(daemon: FakeDaemon, path: str) -> None:
    lines = _ck(path, "peers").stdout.splitlines()
    assert lines[0].split() == [
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
    ]
    assert lines[2].split() == [
        "11",
        "alive",
        "3",
        "17",
        "0.42",
        "377",
        "0.3s",
        "2m",
        "250",
        "1.2%",
        "0.98",
    ]
    assert lines[3].split() == ["14", "dead", "1", "2", "-", "0", "-", "65m", "9", "-", "0.20"]


def test_socket_from_the_environment(daemon: FakeDaemon, path: str) -> None:
    result = _invoke(["status", "--json"], env={"CLOUDKERNEL_SOCKET": path})
    assert json.loads(result.stdout) == STATUS


# -- publish ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "value"),
    [
        (["21.5"], 21.5),
        (["-3.5"], -3.5),
        (["--", "-1e-3"], -0.001),
        (["7", "--kind", "category"], 7),
        (["4294967295", "--kind", "category"], 4294967295),
        (["1,2.5,3", "--kind", "vector"], (1.0, 2.5, 3.0)),
        (["-1, 2", "--kind", "vector"], (-1.0, 2.0)),
        (["0a0b", "--kind", "bytes"], b"\x0a\x0b"),
        (["text:hi there", "--kind", "bytes"], b"hi there"),
    ],
)
def test_publish_parses_the_value_by_kind(
    daemon: FakeDaemon, path: str, args: list[str], value: object
) -> None:
    out = _ck(path, "publish", "some/topic", *args).stdout
    assert out == f"published some/topic: source {NODE_ID}, seq 1\n"
    (request,) = daemon.requests
    assert isinstance(request, PublishRequest)
    assert request.signal.value == value


def test_publish_options(daemon: FakeDaemon, path: str) -> None:
    _ck(path, "publish", "t", "1", "--confidence", "0.5", "--half-life", "2", "--ttl", "5",
        "--qos", "critical")  # fmt: skip
    _ck(path, "publish", "t", "1", "--ttl", "5")
    first, second = (r.signal for r in daemon.requests if isinstance(r, PublishRequest))
    assert (first.confidence, first.half_life, first.ttl, first.qos) == (
        0.5,
        2.0,
        5.0,
        QoS.CRITICAL,
    )
    assert (second.confidence, second.half_life, second.ttl, second.qos) == (
        1.0,
        None,
        5.0,
        QoS.NORMAL,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["abc"], "'abc' is not a number"),
        (["nan"], "not a finite number"),
        (["-inf"], "not a finite number"),
        (["-1", "--kind", "category"], "out of range"),
        (["1.5", "--kind", "category"], "not an integer"),
        (["4294967296", "--kind", "category"], "out of range"),
        (["", "--kind", "vector"], "not a vector"),
        (["1,,2", "--kind", "vector"], "not a vector"),
        (["1,x", "--kind", "vector"], "'x' is not a number"),
        ([",".join(["1"] * 17), "--kind", "vector"], "1..16"),
        (["zz", "--kind", "bytes"], "not hex"),
        (["", "--kind", "bytes"], "0 bytes"),
        (["text:", "--kind", "bytes"], "0 bytes"),
        (["ab" * 65, "--kind", "bytes"], "65 bytes"),
        (["1", "--kind", "complex"], "complex"),
        (["1", "--confidence", "0"], "0"),
        (["1", "--confidence", "1.5"], "1.5"),
        (["1", "--half-life", "-1"], "-1"),
        (["1", "--half-life", "100000"], "half_life"),
        (["1", "--qos", "urgent"], "urgent"),
        (["1", "--confidance", "0.5"], "unexpected extra argument"),
    ],
)
def test_publish_bad_values_exit_2(
    daemon: FakeDaemon, path: str, args: list[str], message: str
) -> None:
    result = _ck(path, "publish", "t", *args, code=2)
    assert message in result.output
    assert daemon.requests == []


def test_publish_to_a_reserved_topic_exits_2(daemon: FakeDaemon, path: str) -> None:
    result = _ck(path, "publish", "$sys/x", "1", code=2)
    assert result.stderr.startswith("error: bad-argument: publish: argument topic '$sys/x'")
    assert daemon.requests == []


def test_parse_value() -> None:
    assert parse_value("1e3", "float") == 1000.0
    assert parse_value("0", "category") == 0
    assert parse_value(" 1 ,2", "vector") == [1.0, 2.0]
    assert parse_value("0A 0b", "bytes") == b"\x0a\x0b"
    assert parse_value("text:0a", "bytes") == b"0a"
    with pytest.raises(click.BadParameter):
        parse_value("1", "bytes")


# -- watch --------------------------------------------------------------------------


def test_watch_count_and_json_lines(daemon: FakeDaemon, path: str) -> None:
    lines = _ck(path, "watch", "temp/*", "--count", "2").stdout.splitlines()
    assert len(lines) == 2
    assert "temp/room 21 ±0.12 ok confidence 0.930 sources 3/4" in lines[0]
    assert "temp/room 22 ±0.12" in lines[1]
    lines = _ck(path, "watch", "temp/*", "--json", "--count", "3").stdout.splitlines()
    assert [json.loads(line) for line in lines] == [
        estimate_event(dict(SCALAR_ESTIMATE, value=21.0 + n)) for n in range(3)
    ]


def test_watch_duration_and_raw(daemon: FakeDaemon, path: str) -> None:
    start = time.monotonic()
    lines = _ck(path, "watch", "*", "--raw", "--duration", "0.3").stdout.splitlines()
    assert 0.25 <= time.monotonic() - start < 3
    assert len(lines) == 3
    assert "temp/room 21 from 12 seq 1 confidence 0.900 normal age 2ms" in lines[0]
    assert lines[1].endswith(" recovered")
    lines = _ck(path, "watch", "*", "--raw", "--json", "--count", "1").stdout.splitlines()
    assert json.loads(lines[0]) == signal_event("temp/room", 21.0, 1)


def test_watch_until_the_daemon_ends_the_stream(path: str) -> None:
    with fake_daemon(path, watch_events=1, end_stream=True):
        result = _ck(path, "watch", "*")
    assert len(result.stdout.splitlines()) == 1
    assert result.stderr == "the daemon ended the stream: shutdown\n"


def test_watch_ctrl_c_exits_0(
    daemon: FakeDaemon, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupt(event: dict[str, Any]) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_event_line", interrupt)
    result = _ck(path, "watch", "*")
    assert result.output == ""


# -- exit statuses 1, 3 and 4 -------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["status"], ["get", "t"], ["topics"], ["peers"], ["publish", "t", "1"], ["watch", "*"]],
)
def test_no_daemon_exits_3(path: str, args: list[str]) -> None:
    result = _ck(path, *args, code=3)
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: no cloudkernel daemon at {path} (no such socket file)")
    assert "cloudkernel run" in line and "--socket" in line


def test_dead_and_silent_daemons_exit_3(path: str) -> None:
    dead_socket(path)
    assert "nobody listens" in _ck(path, "status", code=3).stderr
    os.unlink(path)
    with silent_socket(path):
        start = time.monotonic()
        result = _invoke(["--socket", path, "--timeout", "0.2", "status"], 3)
        assert time.monotonic() - start < 2
    assert result.stderr == f"error: the cloudkernel daemon at {path} did not answer within 0.2 s\n"


def test_refused_request_exits_4(daemon: FakeDaemon, path: str) -> None:
    result = _ck(path, "get", "no/such", code=4)
    assert result.stderr == "error: not-found: no signal on topic 'no/such' yet\n"
    assert result.stdout == ""


def test_not_authorised_exits_5(daemon: FakeDaemon, path: str) -> None:
    def refuse(request: Request, connection: ControlConnection) -> object:
        raise ControlRefusal(
            ErrorCode.NOT_AUTHORISED, "user bob (uid 1001, pid 7) may not use mutating op publish"
        )

    daemon.server._handler = refuse
    result = _ck(path, "publish", "t", "1", code=5)
    assert result.stderr == (
        "error: not-authorised: user bob (uid 1001, pid 7) may not use mutating op publish\n"
    )
    assert result.stdout == ""


def test_key_commands(daemon: FakeDaemon, path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []
    status = {"current": 0xA1, "next": 0xB2, "previous": None, "window_left": None}

    def keys(request: Request, connection: ControlConnection) -> object:
        seen.append(request)
        if isinstance(request, KeyStageRequest):
            return {"staged": 0xB2, **status}
        if isinstance(request, KeySwitchRequest):
            return {"current": 0xB2, "next": None, "previous": 0xA1, "window_left": 30.0}
        if isinstance(request, KeyRetireRequest):
            raise ControlRefusal(ErrorCode.NOT_FOUND, "no previous key to retire")
        return status

    daemon.server._handler = keys
    monkeypatch.chdir(Path(path).parent)
    result = _ck(path, "key", "stage", "new.key")
    assert result.stdout == "staged key 0xb2: current 0xa1, next 0xb2, previous -\n"
    assert seen[-1] == KeyStageRequest(seen[-1].id, str(Path(path).parent / "new.key"))
    result = _ck(path, "key", "switch", "--window", "30")
    assert result.stdout == (
        "switched to key 0xb2: current 0xb2, next -, previous 0xa1 (accepted for 30 s more)\n"
    )
    switched = seen[-1]
    assert switched == KeySwitchRequest(switched.id, 30.0)
    _ck(path, "key", "switch")
    switched = seen[-1]
    assert switched == KeySwitchRequest(switched.id, None)
    assert _ck(path, "key", "status").stdout == "current 0xa1, next 0xb2, previous -\n"
    assert json.loads(_ck(path, "key", "status", "--json").stdout) == status
    result = _ck(path, "key", "retire", code=4)
    assert result.stderr == "error: not-found: no previous key to retire\n"
    _ck(path, "key", "switch", "--window", "-1", code=2)


def test_garbage_from_the_daemon_exits_1(path: str) -> None:
    with garbage_socket(path, b"\x00\x00\x00\x02\x81\xc1"):
        result = _ck(path, "status", code=1)
    assert result.stderr.startswith("error: the daemon's reply breaks the control protocol: ")
    assert len(result.stderr.splitlines()) == 1


# -- config check and run -----------------------------------------------------------


def test_config_check(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text("[mesh]\nport = 47000\n\n[log]\nlevel = 'debug'\n")
    assert _invoke(["config", "check", str(good)]).stdout == f"{good}: ok\n"
    bad = tmp_path / "bad.toml"
    bad.write_text("# a comment\n[mesh]\nport = 70000\n")
    result = _invoke(["config", "check", str(bad)], 2)
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"{bad}:3: mesh.port: ")
    assert "70000" in line
    missing = _invoke(["config", "check", str(tmp_path / "absent.toml")], 2)
    assert missing.stderr.startswith(f"{tmp_path / 'absent.toml'}: cannot open")


@pytest.fixture
def fake_run(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Replace cloudkernel.daemon.run; record its calls, log a warning and an info line."""
    calls: list[dict[str, Any]] = []

    def run(
        config: Config,
        *,
        socket_path: str | None,
        drop_incoming: float,
        config_path: str | None,
        log_level_fixed: bool,
    ) -> None:
        calls.append(
            {
                "config": config,
                "socket_path": socket_path,
                "drop": drop_incoming,
                "config_path": config_path,
                "log_level_fixed": log_level_fixed,
            }
        )
        logging.getLogger("cloudkernel.daemon").warning("a warning")
        logging.getLogger("cloudkernel.daemon").info("an info line")
        if config.mesh.port == 1:
            raise DaemonError("cannot open the multicast socket: Address in use")

    monkeypatch.setattr(daemon_module, "run", run)
    return calls


def test_run_passes_config_socket_and_loss(tmp_path: Path, fake_run: list[dict[str, Any]]) -> None:
    config = tmp_path / "ck.toml"
    config.write_text("[mesh]\nport = 47001\n\n[log]\nlevel = 'warning'\n")
    result = _invoke(
        ["--socket", "/tmp/x.sock", "run", "--config", str(config), "--inject-loss", "0.25"]
    )
    (call,) = fake_run
    assert call["config"].mesh.port == 47001
    assert (call["socket_path"], call["drop"]) == ("/tmp/x.sock", 0.25)
    # A reload reads the same file; the config's log level may change then.
    assert (call["config_path"], call["log_level_fixed"]) == (str(config), False)
    assert f"cloudkernel[{os.getpid()}]: WARNING a warning" in result.stderr
    assert "an info line" not in result.stderr  # log.level = warning
    result = _invoke(["run", "--config", str(config), "--log-level", "info"])
    assert f"cloudkernel[{os.getpid()}]: INFO an info line" in result.stderr
    assert fake_run[1]["socket_path"] is None and fake_run[1]["drop"] == 0.0
    assert fake_run[1]["log_level_fixed"] is True  # --log-level outlasts reloads
    # $CLOUDKERNEL_SOCKET points clients at a daemon; it does not move run's socket.
    _invoke(["run", "--config", str(config)], env={"CLOUDKERNEL_SOCKET": "/tmp/other.sock"})
    assert fake_run[2]["socket_path"] is None


def test_run_without_a_config_file_takes_the_defaults(
    tmp_path: Path, fake_run: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "DEFAULT_CONFIG_PATH", str(tmp_path / "absent.toml"))
    _invoke(["run"])
    assert fake_run[0]["config"].mesh.port == 47475
    assert fake_run[0]["config_path"] is None  # a reload takes the built-in defaults again


def test_run_errors(tmp_path: Path, fake_run: list[dict[str, Any]]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[mesh]\nprot = 1\n")
    result = _invoke(["run", "--config", str(bad)], 2)
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"{bad}:2: ") and "prot" in line
    assert fake_run == []
    failing = tmp_path / "failing.toml"
    failing.write_text("[mesh]\nport = 1\n")
    result = _invoke(["run", "--config", str(failing)], 1)
    assert result.stderr.splitlines()[-1] == (
        "error: cannot open the multicast socket: Address in use"
    )
    assert "Usage" in _invoke(["run", "--inject-loss", "2"], 2).output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["demo", "--nodes", "5", "--liars", "2"], "too many for 5 nodes"),
        (["demo", "--nodes", "2"], "--nodes"),
        (["demo", "--loss", "1.5"], "--loss"),
        (["demo", "--duration", "0"], "--duration"),
        (["run", "--inject-loss", "2"], "--inject-loss"),
    ],
)
def test_demo_and_run_refuse_bad_arguments_before_starting_anything(
    args: list[str], message: str
) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
