"""The daemon: the node's sans-I/O core driven by asyncio, in the order chrony's main uses.

Start-up (:func:`run`), each step fatal with a one-line error when it fails:

1. the configuration (already loaded and validated by the caller);
2. the swarm key and this run's epoch (``<state_dir>/epoch``);
3. the multicast sockets on every interface;
4. real-time settings (SCHED_FIFO, CPU pinning, mlockall; when not
   permitted: one warning naming the cause, then normal operation);
5. the control socket, then the metrics exporter (``[metrics] listen``);
6. the garbage collector frozen over everything made so far;
7. READY=1 to systemd when it started the daemon (``Type=notify``, see
   :mod:`cloudkernel.aio.sdnotify`: STATUS= and watchdog pings follow from
   the loop's own timers);
8. the loop, until SIGTERM or SIGINT.

Shutdown runs in reverse: STOPPING=1 to systemd, the exporter and the
control socket close, open FEC blocks are closed and their repair frames
sent, the sockets close.

The loop drives a :class:`~cloudkernel.core.mesh.MeshNode`: each datagram is
fed to it as it arrives, and after every batch of work one "pump" takes its
events (to the watchers of the control socket), sends what it has on every
interface and re-arms the one timer at its deadline.  asyncio runs on uvloop
when it is installed; without it, on the standard loop, with a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import gc
import logging
import os
import re
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from . import __version__, keyrotation
from .aio.control_server import ControlConnection, ControlRefusal, ControlServer
from .aio.lag import LagStatistics, LoopLagMonitor
from .aio.metrics_server import MetricsServer
from .aio.peercred import resolve_group
from .aio.sdnotify import ServiceNotifier, status_line
from .aio.transport import MulticastTransport, TransportSettings, resolve_interfaces
from .config import Config, load_config
from .consensus import FilterConfig
from .core.access import AccessPolicy
from .core.auth import KeyRing, SwarmKey
from .core.control import (
    ErrorCode,
    GetRequest,
    KeyRetireRequest,
    KeyStageRequest,
    KeyStatusRequest,
    KeySwitchRequest,
    PeersRequest,
    PublishManyRequest,
    PublishRequest,
    ReloadRequest,
    Request,
    SourceStatsRequest,
    StatusRequest,
    TopicsRequest,
    WatchRequest,
)
from .core.membership import PeerState
from .core.mesh import MeshConfig, MeshNode, SignalDelivered
from .core.signals import Signal
from .epoch import keep_epoch, next_epoch
from .errors import CloudkernelError, ConfigError
from .keyfile import load_key_file
from .metrics import renderer
from .realtime import RealtimeStatus, apply_realtime, describe, freeze_gc
from .reload import ReloadStats
from .sourcestats import SourceStats
from .timing import DurationHistogram, HistogramStatistics
from .views import (
    estimate_view,
    peer_view,
    policy_view,
    raw_view,
    signal_view,
    sourcestats_view,
    topic_view,
)

__all__ = ["Daemon", "DaemonError", "run"]

log = logging.getLogger("cloudkernel.daemon")

#: how long an estimate watcher waits between two events of one topic
WATCH_MIN_INTERVAL = 0.01
#: the QoS classes in wire order, as status names them
_CLASSES = ("critical", "normal", "bulk")
#: watches one control connection may hold at once
MAX_WATCHES_PER_CONNECTION = 16


class DaemonError(CloudkernelError):
    """The daemon cannot start; the message says why and what to do."""


@dataclass
class _Watcher:
    id: int
    pattern: re.Pattern[str]
    raw: bool
    connection: ControlConnection
    #: estimates: topic -> our clock when it was last sent
    sent_at: dict[str, float] = field(default_factory=dict)


def topic_policy(config: Config) -> Callable[[str, str, int], FilterConfig]:
    """The mesh's policy: a topic's configured filter, of the kind its first
    value has unless a ``[[topic]]`` entry sets ``kind``."""

    def policy(topic: str, kind: str, dims: int) -> FilterConfig:
        chosen = config.policy_for(topic)
        if chosen.index is not None and any(
            name == "kind" for name, _ in config.topics[chosen.index].overrides
        ):
            return chosen.filter
        return replace(chosen.filter, kind=kind, dims=dims)

    return policy


class Daemon:
    """One running node: the mesh, its sockets and its control socket.

    :param config: the validated configuration.
    :param node_id: this node's id (``config.node.resolve_id()``).
    :param epoch: this run's epoch.
    :param keyring: the swarm keys.
    :param socket_path: the control socket's path.
    :param drop_incoming: fraction of incoming datagrams thrown away on
        purpose (loss injection for demos and tests).
    :param config_path: the file :meth:`reload` reads; None: the built-in defaults.
    :param log_level_fixed: the log level comes from the command line, not
        the config, and a reload leaves it.
    """

    def __init__(
        self,
        config: Config,
        *,
        node_id: int,
        epoch: int,
        keyring: KeyRing,
        socket_path: str,
        drop_incoming: float = 0.0,
        config_path: str | None = None,
        log_level_fixed: bool = False,
    ) -> None:
        self.config = config
        #: the file a reload reads (None: the built-in defaults)
        self.config_path = config_path
        #: the log level was set on the command line: a reload leaves it
        self.log_level_fixed = log_level_fixed
        self.node_id = node_id
        self.socket_path = socket_path
        self.started = time.monotonic()
        mesh_config = MeshConfig(
            sender=config.sender_config(),
            receiver=config.receiver_config(node_id),
            membership=config.membership,
            reputation=config.consensus.reputation,
            relay=config.mesh.relay,
            hop_limit=config.mesh.hop_limit,
            policy=topic_policy(config),
        )
        self.keyring = keyring
        self.node = MeshNode(node_id, epoch, keyring, mesh_config, now=self.started)
        self.interfaces = resolve_interfaces(config.mesh.interfaces)
        self.transport = MulticastTransport(
            TransportSettings(
                group=config.mesh.group,
                group6=config.mesh.group6,
                port=config.mesh.port,
                interfaces=self.interfaces,
                ttl=config.mesh.ttl,
                loopback=config.mesh.loopback,
                max_datagram=config.mesh.max_datagram,
                drop_incoming=drop_incoming,
                send_queue_limit=config.mesh.send_queue_limit,
                receive_backlog_limit=config.mesh.receive_backlog_limit,
            ),
            self._datagram,
        )
        group_gid, group_name, group_note = resolve_group(config.control.group)
        if group_note:
            log.info("%s", group_note)
        self.control = ControlServer(
            socket_path,
            self._request,
            mode=config.control.mode,
            max_clients=config.control.max_clients,
            access=AccessPolicy(
                os.geteuid(),
                group_gid,
                group_name,
                "any" if config.control.readers == "any" else "group",
            ),
        )
        self.realtime: RealtimeStatus | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lag: LoopLagMonitor | None = None
        self._timer: asyncio.Handle | None = None
        self._timer_at = 0.0
        self._pump_scheduled = False
        self._epoch_kept = epoch
        self._watchers: dict[tuple[int, int], _Watcher] = {}
        self._dirty_topics: set[str] = set()
        self.reload_stats = ReloadStats(last_success_unix=time.time())
        #: time spent in MeshNode.feed per receive batch (datagrams between two pumps)
        self.decode_time = DurationHistogram()
        self._batch_decode = 0.0
        self._batch_datagrams = 0
        address = config.metrics.address
        self.exporter = MetricsServer(*address, renderer(self)) if address else None
        #: per-source histories for ``sourcestats``: topics with new readings
        #: are sampled once per interval
        self.sourcestats = SourceStats()
        self._unsampled: set[str] = set()
        self._sample_at = self.started

    # -- life cycle ---------------------------------------------------------

    async def serve(self, stop: asyncio.Event) -> None:
        """Open everything, run until ``stop`` is set, then shut down in reverse."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self.transport.open(loop)  # TransportError: fatal, nothing else is open yet
        try:
            self.realtime = apply_realtime(self.config.realtime)
            for warning in self.realtime.warnings:
                log.warning("%s", warning)
            log.info("real time: %s", describe(self.realtime))
            await self.control.start()
            try:
                if self.exporter is not None:
                    await self.exporter.start()  # MetricsServerError: fatal
                    log.info("metrics on http://%s/metrics", self.exporter.shown())
                self._lag = LoopLagMonitor(loop)
                self._lag.start()
                if self.config.realtime.freeze_gc:
                    freeze_gc()
                groups = " and ".join(
                    g for g in (self.config.mesh.group, self.config.mesh.group6) if g
                )
                log.info(
                    "node %d epoch %d on %s, %s port %d; control socket %s",
                    self.node_id,
                    self.node.epoch,
                    ",".join(self.interfaces),
                    groups,
                    self.config.mesh.port,
                    self.socket_path,
                )
                self._pump()
                notifier = ServiceNotifier.from_environ(
                    lambda: status_line(self.status(time.monotonic()))
                )
                notifier.ready(loop)  # sockets open: READY=1, then watchdog pings
                try:
                    await stop.wait()
                finally:
                    notifier.stopping()
            finally:
                if self._lag is not None:
                    self._lag.stop()
                if self.exporter is not None:
                    await self.exporter.close()
                await self.control.close()
        finally:
            if self._timer is not None:
                self._timer.cancel()
            self.transport.send(self.node.flush(time.monotonic()))
            self.transport.close()
            log.info("stopped")

    # -- the data path ------------------------------------------------------

    def _datagram(self, datagram: bytes, now: float) -> None:
        start = time.perf_counter()
        self.node.feed(datagram, now)
        self._batch_decode += time.perf_counter() - start
        self._batch_datagrams += 1
        self._schedule_pump()

    def _schedule_pump(self) -> None:
        if not self._pump_scheduled and self._loop is not None:
            self._pump_scheduled = True
            self._loop.call_soon(self._pump)

    def _timer_fired(self) -> None:
        self._timer = None
        # uvloop may fire a little before the deadline by time.monotonic():
        # the deadline's work is due all the same, or the timer would spin.
        self.node.handle_timer(max(time.monotonic(), self._timer_at))
        self._pump()

    def _pump(self) -> None:
        """Events to watchers, datagrams out, timer re-armed."""
        self._pump_scheduled = False
        if self._batch_datagrams:
            self.decode_time.observe(self._batch_decode)
            self._batch_decode = 0.0
            self._batch_datagrams = 0
        now = time.monotonic()
        node = self.node
        while (event := node.next_event()) is not None:
            if isinstance(event, SignalDelivered):
                self._delivered(event, now)
                self._unsampled.add(event.signal.topic)
        if self._unsampled and now >= self._sample_at:
            self._sample_sources(now)
        if self._dirty_topics:
            self._send_estimates(now)
        out = node.datagrams_to_send(now)
        if out:
            self.transport.send(out)
        if node.sender.epoch != self._epoch_kept:
            self._keep_epoch(node.sender.epoch)
        self._arm(node.deadline(), now)

    def _keep_epoch(self, epoch: int) -> None:
        """The sender moved to a new epoch by itself (its sequence numbers ran
        out): a restart must come back above it."""
        self._epoch_kept = epoch
        warning = keep_epoch(self.config.node.state_dir, epoch)
        if warning:
            log.warning("%s", warning)

    def _arm(self, deadline: float | None, now: float) -> None:
        if self._loop is None:
            return
        if self._timer is not None:
            if deadline is not None and self._timer_at <= deadline:
                return
            self._timer.cancel()
            self._timer = None
        if deadline is None:
            return
        # loop.time() is time.monotonic() on both loops, so the deadline applies
        # as is.  The time is kept here: for a time already past, uvloop's
        # call_at returns a Handle that has no when().
        self._timer_at = max(deadline, now)
        self._timer = self._loop.call_at(self._timer_at, self._timer_fired)

    def _sample_sources(self, now: float) -> None:
        """Give the topics with new readings to the sourcestats histories."""
        self._sample_at = now + self.sourcestats.interval
        topics, self._unsampled = self._unsampled, set()
        for topic in sorted(topics):
            kind = self.node.topic_kind(topic)
            estimate = self.node.estimate(topic, now)
            if kind is not None and estimate is not None:
                self.sourcestats.record(topic, kind, estimate, now)

    # -- watchers -----------------------------------------------------------

    def _delivered(self, event: SignalDelivered, now: float) -> None:
        topic = event.signal.topic
        for watcher in list(self._watchers.values()):
            if not watcher.pattern.match(topic):
                continue
            if watcher.raw:
                watcher.connection.send_event(
                    watcher.id,
                    {
                        "type": "signal",
                        "signal": signal_view(
                            event.signal,
                            received_at=event.received_at,
                            now=now,
                            recovered=event.recovered,
                        ),
                        "local": event.local,
                    },
                )
            else:
                self._dirty_topics.add(topic)

    def _send_estimates(self, now: float) -> None:
        dirty, self._dirty_topics = self._dirty_topics, set()
        for topic in sorted(dirty):
            kind = self.node.topic_kind(topic)
            if kind is None:
                continue  # not held (the topic table was full)
            estimate = self.node.estimate(topic, now)
            for watcher in list(self._watchers.values()):
                if watcher.raw or not watcher.pattern.match(topic):
                    continue
                last = watcher.sent_at.get(topic)
                if last is not None and now - last < WATCH_MIN_INTERVAL:
                    self._dirty_topics.add(topic)  # coalesced into a later event
                    continue
                watcher.sent_at[topic] = now
                if estimate is None:
                    view = raw_view(topic, self.node.latest(topic))
                else:
                    view = estimate_view(topic, kind, estimate, sources=False)
                watcher.connection.send_event(watcher.id, {"type": "estimate", "estimate": view})
        if self._dirty_topics and self._loop is not None:
            self._loop.call_later(WATCH_MIN_INTERVAL, self._schedule_pump)

    # -- control requests ---------------------------------------------------

    def _request(self, request: Request, connection: ControlConnection) -> object:
        now = time.monotonic()
        if isinstance(request, PublishRequest):
            signal = request.signal
            if not request.qos_given:
                signal = self._topic_qos(signal)
            stamped = self.node.publish(signal, now, checked=True)
            self._schedule_pump()
            return {"topic": stamped.topic, "source": stamped.source, "seq": stamped.seq}
        if isinstance(request, GetRequest):
            return self._get(request.topic, now)
        if isinstance(request, WatchRequest):
            return self._watch(request, connection)
        if isinstance(request, TopicsRequest):
            return self._topics(request.pattern, now)
        if isinstance(request, StatusRequest):
            return self.status(now)
        if isinstance(request, PeersRequest):
            return self._peers(now)
        if isinstance(request, ReloadRequest):
            return self.reload()
        if isinstance(request, PublishManyRequest):
            return self._publish_many(request.signals, request.qos_given, now)
        if isinstance(
            request, (KeyStageRequest, KeySwitchRequest, KeyRetireRequest, KeyStatusRequest)
        ):
            return self._key_op(request, now)
        if isinstance(request, SourceStatsRequest):
            regex = re.compile(fnmatch.translate(request.pattern)) if request.pattern else None
            names = [t for t in self.node.topic_names() if regex is None or regex.match(t)]
            rows = self.sourcestats.rows(now, names)
            return {"sourcestats": [sourcestats_view(row) for row in rows]}
        raise ControlRefusal(ErrorCode.INTERNAL, f"no handler for {request.op}")

    def _topic_qos(self, signal: Signal) -> Signal:
        """``signal`` in its topic's configured QoS class ([consensus] and [[topic]] qos)."""
        qos = self.config.policy_for(signal.topic).qos
        return signal if qos is signal.qos else replace(signal, qos=qos)

    def _publish_many(
        self, signals: tuple[Signal, ...], qos_given: tuple[bool, ...], now: float
    ) -> dict[str, Any]:
        publish = self.node.publish
        topic_qos = self._topic_qos
        first = last = None
        for one, given in zip(signals, qos_given, strict=True):
            last = publish(one if given else topic_qos(one), now, checked=True)
            first = first or last
        assert first is not None and last is not None  # the decoder allows no empty batch
        self._schedule_pump()
        return {
            "published": len(signals),
            "source": first.source,
            "first_seq": first.seq,
            "last_seq": last.seq,
        }

    def _key_op(
        self,
        request: KeyStageRequest | KeySwitchRequest | KeyRetireRequest | KeyStatusRequest,
        now: float,
    ) -> dict[str, Any]:
        ring = self.keyring
        try:
            if isinstance(request, KeyStageRequest):
                result = keyrotation.stage(ring, request.path, now)
                log.info("key 0x%02x staged from %s", result["staged"], request.path)
            elif isinstance(request, KeySwitchRequest):
                result = keyrotation.switch(ring, now, request.window)
                log.info(
                    "sending with key 0x%02x; key 0x%02x accepted for %.0f s more",
                    result["current"],
                    result["previous"],
                    result["window_left"],
                )
            elif isinstance(request, KeyRetireRequest):
                result = keyrotation.retire(ring, now)
                log.info("key 0x%02x retired", result["retired"])
            else:
                result = keyrotation.key_status(ring, now)
        except keyrotation.KeyOpRefused as exc:
            code = ErrorCode.NOT_FOUND if exc.missing else ErrorCode.BAD_ARGUMENT
            raise ControlRefusal(code, str(exc)) from None
        return result

    def _get(self, topic: str, now: float) -> dict[str, Any]:
        kind = self.node.topic_kind(topic)
        if kind is None:
            raise ControlRefusal(ErrorCode.NOT_FOUND, f"no signal on topic {topic!r} yet")
        estimate = self.node.estimate(topic, now)
        if estimate is None:
            return raw_view(topic, self.node.latest(topic))
        view = estimate_view(topic, kind, estimate)
        filter_config = self.node.filter_config(topic)
        if filter_config is not None:
            view["policy"] = policy_view(filter_config, self.node.reputation.config)
        return view

    def _watch(self, request: WatchRequest, connection: ControlConnection) -> dict[str, Any]:
        key = (id(connection), request.id)
        if key in self._watchers:
            raise ControlRefusal(
                ErrorCode.BAD_ARGUMENT, f"this connection already watches with id {request.id}"
            )
        mine = sum(1 for k in self._watchers if k[0] == key[0])
        if mine >= MAX_WATCHES_PER_CONNECTION:
            raise ControlRefusal(
                ErrorCode.BUSY,
                f"at most {MAX_WATCHES_PER_CONNECTION} watches per connection; open another",
            )
        watcher = _Watcher(
            request.id,
            re.compile(fnmatch.translate(request.pattern)),
            request.raw,
            connection,
        )
        self._watchers[key] = watcher
        connection.on_close.append(lambda: self._unwatch(key))
        if not request.raw:
            # A watcher starts with the current value of every matching topic.
            for topic in self.node.topic_names():
                if watcher.pattern.match(topic):
                    self._dirty_topics.add(topic)
            self._schedule_pump()
        return {"watching": request.pattern, "raw": request.raw}

    def _unwatch(self, key: tuple[int, int]) -> None:
        self._watchers.pop(key, None)

    def _topics(self, pattern: str | None, now: float) -> dict[str, Any]:
        regex = re.compile(fnmatch.translate(pattern)) if pattern else None
        names = [t for t in self.node.topic_names() if regex is None or regex.match(t)]
        return {"topics": [topic_view(info, now) for info in self.node.topics(now, names)]}

    def _peers(self, now: float) -> dict[str, Any]:
        rows = []
        reputation = self.node.reputation
        for view in self.node.peers(now):
            link = self.node.receiver.link_statistics(view.node)
            rows.append(
                peer_view(
                    view,
                    loss=link.loss_rate if link is not None else None,
                    reputation=reputation.value(view.node),
                )
            )
        return {"peers": rows}

    def lag_statistics(self) -> LagStatistics | None:
        """The event loop's lag since start; None before :meth:`serve` starts it."""
        return self._lag.statistics() if self._lag is not None else None

    def decode_statistics(self) -> HistogramStatistics:
        """Time spent decoding each receive batch."""
        return self.decode_time.statistics()

    # -- reload -------------------------------------------------------------

    def reload(self) -> dict[str, Any]:
        """Read the config file again and apply its live settings.

        The whole file is validated first: a bad one changes nothing, is
        logged and counted in :attr:`reload_stats`.  Settings that need a
        restart keep their running values and are named in a warning.

        :raises ControlRefusal: (``invalid-config``) when the file is bad
        """
        stats = self.reload_stats
        stats.last_attempt_unix = time.time()
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            stats.failed += 1
            stats.last_ok = False
            stats.last_error = str(exc)
            log.error("reload refused, the running config stays: %s", exc)
            raise ControlRefusal(ErrorCode.INVALID_CONFIG, str(exc)) from None
        old = self.config
        restart = old.restart_required(new)
        running = old.reloaded(new)
        applied = old.changed(running)
        rebuilt = self.node.reconfigure(
            membership=running.membership,
            classes=running.qos.classes(),
            policy=topic_policy(running),
            now=time.monotonic(),
        )
        self.config = running
        for topic in rebuilt:
            # New settings, new statistics; and watchers hear the new estimate.
            self.sourcestats.forget(topic)
            self._dirty_topics.add(topic)
        if not self.log_level_fixed:
            logging.getLogger().setLevel(running.log.level.upper())
        stats.succeeded += 1
        stats.last_ok = True
        stats.last_error = ""
        stats.last_success_unix = stats.last_attempt_unix
        log.info(
            "reloaded %s: %s",
            running.source,
            f"{len(applied)} setting(s) changed, {len(rebuilt)} topic(s) rebuilt"
            if applied
            else "no live setting changed",
        )
        if restart:
            log.warning(
                "reload: %s changed but need(s) a restart to take effect", ", ".join(restart)
            )
        self._schedule_pump()
        return {
            "config": running.source,
            "changed": list(applied),
            "restart_required": list(restart),
            "topics_rebuilt": len(rebuilt),
        }

    def _reload_on_signal(self) -> None:
        with contextlib.suppress(ControlRefusal):  # logged and counted already
            self.reload()

    def status(self, now: float) -> dict[str, Any]:
        """The daemon's status as plain data (``cloudkernel status``)."""
        stats = self.node.statistics()
        peers = self.node.peers(now)
        by_state = {state.value: 0 for state in PeerState}
        for view in peers:
            by_state[str(view.state)] += 1
        transport = self.transport.statistics()
        lag = self._lag.statistics() if self._lag is not None else None
        return {
            "version": __version__,
            "node_id": self.node_id,
            "epoch": stats.epoch,
            "uptime": now - self.started,
            "interfaces": list(self.interfaces),
            "group": self.config.mesh.group,
            "group6": self.config.mesh.group6,
            "port": self.config.mesh.port,
            "relay": self.config.mesh.relay,
            "peers": by_state,
            "topics": stats.topics,
            "signals": {
                "published": stats.published,
                "delivered": stats.delivered,
                "recovered": stats.recovered,
                "relayed": stats.relayed,
            },
            "heartbeats": stats.heartbeats,
            "membership": asdict(self.node.membership.statistics()),
            "drops": {k: v for k, v in stats.drops.items() if v},
            "unfused": {k: v for k, v in stats.unfused.items() if v},
            "datagrams": {
                "received": transport.received,
                "sent": transport.sent,
                "send_errors": transport.send_errors,
                "injected_drops": transport.injected_drops,
                "queued": transport.queued,
                "shed_sent": dict(zip(_CLASSES, transport.shed_sent, strict=True)),
                "shed_received": dict(zip(_CLASSES, transport.shed_received, strict=True)),
            },
            "realtime": {
                "active": bool(self.realtime and self.realtime.active),
                "summary": describe(self.realtime) if self.realtime else "not applied",
                "warnings": list(self.realtime.warnings) if self.realtime else [],
            },
            "loop_lag": None
            if lag is None
            else {"p50": lag.p50, "p99": lag.p99, "max": lag.max, "samples": lag.count},
            "control": {
                "socket": self.socket_path,
                "watchers": len(self._watchers),
                "requests": self.control.counters.requests,
                "events_dropped": self.control.counters.events_dropped,
                "not_authorised": self.control.counters.not_authorised,
            },
            "metrics": self.exporter.shown() if self.exporter is not None else "",
            "config": self.config.source,
            "reload": {
                "succeeded": self.reload_stats.succeeded,
                "failed": self.reload_stats.failed,
                "last_ok": self.reload_stats.last_ok,
                "last_error": self.reload_stats.last_error,
            },
        }


