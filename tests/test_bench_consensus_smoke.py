"""Smoke test of bench/bench_consensus.py: it runs and reports every row at the smallest settings.

It keeps the benchmark from rotting as the consensus filter changes.  It
asserts no timing at all (the machine is shared and noisy), only that the run
finishes, prints and writes a row for every (implementation, size) with
positive figures, judges the targets only when the compiled filter was
measured, stays away from the compiled module under CLOUDKERNEL_PUREPYTHON,
and fails (returns 1) when a compiled filter differs from the reference.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from types import ModuleType
from typing import Any

import benchload
import pytest

from cloudkernel import consensus
from cloudkernel._impl import pure_python_forced
from cloudkernel.consensus import _consensus_ref
from cloudkernel.consensus._types import Estimate

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_consensus.py"
COMPILED = "cloudkernel.consensus._consensus"


def load_bench() -> ModuleType:
    return benchload.load_bench("bench_consensus.py", "bench_consensus_smoke")


def run(bench: ModuleType, tmp_path: Path, sizes: str) -> tuple[int, dict[str, Any]]:
    out = tmp_path / "consensus.json"
    argv = ["--quick", "--sizes", sizes, "--repeats", "1", "--json", str(out)]
    rc: int = bench.main(argv)
    doc: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    return rc, doc


def check_rows(doc: dict[str, Any], printed: str, impls: set[str], sizes: set[int]) -> None:
    rows: list[dict[str, Any]] = doc["rows"]
    assert {(r["impl"], r["n"]) for r in rows} == {(i, n) for i in impls for n in sizes}
    assert len(rows) == len(impls) * len(sizes)
    lines = printed.splitlines()
    for r in rows:
        assert r["liars"] == (r["n"] - 1) // 3
        assert r["updates_per_s"] > 0 and r["update_ns"]["value"] > 0
        assert r["fresh_median_ns"]["value"] > 0
        assert r["fresh_p99_ns"]["value"] >= r["fresh_median_ns"]["value"]
        assert r["steady_median_ns"]["value"] > 0
        assert r["fresh_calls"] > 0 and r["steady_calls"] > 0
        assert abs(r["value"] - r["true_value"]) <= 0.5
        # the row's line in the printed table: label, then n
        assert any(line.split()[:2] == [r["label"], str(r["n"])] for line in lines if line)


def compiled_in_use() -> bool:
    return consensus.IMPLEMENTATION == "compiled" and not pure_python_forced()


def test_bench_consensus_runs_and_reports_every_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = load_bench()
    rc, doc = run(bench, tmp_path, "8,64")
    assert rc == 0
    printed = capsys.readouterr().out
    compiled = compiled_in_use()
    impls = {"reference", "numpy"} | ({"compiled"} if compiled else set())
    check_rows(doc, printed, impls, {8, 64})
    for words in ("cpu:", "python:", "updates/s", "fresh med us", "steady med us"):
        assert words in printed
    if compiled:
        assert "compiled == reference: yes" in printed
        assert doc["check"]["compiled_equals_reference"] is True
        assert len(doc["targets"]) == 4
        assert {t["status"] for t in doc["targets"]} <= {"PASS", "MISS"}
        assert {r["against"] for r in doc["ratios"]} == {"reference", "numpy"}
    else:
        assert "compiled: " in printed and "not available (" in printed
        assert doc["targets"] == [] and doc["ratios"] == []
        assert {r["label"] for r in doc["rows"]} == {"reference/python", "numpy"}


def test_bench_consensus_pure_python_leaves_the_compiled_module_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOUDKERNEL_PUREPYTHON", "1")
    already = COMPILED in sys.modules
    bench = load_bench()
    rc, doc = run(bench, tmp_path, "8")
    assert rc == 0
    printed = capsys.readouterr().out
    assert (COMPILED in sys.modules) == already  # not imported by the benchmark
    assert "not available (CLOUDKERNEL_PUREPYTHON is set" in printed
    check_rows(doc, printed, {"reference", "numpy"}, {8})
    assert {r["label"] for r in doc["rows"]} == {"reference/python", "numpy"}
    assert doc["targets"] == []


def stand_in(differs: bool) -> ModuleType:
    """A "compiled" module made of the reference, exact or off by 1e-12 in one estimate."""

    class Nudged(_consensus_ref.ConsensusFilter):
        def estimate(self, now: float) -> Estimate:
            est = super().estimate(now)
            if self.statistics().estimates == 9 and isinstance(est.value, float):
                return est._replace(value=est.value + 1e-12)
            return est

    module = types.ModuleType(COMPILED)
    module.ConsensusFilter = Nudged if differs else _consensus_ref.ConsensusFilter  # type: ignore[attr-defined]
    module.Reputation = _consensus_ref.Reputation  # type: ignore[attr-defined]
    return module


def test_bench_consensus_judges_targets_with_a_compiled_twin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = load_bench()
    monkeypatch.setattr(bench, "load_compiled", lambda: (stand_in(False), ""))
    rc, doc = run(bench, tmp_path, "8,64")
    assert rc == 0
    printed = capsys.readouterr().out
    assert "compiled == reference: yes" in printed
    check_rows(doc, printed, {"compiled", "reference", "numpy"}, {8, 64})
    assert [t["status"] in ("PASS", "MISS") for t in doc["targets"]] == [True] * 4
    assert "Targets" in printed


def test_bench_consensus_fails_when_compiled_differs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = load_bench()
    monkeypatch.setattr(bench, "load_compiled", lambda: (stand_in(True), ""))
    rc, doc = run(bench, tmp_path, "8")
    assert rc == 1
    captured = capsys.readouterr()
    assert "compiled == reference: NO" in captured.out
    assert "estimate (fresh): value: compiled" in captured.out
    assert "CORRECTNESS FAILURE" in captured.err
    assert doc == {}  # nothing timed, nothing written


def test_bench_consensus_rejects_bad_options() -> None:
    bench = load_bench()
    for argv in (["--sizes", "2"], ["--sizes", "257"], ["--sizes", "8,x"], ["--repeats", "0"]):
        with pytest.raises(SystemExit):
            bench.main(argv)
