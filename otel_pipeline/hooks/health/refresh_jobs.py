"""Refresh jobs: work that refreshes something every ``interval`` seconds, and when it last succeeded.

>>> import otel_pipeline as op
>>> with op.refresh_job("catalog", interval=300).running():
...     pass
"""

from __future__ import annotations

import time
from typing import Any

from otel_pipeline._internal.boundary import internal_error
from otel_pipeline._internal.catalogue import declare
from otel_pipeline._internal.hook import Health, Hook, get_hook
from otel_pipeline._internal.runtime import Runtime
from otel_pipeline._internal.spec import Kind
from otel_pipeline._internal.timed import Noop, Operation, Timed, TimedScope
from otel_pipeline._internal.validation import checked_seconds

__all__ = ["RefreshJob", "refresh_job"]

HOOK = "health"
REFRESH = "refresh.name"
#: Wall clock of refresh jobs (Unix seconds).
_clock = time.time

LAST_SUCCESS = declare(
    "refresh.last_success",
    Kind.GAUGE,
    "s",
    "Unix time of the refresh job's last successful run.",
    [REFRESH],
    hook=HOOK,
    merge="max",
)
REFRESH_IN_PROGRESS = declare(
    "refresh.in_progress",
    Kind.UP_DOWN_COUNTER,
    "{run}",
    "Runs of the refresh job in progress now.",
    [REFRESH],
    hook=HOOK,
)
REFRESH_INTERVAL = declare(
    "refresh.interval",
    Kind.GAUGE,
    "s",
    "How often the refresh job is meant to run.",
    [REFRESH],
    hook=HOOK,
    merge="max",
)
REFRESH_DURATION = declare(
    "refresh.duration",
    Kind.HISTOGRAM,
    "s",
    "Duration of one run of the refresh job, by outcome.",
    [REFRESH, "outcome", "error.type"],
    hook=HOOK,
)


class _RefreshSeries:
    __slots__ = ("bound_at", "interval", "last_success", "last_success_at", "run", "running")

    def __init__(self, hook: RefreshJob, pipeline: Runtime) -> None:
        registry = pipeline.registry
        assert registry is not None
        attributes = {REFRESH: hook.name}
        self.bound_at = _clock()
        self.last_success_at: float | None = None
        self.last_success = registry.instrument(LAST_SUCCESS).bind(attributes)
        self.running = registry.instrument(REFRESH_IN_PROGRESS).bind(attributes)
        self.interval = registry.instrument(REFRESH_INTERVAL).bind(attributes)
        self.interval.set(hook.interval)
        self.run = _Refresh(hook, pipeline, self)


class _Refresh(Operation):
    """One run of a refresh job."""

    __slots__ = ("_name", "_registry", "_series", "_success")

    def __init__(self, hook: RefreshJob, pipeline: Runtime, series: _RefreshSeries) -> None:
        super().__init__(pipeline.tracer, f"refresh {hook.name}", {REFRESH: hook.name}, hook.running)
        assert pipeline.registry is not None
        self._name = hook.name
        self._registry = pipeline.registry
        self._series = series
        self._success = self._registry.instrument(REFRESH_DURATION).bind(
            {REFRESH: hook.name, "outcome": "success"}
        )

    def begin(self) -> None:
        self._series.running.add(1)

    def end(self, duration: float, exc_type: type[BaseException] | None, timed: Timed) -> None:
        series = self._series
        series.running.add(-1)
        if exc_type is None:
            self._success.record(duration)
            series.last_success_at = _clock()
            series.last_success.set(series.last_success_at)
            return
        attributes = {REFRESH: self._name, "outcome": "failure", "error.type": exc_type.__qualname__}
        self._registry.instrument(REFRESH_DURATION).bind(attributes).record(duration)


class RefreshJob(Hook["_RefreshSeries"]):
    """A job refreshing something every ``interval`` seconds. Get it with :func:`otel_pipeline.refresh_job`.

    ``/health`` reports it degraded ("stale") once its last success, or its start when it never
    succeeded, is more than two intervals old.
    """

    kind = "refresh job"

    def __init__(self, name: str, interval: float = 60.0) -> None:
        super().__init__(name)
        self.interval = interval

    def _bind(self, pipeline: Runtime) -> _RefreshSeries:
        return _RefreshSeries(self, pipeline)

    def running(self) -> TimedScope:
        """Time one run: ``with job.running(): reload()`` (also ``async with``, or a decorator)."""
        try:
            bound = self._current()
            if bound is not None:
                return Timed(bound.run)
        except Exception as exc:
            internal_error("refresh_job.running", exc)
        return Noop(self.running)

    def health(self, now: float | None = None) -> tuple[str, dict[str, Any]]:
        """(status, details): degraded when stale (see the class docs), else healthy."""
        bound = self._current()
        if bound is None:
            return "healthy", {"interval": self.interval}
        return self._staleness(bound, _clock() if now is None else now)

    def _health(self, state: _RefreshSeries) -> Health:
        """/health: this job on this pipeline, degraded when stale."""
        return (f"refresh:{self.name}", *self._staleness(state, _clock()))

    def _staleness(self, bound: _RefreshSeries, now: float) -> tuple[str, dict[str, Any]]:
        last = bound.last_success_at
        age = now - (bound.bound_at if last is None else last)
        details = {"kind": "refresh", "interval": self.interval, "last_success": last, "age": age}
        return ("degraded" if age > 2 * self.interval else "healthy"), details


def refresh_job(name: str, *, interval: float | None = None) -> RefreshJob:
    """The refresh job named ``name`` (same name, same object), run every ``interval`` seconds.

    >>> import otel_pipeline as op
    >>> op.refresh_job("exchange-rates", interval=60).interval
    60.0
    """
    hook = get_hook(RefreshJob, name)
    if interval is not None:
        hook.interval = checked_seconds("interval", interval)
        bound = hook._current()
        if bound is not None:
            bound.interval.set(hook.interval)
    return hook
