"""The one mechanism behind every timed hook: a context manager that is also a decorator.

A hook describes an operation by subclassing :class:`Operation` (what to record when it starts
and ends); :class:`Timed` does the rest the same way for all of them: sync and async ``with``,
decorating plain functions and coroutines (a fresh timer per call, so it is re-entrant and
thread-safe), the span, and re-raising the caller's exception after recording it. An operation
with a ``timeout`` cancels an ``async with`` block (or decorated coroutine) that outlives it and
raises ``TimeoutError`` instead (:class:`Deadline`, the same semantics as ``asyncio.timeout``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
from collections.abc import Callable, Mapping
from time import perf_counter
from types import TracebackType
from typing import Any, Protocol, TypeVar

from otel_pipeline._internal.boundary import internal_error, strict
from otel_pipeline._internal.errors import warn_once
from otel_pipeline._internal.spans import NO_SPAN, SPAN_KEY, HookTracer, current_context

__all__ = ["Deadline", "Noop", "Operation", "Timed", "TimedScope", "bind_result", "decorate", "error_type"]

F = TypeVar("F", bound=Callable[..., Any])


class TimedScope(Protocol):
    """What a timed hook method returns: a :class:`Timed`, or a :class:`Noop` when off.

    A sync and async context manager that is also a decorator of functions and coroutines.
    """

    def __enter__(self) -> Any: ...
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...
    async def __aenter__(self) -> Any: ...
    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...
    def __call__(self, function: F) -> F: ...


def error_type(exc_type: type[BaseException] | None) -> str | None:
    """The ``error.type`` attribute value for an exception class (its qualified name)."""
    return None if exc_type is None else exc_type.__qualname__


class Operation:
    """What one kind of timed call records. Subclasses override :meth:`begin` and :meth:`end`."""

    __slots__ = ("_binds_result", "factory", "span_attributes", "span_name", "timeout", "tracer")

    def __init__(
        self,
        tracer: HookTracer,
        span_name: str,
        span_attributes: Mapping[str, Any],
        factory: Callable[[], Any],
        timeout: float | None = None,
    ) -> None:
        self.tracer = tracer
        self.span_name = span_name
        self.span_attributes = dict(span_attributes)
        #: Makes a fresh context manager for one call (the hook method that made this operation),
        #: so a decorated function records into whatever pipeline is configured when it runs.
        self.factory = factory
        #: Seconds after which an async call is cancelled and ``TimeoutError`` raised (None: no limit).
        self.timeout = timeout
        # Most operations bind the timer itself; only those overriding result() pay for the call.
        self._binds_result = type(self).result is not Operation.result

    def begin(self) -> None:
        """Called when the call starts (e.g. in-flight +1)."""

    def end(self, duration: float, exc_type: type[BaseException] | None, timed: Timed) -> None:
        """Called when the call ends, with its duration in seconds and the exception class, if any."""

    def result(self, timed: Timed) -> Any:
        """What ``with ... as x`` binds; the timer itself by default."""
        return timed

    def fallback(self, timed: Timed) -> Any:
        """What ``with ... as x`` binds when :meth:`result` failed: what the hook binds when off.

        An operation whose :meth:`result` is not the timer overrides it (the same type, inert).
        """
        return timed


def bind_result(op: Operation, timed: Timed) -> Any:
    """``op.result(timed)``; on an internal fault, ``op.fallback(timed)`` (never into user code)."""
    try:
        return op.result(timed)
    except Exception as exc:
        timed._failed_to_start(exc, "result")
    return op.fallback(timed)


class Timed:
    """One timed call of an :class:`Operation` (see module docs)."""

    __slots__ = ("_deadline", "_op", "_scope", "_start", "extra", "span_attributes")

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

    @property
    def timed_out(self) -> bool:
        """True when the operation's ``timeout`` cancelled this (async) call."""
        deadline: Deadline | None = getattr(self, "_deadline", None)  # only set by ``async with``
        return deadline is not None and deadline.expired

    def __enter__(self) -> Any:
        op = self._op
        try:
            tracer = op.tracer
            # Is a span current at all? (one ContextVar read; timers ask on every call)
            if tracer.roots or (tracer.enabled and current_context().get(SPAN_KEY) is not None):
                self._scope = tracer.start(op.span_name, op.span_attributes)
            op.begin()
        except Exception as exc:
            self._failed_to_start(exc)
        self._start = perf_counter()
        return bind_result(op, self) if op._binds_result else self

    def _failed_to_start(self, exc: Exception, step: str = "begin") -> None:
        """Log the fault of ``__enter__``; in strict mode end its span first (``__exit__`` won't run)."""
        op = self._op
        if strict():
            scope, self._scope = self._scope, NO_SPAN
            if scope is not NO_SPAN:
                with contextlib.suppress(Exception):
                    scope.end(exc)
        internal_error(f"{step}:{op.span_name}", exc, "%s failed to start recording", op.span_name)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        duration = perf_counter() - self._start
        op = self._op
        try:
            try:
                op.end(duration, exc_type, self)
            finally:  # a fault in recording must not leave the span open and current
                scope = self._scope
                if scope is not NO_SPAN:
                    scope.end(exc, self.span_attributes)
        except Exception as exc:
            internal_error(f"end:{op.span_name}", exc, "%s failed to record", op.span_name)
        # Returning None: the caller's exception, if any, propagates unchanged.

    async def __aenter__(self) -> Any:
        result = self.__enter__()
        timeout = self._op.timeout
        self._deadline = None if timeout is None else Deadline.start(timeout)
        return result

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        deadline = self._deadline
        if deadline is not None and deadline.stop(exc_type):
            op = self._op
            error = TimeoutError(f"{op.span_name}: no result within its timeout of {op.timeout} s")
            self.__exit__(TimeoutError, error, tb)
            raise error from exc
        self.__exit__(exc_type, exc, tb)

    def __call__(self, function: F) -> F:
        """Decorate a function or coroutine function: each call is timed by a fresh timer."""
        return decorate(function, self._op.factory)


class Deadline:
    """Cancels the running asyncio task after ``seconds``, like ``asyncio.timeout`` (also on 3.10).

    :meth:`stop` disarms it and tells whether its cancellation ended the block, in which case the
    caller raises ``TimeoutError``; any other cancellation of the task is left alone.
    """

    __slots__ = ("_cancelling", "_handle", "_task", "expired")

    def __init__(self, task: asyncio.Task[Any], seconds: float) -> None:
        self._task = task
        cancelling = getattr(task, "cancelling", None)  # Python 3.11+
        self._cancelling: int = cancelling() if cancelling is not None else 0
        self.expired = False
        self._handle = asyncio.get_running_loop().call_later(seconds, self._expire)

    @classmethod
    def start(cls, seconds: float) -> Deadline | None:
        """A deadline on the current task; None (logged once) outside an asyncio task."""
        try:
            task = asyncio.current_task()
        except RuntimeError:
            task = None
        if task is None:
            warn_once("deadline", "a timeout is only enforced inside an asyncio task")
            return None
        return cls(task, seconds)

    def _expire(self) -> None:
        self.expired = True
        self._task.cancel()

    def stop(self, exc_type: type[BaseException] | None) -> bool:
        """Disarm; True when the block ended with the cancellation this deadline caused."""
        self._handle.cancel()
        if not self.expired:
            return False
        uncancel = getattr(self._task, "uncancel", None)  # Python 3.11+
        remaining = uncancel() if uncancel is not None else 0
        return (
            exc_type is not None
            and issubclass(exc_type, asyncio.CancelledError)
            and remaining <= self._cancelling
        )


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
