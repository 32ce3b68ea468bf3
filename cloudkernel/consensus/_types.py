"""What both consensus implementations share: settings, results and names.

The compiled filter (`_consensus.pyx` over csrc/ck_consensus.c) and the
pure-Python reference (`_consensus_ref.py`) take the same `FilterConfig` and
`ReputationConfig`, return the same `Estimate`, and pack the per-source
breakdown in the same `BREAKDOWN_FORMAT`, so a test can compare them field
by field and bit by bit.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

__all__ = [
    "BREAKDOWN_FORMAT",
    "DROP_REASONS",
    "KINDS",
    "MAX_DIMS",
    "MAX_MAGNITUDE",
    "MAX_SIGMA",
    "MAX_TIME",
    "MIN_CONFIDENCE",
    "MIN_EVAPORATION",
    "MIN_LINK_QUALITY",
    "MIN_SIGMA",
    "NOT_OK_REASONS",
    "SOURCE_REASONS",
    "SYMBOLS",
    "Z95",
    "ConsensusError",
    "Estimate",
    "FilterConfig",
    "FilterStatistics",
    "Kind",
    "ReputationConfig",
    "ReputationStatistics",
    "SourceReason",
    "SourceReport",
    "Value",
    "unpack_breakdown",
]

#: The largest vector a vector topic may carry (the wire's limit as well).
MAX_DIMS = 16

#: Readings beyond these magnitudes are out-of-range / bad-sigma, so that no
#: square or sum in the filter can overflow.
MAX_MAGNITUDE = 1e50
MAX_SIGMA = 1e20
#: A reading's sigma (after min_sigma) below this is bad-sigma: no reading is exact.
MIN_SIGMA = 1e-20
#: Confidence below this is bad-confidence; link quality below it counts as it.
MIN_CONFIDENCE = 1e-6
MIN_LINK_QUALITY = 1e-6
#: A reading evaporated below this factor counts as expired.
MIN_EVAPORATION = 1e-20
#: ``now`` must lie within +-MAX_TIME seconds.
MAX_TIME = 1e12

#: The two-sided 95 % normal quantile: ``interval = value +- Z95 * sigma``.
Z95 = 1.959963984540054

Value = float | int | tuple[float, ...]


class ConsensusError(ValueError):
    """A setting or an argument that cannot be used; the message names it."""


class Kind(IntEnum):
    """What a topic's values are; the numbers are csrc/ck_consensus.h's."""

    SCALAR = 0
    VECTOR = 1
    CATEGORY = 2
    INTERVAL = 3


KINDS = {
    "scalar": Kind.SCALAR,
    "vector": Kind.VECTOR,
    "category": Kind.CATEGORY,
    "interval": Kind.INTERVAL,
}


class SourceReason(IntEnum):
    """Why a source was or was not used, in the order csrc/ck_consensus.h lists."""

    BEST = 0  # used, with the largest share of the combine
    USED = 1  # used in the combine
    OUTLIER = 2  # agreed with the majority but lay too far from its median
    FALSETICKER = 3  # outside the best agreeing set
    DISTRUSTED = 4  # reputation below ReputationConfig.distrust_below
    EXPIRED = 5  # reading past its ttl or its expiry in half-lives
    NO_CONSENSUS = 6  # fresh, but the topic has no consensus


#: chronyc-like symbol per `SourceReason`, same order.
SYMBOLS = "*+-x~??"
SOURCE_REASONS = ("best", "used", "outlier", "falseticker", "distrusted", "expired", "no-consensus")

#: Why an update was not taken; the keys of `FilterStatistics.dropped`.
DROP_REASONS = (
    "non-finite",
    "out-of-range",
    "bad-confidence",
    "bad-sigma",
    "bad-lifetime",
    "bad-shape",
    "older",
)

#: Why an estimate is not ``ok`` (``Estimate.reason``); "" when it is.
NOT_OK_REASONS = ("", "no-sources", "stale", "too-few-sources", "no-majority", "no-margin")

#: One packed record per source, sorted by source id: source, reason code,
#: reach, age, value, offset from the estimate, sigma, combine weight,
#: confidence, reputation, evaporation, link quality.
BREAKDOWN_FORMAT = "<QBB6x9d"
_RECORD = struct.Struct(BREAKDOWN_FORMAT)


def _check(condition: bool, field: str, value: object, rule: str) -> None:
    if not condition:
        raise ConsensusError(f"{field} must be {rule}, got {value!r}")


def _as_floats(config: object, *names: str) -> None:
    """Store the named (checked) numbers as floats, as the compiled filter holds them."""
    for name in names:
        object.__setattr__(config, name, float(getattr(config, name)))


def _positive(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@dataclass(frozen=True)
class FilterConfig:
    """How one topic fuses its sources' readings."""

    kind: str = "scalar"
    """scalar, vector, category or interval."""
    dims: int = 1
    """Vector length for vector topics (1..16); 1 otherwise."""
    min_sources: int = 3
    """Fewer survivors than this and the estimate is no-consensus."""
    max_sources: int = 64
    """Sources kept per topic: those with the newest readings."""
    lower: float = -math.inf
    """Readings below this are dropped as out-of-range."""
    upper: float = math.inf
    """Readings above this are dropped as out-of-range."""
    default_sigma: float = 1.0
    """A reading's standard deviation when its sender gives none."""
    min_sigma: float = 0.0
    """Floor on any reading's sigma, so no source can claim to be exact."""
    default_half_life: float = 10.0
    """Seconds; for readings that give neither half-life nor ttl."""
    expire_half_lives: float = 10.0
    """A reading without ttl expires after this many half-lives."""
    agree_sigmas: float = 3.0
    """Half-width of a reading's interval, in sigmas, for selection and agreement."""
    reject_sigmas: float = 3.5
    """Survivors farther than this many robust sigmas from the median are outliers."""
    max_weight_share: float = 0.5
    """No source holds more than this share of the median's or the combine's weight."""
    fault_model: str = "byzantine"
    """byzantine: up to (n-1)//3 liars; consistent: up to (n-1)//2 (no equivocation)."""
    probation_share: float = 0.2
    """Sources still in probation hold at most this share of the weight together."""
    reach_interval: float = 1.0
    """Seconds per bit of the 8-bit reach register (at least 0.001)."""

    def __post_init__(self) -> None:
        _check(self.kind in KINDS, "kind", self.kind, "one of " + ", ".join(KINDS))
        _check(
            type(self.dims) is int and 1 <= self.dims <= MAX_DIMS,
            "dims",
            self.dims,
            f"an int in 1..{MAX_DIMS}",
        )
        _check(
            self.kind == "vector" or self.dims == 1, "dims", self.dims, "1 unless kind is vector"
        )
        _check(
            type(self.min_sources) is int and 1 <= self.min_sources <= 1024,
            "min_sources",
            self.min_sources,
            "an int in 1..1024",
        )
        _check(
            type(self.max_sources) is int and self.min_sources <= self.max_sources <= 1024,
            "max_sources",
            self.max_sources,
            "an int in min_sources..1024",
        )
        for name in ("lower", "upper"):
            value = getattr(self, name)
            _check(
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and (isinstance(value, float) or abs(value) <= 1e300)
                and not math.isnan(value),
                name,
                value,
                "a number within +-1e300 or an infinity",
            )
            object.__setattr__(self, name, float(value))
        _check(self.lower < self.upper, "lower", self.lower, f"below upper ({self.upper!r})")
        _check(
            _positive(self.default_sigma),
            "default_sigma",
            self.default_sigma,
            "a finite number > 0",
        )
        _check(
            isinstance(self.min_sigma, (int, float))
            and math.isfinite(self.min_sigma)
            and self.min_sigma >= 0,
            "min_sigma",
            self.min_sigma,
            "a finite number >= 0",
        )
        for name in ("default_half_life", "expire_half_lives", "agree_sigmas", "reject_sigmas"):
            _check(_positive(getattr(self, name)), name, getattr(self, name), "a finite number > 0")
        _check(
            _positive(self.reach_interval) and self.reach_interval >= 0.001,
            "reach_interval",
            self.reach_interval,
            "a finite number >= 0.001",
        )
        _check(self.min_sigma <= MAX_SIGMA, "min_sigma", self.min_sigma, f"<= {MAX_SIGMA:g}")
        _check(
            self.default_sigma <= MAX_SIGMA,
            "default_sigma",
            self.default_sigma,
            f"<= {MAX_SIGMA:g}",
        )
        _check(
            isinstance(self.max_weight_share, (int, float)) and 0 < self.max_weight_share <= 1,
            "max_weight_share",
            self.max_weight_share,
            "in (0, 1]",
        )
        _check(
            self.fault_model in ("byzantine", "consistent"),
            "fault_model",
            self.fault_model,
            "byzantine or consistent",
        )
        _check(
            isinstance(self.probation_share, (int, float)) and 0 < self.probation_share < 1,
            "probation_share",
            self.probation_share,
            "in (0, 1)",
        )
        for name, most in (
            ("default_half_life", MAX_TIME),
            ("expire_half_lives", 1e6),
            ("agree_sigmas", 1000.0),
            ("reject_sigmas", 1000.0),
            ("reach_interval", MAX_TIME),
        ):
            _check(getattr(self, name) <= most, name, getattr(self, name), f"<= {most:g}")
        _check(self.agree_sigmas >= 0.01, "agree_sigmas", self.agree_sigmas, ">= 0.01")
        _as_floats(
            self,
            "default_sigma",
            "min_sigma",
            "default_half_life",
            "expire_half_lives",
            "agree_sigmas",
            "reject_sigmas",
            "max_weight_share",
            "probation_share",
            "reach_interval",
        )

    @property
    def kind_code(self) -> Kind:
        return KINDS[self.kind]


