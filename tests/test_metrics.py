"""The Prometheus exporter: the collector, real daemons scraped, a real Prometheus.

The collector is read against a daemon-like object whose node is a real
:class:`MeshNode` fed by another one in memory.  Real daemons run in a
private network namespace (tests/swarmproc.py); the scrapes and a real
Prometheus server (Debian ``prometheus``) run inside that namespace too, and
``promtool check metrics`` reads a real scrape.  The HTTP endpoint alone is
tested in tests/test_metrics_server.py.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from swarmproc import FAST_MEMBERSHIP, METRICS_PORT, LocalSwarm, sandbox_problem
from test_lag import FakeLoop

from cloudkernel import __version__
from cloudkernel.aio.control_server import ControlServer
from cloudkernel.aio.lag import LagStatistics, LoopLagMonitor
from cloudkernel.aio.transport import TransportStatistics
from cloudkernel.config import Config, parse_config
from cloudkernel.core.auth import KeyRing, SwarmKey
from cloudkernel.core.control import ErrorCode
from cloudkernel.core.mesh import MeshConfig, MeshNode
from cloudkernel.core.signals import make_signal
from cloudkernel.core.wire import DropReason
from cloudkernel.daemon import topic_policy
from cloudkernel.metrics import DaemonCollector, TopicSelection, renderer
from cloudkernel.realtime import RealtimeStatus
from cloudkernel.reload import ReloadStats
from cloudkernel.timing import DurationHistogram, HistogramStatistics

KEY = KeyRing(SwarmKey(bytes(range(32))))


# -- a daemon-like object ----------------------------------------------------


class _Transport:
    def __init__(self) -> None:
        self.stats = TransportStatistics(
            received=7,
            received_bytes=700,
            sent=5,
            sent_bytes=500,
            send_errors=1,
            injected_drops=0,
            truncated=0,
            callback_errors=0,
            shed_sent=(0, 1, 2),
            shed_received=(0, 0, 3),
            queued=4,
        )

    def statistics(self) -> TransportStatistics:
        return self.stats


@dataclass
class FakeDaemon:
    """The parts of :class:`cloudkernel.daemon.Daemon` the collector reads."""

    config: Config
    node: MeshNode
    transport: _Transport = field(default_factory=_Transport)
    control: ControlServer = field(
        default_factory=lambda: ControlServer("/nonexistent/metrics-test.sock", lambda r, c: None)
    )
    realtime: RealtimeStatus | None = None
    reload_stats: ReloadStats = field(default_factory=lambda: ReloadStats(last_success_unix=1e9))
    started: float = 0.0
    decode_time: DurationHistogram = field(default_factory=DurationHistogram)
    lag: LagStatistics | None = None

    def lag_statistics(self) -> LagStatistics | None:
        return self.lag

    def decode_statistics(self) -> HistogramStatistics:
        return self.decode_time.statistics()


CONFIG = """
[node]
id = 2
[consensus]
min_sources = 1
[[topic]]
pattern = "cfg/*"
"""


def _pair(config: Config, now: float) -> tuple[MeshNode, MeshNode]:
    mesh = MeshConfig(policy=topic_policy(config))
    return (
        MeshNode(1, 1, KEY, mesh, now=now),
        MeshNode(2, 1, KEY, replace(mesh), now=now),
    )


def _carry(a: MeshNode, b: MeshNode, now: float) -> None:
    a.handle_timer(now)
    for datagram in a.datagrams_to_send(now) + a.flush(now):
        b.feed(datagram, now)


@pytest.fixture
def fake() -> FakeDaemon:
    # The collector reads the clock itself: the nodes' time ends about now.
    config = parse_config(CONFIG)
    start = time.monotonic() - 2.0
    a, b = _pair(config, start)
    now = start
    for step in range(5):
        now = start + step * 0.5
        for name in ("t/b", "t/a", "t/c", "t/d", "cfg/z"):
            a.publish(make_signal(name, 20.0 + step * 0.01, ttl=60.0), now)
        b.publish(make_signal("t/a", 20.0, ttl=60.0), now)
        _carry(a, b, now)
        _carry(b, a, now)
    b.feed(b"\x00" * 40, now)  # a malformed datagram: one counted drop
    daemon = FakeDaemon(config, b, started=start)
    daemon.decode_time.observe(0.0003)
    daemon.decode_time.observe(0.2)
    return daemon


def _families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def _samples(text: str, name: str) -> list[Sample]:
    return [s for f in text_string_to_metric_families(text) for s in f.samples if s.name == name]


def _value(text: str, name: str, **labels: str) -> float:
    found = [
        s.value
        for s in _samples(text, name)
        if all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def _scrape(daemon: FakeDaemon) -> str:
    return renderer(daemon)()().decode()


# -- the collector -----------------------------------------------------------


def test_every_family_has_its_type_and_the_counters_read_the_node(fake: FakeDaemon) -> None:
    text = _scrape(fake)
    families = _families(text)
    types = {
        "cloudkernel_build_info": "gauge",
        "cloudkernel_datagrams_received": "counter",
        "cloudkernel_frames_dropped": "counter",
        "cloudkernel_signals_delivered": "counter",
        "cloudkernel_fec_repair_frames": "counter",
        "cloudkernel_fec_repair_frames_per_full_block": "gauge",
        "cloudkernel_peer_phi": "gauge",
        "cloudkernel_peer_state": "gauge",
        "cloudkernel_topic_value": "gauge",
        "cloudkernel_receive_batch_decode_seconds": "histogram",
        "cloudkernel_realtime_active": "gauge",
        "cloudkernel_config_reloads": "counter",
        "cloudkernel_config_last_reload_successful": "gauge",
        "process_cpu_seconds": "counter",
    }
    for name, kind in types.items():
        assert name in families, name
        assert families[name].type == kind, name
    assert _value(text, "cloudkernel_build_info", version=__version__) == 1.0
    stats = fake.node.statistics()
    assert stats.delivered > 0
    assert _value(text, "cloudkernel_signals_delivered_total") == stats.delivered
    assert _value(text, "cloudkernel_signals_published_total") == stats.published
    assert _value(text, "cloudkernel_datagrams_received_total") == 7
    assert _value(text, "cloudkernel_datagrams_shed_total", direction="receive", qos="bulk") == 3
    # Every drop reason is a series, counted or not.
    reasons = {s.labels["reason"] for s in _samples(text, "cloudkernel_frames_dropped_total")}
    assert reasons == {r.value for r in DropReason}
    assert _value(text, "cloudkernel_frames_dropped_total", reason="malformed") == 1
    assert _value(text, "cloudkernel_peers", state="alive") == 1
    assert _value(text, "cloudkernel_peer_state", peer="1", state="alive") == 1
    assert _value(text, "cloudkernel_peer_state", peer="1", state="dead") == 0
    assert 0.0 < _value(text, "cloudkernel_peer_reputation", peer="1") < 1.0
    assert _value(text, "cloudkernel_peer_loss_ratio", peer="1") == 0.0
    # The decode histogram: cumulative buckets, sum and count.
    assert _value(text, "cloudkernel_receive_batch_decode_seconds_count") == 2
    assert _value(text, "cloudkernel_receive_batch_decode_seconds_bucket", le="0.0005") == 1
    assert _value(text, "cloudkernel_receive_batch_decode_seconds_bucket", le="+Inf") == 2
    assert math.isclose(_value(text, "cloudkernel_receive_batch_decode_seconds_sum"), 0.2003)
    assert _value(text, "cloudkernel_config_reloads_total", result="failure") == 0
    assert _value(text, "cloudkernel_config_last_reload_success_timestamp_seconds") == 1e9
    # No lag monitor yet: no lag histogram rather than a made-up one.
    assert "cloudkernel_event_loop_lag_seconds" not in families
    # Control errors, every code a series; the server counts each error reply.
    assert families["cloudkernel_control_errors"].type == "counter"
    codes = {s.labels["code"] for s in _samples(text, "cloudkernel_control_errors_total")}
    assert codes == {code.value for code in ErrorCode}
    fake.control.counters.error(ErrorCode.NOT_AUTHORISED)
    after = _scrape(fake)
    assert _value(after, "cloudkernel_control_errors_total", code="not-authorised") == 1
    assert _value(after, "cloudkernel_control_errors_total", code="malformed") == 0


def test_topic_series_are_capped_and_configured_topics_come_first(fake: FakeDaemon) -> None:
    fake.config = replace(fake.config, metrics=replace(fake.config.metrics, max_topic_series=3))
    collector = DaemonCollector(fake)
    text = _text(collector)
    topics = {s.labels["topic"] for s in _samples(text, "cloudkernel_topic_updates_total")}
    # cfg/z matches a [[topic]] pattern: it gets a series although seen last;
    # then the earliest seen, by name within one scrape.
    assert topics == {"cfg/z", "t/a", "t/b"}
    assert _value(text, "cloudkernel_topics") == 5
    assert _value(text, "cloudkernel_topics_without_series") == 2
    assert _value(text, "cloudkernel_topic_sources", topic="t/a") == 2
    assert _value(text, "cloudkernel_topic_state", topic="t/a", state="ok") == 1
    assert 19.9 < _value(text, "cloudkernel_topic_value", topic="t/a") < 20.1
    for name in ("cloudkernel_topic_state", "cloudkernel_topic_value", "cloudkernel_topic_sigma"):
        assert {s.labels["topic"] for s in _samples(text, name)} <= topics
    # max_topic_series changes on reload: the next scrape follows it.
    fake.config = replace(fake.config, metrics=replace(fake.config.metrics, max_topic_series=0))
    text = _text(collector)
    assert _samples(text, "cloudkernel_topic_updates_total") == []
    assert _value(text, "cloudkernel_topics_without_series") == 5


def test_peer_series_are_capped_and_every_peer_still_counted(
    fake: FakeDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("cloudkernel.metrics.MAX_PEER_SERIES", 0)
    text = _scrape(fake)
    assert _value(text, "cloudkernel_peers", state="alive") == 1
    assert _value(text, "cloudkernel_peers_without_series") == 1
    for name in ("cloudkernel_peer_state", "cloudkernel_peer_phi", "cloudkernel_peer_reputation"):
        assert _samples(text, name) == []


def _text(collector: DaemonCollector) -> str:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry).decode()


def test_lag_histogram_realtime_and_reload_outcomes(fake: FakeDaemon) -> None:
    loop = FakeLoop()
    monitor = LoopLagMonitor(loop, interval=0.1, clock=loop.time)
    monitor.start()
    for late in (0.0, 0.003, 0.55):
        loop.fire(late)
    fake.lag = monitor.statistics()
    fake.realtime = RealtimeStatus(
        requested=fake.config.realtime,
        policy="SCHED_FIFO",
        priority=50,
        cpus=(0,),
        memory_locked=False,
        active=True,
        warnings=(),
    )
    fake.reload_stats.failed = 2
    fake.reload_stats.succeeded = 1
    fake.reload_stats.last_ok = False
    text = _scrape(fake)
    assert _value(text, "cloudkernel_event_loop_lag_seconds_count") == 3
    assert _value(text, "cloudkernel_event_loop_lag_seconds_bucket", le="0.005") == 2
    assert _value(text, "cloudkernel_event_loop_lag_seconds_bucket", le="+Inf") == 3
    assert _value(text, "cloudkernel_event_loop_lag_skipped_wakeups_total") == 5
    assert _value(text, "cloudkernel_realtime_active") == 1
    assert _value(text, "cloudkernel_config_reloads_total", result="failure") == 2
    assert _value(text, "cloudkernel_config_reloads_total", result="success") == 1
    assert _value(text, "cloudkernel_config_last_reload_successful") == 0


def test_topic_selection_is_stable_and_forgets_topics_no_longer_held() -> None:
    sel = TopicSelection()
    none = lambda t: False  # noqa: E731
    assert sel.choose(["b", "c"], 2, none) == ["b", "c"]
    # "a" comes later: it does not push out topics seen before it.
    assert sel.choose(["a", "b", "c"], 2, none) == ["b", "c"]
    # A configured topic does.
    assert sel.choose(["a", "b", "c"], 2, lambda t: t == "a") == ["a", "b"]
    # "b" is no longer held: its place goes to the next in line.
    assert sel.choose(["a", "c"], 2, none) == ["c", "a"]
    assert sel.choose(["a", "c"], 0, none) == []


def test_duration_histogram_counts_into_cumulative_buckets() -> None:
    h = DurationHistogram((0.001, 0.01))
    for seconds in (0.001, 0.0005, 0.005, 3.0, -1.0, math.nan):
        h.observe(seconds)
    stats = h.statistics()
    assert stats.buckets == ((0.001, 4), (0.01, 5), (math.inf, 6))
    assert stats.count == 6 and math.isclose(stats.sum, 3.0065)
    with pytest.raises(ValueError, match="increase"):
        DurationHistogram((0.01, 0.001))


# -- real daemons ------------------------------------------------------------------


_PROBLEM = sandbox_problem()
needs_sandbox = pytest.mark.skipif(
    _PROBLEM is not None, reason=f"no private network namespace: {_PROBLEM}"
)
_IN_CI = os.environ.get("CI", "") not in ("", "0", "false")


def _tool(name: str) -> str:
    """The path of a Prometheus tool; skips (outside CI) when it is missing."""
    path = shutil.which(name)
    if path is None:
        if _IN_CI:
            pytest.fail(f"{name} is missing: tools/setup.sh installs the Debian package prometheus")
        pytest.skip(
            f"{name} is missing (Debian package prometheus; tools/setup.sh installs it as root)"
        )
    return path


_FETCH = """
import sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
        sys.stdout.write(r.read().decode())
