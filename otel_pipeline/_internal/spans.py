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

import copy
import random
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.propagation import _SPAN_KEY
from opentelemetry.trace.span import DEFAULT_TRACE_STATE

__all__ = [
    "NO_SPAN",
    "SPAN_KEY",
    "ContextScope",
    "HookTracer",
    "PresetIdGenerator",
    "SpanScope",
    "current_context",
    "restore_context",
    "use_context",
]

_TRACE_ID_LIMIT = (1 << 64) - 1
_UNSAMPLED = TraceFlags(TraceFlags.DEFAULT)


def _context_var() -> Any:
    """The ContextVar behind the OpenTelemetry runtime context, when it is the default one.

    Reading and setting it directly is what ``context.get_current``/``attach``/``detach`` do,
    minus three layers of calls; with any other runtime context we use the public API.
    """
    from opentelemetry.context import _RUNTIME_CONTEXT

    var = getattr(_RUNTIME_CONTEXT, "_current_context", None)
    return var if var is not None and hasattr(var, "reset") else None


_CONTEXT = _context_var()
#: The key of the current span in an OpenTelemetry context.
SPAN_KEY = _SPAN_KEY


def _public_current_context() -> Any:  # pragma: no cover - a custom OpenTelemetry runtime context
    return otel_context.get_current()


#: The current OpenTelemetry context (a mapping; ``.get(SPAN_KEY)`` is the current span or None),
#: read straight from its ContextVar when the default runtime context is in use.
current_context: Any = _CONTEXT.get if _CONTEXT is not None else _public_current_context


def _make_current(span: Any) -> object:
    """Make ``span`` the current span; returns the token to restore the previous context."""
    if _CONTEXT is not None:
        # {**ctx} copies a Context (a dict subclass) faster than dict(ctx).
        return _CONTEXT.set(Context({**_CONTEXT.get(), _SPAN_KEY: span}))
    return otel_context.attach(trace.set_span_in_context(span))  # pragma: no cover


def _restore(token: Any) -> None:
    if _CONTEXT is not None:
        try:
            _CONTEXT.reset(token)
        except ValueError:  # ended in another context (e.g. a different asyncio task)
            otel_context.detach(token)
        return
    otel_context.detach(token)  # pragma: no cover


def use_context(context: Context) -> object:
    """Make ``context`` the current OpenTelemetry context; :func:`restore_context` takes the token."""
    if _CONTEXT is not None:
        return _CONTEXT.set(context)
    return otel_context.attach(context)  # pragma: no cover


#: Restore the context that was current before :func:`use_context` (or a span was made current).
restore_context = _restore


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
        _restore(self._token)


class _UnsampledRoot(NonRecordingSpan):
    """A non-recording, unsampled root span whose SpanContext is built only if someone asks.

    Most unsampled roots are never looked at (no child span, no propagation), so the tuple is
    not built up front; its ids are drawn up front, so every reader sees the same context.
    """

    def __init__(self, trace_id: int, span_id: int) -> None:  # no super(): _context is lazy
        self._ids = (trace_id, span_id)
        self._context: SpanContext | None = None  # type: ignore[assignment]

    def get_span_context(self) -> SpanContext:
        context = self._context
        if context is None:
            trace_id, span_id = self._ids
            # Ids we drew are valid by construction: skip SpanContext's validating __new__.
            context = tuple.__new__(
                SpanContext, (trace_id, span_id, False, _UNSAMPLED, DEFAULT_TRACE_STATE, True)
            )
            self._context = context
        return context


class _UnsampledScope:
    """An unsampled root made current: ending it only restores the context."""

    __slots__ = ("_token", "span")

    def __init__(self, span: Any, token: object) -> None:
        self.span = span
        self._token = token

    def end(self, error: BaseException | None = None, attributes: Mapping[str, Any] | None = None) -> None:
        if _CONTEXT is not None:  # _restore(), inline: this runs for nearly every call at low rates
            try:
                _CONTEXT.reset(self._token)
                return
            except ValueError:  # ended in another context (e.g. a different asyncio task)
                pass
        _restore(self._token)


class _NoSpan:
    """Returned when no span is needed: ending it does nothing."""

    __slots__ = ()
    span = trace.INVALID_SPAN

    def end(self, error: BaseException | None = None, attributes: Mapping[str, Any] | None = None) -> None:
        return None


NO_SPAN: Any = _NoSpan()
#: A context made current with no span of ours (e.g. a job's unsampled parent): ``end()`` restores.
ContextScope = _UnsampledScope


class HookTracer:
    """Starts the hooks' spans on one tracer provider, sampling cheaply (see module docs)."""

    #: The kind of the spans :meth:`start` makes when not told otherwise (see :meth:`of_kind`).
    kind = SpanKind.INTERNAL

    def __init__(self, tracer: trace.Tracer | None, rate: float, ids: PresetIdGenerator | None) -> None:
        self._tracer = tracer
        #: False when tracing is off: callers skip :meth:`start` altogether.
        self.enabled = tracer is not None
        #: Whether a span with no parent can be sampled; when not, a span is needed only under a
        #: sampled parent, and callers may skip :meth:`start` when no span is current at all.
        self.roots = tracer is not None and rate > 0.0
        self._ids = ids
        self._rate = rate
        self._bound = TraceIdRatioBased.get_bound_for_rate(rate)

    def of_kind(self, kind: SpanKind) -> HookTracer:
        """The same tracer (same provider, same sampling), starting ``kind`` spans by default.

        The kind is looked at only when the SDK creates a span, so that timed hooks pass
        nothing more on their calls that make none (a CONSUMER span for every queue job).
        """
        twin = copy.copy(self)
        twin.kind = kind
        return twin

    def start(
        self,
        name: str,
        attributes: Mapping[str, Any] | None = None,
        kind: SpanKind | None = None,
        links: Sequence[Link] | None = None,
    ) -> Any:
        """Start a span (made current) and return its scope; :data:`NO_SPAN` when none is needed.

        ``links`` go on the span when it is sampled (they do not change the sampling decision).
        """
        tracer = self._tracer
        if tracer is None:
            return NO_SPAN
        context = current_context()
        current = context.get(_SPAN_KEY)
        if current is not None and (parent := current.get_span_context()).is_valid:
            if not parent.trace_flags.sampled:
                return NO_SPAN
        elif self._rate < 1.0:
            if self._rate <= 0.0:
                return NO_SPAN
            bits = random.getrandbits(192)  # a trace id and a span id in one draw
            trace_id = (bits >> 64) or 1
            if trace_id & _TRACE_ID_LIMIT >= self._bound:
                # The common case at low rates, kept short: a lazy unsampled root made current.
                unsampled = _UnsampledRoot(trace_id, (bits & _TRACE_ID_LIMIT) or 1)
                if _CONTEXT is not None:
                    token = _CONTEXT.set(Context({**context, _SPAN_KEY: unsampled}))
                    return _UnsampledScope(unsampled, token)
                return _UnsampledScope(unsampled, _make_current(unsampled))  # pragma: no cover
            if self._ids is not None:
                self._ids.preset_trace_id(trace_id)
        span = tracer.start_span(
            name, kind=self.kind if kind is None else kind, attributes=attributes, links=links
        )
        return SpanScope(span, _make_current(span))
