"""Tests of cloudkernel.config: the embedded default, merging, every section,
errors with their line and field, the "auto" settings, topic policies, and a
fuzz of random and mutated files (a ConfigError or a Config, nothing else).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudkernel.config import (
    LIVE_RELOADABLE,
    MAX_CONFIG_BYTES,
    POLICY_CACHE_SIZE,
    Config,
    default_config_text,
    derive_node_id,
    is_live_reloadable,
    load_config,
    parse_config,
    resolve_socket_path,
)
from cloudkernel.consensus import FilterConfig, ReputationConfig
from cloudkernel.core.membership import MembershipConfig
from cloudkernel.core.redundancy import RedundancyPolicy
from cloudkernel.core.sender import ClassConfig, SenderConfig, default_classes
from cloudkernel.core.signals import QoS
from cloudkernel.errors import ConfigError

SRC = "test.toml"


def error_of(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text, SRC)
    return info.value


# -- the default --------------------------------------------------------------


def test_default_text_parses_and_equals_load_none() -> None:
    assert parse_config(default_config_text()) == load_config(None)


def test_empty_file_is_the_default(tmp_path: Path) -> None:
    path = tmp_path / "empty.toml"
    path.write_text("")
    config = load_config(path)
    assert config == load_config(None)
    assert config.source == str(path)
    assert parse_config("# nothing\n\n") == load_config(None)


def test_default_values_match_the_objects_they_feed() -> None:
    config = load_config(None)
    assert config.sender_config() == SenderConfig()
    assert config.qos.classes() == default_classes()
    assert config.consensus.filter == FilterConfig()
    assert config.consensus.reputation == ReputationConfig()
    assert config.membership == MembershipConfig()
    assert config.consensus.qos is QoS.NORMAL
    assert config.node.id == "auto"
    assert config.mesh.interfaces == ("auto",)
    assert config.control.mode == 0o660
    assert config.topics == ()


def test_default_file_sets_every_key() -> None:
    # Every key the checker knows is in the default file, so nothing is
    # silently missing from the operators' template.
    data = tomllib.loads(default_config_text())
    summary = load_config(None).summary()
    for section, values in summary.items():
        if section in ("source", "topic"):
            continue
        assert section in data
        if section == "qos":
            for name in ("critical", "normal", "bulk"):
                assert data["qos"][name].keys() == values[name].keys()
        elif section == "consensus":
            # kind and dims come from each topic's first value or its [[topic]] entry
            assert data["consensus"].keys() == values.keys() - {"kind", "dims"}
        else:
            assert data[section].keys() == values.keys(), section


def test_summary_is_plain_json_data() -> None:
    summary = load_config(None).summary()
    again = json.loads(json.dumps(summary, allow_nan=False))
    assert again == summary
    assert summary["consensus"]["lower"] == "-inf"
    assert summary["control"]["mode"] == "0660"
    assert summary["qos"]["critical"] == {
        "budget_ms": 2.0,
        "k_max": 8,
        "target": 1e-9,
        "m_min": 2,
        "m_max": 16,
        "fixed_m": -1,
    }


# -- happy paths, section by section -----------------------------------------


def test_node_section(tmp_path: Path) -> None:
    path = tmp_path / "ck.toml"
    path.write_text('[node]\nid = 42\nkey_file = "keys/swarm.key"\nstate_dir = "/srv/ck"\n')
    node = load_config(path).node
    assert node.id == 42
    assert node.key_file == str(tmp_path / "keys" / "swarm.key")
    assert node.state_dir == "/srv/ck"
    assert node.resolve_id() == 42
    # Text without a base directory keeps relative paths as written.
    assert parse_config('[node]\nkey_file = "k"\n').node.key_file == "k"


def test_next_key_file(tmp_path: Path) -> None:
    path = tmp_path / "ck.toml"
    path.write_text('[node]\nnext_key_file = "keys/new.key"\n')
    assert load_config(path).node.next_key_file == str(tmp_path / "keys" / "new.key")
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    assert load_config(empty).node.next_key_file == ""  # stays "": not made a path
    with pytest.raises(ConfigError, match="without NUL"):
        parse_config('[node]\nnext_key_file = "a\\u0000b"')


def test_control_access_settings() -> None:
    defaults = parse_config("")
    assert (defaults.control.group, defaults.control.readers) == ("cloudkernel", "group")
    control = parse_config('[control]\ngroup = ""\nreaders = "any"\n').control
    assert (control.group, control.readers) == ("", "any")
    for bad, words in [
        ('[control]\nreaders = "all"', "must be one of"),
        ('[control]\ngroup = "bad group"', "must be a group name"),
        ("[control]\ngroup = 0", "must be a group name"),
    ]:
        with pytest.raises(ConfigError, match=words):
            parse_config(bad)


def test_mesh_section() -> None:
    mesh = parse_config(
        """
