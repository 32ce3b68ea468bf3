"""Pure-Python weighted-consensus filter and reputation: the test oracle.

This file defines the algorithm; csrc/ck_consensus.c follows it step by step
and must give bit-identical results, so every sum here runs in a stated order
(by source id, or by sorted value with the source id breaking ties) and every
formula is written the way the C writes it.

An estimate (`ConsensusFilter.estimate`):

1. Gate. Updates that are not finite, out of bounds, or carry a bad
   confidence, sigma or lifetime were dropped and counted at `update`. A
   reading expires at its ttl, else after ``expire_half_lives`` half-lives.
2. Weigh. Each fresh reading has a trust ``t = confidence x reputation x link
   quality``, an evaporation ``e = 2^(-age/half_life)`` and a variance
   ``V = sigma^2 / e`` (an old reading knows less). Sources under the
   reputation's ``distrust_below`` are left out; sources still in probation
   hold at most ``probation_share`` of the weight between them.
3. Select (scalar, interval): each reading claims ``x +- agree_sigmas*sqrt(V)``;
   the point covered by the most weight picks the agreeing set, as in chrony's
   source selection. It must hold a strict majority of the weight.
4. Weighted median of that set (each source's weight capped at
   ``max_weight_share``), then MAD rejection of readings farther than
   ``reject_sigmas`` robust sigmas.
5. Inverse-variance combine of the survivors (capped again); the sigma is
   ``sqrt(sum a_i^2 V_i)``, inflated by the reduced chi-square when the
   survivors disagree more than their sigmas say.
6. Clamp to the f-trimmed range: with n fresh readings and f =
   (n-1)//3 (``byzantine``) or (n-1)//2 (``consistent``), the estimate is
   held within the (f+1)-th smallest and largest fresh values. At most f
   liars means both bounds lie within the honest range, so the estimate does,
   whatever the liars send.

Vectors replace 3-4 by a coordinate-wise weighted median and rejection by
distance, and clamp each coordinate (the honest bounding box, see
docs/CONSENSUS.md). Categories take the weighted plurality, returned only when
its margin exceeds the weight the f heaviest sources hold.

After an ``ok`` estimate, each reading not yet judged is judged once against
the leave-one-out median of the other fresh readings, and the verdict goes to
the shared `Reputation`.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

from ._types import (
    BREAKDOWN_FORMAT,
    DROP_REASONS,
    MAX_MAGNITUDE,
    MAX_SIGMA,
    MAX_TIME,
    MIN_CONFIDENCE,
    MIN_EVAPORATION,
    MIN_LINK_QUALITY,
    MIN_SIGMA,
    Z95,
    ConsensusError,
    Estimate,
    FilterConfig,
    FilterStatistics,
    Kind,
    ReputationConfig,
    ReputationStatistics,
    SourceReason,
    Value,
)

__all__ = ["ConsensusFilter", "Reputation"]

_RECORD = struct.Struct(BREAKDOWN_FORMAT)
_MAD_TO_SIGMA = 1.4826
#: How far (in squared spreads) the mean may move without the heaviest
#: sources before its sigma takes the move in (INFLATE), or before the mean
#: without them is taken instead (SWITCH); see _combine.
HAUSMAN_INFLATE = 2.0
HAUSMAN_SWITCH = 9.0
_U64 = 1 << 64


def _check_source(source: object) -> int:
    if type(source) is not int or not 0 <= source < _U64:
        raise ConsensusError(f"source must be an int in 0..2**64-1, got {source!r}")
    return source


def _check_now(now: object) -> float:
    if (
        not isinstance(now, (int, float))
        or isinstance(now, bool)
        or not -MAX_TIME <= now <= MAX_TIME
    ):
        raise ConsensusError(
            f"now must be a finite number of seconds within +-{MAX_TIME:g}, got {now!r}"
        )
    return float(now)


class Reputation:
    """Per-source trust, shared by every topic's filter (see ReputationConfig)."""

    def __init__(self, config: ReputationConfig | None = None) -> None:
        self.config = config if config is not None else ReputationConfig()
        # source -> [agree evidence, disagree evidence, rounds, last judged, link quality]
        self._entries: dict[int, list[float]] = {}
        self._clock = 0
        self._judgments = 0
        self._disagreements = 0
        self._evicted = 0

    def _entry(self, source: int) -> list[float]:
        entry = self._entries.get(source)
        if entry is None:
            if len(self._entries) >= self.config.max_sources:
                # The source judged longest ago; ties go to the lowest id.
                oldest = min(self._entries, key=lambda s: (self._entries[s][3], s))
                del self._entries[oldest]
                self._evicted += 1
            entry = [0.0, 0.0, 0, -1, 1.0]
            self._entries[source] = entry
        return entry

    def value(self, source: int) -> float:
        """The posterior mean trust in ``source``, in (0, 1)."""
        cfg = self.config
        entry = self._entries.get(_check_source(source))
        a, b = (entry[0], entry[1]) if entry is not None else (0.0, 0.0)
        return (a + cfg.prior_agree) / (a + b + cfg.prior_agree + cfg.prior_disagree)

    def rounds(self, source: int) -> int:
        """How many readings of ``source`` have been judged."""
        entry = self._entries.get(_check_source(source))
        return int(entry[2]) if entry is not None else 0

    def flagged(self, source: int) -> bool:
        """True when ``source``'s reputation is under ``flag_below``."""
        return self.value(source) < self.config.flag_below

    def in_probation(self, source: int) -> bool:
        return self.rounds(source) < self.config.probation_rounds

    def link_quality(self, source: int) -> float:
        entry = self._entries.get(_check_source(source))
        return entry[4] if entry is not None else 1.0

    def set_link_quality(self, source: int, quality: float) -> None:
        """Record how well ``source`` is heard, in (0, 1] (1 - loss, say)."""
        _check_source(source)
        if not isinstance(quality, (int, float)) or not 0 < quality <= 1:
            raise ConsensusError(f"link quality must be in (0, 1], got {quality!r}")
        # A link that delivers nothing still must not zero a weight (the
        # combine divides by the sum of weights): floor it.
        self._entry(source)[4] = float(quality) if quality >= MIN_LINK_QUALITY else MIN_LINK_QUALITY

    def record(self, source: int, agreed: bool) -> None:
        """Judge one reading of ``source``: it agreed with the others, or not."""
        cfg = self.config
        entry = self._entry(_check_source(source))
        if agreed:
            entry[0] = cfg.forgetting * entry[0] + 1.0
            entry[1] = cfg.forgetting * entry[1]
        else:
            entry[0] = cfg.disagreement_forgetting * entry[0]
            entry[1] = cfg.forgetting * entry[1] + cfg.disagreement_weight
            self._disagreements += 1
        entry[2] += 1
        entry[3] = self._clock
        self._clock += 1
        self._judgments += 1

    def forget(self, source: int) -> None:
        """Drop everything known about ``source``."""
        self._entries.pop(_check_source(source), None)

    def statistics(self) -> ReputationStatistics:
        return ReputationStatistics(
            len(self._entries), self._judgments, self._disagreements, self._evicted
        )


