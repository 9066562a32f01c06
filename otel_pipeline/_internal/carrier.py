"""A job's trace context across a queue: written by the producer, continued by the consumer.

The producer writes the current trace context into a *carrier* (a job's headers, a dict of str)
through the configured propagator (``opentelemetry.propagate``: W3C ``traceparent``,
``tracestate`` and ``baggage`` by default); the consumer's span continues it, as a child of the
producer's span (one job) or with a link to each job's (a batch).

With the default propagators, ``traceparent`` is written and read here directly: the same
format and the same checks as the SDK's ``TraceContextTextMapPropagator`` (a test compares the
two), at a fraction of the cost, so that a carrier on the hot path stays cheap. Anything else
(``tracestate`` or ``baggage`` present, another propagator configured) goes through the API.

In-process queues carry the producer's span beside each item instead: their instrumentation
calls :func:`took` when a get() hands an item out, and the next ``processing()`` of that queue in
the same thread or task takes it with :func:`taken`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from contextvars import ContextVar
from time import perf_counter
from types import TracebackType
from typing import Any

from opentelemetry import propagate
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.trace.span import DEFAULT_TRACE_STATE

from otel_pipeline._internal.boundary import application_error, internal_error
from otel_pipeline._internal.errors import warn_once
from otel_pipeline._internal.spans import (
    NO_SPAN,
    SPAN_KEY,
    ContextScope,
    HookTracer,
    current_context,
    restore_context,
    use_context,
)
from otel_pipeline._internal.timed import Noop, Operation, Timed, bind_result

__all__ = [
    "Batch",
    "Continued",
    "NoopContinued",
    "decorate_calls",
    "inject",
    "publish",
    "span_context",
    "taken",
    "took",
]

_TRACEPARENT = TraceContextTextMapPropagator._TRACEPARENT_HEADER_FORMAT_RE
_TRACEPARENT_MAX = TraceContextTextMapPropagator._TRACEPARENT_MAXIMUM_LENGTH
_ZERO_TRACE_ID = "0" * 32
_ZERO_SPAN_ID = "0" * 16
#: Trace flags by their two hex digits in a traceparent (one object each, made once).
_FLAGS = {f"{value:02x}": TraceFlags(value) for value in range(256)}


class _Propagation:
    """How to write and read carriers for one configured propagator."""

    __slots__ = ("baggage", "direct", "textmap")

    def __init__(self, textmap: object) -> None:
        self.textmap = textmap
        parts: Sequence[object] = (
            getattr(textmap, "_propagators", ()) if type(textmap) is CompositePropagator else (textmap,)
        )
        kinds = [type(part) for part in parts]
        #: The default propagators (or TraceContext alone): traceparent is handled here directly.
        self.direct = kinds in (
            [TraceContextTextMapPropagator],
            [TraceContextTextMapPropagator, W3CBaggagePropagator],
        )
        self.baggage: Any = parts[1] if self.direct and len(parts) == 2 else None


_checked = _Propagation(None)


def _propagation() -> _Propagation:
    """The handling of the configured propagator (looked at again only when it changes)."""
    global _checked
    textmap = propagate.get_global_textmap()
    checked = _checked
    if checked.textmap is not textmap:
        checked = _checked = _Propagation(textmap)
    return checked


# -- producer ------------------------------------------------------------------------------------


def inject(carrier: MutableMapping[str, str]) -> None:
    """Write the current trace context into ``carrier`` (nothing when no span context is current)."""
    how = _propagation()
    if not how.direct:
        propagate.inject(carrier)
        return
    context = current_context()
    span = context.get(SPAN_KEY)
    if span is not None:
        span_context = span.get_span_context()
        if span_context.is_valid:
            carrier["traceparent"] = (
                f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{span_context.trace_flags:02x}"
            )
            if span_context.trace_state:
                carrier["tracestate"] = span_context.trace_state.to_header()
    if how.baggage is not None:
        how.baggage.inject(carrier, context)


def publish(
    tracer: HookTracer, name: str, attributes: Mapping[str, Any], carrier: MutableMapping[str, str]
) -> None:
    """A PRODUCER span ``name`` (only when sampled), its context written into ``carrier``.

    Unsampled, no span is created: the current context (an unsampled parent, or the unsampled
    root drawn for this job) is written as it is, so the consumer stays unsampled.
    """
    scope = NO_SPAN
    try:
        if tracer.roots or (tracer.enabled and current_context().get(SPAN_KEY) is not None):
            scope = tracer.start(name, attributes, SpanKind.PRODUCER)
    except Exception as exc:
        internal_error(f"carrier:publish-span:{name}", exc)
    try:
        inject(carrier)
    except Exception as exc:
        if type(carrier) is dict:  # a plain dict takes any string: the fault is ours (or the propagator's)
            internal_error(f"carrier:publish:{name}", exc)
        else:  # the application's mapping refused it (read-only...)
            message = "could not write the trace context of %s into its carrier"
            application_error(f"carrier:publish:{name}", exc, message, name)
    finally:  # also when strict mode raises: the span must not stay current
        try:
            scope.end()
        except Exception as exc:
            internal_error(f"carrier:publish-span:{name}", exc)


# -- consumer ------------------------------------------------------------------------------------


class _Remote(NonRecordingSpan):
    """The producer's span read from a ``traceparent``: its SpanContext is built only if asked for.

    Under an unsampled producer nothing usually asks (no span is started, nothing propagated
    further), so the ids are kept as the hex digits they arrived as.
    """

    def __init__(self, trace_id: str, span_id: str, flags: TraceFlags) -> None:  # no super(): lazy
        self._ids = (trace_id, span_id, flags)
        self._context: SpanContext | None = None  # type: ignore[assignment]
        self.sampled = bool(flags & 1)

    def get_span_context(self) -> SpanContext:
        context = self._context
        if context is None:
            trace_id, span_id, flags = self._ids
            # Parsed ids are valid by construction: skip SpanContext's validating __new__.
            context = tuple.__new__(
                SpanContext, (int(trace_id, 16), int(span_id, 16), True, flags, DEFAULT_TRACE_STATE, True)
            )
            self._context = context
        return context


def _parse(header: str) -> _Remote | None:
    """A ``traceparent`` value's span, accepted exactly as the SDK's propagator does."""
    if len(header) > _TRACEPARENT_MAX:
        return None
    match = _TRACEPARENT.match(header)  # anchored: the same as the SDK's search()
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if (
        trace_id == _ZERO_TRACE_ID
        or span_id == _ZERO_SPAN_ID
        or version == "ff"
        or (version == "00" and rest)
    ):
        return None
    return _Remote(trace_id, span_id, _FLAGS[flags])


def _read(carrier: object, context: Context) -> tuple[Any, Context]:
    """The carrier's span (None when it carries no valid span context), and ``context`` with it in."""
    try:
        if type(carrier) is not dict and not isinstance(carrier, Mapping):
            warn_once(
                "carrier:type",
                "a carrier that is not a mapping (%s) was ignored: no trace context to continue",
                type(carrier).__name__,
            )
            return None, context
        textmap = propagate.get_global_textmap()
        if (_checked if _checked.textmap is textmap else _propagation()).direct:
            header = carrier.get("traceparent")
            if type(header) is str and (
                len(carrier) == 1 or ("tracestate" not in carrier and "baggage" not in carrier)
            ):
                remote = _parse(header)
                if remote is None:
                    return None, context
                return remote, Context({**context, SPAN_KEY: remote})
            if header is None and "baggage" not in carrier:
                return None, context
        extracted = propagate.extract(carrier, context=context)
        span: Any = extracted.get(SPAN_KEY)
        if span is None or span is context.get(SPAN_KEY) or not span.get_span_context().is_valid:
            return None, extracted
        return span, extracted
    except Exception as exc:  # the application's carrier (a mapping whose get or len raises, or its values)
        application_error("carrier:read", exc, "a carrier could not be read; it was ignored")
        return None, context


