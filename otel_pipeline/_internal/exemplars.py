"""Exemplars: which measurements carry a trace id, at a cost only inside sampled spans.

The plain SDK asks the current context about the span on every measurement (trace-based
exemplar filter). We keep a count of sampled spans in progress, maintained by a span processor
on every tracer provider we build, so that a measurement made while no sampled span is open
pays one attribute read and nothing else.
"""

from __future__ import annotations

import threading
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

__all__ = ["TRACKER", "SampledSpanTracker", "current_sampled_ids"]


class SampledSpanTracker(SpanProcessor):
    """A span processor that counts the sampled spans started and not yet ended."""

    def __init__(self) -> None:
        self.active = 0
        self._lock = threading.Lock()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        context = span.get_span_context()
        if context is not None and context.trace_flags.sampled:
            with self._lock:
                self.active += 1

    def on_end(self, span: ReadableSpan) -> None:
        context = span.get_span_context()
        if context is not None and context.trace_flags.sampled:
            with self._lock:
                self.active = max(0, self.active - 1)

    def shutdown(self) -> None:
        """Nothing to release."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing buffered."""
        return True


#: The one tracker, shared by every tracer provider otel_pipeline builds.
TRACKER = SampledSpanTracker()


def current_sampled_ids() -> tuple[int, int] | None:
    """``(span_id, trace_id)`` of the current span when it is valid and sampled, else None."""
    span: Any = trace.get_current_span()
    context = span.get_span_context()
    if context.trace_flags.sampled and context.is_valid:
        return context.span_id, context.trace_id
    return None
