"""The compiled consensus filter against the pure-Python reference, bit for bit.

``cloudkernel.consensus._consensus`` (csrc/ck_consensus.c) must return exactly
what ``_consensus_ref`` returns for any sequence of calls: every `Estimate`
field (floats compared by their bits, so -0.0 and NaN payloads count), the
breakdown bytes, every ``update`` result, the statistics, the reputations, and
the same exception (type and message) where the reference raises.  Each test
drives a `Twin`, one filter of each implementation (and their reputations), with
the same calls:

* hypothesis: random configurations of all four kinds and random sequences
  of updates (NaN, inf, huge, out-of-range and ill-typed values, confidences,
  sigmas and lifetimes; readings older than the current one; bad sources and
  times), estimates at advancing times, forgets and reputation calls;
* fixed seeds: larger swarms with liars (some claiming tiny sigmas, for the
  combine's check against dominating sources), tied weights, two filters
  sharing one reputation, eviction from a full filter and from a full
  reputation table, and the degenerate sigmas for which the reference divides
  by zero.

Every test runs twice: with the sorts the compiled filter picks on this CPU
(counting ranks with vector compares where it can, csrc/ck_rank.c) and with
comparison sorts only (``CLOUDKERNEL_RANK_KERNEL=none``, what a CPU without
the vector kernel runs).

Skipped when the compiled module is not built or ``CLOUDKERNEL_PUREPYTHON``
is set.
"""

from __future__ import annotations

import dataclasses
import math
import random
import struct
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloudkernel._impl import pure_python_forced
from cloudkernel.consensus import _consensus_ref as reference
from cloudkernel.consensus._types import (
    ConsensusError,
    Estimate,
    FilterConfig,
    ReputationConfig,
)

compiled: Any
try:
    if pure_python_forced():
        raise ImportError("CLOUDKERNEL_PUREPYTHON is set")
    from cloudkernel.consensus import _consensus as compiled
except ImportError as exc:
    compiled = None
    SKIP_REASON = f"compiled consensus filter not available: {exc}"
else:
    SKIP_REASON = ""

pytestmark = pytest.mark.skipif(compiled is None, reason=SKIP_REASON or "n/a")

KINDS = ("scalar", "vector", "category", "interval")


