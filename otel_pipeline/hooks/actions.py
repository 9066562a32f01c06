"""Actions: executed by outcome (success, failure, timeout), ``error.type`` on failures, duration.

A timeout is an outcome of its own. An ``async with`` block or decorated coroutine that outlives
its timeout is cancelled and ``TimeoutError`` raised (like ``asyncio.timeout``, and whether or not
instrumentation is configured); a sync one cannot be interrupted, so one that ran past its timeout
is counted as a timeout when it ends (its span gets an error status), whatever it returned.

>>> import otel_pipeline as op
>>> notifier = op.actions("notifier")
>>> @notifier.track("send_email", timeout=5.0)
... def send_email(to: str) -> str:
...     return f"sent to {to}"
>>> send_email("ada@example.com")
'sent to ada@example.com'
"""

from __future__ import annotations

import functools
from typing import Any, TypeVar, cast

from opentelemetry.trace import Status, StatusCode

from otel_pipeline._internal.boundary import internal_error
from otel_pipeline._internal.catalogue import declare
from otel_pipeline._internal.errors import warn_once
from otel_pipeline._internal.hook import Hook, check_name, get_hook
from otel_pipeline._internal.outcomes import OutcomeOperation, OutcomeSeries
from otel_pipeline._internal.runtime import Runtime
from otel_pipeline._internal.spans import HookTracer
from otel_pipeline._internal.spec import Kind
from otel_pipeline._internal.timed import Noop, Operation, Timed, TimedScope
from otel_pipeline._internal.validation import check_timeout, label, safe_repr

__all__ = ["Actions", "InstrumentedExecutor", "actions"]

T = TypeVar("T")
HOOK = "actions"
EXECUTOR = "action.executor"
ACTION = "action.name"
EXECUTED = declare(
    "actions.executed",
    Kind.COUNTER,
    "{action}",
    "Actions executed, by outcome: success, failure (with error.type) or timeout.",
    [EXECUTOR, ACTION, "outcome", "error.type"],
    hook=HOOK,
)
DURATION = declare(
    "actions.duration",
    Kind.HISTOGRAM,
    "s",
    "Time one action took, by outcome (a cancelled one: up to its timeout).",
    [EXECUTOR, ACTION, "outcome", "error.type"],
    hook=HOOK,
)
_TIMEOUT = {"outcome": "timeout"}
#: Operations kept per executor; past it each call binds afresh (still correct, only slower).
_MAX_ACTIONS = 256
#: Records nothing; carries the timeout of an action tracked while instrumentation is off.
_UNTRACED = HookTracer(None, 0.0, None)

Key = tuple[str, float | None]


class _Action(OutcomeOperation):
    """One kind of action: success, failure with error.type, or timeout."""

    __slots__ = ()

    def end(self, duration: float, exc_type: type[BaseException] | None, timed: Timed) -> None:
        timeout = self.timeout
        if timeout is not None and (duration > timeout or (exc_type is TimeoutError and timed.timed_out)):
            self.outcomes.end(duration, _TIMEOUT)
            if exc_type is None:
                timed.span.set_status(Status(StatusCode.ERROR, f"ran past its timeout of {timeout} s"))
            return
        OutcomeOperation.end(self, duration, exc_type, timed)


class _Bound:
    __slots__ = ("operations", "pipeline")

    def __init__(self, pipeline: Runtime) -> None:
        self.pipeline = pipeline
        self.operations: dict[Key, _Action] = {}


