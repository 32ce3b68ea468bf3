"""Benchmark the weighted-consensus filter: the compiled one, the pure-Python reference and numpy.

One run times three implementations on the same machine and the same seeded
inputs:

* ``compiled``: ``cloudkernel.consensus._consensus`` (the C extension);
* ``reference``: ``cloudkernel.consensus._consensus_ref`` (pure Python, the
  oracle the compiled filter must match bit for bit);
* ``numpy``: what a careful numpy user would write for the same job, as a
  baseline of cost (not of exactness): per topic, preallocated arrays of
  values, sigmas, confidences and times, written in place at the index a
  Python dict gives each source (its ``update``), and an ``estimate`` that
  computes the evaporation ``2^(-age/h)``, a weighted median (argsort, cumsum,
  searchsorted), MAD rejection and an inverse-variance weighted mean with its
  sigma.  It has no reputation, selection, probation or breakdown.

Each implementation gets one scalar topic per size (8, 64 and 256 sources by
default, all with ``FilterConfig(max_sources=256)``) and one ``Reputation``
shared by its topics.  Sources have their own sigma (log-uniform in
0.05..1.0) and confidence (uniform in 0.5..1.0); f = (n-1)//3 of them lie,
always, at 25 to 100 away from the true value on either side.  A liar is the
same source id in every topic.  The readings (32 rounds per topic, cycled)
are made before anything is timed.  The topic clock advances 10 ms per round
of updates, and every update is newer than the source's last one, so every
update is accepted.

What is timed, per (implementation, size), after 20 untimed warm-up rounds
(update every source, then estimate) that settle the reputations (one
disagreement takes a liar under ``distrust_below``, so from the second
estimate on the liars are distrusted, still judged, and left out of the
combine):

1. ``updates/s``: a Python loop calling ``update(source, value, confidence,
   now, sigma)`` for every source, round after round, with no estimate in
   between.  One batch is a fixed number of updates, timed as a whole; the
   figure is the median over the repeats.  The loop itself is included
   (``loop_floor_ns`` in the header: the same loop around a no-op function).
2. ``estimate (fresh)``: every source's reading is refreshed (untimed), then
   ``estimate(now)`` is timed alone with ``time.perf_counter_ns``, so the
   reputation judging of the n new readings is in the figure.  Median and
   99th percentile (nearest rank: the slowest call when a repeat has fewer
   than 100) of the calls of a repeat; the figure is the median over
   repeats.
3. ``estimate (steady)``: right after each fresh estimate, ``estimate`` is
   called twice more, 1 ms apart, with no new reading; the median latency of
   those calls, then the median over repeats.

The garbage collector is off while timing.  Repeats of the different
implementations alternate, so a burst of load from another process hits
them all alike.  Every loop is bounded: a fixed number of updates per batch,
and for the estimates a time budget per repeat with a hard cap on the calls.

Before anything is timed, a short run checks that the compiled filter and the
reference return identical results for the same calls (every ``update``
result, every ``Estimate`` field by field, the breakdown byte for byte, and
the statistics and reputations after), and that the reference and numpy land
near the true value.  A mismatch is a correctness failure: ``main`` returns 1.
A missed target is not: it is a measurement, and ``main`` returns 0.

With ``CLOUDKERNEL_PUREPYTHON`` set the compiled module is not imported.
Then, or when it does not import, the header says ``compiled: not available
(reason)``, the reference row is labelled ``reference/python`` (it is what
``cloudkernel.consensus`` uses), and no ratio or target is judged.

Run ``python bench/bench_consensus.py --help`` for the options and see
bench/README.md for what the columns mean.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import math
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Any, NamedTuple, Protocol, cast

# Make `python bench/bench_consensus.py` work from a source checkout without install.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import cloudkernel  # noqa: E402
from cloudkernel import consensus  # noqa: E402
from cloudkernel._impl import pure_python_forced  # noqa: E402
from cloudkernel.consensus import _consensus_ref  # noqa: E402
from cloudkernel.consensus._types import FilterConfig, ReputationConfig  # noqa: E402

SEED = 20240620
DEFAULT_SIZES = (8, 64, 256)
MAX_SOURCES = 256
MIN_SIZE = 3  # FilterConfig().min_sources
#: seconds between two rounds of updates on a topic's clock
STEP = 0.01
#: seconds between the refresh of every source and the fresh estimate
FRESH_DELAY = 0.005
#: seconds between the steady estimates that follow a fresh one
STEADY_STEP = 0.001
STEADY_PER_FRESH = 2
START = 1000.0
POOL_ROUNDS = 32
WARMUP_ROUNDS = 20
CHECK_ROUNDS = 12
SIGMA_RANGE = (0.05, 1.0)  # log-uniform
CONFIDENCE_RANGE = (0.5, 1.0)
LIAR_OFFSET = (25.0, 100.0)
#: an estimate farther than this from the true value is wrong (liars lie >= 25 away)
TOLERANCE = 0.5
MAD_TO_SIGMA = 1.4826

TARGET_SIZE = 64
TARGET_UPDATES = 2_000_000.0
TARGET_FRESH_NS = 10_000.0
TARGET_SPEEDUP = 20.0


class VerifyError(AssertionError):
    pass


def _verify(ok: bool, what: str) -> None:
    if not ok:
        raise VerifyError(what)


# --------------------------------------------------------------------------- budgets


@dataclass(frozen=True)
class Budget:
    """How much to time per (implementation, size) and repeat."""

    updates: int  # updates per timed batch (rounded up to whole rounds)
    fresh_max: int  # hard cap on fresh estimates per repeat
    fresh_min: int  # at least this many, even past the time budget
    estimate_ns: int  # time budget of the estimate phase of one repeat
    repeats: int


FULL = Budget(updates=50_000, fresh_max=400, fresh_min=30, estimate_ns=300_000_000, repeats=5)
QUICK = Budget(updates=2_000, fresh_max=40, fresh_min=5, estimate_ns=20_000_000, repeats=3)


# --------------------------------------------------------------------------- inputs

Reading = tuple[int, float, float, float]  # source, value, confidence, sigma


@dataclass
class Topic:
    """One topic's sources and its prepared rounds of readings."""

    n: int
    true: float
    sources: list[int]
    liars: frozenset[int]
    rounds: list[list[Reading]]  # POOL_ROUNDS rounds, each with every source once


