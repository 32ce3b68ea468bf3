"""Why a topic has the value it has, in words: ``cloudkernel explain``.

:func:`explain_view` turns the plain data of a ``get`` reply (an estimate
with its per-source breakdown, :func:`cloudkernel.views.estimate_view`) into
sentences: the estimate's state and why, and for every source whether it is
used, why not, and its weight's factors with their product.  Pure: plain data
in, plain data out; it trusts nothing in the view to be present or well typed
(a missing number prints as ``-``).

The words for each reason code follow docs/CONSENSUS.md.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "ESTIMATE_REASONS",
    "SOURCE_REASON_WORDS",
    "SYMBOL_WORDS",
    "explain_view",
    "no_consensus",
]

#: the symbol of each source state, in words (the ``-v`` legends use them too)
SYMBOL_WORDS: dict[str, str] = {
    "*": "best: used, with the largest share of the estimate",
    "+": "used: combined into the estimate",
    "-": "outlier: agreed with the majority, but lay too far from its median",
    "x": "falseticker: outside the largest set of readings that agree",
    "~": "distrusted: its reputation is below the distrust threshold",
    "?": "not usable: its reading expired, or the topic has no consensus",
}

#: why a source is or is not used, by reason code (``SourceReport.reason``)
SOURCE_REASON_WORDS: dict[str, str] = {
    "best": "used, with the largest share of the estimate",
    "used": "used: combined into the estimate",
    "outlier": (
        "not used: an outlier; it agreed with the majority, but lay farther from "
        "their median than the spread of the readings allows"
    ),
    "falseticker": (
        "not used: a falseticker; its reading, widened by its sigma, does not cover "
        "the value that most of the weight agrees on"
    ),
    "distrusted": (
        "not used: distrusted; its reputation fell below the distrust threshold, "
        "because it disagreed with the consensus too often"
    ),
    "expired": "not used: its reading expired (past its ttl, or too many half-lives old)",
    "no-consensus": "not used: the topic has no consensus, so no source is used",
}

#: why an estimate is not ok, by reason code (``Estimate.reason``)
ESTIMATE_REASONS: dict[str, str] = {
    "no-sources": "no source has a reading",
    "stale": "every reading has expired",
    "too-few-sources": (
        "fewer sources are usable, agree or survive the outlier test than the "
        "topic's min_sources needs"
    ),
    "no-majority": "no set of agreeing readings holds a strict majority of the weight",
    "no-margin": (
        "the leading label does not win by more than the weight of the sources "
        "that may lie, so a lie could have decided it"
    ),
}

#: the states of a fused topic that have no value
_NO_CONSENSUS_STATES = frozenset({"no-consensus", "stale"})


def no_consensus(view: dict[str, Any]) -> bool:
    """True when a ``get`` view is a fused topic without a value (``no-consensus``,
    ``stale``); False when it is ``ok`` or a raw bytes topic."""
    return view.get("state") in _NO_CONSENSUS_STATES


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _fmt(value: Any, spec: str = ".6g") -> str:
    if isinstance(value, int) and not isinstance(value, bool) and not spec.endswith("f"):
        return f"{value:+d}" if spec.startswith("+") else str(value)
    number = _number(value)
    return "-" if number is None else format(number, spec)


def _value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return _fmt(value)


def _age(value: Any) -> str:
    number = _number(value)
    return "-" if number is None else f"{number:.3g} s"


def _policy(view: dict[str, Any]) -> dict[str, Any]:
    policy = view.get("policy")
    return policy if isinstance(policy, dict) else {}


def _faults(policy: dict[str, Any], fresh: Any) -> str:
    """``; ... up to f of its n fresh readings may lie`` when the policy says how."""
    model = policy.get("fault_model")
    if not isinstance(fresh, int) or isinstance(fresh, bool) or fresh < 1:
        return ""
    if model == "byzantine":
        faults = (fresh - 1) // 3
    elif model == "consistent":
        faults = (fresh - 1) // 2
    else:
        return ""
    return f"; with the {model} fault model, up to {faults} of its {fresh} fresh readings may lie"


def _estimate_sentence(view: dict[str, Any]) -> str:
    topic = view.get("topic")
    state = view.get("state")
    used, total = view.get("sources_used"), view.get("sources_total")
    rejected = view.get("sources_rejected")
    if state == "ok":
        text = f"{topic} is {_value(view.get('value'))}"
        if _number(view.get("sigma")) is not None:
            text += f" ±{_fmt(view.get('sigma'), '.3g')}"
        interval = view.get("interval")
        if isinstance(interval, list) and len(interval) == 2:
            text += f" (95% between {_fmt(interval[0])} and {_fmt(interval[1])})"
        fresh = used + rejected if isinstance(used, int) and isinstance(rejected, int) else None
        return (
            f"{text}: {_fmt(used)} of its {_fmt(total)} sources agree and are used, "
            f"{_fmt(rejected)} rejected; confidence {_fmt(view.get('confidence'), '.3f')}, "
            f"newest reading used {_age(view.get('age'))} old"
            f"{_faults(_policy(view), fresh)}."
        )
    if state == "raw":
        return (
            f"{topic} carries bytes: they are not fused, the latest value of each source is kept."
        )
    reason = str(view.get("reason") or "")
    why = ESTIMATE_REASONS.get(reason, reason or "no reason given")
    needed = _policy(view).get("min_sources")
    if reason == "too-few-sources" and isinstance(needed, int):
        why += f" ({needed})"
    return (
        f"{topic} has no value (state {state}"
        + (f", {reason}" if reason else "")
        + f"): {why}; {_fmt(total)} sources heard."
    )


def _source_explanation(row: dict[str, Any], policy: dict[str, Any]) -> dict[str, Any]:
    reason = str(row.get("reason") or "")
    factors = {
        name: _number(row.get(name))
        for name in ("confidence", "reputation", "evaporation", "link_quality")
    }
    known = [v for v in factors.values() if v is not None]
    trust = math.prod(known) if len(known) == len(factors) else None
    used = reason in ("best", "used")
    reading = f"its reading {_value(row.get('value'))}"
    if _number(row.get("sigma")) is not None:
        reading += f" ±{_fmt(row.get('sigma'), '.3g')}"
    reading += f", {_age(row.get('age'))} old"
    if _number(row.get("offset")) is not None:
        reading += f", {_fmt(row.get('offset'), '+.4g')} from the estimate"
    why = SOURCE_REASON_WORDS.get(reason, reason or "no reason given")
    if reason == "distrusted" and factors["reputation"] is not None:
        threshold = _number(policy.get("distrust_below"))
        why += f" (reputation {factors['reputation']:.3g}"
        why += f", below {threshold:.3g})" if threshold is not None else ")"
    elif reason == "falseticker" and _number(policy.get("agree_sigmas")) is not None:
        why += f" (widened to ±{_fmt(policy['agree_sigmas'], '.3g')} sigmas)"
    elif reason == "outlier" and _number(policy.get("reject_sigmas")) is not None:
        why += f" (more than {_fmt(policy['reject_sigmas'], '.3g')} robust sigmas)"
    sentence = f"source {_fmt(row.get('source'))} ({row.get('symbol', '?')}): {why}; {reading}."
    product = (
        f"weight {_fmt(trust, '.3g')} = confidence {_fmt(factors['confidence'], '.3g')}"
        f" x reputation {_fmt(factors['reputation'], '.3g')}"
        f" x evaporation {_fmt(factors['evaporation'], '.3g')}"
        f" x link {_fmt(factors['link_quality'], '.3g')}"
    )
    share = _fmt(row.get("weight"), ".3f") if used else "0"
    product += f"; its share of the estimate: {share}"
    return {
        "source": row.get("source"),
        "symbol": row.get("symbol"),
        "reason": reason,
        "used": used,
        "explanation": sentence,
        "weight_explanation": product + ".",
        "factors": factors,
        "trust": trust,
        "weight": _number(row.get("weight")),
    }


def explain_view(view: dict[str, Any]) -> dict[str, Any]:
    """A ``get`` view explained: the estimate's sentence and one entry per source.

    :returns: ``topic``, ``kind``, ``state``, ``reason``, ``explanation`` (a
        sentence), and ``sources``: per source ``source``, ``symbol``,
        ``reason``, ``used``, ``explanation`` (why it is or is not used, with
        its reading), ``weight_explanation`` (its factors, their product and
        its share), ``factors`` (``confidence``, ``reputation``,
        ``evaporation``, ``link_quality``), ``trust`` (their product) and
        ``weight`` (its share of the estimate).
    """
    rows = view.get("sources")
    return {
        "topic": view.get("topic"),
        "kind": view.get("kind"),
        "state": view.get("state"),
        "reason": view.get("reason"),
        "explanation": _estimate_sentence(view),
        "sources": [
            _source_explanation(row, _policy(view))
            for row in (rows if isinstance(rows, list) else [])
            if isinstance(row, dict)
        ],
    }