class Actions(Hook[_Bound]):
    """The actions of one executor (a component that does things). Get it with :func:`otel_pipeline.actions`.

    >>> import otel_pipeline as op
    >>> with op.actions("notifier").track("send_sms"):
    ...     pass
    """

    kind = "actions"

    def __init__(self, name: str) -> None:
        super().__init__(name)
        #: Timeout-only operations, for actions tracked while instrumentation is off.
        self._untraced: dict[Key, Operation] = {}

    def _bind(self, pipeline: Runtime) -> _Bound:
        return _Bound(pipeline)

    def track(self, action: str, *, timeout: float | None = None) -> TimedScope:
        """Execute ``action``: ``with``, ``async with`` or a decorator (functions and coroutines).

        Counted by outcome and timed, with a span ``actions.execute <executor> <action>``. With a
        ``timeout`` (seconds), async calls are cancelled at the timeout and raise ``TimeoutError``;
        sync calls that ran past it are counted as timeouts. A bad ``action`` is recorded as
        ``_INVALID`` (one warning); a bad ``timeout`` changes what the call does, so it raises
        ``TypeError``/``ValueError`` like any option.

        >>> import asyncio
        >>> import otel_pipeline as op
        >>> @op.actions("notifier").track("push", timeout=0.01)
        ... async def push() -> None:
        ...     await asyncio.sleep(1)
        >>> asyncio.run(push())
        Traceback (most recent call last):
        ...
        TimeoutError: actions.execute notifier push: no result within its timeout of 0.01 s
        """
        key = _key(action, timeout)
        if timeout is not None:
            check_timeout(timeout)  # a bad timeout changes what the call does: it raises, as an option does
        try:
            bound = self._current()
            if bound is not None:
                operation = None if key is None else bound.operations.get(key)
                if operation is None:
                    operation = self._operation(bound, action, timeout)
                return Timed(operation)
        except Exception as exc:
            internal_error("actions.track", exc)
        if timeout is None:
            return Noop(functools.partial(self.track, label(self, "track", "action", action)))
        return Timed(self._untraced_operation(key, action, timeout))

    def wrap(self, executor: T, *, action: str | None = None, timeout: float | None = None) -> T:
        """Instrument every call of ``executor``: an object with ``execute(...)``, or a callable.

        Same return values, same exceptions; async ``execute`` (or a coroutine function) is
        awaited inside the timing. An object comes back as an :class:`InstrumentedExecutor`
        whose other attributes are the wrapped object's; a callable comes back as a function.
        ``action`` defaults to the class name (object) or the function name (callable).

        >>> import otel_pipeline as op
        >>> class Mailer:
        ...     def execute(self, to: str) -> str:
        ...         return f"mailed {to}"
        >>> mailer = op.actions("notifier").wrap(Mailer(), action="send_email")
        >>> mailer.execute("ada@example.com")
        'mailed ada@example.com'
        """
        check_timeout(timeout)
        execute = getattr(executor, "execute", None)
        if callable(execute):
            name = check_name("action", type(executor).__name__ if action is None else action)
            return cast(T, InstrumentedExecutor(executor, self.track(name, timeout=timeout)(execute)))
        if callable(executor):
            default = getattr(executor, "__name__", None) or type(executor).__name__
            name = check_name("action", default if action is None else action)
            return cast(T, self.track(name, timeout=timeout)(executor))
        raise TypeError(
            "otel_pipeline: actions.wrap() needs an object with an execute() method or a callable, got "
            f"{type(executor).__name__} {safe_repr(executor)}"
        )

    def _operation(self, bound: _Bound, action: str, timeout: float | None) -> _Action:
        timeout = check_timeout(timeout)
        action = label(self, "track", "action", action)
        known = bound.operations.get((action, timeout))
        if known is not None:  # a bad action, recorded as _INVALID
            return known
        pipeline = bound.pipeline
        assert pipeline.registry is not None
        attributes = {EXECUTOR: self.name, ACTION: action}
        span_attributes: dict[str, Any] = dict(attributes)
        if timeout is not None:
            span_attributes["action.timeout"] = timeout
        operation = _Action(
            pipeline.tracer,
            f"actions.execute {self.name} {action}",
            span_attributes,
            functools.partial(self.track, action, timeout=timeout),
            OutcomeSeries(pipeline.registry, EXECUTED, DURATION, None, attributes),
        )
        operation.timeout = timeout
        if len(bound.operations) < _MAX_ACTIONS:
            bound.operations[(action, timeout)] = operation
        else:
            warn_once(
                f"actions:{self.name}",
                "actions %r has more than %d actions; is an id used as action name?",
                self.name,
                _MAX_ACTIONS,
            )
        return operation

    def _untraced_operation(self, key: Key | None, action: str, timeout: float | None) -> Operation:
        operation = None if key is None else self._untraced.get(key)
        if operation is None:
            timeout = check_timeout(timeout)
            action = label(self, "track", "action", action)
            operation = Operation(
                _UNTRACED,
                f"actions.execute {self.name} {action}",
                {},
                functools.partial(self.track, action, timeout=timeout),
                timeout,
            )
            if len(self._untraced) < _MAX_ACTIONS:
                self._untraced[(action, timeout)] = operation
        return operation


def _key(action: object, timeout: object) -> Key | None:
    """The cache key of (action, timeout), or None when they are not of the types a key can hold."""
    if type(action) is str and (timeout is None or type(timeout) in (int, float)):
        return (action, cast("float | None", timeout))
    return None


class InstrumentedExecutor:
    """An executor whose ``execute()`` calls are instrumented; returned by :meth:`Actions.wrap`.

    Every other attribute is the wrapped object's; ``__wrapped__`` is the object itself.

    >>> import otel_pipeline as op
    >>> class Job:
    ...     retries = 3
    ...     def execute(self) -> str:
    ...         return "done"
    >>> job = op.actions("worker").wrap(Job())
    >>> job.execute(), job.retries, type(job.__wrapped__).__name__
    ('done', 3, 'Job')
    """

    def __init__(self, wrapped: Any, execute: Any) -> None:
        self.__wrapped__ = wrapped
        self.execute = execute

    def __getattr__(self, name: str) -> Any:
        if name == "__wrapped__":  # not set yet (copy, pickle): do not recurse
            raise AttributeError(name)
        return getattr(self.__wrapped__, name)

    def __repr__(self) -> str:
        return f"<InstrumentedExecutor {self.__wrapped__!r}>"


def actions(executor: str) -> Actions:
    """The actions hook of ``executor`` (same name, same object).

    >>> import otel_pipeline as op
    >>> op.actions("notifier") is op.actions("notifier")
    True
    """
    return get_hook(Actions, executor)
