"""cloudkernel.aio.timerfd: a one-shot CLOCK_MONOTONIC timerfd through libc."""

from __future__ import annotations

import select
import sys
import time

import pytest

from cloudkernel.aio.timerfd import TimerFd

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="timerfd is Linux's")


def test_expires_at_the_absolute_time_asked_for() -> None:
    timer = TimerFd()
    try:
        assert not timer.expired()  # never armed
        when = time.monotonic() + 0.02
        timer.arm(when)
        assert not timer.expired()
        readable, _, _ = select.select([timer], [], [], 2.0)
        woke = time.monotonic()
        assert readable == [timer]
        assert woke >= when  # never early: the same clock as time.monotonic
        assert timer.expired()
        assert not timer.expired()  # read once
    finally:
        timer.close()


def test_a_time_in_the_past_expires_at_once_and_rearming_replaces() -> None:
    timer = TimerFd()
    try:
        timer.arm(time.monotonic() + 60.0)
        timer.arm(0.0)  # replaces the minute: expires at once
        readable, _, _ = select.select([timer], [], [], 2.0)
        assert readable == [timer] and timer.expired()
    finally:
        timer.close()
        timer.close()  # closing twice is harmless
