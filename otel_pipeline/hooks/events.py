"""Events: events processed by type and outcome, processing duration, events in flight; a span each.

>>> import otel_pipeline as op
>>> orders = op.events("orders")
>>> with orders.process("order.created", event_id="o-1"):
...     pass
"""

from __future__ import annotations

import functools

from otel_pipeline._internal.boundary import internal_error
from otel_pipeline._internal.catalogue import declare
from otel_pipeline._internal.errors import warn_once
from otel_pipeline._internal.hook import Hook, get_hook
from otel_pipeline._internal.outcomes import OutcomeOperation, OutcomeSeries
from otel_pipeline._internal.runtime import Runtime
from otel_pipeline._internal.spec import Kind
from otel_pipeline._internal.timed import Noop, Timed, TimedScope
from otel_pipeline._internal.validation import identifier, label

__all__ = ["Events", "events"]

HOOK = "events"
SOURCE = "event.source"
TYPE = "event.type"
PROCESSED = declare(
    "events.processed",
    Kind.COUNTER,
    "{event}",
    "Events processed, by type and outcome (success, or failure with error.type).",
    [SOURCE, TYPE, "outcome", "error.type"],
    hook=HOOK,
)
DURATION = declare(
    "events.processing.duration",
    Kind.HISTOGRAM,
    "s",
    "Time spent processing one event, by type and outcome.",
    [SOURCE, TYPE, "outcome", "error.type"],
    hook=HOOK,
)
IN_FLIGHT = declare(
    "events.in_flight",
    Kind.UP_DOWN_COUNTER,
    "{event}",
    "Events being processed now.",
    [SOURCE, TYPE],
    hook=HOOK,
)
#: Operations kept per source; past it each call binds afresh (still correct, only slower).
_MAX_TYPES = 256


class _Bound:
    __slots__ = ("operations", "pipeline")

    def __init__(self, pipeline: Runtime) -> None:
        self.pipeline = pipeline
        self.operations: dict[str, OutcomeOperation] = {}


class Events(Hook[_Bound]):
    """The events of one source. Get it with :func:`otel_pipeline.events`.

    >>> import otel_pipeline as op
    >>> @op.events("orders").process("order.paid")
    ... def on_paid(order: dict[str, int]) -> int:
    ...     return order["amount"]
    >>> on_paid({"amount": 3})
    3
    """

    kind = "events"

    def _bind(self, pipeline: Runtime) -> _Bound:
        return _Bound(pipeline)

    def process(self, event_type: str, *, event_id: str | int | None = None) -> TimedScope:
        """Process one event of ``event_type``: ``with``, ``async with`` or a decorator.

        Counts it by outcome, times it, holds it in flight meanwhile and gives it a span named
        ``events.process <source> <event_type>``; ``event_id`` (high-cardinality) goes on the
        span only. A bad ``event_type`` is recorded as ``_INVALID`` and a bad ``event_id`` left
        off the span (one warning each); the block runs either way.

        >>> import otel_pipeline as op
        >>> async def handle() -> None:
        ...     async with op.events("orders").process("order.created"):
        ...         pass
        """
        span_attributes = None
        if event_id is not None:
            event_text = identifier(self, "process", "event_id", event_id)
            span_attributes = None if event_text is None else {"event.id": event_text}
        try:
            bound = self._current()
            if bound is not None:
                operation = bound.operations.get(event_type) if type(event_type) is str else None
                if operation is None:
                    operation = self._operation(bound, event_type)
                timed = Timed(operation)
                timed.span_attributes = span_attributes
                return timed
        except Exception as exc:
            internal_error("events.process", exc)
        return Noop(functools.partial(self.process, label(self, "process", "event_type", event_type)))

    def _operation(self, bound: _Bound, event_type: str) -> OutcomeOperation:
        event_type = label(self, "process", "event_type", event_type)
        known = bound.operations.get(event_type)
        if known is not None:  # a bad event type, recorded as _INVALID
            return known
        pipeline = bound.pipeline
        assert pipeline.registry is not None
        attributes = {SOURCE: self.name, TYPE: event_type}
        operation = OutcomeOperation(
            pipeline.tracer,
            f"events.process {self.name} {event_type}",
            attributes,
            functools.partial(self.process, event_type),
            OutcomeSeries(pipeline.registry, PROCESSED, DURATION, IN_FLIGHT, attributes),
        )
        if len(bound.operations) < _MAX_TYPES:
            bound.operations[event_type] = operation
        else:
            warn_once(
                f"event-types:{self.name}",
                "events %r has more than %d event types; is an id used as event_type?",
                self.name,
                _MAX_TYPES,
            )
        return operation


def events(source: str) -> Events:
    """The events hook of ``source`` (same name, same object).

    >>> import otel_pipeline as op
    >>> op.events("orders") is op.events("orders")
    True
    """
    return get_hook(Events, source)
