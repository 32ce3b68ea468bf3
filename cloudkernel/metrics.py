"""The daemon's Prometheus metrics, read from its counters at scrape time.

:class:`DaemonCollector` is a prometheus_client custom collector: each scrape
calls :meth:`DaemonCollector.collect`, which reads the ``statistics()``
snapshots of the node, its transport, the loop-lag monitor and the decode-time
histogram and yields metric families.  Nothing on the data path calls into
prometheus_client.  :func:`make_registry` puts the collector (and
prometheus_client's process collector) on a registry of its own, never the
library's global one.  docs/METRICS.md lists every metric.

Rules it keeps:

* Names and units by the Prometheus conventions: ``cloudkernel_`` prefix,
  counters end in ``_total``, units in the name (``_seconds``, ``_bytes``,
  ``_ratio``).
* Every label has a bounded set of values.  Drop reasons and QoS classes are
  closed sets, every value exported (also at 0).  Peers: at most
  :data:`MAX_PEER_SERIES` get series of their own (lowest node ids first;
  the peer table itself holds at most ``membership.max_peers``); all peers
  are counted by state.  Topics: at most ``metrics.max_topic_series`` (read
  at each scrape, so a reload applies) get series of their own, chosen by
  :class:`TopicSelection`; all topics are counted.
* A scrape costs at most one estimate per exported topic.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Final, Protocol

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from . import __version__
from . import fec as _fec
from .aio.control_server import ControlServer
from .aio.lag import LagStatistics
from .aio.transport import TransportStatistics
from .config import Config
from .consensus import DROP_REASONS
from .core.membership import PeerState
from .core.mesh import SIGNAL_DROP_REASONS, UNFUSED_REASONS, MeshNode
from .core.redundancy import choose_m
from .core.signals import QoS
from .core.wire import DropReason
from .realtime import RealtimeStatus
from .reload import ReloadStats
from .timing import HistogramStatistics

__all__ = [
    "MAX_PEER_SERIES",
    "DaemonCollector",
    "ExportedDaemon",
    "TopicSelection",
    "make_registry",
    "renderer",
]

#: peers with series of their own at most (the lowest node ids)
MAX_PEER_SERIES: Final = 256
#: a topic estimate's states, the values of the ``state`` label
TOPIC_STATES: Final = ("ok", "no-consensus", "stale")
#: why a delivered signal did not enter consensus: the closed set
UNFUSED_LABELS: Final = (*UNFUSED_REASONS, *(f"consensus-{r}" for r in DROP_REASONS))
_QOS_NAMES: Final = tuple(q.name.lower() for q in QoS)
_P = "cloudkernel_"


class _Transport(Protocol):
    def statistics(self) -> TransportStatistics: ...


class ExportedDaemon(Protocol):
    """What the collector reads of a daemon (:class:`cloudkernel.daemon.Daemon`)."""

    @property
    def config(self) -> Config: ...
    @property
    def node(self) -> MeshNode: ...
    @property
    def transport(self) -> _Transport: ...
    @property
    def control(self) -> ControlServer: ...
    @property
    def realtime(self) -> RealtimeStatus | None: ...
    @property
    def reload_stats(self) -> ReloadStats: ...
    @property
    def started(self) -> float: ...

    def lag_statistics(self) -> LagStatistics | None: ...
    def decode_statistics(self) -> HistogramStatistics: ...


class TopicSelection:
    """Which topics get series of their own, kept stable from scrape to scrape.

    Each topic gets a rank when the exporter first sees it (topics first seen
    in the same scrape: by name).  The topics with series are the first
    ``limit`` in the order (configured first, then rank): a topic that a
    ``[[topic]]`` pattern matches comes before every topic none matches, and
    among each group the earlier seen first.  A topic no longer held loses its
    rank.  Memory: one entry per topic held.
    """

    __slots__ = ("_next", "_rank")

    def __init__(self) -> None:
        self._rank: dict[str, int] = {}
        self._next = 0

    def choose(
        self, held: Sequence[str], limit: int, configured: Callable[[str], bool]
    ) -> list[str]:
        """The topics of ``held`` (sorted) that get series, in export order."""
        rank = self._rank
        if len(rank) != len(held) or any(t not in rank for t in held):
            keep = set(held)
            for gone in [t for t in rank if t not in keep]:
                del rank[gone]
            for topic in held:
                if topic not in rank:
                    rank[topic] = self._next
                    self._next += 1
        if limit <= 0:
            return []
        return sorted(rank, key=lambda t: (not configured(t), rank[t]))[:limit]


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(_P + name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(_P + name, doc, value=value)


def _histogram(
    name: str, doc: str, buckets: Iterable[tuple[float, int]], total: float
) -> HistogramMetricFamily:
    return HistogramMetricFamily(
        _P + name,
        doc,
        buckets=[("+Inf" if math.isinf(b) else repr(b), float(n)) for b, n in buckets],
        sum_value=total,
    )


class DaemonCollector:
    """Yields the daemon's metric families at each scrape (see the module docstring).

    :param daemon: the running daemon.
    :param clock: monotonic seconds (the daemon's clock).
    :param wall: Unix seconds.
    """

    def __init__(
        self,
        daemon: ExportedDaemon,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._daemon = daemon
        self._clock = clock
        self._wall = wall
        self._topics = TopicSelection()

    def describe(self) -> list[Metric]:
        # No metric at registration: collect() reads state and may only run
        # on the daemon's loop.
        return []

    def collect(self) -> Iterator[Metric]:
        now = self._clock()
        yield from self._info(now)
        yield from self._transport()
        yield from self._node()
        yield from self._fec(now)
        yield from self._peers(now)
        yield from self._topic_families(now)
        yield from self._loop()
        yield from self._operations()

    # -- families -------------------------------------------------------------

    def _info(self, now: float) -> Iterator[Metric]:
        d = self._daemon
        info = GaugeMetricFamily(
            _P + "build_info",
            "Always 1; the version and the FEC implementation (compiled or python) as labels",
            labels=["version", "implementation"],
        )
        info.add_metric([__version__, _fec.IMPLEMENTATION], 1.0)
        yield info
        yield _gauge("node_id", "This node's id", d.node.node_id)
        yield _gauge("node_epoch", "This node's sender epoch", d.node.sender.epoch)
        yield _gauge(
            "start_time_seconds",
            "When the daemon started, Unix seconds",
            self._wall() - (now - d.started),
        )

    def _transport(self) -> Iterator[Metric]:
        t = self._daemon.transport.statistics()
        yield _counter("datagrams_received", "Datagrams read from the sockets", t.received)
        yield _counter("received_bytes", "Bytes of the datagrams read", t.received_bytes)
        yield _counter("datagrams_sent", "Datagrams sent, counted once per interface", t.sent)
        yield _counter("sent_bytes", "Bytes of the datagrams sent", t.sent_bytes)
        yield _counter(
            "datagram_send_errors",
            "Datagrams not sent: no route, interface down, other socket errors",
            t.send_errors,
        )
        yield _counter(
            "datagrams_truncated",
            "Datagrams longer than mesh.max_datagram, cut short by the socket",
            t.truncated,
        )
        yield _counter(
            "datagrams_injected_drops",
            "Incoming datagrams thrown away on purpose (--inject-loss)",
            t.injected_drops,
        )
        yield _counter(
            "receive_callback_errors",
            "Datagrams whose handling raised an error (each one a bug to report)",
            t.callback_errors,
        )
        shed = CounterMetricFamily(
            _P + "datagrams_shed",
            "Datagrams shed under overload, by direction and QoS class",
            labels=["direction", "qos"],
        )
        for direction, counts in (("send", t.shed_sent), ("receive", t.shed_received)):
            for name, count in zip(_QOS_NAMES, counts, strict=True):
                shed.add_metric([direction, name], count)
        yield shed
        yield _gauge(
            "send_queue_datagrams", "Datagrams waiting for room in the send queues", t.queued
        )

    def _node(self) -> Iterator[Metric]:
        s = self._daemon.node.statistics()
        yield _counter("signals_published", "Own signals published", s.published)
        yield _counter(
            "signals_delivered",
            "Signals of other nodes delivered (after duplicate suppression)",
            s.delivered,
        )
        yield _counter(
            "signals_recovered",
            "Signals delivered from frames rebuilt by FEC",
            s.recovered,
        )
        yield _counter("signals_relayed", "Signals of other nodes published again", s.relayed)
        yield _counter("heartbeats_sent", "Heartbeats sent", s.heartbeats)
        frames = CounterMetricFamily(
            _P + "frames_dropped",
            "Frames not delivered, by reason (docs/PROTOCOL.md section 6)",
            labels=["reason"],
        )
        for reason in DropReason:
            frames.add_metric([reason.value], s.drops.get(reason.value, 0))
        yield frames
        signals = CounterMetricFamily(
            _P + "signals_dropped",
            "Signals of delivered frames that were not delivered, by reason",
            labels=["reason"],
        )
        for name in SIGNAL_DROP_REASONS:
            signals.add_metric([name], s.drops.get(name, 0))
        yield signals
        unfused = CounterMetricFamily(
            _P + "signals_unfused",
            "Delivered signals that did not enter their topic's consensus, by reason",
            labels=["reason"],
        )
        for name in UNFUSED_LABELS:
            unfused.add_metric([name], s.unfused.get(name, 0))
        yield unfused

    def _fec(self, now: float) -> Iterator[Metric]:
        sender = self._daemon.node.sender
        out = sender.statistics()
        yield _counter(
            "signals_sent", "Signals put into frames (own, relayed and heartbeats)", out.signals
        )
        yield _counter("fec_blocks", "FEC blocks closed by the sender", out.blocks)
        yield _counter("fec_source_frames", "Source frames sent", out.source_frames)
        yield _counter("fec_repair_frames", "Repair frames sent", out.repair_frames)
        loss, burst = sender.reports.worst(now)
        yield _gauge(
            "fec_planned_loss_ratio",
            "The loss rate the sender plans its redundancy for (worst receiver report)",
            loss,
        )
        yield _gauge(
            "fec_planned_burst_frames",
            "The mean loss burst length the sender plans for, frames",
            burst,
        )
        planned = GaugeMetricFamily(
            _P + "fec_repair_frames_per_full_block",
            "Repair frames a full block of each QoS class gets at the planned loss",
            labels=["qos"],
        )
        for qos, cls in sender.config.classes.items():
            planned.add_metric([qos.name.lower()], choose_m(cls.k_max, loss, burst, cls.policy))
        yield planned
        rx = self._daemon.node.receiver.statistics()
        yield _gauge(
            "fec_pending_blocks",
            "Received FEC blocks that may still need rebuilding",
            rx.pending_blocks,
        )
        yield _gauge(
            "fec_pending_bytes",
            "Bytes held for FEC blocks that may still need rebuilding",
            rx.pending_bytes,
        )

    def _peers(self, now: float) -> Iterator[Metric]:
        node = self._daemon.node
        views = sorted(node.peers(now), key=lambda v: v.node)
        by_state = {state.value: 0 for state in PeerState}
        for view in views:
            by_state[str(view.state)] += 1
        peers = GaugeMetricFamily(_P + "peers", "Peers known, by state", labels=["state"])
        for name, count in by_state.items():
            peers.add_metric([name], count)
        yield peers
        shown = views[:MAX_PEER_SERIES]
        yield _gauge(
            "peers_without_series",
            f"Peers known but not exported one by one (at most {MAX_PEER_SERIES} are)",
            len(views) - len(shown),
        )
        state = GaugeMetricFamily(
            _P + "peer_state", "1 for the state the peer is in, else 0", labels=["peer", "state"]
        )
        phi = GaugeMetricFamily(
            _P + "peer_phi", "The peer's phi (accrual failure detector)", labels=["peer"]
        )
        last = GaugeMetricFamily(
            _P + "peer_last_heard_seconds",
            "Seconds since the peer's last accepted heartbeat",
            labels=["peer"],
        )
        loss = GaugeMetricFamily(
            _P + "peer_loss_ratio",
            "Frames lost on the link from the peer, recent window, before FEC",
            labels=["peer"],
        )
        reputation = GaugeMetricFamily(
            _P + "peer_reputation",
            "The peer's learned reputation as a source, in (0, 1)",
            labels=["peer"],
        )
        heartbeats = CounterMetricFamily(
            _P + "peer_heartbeats",
            "Heartbeats accepted from the peer",
            labels=["peer"],
        )
        for view in shown:
            peer = str(view.node)
            for s in PeerState:
                state.add_metric([peer, s.value], 1.0 if view.state == s else 0.0)
            phi.add_metric([peer], view.phi)
            last.add_metric([peer], view.last_heard)
            link = node.receiver.link_statistics(view.node)
            if link is not None:
                loss.add_metric([peer], link.loss_rate)
            reputation.add_metric([peer], node.reputation.value(view.node))
            heartbeats.add_metric([peer], view.heartbeats)
        yield from (state, phi, last, loss, reputation, heartbeats)

    def _topic_families(self, now: float) -> Iterator[Metric]:
        d = self._daemon
        config = d.config
        names = d.node.topic_names()
        chosen = self._topics.choose(
            names,
            config.metrics.max_topic_series,
            lambda t: config.policy_for(t).pattern is not None,
        )
        yield _gauge("topics", "Topics held", len(names))
        yield _gauge(
            "topics_without_series",
            "Topics held but not exported one by one (beyond metrics.max_topic_series)",
            len(names) - len(chosen),
        )
        value = GaugeMetricFamily(
            _P + "topic_value",
            "The topic's fused value (scalar, interval and category topics in consensus)",
            labels=["topic"],
        )
        sigma = GaugeMetricFamily(
            _P + "topic_sigma", "Standard deviation of the fused value", labels=["topic"]
        )
        confidence = GaugeMetricFamily(
            _P + "topic_confidence", "Confidence of the fused value, 0..1", labels=["topic"]
        )
        state = GaugeMetricFamily(
            _P + "topic_state",
            "1 for the state the topic's estimate is in, else 0",
            labels=["topic", "state"],
        )
        sources = GaugeMetricFamily(
            _P + "topic_sources", "Sources with a reading held", labels=["topic"]
        )
        used = GaugeMetricFamily(
            _P + "topic_sources_used", "Sources the estimate used", labels=["topic"]
        )
        rejected = GaugeMetricFamily(
            _P + "topic_sources_rejected",
            "Fresh sources not used: outliers, falsetickers, distrusted",
            labels=["topic"],
        )
        updates = CounterMetricFamily(
            _P + "topic_updates", "Signals taken into the topic", labels=["topic"]
        )
        for info in d.node.topics(now, sorted(chosen)):
            label = [info.topic]
            sources.add_metric(label, info.sources)
            updates.add_metric(label, info.updates)
            est = info.estimate
            if est is None:
                continue
            for name in TOPIC_STATES:
                state.add_metric([info.topic, name], 1.0 if est.state == name else 0.0)
            used.add_metric(label, est.sources_used)
            rejected.add_metric(label, est.sources_rejected)
            confidence.add_metric(label, est.confidence)
            if math.isfinite(est.sigma):
                sigma.add_metric(label, est.sigma)
            if est.ok and isinstance(est.value, int | float):
                value.add_metric(label, float(est.value))
        yield from (value, sigma, confidence, state, sources, used, rejected, updates)

    def _loop(self) -> Iterator[Metric]:
        d = self._daemon
        lag = d.lag_statistics()
        if lag is not None:
            yield _histogram(
                "event_loop_lag_seconds",
                "How late the event loop ran a timer that was due",
                lag.buckets,
                lag.sum,
            )
            yield _counter(
                "event_loop_lag_skipped_wakeups",
                "Lag monitor wake-ups skipped because the loop was an interval or more behind",
                lag.skipped,
            )
        decode = d.decode_statistics()
        yield _histogram(
            "receive_batch_decode_seconds",
            "Time spent decoding one batch of received datagrams",
            decode.buckets,
            decode.sum,
        )
        yield _gauge(
            "realtime_active",
            "1 when SCHED_FIFO was requested and is in force",
            1.0 if d.realtime is not None and d.realtime.active else 0.0,
        )

    def _operations(self) -> Iterator[Metric]:
        d = self._daemon
        r = d.reload_stats
        reloads = CounterMetricFamily(
            _P + "config_reloads",
            "Config reloads, by result (failure: invalid or unreadable, not applied)",
            labels=["result"],
        )
        reloads.add_metric(["success"], r.succeeded)
        reloads.add_metric(["failure"], r.failed)
        yield reloads
        yield _gauge(
            "config_last_reload_successful",
            "1 when the latest reload was applied (or none was tried)",
            1.0 if r.last_ok else 0.0,
        )
        if r.last_success_unix is not None:
            yield _gauge(
                "config_last_reload_success_timestamp_seconds",
                "When the config in force was applied, Unix seconds",
                r.last_success_unix,
            )
        counters = d.control.counters
        yield _counter("control_requests", "Control requests answered", counters.requests)
        yield _counter(
            "control_events_dropped",
            "Watch events dropped because a client did not read them in time",
            counters.events_dropped,
        )
        errors = CounterMetricFamily(
            _P + "control_errors",
            "Control requests answered with an error, by code (docs/CONTROL.md section 5)",
            labels=["code"],
        )
        for code, count in counters.errors_by_code.items():
            errors.add_metric([code], count)
        yield errors


def make_registry(daemon: ExportedDaemon) -> CollectorRegistry:
    """A registry of its own with the daemon's collector and the process collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DaemonCollector(daemon))
    ProcessCollector(namespace="", registry=registry)
    return registry


class _Snapshot(Collector):
    """Metric families collected already: encoding them reads no daemon state."""

    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self._metrics


def renderer(daemon: ExportedDaemon) -> Callable[[], Callable[[], bytes]]:
    """The exporter's ``render``: collects on the calling thread (the daemon's
    loop) and returns the encoder of the Prometheus text format, which may run
    on any thread."""
    registry = make_registry(daemon)

    def render() -> Callable[[], bytes]:
        snapshot = _Snapshot(list(registry.collect()))
        return lambda: generate_latest(snapshot)

    return render