@dataclass(frozen=True)
class ReputationConfig:
    """A Beta reputation with forgetting, judged once per reading.

    Agreement: ``a = forgetting*a + 1; b = forgetting*b``. Disagreement:
    ``a = disagreement_forgetting*a; b = forgetting*b + disagreement_weight``.
    The reputation is the posterior mean ``(a + prior_agree) / (a + b +
    prior_agree + prior_disagree)``. The defaults take an honest source that
    agrees 95 % of the time past 0.85 within 50 rounds, a persistent liar from
    full trust to under 0.1 within 10, and hold a liar one round in five under
    0.5 (tests/test_consensus_reputation.py).
    """

    forgetting: float = 0.9
    """Weight an old judgment keeps per new one (memory ~ 1/(1-forgetting) rounds)."""
    disagreement_forgetting: float = 0.1
    """Share of the agreement evidence a disagreement leaves standing."""
    disagreement_weight: float = 6.0
    """Evidence one disagreement adds against a source."""
    prior_agree: float = 0.5
    """Beta prior, agreement side (a fresh source starts at the prior's mean)."""
    prior_disagree: float = 0.5
    """Beta prior, disagreement side."""
    probation_rounds: int = 50
    """Judgments before a source leaves probation (see FilterConfig.probation_share)."""
    flag_below: float = 0.5
    """Reputation under which a source is flagged as suspect."""
    distrust_below: float = 0.1
    """Reputation under which a source's readings are not used at all."""
    max_sources: int = 4096
    """Sources remembered; a new one evicts the one judged longest ago."""

    def __post_init__(self) -> None:
        for name in ("forgetting", "disagreement_forgetting"):
            value = getattr(self, name)
            _check(isinstance(value, (int, float)) and 0 <= value < 1, name, value, "in [0, 1)")
        for name in ("disagreement_weight", "prior_agree", "prior_disagree"):
            _check(_positive(getattr(self, name)), name, getattr(self, name), "a finite number > 0")
        _check(
            type(self.probation_rounds) is int and 0 <= self.probation_rounds <= 1_000_000,
            "probation_rounds",
            self.probation_rounds,
            "an int in 0..1000000",
        )
        for name in ("flag_below", "distrust_below"):
            value = getattr(self, name)
            _check(isinstance(value, (int, float)) and 0 <= value <= 1, name, value, "in [0, 1]")
        _check(
            self.distrust_below <= self.flag_below,
            "distrust_below",
            self.distrust_below,
            "<= flag_below",
        )
        _check(
            type(self.max_sources) is int and 1 <= self.max_sources <= 1 << 20,
            "max_sources",
            self.max_sources,
            "an int in 1..1048576",
        )
        # Bounds that keep every reputation above ~1e-9, so no weight is 0.
        _check(self.forgetting <= 0.999, "forgetting", self.forgetting, "<= 0.999")
        _check(
            self.disagreement_weight <= 1000,
            "disagreement_weight",
            self.disagreement_weight,
            "<= 1000",
        )
        for name in ("prior_agree", "prior_disagree"):
            value = getattr(self, name)
            _check(0.001 <= value <= 1000, name, value, "in [0.001, 1000]")
        _as_floats(
            self,
            "forgetting",
            "disagreement_forgetting",
            "disagreement_weight",
            "prior_agree",
            "prior_disagree",
            "flag_below",
            "distrust_below",
        )


