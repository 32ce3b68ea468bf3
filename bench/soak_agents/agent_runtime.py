"""What every peer-system soak agent shares: CLI, plan, message, records, run loop.

A soak agent is one process per node of a soak cluster.  It publishes the
plan's publishers of its node on an absolute schedule (``schedule.py``),
subscribes to every topic of the plan, and writes one CSV line per event
(the record format is in ``README.md`` beside this file).  Each peer system
supplies only a :class:`PeerTransport` factory; :func:`run_agent` does the
rest, the same way for every system, so that the soak compares the systems
and not the agents.

Threads: the publisher runs in a thread of its own, sleeping until each slot
is due; the receive path is the library's (its callback threads, or a thread
the transport starts) and calls :meth:`Recorder.received`; the main thread
only waits for the end (or SIGTERM) and flushes the records about once a
second.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Protocol, TextIO

from schedule import TopicSchedule

from cloudkernel.cluster.plan import Plan, PlanError, Publisher

__all__ = [
    "MESSAGE",
    "Agent",
    "PeerTransport",
    "Plan",
    "PlanError",
    "Publisher",
    "Recorder",
    "decode_message",
    "encode_message",
    "load_plan",
    "run_agent",
]

#: source node, seq, send time (monotonic ns), value: 22 bytes, little-endian
MESSAGE = struct.Struct("<HIqd")
#: how often the records are flushed while the agent runs
FLUSH_INTERVAL = 1.0
#: how long the end of the run waits for the publisher thread and the transport
SHUTDOWN_TIMEOUT = 5.0
#: a liar's offset (shape parity with the cloudkernel agent; not analysed here)
LIAR_OFFSET = 5.0
NOISE_SIGMA = 0.1


def load_plan(path: Path) -> Plan:
    """The plan file, checked by the same rules as for cloudkernel's agent."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PlanError(f"{path}: {exc!r}") from exc
    if not isinstance(raw, dict):
        raise PlanError(f"{path}: not a JSON object")
    try:
        return Plan.from_dict(raw)
    except PlanError as exc:
        raise PlanError(f"{path}: {exc}") from exc


def encode_message(src: int, seq: int, send_ns: int, value: float) -> bytes:
    return MESSAGE.pack(src, seq, send_ns, value)


def decode_message(data: bytes) -> tuple[int, int, int, float] | None:
    """(src, seq, send_ns, value), or None for a payload of the wrong size."""
    if len(data) != MESSAGE.size:
        return None
    src, seq, send_ns, value = MESSAGE.unpack(data)
    return src, seq, send_ns, value


class Recorder:
    """The agent's record file: one CSV line per event, buffered, thread-safe.

    The lock makes each line whole (publisher, receive callbacks and the
    flushing main thread write concurrently); after :meth:`close` further
    events are dropped, since the receive path may still deliver a message or
    two while the transport shuts down.
    """

    def __init__(self, path: Path, node: int) -> None:
        self.node = node
        self._file: TextIO = open(path, "w", buffering=1 << 16)
        self._lock = threading.Lock()
        self._open = True
        self.malformed = 0

    def _write(self, line: str) -> None:
        with self._lock:
            if self._open:
                self._file.write(line)

    def published(self, t_ns: int, topic: str, seq: int) -> None:
        self._write(f"P,{t_ns},{topic},{self.node},{seq}\n")

    def failed(self, t_ns: int, topic: str, reason: str) -> None:
        clean = " ".join(reason.replace(",", ";").split())[:200]
        self._write(f"F,{t_ns},{topic},{clean}\n")

    def received(self, topic: str, data: bytes) -> None:
        """A message from the network; the receive callbacks call this first thing."""
        t_ns = time.monotonic_ns()
        if len(data) != MESSAGE.size:
            self.malformed += 1
            return
        src, seq, _send_ns, _value = MESSAGE.unpack(data)
        if src != self.node:
            self._write(f"R,{t_ns},{topic},{src},{seq}\n")

    def summary(self, missed: dict[str, int]) -> None:
        t_ns = time.monotonic_ns()
        for topic, count in missed.items():
            self._write(f"S,{t_ns},{topic},{count}\n")

    def flush(self) -> None:
        with self._lock:
            if self._open:
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._open:
                self._open = False
                self._file.close()


class PeerTransport(Protocol):
    """One peer system's side of an agent: publish bytes on a topic; close."""

    def publish(self, topic: str, data: bytes) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Agent:
    """What a transport factory needs to know about the agent it serves."""

    plan: Plan
    node: int
    #: the node's own interface address (10.77.0.I on the soak cluster), or None
    iface_addr: str | None
    #: the plan's publishers of this node
    local_publishers: tuple[Publisher, ...]


