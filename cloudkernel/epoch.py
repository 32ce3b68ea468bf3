"""This run's epoch: strictly larger than any earlier run's of the same node.

Receivers drop every frame of an epoch older than the newest they have seen
from a sender (docs/PROTOCOL.md, section 5), so a restarted node must come
back with a larger epoch or be ignored.  The epoch is kept in
``<state_dir>/epoch``: each start reads it, takes the larger of it + 1 and
the wall clock in seconds, and writes that back (atomically, before any
frame is sent).  Counting from the wall clock keeps epochs increasing even
when the state directory is lost with the SD card; the counter keeps them
increasing when the clock is not set yet (a Pi without a real-time clock
boots in 1970 until NTP answers).

When the state directory cannot be written, the wall clock alone is used and
the caller gets a warning to log: two starts within one second would then
share an epoch.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time

__all__ = ["EPOCH_FILE", "keep_epoch", "next_epoch"]

EPOCH_FILE = "epoch"
_MAX = 2**32 - 1


def _read(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as f:
            text = f.read(32).strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not text.isdigit():
        return None
    value = int(text)
    return value if value <= _MAX else None


def next_epoch(state_dir: str, *, wall_clock: float | None = None) -> tuple[int, str | None]:
    """The epoch of this run, and a warning when it could not be made durable.

    :param state_dir: the daemon's state directory (created if missing).
    :param wall_clock: seconds since 1970; ``time.time()`` when None.
    """
    now = int(time.time() if wall_clock is None else wall_clock) & _MAX
    path = os.path.join(state_dir, EPOCH_FILE)
    stored = _read(path)
    epoch = now if stored is None else max(now, stored + 1)
    if epoch > _MAX:
        epoch = _MAX  # past 2106: the receivers' epoch check saturates too
    try:
        _write(state_dir, epoch)
    except OSError as exc:
        return epoch, (
            f"cannot keep the epoch in {path} ({exc.strerror}); using the wall clock "
            f"({epoch}): restarts within one second would not be told apart"
        )
    return epoch, None


def keep_epoch(state_dir: str, epoch: int) -> str | None:
    """Record ``epoch``, which this run moved to by itself; a warning if it cannot."""
    try:
        _write(state_dir, epoch)
    except OSError as exc:
        return (
            f"cannot keep the epoch {epoch} in {os.path.join(state_dir, EPOCH_FILE)} "
            f"({exc.strerror}): after a restart peers may take this node's frames for replays"
        )
    return None


def _write(state_dir: str, epoch: int) -> None:
    """Replace the epoch file atomically and durably (the file, then its directory)."""
    os.makedirs(state_dir, mode=0o750, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".epoch.", dir=state_dir)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(f"{epoch}\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(state_dir, EPOCH_FILE))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    # The rename is durable once the directory is: after a power cut the old
    # epoch must not come back.
    dir_fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