except urllib.error.HTTPError as e:
    sys.stdout.write(f"HTTP {e.code}")
except OSError as e:
    sys.stdout.write(f"ERROR {e}")
"""

_RAW = """
import socket, sys
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10) as s:
    s.sendall(bytes.fromhex(sys.argv[2]))
    s.shutdown(socket.SHUT_WR)
    data = b""
    while chunk := s.recv(65536):
        data += chunk
sys.stdout.write(data.split(b"\\r\\n", 1)[0].decode(errors="replace"))
"""


def _in_ns(swarm: LocalSwarm, code: str, *args: str) -> str:
    done = swarm.net.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return str(done.stdout)


def _fetch(swarm: LocalSwarm, url: str) -> str:
    return _in_ns(swarm, _FETCH, url)


_PORTS = iter(range(47800, 47850))


@pytest.fixture
def swarm2(tmp_path: Path) -> Iterator[LocalSwarm]:
    swarm = LocalSwarm(tmp_path, 2, port=next(_PORTS), extra=FAST_MEMBERSHIP, metrics=True)
    try:
        swarm.start_all()
        yield swarm
    finally:
        swarm.close()


def _metrics_url(node: int) -> str:
    return f"http://127.0.0.1:{METRICS_PORT + node}/metrics"


@needs_sandbox
def test_a_running_daemon_is_scraped_and_promtool_finds_nothing_to_say(
    swarm2: LocalSwarm, tmp_path: Path
) -> None:
    with swarm2.client(1) as client:
        client.publish("room/temp", 21.5, ttl=60.0)
        assert client.status()["metrics"] == f"127.0.0.1:{METRICS_PORT + 1}"

    def delivered() -> bool:
        text = _fetch(swarm2, _metrics_url(2))
        held = _samples(text, "cloudkernel_topic_sources")
        return any(s.labels["topic"] == "room/temp" and s.value == 1 for s in held)

    swarm2.wait_for(delivered, 15.0, "node 2's metrics never showed room/temp")
    text = _fetch(swarm2, _metrics_url(2))
    assert _value(text, "cloudkernel_signals_delivered_total") >= 1
    # One source of the default three: a topic without consensus yet.
    assert _value(text, "cloudkernel_topic_state", topic="room/temp", state="no-consensus") == 1
    assert _value(text, "cloudkernel_peer_state", peer="1", state="alive") == 1
    assert _value(text, "cloudkernel_event_loop_lag_seconds_count") >= 1
    assert _value(text, "cloudkernel_receive_batch_decode_seconds_count") >= 1
    promtool = _tool("promtool")
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout == "" and checked.stderr == ""


@needs_sandbox
def test_bad_http_requests_leave_the_daemon_serving(swarm2: LocalSwarm) -> None:
    port = str(METRICS_PORT + 1)
    bad = [
        b"BREW /metrics HTTP/1.1\r\n\r\n",
        b"GET /../../etc/passwd HTTP/1.1\r\n\r\n",
        b"GET /metrics HTTP/9.9\r\n\r\n",
        b"\x00\xff" * 6000,
        b"GET /metrics HTTP/1.1\r\n" + b"X-A: b\r\n" * 200 + b"\r\n",
    ]
    lines = [_in_ns(swarm2, _RAW, port, data.hex()) for data in bad]
    assert [line.split(" ", 2)[1] for line in lines] == ["405", "404", "505", "431", "431"]
    assert _fetch(swarm2, f"http://127.0.0.1:{port}/").startswith("<html>")
    assert "cloudkernel_build_info" in _fetch(swarm2, _metrics_url(1))
    with swarm2.client(1) as client:
        assert client.status()["node_id"] == 1
    # ... and it still stops cleanly, the exporter first.
    swarm2.kill(1, signal.SIGTERM)
    assert swarm2.procs[1].returncode == 0, swarm2.log(1)
    assert "stopped" in swarm2.log(1) and "Traceback" not in swarm2.log(1)


@needs_sandbox
def test_a_taken_metrics_address_stops_the_start_with_one_line(tmp_path: Path) -> None:
    swarm = LocalSwarm(tmp_path, 1, port=next(_PORTS), metrics=True)
    try:
        holder = swarm.net.popen(
            [
                sys.executable,
                "-c",
                "import socket, time\n"
                "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                f"s.bind(('127.0.0.1', {METRICS_PORT + 1})); s.listen(); print('ok', flush=True)\n"
                "time.sleep(60)",
            ],
            stdout=subprocess.PIPE,
        )
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"ok"
        swarm.start(1)
        proc = swarm.procs[1]
        proc.wait(30)
        assert proc.returncode == 1
        log = swarm.log(1)
        assert f"cannot serve metrics on 127.0.0.1:{METRICS_PORT + 1}" in log
        assert "Traceback" not in log
    finally:
        swarm.close()


_PROMETHEUS_CONFIG = """
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: cloudkernel
    static_configs:
      - targets: ["127.0.0.1:{port}"]
