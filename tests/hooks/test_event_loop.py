from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import otel_pipeline as op
from otel_pipeline.config import DEFAULT_DURATION_BUCKETS
from otel_pipeline.hooks import event_loop
from otel_pipeline.testing import Capture
from tests.hooks import buckets

LAG = "asyncio.event_loop.lag"


class ScriptedLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock moves only when the test moves it: every lag is exact."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 1024.0

    def time(self) -> float:
        return self.now


@pytest.fixture
def loop() -> Iterator[ScriptedLoop]:
    scripted = ScriptedLoop()
    yield scripted
    scripted.close()


async def ticks(monitor: op.EventLoopMonitor, count: int) -> None:
    """Let the loop run until the monitor has taken ``count`` samples (it must, within 100 rounds)."""
    for _ in range(100):
        if monitor.samples >= count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"only {monitor.samples} samples, expected {count}")


async def spin(rounds: int = 20) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


def test_lag_is_how_late_the_callback_ran(capture: Capture, loop: ScriptedLoop) -> None:
    async def main() -> op.EventLoopMonitor:
        monitor = op.monitor_event_loop(interval=0.5)
        loop.now += 0.5  # on time
        await ticks(monitor, 1)
        loop.now += 0.5 + 0.375  # the loop was blocked 0.375 s past the due time
        await ticks(monitor, 2)
        loop.now += 0.5 + 3.0
        await ticks(monitor, 3)
        loop.now += 0.25  # not due yet: no sample
        await spin()
        monitor.stop()
        return monitor

    monitor = loop.run_until_complete(main())
    point = capture.point(LAG)  # no attributes without a name
    assert (point.count, point.sum, point.bucket_counts) == (3, 3.375, buckets(0.0, 0.375, 3.0))
    assert (point.min, point.max) == (0.0, 3.0)
    assert (monitor.samples, monitor.last_lag, monitor.max_lag) == (3, 3.0, 3.0)


def test_a_long_block_gives_one_late_sample_not_a_burst(capture: Capture, loop: ScriptedLoop) -> None:
    async def main() -> None:
        monitor = op.monitor_event_loop(interval=0.5)
        loop.now += 10.0  # twenty intervals blocked
        await ticks(monitor, 1)
        await spin()
        assert monitor.samples == 1  # the next one is due 0.5 s after this one ran
        loop.now += 0.5
        await ticks(monitor, 2)
        monitor.stop()

    loop.run_until_complete(main())
    point = capture.point(LAG)
    assert (point.count, point.sum, point.bucket_counts) == (2, 9.5, buckets(9.5, 0.0))


def test_stop_really_stops(capture: Capture, loop: ScriptedLoop) -> None:
    async def main() -> op.EventLoopMonitor:
        monitor = op.monitor_event_loop(interval=0.5)
        loop.now += 0.5
        await ticks(monitor, 1)
        monitor.stop()
        monitor.stop()  # idempotent
        for _ in range(5):
            loop.now += 1.0
            await spin()
        return monitor

    monitor = loop.run_until_complete(main())
    assert monitor.samples == 1
    assert not monitor.running
    assert capture.point(LAG).count == 1
    ours = [h for h in loop._scheduled if not h.cancelled() and h._callback == monitor._tick]  # type: ignore[attr-defined]
    assert ours == []


def test_stop_from_another_thread_while_the_loop_runs(capture: Capture) -> None:
    loop = asyncio.new_event_loop()
    started = threading.Event()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        loop.call_soon_threadsafe(started.set)
        assert started.wait(30)
        monitor = op.monitor_event_loop(loop, interval=0.001)  # armed from this thread
        wait_for(lambda: monitor.samples >= 3)
        monitor.stop()
        after = monitor.samples
        count = capture.point(LAG).count
        assert count == after
        # A few more loop iterations, then check nothing more was sampled.
        for _ in range(3):
            done = threading.Event()
            loop.call_soon_threadsafe(loop.call_later, 0.01, done.set)
            assert done.wait(30)
        assert (monitor.samples, capture.point(LAG).count) == (after, after)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