@pytest.fixture(autouse=True, params=("cpu-sorts", "comparison-sorts"))
def sorts(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The sorts of the compiled filters created in the test (read at creation)."""
    if request.param == "comparison-sorts":
        monkeypatch.setenv("CLOUDKERNEL_RANK_KERNEL", "none")
    else:
        monkeypatch.delenv("CLOUDKERNEL_RANK_KERNEL", raising=False)
    return str(request.param)


# -- comparing ------------------------------------------------------------------


def canon(x: object) -> object:
    """x with every float replaced by its bits, and types made explicit."""
    if isinstance(x, bool):
        return ("bool", x)
    if isinstance(x, float):
        return ("float", struct.pack("<d", x))
    if isinstance(x, int):
        return ("int", x)
    if isinstance(x, (tuple, list)):
        return (type(x).__name__, tuple(canon(v) for v in x))
    if isinstance(x, dict):
        return ("dict", tuple((k, canon(v)) for k, v in x.items()))
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return (type(x).__name__, canon(dataclasses.astuple(x)))
    if x is None or isinstance(x, (str, bytes)):
        return x
    raise TypeError(f"cannot compare {type(x).__name__}")


def outcome(call: Callable[[], object]) -> object:
    """What a call returned, or the exception it raised (type and message)."""
    try:
        return ("returned", canon(call()))
    except (ConsensusError, ZeroDivisionError, OverflowError, TypeError, ValueError) as exc:
        return ("raised", type(exc).__name__, str(exc))


def describe(got: object, want: object) -> str:
    """The first difference, readably (estimates field by field)."""
    if (
        isinstance(got, tuple)
        and isinstance(want, tuple)
        and got[:1] == want[:1] == ("returned",)
        and isinstance(got[1], tuple)
        and isinstance(want[1], tuple)
        and got[1][0] == want[1][0] == "Estimate"
    ):
        for name, a, b in zip(Estimate._fields, got[1][1], want[1][1], strict=True):
            if a != b:
                return f"Estimate.{name}: compiled {a!r} != reference {b!r}"
    return f"compiled {got!r} != reference {want!r}"


class Twin:
    """One reference and one compiled filter (with reputations) fed the same calls."""

    def __init__(
        self,
        config: FilterConfig,
        rep_config: ReputationConfig | None,
        shared: Twin | None = None,
    ) -> None:
        assert compiled is not None
        self.ref_rep: reference.Reputation | None
        self.com_rep: Any
        if shared is not None:
            self.ref_rep, self.com_rep = shared.ref_rep, shared.com_rep
        elif rep_config is not None:
            self.ref_rep = reference.Reputation(rep_config)
            self.com_rep = compiled.Reputation(rep_config)
        else:
            self.ref_rep = self.com_rep = None
        self.ref = reference.ConsensusFilter(config, self.ref_rep)
        self.com = compiled.ConsensusFilter(config, self.com_rep)
        self.calls = 0
        self.log: list[str] = []
        self.seen: set[int] = set()

    def same(
        self, what: str, ref_call: Callable[[], object], com_call: Callable[[], object]
    ) -> object:
        self.calls += 1
        self.log.append(what)
        want = outcome(ref_call)
        got = outcome(com_call)
        if got != want:
            history = "\n  ".join(self.log[-12:])
            pytest.fail(f"{what}: {describe(got, want)}\nlast calls:\n  {history}")
        return want

    def update(self, source: Any, *args: Any, **kwargs: Any) -> object:
        if type(source) is int and 0 <= source < 1 << 64:
            self.seen.add(source)
        return self.same(
            f"update({source!r}, {', '.join(map(repr, args))}, {kwargs!r})",
            lambda: self.ref.update(source, *args, **kwargs),
            lambda: self.com.update(source, *args, **kwargs),
        )

    def estimate(self, now: Any) -> object:
        result = self.same(
            f"estimate({now!r})", lambda: self.ref.estimate(now), lambda: self.com.estimate(now)
        )
        if self.ref_rep is not None:  # the judgments it made
            self.same(
                "reputations after the estimate",
                lambda: self.reputations(self.ref_rep),
                lambda: self.reputations(self.com_rep),
            )
        return result

    def reputations(self, rep: Any) -> list[tuple[float, int]]:
        return [(rep.value(s), rep.rounds(s)) for s in sorted(self.seen)]

    def forget(self, source: Any) -> None:
        self.same(
            f"forget({source!r})", lambda: self.ref.forget(source), lambda: self.com.forget(source)
        )

    def rep_call(self, name: str, *args: Any) -> None:
        if self.ref_rep is None:
            return
        self.same(
            f"reputation.{name}{args!r}",
            lambda: getattr(self.ref_rep, name)(*args),
            lambda: getattr(self.com_rep, name)(*args),
        )

    def check_state(self, sources: range | list[int]) -> None:
        """Statistics, and every query of the reputation for each source."""
        self.same("statistics()", self.ref.statistics, self.com.statistics)
        if self.ref_rep is None:
            return
        self.same("rep statistics()", self.ref_rep.statistics, self.com_rep.statistics)
        for s in sources:
            for name in ("value", "rounds", "flagged", "in_probation", "link_quality"):
                self.rep_call(name, s)


# -- generating -----------------------------------------------------------------

#: Floats at the edges of the rules (bounds, overflow, underflow, zero, -0.0).
EDGE_FLOATS = (
    0.0,
    -0.0,
    1.0,
    -1.0,
    5e-324,
    1e-300,
    1e-160,
    1e-200,
    1e100,
    1.0000000000000002e100,
    1e150,
    -1e150,
    1.0000000000000002e150,
    1e12,
    1.0000000000000002e12,
    1e308,
    math.inf,
    -math.inf,
    math.nan,
    2.0**53,
    2.0**53 + 2.0,
)
#: Values that are not numbers, or numbers of the wrong kind.
ODD_VALUES: tuple[Any, ...] = (
    True,
    False,
    None,
    "1.0",
    b"x",
    10**400,
    -(10**400),
    2**63,
    -(2**63) - 1,
    2**53 + 1,
    1,
    0,
    -3,
)


def random_config(rng: random.Random, kind: str | None = None) -> FilterConfig:
    kind = kind or rng.choice(KINDS)
    dims = rng.choice((1, 2, 3, 5, 16)) if kind == "vector" else 1
    min_sources = rng.choice((1, 1, 2, 3, 3, 4))
    max_sources = min_sources + rng.choice((0, 2, 5, 40, 60))
    lower: float | int = -math.inf
    upper: float | int = math.inf
    roll = rng.random()
    if roll < 0.15:
        lower, upper = -3.0, 3.0
    elif roll < 0.25:
        lower, upper = 0, 2**60 + 1  # ints, compared exactly by the reference
    elif roll < 0.3:
        lower, upper = -(2**53) - 1, 2.5
    return FilterConfig(
        kind=kind,
        dims=dims,
        min_sources=min_sources,
        max_sources=max_sources,
        lower=lower,
        upper=upper,
        default_sigma=rng.choice((1.0, 0.5, 2, 1e-3)),
        min_sigma=rng.choice((0.0, 0.0, 0.05, 1)),
        default_half_life=rng.choice((10.0, 0.5, 1e-3, 100, 1e6)),
        expire_half_lives=rng.choice((10.0, 2.0, 40.0, 1)),
        agree_sigmas=rng.choice((3.0, 1.0, 5.0, 2)),
        reject_sigmas=rng.choice((3.5, 1.5, 6.0, 3)),
        max_weight_share=rng.choice((0.5, 1.0, 0.25, 0.05, 1, 0.34)),
        fault_model=rng.choice(("byzantine", "consistent")),
        probation_share=rng.choice((0.2, 0.5, 0.05, 0.9)),
        reach_interval=rng.choice((1.0, 0.001, 0.25, 3, 1e3)),
    )


def random_rep_config(rng: random.Random) -> ReputationConfig:
    return ReputationConfig(
        forgetting=rng.choice((0.9, 0.5, 0.0, 0.99, 0)),
        disagreement_forgetting=rng.choice((0.1, 0.0, 0.5)),
        disagreement_weight=rng.choice((6.0, 1.0, 0.5, 3)),
        prior_agree=rng.choice((0.5, 1.0, 2)),
        prior_disagree=rng.choice((0.5, 1.0, 0.1)),
        probation_rounds=rng.choice((0, 1, 3, 50)),
        flag_below=rng.choice((0.5, 0.3, 1.0)),
        distrust_below=rng.choice((0.1, 0.0, 0.25, 0.3)),
        max_sources=rng.choice((1, 3, 8, 4096)),
    )


def good_value(rng: random.Random, config: FilterConfig, centre: float, spread: float) -> Any:
    kind = config.kind
    if kind == "category":
        return rng.choice((1, 1, 1, 2, 3)) if spread < 1 else rng.randint(0, 5)
    if kind == "vector":
        return tuple(centre + rng.gauss(0.0, spread) for _ in range(config.dims))
    x = centre + rng.gauss(0.0, spread)
    if kind == "interval":
        return (x, abs(rng.gauss(0.0, 1.0)) * 3)
    return x


def odd_value(rng: random.Random, config: FilterConfig) -> Any:
    kind = config.kind
    pick = rng.random()
    if kind == "category":
        return rng.choice((1.0, True, 2**63, -(2**63), -(2**63) - 1, 2**60 + 1, 2**60 + 2, "1", -1))
    number = rng.choice(EDGE_FLOATS + ODD_VALUES)
    if kind == "scalar":
        return number
    if kind == "interval":
        if pick < 0.3:
            return (rng.gauss(0, 1), number)
        if pick < 0.6:
            return (number, 1.0)
        return rng.choice(([0.5, 0.1], (1.0,), (1.0, 2.0, 3.0), 1.0, None, "ab", (1.0, -0.5)))
    if pick < 0.5:
        comps = [rng.gauss(0, 1) for _ in range(config.dims)]
        comps[rng.randrange(config.dims)] = number
        return tuple(comps) if pick < 0.25 else comps
    return rng.choice(((), (1.0,) * (config.dims + 1), 1.0, None, "abc"))


def random_update(
    rng: random.Random, config: FilterConfig, source: int, now: float, liar: bool
) -> tuple[Any, ...]:
    """(source, value, confidence, now, kwargs) for one update, mostly well formed."""
    value = good_value(rng, config, 8.0 if liar else 0.0, 0.3)
    if rng.random() < 0.12:
        value = odd_value(rng, config)
    confidence: Any = rng.uniform(0.2, 1.0)
    if rng.random() < 0.08:
        confidence = rng.choice((0, 1, 1.5, -0.1, math.nan, True, "x", 5e-324, 10**400, 1.0))
    kwargs: dict[str, Any] = {}
    if config.kind != "interval" or rng.random() < 0.05:
        roll = rng.random()
        if roll < 0.4:
            kwargs["sigma"] = rng.choice((0.1, 0.3, 1.0, 2.0)) * (0.01 if liar else 1.0)
        elif roll < 0.47:
            kwargs["sigma"] = rng.choice(
                (0, -1.0, 1e100, 1e101, 10**120, 1e-160, 1e-200, 5e-324, math.nan, True, 2, "s")
            )
    for name in ("half_life", "ttl"):
        roll = rng.random()
        if roll < 0.15:
            kwargs[name] = rng.choice((0.5, 2.0, 30.0, 1e3))
        elif roll < 0.18:
            kwargs[name] = rng.choice((0, -1.0, 1e12, 1e13, True, 3, 10**13, math.nan, 5e-324))
    return source, value, confidence, now, kwargs


def drive(twin: Twin, config: FilterConfig, rng: random.Random, sources: int, rounds: int) -> None:
    """A random session: rounds of updates, estimates, and the odd forget or bad call."""
    liars = set(rng.sample(range(sources), k=rng.randint(0, max(0, (sources - 1) // 3))))
    now = rng.choice((0.0, 1000.5, -5e11))
    for _ in range(rounds):
        now += rng.choice((0.0, 0.001, 0.1, 0.7, 2.0, 30.0))
        for source in range(sources):
            if rng.random() < 0.25:
                continue
            at = now
            roll = rng.random()
            if roll < 0.05:
                at = now - rng.choice((0.5, 5.0))  # older than the current reading
            elif roll < 0.08:
                at = int(now)
            args = random_update(rng, config, source, at, source in liars)
            twin.update(args[0], *args[1:4], **args[4])
        roll = rng.random()
        if roll < 0.03:
            twin.update(rng.choice((-1, 2**64, 1.0, True, "s")), 1.0, 1.0, now)
        elif roll < 0.06:
            twin.update(0, 1.0, 1.0, rng.choice((math.nan, math.inf, 1e13, True, "t", 10**400)))
        elif roll < 0.1:
            twin.forget(rng.randrange(sources))
        elif roll < 0.13:
            twin.rep_call("set_link_quality", rng.randrange(sources), rng.choice((0.5, 1, 0.0)))
        elif roll < 0.15:
            twin.rep_call("record", rng.randrange(sources + 3), rng.random() < 0.5)
        elif roll < 0.16:
            twin.rep_call("forget", rng.randrange(sources))
        for _ in range(rng.choice((1, 1, 2))):
            twin.estimate(now + rng.choice((0.0, 0.0, 0.05, 1.0, 15.0)))
    twin.estimate(rng.choice((math.nan, -1e13, "now", now)))
    twin.check_state(range(sources + 3))


# -- hypothesis -----------------------------------------------------------------


def st_number() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.floats(-2.0, 2.0),
        st.sampled_from(EDGE_FLOATS),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from(ODD_VALUES),
    )


def st_value(config: FilterConfig) -> st.SearchStrategy[Any]:
    kind = config.kind
    if kind == "category":
        good: st.SearchStrategy[Any] = st.integers(0, 3)
    elif kind == "vector":
        good = st.tuples(*[st.floats(-1.0, 1.0)] * config.dims)
    elif kind == "interval":
        good = st.tuples(st.floats(-1.0, 1.0), st.floats(0.0, 3.0))
    else:
        good = st.floats(-1.0, 1.0)
    if kind == "vector":
        odd: st.SearchStrategy[Any] = st.one_of(
            st.lists(st_number(), min_size=config.dims, max_size=config.dims).map(tuple),
            st.lists(st.floats(-1.0, 1.0), min_size=0, max_size=config.dims + 1),
        )
    elif kind == "interval":
        odd = st.one_of(st.tuples(st_number(), st_number()), st.lists(st_number(), max_size=3))
    else:
        odd = st_number()
    return st.one_of(good, good, good, odd)


@st.composite
def st_session(draw: st.DrawFn) -> tuple[FilterConfig, ReputationConfig | None, list[Any]]:
    kind = draw(st.sampled_from(KINDS))
    dims = draw(st.sampled_from((1, 2, 3))) if kind == "vector" else 1
    min_sources = draw(st.integers(1, 4))
    config = FilterConfig(
        kind=kind,
        dims=dims,
        min_sources=min_sources,
        max_sources=draw(st.integers(min_sources, min_sources + 8)),
        default_sigma=draw(st.sampled_from((1.0, 0.2, 3))),
        min_sigma=draw(st.sampled_from((0.0, 0.1))),
        default_half_life=draw(st.sampled_from((10.0, 0.3, 2))),
        expire_half_lives=draw(st.sampled_from((10.0, 3.0))),
        agree_sigmas=draw(st.sampled_from((3.0, 1.0, 0.5))),
        reject_sigmas=draw(st.sampled_from((3.5, 1.0))),
        max_weight_share=draw(st.sampled_from((0.5, 1.0, 0.2, 0.34))),
        fault_model=draw(st.sampled_from(("byzantine", "consistent"))),
        probation_share=draw(st.sampled_from((0.2, 0.6))),
        reach_interval=draw(st.sampled_from((1.0, 0.25, 0.001))),
    )
    rep_config = draw(
        st.one_of(
            st.none(),
            st.builds(
                ReputationConfig,
                forgetting=st.sampled_from((0.9, 0.0, 0.5)),
                probation_rounds=st.sampled_from((0, 2, 50)),
                distrust_below=st.sampled_from((0.1, 0.3)),
                flag_below=st.just(0.5),
                max_sources=st.sampled_from((2, 5, 4096)),
            ),
        )
    )
    source = st.integers(0, 9)
    confidence = st.one_of(
        st.floats(0.1, 1.0), st.sampled_from((1, 1.0, 0, -1.0, 2.0, math.nan, True, "c", 5e-324))
    )
    optional = st.one_of(st.none(), st.none(), st.floats(0.01, 5.0), st_number())
    op = st.one_of(
        st.tuples(
            st.just("update"),
            source,
            st_value(config),
            confidence,
            st.sampled_from((0.0, 0.0, 0.1, 1.0, -0.5, 7.0)),
            optional,
            st.one_of(st.none(), st.none(), st.none(), optional),
            st.one_of(st.none(), st.none(), st.none(), optional),
        ),
        st.tuples(st.just("estimate"), st.sampled_from((0.0, 0.0, 0.3, 2.0, 50.0))),
        st.tuples(st.just("forget"), source),
        st.tuples(st.just("record"), source, st.booleans()),
        st.tuples(st.just("link"), source, st.sampled_from((0.5, 1.0, 1, 0.0, 1.5))),
        st.tuples(st.just("bad"), st.sampled_from((-1, 2**64, 1.5, "s", True))),
    )
    ops = draw(st.lists(op, min_size=1, max_size=60))
    return config, rep_config, ops


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        # `sorts` only sets an environment variable, the same for every example
        HealthCheck.function_scoped_fixture,
    ],
)
@given(st_session())
def test_random_sessions_are_bit_identical(
    session: tuple[FilterConfig, ReputationConfig | None, list[Any]],
) -> None:
    config, rep_config, ops = session
    twin = Twin(config, rep_config)
    now = 100.0
    for op in ops:
        kind = op[0]
        if kind == "update":
            _, source, value, confidence, dt, sigma, half_life, ttl = op
            now += dt
            twin.update(source, value, confidence, now, sigma, half_life, ttl)
        elif kind == "estimate":
            twin.estimate(now + op[1])
        elif kind == "forget":
            twin.forget(op[1])
        elif kind == "record":
            twin.rep_call("record", op[1], op[2])
        elif kind == "link":
            twin.rep_call("set_link_quality", op[1], op[2])
        else:
            twin.update(op[1], 1.0, 1.0, now)
            twin.forget(op[1])
            twin.rep_call("value", op[1])
    twin.estimate(now)
    twin.check_state(range(10))


# -- fixed seeds ----------------------------------------------------------------


def seeds(count: int) -> Iterator[random.Random]:
    for seed in range(count):
        yield random.Random(seed * 7919 + 17)


@pytest.mark.parametrize("kind", KINDS)
def test_random_configs_and_sessions(kind: str) -> None:
    """Every call is compared as it is made (Twin.same fails on the first difference)."""
    compared = 0
    for rng in seeds(12):
        config = random_config(rng, kind)
        rep_config = random_rep_config(rng) if rng.random() < 0.8 else None
        twin = Twin(config, rep_config)
        drive(twin, config, rng, sources=rng.choice((4, 9, 16)), rounds=12)
        compared += twin.calls
    assert compared >= 12 * 12 * 4  # at least the updates of every round were compared


@pytest.mark.parametrize("kind", KINDS)
def test_swarm_with_liars_and_precise_colluders(kind: str) -> None:
    """A larger swarm, a third lying; liars claim tiny sigmas (the combine's
    check against dominating sources), then turn honest, or go quiet."""
    rng = random.Random(99)
    dims = 3 if kind == "vector" else 1
    config = FilterConfig(kind=kind, dims=dims, max_sources=64)
    twin = Twin(config, ReputationConfig())
    sources = 48
    liars = set(range(0, sources, 3))
    sigma = {s: 0.05 * 20 ** rng.random() for s in range(sources)}
    now = 0.0
    for round_ in range(30):
        now += 0.25
        for s in range(sources):
            lying = s in liars and round_ < 20
            centre = rng.choice((-30.0, 30.0)) if lying and round_ % 2 else 0.0
            if kind == "category":
                value: Any = 2 if lying else 1
            elif kind == "vector":
                value = tuple(centre + rng.gauss(0, sigma[s]) for _ in range(dims))
            elif kind == "interval":
                value = (centre + rng.gauss(0, sigma[s]), 0.01 if lying else 3 * sigma[s])
            else:
                value = centre + rng.gauss(0, sigma[s])
            claimed = 1e-3 if lying else sigma[s]
            if kind == "interval":
                twin.update(s, value, rng.uniform(0.5, 1.0), now)
            else:
                twin.update(s, value, rng.uniform(0.5, 1.0), now, claimed)
        twin.estimate(now)
        twin.estimate(now + 0.001)
    twin.check_state(range(sources))


@pytest.mark.parametrize("kind", ("scalar", "vector", "interval"))
def test_precise_colluders_inside_the_agreeing_set(kind: str) -> None:
    """Colluders near enough to pass selection and MAD rejection, claiming
    sigmas a hundred times smaller than the honest ones: they dominate the
    combine, and its check inflates the sigma or drops them, by how far they
    pull; the offset sweeps through both thresholds."""
    rng = random.Random(17)
    dims = 2 if kind == "vector" else 1
    for offset in (0.0, 0.05, 0.2, 0.5, 1.0, 2.0):
        for share in (0.5, 1.0):
            config = FilterConfig(kind=kind, dims=dims, max_weight_share=share, reject_sigmas=6.0)
            twin = Twin(config, rng.choice((None, ReputationConfig(probation_rounds=0))))
            now = 0.0
            for _ in range(4):
                now += 0.5
                for s in range(13):
                    colluder = s < 4
                    centre = offset if colluder else 0.0
                    sigma = 0.01 if colluder else 1.0
                    comps = [centre + rng.gauss(0, sigma) for _ in range(dims)]
                    confidence = rng.uniform(0.6, 1.0)
                    if kind == "interval":
                        twin.update(s, (comps[0], 3 * sigma), confidence, now)
                    elif kind == "vector":
                        twin.update(s, tuple(comps), confidence, now, sigma)
                    else:
                        twin.update(s, comps[0], confidence, now, sigma)
                twin.estimate(now)
            twin.check_state(range(13))


def test_tied_weights_and_values() -> None:
    """Identical sensors, an odd and an even number: exact ties in every median,
    every leave-one-out median, and in values (sorted by source id)."""
    rng = random.Random(5)
    for n in (7, 8, 31, 32, 63):
        twin = Twin(FilterConfig(max_sources=64), ReputationConfig(probation_rounds=0))
        now = 0.0
        for _ in range(6):
            now += 0.5
            for s in range(n):
                twin.update(s, round(rng.gauss(0, 1), 1), 1.0, now)
            twin.estimate(now)
        twin.check_state(range(n))


def test_shared_reputation_across_two_filters() -> None:
    rng = random.Random(11)
    rep_config = ReputationConfig(max_sources=10, probation_rounds=3)
    first = Twin(FilterConfig(kind="scalar", min_sources=2), rep_config)
    second = Twin(FilterConfig(kind="category", min_sources=2), None, shared=first)
    now = 0.0
    for _ in range(40):
        now += 0.3
        for s in rng.sample(range(14), 8):
            first.update(s, rng.gauss(0, 0.2) + (5.0 if s % 5 == 0 else 0.0), 0.9, now)
            second.update(s, 1 if s % 5 else 2, 0.8, now)
        first.estimate(now)
        second.estimate(now)
        if rng.random() < 0.2:
            first.rep_call("forget", rng.randrange(14))
    first.check_state(range(14))
    second.check_state(range(14))


def test_eviction_when_full() -> None:
    """More sources than either table holds: the oldest reading goes, and the
    source judged longest ago (never-judged ones first) leaves the reputation."""
    rng = random.Random(3)
    twin = Twin(
        FilterConfig(min_sources=2, max_sources=6),
        ReputationConfig(max_sources=5, probation_rounds=1),
    )
    now = 0.0
    for _ in range(60):
        now += rng.choice((0.0, 0.1, 1.0))
        source = rng.randrange(20)
        if rng.random() < 0.2:
            twin.rep_call("set_link_quality", rng.randrange(20), rng.choice((0.3, 1.0)))
        twin.update(source, rng.gauss(0, 0.1), 1.0, now - rng.choice((0.0, 0.0, 0.5)))
        twin.estimate(now)
    twin.check_state(range(20))


def test_extreme_readings_at_the_limits_agree() -> None:
    """Sigmas, values, confidences and evaporation at and past the gate's
    limits: both refuse the same ones, and what they accept fuses to a finite
    value and sigma (no division by zero, no overflow) with the same bits."""
    for sigma, confidence, agree in (
        (1e-20, 1.0, 3.0),
        (1e-21, 1.0, 3.0),
        (1e20, 1e-6, 3.0),
        (1e20, 1e-7, 0.01),
        (1e-20, 1e-6, 0.01),
    ):
        for kind in ("scalar", "vector", "interval"):
            dims = 2 if kind == "vector" else 1
            config = FilterConfig(kind=kind, dims=dims, min_sources=2, agree_sigmas=agree)
            twin = Twin(config, ReputationConfig())
            for s in range(5):
                x = 1e50 * (s - 2) / 2 if sigma == 1e20 else 0.001 * s
                value: Any = (x,) * dims if kind == "vector" else x
                if kind == "interval":
                    twin.update(s, (x, sigma), confidence, 1.0)
                else:
                    twin.update(s, value, confidence, 1.0, sigma, 1.0, 1e6)
            for now in (1.0, 2.0, 60.0, 66.0):
                result = twin.estimate(now)
                assert isinstance(result, tuple) and result[0] == "returned", result
                estimate = twin.ref.estimate(now)
                if estimate.ok:
                    assert math.isfinite(estimate.sigma), (sigma, confidence, agree, kind, now)
                    value = estimate.value
                    values = value if isinstance(value, tuple) else (value,)
                    assert all(isinstance(v, float) and math.isfinite(v) for v in values)


def test_implementations_do_not_mix() -> None:
    assert compiled is not None
    with pytest.raises(ConsensusError, match="this implementation's Reputation, got Reputation"):
        compiled.ConsensusFilter(FilterConfig(), reference.Reputation())
    with pytest.raises(ConsensusError, match="this implementation's Reputation, got Reputation"):
        reference.ConsensusFilter(FilterConfig(), compiled.Reputation())
    with pytest.raises(ConsensusError, match="got dict"):
        compiled.ConsensusFilter(FilterConfig(), {})
    flt = compiled.ConsensusFilter()
    assert flt.config == FilterConfig() and flt.reputation is None
    rep = compiled.Reputation()
    assert compiled.ConsensusFilter(None, rep).reputation is rep
    assert type(flt.estimate(0.0)) is Estimate
