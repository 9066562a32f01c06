"""asyncio event-loop lag: how late the loop runs a callback scheduled for a known time.

:func:`monitor_event_loop` schedules a callback every ``interval`` seconds on the loop (with
``loop.call_at``) and records, each time it runs, how long after its due time it ran, into the
``asyncio.event_loop.lag`` histogram. A loop kept busy by a coroutine that blocks (CPU work,
a synchronous call) runs it late by as long as the block lasted past the due time; a healthy
loop by well under a millisecond. Each sample costs one callback, one clock read and one
histogram record: left on, at the default half second, it is not measurable (see
``benchmarks/event_loop.py``).

>>> import asyncio
>>> import otel_pipeline as op
>>> async def main() -> int:
...     with op.monitor_event_loop(interval=0.01) as monitor:
...         await asyncio.sleep(0.05)
...     return monitor.samples
>>> asyncio.run(main()) > 0
True
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from types import TracebackType

from otel_pipeline._internal.catalogue import declare
from otel_pipeline._internal.errors import logger, warn_once
from otel_pipeline._internal.hook import Hook, check_name, get_hook
from otel_pipeline._internal.registry import Records
from otel_pipeline._internal.runtime import Runtime
from otel_pipeline._internal.spec import Kind
from otel_pipeline._internal.validation import check_seconds, safe_repr

__all__ = ["EventLoopMonitor", "monitor_event_loop"]

HOOK = "event_loop"
LOOP_NAME = "asyncio.loop.name"
LAG = declare(
    "asyncio.event_loop.lag",
    Kind.HISTOGRAM,
    "s",
    "How late the asyncio event loop ran a callback scheduled for a known time (blocked or busy loop).",
    [LOOP_NAME],
    hook=HOOK,
)
#: The hook name of a loop monitored without a name (its samples carry no attribute).
_UNNAMED = "asyncio"


class _LoopLag(Hook[Records]):
    """The lag histogram of the loops monitored under one ``name`` (``asyncio.loop.name``)."""

    kind = "event_loop"

    def _attributes(self) -> dict[str, str]:
        return {LOOP_NAME: self.name}

    def _bind(self, pipeline: Runtime) -> Records:
        registry = pipeline.registry
        assert registry is not None
        return registry.instrument(LAG).bind(self._attributes())


class _UnnamedLoopLag(_LoopLag):
    """The lag histogram of loops monitored without a name: points without attributes."""

    def _attributes(self) -> dict[str, str]:
        return {}


class EventLoopMonitor:
    """Samples one event loop's lag every ``interval`` seconds until :meth:`stop`.

    Get it with :func:`otel_pipeline.monitor_event_loop`. Also a context manager (``with``):
    leaving the block stops it. ``samples``, ``last_lag`` and ``max_lag`` describe what it
    measured so far (seconds).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float, name: str | None) -> None:
        self._loop = weakref.ref(loop)
        self.interval = interval
        self.name = name
        self._hook: _LoopLag = (
            get_hook(_UnnamedLoopLag, _UNNAMED) if name is None else get_hook(_LoopLag, name)
        )
        #: Held while a sample is taken and while stopping: once stop() returns, nothing more runs.
        self._lock = threading.Lock()
        self._running = True
        self._due = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self.samples = 0
        self.last_lag: float | None = None
        self.max_lag: float | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The monitored loop (None once it was garbage-collected)."""
        return self._loop()

    @property
    def running(self) -> bool:
        """True until :meth:`stop`, or until the loop is closed (the monitor then stops itself)."""
        if self._running:
            loop = self._loop()
            if loop is None or loop.is_closed():
                self.stop()
        return self._running

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        if _running_loop() is loop:
            self._arm()
        else:  # another thread's loop, or one not running yet: arm it when it runs
            loop.call_soon_threadsafe(self._arm)

    def _arm(self) -> None:
        with self._lock:
            loop = self._loop()
            if self._running and loop is not None:
                self._schedule(loop, loop.time())

    def _schedule(self, loop: asyncio.AbstractEventLoop, now: float) -> None:
        # From now, not from the previous due time: a long block yields one late sample, not a burst.
        self._due = now + self.interval
        self._timer = loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        with self._lock:
            loop = self._loop()
            if not self._running or loop is None:
                return
            now = loop.time()
            # The loop runs timers due within its clock resolution: never report those as negative.
            lag = max(0.0, now - self._due)
            self.samples += 1
            self.last_lag = lag
            if self.max_lag is None or lag > self.max_lag:
                self.max_lag = lag
            try:
                series = self._hook._current()
                if series is not None:
                    series.record(lag)
            except Exception:
                warn_once("event_loop:record", "recording event-loop lag failed; skipped")
                logger.debug("event-loop lag failure", exc_info=True)
            self._schedule(loop, now)

    def stop(self) -> None:
        """Stop sampling: no sample is taken after this returns, and the callback is cancelled.

        Idempotent; safe from any thread.
        """
        with self._lock:
            self._running = False
            timer, self._timer = self._timer, None
        if timer is None:
            return
        loop = self._loop()
        if loop is None or loop.is_closed() or _running_loop() is loop:
            timer.cancel()
            return
        # The handle belongs to another thread's loop: cancel it there (closed meanwhile: nothing
        # will run it).
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(timer.cancel)

    def __enter__(self) -> EventLoopMonitor:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self._running else "stopped"
        return f"<EventLoopMonitor interval={self.interval} name={self.name!r} {state}>"


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


_MONITORS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, EventLoopMonitor] = (
    weakref.WeakKeyDictionary()
)
_MONITORS_LOCK = threading.Lock()


def monitor_event_loop(
    loop: asyncio.AbstractEventLoop | None = None, *, interval: float = 0.5, name: str | None = None
) -> EventLoopMonitor:
    """Record ``asyncio.event_loop.lag`` of ``loop`` (default: the running loop) every ``interval`` s.

    Returns the :class:`EventLoopMonitor`; ``stop()`` it, or use it as a context manager. One
    monitor per loop: asking again with the same options returns the running monitor, with
    other options replaces it. ``name`` (optional) becomes the ``asyncio.loop.name`` attribute,
    to tell several loops of one process apart. Without ``loop``, it must be called where a
    loop is running (in a coroutine or callback): ``RuntimeError`` otherwise. The monitor
    records into whatever pipeline is configured when it samples (nothing while none is).

    >>> import asyncio
    >>> import otel_pipeline as op
    >>> loop = asyncio.new_event_loop()
    >>> monitor = op.monitor_event_loop(loop, interval=1.0, name="io")
    >>> monitor.running
    True
    >>> monitor.stop()
    >>> loop.close()
    """
    interval = check_seconds("interval", interval)
    if name is not None:
        check_name("event loop name", name)
    if loop is None:
        loop = _running_loop()
        if loop is None:
            raise RuntimeError(
                "otel_pipeline: monitor_event_loop() without a loop must be called where an event loop "
                "is running (in a coroutine or a loop callback); or pass the loop: "
                "monitor_event_loop(loop)"
            )
    elif not isinstance(loop, asyncio.AbstractEventLoop):
        raise TypeError(
            f"otel_pipeline: loop must be an asyncio event loop (or None for the running one), got "
            f"{type(loop).__name__} {safe_repr(loop)}"
        )
    if loop.is_closed():
        raise ValueError(
            f"otel_pipeline: loop {safe_repr(loop)} is closed; monitor a loop that can still run"
        )
    with _MONITORS_LOCK:
        existing = _MONITORS.get(loop)
        if existing is not None and existing.running:
            if existing.interval == interval and existing.name == name:
                return existing
            existing.stop()
        monitor = EventLoopMonitor(loop, interval, name)
        monitor._start(loop)
        _MONITORS[loop] = monitor
    return monitor