class _Reading:
    """The latest reading of one source, and what was derived from it."""

    __slots__ = (
        "comps",
        "confidence",
        "expires",
        "half_life",
        "judged",
        "label",
        "reach",
        "reach_slot",
        "sigma",
        "time",
    )

    def __init__(self) -> None:
        self.comps: tuple[float, ...] = ()
        self.label = 0
        self.confidence = 0.0
        self.sigma = 0.0
        self.half_life = math.inf
        self.expires = math.inf
        self.time = -math.inf
        self.judged = False
        self.reach = 0
        self.reach_slot = 0

    def key(self) -> tuple[float, ...]:
        """Orders two readings taken at the same instant, so arrival order never matters."""
        return (
            self.time,
            self.label,
            *self.comps,
            self.confidence,
            self.sigma,
            self.half_life,
            self.expires,
        )


def _cap(weights: list[float], share: float) -> list[float]:
    """Lower the largest weights so none holds more than ``share`` of the total.

    With the top k weights capped at c, the rest summing to R, c must equal
    share*(k*c + R), so c = share*R/(1 - share*k); take the first k for
    which the largest uncapped weight fits under c. If no k fits (share <
    1/n), all weights become the smallest.
    """
    n = len(weights)
    if n == 0:
        return weights
    ordered = sorted(weights, reverse=True)
    suffix = [0.0] * (n + 1)
    for k in range(n - 1, -1, -1):
        suffix[k] = suffix[k + 1] + ordered[k]
    if ordered[0] <= share * suffix[0]:
        return weights
    cap = ordered[n - 1]
    for k in range(1, n):
        if share * k >= 1.0:
            break
        level = share * suffix[k] / (1.0 - share * k)
        if ordered[k] <= level:
            cap = level
            break
    return [w if w <= cap else cap for w in weights]


