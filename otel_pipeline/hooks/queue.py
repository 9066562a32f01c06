"""Queues: jobs enqueued, processed by outcome, job duration, jobs in progress.

>>> import otel_pipeline as op
>>> q = op.queue("emails")
>>> q.enqueued()
>>> with q.processing():
...     pass
"""

from __future__ import annotations

from typing import Any

from otel_pipeline._internal.catalogue import declare
from otel_pipeline._internal.hook import Hook, check_count, get_hook
from otel_pipeline._internal.runtime import Pipeline
from otel_pipeline._internal.spec import Kind
from otel_pipeline._internal.timed import Noop, Operation, Timed, error_type

__all__ = ["Queue", "queue"]

HOOK = "queue"
ENQUEUED = declare(
    "queue.jobs.enqueued", Kind.COUNTER, "{job}", "Jobs put on the queue.", ["queue.name"], hook=HOOK
)
PROCESSED = declare(
    "queue.jobs.processed",
    Kind.COUNTER,
    "{job}",
    "Jobs taken off the queue and finished, by outcome.",
    ["queue.name", "outcome", "error.type"],
    hook=HOOK,
)
DURATION = declare(
    "queue.job.duration",
    Kind.HISTOGRAM,
    "s",
    "Time spent processing one job.",
    ["queue.name", "outcome", "error.type"],
    hook=HOOK,
)
IN_PROGRESS = declare(
    "queue.jobs.in_progress",
    Kind.UP_DOWN_COUNTER,
    "{job}",
    "Jobs being processed now.",
    ["queue.name"],
    hook=HOOK,
)


class _Processing(Operation):
    """One job: in progress while it runs, then counted and timed by outcome."""

    __slots__ = ("_attributes", "_done", "_duration", "_failed", "_in_progress", "_registry")

    def __init__(self, hook: Queue, pipeline: Pipeline) -> None:
        super().__init__(
            pipeline.tracer, f"queue.process {hook.name}", {"queue.name": hook.name}, hook.processing
        )
        registry = pipeline.registry
        assert registry is not None
        self._registry = registry
        self._attributes = {"queue.name": hook.name}
        self._in_progress = registry.instrument(IN_PROGRESS).bind(self._attributes)
        success = {**self._attributes, "outcome": "success"}
        self._done = registry.instrument(PROCESSED).bind(success)
        self._duration = registry.instrument(DURATION).bind(success)
        self._failed: dict[str, tuple[Any, Any]] = {}

    def begin(self) -> None:
        self._in_progress.add(1)

    def end(self, duration: float, exc_type: type[BaseException] | None, timed: Timed) -> None:
        self._in_progress.add(-1)
        if exc_type is None:
            self._done.add(1)
            self._duration.record(duration)
            return
        failed = self._failed.get(exc_type.__qualname__)
        if failed is None:
            failed = self._failure_series(exc_type)
        failed[0].add(1)
        failed[1].record(duration)

    def _failure_series(self, exc_type: type[BaseException]) -> tuple[Any, Any]:
        registry = self._registry
        attributes = {**self._attributes, "outcome": "failure", "error.type": error_type(exc_type) or ""}
        pair = (
            registry.instrument(PROCESSED).bind(attributes),
            registry.instrument(DURATION).bind(attributes),
        )
        if len(self._failed) < 64:
            self._failed[exc_type.__qualname__] = pair
        return pair


class _Bound:
    __slots__ = ("enqueued", "processing")

    def __init__(self, hook: Queue, pipeline: Pipeline) -> None:
        assert pipeline.registry is not None
        self.enqueued = pipeline.registry.instrument(ENQUEUED).bind({"queue.name": hook.name})
        self.processing = _Processing(hook, pipeline)


class Queue(Hook):
    """A named work queue. Get it with :func:`otel_pipeline.queue`."""

    kind = "queue"

    def _bind(self, pipeline: Pipeline) -> _Bound:
        return _Bound(self, pipeline)

    def enqueued(self, count: int = 1) -> None:
        """Count ``count`` jobs put on the queue."""
        check_count("count", count)
        bound = self._current()
        if bound is not None:
            bound.enqueued.add(count)

    def processing(self) -> Any:
        """Time one job: ``with q.processing(): ...`` (also ``async with``, or as a decorator)."""
        bound = self._current()
        if bound is None:
            return Noop(self.processing)
        return Timed(bound.processing)


def queue(name: str) -> Queue:
    """The queue hook named ``name`` (same name, same object)."""
    return get_hook(Queue, name)
