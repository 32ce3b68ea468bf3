"""A one-shot Linux timerfd on CLOCK_MONOTONIC, armed at absolute times, through libc.

An event loop's own timers wake it with the resolution of its poll timeout,
whole milliseconds for epoll, so a timer planned for ``t`` runs anywhere in
``[t, t + 1 ms)`` even on an idle machine.  A timerfd expires on the kernel's
high-resolution timer at the nanosecond asked for, and the loop sees it as a
readable file descriptor at once: the time between its expiry and the
callback is what the process really waited (scheduling, and whatever held
the loop).  The loop-lag monitor uses it where it exists.

Python 3.11 has no ``os.timerfd_*`` (3.13 does), so the two libc calls go
through ctypes; :class:`TimerFd` raises :class:`OSError` where the platform
has no timerfd, and the caller falls back to the loop's timers.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
from typing import Final

__all__ = ["TimerFd"]

_CLOCK_MONOTONIC: Final = 1
_TFD_TIMER_ABSTIME: Final = 1
_TFD_NONBLOCK: Final = os.O_NONBLOCK
_TFD_CLOEXEC: Final = os.O_CLOEXEC


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "timerfd_create") or not hasattr(libc, "timerfd_settime"):
        raise OSError("this C library has no timerfd")
    libc.timerfd_create.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.timerfd_create.restype = ctypes.c_int
    libc.timerfd_settime.argtypes = [
        ctypes.c_int,
        ctypes.c_int,
        ctypes.POINTER(_Itimerspec),
        ctypes.POINTER(_Itimerspec),
    ]
    libc.timerfd_settime.restype = ctypes.c_int
    return libc


class TimerFd:
    """A non-blocking one-shot timerfd on CLOCK_MONOTONIC (``time.monotonic``'s clock).

    :raises OSError: where there is no timerfd (not Linux, or a C library without it)
    """

    __slots__ = ("_fd", "_libc", "_spec")

    def __init__(self) -> None:
        self._libc = _libc()
        fd = self._libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"timerfd_create: {os.strerror(err)}")
        self._fd: int = int(fd)
        self._spec = _Itimerspec()

    def fileno(self) -> int:
        return self._fd

    def arm(self, when: float) -> None:
        """Expire once at ``when``, seconds on ``time.monotonic``'s clock (a
        time in the past expires at once)."""
        # A zero it_value would disarm the timer: the smallest time is 1 ns.
        fraction, whole = math.modf(max(when, 1e-9))
        value = self._spec.it_value
        value.tv_sec = int(whole)
        value.tv_nsec = min(int(fraction * 1e9), 999_999_999)
        if self._libc.timerfd_settime(self._fd, _TFD_TIMER_ABSTIME, self._spec, None) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"timerfd_settime: {os.strerror(err)}")

    def expired(self) -> bool:
        """Whether the timer has expired since it was last read (and read it)."""
        try:
            os.read(self._fd, 8)
        except BlockingIOError:
            return False
        return True

    def close(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