def _new_loop() -> tuple[asyncio.AbstractEventLoop, str | None]:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop(), "uvloop is not installed: running on asyncio's own loop"
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop, None


def run(
    config: Config,
    *,
    socket_path: str | None = None,
    drop_incoming: float = 0.0,
    config_path: str | None = None,
    log_level_fixed: bool = False,
) -> None:
    """Start the daemon and run it until SIGTERM or SIGINT; SIGHUP reloads
    ``config_path`` (see :meth:`Daemon.reload`).

    :raises DaemonError: (or another :class:`CloudkernelError`) when a
        start-up step fails; the message is one line fit for the operator.
    """
    node_id = config.node.resolve_id()
    secret = load_key_file(config.node.key_file)
    keyring = KeyRing(SwarmKey(secret))
    if config.node.next_key_file:
        warn, line = keyrotation.load_next_key(keyring, config.node.next_key_file)
        log.log(logging.WARNING if warn else logging.INFO, "%s", line)
    epoch, warning = next_epoch(config.node.state_dir)
    if warning:
        log.warning("%s", warning)
    daemon = Daemon(
        config,
        node_id=node_id,
        epoch=epoch,
        keyring=keyring,
        socket_path=socket_path or config.control.socket_path(),
        drop_incoming=drop_incoming,
        config_path=config_path,
        log_level_fixed=log_level_fixed,
    )
    loop, loop_warning = _new_loop()
    if loop_warning:
        log.warning("%s", loop_warning)
    stop = asyncio.Event()
    try:
        asyncio.set_event_loop(loop)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        loop.add_signal_handler(signal.SIGHUP, daemon._reload_on_signal)
        loop.run_until_complete(daemon.serve(stop))
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signum)
        loop.close()
        gc.unfreeze()
