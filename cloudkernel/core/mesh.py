"""The node's protocol core: pipeline, membership and consensus joined, sans I/O.

A :class:`MeshNode` is one cloudkernel node as a state machine.  The adapter
feeds it datagrams (``feed``) and its clock (every entry point takes
``now``), sends what :meth:`MeshNode.datagrams_to_send` returns on every
interface, calls :meth:`MeshNode.handle_timer` at :meth:`MeshNode.deadline`,
and takes the resulting events with :meth:`MeshNode.next_event`.  Nothing in
here reads a clock, opens a socket or sleeps.

What it adds to the pipeline (``sender``, ``receiver``):

* **Heartbeats as signals.**  Every ``heartbeat_interval`` the node publishes,
  in the critical class, one signal on ``$ck/hb`` (vector: epoch,
  incarnation, interval, heartbeat number) and one on ``$ck/hr`` per peer it
  knows (vector: heartbeat number, peer, the peer's epoch and incarnation,
  its state as seen here, the loss and mean loss burst measured here on that
  peer's frames).  They travel like any signal: sealed, FEC-protected,
  relayed when relaying is on.  A receiver hands the announcement, with the
  report about itself if the same frame carries it, to
  :class:`~cloudkernel.core.membership.Membership`; a report about itself
  that arrived in a frame of its own waits for that peer's next heartbeat.
  The loss a peer reports on our frames sizes our FEC redundancy; the loss
  we measure on a peer's frames is that peer's link quality in the
  reputation.  Topics under ``$`` are the node's own: never published for
  an application, never fused, never listed.
* **Duplicate suppression** by (source, signal sequence number), so a signal
  heard on several interfaces or through several relays is delivered once
  (:mod:`~cloudkernel.core.dedup`); copies of our own signals are dropped.
* **Relaying** (``relay=True``): every new signal of another source whose hop
  count is below ``hop_limit`` is published again, unchanged (source,
  sequence number and QoS kept) but for its hop count, one higher, so it
  crosses A - B - C where A and C do not hear each other.  Each node relays
  a signal at most once, which bounds a flood to one copy per node; the hop
  limit bounds how far it spreads.
* **Per-topic consensus**: one filter per topic, of the kind the policy gives
  (by default the kind of the topic's first value), all sharing one
  reputation table.  A reading's time is ``now`` less the age its sender
  reported, clamped to 0..the signal's longest lifetime, on our own clock.
  Byte values are kept raw (latest per source) and not fused.

Every untrusted input ends as a counted drop (``statistics().drops``), never
an exception: the pipeline's reasons for frames, and for signals
``own-signal``, ``bad-source`` (source 0, or a signal not relayed whose
source is not its frame's sender), ``duplicate-signal``, ``too-old-signal``
and ``bad-heartbeat``.

The swarm key proves that a frame comes from a member of the swarm, not
which member: a node holding the key can claim any source.  These checks
catch mistakes and stale copies, not a malicious member.

A signal that is delivered (reported to the adapter as
:class:`SignalDelivered`) but does not enter its topic's consensus is
counted in ``statistics().unfused``: ``kind-mismatch``,
``too-many-topics``, or ``consensus-<reason>`` for the filter's own reasons
(``older`` when a rebuilt frame brings a reading older than the one held).
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from ..consensus import ConsensusFilter, Estimate, FilterConfig, Reputation, ReputationConfig
from ..errors import SignalError
from .auth import KeyRing
from .dedup import SeenSignals
from .events import PacketDropped, SenderRestarted, SignalsReceived
from .membership import (
    Heartbeat,
    LinkReported,
    Membership,
    MembershipConfig,
    MembershipEvent,
    PeerReport,
    PeerRestarted,
    PeerState,
    PeerView,
)
from .receiver import Receiver, ReceiverConfig
from .sender import ClassConfig, Sender, SenderConfig
from .signals import MAX_HOPS, MAX_U32, QoS, Signal, check_signal

__all__ = [
    "HEARTBEAT_TOPIC",
    "REPORT_TOPIC",
    "RESERVED_PREFIX",
    "MeshConfig",
    "MeshEvent",
    "MeshNode",
    "MeshStatistics",
    "SignalDelivered",
    "TopicInfo",
    "default_policy",
]

RESERVED_PREFIX = "$"
HEARTBEAT_TOPIC = "$ck/hb"
REPORT_TOPIC = "$ck/hr"

#: raw (bytes) topics keep the latest signal of this many sources at most
_MAX_RAW_SOURCES = 1024
#: a link's loss is reported once this many of its frames have settled
#: (arrived, or missing past the loss tracker's reorder window) ...
_MIN_SETTLED = 16
#: ... and until then the report's loss is this: not measured, so the sender
#: keeps planning for its default loss rather than for none
_UNMEASURED = -1.0
_STATE_CODES = {PeerState.ALIVE: 0, PeerState.SUSPECT: 1, PeerState.DEAD: 2}
_STATES_BY_CODE = {code: state for state, code in _STATE_CODES.items()}

#: signal drop reasons of the node (the frame reasons are the receiver's)
SIGNAL_DROP_REASONS = (
    "own-signal",
    "bad-source",
    "duplicate-signal",
    "too-old-signal",
    "bad-heartbeat",
)
#: why a delivered signal did not enter its topic's consensus: these, and
#: ``consensus-<reason>`` for the filter's own (``older``, ``not-finite``, ...)
UNFUSED_REASONS = ("kind-mismatch", "too-many-topics")

Policy = Callable[[str, str, int], FilterConfig]


def default_policy(topic: str, kind: str, dims: int) -> FilterConfig:
    """The filter of a topic nobody configured: the kind of its first value."""
    del topic
    return FilterConfig(kind=kind, dims=dims)


@dataclass(frozen=True, slots=True)
class MeshConfig:
    """Settings of a :class:`MeshNode`."""

    sender: SenderConfig = field(default_factory=SenderConfig)
    #: the receiver's bounds; its ``node_id`` and ``max_datagram`` are the node's
    receiver: ReceiverConfig = field(default_factory=ReceiverConfig)
    membership: MembershipConfig = field(default_factory=MembershipConfig)
    reputation: ReputationConfig = field(default_factory=ReputationConfig)
    #: publish every new signal of another source again (multi-hop swarms)
    relay: bool = False
    #: relay only signals relayed fewer times than this (1..15)
    hop_limit: int = 3
    #: topics held at most; signals of further topics are dropped and counted
    max_topics: int = 4096
    #: signal sequence numbers remembered per source, for duplicate suppression
    dedup_window: int = 4096
    #: the consensus filter of a topic, given its name and first value's kind
    policy: Policy = default_policy

    def __post_init__(self) -> None:
        if self.max_topics < 1:
            raise ValueError(f"max_topics must be >= 1, got {self.max_topics!r}")
        if not 1 <= self.hop_limit <= MAX_HOPS:
            raise ValueError(f"hop_limit must be 1..{MAX_HOPS}, got {self.hop_limit!r}")
        if not 1 <= self.dedup_window <= 65536:
            raise ValueError(f"dedup_window must be 1..65536, got {self.dedup_window!r}")


@dataclass(frozen=True, slots=True)
class SignalDelivered:
    """A signal new to this node: a peer's (arrived or rebuilt) or our own."""

    signal: Signal
    #: node id of the node whose frame carried it (ours for our own signals)
    sender: int
    #: our clock when it arrived
    received_at: float
    #: True when its frame was lost and rebuilt from FEC repair frames
    recovered: bool
    #: True when this node published it
    local: bool


