"""Smoke test of bench/bench_mesh.py: a --quick run completes and prints its tables.

It keeps the benchmark from rotting as the daemon, the client and the
control protocol change.  It asserts no timing at all (the machine is shared
and noisy), only that the run finishes, prints every table and a verdict for
every target, and that what it counted adds up: no signal delivered twice or
with a wrong value, never more delivered than sent.  Skipped where no private
network namespace can be made (util-linux missing, or user namespaces
disabled).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import benchload
import pytest
from swarmproc import sandbox_problem

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_mesh.py"


_PROBLEM = sandbox_problem()


def load_bench() -> ModuleType:
    return benchload.load_bench("bench_mesh.py", "bench_mesh_smoke")


@pytest.mark.slow
@pytest.mark.skipif(_PROBLEM is not None, reason=f"no private network namespace: {_PROBLEM}")
def test_bench_mesh_quick_run_completes_and_prints_its_tables(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = load_bench()
    out = tmp_path / "mesh.json"
    assert bench.main(["--quick", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    for words in (
        "Control-socket round trip",
        "(a) One-way latency",
        "(b) Flat out",
        "(d) Daemons: RSS",
        "floor: UDP socket pair",
        "Targets",
    ):
        assert words in printed

    doc: dict[str, Any] = json.loads(out.read_text())
    assert [r["op"] for r in doc["control_rtt_us"]] == ["status", "topics (no match)"]
    assert all(r["n"] > 0 and r["p50"] > 0 for r in doc["control_rtt_us"])
    latency = doc["latency"]
    assert [r["case"] for r in latency] == ["clean", "5% loss", "floor: UDP socket pair"]
    for r in latency:
        assert 0 < r["delivered"] <= r["sent"]
        assert r["duplicates"] == 0 and r["bad_values"] == 0
        assert r["latency"]["p50"] > 0
    assert [r["case"] for r in doc["flat"]] == [
        "clean",
        "5% loss",
        "clean, batches of 512",
        "floor: UDP socket pair",
    ]
    for r in doc["flat"]:
        assert r["published"] > 0 and 0 < r["delivered"] <= r["published"]
    assert len(doc["daemons"]) == 4
    for d in doc["daemons"]:
        assert d["idle"]["rss_mb"] > 0 and d["loaded"]["rss_mb"] > 0
    assert len(doc["targets"]) == 7
    assert {t["status"] for t in doc["targets"]} <= {"PASS", "MISS"}
    for t in doc["targets"]:
        assert f"{t['status']:<4}  {t['target']}" in printed


def test_bench_mesh_rejects_bad_options() -> None:
    bench = load_bench()
    for argv in (["--rate", "0"], ["--seconds", "0"], ["--rate", "x"]):
        with pytest.raises(SystemExit):
            bench.main(argv)
