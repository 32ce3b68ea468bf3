"""This run's epoch: cloudkernel.epoch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cloudkernel.epoch import EPOCH_FILE, keep_epoch, next_epoch


def test_epochs_increase_within_one_second(tmp_path: Path) -> None:
    first, warning = next_epoch(str(tmp_path), wall_clock=1_000_000.0)
    second, _ = next_epoch(str(tmp_path), wall_clock=1_000_000.0)
    assert warning is None
    assert (first, second) == (1_000_000, 1_000_001)
    assert (tmp_path / EPOCH_FILE).read_text() == "1000001\n"


def test_a_clock_that_went_back_does_not_lower_the_epoch(tmp_path: Path) -> None:
    next_epoch(str(tmp_path), wall_clock=2_000_000.0)
    epoch, _ = next_epoch(str(tmp_path), wall_clock=5.0)  # a Pi booting in 1970
    assert epoch == 2_000_001


def test_the_wall_clock_wins_when_ahead(tmp_path: Path) -> None:
    next_epoch(str(tmp_path), wall_clock=100.0)
    epoch, _ = next_epoch(str(tmp_path), wall_clock=5_000.0)
    assert epoch == 5_000


def test_a_lost_or_garbled_state_file_falls_back_to_the_clock(tmp_path: Path) -> None:
    (tmp_path / EPOCH_FILE).write_text("not a number\n")
    epoch, warning = next_epoch(str(tmp_path), wall_clock=7_000.0)
    assert (epoch, warning) == (7_000, None)


def test_the_state_directory_is_created(tmp_path: Path) -> None:
    state = tmp_path / "a" / "b"
    epoch, warning = next_epoch(str(state), wall_clock=42.0)
    assert (epoch, warning) == (42, None)
    assert (state / EPOCH_FILE).exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_an_unwritable_state_directory_gives_a_warning(tmp_path: Path) -> None:
    tmp_path.chmod(0o500)
    try:
        epoch, warning = next_epoch(str(tmp_path / "state"), wall_clock=99.0)
    finally:
        tmp_path.chmod(0o700)
    assert epoch == 99
    assert warning is not None and "wall clock" in warning


def test_an_unwritable_state_file_gives_a_warning(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    epoch, warning = next_epoch(str(blocker / "state"), wall_clock=99.0)  # a file, not a dir
    assert epoch == 99
    assert warning is not None and "cannot keep the epoch" in warning


def test_an_epoch_the_sender_moved_to_is_kept(tmp_path: Path) -> None:
    first, _ = next_epoch(str(tmp_path), wall_clock=1_000.0)
    assert keep_epoch(str(tmp_path), first + 1) is None
    again, _ = next_epoch(str(tmp_path), wall_clock=1_000.0)
    assert again == first + 2


def test_keeping_an_epoch_where_it_cannot_be_written_gives_a_warning(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    warning = keep_epoch(str(blocker / "state"), 5)
    assert warning is not None and "replays" in warning