MeshEvent = SignalDelivered | PacketDropped | MembershipEvent


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """One topic as the node holds it."""

    topic: str
    #: the filter's kind, or "bytes" for raw topics
    kind: str
    #: sources with a reading held
    sources: int
    #: signals taken into the topic
    updates: int
    #: our clock at the last one
    last_update: float
    #: the topic's estimate at the time asked; None for raw topics
    estimate: Estimate | None


@dataclass(frozen=True, slots=True)
class MeshStatistics:
    """A snapshot of a node's counters."""

    node_id: int
    epoch: int
    #: datagrams fed in
    datagrams: int
    #: own signals published
    published: int
    #: signals of others delivered (after duplicate suppression)
    delivered: int
    #: signals delivered from frames rebuilt by FEC
    recovered: int
    #: signals published again for others
    relayed: int
    #: heartbeats sent
    heartbeats: int
    #: frame drops (the receiver's reasons) and signal drops, by reason
    drops: dict[str, int]
    #: delivered signals that did not enter consensus, by reason
    unfused: dict[str, int]
    topics: int


#: a reading as its filter took it: value, confidence, time taken, half-life, ttl
_Held = tuple[object, float, float, float | None, float | None]


class _Topic:
    __slots__ = ("filter", "held", "kind", "last_update", "natural", "raw", "updates")

    def __init__(self, kind: str, natural: tuple[str, int], filt: ConsensusFilter | None) -> None:
        self.kind = kind
        #: the kind and dimensions of the topic's first value, which the policy was asked for
        self.natural = natural
        self.filter = filt
        #: bytes topics: latest signal per source
        self.raw: OrderedDict[int, Signal] = OrderedDict()
        #: fused topics: each source's latest accepted reading, so that a
        #: reload that changes the topic's settings rebuilds its filter whole
        self.held: OrderedDict[int, _Held] = OrderedDict()
        self.updates = 0
        self.last_update = 0.0