def _limit(group: Sequence[_Fresh], weights: list[float], cfg: FilterConfig) -> list[float]:
    """Cap each source's weight, then scale down the sources in probation so
    that together they hold at most ``probation_share`` of the total (unless
    no source has left probation yet: a swarm must be able to start)."""
    weights = _cap(weights, cfg.max_weight_share)
    new_weight = 0.0
    old_weight = 0.0
    for i, s in enumerate(group):
        if s.probation:
            new_weight += weights[i]
        else:
            old_weight += weights[i]
    if new_weight == 0.0 or old_weight == 0.0:
        return weights
    limit = cfg.probation_share / (1.0 - cfg.probation_share) * old_weight
    if new_weight <= limit:
        return weights
    scale = limit / new_weight
    return [w * scale if group[i].probation else w for i, w in enumerate(weights)]


def _weighted_median(xs: Sequence[float], ws: Sequence[float], skip: int = -1) -> float:
    """The weighted median of ``xs`` (sorted ascending), leaving out index ``skip``.

    The first value where the running weight passes half the total; where it
    lands exactly on half, the mean of that value and the next. Leaving one
    out subtracts its weight from the running sums past it and from the
    total, so that each side of ``skip`` stays monotone and the compiled
    filter can binary-search it: the same numbers, found faster.
    """
    n = len(xs)
    prefix = []
    cum = 0.0
    for w in ws:
        cum += w
        prefix.append(cum)
    removed = ws[skip] if skip >= 0 else 0.0
    total = prefix[n - 1] - removed if skip >= 0 else prefix[n - 1]
    half = total * 0.5
    last = -1
    for j in range(n):
        if j == skip:
            continue
        last = j
        running = prefix[j] - removed if 0 <= skip < j else prefix[j]
        if running > half:
            return xs[j]
        if running == half:
            nxt = j + 1
            if nxt == skip:
                nxt += 1
            return (xs[j] + xs[nxt]) * 0.5 if nxt < n else xs[j]
    return xs[last]


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) * 0.5


class _Fresh:
    """Per-estimate working values of one fresh reading."""

    __slots__ = (
        "code",
        "comps",
        "evaporation",
        "label",
        "link",
        "probation",
        "reputation",
        "source",
        "trust",
        "var",
        "weight",
        "x",
    )

    def __init__(
        self, source: int, reading: _Reading, evaporation: float, reputation: float, link: float
    ) -> None:
        self.source = source
        self.comps = reading.comps
        self.x = reading.comps[0] if reading.comps else 0.0
        self.label = reading.label
        self.evaporation = evaporation
        self.reputation = reputation
        self.link = link
        self.trust = reading.confidence * reputation * link
        self.var = reading.sigma * reading.sigma / evaporation
        self.weight = 0.0  # share of the combine
        self.probation = False
        self.code = SourceReason.NO_CONSENSUS