def span_context(carrier: object) -> SpanContext | None:
    """``carrier``'s span context, or None when it has no valid one (or is not a mapping)."""
    span = _read(carrier, Context())[0]
    return None if span is None else span.get_span_context()


#: The span of the item the last get() of an instrumented queue handed out in this thread or
#: task, with that queue's hook: the next processing() of that hook here continues it.
_TAKEN: ContextVar[tuple[object, Any] | None] = ContextVar("otel_pipeline_taken", default=None)


def took(owner: object, span: Any) -> None:
    """A get() of ``owner``'s queue handed out an item put while ``span`` was current (or None)."""
    _TAKEN.set((owner, span))


def taken(owner: object) -> SpanContext | None:
    """The span context of the item last taken from ``owner``'s queue here, once; else None."""
    found = _TAKEN.get()
    if found is None or found[0] is not owner:
        return None
    _TAKEN.set(None)
    span = found[1]
    if span is None:
        return None
    context: SpanContext = span.get_span_context()
    return context if context.is_valid else None


class _ChildScope:
    """A sampled child of a job's context: ending it ends the span, then restores the context."""

    __slots__ = ("_scope", "_token")

    def __init__(self, scope: Any, token: object) -> None:
        self._scope = scope
        self._token = token

    @property
    def span(self) -> Any:
        return self._scope.span

    def end(self, error: BaseException | None = None, attributes: Mapping[str, Any] | None = None) -> None:
        try:
            self._scope.end(error, attributes)
        finally:
            restore_context(self._token)