[mesh]
group = "239.1.2.3"
group6 = ""
port = 5000
interfaces = ["wlan0", "eth0"]
ttl = 4
loopback = false
max_datagram = 1400
encrypt = true
frame_rs_nsym = 16
relay = true
hop_limit = 7
send_queue_limit = 100
receive_backlog_limit = 200
"""
    ).mesh
    assert mesh.group == "239.1.2.3" and mesh.group6 == "" and mesh.port == 5000
    assert mesh.interfaces == ("wlan0", "eth0")
    assert (mesh.ttl, mesh.loopback, mesh.max_datagram) == (4, False, 1400)
    assert (mesh.encrypt, mesh.frame_rs_nsym, mesh.relay, mesh.hop_limit) == (True, 16, True, 7)
    assert (mesh.send_queue_limit, mesh.receive_backlog_limit) == (100, 200)


def test_membership_section() -> None:
    m = parse_config("[membership]\nheartbeat_interval = 1\ndead_after = 3\nmax_peers = 8\n")
    assert m.membership.heartbeat_interval == 1.0
    assert isinstance(m.membership.heartbeat_interval, float)
    assert m.membership.dead_after == 3.0 and m.membership.max_peers == 8


def test_qos_sections_build_class_configs() -> None:
    config = parse_config(
        "[qos.bulk]\nbudget_ms = 100\nk_max = 16\ntarget = 1e-4\nfixed_m = 3\n"
        "[qos.critical]\nm_max = 20\n"
    )
    assert config.qos.bulk == ClassConfig(0.1, 16, RedundancyPolicy(1e-4, 1, 32, 3))
    assert config.qos.critical.policy.m_max == 20
    sender = config.sender_config()
    assert sender.classes[QoS.BULK] is config.qos.bulk
    receiver = config.receiver_config(7)
    assert receiver.node_id == 7 and receiver.max_datagram == 1232


def test_control_realtime_metrics_log_sections() -> None:
    config = parse_config(
        """
[control]
socket = "/run/ck.sock"
max_clients = 8
mode = "0600"
[realtime]
priority = 50
cpu = 3
lock_memory = true
freeze_gc = false
[metrics]
listen = "[::1]:9100"
max_topic_series = 0
[log]
level = "debug"
"""
    )
    assert (config.control.socket, config.control.max_clients, config.control.mode) == (
        "/run/ck.sock",
        8,
        0o600,
    )
    assert config.control.socket_path(euid=1000, environ={}) == "/run/ck.sock"
    assert dataclasses.astuple(config.realtime) == (50, 3, True, False)
    assert config.metrics.address == ("::1", 9100)
    assert parse_config('[metrics]\nlisten = ""').metrics.address is None
    assert load_config(None).metrics.address == ("127.0.0.1", 9475)
    assert config.log.level == "debug"
    for mode in ('"660"', '"0o640"'):
        assert parse_config(f"[control]\nmode = {mode}").control.mode in (0o660, 0o640)


def test_consensus_section() -> None:
    config = parse_config(
        """
[consensus]
qos = "critical"
min_sources = 2
lower = -10
upper = 10
fault_model = "consistent"
[consensus.reputation]
forgetting = 0.8
probation_rounds = 5
"""
    )
    f = config.consensus.filter
    assert (f.kind, f.min_sources, f.lower, f.upper, f.fault_model) == (
        "scalar",
        2,
        -10.0,
        10.0,
        "consistent",
    )
    assert config.consensus.qos is QoS.CRITICAL
    assert config.consensus.reputation == ReputationConfig(forgetting=0.8, probation_rounds=5)


def test_merge_keeps_unset_keys() -> None:
    config = parse_config("[mesh]\nport = 1234\n[qos.normal]\nk_max = 4\n")
    default = load_config(None)
    assert config.mesh == dataclasses.replace(default.mesh, port=1234)
    assert config.qos.normal.k_max == 4
    assert config.qos.normal.policy == default.qos.normal.policy
    assert config.qos.bulk == default.qos.bulk
    assert config.membership == default.membership


# -- topics --------------------------------------------------------------------

TOPICS = """
[consensus]
min_sources = 5

