"""Benchmark the receive pipeline: datagrams in, signals out, against a bare msgpack floor.

Each row feeds one stream of real datagrams to a fresh ``Receiver``: the tag
check (ChaCha20-Poly1305, always on), header rules, replay window, FEC block
placement, rebuilds of lost source frames, and ``decode_payload`` of every
delivered frame, with the signals of each delivered frame iterated and each
value touched.  In the same run, and timed the same way, the *floor* is a bare
``msgpack.unpackb(payload, use_list=False, raw=False)`` loop over the plaintext
payloads of the source frames that row delivered: what any Python receiver of
these payloads must spend at least.

The datagrams are made outside the timed region by real ``Sender``s (default
``SenderConfig``: ``max_datagram`` 1232, full source frames of about 1186
bytes), four of them (node ids 17, 23, 42, 99) with their datagrams
interleaved one by one, so per-sender state is exercised.  Every source frame
is filled to the payload budget.  Rows cross:

* the signal mix: ``scalar`` (float readings, about 21 per frame), ``vector``
  (6-dim pose and twist vectors) and ``mixed`` (floats, categories, short bytes);
* the FEC policy of the normal class: ``k32m4`` (fixed: blocks of 32 source
  frames and 4 repair frames) and ``adaptive`` (the default policy, told the
  link's loss as receivers' heartbeats would tell it);
* the loss: 0 % (every frame fed; the repair frames are then
  ``repair-unneeded``) and 10 % independent (seeded), which makes rebuilds;
* with ``--encrypt``, payload encryption on as well.

The receiver's clock advances 10 us per datagram and a final ``poll`` times
out the blocks that could not be rebuilt.  Delivered counts and values are
checked against what was sent before anything is timed (0 % loss: every
signal exactly once), and every timed run must deliver the same counts.  A
figure is the median over repeats (``time.perf_counter_ns``, garbage
collector off); pipeline and floor repeats alternate.

Run ``python bench/bench_pipeline.py --help`` for the options and see
bench/README.md for what the columns mean.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import importlib.metadata
import io
import json
import os
import platform
import pstats
import random
import statistics
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import chain, zip_longest
from typing import Any

# msgpack ships no type hints: what it returns is Any, annotated where it leaves.
import msgpack  # type: ignore[import-untyped]

# Make `python bench/bench_pipeline.py` work from a source checkout without install.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import cloudkernel  # noqa: E402
from cloudkernel import fec  # noqa: E402
from cloudkernel.core import receiver as receiver_module  # noqa: E402
from cloudkernel.core.auth import KeyRing, SwarmKey  # noqa: E402
from cloudkernel.core.events import Event, PacketDropped, SignalsReceived  # noqa: E402
from cloudkernel.core.losstrack import LossTracker  # noqa: E402
from cloudkernel.core.receiver import Receiver, ReceiverConfig  # noqa: E402
from cloudkernel.core.redundancy import RedundancyPolicy  # noqa: E402
from cloudkernel.core.replay import ReplayWindow, Verdict  # noqa: E402
from cloudkernel.core.sender import (  # noqa: E402
    ClassConfig,
    Sender,
    SenderConfig,
    default_classes,
)
from cloudkernel.core.signals import (  # noqa: E402
    PayloadBuilder,
    QoS,
    Signal,
    Value,
    decode_payload,
    encode_signal,
    make_signal,
)
from cloudkernel.core.wire import FLAG_ENCRYPTED, FLAG_REPAIR, HEADER, parse_header  # noqa: E402

SEED = 20240611
SECRET = bytes(range(32))
NODE_IDS = (17, 23, 42, 99)
RECEIVER_ID = 1
TARGET_PPS = 250_000
#: receiver clock step per datagram fed, seconds
STEP = 1e-5
START = 1000.0
LOSSES = (0.0, 0.10)
FIXED_K, FIXED_M = 32, 4
DEFAULT_PACKETS, QUICK_PACKETS = 20_000, 3_000
DEFAULT_REPEATS, QUICK_REPEATS = 5, 3
PROFILE_TOP = 25

_unpackb = msgpack.unpackb


class VerifyError(AssertionError):
    pass


def _verify(ok: bool, what: str) -> None:
    if not ok:
        raise VerifyError(f"wrong result: {what}")


# --------------------------------------------------------------------------- signal mixes

SCALAR_TOPICS = (
    "battery",
    "battery_temp",
    "motor_temp_left",
    "motor_temp_right",
    "rssi",
    "speed",
    "altitude",
    "heading",
    "cpu_load",
    "current_draw",
    "range_front",
    "range_rear",
)

MakeSignal = Callable[[int, random.Random, int], Signal]


def _scalar(node: int, rng: random.Random, i: int) -> Signal:
    topic = f"swarm/robot{node}/{SCALAR_TOPICS[i % len(SCALAR_TOPICS)]}"
    return make_signal(topic, rng.uniform(0.0, 100.0), confidence=0.95, half_life=5.0)


def _vector(node: int, rng: random.Random, i: int) -> Signal:
    name = "pose" if i % 2 == 0 else "twist"
    value = [rng.uniform(-50.0, 50.0) for _ in range(6)]
    return make_signal(f"swarm/robot{node}/{name}", value, confidence=0.9, ttl=1.0)


def _mixed(node: int, rng: random.Random, i: int) -> Signal:
    r = rng.random()
    if r < 0.5:
        return _scalar(node, rng, i)
    if r < 0.75:
        return make_signal(f"swarm/robot{node}/state", rng.randrange(8), ttl=10.0)
    data = rng.randbytes(rng.randint(4, 32))
    return make_signal(f"swarm/robot{node}/tag_seen", data, confidence=0.8, half_life=30.0)


@dataclass(frozen=True)
class Mix:
    name: str
    description: str
    make: MakeSignal


MIXES = (
    Mix("scalar", "float readings, e.g. swarm/robot17/battery", _scalar),
    Mix("vector", "6-dim float vectors (pose, twist)", _vector),
    Mix("mixed", "1/2 floats, 1/4 categories, 1/4 bytes of 4..32", _mixed),
)
POLICIES = ("k32m4", "adaptive")


def sender_config(policy: str, encrypt: bool) -> SenderConfig:
    classes = default_classes()
    if policy == "k32m4":
        classes[QoS.NORMAL] = ClassConfig(
            0.010, FIXED_K, RedundancyPolicy(fixed_m=FIXED_M, m_min=1, m_max=FIXED_M)
        )
    return SenderConfig(encrypt=encrypt, classes=classes)


def keyring() -> KeyRing:
    return KeyRing(SwarmKey(SECRET))


# --------------------------------------------------------------------------- streams


@dataclass
class Stream:
    """The datagrams of the four senders for one (mix, policy, encryption, planned loss)."""

    datagrams: list[bytes]  # interleaved, before any loss
    source_frames: int
    repair_frames: int
    blocks: int
    signals: int
    #: (source, seq) -> value of every signal sent
    values: dict[tuple[int, int], Value]
    #: (source, seq) of a frame's first signal -> the frame's plaintext payload
    payloads: dict[tuple[int, int], bytes]


def signals_for(
    mix: Mix, node: int, frames: int, budget: int, cache: dict[tuple[str, int, int], list[Signal]]
) -> list[Signal]:
    """Signals that fill exactly ``frames`` source frames of ``budget`` bytes each.

    A mirror of the sender's batching: the sender stamps its own signals with
    the node id and sequence numbers from 0, and seals a frame when the next
    signal does not fit.  The signal that would open frame ``frames + 1`` is
    left out, so the sender's final flush seals a full last frame.
    """
    key = (mix.name, node, frames)
    if key in cache:
        return cache[key]
    rng = random.Random(SEED * 100 + zlib.crc32(mix.name.encode()) + node)
    mirror = PayloadBuilder(budget)
    out: list[Signal] = []
    sealed = 0
    while True:
        signal = mix.make(node, rng, len(out))
        encoded = encode_signal(signal, 0, source=node, seq=len(out))
        if not mirror.fits(encoded):
            mirror.build()
            sealed += 1
            if sealed == frames:
                break
        mirror.add(encoded)
        out.append(signal)
    cache[key] = out
    return out


def make_stream(
    mix: Mix,
    policy: str,
    encrypt: bool,
    planned_loss: float,
    packets: int,
    cache: dict[tuple[str, int, int], list[Signal]],
) -> Stream:
    config = sender_config(policy, encrypt)
    ring = keyring()
    key = ring.current
    per_node = [
        packets // len(NODE_IDS) + (i < packets % len(NODE_IDS)) for i in range(len(NODE_IDS))
    ]
    lists: list[list[bytes]] = []
    values: dict[tuple[int, int], Value] = {}
    source = repair = blocks = 0
    for node, frames in zip(NODE_IDS, per_node, strict=True):
        sender = Sender(node, 7, ring, config)
        if policy == "adaptive":
            # What heartbeats tell a sender on this link (1 / (1 - p): iid runs).
            burst = 1.0 / (1.0 - planned_loss)
            sender.reports.report(RECEIVER_ID, planned_loss, burst, START)
        signals = signals_for(mix, node, frames, config.payload_budget, cache)
        for seq, signal in enumerate(signals):
            sender.publish(signal, START)
            values[(node, seq)] = signal.value
        lists.append(sender.flush(START))
        stats = sender.statistics()
        _verify(stats.source_frames == frames, f"{mix.name} node {node}: {stats.source_frames}")
        source += stats.source_frames
        repair += stats.repair_frames
        blocks += stats.blocks
    datagrams = [d for d in chain.from_iterable(zip_longest(*lists)) if d is not None]
    payloads: dict[tuple[int, int], bytes] = {}
    for d in datagrams:
        if not d[3] & FLAG_REPAIR:
            body = key.open(d, bool(d[3] & FLAG_ENCRYPTED))
            _verify(body is not None, "a sent frame does not open")
            assert body is not None
            first = decode_payload(body, QoS.NORMAL)[0]
            payloads[(first.source, first.seq)] = body
    _verify(len(payloads) == source, "source frames")
    return Stream(datagrams, source, repair, blocks, len(values), values, payloads)


def lossy(datagrams: list[bytes], loss: float, seed: int) -> list[bytes]:
    if loss <= 0.0:
        return list(datagrams)
    rng = random.Random(seed)
    return [d for d in datagrams if rng.random() >= loss]


# --------------------------------------------------------------------------- runs


@dataclass
class Outcome:
    """What one untimed, fully recorded run delivered."""

    frames: int
    recovered_frames: int
    signals: int
    duplicates: int
    drops: dict[str, int]
    delivered_payloads: list[bytes]


def new_receiver() -> Receiver:
    return Receiver(keyring(), ReceiverConfig(node_id=RECEIVER_ID))


def final_poll_time(fed: int) -> float:
    return START + fed * STEP + ReceiverConfig().block_timeout + 1.0


def record_run(stream: Stream, fed: list[bytes]) -> Outcome:
    """Feed everything, keep every event, and check each delivered value."""
    receiver = new_receiver()
    events: list[Event] = []
    now = START
    for d in fed:
        now += STEP
        events += receiver.feed(d, now)
    events += receiver.poll(final_poll_time(len(fed)))
    seen: Counter[tuple[int, int]] = Counter()
    drops: Counter[str] = Counter()
    frames = recovered = 0
    payloads: list[bytes] = []
    for e in events:
        if isinstance(e, SignalsReceived):
            frames += 1
            recovered += e.recovered
            first = e.signals[0]
            payloads.append(stream.payloads[(first.source, first.seq)])
            for s in e.signals:
                key = (s.source, s.seq)
                seen[key] += 1
                _verify(stream.values.get(key) == s.value, f"value of signal {key}")
        elif isinstance(e, PacketDropped):
            drops[e.reason.value] += e.count
    duplicates = sum(n - 1 for n in seen.values())
    return Outcome(frames, recovered, len(seen), duplicates, dict(drops), payloads)


def time_pipeline(fed: list[bytes]) -> tuple[int, int, int]:
    """One timed run: (ns, frames delivered, signals delivered), each value touched."""
    receiver = new_receiver()
    feed = receiver.feed
    received = SignalsReceived
    frames = signals = 0
    value: object = None
    end = final_poll_time(len(fed))
    gc.disable()
    try:
        t0 = time.perf_counter_ns()
        now = START
        for d in fed:
            now += STEP
            for e in feed(d, now):
                if type(e) is received:
                    frames += 1
                    for s in e.signals:
                        value = s.value
                        signals += 1
        for e in receiver.poll(end):
            if type(e) is received:
                frames += 1
                signals += len(e.signals)
        ns = time.perf_counter_ns() - t0
    finally:
        gc.enable()
    del value
    return ns, frames, signals


def time_floor(payloads: list[bytes]) -> tuple[int, int]:
    """One timed run of the floor: (ns, signals)."""
    unpackb = _unpackb
    signals = 0
    gc.disable()
    try:
        t0 = time.perf_counter_ns()
        for p in payloads:
            signals += len(unpackb(p, use_list=False, raw=False))
        ns = time.perf_counter_ns() - t0
    finally:
        gc.enable()
    return ns, signals


def time_loop(fn: Callable[..., object], args: Sequence[tuple[Any, ...]]) -> int:
    gc.disable()
    try:
        t0 = time.perf_counter_ns()
        for a in args:
            fn(*a)
        return time.perf_counter_ns() - t0
    finally:
        gc.enable()


@dataclass
class Timing:
    ns: float  # median over repeats
    repeats: int
    spread: float  # (max - min) / median


def timing_of(samples: list[int]) -> Timing:
    med = statistics.median(samples)
    return Timing(med, len(samples), (max(samples) - min(samples)) / med if med else 0.0)


# --------------------------------------------------------------------------- rows


@dataclass
class Row:
    mix: str
    fec: str
    loss: float
    encrypt: bool
    datagrams_sent: int
    datagrams_fed: int
    repair_fed: int
    source_frames: int
    frames_delivered: int
    frames_recovered: int
    blocks: int
    mean_m: float
    mean_datagram_bytes: float
    mean_source_bytes: float
    signals_sent: int
    signals_delivered: int
    drops: dict[str, int]
    pipeline: Timing
    floor: Timing
    floor_payloads: int
    floor_signals: int
    status: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        enc = " enc" if self.encrypt else ""
        return f"{self.mix} {self.fec} {self.loss:.0%}{enc}"

    @property
    def seconds(self) -> float:
        return self.pipeline.ns / 1e9

    @property
    def datagrams_per_s(self) -> float:
        return self.datagrams_fed / self.seconds

    @property
    def source_pps(self) -> float:
        return self.frames_delivered / self.seconds

    @property
    def signals_per_s(self) -> float:
        return self.signals_delivered / self.seconds

    @property
    def floor_pps(self) -> float:
        return self.floor_payloads / (self.floor.ns / 1e9)

    @property
    def floor_sps(self) -> float:
        return self.floor_signals / (self.floor.ns / 1e9)

    @property
    def vs_floor(self) -> float:
        return self.signals_per_s / self.floor_sps

    @property
    def delivery(self) -> float:
        return self.signals_delivered / self.signals_sent


def measure_row(
    mix: Mix,
    policy: str,
    loss: float,
    encrypt: bool,
    stream: Stream,
    repeats: int,
) -> tuple[Row, list[bytes]]:
    seed = SEED + zlib.crc32(f"{mix.name} {policy} {loss} {encrypt}".encode())
    fed = lossy(stream.datagrams, loss, seed)
    outcome = record_run(stream, fed)  # also the warm-up
    _verify(outcome.duplicates == 0, f"{outcome.duplicates} signals delivered twice")
    if loss == 0.0:
        _verify(outcome.signals == stream.signals, "0 % loss: every signal exactly once")
        _verify(outcome.frames == stream.source_frames, "0 % loss: every source frame")
        _verify(outcome.recovered_frames == 0, "0 % loss: nothing rebuilt")
        _verify(outcome.drops.keys() <= {"repair-unneeded"}, f"0 % loss drops {outcome.drops}")
    payloads = outcome.delivered_payloads
    pipe: list[int] = []
    floor: list[int] = []
    for _ in range(repeats):
        ns, frames, signals = time_pipeline(fed)
        _verify((frames, signals) == (outcome.frames, outcome.signals), "timed run counts")
        pipe.append(ns)
        ns, signals = time_floor(payloads)
        _verify(signals == outcome.signals, "floor signal count")
        floor.append(ns)
    repair_fed = sum(1 for d in fed if d[3] & FLAG_REPAIR)
    sources = [len(d) for d in stream.datagrams if not d[3] & FLAG_REPAIR]
    row = Row(
        mix=mix.name,
        fec=policy,
        loss=loss,
        encrypt=encrypt,
        datagrams_sent=len(stream.datagrams),
        datagrams_fed=len(fed),
        repair_fed=repair_fed,
        source_frames=stream.source_frames,
        frames_delivered=outcome.frames,
        frames_recovered=outcome.recovered_frames,
        blocks=stream.blocks,
        mean_m=stream.repair_frames / stream.blocks,
        mean_datagram_bytes=sum(map(len, fed)) / len(fed),
        mean_source_bytes=sum(sources) / len(sources),
        signals_sent=stream.signals,
        signals_delivered=outcome.signals,
        drops=outcome.drops,
        pipeline=timing_of(pipe),
        floor=timing_of(floor),
        floor_payloads=len(payloads),
        floor_signals=outcome.signals,
    )
    if loss == 0.0:
        row.status = "PASS" if row.source_pps >= TARGET_PPS else "MISS"
    return row, fed


@dataclass
class Stage:
    stage: str
    items: str
    count: int
    timing: Timing
    #: part of the pipeline's work (the floor is not)
    inside: bool

    @property
    def ns_per_item(self) -> float:
        return self.timing.ns / self.count


@dataclass
class StageJob:
    stage: str
    items: str
    fn: Callable[..., object]
    #: the arguments of every call; made afresh for each repeat (state starts empty)
    make_args: Callable[[], list[tuple[Any, ...]]]
    inside: bool = True


def _replay(window: ReplayWindow, seq: int) -> None:
    if window.check(seq) is Verdict.NEW:
        window.accept(seq)


def _touch(signals: list[Signal]) -> None:
    value: object = None
    for s in signals:
        value = s.value
    del value


def measure_stages(fed: list[bytes], repeats: int) -> list[Stage]:
    """Each stage alone over the frames of one 0 % row, as the receiver runs it."""
    key = keyring().current
    opens = [(d, bool(d[3] & FLAG_ENCRYPTED)) for d in fed]
    seqs = [(fields[6], fields[8]) for fields in map(HEADER.unpack_from, fed)]
    bodies: list[tuple[bytes, QoS]] = []
    for d, enc in opens:
        if not d[3] & FLAG_REPAIR:
            body = key.open(d, enc)
            assert body is not None
            bodies.append((body, QoS.NORMAL))
    decoded = [(decode_payload(b, q),) for b, q in bodies]
    cfg = ReceiverConfig()

    def windows() -> list[tuple[Any, ...]]:
        per: dict[int, ReplayWindow] = {}
        return [(per.setdefault(n, ReplayWindow(cfg.replay_window)), q) for n, q in seqs]

    def trackers() -> list[tuple[Any, ...]]:
        per: dict[int, LossTracker] = {}
        return [(per.setdefault(n, LossTracker()), q) for n, q in seqs]

    headers = [(d, cfg.max_block_sources) for d in fed]
    # The receiver may call wire.check_header (the checks without building a
    # Header): then that is its header stage, and parse_header is shown beside it.
    fast_check: Callable[..., object] | None = getattr(receiver_module, "check_header", None)
    jobs = [StageJob("parse_header", "datagram", parse_header, lambda: headers, fast_check is None)]
    if fast_check is not None:
        jobs.append(
            StageJob(
                "check_header (what the receiver calls)", "datagram", fast_check, lambda: headers
            )
        )
    jobs += [
        StageJob("SwarmKey.open (auth)", "datagram", key.open, lambda: opens),
        StageJob("ReplayWindow check + accept", "datagram", _replay, windows),
        StageJob("LossTracker.arrived", "datagram", LossTracker.arrived, trackers),
        StageJob("decode_payload", "source frame", decode_payload, lambda: bodies),
        StageJob("bench loop: touch each value", "source frame", _touch, lambda: decoded),
        StageJob(
            "msgpack.unpackb (the floor)",
            "source frame",
            lambda b, _q: _unpackb(b, use_list=False, raw=False),
            lambda: bodies,
            inside=False,
        ),
    ]
    for job in jobs:
        job.fn(*job.make_args()[0])  # warm up
    samples: list[list[int]] = [[] for _ in jobs]
    counts = [0] * len(jobs)
    for _ in range(repeats):
        for i, job in enumerate(jobs):
            args = job.make_args()
            counts[i] = len(args)
            samples[i].append(time_loop(job.fn, args))
    return [
        Stage(job.stage, job.items, n, timing_of(got), job.inside)
        for job, n, got in zip(jobs, counts, samples, strict=True)
    ]


# --------------------------------------------------------------------------- report


def _si(x: float) -> str:
    if x >= 1e6:
        return f"{x / 1e6:,.2f}M"
    if x >= 1e3:
        return f"{x / 1e3:,.1f}k"
    return f"{x:,.0f}"


def print_table(head: Sequence[str], lines: Sequence[Sequence[str]], left: int = 1) -> None:
    widths = [max(len(h), *(len(x[i]) for x in lines)) for i, h in enumerate(head)]

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    print(fmt(head))
    print(fmt(["-" * w for w in widths]))
    for line in lines:
        print(fmt(line))


def print_rows(rows: list[Row]) -> None:
    print("What each row fed and delivered (checked before timing):")
    print_table(
        (
            "row",
            "k/m",
            "sent",
            "fed",
            "repair fed",
            "mean B",
            "src B",
            "src frames",
            "delivered",
            "rebuilt",
            "signals",
            "sig/frame",
            "delivery",
        ),
        [
            (
                r.label,
                f"{sender_config(r.fec, r.encrypt).classes[QoS.NORMAL].k_max}/{r.mean_m:.3g}",
                f"{r.datagrams_sent:,}",
                f"{r.datagrams_fed:,}",
                f"{r.repair_fed:,}",
                f"{r.mean_datagram_bytes:,.0f}",
                f"{r.mean_source_bytes:,.0f}",
                f"{r.source_frames:,}",
                f"{r.frames_delivered:,}",
                f"{r.frames_recovered:,}",
                f"{r.signals_delivered:,}",
                f"{r.signals_sent / r.source_frames:.1f}",
                f"{r.delivery:.2%}" if r.delivery < 1.0 else "100%",
            )
            for r in rows
        ],
    )
    print()
    print("Speed (one core; median of repeats; +- is half the range):")
    print_table(
        (
            "row",
            "ms",
            "+-",
            "datagrams/s",
            "src pkt/s",
            "signals/s",
            "floor pkt/s",
            "floor sig/s",
            "vs floor",
            "target",
        ),
        [
            (
                r.label,
                f"{r.pipeline.ns / 1e6:,.1f}",
                f"{r.pipeline.spread / 2:.0%}",
                _si(r.datagrams_per_s),
                _si(r.source_pps),
                _si(r.signals_per_s),
                _si(r.floor_pps),
                _si(r.floor_sps),
                f"{r.vs_floor:.3f}x",
                r.status or "-",
            )
            for r in rows
        ],
    )


def print_stages(row: Row, stages: list[Stage]) -> None:
    total = row.pipeline.ns
    print(f"\nWhere the time goes: each stage alone over the frames of row '{row.label}'")
    print(f"  (the whole pipeline: {total / 1e6:,.1f} ms for {row.datagrams_fed:,} datagrams)")
    lines = [
        (
            s.stage,
            f"{s.count:,} x {s.items}",
            f"{s.timing.ns / 1e6:,.1f}",
            f"{s.ns_per_item:,.0f}",
            f"{s.timing.ns / total:.0%}" if s.inside else f"({s.timing.ns / total:.0%})",
        )
        for s in stages
    ]
    rest = total - sum(s.timing.ns for s in stages if s.inside)
    lines.append(
        (
            "rest: the receiver's glue (below)",
            f"{row.datagrams_fed:,} x datagram",
            f"{rest / 1e6:,.1f}",
            f"{rest / row.datagrams_fed:,.0f}",
            f"{rest / total:.0%}",
        )
    )
    print_table(("stage", "items", "ms", "ns/item", "of pipeline"), lines, left=2)
    print(
        "  (x%): not in the pipeline's sum.  rest = pipeline - the other stages: feed/_receive "
        "calls,\n  key and sender look-ups, FEC block placement and retirement, event objects, "
        "the bench's feed loop"
    )
    budget = 1e9 / TARGET_PPS
    per_src = total / row.frames_delivered
    print(
        f"  per delivered source frame: {per_src:,.0f} ns now; {budget:,.0f} ns is the budget "
        f"for {TARGET_PPS:,} src pkt/s"
    )


def run_profile(streams: dict[float, list[bytes]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for loss, fed in streams.items():
        prof = cProfile.Profile()
        gc.disable()
        try:
            prof.enable()
            time_pipeline(fed)
            prof.disable()
        finally:
            gc.enable()
        buf = io.StringIO()
        stats = pstats.Stats(prof, stream=buf)
        stats.sort_stats("tottime").print_stats(PROFILE_TOP)
        print(f"\ncProfile: scalar k32m4 {loss:.0%} loss, top {PROFILE_TOP} by tottime")
        print("  (cProfile adds a fixed cost to every Python call: read the shares, not the times)")
        text = buf.getvalue()
        start = text.find("   ncalls")
        print(text[start:].rstrip() if start >= 0 else text.rstrip())
        prof_data = stats.get_stats_profile()
        top = sorted(prof_data.func_profiles.items(), key=lambda kv: -kv[1].tottime)
        out.append(
            {
                "row": f"scalar k32m4 {loss:.0%}",
                "total_tt": prof_data.total_tt,
                "top": [
                    {
                        "function": name,
                        "file": fp.file_name,
                        "line": fp.line_number,
                        "ncalls": fp.ncalls,
                        "tottime": fp.tottime,
                        "cumtime": fp.cumtime,
                    }
                    for name, fp in top[:PROFILE_TOP]
                ],
            }
        )
    return out


def dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def machine_facts() -> dict[str, Any]:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, val = line.partition(":")
                if key.strip() == "model name":
                    model = val.strip()
                    break
    except OSError:
        pass
    try:
        from cryptography.hazmat.backends.openssl.backend import backend

        openssl = str(backend.openssl_version_text())
    except Exception as exc:  # pragma: no cover - depends on cryptography's build
        openssl = f"? ({exc})"
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "affinity": affinity,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "cloudkernel": cloudkernel.__version__,
        "implementation": fec.IMPLEMENTATION,
        "kernel": fec.kernel(),
        "msgpack": f"{dist_version('msgpack')} ({msgpack.Unpacker.__module__})",
        "cryptography": f"{dist_version('cryptography')} ({openssl})",
    }


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="fewer packets and repeats (smoke run)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    p.add_argument(
        "--packets",
        type=int,
        metavar="N",
        help=f"source frames per row, over all senders (default {DEFAULT_PACKETS:,}; "
        f"--quick {QUICK_PACKETS:,})",
    )
    p.add_argument(
        "--repeats",
        type=int,
        metavar="N",
        help=f"timed runs per row (default {DEFAULT_REPEATS}; --quick {QUICK_REPEATS})",
    )
    p.add_argument("--encrypt", action="store_true", help="add rows with payload encryption on")
    p.add_argument(
        "--mix",
        default=",".join(m.name for m in MIXES),
        metavar="NAMES",
        help="comma-separated signal mixes (default: all of scalar,vector,mixed)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help=f"also cProfile one scalar k32m4 run at 0 %% and at 10 %% loss (top {PROFILE_TOP})",
    )
    args = p.parse_args(argv)
    if args.packets is None:
        args.packets = QUICK_PACKETS if args.quick else DEFAULT_PACKETS
    if args.repeats is None:
        args.repeats = QUICK_REPEATS if args.quick else DEFAULT_REPEATS
    if args.packets < len(NODE_IDS) or args.repeats < 1:
        p.error(f"--packets must be >= {len(NODE_IDS)} and --repeats >= 1")
    names = [w.strip() for w in args.mix.split(",") if w.strip()]
    known = {m.name: m for m in MIXES}
    if not names or set(names) - known.keys():
        p.error(f"unknown --mix {sorted(set(names) - known.keys())}; known: {sorted(known)}")
    args.mixes = [known[n] for n in names]
    return args


def _row_dict(r: Row) -> dict[str, Any]:
    d = asdict(r)
    d["pipeline"] = asdict(r.pipeline)
    d["floor"] = asdict(r.floor)
    d.update(
        label=r.label,
        datagrams_per_s=round(r.datagrams_per_s, 1),
        source_pps=round(r.source_pps, 1),
        signals_per_s=round(r.signals_per_s, 1),
        floor_pps=round(r.floor_pps, 1),
        floor_sps=round(r.floor_sps, 1),
        vs_floor=round(r.vs_floor, 4),
        delivery=r.delivery,
    )
    return d


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    facts = machine_facts()
    mode = "quick" if args.quick else "full"
    print(
        f"cloudkernel receive pipeline benchmark ({mode}, seed {SEED}, {args.packets:,} source "
        f"frames per row from {len(NODE_IDS)} senders, {args.repeats} repeats)"
    )
    for key, val in facts.items():
        shown = ", ".join(map(str, val)) if isinstance(val, list) else val
        print(f"  {key + ':':<16} {shown}")
    print("  FEC kernel: used only to rebuild lost frames (10 % rows); 0 % rows never decode.")
    print(
        "  auth: ChaCha20-Poly1305 tag on every datagram, always on; 'enc' rows also encrypt "
        "the payload."
    )
    print(
        f"  src pkt/s = source frames delivered / time to process every datagram fed (repairs "
        f"included); target >= {TARGET_PPS:,} src pkt/s at 0 % loss."
    )
    print("  floor = msgpack.unpackb over the same delivered payloads; vs floor = our signals/s /")
    print("  floor signals/s.", flush=True)
    print()

    t_start = time.monotonic()
    cache: dict[tuple[str, int, int], list[Signal]] = {}
    streams: dict[tuple[str, str, bool, float], Stream] = {}
    rows: list[Row] = []
    stages: list[Stage] = []
    stage_row: Row | None = None
    profile_feeds: dict[float, list[bytes]] = {}
    for encrypt in (False, True) if args.encrypt else (False,):
        for mix in args.mixes:
            for policy in POLICIES:
                for loss in LOSSES:
                    planned = loss if policy == "adaptive" else 0.0
                    skey = (mix.name, policy, encrypt, planned)
                    if skey not in streams:
                        streams[skey] = make_stream(
                            mix, policy, encrypt, planned, args.packets, cache
                        )
                    print(
                        f"  measuring {mix.name} {policy} {loss:.0%}{' enc' if encrypt else ''}",
                        file=sys.stderr,
                        flush=True,
                    )
                    row, fed = measure_row(mix, policy, loss, encrypt, streams[skey], args.repeats)
                    rows.append(row)
                    first_scalar = mix.name == "scalar" and policy == "k32m4" and not encrypt
                    if first_scalar:
                        profile_feeds[loss] = fed
                        if loss == 0.0:
                            stage_row = row
                            stages = measure_stages(fed, args.repeats)
            streams = {k: v for k, v in streams.items() if k[0] != mix.name}  # free memory
    elapsed = time.monotonic() - t_start

    print_rows(rows)
    if stage_row is not None:
        print_stages(stage_row, stages)
    judged = [r for r in rows if r.status]
    if judged:
        print(f"\nTarget >= {TARGET_PPS:,} source packets/s at 0 % loss, auth on (one core):")
        for r in judged:
            print(
                f"  {r.status:<4}  {r.label:<24} {r.source_pps:>12,.0f} src pkt/s "
                f"({r.source_pps / TARGET_PPS:.1%} of the target; {r.signals_per_s:,.0f} signals/s)"
            )
    profiles: list[dict[str, Any]] = []
    if args.profile:
        if profile_feeds:
            profiles = run_profile(profile_feeds)
        else:
            print("\n--profile needs the scalar mix (--mix scalar)")
    print(f"\n{len(rows)} rows in {elapsed:.1f} s")

    if args.json:
        doc = {
            "machine": facts,
            "mode": mode,
            "seed": SEED,
            "packets": args.packets,
            "repeats": args.repeats,
            "senders": list(NODE_IDS),
            "step_s": STEP,
            "target_source_pps": TARGET_PPS,
            "rows": [_row_dict(r) for r in rows],
            "stages": {
                "row": stage_row.label if stage_row else None,
                "pipeline_ns": stage_row.pipeline.ns if stage_row else None,
                "stages": [{**asdict(s), "ns_per_item": round(s.ns_per_item, 1)} for s in stages],
            },
            "profiles": profiles,
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
