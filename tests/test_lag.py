"""cloudkernel.aio.lag: the event-loop lag monitor.

The schedule (no drift, skipping ahead), the window and the histogram are
checked on a fake loop whose clock the test moves.  On real loops (asyncio's
and uvloop's) the checks are loose: lower bounds from a deliberate blocking
of the loop, never tight upper bounds, as the machine may be busy.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

import pytest
import uvloop

from cloudkernel.aio.lag import BUCKETS, LagStatistics, LoopLagMonitor


class FakeHandle:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """A loop whose time moves only when a timer is fired."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.timers: list[tuple[float, Callable[[], object], FakeHandle]] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], object], /) -> FakeHandle:
        handle = FakeHandle()
        self.timers.append((when, callback, handle))
        return handle

    def pending(self) -> list[float]:
        return [when for when, _, handle in self.timers if not handle.cancelled]

    def fire(self, late: float = 0.0) -> float:
        """Run the one pending timer ``late`` seconds after it was due; return when it was due."""
        live = [t for t in self.timers if not t[2].cancelled]
        assert len(live) == 1, live
        self.timers.clear()
        when, callback, _ = live[0]
        self.now = when + late
        callback()
        return when


def fake_monitor(interval: float = 0.1, window: int = 600) -> tuple[FakeLoop, LoopLagMonitor]:
    loop = FakeLoop()
    monitor = LoopLagMonitor(loop, interval, window, clock=loop.time)
    return loop, monitor


EMPTY = LagStatistics(
    count=0,
    skipped=0,
    last=0.0,
    max=0.0,
    sum=0.0,
    window=0,
    p50=0.0,
    p99=0.0,
    window_max=0.0,
    buckets=tuple((bound, 0) for bound in (*BUCKETS, math.inf)),
)


# --- on a fake loop ----------------------------------------------------------------


def test_statistics_before_any_sample() -> None:
    _, monitor = fake_monitor()
    assert monitor.statistics() == EMPTY
    monitor.start()
    assert monitor.statistics() == EMPTY


def test_buckets() -> None:
    expected = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
    assert expected == BUCKETS
    assert list(BUCKETS) == sorted(BUCKETS)


def test_plans_from_the_previous_planned_time_no_drift() -> None:
    loop, monitor = fake_monitor(interval=0.1)
    start = loop.now
    monitor.start()
    for k in range(1, 1001):
        when = loop.fire(late=0.003 if k % 2 else 0.09)
        assert when == pytest.approx(start + k * 0.1, abs=1e-6)
    stats = monitor.statistics()
    assert stats.count == 1000 and stats.skipped == 0
    assert stats.max == pytest.approx(0.09)
    assert stats.sum == pytest.approx(500 * 0.003 + 500 * 0.09)
    assert loop.pending() == [pytest.approx(start + 1001 * 0.1, abs=1e-6)]


def test_falling_an_interval_behind_skips_ahead() -> None:
    loop, monitor = fake_monitor(interval=0.1)
    monitor.start()
    first = loop.fire(late=0.25)  # the wake-ups due at first+0.1 and first+0.2 are past
    stats = monitor.statistics()
    assert (stats.count, stats.skipped) == (1, 2)
    assert stats.last == pytest.approx(0.25)
    assert loop.pending() == [pytest.approx(first + 0.3)]
    assert loop.pending()[0] > loop.now
    # Back on the original grid afterwards.
    assert loop.fire(late=0.0) == pytest.approx(first + 0.3)
    assert loop.fire(late=1.05) == pytest.approx(first + 0.4)
    assert monitor.statistics().skipped == 2 + 10
    assert loop.pending() == [pytest.approx(first + 1.5)]


def test_an_early_wake_up_counts_as_no_lag() -> None:
    # uvloop's millisecond timers may run a callback a little before it is due.
    loop, monitor = fake_monitor(interval=0.1)
    monitor.start()
    first = loop.fire(late=-0.0007)
    stats = monitor.statistics()
    assert (stats.count, stats.last, stats.max, stats.skipped) == (1, 0.0, 0.0, 0)
    assert loop.pending() == [pytest.approx(first + 0.1)]


def test_histogram_buckets_are_cumulative() -> None:
    loop, monitor = fake_monitor(interval=10.0)  # no skipping for these lags
    monitor.start()
    lags = [0.00005, 0.0003, 0.0003, 0.003, 0.07, 0.3, 2.0]
    for lag in lags:
        loop.fire(late=lag)
    stats = monitor.statistics()
    expected = {
        0.0001: 1,
        0.00025: 1,
        0.0005: 3,
        0.001: 3,
        0.0025: 3,
        0.005: 4,
        0.01: 4,
        0.025: 4,
        0.05: 4,
        0.1: 5,
        0.25: 5,
        1.0: 6,
        math.inf: 7,
    }
    assert dict(stats.buckets) == expected
    assert [bound for bound, _ in stats.buckets] == [*BUCKETS, math.inf]
    assert stats.count == stats.buckets[-1][1] == 7
    assert stats.sum == pytest.approx(sum(lags))
    assert stats.max == pytest.approx(2.0)


def test_percentiles_over_the_window_max_since_start() -> None:
    loop, monitor = fake_monitor(interval=1.0, window=4)
    monitor.start()
    lags = [0.5, 0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.007, 0.008, 0.010]
    for lag in lags:
        loop.fire(late=lag)
    stats = monitor.statistics()
    assert stats.count == 10 and stats.window == 4
    assert stats.max == pytest.approx(0.5)  # since start
    assert stats.window_max == pytest.approx(0.010)  # the last 4: 0.006, 0.007, 0.008, 0.010
    assert stats.p50 == pytest.approx(0.007)  # nearest rank 2 of 4
    assert stats.p99 == pytest.approx(0.010)
    assert stats.last == pytest.approx(0.010)
    assert stats.buckets[-1][1] == 10  # the histogram keeps everything


