"""Smoke test of bench/bench_realtime.py: a short run completes, both modes really ran.

No timing is asserted (the machine is shared): only that the run finishes,
that the daemon under test ran at normal scheduling in one mode and at
SCHED_FIFO in the other, that every signal counted arrived at most once, and
that a verdict is printed for every target.  Needs root: the fifo mode runs
the daemons at SCHED_FIFO in a network namespace of their own.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import benchload
import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_realtime.py"


def load_bench() -> ModuleType:
    return benchload.load_bench("bench_realtime.py", "bench_realtime_smoke")


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for SCHED_FIFO in a network namespace")
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
def test_bench_realtime_short_run_completes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = load_bench()
    out = tmp_path / "rt.json"
    assert bench.main(["--seconds", "1", "--rate", "200", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "event-loop lag" in printed and "signal latency" in printed
    doc: dict[str, Any] = json.loads(out.read_text())
    modes = {m["mode"]: m for m in doc["modes"]}
    assert set(modes) == {"normal", "fifo"}
    assert "SCHED_OTHER" in modes["normal"]["realtime"]["B"]
    assert "SCHED_FIFO 50" in modes["fifo"]["realtime"]["B"]
    for mode in modes.values():
        assert 0 < mode["delivered"] <= mode["sent"]
        for lag in mode["lag_ms"].values():
            assert lag["samples"] > 0 and 0 <= lag["p50"] <= lag["p99"] <= lag["max"]
    assert len(doc["targets"]) == 3
    for target in doc["targets"]:
        assert f"{'PASS' if target['ok'] else 'MISS'}  {target['target']}" in printed