class ConsensusFilter:
    """One topic's readings, one per source, fused into an `Estimate` on demand."""

    def __init__(
        self, config: FilterConfig | None = None, reputation: Reputation | None = None
    ) -> None:
        self.config = config if config is not None else FilterConfig()
        if reputation is not None and not isinstance(reputation, Reputation):
            raise ConsensusError(
                "reputation must be this implementation's Reputation, got "
                + type(reputation).__name__
            )
        self.reputation = reputation
        self._readings: dict[int, _Reading] = {}
        self._dropped = dict.fromkeys(DROP_REASONS, 0)
        self._updates = 0
        self._accepted = 0
        self._evicted = 0
        self._estimates = 0
        self._judged = 0

    # -- updates -----------------------------------------------------------

    def _values(self, value: object) -> tuple[str | None, tuple[float, ...], int, float]:
        """(drop reason or None, float components, category label, interval error)."""
        cfg = self.config
        kind = cfg.kind_code
        if kind == Kind.CATEGORY:
            if type(value) is not int:
                return "bad-shape", (), 0, 0.0
            if not -(1 << 63) <= value < (1 << 63) or not cfg.lower <= value <= cfg.upper:
                return "out-of-range", (), 0, 0.0
            return None, (), value, 0.0
        error = 0.0
        if kind == Kind.SCALAR:
            items: Sequence[object] = (value,)
        elif kind == Kind.INTERVAL:
            if not isinstance(value, (tuple, list)) or len(value) != 2:
                return "bad-shape", (), 0, 0.0
            items = (value[0],)
            err = value[1]
            if not isinstance(err, (int, float)) or isinstance(err, bool):
                return "bad-shape", (), 0, 0.0
            try:
                error = float(err)
            except OverflowError:  # an int beyond any float
                return "out-of-range", (), 0, 0.0
        else:
            if not isinstance(value, (tuple, list)) or len(value) != cfg.dims:
                return "bad-shape", (), 0, 0.0
            items = value
        comps = []
        for item in items:
            if not isinstance(item, (int, float)) or isinstance(item, bool):
                return "bad-shape", (), 0, 0.0
            try:
                comps.append(float(item))
            except OverflowError:  # an int beyond any float
                return "out-of-range", (), 0, 0.0
        if not all(math.isfinite(c) for c in comps) or not math.isfinite(error):
            return "non-finite", (), 0, 0.0
        for c in comps:
            if not cfg.lower <= c <= cfg.upper or abs(c) > MAX_MAGNITUDE:
                return "out-of-range", (), 0, 0.0
        # x + 0.0 turns -0.0 into 0.0: equal readings then have equal bits.
        return None, tuple(c + 0.0 for c in comps), 0, error

    def update(
        self,
        source: int,
        value: Value | Sequence[float],
        confidence: float,
        now: float,
        sigma: float | None = None,
        half_life: float | None = None,
        ttl: float | None = None,
    ) -> str:
        """Take ``source``'s reading, taken at ``now`` on this node's monotonic clock.

        ``value`` is a float (scalar), a sequence of ``dims`` floats (vector),
        an int label (category) or a ``(centre, error)`` pair (interval).
        Returns ``"accepted"`` or the drop reason (one of DROP_REASONS); bad
        readings are counted, never raised. A reading replaces the source's
        current one only if it is newer.

        :raises ConsensusError: ``source`` or ``now`` is not usable (a caller's bug).
        """
        cfg = self.config
        source = _check_source(source)
        now = _check_now(now)
        self._updates += 1
        reason, comps, label, error = self._values(value)
        if reason is None:
            if (
                not isinstance(confidence, (int, float))
                or isinstance(confidence, bool)
                or not MIN_CONFIDENCE <= confidence <= 1
            ):
                reason = "bad-confidence"
        eff_sigma = 0.0
        if reason is None:
            if cfg.kind_code == Kind.INTERVAL:
                raw_sigma = error / cfg.agree_sigmas
                if sigma is not None or not 0 <= error <= MAX_SIGMA or raw_sigma > MAX_SIGMA:
                    reason = "bad-sigma"
            elif sigma is None:
                raw_sigma = cfg.default_sigma
            elif (
                not isinstance(sigma, (int, float))
                or isinstance(sigma, bool)
                or not 0 < sigma <= MAX_SIGMA
            ):
                reason = "bad-sigma"
            else:
                raw_sigma = float(sigma)
            if reason is None:
                eff_sigma = raw_sigma if raw_sigma >= cfg.min_sigma else cfg.min_sigma
                if not eff_sigma >= MIN_SIGMA:
                    reason = "bad-sigma"
        if reason is None:
            for lifetime in (half_life, ttl):
                if lifetime is not None and (
                    not isinstance(lifetime, (int, float))
                    or isinstance(lifetime, bool)
                    or not 0 < lifetime <= MAX_TIME
                ):
                    reason = "bad-lifetime"
        if reason is not None:
            self._dropped[reason] += 1
            return reason

        if half_life is not None:
            h = float(half_life)
        elif ttl is not None:
            h = math.inf
        else:
            h = cfg.default_half_life
        expires = (
            now + float(ttl)
            if ttl is not None
            else (now + h * cfg.expire_half_lives if h != math.inf else math.inf)
        )
        candidate = _Reading()
        candidate.comps = comps
        candidate.label = label
        candidate.confidence = float(confidence)
        candidate.sigma = eff_sigma
        candidate.half_life = h
        candidate.expires = expires
        candidate.time = now

        reading = self._readings.get(source)
        if reading is None:
            if len(self._readings) >= cfg.max_sources:
                # Keep the max_sources newest readings, whatever the order they
                # came in: the oldest of the held ones and this one goes.
                oldest = min(self._readings, key=lambda s: (self._readings[s].time, s))
                if (now, source) < (self._readings[oldest].time, oldest):
                    self._dropped["older"] += 1
                    return "older"
                del self._readings[oldest]
                self._evicted += 1
            reading = _Reading()
            reading.reach_slot = math.floor(now / cfg.reach_interval)
            self._readings[source] = reading
        self._mark_reach(reading, now)
        if reading.time != -math.inf and candidate.key() <= reading.key():
            self._dropped["older"] += 1
            return "older"
        reading.comps = candidate.comps
        reading.label = candidate.label
        reading.confidence = candidate.confidence
        reading.sigma = candidate.sigma
        reading.half_life = candidate.half_life
        reading.expires = candidate.expires
        reading.time = candidate.time
        reading.judged = False
        self._accepted += 1
        return "accepted"

    def _mark_reach(self, reading: _Reading, now: float) -> None:
        slot = math.floor(now / self.config.reach_interval)
        if slot > reading.reach_slot:
            shift = slot - reading.reach_slot
            reading.reach = ((reading.reach << shift) | 1) & 0xFF if shift < 8 else 1
            reading.reach_slot = slot
        else:
            back = reading.reach_slot - slot
            if back < 8:
                reading.reach |= 1 << back

    def forget(self, source: int) -> None:
        """Drop ``source``'s reading from this topic."""
        self._readings.pop(_check_source(source), None)

    def statistics(self) -> FilterStatistics:
        return FilterStatistics(
            self._updates,
            self._accepted,
            dict(self._dropped),
            self._evicted,
            self._estimates,
            self._judged,
        )

    # -- estimate ----------------------------------------------------------

    def estimate(self, now: float) -> Estimate:
        """Fuse the fresh readings as of ``now`` (see the module docstring)."""
        cfg = self.config
        now = _check_now(now)
        self._estimates += 1
        kind = cfg.kind_code
        rep = self.reputation
        sources = sorted(self._readings)
        fresh: list[_Fresh] = []
        expired: list[int] = []
        for source in sources:
            reading = self._readings[source]
            age = now - reading.time if now > reading.time else 0.0
            evaporation = math.exp2(-age / reading.half_life)
            if now >= reading.expires or evaporation < MIN_EVAPORATION:
                expired.append(source)
                continue
            reputation = rep.value(source) if rep is not None else 1.0
            link = rep.link_quality(source) if rep is not None else 1.0
            fresh.append(_Fresh(source, reading, evaporation, reputation, link))

        n_fresh = len(fresh)
        faults = (n_fresh - 1) // 3 if cfg.fault_model == "byzantine" else (n_fresh - 1) // 2
        candidates = [s for s in fresh if rep is None or s.reputation >= rep.config.distrust_below]
        for s in fresh:
            if rep is not None and s.reputation < rep.config.distrust_below:
                s.code = SourceReason.DISTRUSTED
        if rep is not None:
            for s in fresh:
                s.probation = rep.in_probation(s.source)

        value: Value | None = None
        sigma = math.nan
        state, why = "ok", ""
        used: list[_Fresh] = []
        if not self._readings:
            state, why = "no-consensus", "no-sources"
        elif n_fresh == 0:
            state, why = "stale", "stale"
        elif len(candidates) < cfg.min_sources:
            state, why = "no-consensus", "too-few-sources"
        elif kind == Kind.CATEGORY:
            why, value, used = self._category(candidates, faults)
        elif kind == Kind.VECTOR:
            why, value, sigma, used = self._vector(candidates, fresh, faults)
        else:
            why, value, sigma, used = self._scalar(candidates, fresh, faults)
        if why:
            state = "no-consensus" if why != "stale" else "stale"
            value, sigma, used = None, math.nan, []
            for s in candidates:
                s.code = SourceReason.NO_CONSENSUS
                s.weight = 0.0

        interval = None
        confidence = 0.0
        newest = math.nan
        if used:
            best = used[0]
            for s in used:
                if s.weight > best.weight:
                    best = s
            best.code = SourceReason.BEST
            if kind in (Kind.SCALAR, Kind.INTERVAL):
                assert isinstance(value, float)
                interval = (value - Z95 * sigma, value + Z95 * sigma)
            used_weight = 0.0
            for s in used:
                used_weight += s.trust * s.evaporation
            all_weight = 0.0
            for s in candidates:
                all_weight += s.trust * s.evaporation
            confidence = (used_weight / all_weight) * (used_weight / len(used))
            newest = min(
                now - self._readings[s.source].time if now > self._readings[s.source].time else 0.0
                for s in used
            )
            # Judged by the others: at least two of them, and min_sources - 1.
            if rep is not None and len(fresh) - 1 >= max(2, cfg.min_sources - 1):
                self._judge(fresh, rep)

        records = []
        by_source = {s.source: s for s in fresh}
        for source in sources:
            reading = self._readings[source]
            age = now - reading.time if now > reading.time else 0.0
            reach = self._reach_now(reading, now)
            item = by_source.get(source)
            shown = float(reading.label) if kind == Kind.CATEGORY else reading.comps[0]
            if item is None:
                records.append(
                    _RECORD.pack(
                        source,
                        SourceReason.EXPIRED,
                        reach,
                        age,
                        shown,
                        math.nan,
                        reading.sigma,
                        0.0,
                        reading.confidence,
                        rep.value(source) if rep is not None else 1.0,
                        0.0,
                        rep.link_quality(source) if rep is not None else 1.0,
                    )
                )
                continue
            offset = math.nan
            if value is not None:
                if kind == Kind.CATEGORY:
                    offset = 0.0 if item.label == value else 1.0
                elif kind == Kind.VECTOR:
                    assert isinstance(value, tuple)
                    offset = _distance(item.comps, value)
                    shown = offset
                else:
                    assert isinstance(value, float)
                    offset = item.x - value
            if kind == Kind.VECTOR and value is None:
                shown = math.nan
            records.append(
                _RECORD.pack(
                    source,
                    item.code,
                    reach,
                    age,
                    shown,
                    offset,
                    math.sqrt(item.var),
                    item.weight,
                    reading.confidence,
                    item.reputation,
                    item.evaporation,
                    item.link,
                )
            )
        used_count = len(used)
        rejected = n_fresh - used_count if used_count else 0
        return Estimate(
            state,
            why,
            value,
            sigma,
            interval,
            confidence,
            len(sources),
            used_count,
            rejected,
            newest,
            b"".join(records),
        )

    def _reach_now(self, reading: _Reading, now: float) -> int:
        slot = math.floor(now / self.config.reach_interval)
        shift = slot - reading.reach_slot
        if shift <= 0:
            return reading.reach
        return (reading.reach << shift) & 0xFF if shift < 8 else 0

    # -- scalar and interval ---------------------------------------------

    def _scalar(
        self, candidates: list[_Fresh], fresh: list[_Fresh], faults: int
    ) -> tuple[str, float, float, list[_Fresh]]:
        cfg = self.config
        capped = _limit(candidates, [s.trust * s.evaporation for s in candidates], cfg)

        # Select: the point covered by the most weight, over intervals x +- k*sqrt(V).
        events = []
        for i, s in enumerate(candidates):
            half = cfg.agree_sigmas * math.sqrt(s.var)
            events.append((s.x - half, 0, s.source, i))
            events.append((s.x + half, 1, s.source, i))
        events.sort()
        running = 0.0
        best = -1.0
        point = 0.0
        for coord, closing, _source, i in events:
            if closing:
                running -= capped[i]
            else:
                running += capped[i]
                if running > best:
                    best = running
                    point = coord
        total = 0.0
        for w in capped:
            total += w
        clique = []
        clique_weight = 0.0
        for i, s in enumerate(candidates):
            half = cfg.agree_sigmas * math.sqrt(s.var)
            if s.x - half <= point <= s.x + half:
                clique.append(s)
                clique_weight += capped[i]
            else:
                s.code = SourceReason.FALSETICKER
        if not clique_weight > 0.5 * total:
            return "no-majority", math.nan, math.nan, []
        if len(clique) < cfg.min_sources:
            return "too-few-sources", math.nan, math.nan, []

        # Weighted median with capped weights, then MAD rejection.
        ordered = sorted(clique, key=lambda s: (s.x, s.source))
        weights = _limit(ordered, [s.trust * s.evaporation for s in ordered], cfg)
        median = _weighted_median([s.x for s in ordered], weights)
        scale = _MAD_TO_SIGMA * _median([abs(s.x - median) for s in clique])
        survivors = []
        for s in clique:
            bound = scale if scale > math.sqrt(s.var) else math.sqrt(s.var)
            if abs(s.x - median) > cfg.reject_sigmas * bound:
                s.code = SourceReason.OUTLIER
            else:
                survivors.append(s)
        if len(survivors) < cfg.min_sources:
            return "too-few-sources", math.nan, math.nan, []

        value, sigma, survivors = _combine(survivors, cfg, faults)
        if len(survivors) < cfg.min_sources:
            return "too-few-sources", math.nan, math.nan, []
        (estimate,) = value
        low, high = _trimmed_range(sorted((s.x, s.source) for s in fresh), faults)
        if estimate < low:
            estimate = low
        elif estimate > high:
            estimate = high
        return "", estimate, sigma, survivors

    # -- vector ------------------------------------------------------------

    def _vector(
        self, candidates: list[_Fresh], fresh: list[_Fresh], faults: int
    ) -> tuple[str, tuple[float, ...], float, list[_Fresh]]:
        cfg = self.config
        capped = _limit(candidates, [s.trust * s.evaporation for s in candidates], cfg)
        centre = _coordinate_median(candidates, capped, cfg.dims)
        distances = [_distance(s.comps, centre) for s in candidates]
        spread = _median(distances)
        survivors = []
        kept_weight = 0.0
        total = 0.0
        for i, s in enumerate(candidates):
            total += capped[i]
            own = math.sqrt(s.var * cfg.dims)
            bound = spread if spread > own else own
            if distances[i] > cfg.reject_sigmas * bound:
                s.code = SourceReason.FALSETICKER
            else:
                survivors.append(s)
                kept_weight += capped[i]
        if not kept_weight > 0.5 * total:
            return "no-majority", (), math.nan, []
        if len(survivors) < cfg.min_sources:
            return "too-few-sources", (), math.nan, []
        value, sigma, survivors = _combine(survivors, cfg, faults)
        if len(survivors) < cfg.min_sources:
            return "too-few-sources", (), math.nan, []
        clamped = []
        for d in range(cfg.dims):
            ordered = sorted((s.comps[d], s.source) for s in fresh)
            low, high = _trimmed_range(ordered, faults)
            v = value[d]
            if v < low:
                v = low
            elif v > high:
                v = high
            clamped.append(v)
        return "", tuple(clamped), sigma, survivors

    # -- category ----------------------------------------------------------

    def _category(self, candidates: list[_Fresh], faults: int) -> tuple[str, int, list[_Fresh]]:
        cfg = self.config
        capped = _limit(candidates, [s.trust * s.evaporation for s in candidates], cfg)
        tally: dict[int, float] = {}
        for i, s in enumerate(candidates):
            tally[s.label] = tally.get(s.label, 0.0) + capped[i]
        labels = sorted(tally)
        top = labels[0]
        for label in labels:
            if tally[label] > tally[top]:
                top = label
        second = 0.0
        for label in labels:
            if label != top and tally[label] > second:
                second = tally[label]
        heaviest = sorted(capped, reverse=True)
        faulty_weight = 0.0
        for w in heaviest[:faults]:
            faulty_weight += w
        if not tally[top] - second > faulty_weight:
            return "no-margin", 0, []
        voters = 0
        for s in candidates:
            voters += s.label == top
        if voters < cfg.min_sources:
            return "too-few-sources", 0, []
        used = []
        for i, s in enumerate(candidates):
            if s.label == top:
                s.weight = capped[i] / tally[top]
                s.code = SourceReason.USED
                used.append(s)
            else:
                s.code = SourceReason.FALSETICKER
        return "", top, used

    # -- reputation --------------------------------------------------------

    def _judge(self, fresh: list[_Fresh], rep: Reputation) -> None:
        """Judge each unjudged reading against the others' leave-one-out consensus."""
        cfg = self.config
        kind = cfg.kind_code
        capped = _limit(fresh, [s.trust * s.evaporation for s in fresh], cfg)
        verdicts: list[tuple[int, bool]] = []
        if kind == Kind.CATEGORY:
            tally: dict[int, float] = {}
            for i, s in enumerate(fresh):
                tally[s.label] = tally.get(s.label, 0.0) + capped[i]
            labels = sorted(tally)
            for i, s in enumerate(fresh):
                if self._readings[s.source].judged:
                    continue
                top = labels[0]
                top_weight = -1.0
                for label in labels:
                    w = tally[label] - capped[i] if label == s.label else tally[label]
                    if w > top_weight:
                        top, top_weight = label, w
                verdicts.append((s.source, top == s.label))
        elif kind == Kind.VECTOR:
            dims = cfg.dims
            columns = []
            for d in range(dims):
                order = sorted(
                    range(len(fresh)), key=lambda i: (fresh[i].comps[d], fresh[i].source)
                )
                columns.append(
                    ([fresh[i].comps[d] for i in order], [capped[i] for i in order], order)
                )
            centre = tuple(_weighted_median(xs, ws) for xs, ws, _ in columns)
            spread = _median([_distance(s.comps, centre) for s in fresh])
            for i, s in enumerate(fresh):
                if self._readings[s.source].judged:
                    continue
                others = tuple(
                    _weighted_median(xs, ws, order.index(i)) for xs, ws, order in columns
                )
                own = math.sqrt(s.var * dims)
                bound = spread if spread > own else own
                verdicts.append((s.source, _distance(s.comps, others) <= cfg.agree_sigmas * bound))
        else:
            order = sorted(range(len(fresh)), key=lambda i: (fresh[i].x, fresh[i].source))
            xs = [fresh[i].x for i in order]
            ws = [capped[i] for i in order]
            median = _weighted_median(xs, ws)
            scale = _MAD_TO_SIGMA * _median([abs(s.x - median) for s in fresh])
            for rank, i in enumerate(order):
                s = fresh[i]
                if self._readings[s.source].judged:
                    continue
                loo_median = _weighted_median(xs, ws, rank)
                own = math.sqrt(s.var)
                bound = scale if scale > own else own
                verdicts.append((s.source, abs(s.x - loo_median) <= cfg.agree_sigmas * bound))
            verdicts.sort()
        for source, agreed in verdicts:
            rep.record(source, agreed)
            self._readings[source].judged = True
            self._judged += 1


