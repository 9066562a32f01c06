"""Connection pools, under the OpenTelemetry database semantic conventions (``db.client.connection.*``).

>>> import otel_pipeline as op
>>> pool = op.connection_pool("postgres", max_size=20)
>>> with pool.waiting():      # waiting for a connection: pending requests, wait time
...     pass
>>> with pool.connection():   # one connection in use: used/idle counts, use time
...     pass

For a pool you own, ``connection()`` keeps the counts: a connection is *used* inside the block,
and *idle* after it, the way pools that keep the connections they open work (idle = the most
connections ever in use at once, minus those in use now). For a pool you do not own, hand
its numbers over with :meth:`ConnectionPool.observe`; they are read at each collection.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from otel_pipeline._internal.boundary import internal_error
from otel_pipeline._internal.catalogue import declare
from otel_pipeline._internal.errors import logger, warn_once
from otel_pipeline._internal.hook import Hook, Points, check_count, get_hook, observes
from otel_pipeline._internal.runtime import Runtime
from otel_pipeline._internal.spans import HookTracer
from otel_pipeline._internal.spec import Kind
from otel_pipeline._internal.timed import Noop, Operation, Timed, TimedScope
from otel_pipeline._internal.validation import observed, safe_repr

__all__ = ["ConnectionPool", "connection_pool"]

HOOK = "connection_pool"
POOL = "db.client.connection.pool.name"
STATE_ATTRIBUTE = "db.client.connection.state"

COUNT = declare(
    "db.client.connection.count",
    Kind.OBSERVABLE_UP_DOWN_COUNTER,
    "{connection}",
    "The number of connections that are currently in the state described by the state attribute.",
    [POOL, STATE_ATTRIBUTE],
    hook=HOOK,
)
MAX = declare(
    "db.client.connection.max",
    Kind.OBSERVABLE_UP_DOWN_COUNTER,
    "{connection}",
    "The maximum number of open connections allowed.",
    [POOL],
    hook=HOOK,
)
PENDING = declare(
    "db.client.connection.pending_requests",
    Kind.OBSERVABLE_UP_DOWN_COUNTER,
    "{request}",
    "The number of current pending requests for an open connection.",
    [POOL],
    hook=HOOK,
)
TIMEOUTS = declare(
    "db.client.connection.timeouts",
    Kind.COUNTER,
    "{timeout}",
    "The number of connection timeouts that have occurred trying to obtain a connection from the pool.",
    [POOL],
    hook=HOOK,
)
WAIT_TIME = declare(
    "db.client.connection.wait_time",
    Kind.HISTOGRAM,
    "s",
    "The time it took to obtain an open connection from the pool.",
    [POOL],
    hook=HOOK,
)
USE_TIME = declare(
    "db.client.connection.use_time",
    Kind.HISTOGRAM,
    "s",
    "The time between borrowing a connection and returning it to the pool.",
    [POOL],
    hook=HOOK,
)
UTILIZATION = declare(
    "connection_pool.utilization",
    Kind.OBSERVABLE_GAUGE,
    "1",
    "Connections in use divided by the pool's maximum size.",
    [POOL],
    hook=HOOK,
    merge="ratio:db.client.connection.count{db.client.connection.state=used}/db.client.connection.max",
)

_NO_SPANS = HookTracer(None, 0.0, None)
Reading = Callable[[], float]


class _Bound:
    """One pool's series and counts on one pipeline."""

    __slots__ = (
        "attributes",
        "lock",
        "peak",
        "pending",
        "timeouts",
        "use",
        "use_time",
        "used",
        "wait",
        "wait_time",
    )

    def __init__(self, hook: ConnectionPool, pipeline: Runtime) -> None:
        registry = pipeline.registry
        assert registry is not None
        self.attributes = {POOL: hook.name}
        self.lock = threading.Lock()
        self.used = self.peak = self.pending = 0
        self.timeouts = registry.instrument(TIMEOUTS).bind(self.attributes)
        self.wait_time = registry.instrument(WAIT_TIME).bind(self.attributes)
        self.use_time = registry.instrument(USE_TIME).bind(self.attributes)
        self.use = _Use(hook, self)
        self.wait = _Wait(hook, self, pipeline.tracer)

    def counts(self) -> tuple[int, int]:
        """(idle, used) as kept by ``connection()``."""
        with self.lock:
            return self.peak - self.used, self.used


class _Use(Operation):
    """One borrowed connection: used while the block runs, idle after."""

    __slots__ = ("_bound",)

    def __init__(self, hook: ConnectionPool, bound: _Bound) -> None:
        super().__init__(_NO_SPANS, "", {}, hook.connection)
        self._bound = bound

    def begin(self) -> None:
        bound = self._bound
        with bound.lock:
            bound.used += 1
            bound.peak = max(bound.peak, bound.used)

    def end(self, duration: float, exc_type: type[BaseException] | None, timed: Timed) -> None:
        bound = self._bound
        with bound.lock:
            bound.used -= 1
        bound.use_time.record(duration)


