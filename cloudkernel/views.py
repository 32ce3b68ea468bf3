"""What the daemon shows of its state: plain data for control replies, the CLI and metrics.

Every function here turns one object of the node (an estimate, a peer, a
signal) into a dict of plain msgpack-able values: str, int, float, bool,
None, bytes, lists and dicts.  Tuples become lists.  Times are given as ages
in seconds (the daemon's monotonic clock means nothing to a client).  Pure:
the caller passes ``now``.
"""

from __future__ import annotations

import math
from typing import Any

from .consensus import Estimate, FilterConfig, ReputationConfig
from .core.membership import PeerView
from .core.mesh import TopicInfo
from .core.signals import Signal
from .sourcestats import SourceStatsRow

__all__ = [
    "estimate_view",
    "peer_view",
    "policy_view",
    "raw_view",
    "signal_view",
    "sourcestats_view",
    "topic_view",
]


def _plain(value: object) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def estimate_view(
    topic: str, kind: str, estimate: Estimate, *, sources: bool = True
) -> dict[str, Any]:
    """A topic's estimate, with its per-source breakdown when ``sources``."""
    view: dict[str, Any] = {
        "topic": topic,
        "kind": kind,
        "state": estimate.state,
        "reason": estimate.reason,
        "value": _plain(estimate.value),
        "sigma": _finite_or_none(estimate.sigma),
        "interval": _plain(estimate.interval),
        "confidence": estimate.confidence,
        "sources_total": estimate.sources_total,
        "sources_used": estimate.sources_used,
        "sources_rejected": estimate.sources_rejected,
        "age": _finite_or_none(estimate.age),
    }
    if sources:
        view["sources"] = [
            {
                "source": r.source,
                "symbol": r.symbol,
                "reason": r.reason,
                "reach": r.reach,
                "age": r.age,
                "value": _finite_or_none(r.value),
                "offset": _finite_or_none(r.offset),
                "sigma": _finite_or_none(r.sigma),
                "weight": r.weight,
                "confidence": r.confidence,
                "reputation": r.reputation,
                "evaporation": r.evaporation,
                "link_quality": r.link_quality,
            }
            for r in estimate.sources
        ]
    return view


def policy_view(filter_config: FilterConfig, reputation: ReputationConfig) -> dict[str, Any]:
    """The settings that decide whether a topic's source is used (``get``'s ``policy``)."""
    return {
        "min_sources": filter_config.min_sources,
        "fault_model": filter_config.fault_model,
        "agree_sigmas": filter_config.agree_sigmas,
        "reject_sigmas": filter_config.reject_sigmas,
        "max_weight_share": filter_config.max_weight_share,
        "flag_below": reputation.flag_below,
        "distrust_below": reputation.distrust_below,
    }


def signal_view(
    signal: Signal, *, received_at: float, now: float, recovered: bool
) -> dict[str, Any]:
    """One raw signal as it arrived."""
    return {
        "topic": signal.topic,
        "value": _plain(signal.value),
        "kind": signal.kind,
        "confidence": signal.confidence,
        "half_life": signal.half_life,
        "ttl": signal.ttl,
        "qos": signal.qos.name.lower(),
        "source": signal.source,
        "seq": signal.seq,
        "age": signal.age + max(now - received_at, 0.0),
        "recovered": recovered,
    }


def raw_view(topic: str, latest: list[Signal]) -> dict[str, Any]:
    """A byte-valued topic: the latest value of each source (no consensus)."""
    return {
        "topic": topic,
        "kind": "bytes",
        "state": "raw",
        "latest": [{"source": s.source, "value": s.value, "seq": s.seq} for s in latest],
    }


def topic_view(info: TopicInfo, now: float) -> dict[str, Any]:
    """One row of the topic list."""
    estimate = info.estimate
    return {
        "topic": info.topic,
        "kind": info.kind,
        "sources": info.sources,
        "updates": info.updates,
        "last_update_age": max(now - info.last_update, 0.0),
        "state": estimate.state if estimate is not None else "raw",
        "value": _plain(estimate.value) if estimate is not None else None,
    }


def peer_view(peer: PeerView, *, loss: float | None, reputation: float) -> dict[str, Any]:
    """One peer: liveness, the loss we measure on its frames, its reputation here."""
    return {
        "node": peer.node,
        "epoch": peer.epoch,
        "incarnation": peer.incarnation,
        "state": str(peer.state),
        "phi": _finite_or_none(peer.phi),
        "last_heard": _finite_or_none(peer.last_heard),
        "since": peer.since,
        "heartbeats": peer.heartbeats,
        "reach": peer.reach,
        "loss": loss,
        "reputation": reputation,
    }


def sourcestats_view(row: SourceStatsRow) -> dict[str, Any]:
    """One source of one topic over the samples held (``sourcestats``)."""
    return {
        "topic": row.topic,
        "kind": row.kind,
        "source": row.source,
        "samples": row.samples,
        "span": row.span,
        "last": row.last,
        "offset": _finite_or_none(row.offset),
        "stddev": _finite_or_none(row.stddev),
        "sigma": _finite_or_none(row.sigma),
        "runs": row.runs,
        "used": row.used,
        "reputation": _finite_or_none(row.reputation),
    }