def _natural_kind(value: object) -> tuple[str, int]:
    if isinstance(value, float):
        return "scalar", 1
    if isinstance(value, int):
        return "category", 1
    if isinstance(value, tuple):
        return "vector", len(value)
    return "bytes", 0


def _reading(kind: str, dims: int, value: object) -> float | int | tuple[float, ...] | None:
    """The value as a filter of ``kind`` takes it, or None if it does not fit."""
    if kind == "scalar":
        if isinstance(value, float):
            return value
        if isinstance(value, int):
            return float(value)
        return None
    if kind == "category":
        return value if isinstance(value, int) else None
    if kind == "interval":
        return value if isinstance(value, tuple) and len(value) == 2 else None
    if kind == "vector":
        return value if isinstance(value, tuple) and len(value) == dims else None
    return None


def _whole(x: float, top: int) -> int | None:
    """x as an int in 0..top if it is one exactly, else None."""
    if not (0.0 <= x <= top) or x != math.floor(x):
        return None
    return int(x)


class MeshNode:
    """One node of the swarm, sans I/O (see the module docstring).

    :param node_id: this node's id, 1..2^32-1, unique in the swarm.
    :param epoch: this run's epoch, larger than any earlier run's.
    :param keyring: the swarm keys.
    :param config: settings; defaults when omitted.
    :param now: the clock at start.
    """

    def __init__(
        self,
        node_id: int,
        epoch: int,
        keyring: KeyRing,
        config: MeshConfig | None = None,
        *,
        now: float,
    ) -> None:
        self.config = config = config or MeshConfig()
        self.node_id = node_id
        self.epoch = epoch
        self.sender = Sender(node_id, epoch, keyring, config.sender)
        self.receiver = Receiver(
            keyring,
            replace(config.receiver, node_id=node_id, max_datagram=config.sender.max_datagram),
        )
        self.membership = Membership(node_id, epoch, config.membership, now=now)
        self.reputation = Reputation(config.reputation)
        self._seen = SeenSignals(config.dedup_window, config.receiver.max_senders)
        self._topics: dict[str, _Topic] = {}
        self._events: deque[MeshEvent] = deque()
        #: reports about us that came without their heartbeat, by reporter
        self._waiting_reports: OrderedDict[int, PeerReport] = OrderedDict()
        #: newest (epoch, heartbeat number) heard from each source
        self._heartbeat_marks: OrderedDict[int, tuple[int, int]] = OrderedDict()
        #: peers whose latest report about us had no loss measured yet
        self._unmeasured: set[int] = set()
        self._heartbeat_seq = 0
        self._drops = dict.fromkeys(SIGNAL_DROP_REASONS, 0)
        self._unfused = dict.fromkeys(UNFUSED_REASONS, 0)
        self._datagrams = self._published = self._delivered = 0
        self._recovered = self._relayed = self._heartbeats = 0

    # -- entry points -------------------------------------------------------

    def feed(self, datagram: bytes, now: float) -> None:
        """Take one datagram as it came off the network (any interface)."""
        self._datagrams += 1
        for event in self.receiver.feed(datagram, now):
            if isinstance(event, SignalsReceived):
                self._received(event, now)
            elif isinstance(event, SenderRestarted):
                self._seen.restart(event.sender)
            else:
                self._events.append(event)

    def publish(self, signal: Signal, now: float, *, checked: bool = False) -> Signal:
        """Publish one of this node's own signals; returns it as stamped.

        The signal also counts as this node's reading of its topic.

        :param checked: the signal comes from :func:`make_signal` (the control
            protocol's decoder makes them so), which checked every limit: it
            is not checked again.
        :raises SignalError: for a reserved topic (``$...``) or a signal that
            breaks a limit.
        """
        if not checked:
            signal = check_signal(signal)
        if signal.topic.startswith(RESERVED_PREFIX):
            raise SignalError(
                f"topic {signal.topic!r} is reserved: topics starting with "
                f"{RESERVED_PREFIX!r} belong to the daemon"
            )
        # The constructor, not dataclasses.replace: this is the publish hot path.
        stamped = Signal(
            signal.topic,
            signal.value,
            signal.confidence,
            signal.half_life,
            signal.ttl,
            signal.qos,
            self.node_id,
            self.sender.next_signal_seq(),
            0.0,
            signal.hops,
        )
        self.sender.publish(stamped, now, checked=True)
        self._published += 1
        self._take(stamped, now, sender=self.node_id, recovered=False, local=True)
        return stamped

    def datagrams_to_send(self, now: float) -> list[bytes]:
        """The datagrams to send now, on every interface (a heartbeat if due)."""
        if self.membership.heartbeat_due(now):
            self._send_heartbeat(now)
        return self.sender.poll(now)

    def deadline(self) -> float | None:
        """When :meth:`handle_timer` (and :meth:`datagrams_to_send`) must run next."""
        times = [
            t
            for t in (
                self.sender.deadline(),
                self.receiver.deadline(),
                self.membership.deadline(),
            )
            if t is not None
        ]
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        """Time out FEC blocks and update peers' liveness."""
        self._events.extend(e for e in self.receiver.poll(now) if isinstance(e, PacketDropped))
        self._membership_events(self.membership.poll(now), now)

    def next_event(self) -> MeshEvent | None:
        """The oldest event not yet taken, or None."""
        return self._events.popleft() if self._events else None

    def flush(self, now: float) -> list[bytes]:
        """Close every open FEC block (at shutdown): the datagrams to send."""
        return self.sender.flush(now)

    # -- queries ------------------------------------------------------------

    def estimate(self, topic: str, now: float) -> Estimate | None:
        """The fused value of ``topic`` now; None for an unknown or raw topic."""
        held = self._topics.get(topic)
        if held is None or held.filter is None:
            return None
        return held.filter.estimate(now)

    def filter_config(self, topic: str) -> FilterConfig | None:
        """The settings of a fused topic's filter; None for an unknown or raw topic."""
        held = self._topics.get(topic)
        return None if held is None or held.filter is None else held.filter.config

    def topic_kind(self, topic: str) -> str | None:
        """A held topic's kind (a filter's kind, or "bytes"); None if not held."""
        held = self._topics.get(topic)
        return None if held is None else held.kind

    def latest(self, topic: str) -> list[Signal]:
        """A raw topic's latest signal per source (sorted by source)."""
        held = self._topics.get(topic)
        if held is None:
            return []
        return [held.raw[s] for s in sorted(held.raw)]

    def topic_names(self) -> list[str]:
        """Every topic held, sorted; no estimate is made."""
        return sorted(self._topics)

    def topics(self, now: float, names: list[str] | None = None) -> list[TopicInfo]:
        """Topics held (``names``, or every one), sorted by name, each with its estimate."""
        rows = []
        for name in sorted(self._topics) if names is None else names:
            t = self._topics.get(name)
            if t is None:
                continue
            estimate = None if t.filter is None else t.filter.estimate(now)
            sources = len(t.raw) if estimate is None else estimate.sources_total
            rows.append(TopicInfo(name, t.kind, sources, t.updates, t.last_update, estimate))
        return rows

    def peers(self, now: float) -> list[PeerView]:
        return self.membership.peers(now)

    def statistics(self) -> MeshStatistics:
        drops = dict(self.receiver.statistics().drops)
        drops.update(self._drops)
        return MeshStatistics(
            self.node_id,
            self.sender.epoch,
            self._datagrams,
            self._published,
            self._delivered,
            self._recovered,
            self._relayed,
            self._heartbeats,
            drops,
            dict(self._unfused),
            len(self._topics),
        )

    # -- receiving ----------------------------------------------------------

    def _received(self, event: SignalsReceived, now: float) -> None:
        announcements: list[Signal] = []
        others: list[Signal] = []
        reports: dict[tuple[int, int], PeerReport] = {}
        for signal in event.signals:
            if signal.source == self.node_id:
                self._drops["own-signal"] += 1
                continue
            if signal.source == 0 or (signal.hops == 0 and signal.source != event.sender):
                # A signal not relayed comes from its source itself; source 0
                # is no node (a relay would take it for its own).
                self._drops["bad-source"] += 1
                continue
            if signal.topic == HEARTBEAT_TOPIC:
                announcements.append(signal)
                continue
            if signal.topic == REPORT_TOPIC:
                parsed = self._parse_report(signal)
                if parsed is None:
                    continue
                if parsed[1] is not None:
                    reports[parsed[0]] = parsed[1]
            elif signal.topic.startswith(RESERVED_PREFIX):
                self._drops["bad-heartbeat"] += 1
                continue
            others.append(signal)
        # Heartbeats first: a source's new epoch, learnt here, restarts its
        # signal numbers before the rest of the frame is checked against them.
        for signal in announcements:
            self._heard(signal, reports, now)
        for signal in others:
            seen = self._seen.admit(signal.source, signal.seq)
            if seen != "new":
                self._drops[f"{seen}-signal"] += 1
                continue
            self._relay(signal, now)
            if signal.topic == REPORT_TOPIC:
                continue
            self._delivered += 1
            if event.recovered:
                self._recovered += 1
            self._take(signal, now, sender=event.sender, recovered=event.recovered, local=False)
        for (source, _), report in reports.items():
            # A report about us without its heartbeat in this frame: it
            # rides with that peer's next heartbeat.
            self._waiting_reports[source] = report
            self._waiting_reports.move_to_end(source)
            while len(self._waiting_reports) > self.config.membership.max_peers:
                self._waiting_reports.popitem(last=False)

    def _relay(self, signal: Signal, now: float) -> None:
        if self.config.relay and signal.hops < self.config.hop_limit:
            # A peer's decoded signal keeps every limit, and hops stays <= hop_limit.
            self.sender.publish(replace(signal, hops=signal.hops + 1), now, checked=True)
            self._relayed += 1

    def _parse_report(self, signal: Signal) -> tuple[tuple[int, int], PeerReport | None] | None:
        """((reporter, heartbeat number), the report if it is about us), or
        None (counted) when the report is malformed."""
        value = signal.value
        if not isinstance(value, tuple) or len(value) != 7:
            self._drops["bad-heartbeat"] += 1
            return None
        number = _whole(value[0], MAX_U32)
        peer = _whole(value[1], MAX_U32)
        epoch = _whole(value[2], MAX_U32)
        incarnation = _whole(value[3], MAX_U32)
        code = _whole(value[4], 2)
        loss, burst = value[5], value[6]
        if (
            number is None
            or peer is None
            or epoch is None
            or incarnation is None
            or code is None
            or not (0.0 <= loss <= 1.0 or loss == _UNMEASURED)
            or not 1.0 <= burst <= 1e6
        ):
            self._drops["bad-heartbeat"] += 1
            return None
        if peer != self.node_id:
            return (signal.source, number), None
        if loss == _UNMEASURED:
            if len(self._unmeasured) >= self.config.membership.max_peers:
                self._unmeasured.clear()  # bounded; at worst an early zero counts
            self._unmeasured.add(signal.source)
            loss = 0.0
        else:
            self._unmeasured.discard(signal.source)
        report = PeerReport(peer, epoch, incarnation, _STATES_BY_CODE[code], loss, burst)
        return (signal.source, number), report

    def _heard(
        self, signal: Signal, reports: dict[tuple[int, int], PeerReport], now: float
    ) -> None:
        value = signal.value
        if not isinstance(value, tuple) or len(value) != 4:
            self._drops["bad-heartbeat"] += 1
            return
        epoch = _whole(value[0], MAX_U32)
        incarnation = _whole(value[1], MAX_U32)
        interval = value[2]
        number = _whole(value[3], MAX_U32)
        if epoch is None or incarnation is None or number is None or not 0.0 < interval <= 3600:
            self._drops["bad-heartbeat"] += 1
            return
        # Heartbeats are numbered per epoch: only a newer (epoch, number) is
        # news.  Copies from several relays or radios stop here, and a new
        # epoch gets through even though its signal numbers start afresh.
        mark = self._heartbeat_marks.get(signal.source)
        if mark is not None and (epoch, number) <= mark:
            self._drops["duplicate-signal"] += 1
            return
        self._heartbeat_marks[signal.source] = (epoch, number)
        self._heartbeat_marks.move_to_end(signal.source)
        while len(self._heartbeat_marks) > self.config.membership.max_peers:
            self._heartbeat_marks.popitem(last=False)
        self._relay(signal, now)
        about_us = reports.pop((signal.source, number), None)
        if about_us is None:
            about_us = self._waiting_reports.pop(signal.source, None)
        heartbeat = Heartbeat(
            signal.source,
            epoch,
            incarnation,
            interval,
            (about_us,) if about_us is not None else (),
        )
        self._membership_events(self.membership.heard(heartbeat, now), now)
        link = self.receiver.link_statistics(signal.source)
        if link is not None:
            # Loss on the link from this peer lowers the weight of its readings.
            self.reputation.set_link_quality(signal.source, max(1.0 - link.loss_rate, 1e-6))

    def _membership_events(self, events: list[MembershipEvent], now: float) -> None:
        for event in events:
            if isinstance(event, LinkReported):
                if event.reporter in self._unmeasured:
                    continue  # nothing measured yet: not news, and not zero loss
                self.sender.reports.report(event.reporter, event.loss, event.mean_burst, now)
            elif isinstance(event, PeerRestarted):
                self._seen.restart(event.node)
            self._events.append(event)

    # -- topics -------------------------------------------------------------

    def _take(
        self, signal: Signal, now: float, *, sender: int, recovered: bool, local: bool
    ) -> None:
        """Report a new signal, then put it into its topic."""
        self._events.append(SignalDelivered(signal, sender, now, recovered, local))
        held = self._topics.get(signal.topic)
        if held is None:
            if len(self._topics) >= self.config.max_topics:
                self._unfused["too-many-topics"] += 1
                return
            natural = kind, dims = _natural_kind(signal.value)
            filt = None
            if kind != "bytes":
                policy = self.config.policy(signal.topic, kind, dims)
                kind = policy.kind
                filt = ConsensusFilter(policy, self.reputation)
            held = self._topics[signal.topic] = _Topic(kind, natural, filt)
        if held.filter is None:
            if not isinstance(signal.value, bytes):
                self._unfused["kind-mismatch"] += 1
                return
            held.raw[signal.source] = signal
            held.raw.move_to_end(signal.source)
            while len(held.raw) > _MAX_RAW_SOURCES:
                held.raw.popitem(last=False)
        else:
            config = held.filter.config
            value = _reading(held.kind, config.dims, signal.value)
            if value is None:
                self._unfused["kind-mismatch"] += 1
                return
            # The reading was taken `age` ago by the sender's account; an age
            # beyond the signal's longest lifetime says no more than that.
            longest = signal.ttl or 0.0
            if signal.half_life is not None:
                longest = max(longest, signal.half_life * config.expire_half_lives)
            age = min(max(signal.age, 0.0), longest)
            taken = now - age
            result = held.filter.update(
                signal.source,
                value,
                signal.confidence,
                taken,
                half_life=signal.half_life,
                ttl=signal.ttl,
            )
            if result != "accepted":
                reason = f"consensus-{result}"
                self._unfused[reason] = self._unfused.get(reason, 0) + 1
                return
            readings = held.held
            readings[signal.source] = (
                signal.value,
                signal.confidence,
                taken,
                signal.half_life,
                signal.ttl,
            )
            readings.move_to_end(signal.source)
            if len(readings) > config.max_sources:
                readings.popitem(last=False)
        held.updates += 1
        held.last_update = now

    # -- reload -------------------------------------------------------------

    def reconfigure(
        self,
        *,
        membership: MembershipConfig,
        classes: Mapping[QoS, ClassConfig],
        policy: Policy,
        now: float,
    ) -> list[str]:
        """Take the settings a config reload may change; return the topics
        that got a new filter.

        * membership: every peer is kept; see :meth:`Membership.reconfigure`;
        * QoS classes: what is queued goes out under the old settings first;
        * topic policies: new topics get the new policy at once; a held topic
          whose settings change gets a new filter of the new settings, fed
          again with each source's latest reading, so that its estimate goes
          on without waiting for the sources to publish again.  A reading the
          new settings refuse (out of the new range, of a new kind) is counted
          in ``unfused`` as any refused reading is.

        Reputation is kept as it is: it is learnt, not configured per topic.
        """
        self.membership.reconfigure(membership, now)
        self.sender.reconfigure(classes, now)
        self.config = replace(
            self.config,
            membership=membership,
            sender=self.sender.config,
            policy=policy,
        )
        rebuilt: list[str] = []
        for topic, held in self._topics.items():
            if held.filter is None:
                continue
            kind, dims = held.natural
            config = policy(topic, kind, dims)
            if config == held.filter.config:
                continue
            rebuilt.append(topic)
            held.kind = config.kind
            held.filter = ConsensusFilter(config, self.reputation)
            readings = sorted(held.held.items(), key=lambda item: item[1][2])
            held.held = OrderedDict()
            for source, (value, confidence, taken, half_life, ttl) in readings:
                reading = _reading(config.kind, config.dims, value)
                if reading is None:
                    self._unfused["kind-mismatch"] += 1
                    continue
                result = held.filter.update(
                    source, reading, confidence, taken, half_life=half_life, ttl=ttl
                )
                if result != "accepted":
                    reason = f"consensus-{result}"
                    self._unfused[reason] = self._unfused.get(reason, 0) + 1
                    continue
                held.held[source] = (value, confidence, taken, half_life, ttl)
                if len(held.held) > config.max_sources:
                    held.held.popitem(last=False)
        return rebuilt

    # -- heartbeats ---------------------------------------------------------

    def _send_heartbeat(self, now: float) -> None:
        links: dict[int, tuple[float, float]] = {}
        for view in self.membership.peers(now):
            stats = self.receiver.link_statistics(view.node)
            if stats is not None and stats.settled >= _MIN_SETTLED:
                # The bound, not the point estimate: a sender sizes its repair
                # by the worst report, and an early report of a few frames
                # may show no loss on a lossy link.
                links[view.node] = (stats.loss_bound, max(stats.mean_burst, 1.0))
        heartbeat = self.membership.make_heartbeat(now, links)
        number = self._heartbeat_seq
        self._heartbeat_seq = (number + 1) & MAX_U32
        interval = self.config.membership.heartbeat_interval
        lifetime = max(3.0 * interval, 0.001)
        signals = [
            Signal(
                HEARTBEAT_TOPIC,
                (
                    float(heartbeat.epoch),
                    float(heartbeat.incarnation),
                    heartbeat.interval,
                    float(number),
                ),
                ttl=lifetime,
                qos=QoS.CRITICAL,
            )
        ]
        for report in heartbeat.reports:
            signals.append(
                Signal(
                    REPORT_TOPIC,
                    (
                        float(number),
                        float(report.node),
                        float(report.epoch),
                        float(report.incarnation),
                        float(_STATE_CODES[report.state]),
                        report.loss if report.node in links else _UNMEASURED,
                        report.mean_burst,
                    ),
                    ttl=lifetime,
                    qos=QoS.CRITICAL,
                )
            )
        for signal in signals:
            stamped = replace(signal, source=self.node_id, seq=self.sender.next_signal_seq())
            self.sender.publish(stamped, now, checked=True)  # made by make_signal
        self._heartbeats += 1