class _Wait(Operation):
    """One request for a connection: pending until the block ends; a ``TimeoutError`` is a timeout."""

    __slots__ = ("_bound",)

    def __init__(self, hook: ConnectionPool, bound: _Bound, tracer: HookTracer) -> None:
        super().__init__(tracer, f"connection_pool.wait {hook.name}", bound.attributes, hook.waiting)
        self._bound = bound

    def begin(self) -> None:
        with self._bound.lock:
            self._bound.pending += 1

    def end(self, duration: float, exc_type: type[BaseException] | None, timed: Timed) -> None:
        bound = self._bound
        with bound.lock:
            bound.pending -= 1
        if exc_type is None:
            bound.wait_time.record(duration)
        elif issubclass(exc_type, TimeoutError):
            bound.timeouts.add(1)


class ConnectionPool(Hook[_Bound]):
    """A named connection pool. Get it with :func:`otel_pipeline.connection_pool`."""

    kind = "connection pool"

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.max_size: int | None = None
        self._readings: dict[str, Reading] = {}

    def _bind(self, pipeline: Runtime) -> _Bound:
        return _Bound(self, pipeline)

    def _binds_at_install(self) -> bool:
        return bool(self._readings)

    @observes(COUNT)
    def _counts(self, bound: _Bound) -> Points:
        idle, used = bound.counts()
        for state, kept in (("idle", idle), ("used", used)):
            value = self._read(state, kept)
            if value is not None:
                yield value, {**bound.attributes, STATE_ATTRIBUTE: state}

    @observes(MAX)
    def _maximum(self, bound: _Bound) -> Points:
        if self.max_size is not None:
            yield self.max_size, bound.attributes

    @observes(PENDING)
    def _pending(self, bound: _Bound) -> Points:
        value = self._read("pending", bound.pending)
        if value is not None:
            yield value, bound.attributes

    @observes(UTILIZATION)
    def _usage(self, bound: _Bound) -> Points:
        used = self._read("used", bound.counts()[1])
        if self.max_size is not None and used is not None:
            yield used / self.max_size, bound.attributes

    def connection(self) -> TimedScope:
        """One connection in use: ``with pool.connection(): ...`` (also ``async with``, or a decorator)."""
        try:
            bound = self._current()
            if bound is not None:
                return Timed(bound.use)
        except Exception as exc:
            internal_error("connection_pool.connection", exc)
        return Noop(self.connection)

    def waiting(self) -> TimedScope:
        """Waiting for a connection: ``with pool.waiting(): conn = real_pool.get()``.

        Pending while the block runs; its duration is the wait time when it succeeds. A
        ``TimeoutError`` leaving the block counts a timeout (and is re-raised).
        """
        try:
            bound = self._current()
            if bound is not None:
                return Timed(bound.wait)
        except Exception as exc:
            internal_error("connection_pool.waiting", exc)
        return Noop(self.waiting)

    def timeout(self) -> None:
        """Count one timeout obtaining a connection (for libraries with their own timeout error)."""
        try:
            bound = self._current()
            if bound is not None:
                bound.timeouts.add(1)
        except Exception as exc:
            internal_error("connection_pool.timeout", exc)

    def observe(
        self, *, idle: Reading | None = None, used: Reading | None = None, pending: Reading | None = None
    ) -> None:
        """Read the counts of a pool you do not own from functions, at each collection.

        Each function takes no argument and returns a number; a count given here replaces the one
        ``connection()``/``waiting()`` keep. A function that raises is logged once and skipped.
        Calling it again replaces the functions (with none: stop observing). Given before
        ``configure()``, they are read once it has run.

        >>> import otel_pipeline as op
        >>> op.connection_pool("redis", max_size=10).observe(idle=lambda: 4, used=lambda: 6)
        """
        readings = {"idle": idle, "used": used, "pending": pending}
        for key, function in readings.items():
            if function is not None and not callable(function):
                raise TypeError(
                    f"otel_pipeline: observe({key}=...) needs a function returning a number, "
                    f"got {type(function).__name__}"
                )
        self._readings = {key: function for key, function in readings.items() if function is not None}
        self._bind_now()

    def _read(self, key: str, fallback: float) -> float | None:
        function = self._readings.get(key)
        if function is None:
            return fallback
        try:
            value = function()
        except Exception:
            warn_once(f"pool:{self.name}:{key}", "connection pool %r: observe(%s=...) failed", self.name, key)
            logger.debug("observe failure", exc_info=True)
            return None
        return observed("connection pool", self.name, f"observe({key}=...)", value)  # a count >= 0


def connection_pool(name: str, max_size: int | None = None) -> ConnectionPool:
    """The connection pool hook named ``name`` (same name, same object); ``max_size`` if known.

    >>> import otel_pipeline as op
    >>> op.connection_pool("postgres", max_size=20).max_size
    20
    """
    if max_size is not None:
        check_count("max_size", max_size)
        if not isinstance(max_size, int) or max_size < 1:
            raise ValueError(
                f"otel_pipeline: max_size={safe_repr(max_size)} is not valid; use an integer >= 1"
            )
    hook = get_hook(ConnectionPool, name)
    if max_size is not None:
        hook.max_size = max_size
    return hook
