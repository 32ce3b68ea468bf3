"""Smoke test of bench/bench_pipeline.py: it runs and counts right at the smallest settings.

It keeps the benchmark from rotting as the pipeline changes.  It asserts no
timing at all (the machine is shared and noisy), only that the run finishes,
reports every row, and that what was delivered adds up: at 0 % loss every
signal sent arrives exactly once (the benchmark checks that itself too), and
at 10 % loss no more than was sent.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_pipeline.py"


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_pipeline_smoke", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[spec.name]
        raise
    return module


def test_bench_pipeline_runs_and_counts_right(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = load_bench()
    out = tmp_path / "pipeline.json"
    argv = ["--quick", "--packets", "200", "--repeats", "1", "--encrypt", "--profile"]
    rc = bench.main([*argv, "--json", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    for words in ("floor", "Where the time goes", "cProfile", "src pkt/s", "decode_payload"):
        assert words in printed

    doc: dict[str, Any] = json.loads(out.read_text())
    rows: list[dict[str, Any]] = doc["rows"]
    # 3 mixes x 2 FEC policies x 2 losses x (plain, encrypted)
    assert len(rows) == 24
    assert {r["mix"] for r in rows} == {"scalar", "vector", "mixed"}
    assert {r["encrypt"] for r in rows} == {False, True}
    for r in rows:
        assert r["source_frames"] == 200
        assert r["signals_sent"] > r["source_frames"]  # frames are filled, not one signal each
        assert r["floor_signals"] == r["signals_delivered"]
        assert r["pipeline"]["ns"] > 0 and r["floor"]["ns"] > 0
        if r["loss"] == 0.0:
            assert r["datagrams_fed"] == r["datagrams_sent"]
            assert r["signals_delivered"] == r["signals_sent"]
            assert r["frames_delivered"] == r["source_frames"]
            assert r["frames_recovered"] == 0
            assert set(r["drops"]) <= {"repair-unneeded"}
            assert r["status"] in ("PASS", "MISS")
        else:
            assert r["datagrams_fed"] < r["datagrams_sent"]
            assert 0 < r["signals_delivered"] <= r["signals_sent"]
            assert r["frames_delivered"] <= r["source_frames"]
    # Full source frames sit near the 1232-byte datagram limit.
    assert all(1000 < r["mean_source_bytes"] <= 1232 for r in rows)
    stages = doc["stages"]
    assert stages["row"] == "scalar k32m4 0%"
    assert {s["stage"] for s in stages["stages"]} >= {
        "parse_header",
        "SwarmKey.open (auth)",
        "decode_payload",
    }
    assert len(doc["profiles"]) == 2
    assert doc["machine"]["implementation"] in ("compiled", "python")


def test_bench_pipeline_rejects_bad_options() -> None:
    bench = load_bench()
    with pytest.raises(SystemExit):
        bench.main(["--mix", "nonsense"])
    with pytest.raises(SystemExit):
        bench.main(["--packets", "1"])


def test_bench_mac_runs(capsys: pytest.CaptureFixture[str]) -> None:
    path = BENCH.parent / "bench_mac.py"
    spec = importlib.util.spec_from_file_location("bench_mac_smoke", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--quick"]) == 0
    out = capsys.readouterr().out
    for name in ("ChaCha20-Poly1305 (chosen)", "AES-256-GCM", "BLAKE2b", "HMAC-SHA256"):
        assert name in out
