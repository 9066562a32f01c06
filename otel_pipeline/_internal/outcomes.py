"""Outcome series: what every timed hook records about one operation, recorded together.

An operation (an event processed, a job, an action, a checkpoint save, a stage...) has an
optional in-progress up-down counter, a count by outcome and a duration histogram by outcome.
:class:`OutcomeSeries` binds them once for a base attribute set and records the common case —
success — under one shared lock; other outcomes (``failure`` with ``error.type``, ``timeout``,
...) bind their series on first use, with a bounded cache.

>>> # inside a hook's _bind(pipeline):
>>> # outcomes = OutcomeSeries(pipeline.registry, COUNT, DURATION, IN_PROGRESS, {"queue.name": "q"})
>>> # outcomes.begin(); ...; outcomes.end(duration, exc_type)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from otel_pipeline._internal.registry import Registry
from otel_pipeline._internal.series import CounterSeries, HistogramSeries, UpDownCounterSeries, finish_fused
from otel_pipeline._internal.spans import HookTracer
from otel_pipeline._internal.spec import MetricSpec
from otel_pipeline._internal.timed import Operation, Timed

__all__ = ["OutcomeOperation", "OutcomeSeries", "failure_attributes"]

_MAX_VARIANTS = 64


class OutcomeSeries:
    """In-progress, count and duration of one kind of operation (see module docs)."""

    __slots__ = (
        "_base",
        "_count",
        "_duration",
        "_fused",
        "_in_progress",
        "_lock",
        "_ok_count",
        "_ok_duration",
        "_registry",
        "_variants",
    )

    def __init__(
        self,
        registry: Registry,
        count: MetricSpec,
        duration: MetricSpec,
        in_progress: MetricSpec | None,
        attributes: dict[str, Any],
        *,
        outcome_key: str = "outcome",
        success: str = "success",
    ) -> None:
        self._registry = registry
        self._count = registry.instrument(count)
        self._duration = registry.instrument(duration)
        self._base = dict(attributes)
        self._lock = lock = threading.Lock()
        self._in_progress: Any = (
            registry.instrument(in_progress).bind(self._base, lock) if in_progress else None
        )
        ok = {**self._base, outcome_key: success}
        self._ok_count: Any = self._count.bind(ok, lock)
        self._ok_duration: Any = self._duration.bind(ok, lock)
        # The fused path needs core series that really share our lock (they may pre-exist).
        series: list[Any] = [self._ok_count, self._ok_duration]
        if self._in_progress is not None:
            series.append(self._in_progress)
        self._fused = (
            isinstance(self._ok_count, CounterSeries)
            and isinstance(self._ok_duration, HistogramSeries)
            and (self._in_progress is None or isinstance(self._in_progress, UpDownCounterSeries))
            and all(s._lock is lock for s in series)
        )
        self._variants: dict[tuple[str, ...], tuple[Any, Any]] = {}

    def begin(self) -> None:
        """The operation started: in progress +1."""
        if self._in_progress is not None:
            self._in_progress.add(1)

    def end(self, duration: float, attributes: dict[str, Any] | None = None) -> None:
        """The operation ended after ``duration`` seconds; success unless ``attributes`` say otherwise.

        ``attributes`` (e.g. ``{"outcome": "failure", "error.type": "KeyError"}``) are added to the
        base attributes of the count and duration points.
        """
        if not attributes:
            if self._fused:
                finish_fused(self._lock, self._in_progress, self._ok_count, self._ok_duration, duration)
                return
            count, histogram = self._ok_count, self._ok_duration
        else:
            count, histogram = self._variant(attributes)
        if self._in_progress is not None:
            self._in_progress.add(-1)
        count.add(1)
        histogram.record(duration)

    def abandon(self) -> None:
        """The operation will not be counted (e.g. it was never really started): in progress -1."""
        if self._in_progress is not None:
            self._in_progress.add(-1)

    def _variant(self, attributes: dict[str, Any]) -> tuple[Any, Any]:
        key = tuple(f"{k}={v}" for k, v in sorted(attributes.items()))
        found = self._variants.get(key)
        if found is None:
            merged = {**self._base, **attributes}
            found = (self._count.bind(merged), self._duration.bind(merged))
            if len(self._variants) < _MAX_VARIANTS:
                self._variants[key] = found
        return found


def failure_attributes(exc_type: type[BaseException]) -> dict[str, str]:
    """The outcome attributes of an operation that raised ``exc_type``."""
    return {"outcome": "failure", "error.type": exc_type.__qualname__}


class OutcomeOperation(Operation):
    """A timed operation recorded as in-progress, count and duration by outcome.

    Success, or failure with ``error.type`` when the block raised. Hooks use it as is, or
    subclass it to add to :meth:`begin`/:meth:`end` (call ``super()``).
    """

    __slots__ = ("outcomes",)

    def __init__(
        self,
        tracer: HookTracer,
        span_name: str,
        span_attributes: Mapping[str, Any],
        factory: Callable[[], Any],
        outcomes: OutcomeSeries,
    ) -> None:
        super().__init__(tracer, span_name, span_attributes, factory)
        self.outcomes = outcomes

    def begin(self) -> None:
        in_progress = self.outcomes._in_progress
        if in_progress is not None:
            in_progress.add(1)

    def end(self, duration: float, exc_type: type[BaseException] | None, timed: Timed) -> None:
        outcomes = self.outcomes
        if exc_type is None and outcomes._fused:
            # The hot path: one call, one lock.
            finish_fused(
                outcomes._lock, outcomes._in_progress, outcomes._ok_count, outcomes._ok_duration, duration
            )
        else:
            outcomes.end(duration, None if exc_type is None else failure_attributes(exc_type))