def wait_for(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def test_a_blocked_loop_shows_the_block(capture: Capture) -> None:
    """A coroutine that blocks the loop for 0.3 s (time.sleep) makes the next sample >= 0.3 s late."""

    async def main() -> op.EventLoopMonitor:
        loop = asyncio.get_running_loop()
        monitor = op.monitor_event_loop(interval=0.05)
        # Wait until the pending sample is due (so the block covers all of its lateness) ...
        while loop.time() < monitor._due:
            await asyncio.sleep(0)
        before = monitor.samples
        time.sleep(0.3)  # ... then block the loop
        await ticks_until(monitor, before + 1)
        monitor.stop()
        return monitor

    monitor = asyncio.run(main())
    assert monitor.last_lag is not None
    assert monitor.last_lag >= 0.3
    point = capture.point(LAG)
    assert point.count == monitor.samples
    assert point.max == monitor.max_lag
    # The blocked sample is counted in the bucket its value falls in (0.25-0.5 s unless very late).
    index = sum(1 for bound in DEFAULT_DURATION_BUCKETS if bound < monitor.last_lag)
    assert DEFAULT_DURATION_BUCKETS[index - 1] < monitor.last_lag
    assert point.bucket_counts[index] >= 1
    assert sum(point.bucket_counts[: DEFAULT_DURATION_BUCKETS.index(0.25) + 1]) <= monitor.samples - 1


async def ticks_until(monitor: op.EventLoopMonitor, count: int) -> None:
    while monitor.samples < count:
        await asyncio.sleep(0.001)


@pytest.mark.parametrize("mode", ["core", "sdk"])
def test_named_loops_and_the_context_manager(mode: str) -> None:
    with Capture(instrument_mode=mode) as capture:
        scripted = ScriptedLoop()

        async def main() -> op.EventLoopMonitor:
            with op.monitor_event_loop(interval=0.25, name="io") as monitor:
                scripted.now += 0.25 + 0.125
                await ticks(monitor, 1)
            scripted.now += 1.0
            await spin()
            return monitor

        try:
            monitor = scripted.run_until_complete(main())
        finally:
            scripted.close()
        assert not monitor.running
        point = capture.point(LAG, {"asyncio.loop.name": "io"})
        assert (point.count, point.sum) == (1, 0.125)
        assert [dict(p.attributes) for p in capture.points(LAG)] == [{"asyncio.loop.name": "io"}]


def test_same_options_same_monitor_other_options_replace_it(loop: ScriptedLoop) -> None:
    first = op.monitor_event_loop(loop, interval=0.5)
    assert op.monitor_event_loop(loop, interval=0.5) is first
    second = op.monitor_event_loop(loop, interval=0.25)
    assert second is not first
    assert (first.running, second.running) == (False, True)
    third = op.monitor_event_loop(loop, interval=0.25, name="main")
    assert (second.running, third.running) == (False, True)
    assert third.loop is loop
    third.stop()


def test_a_monitor_armed_before_the_loop_runs_starts_counting_when_it_runs(
    capture: Capture, loop: ScriptedLoop
) -> None:
    monitor = op.monitor_event_loop(loop, interval=0.5)
    loop.now += 100.0  # the loop is not running yet: that is not lag

    async def main() -> None:
        await spin()
        assert monitor.samples == 0
        loop.now += 0.5
        await ticks(monitor, 1)

    loop.run_until_complete(main())
    monitor.stop()
    assert capture.point(LAG).sum == 0.0


def test_a_closed_loop_stops_its_monitor(loop: ScriptedLoop) -> None:
    monitor = op.monitor_event_loop(loop, interval=0.5)
    assert monitor.running
    loop.close()
    assert not monitor.running
    assert "stopped" in repr(monitor)
    with pytest.raises(ValueError, match="is closed"):
        op.monitor_event_loop(loop)


def test_unconfigured_it_samples_and_records_nothing(loop: ScriptedLoop) -> None:
    async def main() -> op.EventLoopMonitor:
        monitor = op.monitor_event_loop(interval=0.5)
        loop.now += 0.75
        await ticks(monitor, 1)
        monitor.stop()
        return monitor

    monitor = loop.run_until_complete(main())
    assert (monitor.samples, monitor.last_lag) == (1, 0.25)
    with Capture() as capture:
        assert LAG not in capture.metrics()


def test_a_recording_fault_is_logged_once_and_sampling_goes_on(
    capture: Capture, loop: ScriptedLoop, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self: Any) -> Any:
        raise RuntimeError("broken registry")

    monkeypatch.setattr(event_loop._UnnamedLoopLag, "_current", broken)

    async def main() -> op.EventLoopMonitor:
        monitor = op.monitor_event_loop(interval=0.5)
        for count in (1, 2):
            loop.now += 0.5
            await ticks(monitor, count)
        monitor.stop()
        return monitor

    assert loop.run_until_complete(main()).samples == 2
    assert [r.getMessage() for r in caplog.records] == ["recording event-loop lag failed; skipped"]


def test_outside_a_running_loop_without_a_loop_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match=r"must be called where an event loop is running"):
        op.monitor_event_loop()


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"interval": 0}, ValueError, r"interval=0 is not valid; use a number of seconds > 0"),
        ({"interval": -1.0}, ValueError, "interval=-1.0 is not valid"),
        ({"interval": math.inf}, ValueError, "interval=inf is not valid"),
        ({"interval": math.nan}, ValueError, "interval=nan is not valid"),
        ({"interval": True}, TypeError, "interval must be a number of seconds, got bool True"),
        ({"interval": "1"}, TypeError, "interval must be a number of seconds, got str '1'"),
        ({"name": ""}, ValueError, "event loop name=''"),
        ({"name": 3}, TypeError, "event loop name must be a str, got int 3"),
    ],
)
def test_bad_options_are_refused(
    loop: ScriptedLoop, options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        op.monitor_event_loop(loop, **options)


def test_a_loop_that_is_not_a_loop_is_refused() -> None:
    with pytest.raises(TypeError, match=r"loop must be an asyncio event loop .* got str 'main'"):
        op.monitor_event_loop("main")  # type: ignore[arg-type]