class SourceReport(NamedTuple):
    """One source's line in an estimate's breakdown (like a chronyc sources line)."""

    source: int
    symbol: str
    """``*`` best, ``+`` used, ``-`` outlier, ``x`` falseticker, ``~`` distrusted, ``?`` other."""
    reason: str
    """One of SOURCE_REASONS."""
    reach: int
    """8-bit register: bit i set if a reading arrived i reach intervals ago."""
    age: float
    """Seconds since the reading was taken."""
    value: float
    """The reading (scalar, interval centre, category label); a vector's distance to the value."""
    offset: float
    """Reading minus estimate (scalar, interval); 0 or 1 (other label) for categories."""
    sigma: float
    """The reading's sigma, widened by evaporation."""
    weight: float
    """Share of the combine (0 if not used)."""
    confidence: float
    reputation: float
    evaporation: float
    link_quality: float

    @property
    def trust(self) -> float:
        """The weight's product: confidence x reputation x evaporation x link quality."""
        return self.confidence * self.reputation * self.evaporation * self.link_quality


def unpack_breakdown(packed: bytes) -> tuple[SourceReport, ...]:
    """Decode `Estimate.breakdown` into one `SourceReport` per source."""
    reports = []
    for (
        source,
        reason,
        reach,
        age,
        value,
        offset,
        sigma,
        weight,
        conf,
        rep,
        evap,
        link,
    ) in _RECORD.iter_unpack(packed):
        reports.append(
            SourceReport(
                source,
                SYMBOLS[reason],
                SOURCE_REASONS[reason],
                reach,
                age,
                value,
                offset,
                sigma,
                weight,
                conf,
                rep,
                evap,
                link,
            )
        )
    return tuple(reports)


