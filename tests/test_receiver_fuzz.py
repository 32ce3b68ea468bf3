"""Receiver.feed under 100,000 mutated frames (CI); see tests/fuzz/fuzz_receiver.py.

Against the pure-Python FEC the run is shorter: the rebuilds the authentic
mutations provoke are ~100x slower there, and the receiver logic under test
is the same Python code either way.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cloudkernel import fec

sys.path.insert(0, str(Path(__file__).parent / "fuzz"))

import fuzz_receiver

RUNS = 20_000 if fec.IMPLEMENTATION == "python" else 100_000


def test_receiver_survives_mutated_frames() -> None:
    drops = fuzz_receiver.run(RUNS, seed=1)
    # The mutations reach every check, not just the first one.
    for reason in ("malformed", "bad-tag", "duplicate", "bad-payload", "stale-epoch"):
        assert drops[reason] > 0, (reason, drops)


def test_second_seed() -> None:
    drops = fuzz_receiver.run(RUNS // 10, seed=2)  # raises if an invariant breaks
    assert sum(drops.values()) > RUNS // 20