def _distance(a: Sequence[float], b: Sequence[float]) -> float:
    total = 0.0
    for x, y in zip(a, b, strict=True):
        d = x - y
        total += d * d
    return math.sqrt(total)


def _coordinate_median(sources: list[_Fresh], weights: list[float], dims: int) -> tuple[float, ...]:
    centre = []
    for d in range(dims):
        order = sorted(range(len(sources)), key=lambda i: (sources[i].comps[d], sources[i].source))
        centre.append(
            _weighted_median([sources[i].comps[d] for i in order], [weights[i] for i in order])
        )
    return tuple(centre)


def _trimmed_range(ordered: list[tuple[float, int]], faults: int) -> tuple[float, float]:
    """The (faults+1)-th smallest and largest of the sorted fresh values."""
    return ordered[faults][0], ordered[len(ordered) - 1 - faults][0]


def _mean(items: Sequence[_Fresh], cfg: FilterConfig) -> tuple[list[float], list[float], float]:
    """Inverse-variance weighted mean per coordinate: (shares, mean, variance sum a_i^2 V_i)."""
    inverse = _limit(items, [s.trust / s.var for s in items], cfg)
    total = 0.0
    for u in inverse:
        total += u
    dims = len(items[0].comps)
    sums = [0.0] * dims
    variance = 0.0
    shares = []
    for i, s in enumerate(items):
        a = inverse[i] / total
        shares.append(a)
        for d in range(dims):
            sums[d] += a * s.comps[d]
        variance += a * a * s.var
    return shares, sums, variance