class Estimate(NamedTuple):
    """One topic's fused value at one instant; immutable.

    ``value`` is None unless ``state`` is ``ok``. ``interval`` is the 95 %
    interval ``value +- Z95 * sigma`` for scalar and interval topics, None
    otherwise (a vector's sigma is per coordinate).
    """

    state: str
    """ok, no-consensus or stale."""
    reason: str
    """Why not ok (one of NOT_OK_REASONS), "" when ok."""
    value: Value | None
    sigma: float
    """Standard deviation of the value (per coordinate for vectors); NaN without one."""
    interval: tuple[float, float] | None
    confidence: float
    """In [0, 1]: agreeing share of the weight x mean trust of the sources used."""
    sources_total: int
    sources_used: int
    sources_rejected: int
    """Fresh sources not used: falsetickers, outliers and distrusted."""
    age: float
    """Seconds since the newest reading used was taken (NaN without a value)."""
    breakdown: bytes
    """Packed per-source records (BREAKDOWN_FORMAT); read them through `sources`."""

    @property
    def sources(self) -> tuple[SourceReport, ...]:
        """The per-source breakdown, sorted by source id."""
        return unpack_breakdown(self.breakdown)

    @property
    def ok(self) -> bool:
        return self.state == "ok"


@dataclass(frozen=True)
class FilterStatistics:
    """Counters of one filter since it was made."""

    updates: int
    accepted: int
    dropped: dict[str, int]
    """Updates not taken, by DROP_REASONS."""
    evicted: int
    """Sources pushed out by max_sources."""
    estimates: int
    judged: int
    """Readings judged for reputation."""


@dataclass(frozen=True)
class ReputationStatistics:
    """Counters of one reputation table."""

    sources: int
    judgments: int
    disagreements: int
    evicted: int
