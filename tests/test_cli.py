"""The ``cloudkernel`` command line as a user runs it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cloudkernel.cli import main
from cloudkernel.keyfile import load_key_file


def test_demo_rebuilds_blocks_and_corrects_bytes() -> None:
    result = CliRunner().invoke(
        main, ["demo", "--blocks", "50", "--loss", "0.05", "--signals", "3000"]
    )
    assert result.exit_code == 0, result.output
    assert "source packets rebuilt" in result.output
    assert "decoded: b'pheromone" in result.output
    assert "signals delivered: 3000 of 3000 (100.000%), duplicates: 0" in result.output


def test_demo_pipeline_can_be_skipped() -> None:
    result = CliRunner().invoke(main, ["demo", "--blocks", "5", "--signals", "0"])
    assert result.exit_code == 0, result.output
    assert "signal pipeline" not in result.output


def test_keygen_writes_a_private_key_file_once(tmp_path: Path) -> None:
    path = tmp_path / "swarm.key"
    result = CliRunner().invoke(main, ["keygen", str(path)])
    assert result.exit_code == 0, result.output
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(load_key_file(path)) == 32
    again = CliRunner().invoke(main, ["keygen", str(path)])
    assert again.exit_code == 1
    assert "already exists" in again.output and "Traceback" not in again.output
    forced = CliRunner().invoke(main, ["keygen", "--force", str(path)])
    assert forced.exit_code == 0, forced.output


def test_demo_with_total_loss_reports_every_block_lost() -> None:
    result = CliRunner().invoke(main, ["demo", "--blocks", "5", "--loss", "1"])
    assert result.exit_code == 0, result.output
    assert "blocks beyond repair:     5 of 5" in result.output
    assert "nothing crosses a link that loses everything" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-k", "0"], "k must be 1..256, got 0"),
        (["-k", "200", "-m", "100"], "got 100"),
        (["--size", "0"], "--size must be 1..65536, got 0"),
        (["--loss", "1.5"], "1.5"),
        (["--loss", "nan"], "--loss must be a number in 0..1, got nan"),
        (["--blocks", "0"], "0"),
        (["-k", "ten"], "ten"),
    ],
)
def test_demo_bad_arguments_are_clear_errors(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["demo", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert "cloudkernel" in result.output