"""


@needs_sandbox
def test_a_real_prometheus_scrapes_the_daemon(swarm2: LocalSwarm, tmp_path: Path) -> None:
    prometheus = _tool("prometheus")
    with swarm2.client(1) as client:
        client.publish("room/temp", 21.5, ttl=60.0)
    home = tmp_path / "prometheus"
    home.mkdir()
    (home / "prometheus.yml").write_text(_PROMETHEUS_CONFIG.format(port=METRICS_PORT + 1))
    # Inside the swarm's namespace: its loopback, no port of the host's.
    web = "127.0.0.1:9090"
    log = open(home / "prometheus.log", "wb")
    server = swarm2.net.popen(
        [
            prometheus,
            f"--config.file={home / 'prometheus.yml'}",
            f"--storage.tsdb.path={home / 'data'}",
            f"--web.listen-address={web}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    try:

        def query(promql: str) -> list[dict[str, Any]]:
            from urllib.parse import quote

            answer = _fetch(swarm2, f"http://{web}/api/v1/query?query={quote(promql)}")
            if not answer.startswith("{"):
                return []
            reply = json.loads(answer)
            assert reply["status"] == "success", reply
            result: list[dict[str, Any]] = reply["data"]["result"]
            return result

        deadline = time.monotonic() + 60.0
        build: list[dict[str, Any]] = []
        published: list[dict[str, Any]] = []
        while time.monotonic() < deadline and server.poll() is None:
            build = query("cloudkernel_build_info")
            published = query("cloudkernel_signals_published_total > 0")
            if build and published:
                break
            time.sleep(0.5)
        logged = (home / "prometheus.log").read_text(errors="replace")
        assert build, f"no cloudkernel_build_info in Prometheus:\n{logged[-3000:]}"
        assert build[0]["metric"]["version"] == __version__
        assert build[0]["metric"]["job"] == "cloudkernel"
        assert published and float(published[0]["value"][1]) >= 1
        up = query('up{job="cloudkernel"}')
        assert up and up[0]["value"][1] == "1"
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
