"""The one mechanism behind every timed hook: a context manager that is also a decorator.

A hook describes an operation by subclassing :class:`Operation` (what to record when it starts
and ends); :class:`Timed` does the rest the same way for all of them: sync and async ``with``,
decorating plain functions and coroutines (a fresh timer per call, so it is re-entrant and
thread-safe), the span, and re-raising the caller's exception after recording it.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from time import perf_counter
from types import TracebackType
from typing import Any, TypeVar

from otel_pipeline._internal.errors import logger, warn_once
from otel_pipeline._internal.spans import NO_SPAN, HookTracer

__all__ = ["Noop", "Operation", "Timed", "decorate", "error_type"]

F = TypeVar("F", bound=Callable[..., Any])


def error_type(exc_type: type[BaseException] | None) -> str | None:
    """The ``error.type`` attribute value for an exception class (its qualified name)."""
    return None if exc_type is None else exc_type.__qualname__


class Operation:
    """What one kind of timed call records. Subclasses override :meth:`begin` and :meth:`end`."""

    __slots__ = ("factory", "span_attributes", "span_name", "tracer")

    def __init__(
        self,
        tracer: HookTracer,
        span_name: str,
        span_attributes: Mapping[str, Any],
        factory: Callable[[], Any],
    ) -> None:
        self.tracer = tracer
        self.span_name = span_name
        self.span_attributes = dict(span_attributes)
        #: Makes a fresh context manager for one call (the hook method that made this operation),
        #: so a decorated function records into whatever pipeline is configured when it runs.
        self.factory = factory

    def begin(self) -> None:
        """Called when the call starts (e.g. in-flight +1)."""

    def end(self, duration: float, exc_type: type[BaseException] | None, timed: Timed) -> None:
        """Called when the call ends, with its duration in seconds and the exception class, if any."""

    def result(self, timed: Timed) -> Any:
        """What ``with ... as x`` binds; the timer itself by default."""
        return timed


class Timed:
    """One timed call of an :class:`Operation` (see module docs)."""

    __slots__ = ("_op", "_scope", "_start", "extra", "span_attributes")

    def __init__(self, op: Operation) -> None:
        self._op = op
        self._scope: Any = NO_SPAN
        #: Operation-specific state for this call (e.g. a stage's item count).
        self.extra: Any = None
        #: Attributes to add to the span when it ends (high-cardinality values belong here).
        self.span_attributes: dict[str, Any] | None = None

    @property
    def span(self) -> Any:
        """The call's span (a non-recording one when not sampled)."""
        return self._scope.span

    def __enter__(self) -> Any:
        op = self._op
        try:
            if op.tracer.enabled:
                self._scope = op.tracer.start(op.span_name, op.span_attributes)
            op.begin()
        except Exception:
            warn_once(f"begin:{op.span_name}", "otel_pipeline: %s failed to start recording", op.span_name)
            logger.debug("begin failure", exc_info=True)
        self._start = perf_counter()
        return op.result(self)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        duration = perf_counter() - self._start
        op = self._op
        try:
            op.end(duration, exc_type, self)
            self._scope.end(exc, self.span_attributes)
        except Exception:
            warn_once(f"end:{op.span_name}", "otel_pipeline: %s failed to record", op.span_name)
            logger.debug("end failure", exc_info=True)
        # Returning None: the caller's exception, if any, propagates unchanged.

    async def __aenter__(self) -> Any:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, function: F) -> F:
        """Decorate a function or coroutine function: each call is timed by a fresh timer."""
        return decorate(function, self._op.factory)


def decorate(function: F, factory: Callable[[], Any]) -> F:
    """Wrap ``function`` (plain or coroutine) so that each call runs inside ``factory()``."""
    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            async with factory():
                return await function(*args, **kwargs)

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with factory():
            return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


class Noop:
    """What a timed hook hands out when instrumentation is off: does nothing, decorates lazily."""

    __slots__ = ("_factory",)
    span_attributes = None
    extra = None

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory

    def __enter__(self) -> Noop:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    async def __aenter__(self) -> Noop:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    def __call__(self, function: F) -> F:
        return decorate(function, self._factory)