class Continued(Timed):
    """A timed call whose span continues a job's trace: a child of its context, or a link to it.

    ``sources`` are carriers (mappings, read when the call starts) or span contexts already read
    (an in-process queue's item). With ``link`` false, the first is the parent and is made
    current for the block (an unsampled one too, without a span of ours: spans inside stay
    unsampled); with ``link`` true (a batch), the span links to every valid one, its own parent
    being what is current. A source without a valid context is ignored: the span is what it would be
    without it. ``decorating`` is ``(maker, arguments)``: ``maker(*arguments)`` returns what
    makes the context manager of one decorated call from that call's arguments (built only when
    decorating: most calls are ``with`` blocks, and this keeps their construction cheap).
    """

    __slots__ = ("_decorating", "_link", "_sources")
    #: How many jobs the call processes (a batch: the operation begins and ends once per job).
    _jobs = 1

    def __init__(
        self,
        op: Operation,
        sources: Sequence[object],
        link: bool = False,
        decorating: tuple[Callable[..., Callable[..., Any]], tuple[Any, ...]] | None = None,
    ) -> None:
        # Timed.__init__, inline (this runs once per job).
        self._op = op
        self._scope = NO_SPAN
        self.extra = None
        self.span_attributes = None
        self._sources = sources
        self._link = link
        self._decorating = decorating

    def __enter__(self) -> Any:
        op = self._op
        try:
            tracer = op.tracer
            if tracer.enabled:
                if self._link:
                    links = [Link(found) for found in map(span_context, self._sources) if found is not None]
                    self._scope = tracer.start(op.span_name, op.span_attributes, None, links)
                else:
                    self._scope = self._continue(tracer, op)
            if self._jobs == 1:
                op.begin()
            else:
                for _ in range(self._jobs):
                    op.begin()
        except Exception as exc:
            self._failed_to_start(exc)
        self._start = perf_counter()
        return bind_result(op, self) if op._binds_result else self

    def _continue(self, tracer: HookTracer, op: Operation) -> Any:
        """The scope of a child of the job's context (that context made current), or as without one."""
        source = self._sources[0]
        if type(source) is SpanContext:  # an in-process queue's item
            span: Any = NonRecordingSpan(source)
            sampled = source.trace_flags.sampled
            context = Context({**current_context(), SPAN_KEY: span})
        else:
            span, context = _read(source, current_context())
            if span is None:  # nothing to continue
                if tracer.roots or current_context().get(SPAN_KEY) is not None:
                    return tracer.start(op.span_name, op.span_attributes)
                return NO_SPAN
            sampled = span.sampled if type(span) is _Remote else span.get_span_context().trace_flags.sampled
        token = use_context(context)
        if sampled:  # parent-based: the SDK's child of the job's span
            return _ChildScope(tracer.start(op.span_name, op.span_attributes), token)
        return ContextScope(span, token)  # unsampled: no span, the job's context stays current

    def __call__(self, function: Any) -> Any:
        """Decorate a function or coroutine function; a carrier function reads each call's carrier."""
        decorating = self._decorating
        if decorating is None:
            return decorate_calls(function, _ignoring_arguments(self._op.factory))
        maker, arguments = decorating
        return decorate_calls(function, maker(*arguments))


class Batch(Continued):
    """A batch of ``jobs`` jobs processed together: one span linked to each, the jobs counted."""

    __slots__ = ("_jobs",)

    def __init__(
        self,
        op: Operation,
        sources: Sequence[object],
        jobs: int,
        decorating: tuple[Callable[..., Callable[..., Any]], tuple[Any, ...]] | None = None,
    ) -> None:
        Continued.__init__(self, op, sources, True, decorating)
        self._jobs = jobs

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        duration = perf_counter() - self._start
        op = self._op
        try:
            try:
                for _ in range(self._jobs):
                    op.end(duration, exc_type, self)
            finally:
                if self._scope is not NO_SPAN:
                    self._scope.end(exc, self.span_attributes)
        except Exception as exc:
            internal_error(f"end:{op.span_name}", exc, "%s failed to record", op.span_name)


class NoopContinued(Noop):
    """What processing() with carriers hands out when instrumentation is off (decorates lazily)."""

    __slots__ = ()

    def __call__(self, function: Any) -> Any:
        return decorate_calls(function, self._factory)


def decorate_calls(function: Any, factory: Callable[..., Any]) -> Any:
    """Wrap ``function`` (plain or coroutine): each call runs in ``factory(*its arguments)``."""
    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            async with factory(*args, **kwargs):
                return await function(*args, **kwargs)

        return async_wrapper

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with factory(*args, **kwargs):
            return function(*args, **kwargs)

    return wrapper


def _ignoring_arguments(factory: Callable[[], Any]) -> Callable[..., Any]:
    return lambda *args, **kwargs: factory()
