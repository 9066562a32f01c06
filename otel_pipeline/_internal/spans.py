"""Spans for hooks, with the sampling decision made before entering the SDK where it is known.

Parent-based ratio sampling, kept exactly:

* a valid parent that is not sampled: its children are not sampled either, so we create
  nothing (the parent stays current and user spans inside inherit it);
* a sampled parent: the SDK records the child span;
* no parent: we draw the trace id ourselves and apply the same test the SDK's
  ``TraceIdRatioBased`` sampler applies to it. If it says no, a non-recording span carrying
  that trace id (not sampled) becomes current, so spans started inside stay unsampled; if it
  says yes, the SDK creates the root span with that very trace id (through our id generator),
  so its sampler reaches the same decision.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

__all__ = ["NO_SPAN", "HookTracer", "PresetIdGenerator", "SpanScope"]

_TRACE_ID_LIMIT = (1 << 64) - 1
_UNSAMPLED = TraceFlags(TraceFlags.DEFAULT)


class PresetIdGenerator(RandomIdGenerator):
    """Random ids, except a trace id preset by :class:`HookTracer` for the next root span."""

    def __init__(self) -> None:
        self._preset = threading.local()

    def preset_trace_id(self, trace_id: int) -> None:
        self._preset.trace_id = trace_id

    def generate_trace_id(self) -> int:
        trace_id: int | None = getattr(self._preset, "trace_id", None)
        if trace_id is not None:
            self._preset.trace_id = None
            return trace_id
        return super().generate_trace_id()


class SpanScope:
    """A started span made current; :meth:`end` records the outcome and restores the context."""

    __slots__ = ("_span", "_token")

    def __init__(self, span: Any, token: object) -> None:
        self._span = span
        self._token = token

    @property
    def span(self) -> Any:
        return self._span

    def end(self, error: BaseException | None = None, attributes: Mapping[str, Any] | None = None) -> None:
        span = self._span
        if span.is_recording():
            if attributes:
                span.set_attributes(attributes)
            if error is not None:
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
                span.set_attribute("error.type", type(error).__qualname__)
            span.end()
        otel_context.detach(self._token)  # type: ignore[arg-type]


class _NoSpan:
    """Returned when no span is needed: ending it does nothing."""

    __slots__ = ()
    span = trace.INVALID_SPAN

    def end(self, error: BaseException | None = None, attributes: Mapping[str, Any] | None = None) -> None:
        return None


NO_SPAN: Any = _NoSpan()


class HookTracer:
    """Starts the hooks' spans on one tracer provider, sampling cheaply (see module docs)."""

    def __init__(self, tracer: trace.Tracer | None, rate: float, ids: PresetIdGenerator | None) -> None:
        self._tracer = tracer
        self._ids = ids
        self._rate = rate
        self._bound = TraceIdRatioBased.get_bound_for_rate(rate)

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    def start(
        self, name: str, attributes: Mapping[str, Any] | None = None, kind: SpanKind = SpanKind.INTERNAL
    ) -> Any:
        """Start a span (made current) and return its scope; :data:`NO_SPAN` when none is needed."""
        tracer = self._tracer
        if tracer is None:
            return NO_SPAN
        parent = trace.get_current_span().get_span_context()
        if parent.is_valid:
            if not parent.trace_flags.sampled:
                return NO_SPAN
        elif self._rate < 1.0:
            if self._rate <= 0.0:
                return NO_SPAN
            trace_id = random.getrandbits(128) or 1
            if trace_id & _TRACE_ID_LIMIT >= self._bound:
                span_context = SpanContext(trace_id, random.getrandbits(64) or 1, False, _UNSAMPLED)
                token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(span_context)))
                return SpanScope(NonRecordingSpan(span_context), token)
            if self._ids is not None:
                self._ids.preset_trace_id(trace_id)
        span = tracer.start_span(name, kind=kind, attributes=attributes)
        token = otel_context.attach(trace.set_span_in_context(span))
        return SpanScope(span, token)
