"""The Prometheus exporter's collector (cloudkernel/metrics.py).

The collector is read against a daemon-like object whose node is a real
:class:`MeshNode` fed by another one in memory.  The HTTP endpoint alone is
tested in tests/test_metrics_server.py.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from test_lag import FakeLoop

from cloudkernel import __version__
from cloudkernel.aio.control_server import ControlServer
from cloudkernel.aio.lag import LagStatistics, LoopLagMonitor
from cloudkernel.aio.transport import TransportStatistics
from cloudkernel.config import Config, parse_config
from cloudkernel.core.auth import KeyRing, SwarmKey
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
    return renderer(daemon)().decode()


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
