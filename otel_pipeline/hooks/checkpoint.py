"""Checkpoints: saves by outcome, save duration, recoveries, and the time of the last good save.

>>> import otel_pipeline as op
>>> cp = op.checkpoint("listener-1")
>>> with cp.save():
...     pass  # write the offset somewhere durable
>>> cp.recovered()

``checkpoint.last_success.timestamp`` is exposed as ``checkpoint_last_success_timestamp_seconds``
(unix seconds), so an alert can fire when checkpoints go stale:
``time() - checkpoint_last_success_timestamp_seconds > 600``.
"""

from __future__ import annotations

from time import time
from typing import Any

from otel_pipeline._internal.boundary import internal_error
from otel_pipeline._internal.catalogue import declare
from otel_pipeline._internal.hook import Hook, get_hook
from otel_pipeline._internal.outcomes import OutcomeOperation, OutcomeSeries
from otel_pipeline._internal.runtime import Runtime
from otel_pipeline._internal.spec import Kind
from otel_pipeline._internal.timed import Noop, Timed, TimedScope
from otel_pipeline._internal.validation import amount

__all__ = ["Checkpoint", "checkpoint"]

HOOK = "checkpoint"
_OUTCOME_ATTRS = ["checkpoint.name", "outcome", "error.type"]
SAVES = declare(
    "checkpoint.saves", Kind.COUNTER, "{save}", "Checkpoint saves, by outcome.", _OUTCOME_ATTRS, hook=HOOK
)
SAVE_DURATION = declare(
    "checkpoint.save.duration",
    Kind.HISTOGRAM,
    "s",
    "Time taken to save one checkpoint, by outcome.",
    _OUTCOME_ATTRS,
    hook=HOOK,
)
RECOVERIES = declare(
    "checkpoint.recoveries",
    Kind.COUNTER,
    "{recovery}",
    "Times work resumed from the checkpoint (e.g. after a restart).",
    ["checkpoint.name"],
    hook=HOOK,
)
LAST_SUCCESS = declare(
    "checkpoint.last_success.timestamp",
    Kind.GAUGE,
    "s",
    "Unix time of the last successful save; alert when it gets old.",
    ["checkpoint.name"],
    hook=HOOK,
    merge="max",
)


class _Save(OutcomeOperation):
    """One save: counted and timed by outcome; a success also sets the last-success time."""

    __slots__ = ("last_success",)

    def __init__(self, hook: Checkpoint, pipeline: Runtime, attributes: dict[str, Any]) -> None:
        registry = pipeline.registry
        assert registry is not None
        outcomes = OutcomeSeries(registry, SAVES, SAVE_DURATION, None, attributes)
        super().__init__(pipeline.tracer, f"checkpoint.save {hook.name}", attributes, hook.save, outcomes)
        self.last_success = registry.instrument(LAST_SUCCESS).bind(attributes)

    def end(self, duration: float, exc_type: type[BaseException] | None, timed: Timed) -> None:
        super().end(duration, exc_type, timed)
        if exc_type is None:
            self.last_success.set(time())


class _Bound:
    __slots__ = ("recoveries", "save")

    def __init__(self, hook: Checkpoint, pipeline: Runtime) -> None:
        assert pipeline.registry is not None
        attributes = {"checkpoint.name": hook.name}
        self.save = _Save(hook, pipeline, attributes)
        self.recoveries = pipeline.registry.instrument(RECOVERIES).bind(attributes)


class Checkpoint(Hook[_Bound]):
    """A named checkpoint (an offset, a job's progress). Get it with :func:`otel_pipeline.checkpoint`.

    >>> import otel_pipeline as op
    >>> @op.checkpoint("export").save()
    ... def save_offset(offset: int) -> None:
    ...     pass
    >>> save_offset(42)
    """

    kind = "checkpoint"

    def _bind(self, pipeline: Runtime) -> _Bound:
        return _Bound(self, pipeline)

    def save(self) -> TimedScope:
        """Time one save: ``with cp.save(): ...`` (also ``async with``, or as a decorator).

        A save that raises is counted with ``outcome="failure"`` and ``error.type``, and the
        exception propagates; only a successful save moves the last-success time.
        """
        try:
            bound = self._current()
            if bound is not None:
                return Timed(bound.save)
        except Exception as exc:
            internal_error("checkpoint.save", exc)
        return Noop(self.save)

    def recovered(self, saved_at: float | None = None) -> None:
        """Count one recovery from this checkpoint.

        ``saved_at`` (unix seconds), when the checkpoint's own save time is known, becomes the
        last-success time, so staleness is measured right after a restart too; one that is not
        a number >= 0 is left out (one warning) and the recovery is still counted.

        >>> import otel_pipeline as op
        >>> op.checkpoint("listener-1").recovered(saved_at=1_700_000_000.0)
        """
        if saved_at is not None:
            saved_at = amount(self, "recovered", "saved_at", saved_at, "the recovery is counted without it")
        try:
            bound = self._current()
            if bound is not None:
                bound.recoveries.add(1)
                if saved_at is not None:
                    bound.save.last_success.set(saved_at)
        except Exception as exc:
            internal_error("checkpoint.recovered", exc)


def checkpoint(name: str) -> Checkpoint:
    """The checkpoint hook named ``name`` (same name, same object).

    >>> import otel_pipeline as op
    >>> op.checkpoint("listener-1") is op.checkpoint("listener-1")
    True
    """
    return get_hook(Checkpoint, name)