def make_topics(sizes: Sequence[int], seed: int) -> list[Topic]:
    """Topics over one population of sources: topic n uses its first n.

    The liars are chosen segment by segment so that each topic's first n
    sources hold exactly (n-1)//3 of them, and a liar lies in every topic.
    """
    rng = random.Random(seed)
    largest = max(sizes)
    ids = rng.sample(range(1, 1 << 32), largest)
    liar_ids: set[int] = set()
    done = 0
    for n in sorted(set(sizes)):
        want = (n - 1) // 3 - len(liar_ids)
        liar_ids.update(rng.sample(ids[done:n], want))
        done = n
    topics = []
    lo, hi = (math.log(x) for x in SIGMA_RANGE)
    for n in sizes:
        sources = ids[:n]
        true = round(rng.uniform(-50.0, 50.0), 3)
        sigma = {s: math.exp(rng.uniform(lo, hi)) for s in sources}
        conf = {s: rng.uniform(*CONFIDENCE_RANGE) for s in sources}
        rounds = []
        for _ in range(POOL_ROUNDS):
            batch = []
            for s in sources:
                if s in liar_ids:
                    value = true + rng.choice((-1.0, 1.0)) * rng.uniform(*LIAR_OFFSET)
                else:
                    value = true + rng.gauss(0.0, sigma[s])
                batch.append((s, value, conf[s], sigma[s]))
            rounds.append(batch)
        liars = frozenset(s for s in sources if s in liar_ids)
        _verify(len(liars) == (n - 1) // 3, f"topic {n}: {len(liars)} liars")
        topics.append(Topic(n, true, sources, liars, rounds))
    return topics


# --------------------------------------------------------------------------- contenders


class Filter(Protocol):
    def update(
        self, source: int, value: float, confidence: float, now: float, sigma: float | None = None
    ) -> object: ...

    def estimate(self, now: float) -> Any: ...


class NumpyEstimate(NamedTuple):
    value: float
    sigma: float
    used: int
    total: int


class NumpyFilter:
    """The numpy baseline: arrays updated in place, one vectorised estimate.

    Only the cost matters; it keeps no reputation and does no selection, but
    its weighted median and MAD rejection keep the liars out on these inputs.
    """

    def __init__(self, np: ModuleType, capacity: int, half_life: float, reject: float) -> None:
        self.np = np
        self.capacity = capacity
        self.half_life = half_life
        self.reject = reject
        self.index: dict[int, int] = {}
        self.values = np.zeros(capacity)
        self.sigmas = np.ones(capacity)
        self.confidences = np.zeros(capacity)
        self.times = np.zeros(capacity)

    def update(
        self, source: int, value: float, confidence: float, now: float, sigma: float | None = None
    ) -> str:
        i = self.index.get(source)
        if i is None:
            i = len(self.index)
            if i >= self.capacity:
                return "full"
            self.index[source] = i
        self.values[i] = value
        self.sigmas[i] = 1.0 if sigma is None else sigma
        self.confidences[i] = confidence
        self.times[i] = now
        return "accepted"

    def estimate(self, now: float) -> NumpyEstimate:
        np = self.np
        k = len(self.index)
        x = self.values[:k]
        s = self.sigmas[:k]
        c = self.confidences[:k]
        age = np.maximum(now - self.times[:k], 0.0)
        evaporation = np.exp2(-age / self.half_life)
        var = s * s / evaporation
        order = np.argsort(x, kind="stable")
        cum = np.cumsum((c * evaporation)[order])
        at = int(np.searchsorted(cum, 0.5 * cum[-1], side="right"))
        median = float(x[order[min(at, k - 1)]])
        deviation = np.abs(x - median)
        half = k // 2  # the median by partition: np.median costs more than the rest
        if k % 2:
            mad = float(np.partition(deviation, half)[half])
        else:
            pair = np.partition(deviation, (half - 1, half))
            mad = 0.5 * float(pair[half - 1] + pair[half])
        scale = MAD_TO_SIGMA * mad
        keep = deviation <= self.reject * np.maximum(scale, np.sqrt(var))
        xk = x[keep]
        vk = var[keep]
        inverse = c[keep] / vk
        a = inverse / inverse.sum()
        value = float(a @ xk)
        variance = float((a * a) @ vk)
        used = len(xk)
        if used >= 2:
            r = xk - value
            chi = float((r * r / vk).sum()) / (used - 1)
            if chi > 1.0:
                variance *= chi
        return NumpyEstimate(value, math.sqrt(variance), used, k)


FilterFactory = Callable[[], Filter]


@dataclass
class Contender:
    """One implementation, and how to make its filters."""

    impl: str  # compiled, reference or numpy
    label: str
    #: a new reputation, returned as a factory of filters that all share it
    shared: Callable[[], FilterFactory]


def consensus_filters(module: ModuleType) -> Callable[[], FilterFactory]:
    def shared() -> FilterFactory:
        rep = module.Reputation(ReputationConfig())

        def new_filter() -> Filter:
            f: Filter = module.ConsensusFilter(FilterConfig(max_sources=MAX_SOURCES), rep)
            return f

        return new_filter

    return shared


def numpy_filters(np: ModuleType) -> Callable[[], FilterFactory]:
    cfg = FilterConfig(max_sources=MAX_SOURCES)

    def shared() -> FilterFactory:
        def new_filter() -> Filter:
            return NumpyFilter(np, cfg.max_sources, cfg.default_half_life, cfg.reject_sigmas)

        return new_filter

    return shared


def load_compiled() -> tuple[ModuleType | None, str]:
    if pure_python_forced():
        return None, "CLOUDKERNEL_PUREPYTHON is set; the compiled module is not imported"
    try:
        return importlib.import_module("cloudkernel.consensus._consensus"), ""
    except ImportError as exc:
        return None, f"{exc}; build it with python setup.py build_ext --inplace"


def load_numpy() -> tuple[ModuleType | None, str]:
    try:
        return importlib.import_module("numpy"), ""
    except ImportError as exc:
        return None, f"{exc}; pip install numpy"


# --------------------------------------------------------------------------- correctness


def _same(a: object, b: object) -> bool:
    """Identical results: same types, floats bit for bit (any NaN equals any NaN)."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    return a == b


def _describe_difference(a: Any, b: Any) -> str:
    names: tuple[str, ...] | None = getattr(a, "_fields", None) or getattr(b, "_fields", None)
    if not (isinstance(a, tuple) and isinstance(b, tuple) and names and len(a) == len(b)):
        return f"compiled {a!r} != reference {b!r}"
    diffs = [
        f"{name}: compiled {x!r} != reference {y!r}"
        for name, x, y in zip(names, a, b, strict=True)
        if not _same(x, y)
    ]
    ea: Any = a
    eb: Any = b
    if "breakdown" in names and not _same(ea.breakdown, eb.breakdown):
        for ra, rb in zip(ea.sources, eb.sources, strict=False):
            if not _same(tuple(ra), tuple(rb)):
                diffs.append(f"first differing source: compiled {ra} != reference {rb}")
                break
    return "; ".join(diffs) or f"types {type(a).__name__} != {type(b).__name__}"


class Step(NamedTuple):
    """One call of the check and what it returned."""

    what: str
    n: int  # the topic's sources (0: not a topic's call)
    result: Any


def check_script(module: ModuleType, topics: Sequence[Topic]) -> list[Step]:
    """The call sequence of the check, on one implementation.

    Every topic gets CHECK_ROUNDS rounds of updates of every source, each
    followed by a fresh and a steady estimate.  In round 3 a few updates take
    the other paths: the same reading again (older), a NaN (non-finite), a
    reading with its own half-life, and one without sigma whose ttl runs out
    before the estimate (expired).  At the end every topic is estimated 1000 s
    later (stale), and the statistics and every source's reputation are read.
    """
    rep = module.Reputation(ReputationConfig())
    filters = [module.ConsensusFilter(FilterConfig(max_sources=MAX_SOURCES), rep) for _ in topics]
    steps: list[Step] = []
    now = START
    for r in range(CHECK_ROUNDS):
        now += STEP
        for topic, filt in zip(topics, filters, strict=True):
            where = f"round {r}, topic of {topic.n}"
            batch = topic.rounds[r % POOL_ROUNDS]
            for s, v, c, sg in batch:
                steps.append(Step(f"{where}: update({s})", topic.n, filt.update(s, v, c, now, sg)))
            if r == 3:
                (s0, v0, c0, sg0), (s1, _, c1, sg1), (s2, v2, c2, _) = batch[:3]
                later = now + STEP / 4
                extra = [
                    ("the same reading again", filt.update(s0, v0, c0, now, sg0)),
                    ("NaN", filt.update(s1, math.nan, c1, later, sg1)),
                    ("half_life=2", filt.update(s0, v0, c0, later, sg0, half_life=2.0)),
                    ("no sigma, ttl=0.002", filt.update(s2, v2, c2, later, None, ttl=0.002)),
                ]
                steps += [Step(f"{where}: update ({what})", topic.n, res) for what, res in extra]
            at = now + FRESH_DELAY
            steps.append(Step(f"{where}: estimate (fresh)", topic.n, filt.estimate(at)))
            steps.append(
                Step(f"{where}: estimate (steady)", topic.n, filt.estimate(at + STEADY_STEP))
            )
    for topic, filt in zip(topics, filters, strict=True):
        where = f"topic of {topic.n}"
        steps.append(Step(f"{where}: estimate after 1000 s", topic.n, filt.estimate(now + 1000.0)))
        steps.append(Step(f"{where}: statistics", topic.n, filt.statistics()))
    for s in sorted({s for t in topics for s in t.sources}):
        steps.append(Step(f"reputation of {s}", 0, (rep.value(s), rep.rounds(s), rep.flagged(s))))
    steps.append(Step("reputation statistics", 0, rep.statistics()))
    return steps


def check_reference(steps: Sequence[Step], topics: Sequence[Topic]) -> None:
    """The reference's fresh estimates are ok and near the true value from round 1 on,
    and every topic is stale 1000 s after its last reading."""
    truth = {t.n: t.true for t in topics}
    for step in steps:
        est = step.result
        if step.what.endswith("estimate (fresh)") and not step.what.startswith("round 0,"):
            _verify(est.state == "ok", f"reference, {step.what}: {est!r}")
            _verify(
                isinstance(est.value, float) and abs(est.value - truth[step.n]) <= TOLERANCE,
                f"reference, {step.what}: value {est.value!r}, true value {truth[step.n]}",
            )
        elif step.what.endswith("after 1000 s"):
            _verify(est.state == "stale", f"reference, {step.what}: {est.state}")


def check_compiled(compiled: ModuleType, topics: Sequence[Topic], ref: Sequence[Step]) -> int:
    """Run the same script on the compiled filter; raise on the first difference."""
    try:
        got = check_script(compiled, topics)
    except Exception as exc:  # e.g. a signature that differs: report it like a difference
        raise VerifyError(f"the compiled filter raised {exc!r}; the reference did not") from exc
    _verify(len(got) == len(ref), f"compiled made {len(got)} calls, the reference {len(ref)}")
    for a, b in zip(got, ref, strict=True):
        if not _same(a.result, b.result):
            raise VerifyError(f"{a.what}: {_describe_difference(a.result, b.result)}")
    return len(got)


def check_numpy(np: ModuleType, topics: Sequence[Topic]) -> None:
    new_filter = numpy_filters(np)()
    for topic in topics:
        filt = new_filter()
        now = START
        for r in range(CHECK_ROUNDS):
            now += STEP
            for s, v, c, sg in topic.rounds[r % POOL_ROUNDS]:
                filt.update(s, v, c, now, sg)
            est = filt.estimate(now + FRESH_DELAY)
            _verify(
                abs(est.value - topic.true) <= TOLERANCE,
                f"numpy, round {r}, topic of {topic.n}: value {est.value}, true {topic.true}",
            )


# --------------------------------------------------------------------------- timing


def timer_floor(calls: int = 2000) -> float:
    """ns between two back-to-back perf_counter_ns() calls (in every latency below)."""
    clock = time.perf_counter_ns
    samples = []
    for _ in range(calls):
        t0 = clock()
        samples.append(clock() - t0)
    return float(statistics.median(samples))


def _noop(source: int, value: float, confidence: float, now: float, sigma: float) -> None:
    return None


@dataclass
class State:
    """One (implementation, topic): its filter and its clock."""

    filt: Filter
    topic: Topic
    now: float = START
    round: int = 0


def refresh(state: State) -> float:
    """Every source sends a new reading (untimed); returns the new time."""
    update = state.filt.update
    now = state.now + STEP
    for s, v, c, sg in state.topic.rounds[state.round % POOL_ROUNDS]:
        update(s, v, c, now, sg)
    state.now = now
    state.round += 1
    return now


def time_updates(
    update: Callable[..., object], topic: Topic, first_round: int, now: float, rounds: int
) -> int:
    """ns for ``rounds`` rounds of updates of every source, with no estimate between.

    Round i (from 0) is the pool's round ``first_round + i``, sent at ``now +
    STEP * (i + 1)``.
    """
    pool = topic.rounds
    plan = [pool[(first_round + i) % POOL_ROUNDS] for i in range(rounds)]
    times = [now + STEP * (i + 1) for i in range(rounds)]
    gc.disable()
    try:
        t0 = time.perf_counter_ns()
        for at, batch in zip(times, plan, strict=True):
            for s, v, c, sg in batch:
                update(s, v, c, at, sg)
        ns = time.perf_counter_ns() - t0
    finally:
        gc.enable()
    return ns


def time_update_batch(state: State, rounds: int) -> int:
    ns = time_updates(state.filt.update, state.topic, state.round, state.now, rounds)
    state.now += STEP * rounds
    state.round += rounds
    return ns


def sample_estimates(state: State, budget: Budget) -> tuple[list[int], list[int], Any]:
    """Fresh and steady estimate latencies of one repeat, and the last fresh estimate."""
    clock = time.perf_counter_ns
    estimate = state.filt.estimate
    fresh: list[int] = []
    steady: list[int] = []
    last: Any = None
    gc.disable()
    try:
        start = clock()
        for k in range(budget.fresh_max):
            at = refresh(state) + FRESH_DELAY
            t0 = clock()
            est = estimate(at)
            t1 = clock()
            fresh.append(t1 - t0)
            last = est
            for j in range(1, STEADY_PER_FRESH + 1):
                t0 = clock()
                estimate(at + j * STEADY_STEP)
                t1 = clock()
                steady.append(t1 - t0)
            if k + 1 >= budget.fresh_min and clock() - start >= budget.estimate_ns:
                break
    finally:
        gc.enable()
    return fresh, steady, last


def percentile(samples: Sequence[int], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return float(ordered[rank - 1])


@dataclass
class Timing:
    value: float  # median over repeats
    repeats: int
    spread: float  # (max - min) / median over repeats


def timing_of(samples: Sequence[float]) -> Timing:
    med = float(statistics.median(samples))
    return Timing(med, len(samples), (max(samples) - min(samples)) / med if med else 0.0)


# --------------------------------------------------------------------------- rows


@dataclass
class Row:
    impl: str
    label: str
    n: int
    liars: int
    updates_per_batch: int
    update_ns: Timing  # ns per update
    fresh_median_ns: Timing
    fresh_p99_ns: Timing
    steady_median_ns: Timing
    fresh_calls: int  # over all repeats
    steady_calls: int
    true_value: float
    value: float  # of the last fresh estimate
    sources_used: int
    sources_rejected: int

    @property
    def updates_per_s(self) -> float:
        return 1e9 / self.update_ns.value


@dataclass
class Verdict:
    target: str
    threshold: str
    measured: str
    status: str  # PASS, MISS or N/A


@dataclass
class Ratio:
    n: int
    against: str  # reference or numpy
    updates: float  # compiled updates/s / theirs
    fresh: float  # their fresh median / compiled's
    steady: float


def measure(contenders: Sequence[Contender], topics: Sequence[Topic], budget: Budget) -> list[Row]:
    """Every (contender, topic): warm-up, then repeats that alternate between contenders."""
    makers = {c.impl: c.shared() for c in contenders}
    rows: list[Row] = []
    for topic in topics:
        print(f"  measuring {topic.n} sources", file=sys.stderr, flush=True)
        states = {c.impl: State(makers[c.impl](), topic) for c in contenders}
        for state in states.values():
            for _ in range(WARMUP_ROUNDS):
                state.filt.estimate(refresh(state) + FRESH_DELAY)
        rounds = max(1, math.ceil(budget.updates / topic.n))
        update_ns: dict[str, list[float]] = {c.impl: [] for c in contenders}
        medians: dict[str, list[float]] = {c.impl: [] for c in contenders}
        p99s: dict[str, list[float]] = {c.impl: [] for c in contenders}
        steadies: dict[str, list[float]] = {c.impl: [] for c in contenders}
        calls: dict[str, list[int]] = {c.impl: [0, 0] for c in contenders}
        last: dict[str, Any] = {}
        gc.collect()
        for _ in range(budget.repeats):
            for c in contenders:
                ns = time_update_batch(states[c.impl], rounds)
                update_ns[c.impl].append(ns / (rounds * topic.n))
            for c in contenders:
                fresh, steady, last[c.impl] = sample_estimates(states[c.impl], budget)
                medians[c.impl].append(float(statistics.median(fresh)))
                p99s[c.impl].append(percentile(fresh, 99.0))
                steadies[c.impl].append(float(statistics.median(steady)))
                calls[c.impl][0] += len(fresh)
                calls[c.impl][1] += len(steady)
        for c in contenders:
            est = last[c.impl]
            state = states[c.impl]
            if c.impl == "numpy":
                value, used, rejected = est.value, est.used, est.total - est.used
            else:
                _verify(est.state == "ok", f"{c.label}, {topic.n} sources: {est.state}")
                value, used, rejected = est.value, est.sources_used, est.sources_rejected
                stats = cast(Any, state.filt).statistics()
                _verify(
                    not any(stats.dropped.values()),
                    f"{c.label}, {topic.n} sources: updates dropped {stats.dropped}",
                )
            _verify(
                abs(value - topic.true) <= TOLERANCE,
                f"{c.label}, {topic.n} sources: value {value}, true value {topic.true}",
            )
            rows.append(
                Row(
                    impl=c.impl,
                    label=c.label,
                    n=topic.n,
                    liars=len(topic.liars),
                    updates_per_batch=rounds * topic.n,
                    update_ns=timing_of(update_ns[c.impl]),
                    fresh_median_ns=timing_of(medians[c.impl]),
                    fresh_p99_ns=timing_of(p99s[c.impl]),
                    steady_median_ns=timing_of(steadies[c.impl]),
                    fresh_calls=calls[c.impl][0],
                    steady_calls=calls[c.impl][1],
                    true_value=topic.true,
                    value=value,
                    sources_used=used,
                    sources_rejected=rejected,
                )
            )
    return rows


def loop_floor(topic: Topic, budget: Budget) -> float:
    """ns per update of the timed update loop around a no-op Python function."""
    rounds = max(1, math.ceil(budget.updates / topic.n))
    samples = [time_updates(_noop, topic, 0, START, rounds) / (rounds * topic.n) for _ in range(3)]
    return float(statistics.median(samples))


def ratios(rows: Sequence[Row]) -> list[Ratio]:
    by = {(r.impl, r.n): r for r in rows}
    out = []
    for r in rows:
        if r.impl != "compiled":
            continue
        for other in ("reference", "numpy"):
            o = by.get((other, r.n))
            if o is not None:
                out.append(
                    Ratio(
                        r.n,
                        other,
                        r.updates_per_s / o.updates_per_s,
                        o.fresh_median_ns.value / r.fresh_median_ns.value,
                        o.steady_median_ns.value / r.steady_median_ns.value,
                    )
                )
    return out


def verdicts(rows: Sequence[Row]) -> list[Verdict]:
    """The targets, judged on the compiled rows of TARGET_SIZE sources."""
    by = {(r.impl, r.n): r for r in rows}
    c = by.get(("compiled", TARGET_SIZE))
    ref = by.get(("reference", TARGET_SIZE))
    n = TARGET_SIZE
    out: list[Verdict] = []

    def add(target: str, threshold: str, measured: float | None, ok: bool, unit: str) -> None:
        if measured is None:
            out.append(Verdict(target, threshold, "not measured", "N/A"))
        else:
            out.append(Verdict(target, threshold, unit.format(measured), "PASS" if ok else "MISS"))

    upd = c.updates_per_s if c else None
    add(
        f"compiled updates/s, {n} sources",
        f">= {TARGET_UPDATES:,.0f}",
        upd,
        upd is not None and upd >= TARGET_UPDATES,
        "{:,.0f} updates/s",
    )
    fresh = c.fresh_median_ns.value if c else None
    add(
        f"compiled estimate (fresh) median, {n} sources",
        f"<= {TARGET_FRESH_NS / 1e3:g} us",
        None if fresh is None else fresh / 1e3,
        fresh is not None and fresh <= TARGET_FRESH_NS,
        "{:,.2f} us",
    )
    x_upd = c.updates_per_s / ref.updates_per_s if c and ref else None
    add(
        f"compiled vs reference, updates/s, {n} sources",
        f">= {TARGET_SPEEDUP:g}x",
        x_upd,
        x_upd is not None and x_upd >= TARGET_SPEEDUP,
        "{:,.1f}x",
    )
    x_est = ref.fresh_median_ns.value / c.fresh_median_ns.value if c and ref else None
    add(
        f"compiled vs reference, estimate (fresh), {n} sources",
        f">= {TARGET_SPEEDUP:g}x",
        x_est,
        x_est is not None and x_est >= TARGET_SPEEDUP,
        "{:,.1f}x",
    )
    return out


# --------------------------------------------------------------------------- report


def _si(x: float) -> str:
    if x >= 1e6:
        return f"{x / 1e6:,.2f}M"
    if x >= 1e3:
        return f"{x / 1e3:,.1f}k"
    return f"{x:,.0f}"


def _us(ns: float) -> str:
    return f"{ns / 1e3:,.2f}" if ns < 1e6 else f"{ns / 1e3:,.0f}"


def _x(ratio: float) -> str:
    return f"{ratio:,.1f}x" if ratio >= 10 else f"{ratio:.2f}x"


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


def print_rows(rows: Sequence[Row]) -> None:
    print("Speed (one core; median over repeats; +- is half the range over repeats):")
    lines = []
    for r in rows:
        lines.append(
            (
                r.label,
                f"{r.n}",
                f"{r.liars}",
                _si(r.updates_per_s),
                f"{r.update_ns.value:,.0f}",
                f"{r.update_ns.spread / 2:.0%}" if r.update_ns.repeats > 1 else "",
                _us(r.fresh_median_ns.value),
                _us(r.fresh_p99_ns.value),
                f"{r.fresh_median_ns.spread / 2:.0%}" if r.fresh_median_ns.repeats > 1 else "",
                _us(r.steady_median_ns.value),
                f"{r.fresh_calls:,}",
                f"{r.sources_used}/{r.sources_rejected}",
                f"{r.value - r.true_value:+.4f}",
            )
        )
    print_table(
        (
            "impl",
            "n",
            "liars",
            "updates/s",
            "ns/update",
            "+-",
            "fresh med us",
            "fresh p99 us",
            "+-",
            "steady med us",
            "fresh calls",
            "used/rej",
            "value-true",
        ),
        lines,
    )


def print_ratios(out: Sequence[Ratio]) -> None:
    if not out:
        return
    print("\nCompiled against the others (x faster; same run, same inputs):")
    print_table(
        ("n", "against", "updates/s", "estimate (fresh)", "estimate (steady)"),
        [(f"{r.n}", r.against, _x(r.updates), _x(r.fresh), _x(r.steady)) for r in out],
        left=2,
    )


def print_verdicts(out: Sequence[Verdict]) -> None:
    print("\nTargets (compiled, one core):")
    print_table(
        ("status", "target", "threshold", "measured"),
        [(v.status, v.target, v.threshold, v.measured) for v in out],
        left=4,
    )


def machine_facts(compiled: str, numpy: str) -> dict[str, Any]:
    model = "?"
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, val = line.partition(":")
                if key.strip() == "model name" and model == "?":
                    model = val.strip()
                elif key.strip() in ("flags", "Features") and not flags:
                    flags = set(val.split())
    except OSError:
        pass
    # The compiled filter's sorts (csrc/ck_rank.c): counting ranks with AVX2
    # compares where the CPU has AVX2, comparison sorts otherwise.
    if os.environ.get("CLOUDKERNEL_RANK_KERNEL") == "none":
        sorts = "comparison (CLOUDKERNEL_RANK_KERNEL=none)"
    elif "avx2" in flags:
        sorts = "counting ranks, AVX2 (CLOUDKERNEL_RANK_KERNEL=none: comparison)"
    else:
        sorts = "comparison (no AVX2)"
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "affinity": affinity,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "cloudkernel": cloudkernel.__version__,
        "implementation": consensus.IMPLEMENTATION,
        "compiled": compiled,
        "sorts": sorts,
        "reference": _consensus_ref.__name__,
        "numpy": numpy,
    }


# --------------------------------------------------------------------------- main


def parse_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from exc
    if not sizes or any(not MIN_SIZE <= n <= MAX_SOURCES for n in sizes):
        raise argparse.ArgumentTypeError(f"sizes must be in {MIN_SIZE}..{MAX_SOURCES}: {text!r}")
    if len(set(sizes)) != len(sizes):
        raise argparse.ArgumentTypeError(f"sizes repeat: {text!r}")
    return sizes


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {QUICK.updates:,} updates per batch, {QUICK.repeats} repeats, "
        f"{QUICK.fresh_min}..{QUICK.fresh_max} fresh estimates per repeat",
    )
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    p.add_argument(
        "--sizes",
        type=parse_sizes,
        default=DEFAULT_SIZES,
        metavar="N,N,..",
        help=f"sources per topic (default {','.join(map(str, DEFAULT_SIZES))}; "
        f"each in {MIN_SIZE}..{MAX_SOURCES})",
    )
    p.add_argument(
        "--repeats",
        type=int,
        metavar="N",
        help=f"timed repeats per row (default {FULL.repeats}; --quick {QUICK.repeats})",
    )
    args = p.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        p.error("--repeats must be >= 1")
    return args


def _row_dict(r: Row) -> dict[str, Any]:
    d = asdict(r)
    d["updates_per_s"] = round(r.updates_per_s, 1)
    return d


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    base = QUICK if args.quick else FULL
    budget = Budget(
        base.updates,
        base.fresh_max,
        base.fresh_min,
        base.estimate_ns,
        args.repeats if args.repeats is not None else base.repeats,
    )
    sizes: tuple[int, ...] = args.sizes
    compiled, compiled_err = load_compiled()
    np, np_err = load_numpy()
    contenders: list[Contender] = []
    if compiled is not None:
        contenders.append(Contender("compiled", "compiled", consensus_filters(compiled)))
    ref_label = "reference" if compiled is not None else "reference/python"
    contenders.append(Contender("reference", ref_label, consensus_filters(_consensus_ref)))
    if np is not None:
        contenders.append(Contender("numpy", "numpy", numpy_filters(np)))
    facts = machine_facts(
        f"{compiled.__name__} (rows compiled)" if compiled else f"not available ({compiled_err})",
        f"{np.__version__} (rows numpy)" if np else f"not available ({np_err})",
    )
    topics = make_topics(sizes, SEED)
    facts["timer_floor_ns"] = round(timer_floor(), 1)
    facts["loop_floor_ns"] = round(loop_floor(topics[0], budget), 1)

    mode = "quick" if args.quick else "full"
    print(
        f"cloudkernel.consensus benchmark ({mode}, seed {SEED}, sizes "
        f"{','.join(map(str, sizes))}, {budget.repeats} repeats)"
    )
    for key, val in facts.items():
        shown = ", ".join(map(str, val)) if isinstance(val, list) else val
        print(f"  {key + ':':<16} {shown}")
    print(
        "  timer_floor: ns between two perf_counter_ns() calls, in every latency; loop_floor: "
        "ns per\n  update of the timed loop around a no-op function, in every ns/update."
    )
    print(
        "  scalar topics, FilterConfig(max_sources=256), f = (n-1)//3 liars each; one Reputation "
        "per\n  implementation, shared by its topics.  ratio = x faster than the other, same run."
    )

    t_start = time.monotonic()
    check: dict[str, Any] = {"rounds": CHECK_ROUNDS}
    try:
        ref_steps = check_script(_consensus_ref, topics)
        check_reference(ref_steps, topics)
        check["reference_near_true"] = True
        if np is not None:
            check_numpy(np, topics)
            check["numpy_near_true"] = True
    except VerifyError as exc:
        print(f"CORRECTNESS FAILURE before timing: {exc}", file=sys.stderr)
        return 1
    if compiled is not None:
        try:
            check["calls_compared"] = check_compiled(compiled, topics, ref_steps)
        except VerifyError as exc:
            print(f"  compiled == reference: NO ({exc})", flush=True)
            print(f"CORRECTNESS FAILURE: compiled != reference: {exc}", file=sys.stderr)
            return 1
        check["compiled_equals_reference"] = True
        print(f"  compiled == reference: yes ({check['calls_compared']:,} calls compared)")
    else:
        check["compiled_equals_reference"] = None
        print("  compiled == reference: not checked (compiled not available)")
    if compiled is None:
        print(
            "  NOTE: no compiled rows, so no target is judged (they apply to the compiled filter)."
        )
    print(flush=True)

    try:
        rows = measure(contenders, topics, budget)
    except VerifyError as exc:
        print(f"CORRECTNESS FAILURE after timing: {exc}", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - t_start

    print_rows(rows)
    ratio_list = ratios(rows)
    print_ratios(ratio_list)
    verdict_list = verdicts(rows) if compiled is not None else []
    if verdict_list:
        print_verdicts(verdict_list)
    else:
        print("\nTargets: not judged (no compiled rows)")
    print(f"\n{len(rows)} rows in {elapsed:.1f} s")

    if args.json:
        doc = {
            "machine": facts,
            "mode": mode,
            "seed": SEED,
            "sizes": list(sizes),
            "budget": asdict(budget),
            "check": check,
            "rows": [_row_dict(r) for r in rows],
            "ratios": [asdict(r) for r in ratio_list],
            "targets": [asdict(v) for v in verdict_list],
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