[[topic]]
pattern = "robot/*/pose"
kind = "vector"
dims = 3
qos = "critical"

[[topic]]
pattern = "robot/*"
min_sources = 2

[[topic]]
pattern = "robot/7/pose"
kind = "category"
"""


def test_policy_for_first_match_merged_over_consensus() -> None:
    config = parse_config(TOPICS)
    pose = config.policy_for("robot/1/pose")
    assert (pose.index, pose.pattern, pose.kind, pose.qos) == (
        0,
        "robot/*/pose",
        "vector",
        QoS.CRITICAL,
    )
    assert pose.filter.dims == 3 and pose.filter.min_sources == 5
    # The first match wins, even over a more specific later entry.
    assert config.policy_for("robot/7/pose").index == 0
    other = config.policy_for("robot/battery")
    assert (other.index, other.kind, other.qos, other.filter.min_sources) == (
        1,
        "scalar",
        QoS.NORMAL,
        2,
    )
    # Globs match the whole name, case-sensitively.
    assert config.policy_for("Robot/x").index is None
    fallback = config.policy_for("weather")
    assert fallback.pattern is None and fallback.filter == config.consensus.filter
    assert [t.pattern for t in config.topics] == ["robot/*/pose", "robot/*", "robot/7/pose"]


def test_policy_cache_is_bounded() -> None:
    config = parse_config(TOPICS)
    first = config.policy_for("robot/0/pose")
    assert config.policy_for("robot/0/pose") is first
    for i in range(POLICY_CACHE_SIZE + 10):
        config.policy_for(f"t/{i}")
    assert len(config._policies) == POLICY_CACHE_SIZE
    assert config.policy_for("robot/0/pose") == first


# -- errors --------------------------------------------------------------------


def test_syntax_error_keeps_tomllib_position() -> None:
    err = error_of("[mesh]\nport = 1\nttl = = 2\n")
    assert err.line == 3 and err.field is None and err.source == SRC
    assert "line 3, column" in str(err)
    assert str(err).startswith("test.toml:3: TOML syntax error: ")


def test_unknown_key_suggests_nearest() -> None:
    err = error_of("# comment\n[mesh]\nport = 1\nhop_limt = 2\n")
    assert (err.line, err.field) == (4, "mesh.hop_limt")
    assert "did you mean 'hop_limit'?" in str(err)
    err = error_of("\n[membrship]\n")
    assert (err.line, err.field) == (2, "membrship")
    assert "did you mean [membership]?" in str(err)
    err = error_of('level = "info"\n')
    assert err.field == "level" and "in [log]" in str(err)
    err = error_of("[consensus.reputation]\nforget = 0.5\n")
    assert (err.line, err.field) == (2, "consensus.reputation.forget")
    err = error_of('[[topic]]\npattern = "a"\n[[topic]]\npattern = "b"\nmin_source = 2\n')
    assert (err.line, err.field) == (5, "topic[1].min_source")
    assert "did you mean 'min_sources'?" in str(err)


def test_wrong_types() -> None:
    err = error_of("[mesh]\nport = true\n")
    assert str(err) == "test.toml:2: mesh.port: must be an integer in 1..65535, got true"
    err = error_of('[mesh]\nport = "47475"\n')
    assert (err.line, err.field) == (2, "mesh.port")
    err = error_of("[mesh]\nloopback = 1\n")
    assert err.field == "mesh.loopback"
    err = error_of("[consensus]\nmin_sources = 2.0\n")
    assert err.field == "consensus.min_sources" and "integer" in str(err)
    err = error_of("mesh = 3\n")
    assert err.field == "mesh" and "table" in str(err)
    err = error_of("[control]\nmode = 0o660\n")
    assert err.field == "control.mode"
    # An integer is a float.
    assert parse_config("[consensus]\ndefault_sigma = 2\n").consensus.filter.default_sigma == 2.0


def test_out_of_range_with_exact_message() -> None:
    text = "[node]\nid = 1\n\n[mesh]\n# the port\nport = 70000\n"
    err = error_of(text)
    assert str(err) == "test.toml:6: mesh.port: must be an integer in 1..65535, got 70000"
    assert (err.source, err.line, err.field) == (SRC, 6, "mesh.port")
    assert err.message == "must be an integer in 1..65535, got 70000"
    assert isinstance(err, ValueError)
    cases = {
        "[mesh]\nttl = 0": "mesh.ttl",
        "[mesh]\nhop_limit = 16": "mesh.hop_limit",
        "[mesh]\nmax_datagram = 255": "mesh.max_datagram",
        "[mesh]\nmax_datagram = 300": "mesh.max_datagram",
        '[mesh]\ngroup = "10.0.0.1"': "mesh.group",
        '[mesh]\ngroup6 = "fe80::1"': "mesh.group6",
        '[mesh]\ninterfaces = ["a/b"]': "mesh.interfaces",
        "[mesh]\ninterfaces = []": "mesh.interfaces",
        "[node]\nid = 0": "node.id",
        f"[node]\nid = {2**32}": "node.id",
        "[membership]\nphi_threshold = nan": "membership.phi_threshold",
        "[membership]\ndead_after = 0": "membership.dead_after",
        "[membership]\nmax_peers = 65537": "membership.max_peers",
        "[qos.normal]\ntarget = 1.0": "qos.normal.target",
        "[qos.normal]\nbudget_ms = 0": "qos.normal.budget_ms",
        "[qos.critical]\nm_min = 17": "qos.critical.m_min",
        "[qos.bulk]\nm_max = 200": "qos.bulk.m_max",
        '[control]\nsocket = "relative.sock"': "control.socket",
        '[control]\nmode = "0460"': "control.mode",
        "[realtime]\npriority = 100": "realtime.priority",
        "[realtime]\ncpu = -2": "realtime.cpu",
        '[metrics]\nlisten = "127.0.0.1"': "metrics.listen",
        '[log]\nlevel = "trace"': "log.level",
        '[consensus]\nkind = "matrix"': "consensus.kind",
        "[consensus]\nmax_sources = 2": "consensus.max_sources",
        "[consensus]\nagree_sigmas = inf": "consensus.agree_sigmas",
        "[consensus.reputation]\nforgetting = 1.5": "consensus.reputation.forgetting",
        "[consensus.reputation]\nflag_below = 0.05": "consensus.reputation.flag_below",
    }
    for text, field in cases.items():
        err = error_of(text)
        assert (err.field, err.line) == (field, 2), (text, str(err))
        assert "\n" not in str(err)


def test_bad_pattern() -> None:
    err = error_of('[[topic]]\npattern = "a/*"\n\n[[topic]]\npattern = "robot/[abc"\n')
    assert (err.line, err.field) == (5, "topic[1].pattern")
    assert "unclosed '['" in str(err)
    for bad in ('""', "3", '"a\\u0007b"'):
        err = error_of(f"[[topic]]\npattern = {bad}\n")
        assert (err.line, err.field) == (2, "topic[0].pattern")
    err = error_of('[[topic]]\nkind = "vector"\n')
    assert (err.line, err.field) == (1, "topic[0]") and "pattern" in str(err)
    err = error_of('[topic]\npattern = "x"\n')
    assert err.field == "topic" and "[[topic]]" in str(err)


def test_filter_rule_broken_in_topic_entry() -> None:
    text = (
        '[[topic]]\npattern = "a"\n'
        '[[topic]]\npattern = "b"\n'
        '[[topic]]\npattern = "c/*"\nkind = "scalar"\ndims = 3\n'
    )
    err = error_of(text)
    assert (err.line, err.field) == (8, "topic[2].dims")
    assert err.message == "must be 1 unless kind is vector, got 3"
    # The entry's minimum above [consensus]'s maximum: blamed on the entry's key.
    err = error_of('[consensus]\nmax_sources = 4\n[[topic]]\npattern = "x"\nmin_sources = 5\n')
    assert (err.field, err.line) == ("topic[0].min_sources", 5)
    assert "max_sources must be an int in min_sources..1024, got 4" in str(err)
    err = error_of('[[topic]]\npattern = "x"\nmin_sigma = -1\n')
    assert (err.field, err.line) == ("topic[0].min_sigma", 3)


def test_inline_and_dotted_keys_are_located() -> None:
    err = error_of("mesh.port = 0\n")
    assert (err.field, err.line) == ("mesh.port", 1)
    err = error_of("\n[qos]\nbulk = { k_max = 0 }\n")
    assert (err.field, err.line) == ("qos.bulk.k_max", 3)
    err = error_of('\nmsg = """\nport = 1\n"""\n[mesh]\nport = 0\n')
    assert err.field == "msg"
    # A header and key inside a multi-line string are not taken for real ones.
    err = error_of('[log]\nlevel = """\n[mesh]\nport = 1\n"""\n[mesh]\nport = 0\n')
    assert (err.field, err.line) == ("mesh.port", 7)


def test_config_error_pickles_with_its_place() -> None:
    err = error_of("[mesh]\nport = 0\n")
    again = pickle.loads(pickle.dumps(err))
    assert (again.source, again.line, again.field, str(again)) == (
        err.source,
        err.line,
        err.field,
        str(err),
    )
    assert str(ConfigError("bare")) == "bare"


# -- files ---------------------------------------------------------------------


def test_file_over_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.toml"
    path.write_bytes(b"#" * (MAX_CONFIG_BYTES + 1))
    with pytest.raises(ConfigError, match="larger than") as info:
        load_config(path)
    assert info.value.source == str(path)
    with pytest.raises(ConfigError, match="larger than"):
        parse_config("#" * (MAX_CONFIG_BYTES + 1))
    path.write_bytes(b"#" * (MAX_CONFIG_BYTES - 1) + b"\n")
    assert load_config(path) == load_config(None)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot open"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config(fifo)
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[log]\n# caf\xe9\nlevel = "info"\n')
    with pytest.raises(ConfigError, match="UTF-8") as info:
        load_config(path)
    assert info.value.line == 2


def test_error_from_file_names_path_and_line(tmp_path: Path) -> None:
    path = tmp_path / "ck.toml"
    path.write_text("[mesh]\n\nport = 70000\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}:3: mesh.port: must be an integer in 1..65535, got 70000"


# -- the "auto" settings ---------------------------------------------------------

MID = "0123456789abcdef0123456789abcdef"


def test_node_id_derivation_is_stable_and_never_zero() -> None:
    a = derive_node_id(MID + "\n", "host")
    assert a == derive_node_id(MID, "other-host") == derive_node_id(MID.upper(), "x")
    assert 1 <= a <= 2**32 - 1
    assert derive_node_id(None, "robot-1") == derive_node_id("", "ROBOT-1\n")
    assert derive_node_id(None, "robot-1") != derive_node_id(None, "robot-2")
    # An invalid machine id (not 32 hex digits, or all zero) falls back to the hostname.
    assert derive_node_id("uninitialized\n", "h") == derive_node_id(None, "h")
    assert derive_node_id("0" * 32, "h") == derive_node_id(None, "h")
    assert derive_node_id(MID, "h") != derive_node_id(None, "h")
    for i in range(2000):
        assert derive_node_id(None, f"n{i}") != 0
    assert derive_node_id(None, "") != 0


def test_node_resolve_id_reads_machine_id(tmp_path: Path) -> None:
    node = load_config(None).node
    mid = tmp_path / "machine-id"
    mid.write_text(MID + "\n")
    assert node.resolve_id(machine_id_path=str(mid), hostname="h") == derive_node_id(MID, "h")
    missing = str(tmp_path / "none")
    assert node.resolve_id(machine_id_path=missing, hostname="h") == derive_node_id(None, "h")


def test_socket_path_resolution() -> None:
    env = {"XDG_RUNTIME_DIR": "/run/user/1000"}
    assert resolve_socket_path("auto", 0, env) == "/run/cloudkernel/control.sock"
    assert resolve_socket_path("auto", 1000, env) == "/run/user/1000/cloudkernel/control.sock"
    assert resolve_socket_path("auto", 1000, {}) == "/tmp/cloudkernel-1000/control.sock"
    assert resolve_socket_path("auto", 1000, {"XDG_RUNTIME_DIR": ""}) == (
        "/tmp/cloudkernel-1000/control.sock"
    )
    assert resolve_socket_path("auto", 5, {"XDG_RUNTIME_DIR": "relative"}) == (
        "/tmp/cloudkernel-5/control.sock"
    )
    long = {"XDG_RUNTIME_DIR": "/" + "x" * 120}
    assert resolve_socket_path("auto", 5, long) == "/tmp/cloudkernel-5/control.sock"
    assert resolve_socket_path("/srv/ck.sock", 0, env) == "/srv/ck.sock"
    control = load_config(None).control
    assert control.socket_path(euid=0, environ={}) == "/run/cloudkernel/control.sock"


# -- reload ----------------------------------------------------------------------


def test_live_reloadable_and_restart_required() -> None:
    assert {"membership", "qos", "consensus", "topic", "log"} <= LIVE_RELOADABLE
    assert is_live_reloadable("qos.bulk.k_max")
    assert is_live_reloadable("metrics.max_topic_series")
    assert not is_live_reloadable("metrics.listen")
    assert not is_live_reloadable("mesh.port")
    old = load_config(None)
    new = parse_config(
        '[mesh]\nport = 1\n[log]\nlevel = "error"\n[metrics]\nmax_topic_series = 1\n'
        '[[topic]]\npattern = "x"\n'
    )
    assert old.restart_required(new) == ("mesh.port",)
    assert old.restart_required(load_config(None)) == ()


# -- fuzz --------------------------------------------------------------------------


def _parse_or_config_error(text: str) -> str | None:
    """Parse ``text``; None when it gave a usable Config or a well-formed
    ConfigError, else what was wrong (any other exception propagates)."""
    try:
        config = parse_config(text, SRC)
    except ConfigError as err:
        shown = str(err)
        if not shown.startswith(SRC) or "\n" in shown:
            return f"not one line starting with the source: {shown!r}"
        if err.line is not None and not 1 <= err.line <= text.count("\n") + 1:
            return f"line {err.line} outside the text"
        return None
    if not isinstance(config, Config):
        return f"parse_config returned {type(config).__name__}"
    config.summary()
    config.sender_config()
    config.policy_for("robot/1/pose")
    return None


@settings(max_examples=300)
@given(st.text(max_size=300))
def test_fuzz_random_text(text: str) -> None:
    assert _parse_or_config_error(text) is None


_DEFAULT_LINES = default_config_text().split("\n")
_FRAGMENTS = st.sampled_from(
    [
        "",
        "0",
        "-1",
        "1e400",
        "nan",
        "inf",
        "true",
        '"x"',
        '"auto"',
        "[]",
        "{}",
        "[[topic]]",
        "[topic]",
        "[mesh]",
        'pattern = "a[',
        'pattern = "*"',
        "kind = 'vector'",
        "dims = 99",
        "= 1",
        "1979-05-27T07:32:00Z",
        "99999999999999999999",
        '"""',
        "'''",
        "[[",
        "]",
        "mesh.port = 0",
        "{ k_max = 0 }",
        "\\u0000",
    ]
)