#: builds a system's transport; it must deliver every message of the plan's
#: topics to ``on_message(topic, payload)`` from the moment it returns
TransportFactory = Callable[[Agent, Callable[[str, bytes], None]], PeerTransport]


def publish_loop(
    agent: Agent,
    transport: PeerTransport,
    recorder: Recorder,
    schedules: dict[str, TopicSchedule],
    stop: threading.Event,
) -> None:
    """Send every local publisher's slots until the schedules end or ``stop``."""
    rng = random.Random(agent.plan.seed * 1000 + agent.node)
    by_topic = {p.topic: p for p in agent.local_publishers}
    # Bounded: every pass either sends a slot, skips stale ones or sleeps
    # until one is due, and the schedules end at t0 + duration.
    while not stop.is_set():
        now = time.monotonic()
        waits = {topic: s.poll(now) for topic, s in schedules.items()}
        pending = {topic: w for topic, w in waits.items() if w is not None}
        if not pending:
            return
        topic = min(pending, key=lambda t: pending[t])
        if pending[topic] > 0:
            stop.wait(pending[topic])
            continue
        publisher = by_topic[topic]
        seq = schedules[topic].sent()
        send_time = time.monotonic()
        value = math.sin(send_time / 10) + rng.gauss(0.0, NOISE_SIGMA)
        if publisher.liar:
            value += LIAR_OFFSET
        t_ns = time.monotonic_ns()
        try:
            transport.publish(topic, encode_message(agent.node, seq, t_ns, value))
        except Exception as exc:  # the record says why; the schedule goes on
            recorder.failed(t_ns, topic, f"{type(exc).__name__}: {exc}")
        else:
            recorder.published(t_ns, topic, seq)


def parse_args(argv: Sequence[str] | None, system: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=f"Soak agent for {system}: publish and subscribe as PLAN says, "
        "record every event to OUT (see bench/soak_agents/README.md)."
    )
    parser.add_argument("--plan", type=Path, required=True, help="the soak plan (JSON)")
    parser.add_argument("--node", type=int, required=True, help="this node's id")
    parser.add_argument("--out", type=Path, required=True, help="the record file (CSV)")
    parser.add_argument(
        "--iface-addr", default=None, help="this node's interface address, e.g. 10.77.0.3"
    )
    return parser.parse_args(argv)


def run_agent(argv: Sequence[str] | None, system: str, open_transport: TransportFactory) -> int:
    """The whole agent: returns the exit status (0 after a normal end or SIGTERM)."""
    args = parse_args(argv, system)
    try:
        plan = load_plan(args.plan)
    except PlanError as exc:
        print(f"{system} agent: bad plan: {exc}", file=sys.stderr)
        return 2
    agent = Agent(
        plan=plan,
        node=args.node,
        iface_addr=args.iface_addr,
        local_publishers=tuple(p for p in plan.publishers if p.node == args.node),
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    recorder = Recorder(args.out, args.node)
    schedules = {
        p.topic: TopicSchedule(p.start(plan.t0), p.rate, plan.duration)
        for p in agent.local_publishers
    }
    transport: PeerTransport | None = None
    publisher: threading.Thread | None = None
    try:
        transport = open_transport(agent, recorder.received)
        publisher = threading.Thread(
            target=publish_loop,
            args=(agent, transport, recorder, schedules, stop),
            name="publisher",
            daemon=True,
        )
        publisher.start()
        # Bounded by the end of the drain; SIGTERM sets ``stop`` and ends the wait at once.
        while not stop.is_set():
            remaining = plan.end + plan.drain - time.monotonic()
            if remaining <= 0:
                break
            stop.wait(min(FLUSH_INTERVAL, remaining))
            recorder.flush()
    finally:
        stop.set()
        if publisher is not None:
            publisher.join(SHUTDOWN_TIMEOUT)
        if transport is not None:
            close_bounded(transport, system)
        recorder.summary({topic: s.missed for topic, s in schedules.items()})
        recorder.close()
        if recorder.malformed:
            print(
                f"{system} agent: ignored {recorder.malformed} malformed messages",
                file=sys.stderr,
            )
    return 0


def close_bounded(transport: PeerTransport, system: str) -> None:
    """Close the transport, giving up after SHUTDOWN_TIMEOUT: the records
    matter more than a clean goodbye to peers that are shutting down too."""
    closer = threading.Thread(target=transport.close, name="close", daemon=True)
    closer.start()
    closer.join(SHUTDOWN_TIMEOUT)
    if closer.is_alive():
        print(f"{system} agent: transport did not close in {SHUTDOWN_TIMEOUT} s", file=sys.stderr)