def _dispersed(items: Sequence[_Fresh], sums: list[float], variance: float) -> float:
    """``variance`` times the reduced chi-square of ``items`` about ``sums``, if over 1."""
    if len(items) < 2:
        return variance
    dims = len(sums)
    chi = 0.0
    for s in items:
        for d in range(dims):
            r = s.comps[d] - sums[d]
            chi += r * r / s.var
    chi = chi / (dims * (len(items) - 1))
    return variance * chi if chi > 1.0 else variance


def _combine(
    survivors: list[_Fresh], cfg: FilterConfig, faults: int
) -> tuple[tuple[float, ...], float, list[_Fresh]]:
    """Inverse-variance weighted mean (per coordinate), its sigma, and the sources it used.

    The variance ``sum a_i^2 V_i`` is inflated by the reduced chi-square when
    the survivors disagree more than their sigmas say. Then a Hausman-style
    check against colluding liars that claim a precision they do not have:
    when the ``faults`` heaviest survivors dominate the mean (more than twice
    their share by count, or than half the rest on top of it), the mean is
    recomputed without them. When
    nobody lies, the squared move averages the difference of the two
    variances (that of an efficient estimator and of a less efficient one).
    A move beyond HAUSMAN_INFLATE times that adds the squared move to the
    variance; beyond HAUSMAN_SWITCH times, the mean without them is taken.
    """
    shares, sums, variance = _mean(survivors, cfg)
    for i, s in enumerate(survivors):
        s.weight = shares[i]
        s.code = SourceReason.USED
    inflated = _dispersed(survivors, sums, variance)
    if not 0 < faults < len(survivors):
        return tuple(sums), math.sqrt(inflated), survivors
    # Heaviest first; equal shares in source order.
    ranked = sorted(range(len(survivors)), key=lambda i: (-shares[i], survivors[i].source))
    heaviest = 0.0
    for i in ranked[:faults]:
        heaviest += shares[i]
    by_count = faults / len(survivors)
    dominant = 2.0 * by_count
    if dominant > 0.5 * (1.0 + by_count):
        dominant = 0.5 * (1.0 + by_count)
    if not heaviest > dominant:
        # They do not dominate (under twice their share by count, or half of
        # the rest on top of it): there is no precision claim to check.
        return tuple(sums), math.sqrt(inflated), survivors
    rest = [survivors[i] for i in sorted(ranked[faults:])]
    rest_shares, rest_sums, rest_variance = _mean(rest, cfg)
    moved = 0.0
    for d in range(len(sums)):
        r = sums[d] - rest_sums[d]
        moved += r * r
    moved = moved / len(sums)
    expected = rest_variance - variance
    if not expected > 0.0:
        expected = rest_variance
    if moved > HAUSMAN_SWITCH * expected:
        for i in ranked[:faults]:
            survivors[i].weight = 0.0
            survivors[i].code = SourceReason.OUTLIER
        for i, s in enumerate(rest):
            s.weight = rest_shares[i]
        return tuple(rest_sums), math.sqrt(_dispersed(rest, rest_sums, rest_variance) + moved), rest
    if moved > HAUSMAN_INFLATE * expected:
        inflated = inflated + moved
    return tuple(sums), math.sqrt(inflated), survivors