def test_memory_is_bounded() -> None:
    loop, monitor = fake_monitor(interval=0.1, window=600)
    monitor.start()
    for k in range(5000):
        loop.fire(late=(k % 50) / 1000)
    stats = monitor.statistics()
    assert stats.count == 5000 and stats.window == 600
    assert len(stats.buckets) == len(BUCKETS) + 1
    assert loop.timers and len(loop.timers) == 1


def test_start_stop() -> None:
    loop, monitor = fake_monitor(interval=0.1)
    assert not monitor.running
    monitor.start()
    monitor.start()  # running already: still one timer
    assert monitor.running and len(loop.pending()) == 1
    loop.fire(late=0.01)
    monitor.stop()
    assert not monitor.running and loop.pending() == []
    monitor.stop()  # twice is fine
    # Restarting plans from now and keeps the samples.
    loop.now += 5.0
    monitor.start()
    assert loop.pending() == [pytest.approx(loop.now + 0.1)]
    loop.fire(late=0.02)
    stats = monitor.statistics()
    assert (stats.count, stats.skipped) == (2, 0)


@pytest.mark.parametrize("interval", [0.0, -0.1, math.nan, math.inf])
def test_bad_interval(interval: float) -> None:
    with pytest.raises(ValueError, match="interval"):
        LoopLagMonitor(FakeLoop(), interval)


def test_bad_window() -> None:
    with pytest.raises(ValueError, match="window"):
        LoopLagMonitor(FakeLoop(), 0.1, 0)


# --- on real loops -------------------------------------------------------------------

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


@pytest.fixture(params=list(LOOPS))
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, None]], None]:
    factory = LOOPS[request.param]

    def run(coro: Coroutine[Any, Any, None]) -> None:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(coro)

    return run


def test_real_loop_small_lag(run: Callable[[Coroutine[Any, Any, None]], None]) -> None:
    async def main() -> None:
        monitor = LoopLagMonitor(asyncio.get_running_loop(), interval=0.01)
        monitor.start()
        # Linux: the wake-ups come from a timerfd, to the microsecond.
        assert monitor.statistics() == replace(EMPTY, precise=True)
        await asyncio.sleep(0.5)
        monitor.stop()
        stats = monitor.statistics()
        # Timers due before the sleep's have run, or been skipped as past.
        assert stats.count + stats.skipped >= 40
        assert stats.count >= 1
        assert 0.0 <= stats.p50 <= stats.p99 <= stats.window_max <= stats.max
        assert stats.p50 < 0.25  # sane, not tight
        assert stats.buckets[-1] == (math.inf, stats.count)

    run(main())


def test_real_loop_blocking_shows_up(run: Callable[[Coroutine[Any, Any, None]], None]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        # A wake-up is due within 6 ms (5 ms interval, uvloop's 1 ms rounding)
        # of any moment, so a 50 ms block makes one at least 44 ms late.
        monitor = LoopLagMonitor(loop, interval=0.005)
        monitor.start()
        await asyncio.sleep(0.05)
        loop.call_soon(time.sleep, 0.05)
        await asyncio.sleep(0.1)
        monitor.stop()
        stats = monitor.statistics()
        assert stats.max >= 0.04
        assert stats.window_max >= 0.04
        assert stats.skipped >= 1
        counts = dict(stats.buckets)
        assert counts[0.025] < stats.count  # at least one wake-up later than 25 ms
        index = bisect.bisect_left(BUCKETS, stats.max)
        at_or_below = stats.buckets[index][1]
        below = stats.buckets[index - 1][1]
        assert at_or_below - below >= 1  # the largest lag is in its bucket

    run(main())


def test_real_loop_stop_stops(run: Callable[[Coroutine[Any, Any, None]], None]) -> None:
    async def main() -> None:
        monitor = LoopLagMonitor(asyncio.get_running_loop(), interval=0.005)
        monitor.start()
        await asyncio.sleep(0.05)
        monitor.stop()
        assert not monitor.running
        before = monitor.statistics()
        assert before.count >= 1
        await asyncio.sleep(0.05)
        assert monitor.statistics() == before

    run(main())


def test_a_loop_without_readers_or_a_test_clock_uses_loop_timers() -> None:
    loop, monitor = fake_monitor()
    monitor.start()
    assert loop.pending() and not monitor.statistics().precise
    monitor.stop()
    assert not loop.pending()


def test_timerfd_wake_ups_are_not_rounded_to_the_millisecond() -> None:
    """The loop's own timers wake epoll to the millisecond: planned at a
    random phase, their lag spreads over [0, 1 ms) even when nothing else
    runs.  timerfd wake-ups come in far less than that in most cases."""

    async def main() -> LagStatistics:
        monitor = LoopLagMonitor(asyncio.get_running_loop(), interval=0.0037)
        monitor.start()
        await asyncio.sleep(0.4)
        monitor.stop()
        return monitor.statistics()

    # asyncio's loop rounds its poll timeout up to the millisecond.
    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
        stats = runner.run(main())
    assert stats.precise and stats.count >= 20
    # A loose bound for a shared machine; millisecond rounding would put the
    # median near 0.5 ms.
    assert stats.p50 < 0.0004
