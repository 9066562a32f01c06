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
from typing import Any

from otel_pipeline._internal.registry import Registry
from otel_pipeline._internal.series import CounterSeries, HistogramSeries, UpDownCounterSeries, finish_fused
from otel_pipeline._internal.spec import MetricSpec

__all__ = ["OutcomeSeries"]

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
        self._in_progress: Any = registry.instrument(in_progress).bind(self._base, lock) if in_progress else None
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
