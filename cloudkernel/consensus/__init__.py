"""Weighted consensus: many sources' noisy, lying and evaporating readings of a
topic fused into one trustworthy value, or an honest "no consensus".

`ConsensusFilter` (one per topic) and `Reputation` (one per node, shared by
its filters) come from the compiled extension over csrc/ck_consensus.c, or
from the pure-Python reference when ``CLOUDKERNEL_PUREPYTHON`` is set or the
extension is not built. `IMPLEMENTATION` says which. docs/CONSENSUS.md
describes the algorithm and the bounds it keeps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._impl import pure_python_forced
from ._types import (
    DROP_REASONS,
    KINDS,
    MAX_DIMS,
    NOT_OK_REASONS,
    SOURCE_REASONS,
    SYMBOLS,
    Z95,
    ConsensusError,
    Estimate,
    FilterConfig,
    FilterStatistics,
    ReputationConfig,
    ReputationStatistics,
    SourceReport,
)

IMPLEMENTATION: str

if TYPE_CHECKING:
    # Both implementations have one API; the reference spells it for mypy
    # (the compiled one's is in _consensus.pyi).
    from ._consensus_ref import ConsensusFilter, Reputation
elif pure_python_forced():
    from ._consensus_ref import ConsensusFilter, Reputation

    IMPLEMENTATION = "python"
else:
    try:
        from ._consensus import ConsensusFilter, Reputation

        IMPLEMENTATION = "compiled"
    except ImportError:  # pragma: no cover - only without a build
        from ._consensus_ref import ConsensusFilter, Reputation

        IMPLEMENTATION = "python"

__all__ = [
    "DROP_REASONS",
    "IMPLEMENTATION",
    "KINDS",
    "MAX_DIMS",
    "NOT_OK_REASONS",
    "SOURCE_REASONS",
    "SYMBOLS",
    "Z95",
    "ConsensusError",
    "ConsensusFilter",
    "Estimate",
    "FilterConfig",
    "FilterStatistics",
    "Reputation",
    "ReputationConfig",
    "ReputationStatistics",
    "SourceReport",
]