@st.composite
def _mutated_default(draw: st.DrawFn) -> str:
    lines = list(_DEFAULT_LINES)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["replace-value", "replace", "insert", "delete", "cut"]))
        fragment = draw(st.one_of(_FRAGMENTS, st.text(max_size=20)))
        if action == "replace-value" and "=" in lines[i]:
            lines[i] = lines[i].split("=", 1)[0] + "= " + fragment
        elif action == "replace":
            lines[i] = fragment
        elif action == "insert":
            lines.insert(i, fragment)
        elif action == "delete":
            del lines[i]
        else:
            cut = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:cut]
    return "\n".join(lines)


@settings(max_examples=300)
@given(_mutated_default())
def test_fuzz_mutated_default(text: str) -> None:
    assert _parse_or_config_error(text) is None


@settings(max_examples=200)
@given(
    st.sampled_from(
        [
            ("mesh", "port"),
            ("mesh", "max_datagram"),
            ("membership", "dead_after"),
            ("qos.bulk", "m_max"),
            ("qos.critical", "budget_ms"),
            ("consensus", "min_sources"),
            ("consensus", "lower"),
            ("consensus.reputation", "prior_agree"),
            ("realtime", "cpu"),
        ]
    ),
    st.one_of(
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.booleans(),
    ),
)
def test_fuzz_numeric_values(place: tuple[str, str], value: int | float | bool) -> None:
    section, key = place
    shown = str(value).lower() if isinstance(value, bool) else repr(value)
    if isinstance(value, float) and not math.isfinite(value):
        shown = "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    assert _parse_or_config_error(f"[{section}]\n{key} = {shown}\n") is None


def test_deep_nesting_is_a_config_error() -> None:
    err = error_of("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    assert err.source == SRC


def test_consensus_has_no_kind_of_its_own() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config('[consensus]\nkind = "vector"\n')
    assert info.value.field == "consensus.kind"
    assert info.value.line == 2


def test_an_ipv6_only_swarm_and_no_swarm_at_all() -> None:
    config = parse_config('[mesh]\ngroup = ""\n')
    assert (config.mesh.group, config.mesh.group6) == ("", "ff02::6b63")
    with pytest.raises(ConfigError) as info:
        parse_config('[mesh]\ngroup = ""\ngroup6 = ""\n')
    assert info.value.field == "mesh.group" and "at least one" in str(info.value)
