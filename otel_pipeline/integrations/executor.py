"""Instrument a ``concurrent.futures`` thread or process pool in place, as a queue.

Every ``submit()`` (and so every ``map()`` item, and ``loop.run_in_executor`` call: they go
through ``submit``) is a job of the queue hook named as given: ``queue.jobs.enqueued``, the depth
(jobs submitted and not started yet), ``queue.job.wait_time`` from submit to start,
``queue.jobs.in_progress``, then ``queue.jobs.processed`` and ``queue.job.duration`` by outcome
(``error.type``: the exception class), and ``queue.workers`` (the pool's threads or processes,
``active`` or ``idle``). The job's span ``queue.process <name>`` is a child of the span that was
current where ``submit()`` was called.

Thread pools: the job runs inside :meth:`Queue.processing` in the worker thread, with the
submitting thread's OpenTelemetry context attached there.

Process pools: the function is sent to the worker process wrapped in a small picklable object
carrying the submitter's trace context (a W3C ``traceparent`` carrier) and the submit time. In
the worker process it only makes the span (when that process has a configured pipeline: a
forked worker inherits one; a spawned one needs ``op.configure()`` in the pool's
``initializer``), and returns the result with when it started and how long it ran. The metrics
are recorded in the submitting process, when the future completes: the totals are exact in the
process that serves ``/metrics``, whatever the start method, and a worker's own exporter never
counts a job twice. A job counts as in progress from when the pool hands it to a worker process
(the future's ``running`` state) until its result arrives.

>>> from concurrent.futures import ThreadPoolExecutor
>>> import otel_pipeline as op
>>> pool = ThreadPoolExecutor(max_workers=2)
>>> hook = op.instrument_executor(pool, "thumbnails")
>>> pool.submit(pow, 2, 10).result()
1024
>>> op.uninstrument_executor(pool)
True
>>> pool.shutdown()
"""

from __future__ import annotations

import contextlib
import functools
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures._base import CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED, PENDING, RUNNING
from time import perf_counter, time
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate

from otel_pipeline._internal.boundary import contained, internal_error
from otel_pipeline._internal.hook import check_name, get_hook, state_on
from otel_pipeline._internal.outcomes import OutcomeSeries, failure_attributes
from otel_pipeline._internal.registry import Registry
from otel_pipeline._internal.runtime import STATE
from otel_pipeline._internal.validation import safe_repr
from otel_pipeline.hooks import queue as queue_hook
from otel_pipeline.hooks.queue import Queue

__all__ = ["instrument_executor", "uninstrument_executor"]

_ATTRIBUTE = "_otel_pipeline_instrumentation"
#: Where a job that raised in a worker process carries its timing back (pickled with the exception).
_TIMING = "_otel_pipeline_timing"
_MISSING = object()
AnyPool = ThreadPoolExecutor | ProcessPoolExecutor


# -- the per-executor record --------------------------------------------------------------------


class _Workers:
    """What one record reported as ``queue.workers`` on one registry (to report differences)."""

    __slots__ = ("active", "active_series", "idle", "idle_series")

    def __init__(self, registry: Registry, name: str) -> None:
        base = {queue_hook.NAME: name}
        self.idle_series: Any = registry.instrument(queue_hook.WORKERS).bind({**base, "state": "idle"})
        self.active_series: Any = registry.instrument(queue_hook.WORKERS).bind({**base, "state": "active"})
        self.idle = 0
        self.active = 0


class _Record:
    """What :func:`instrument_executor` did to one executor, and its jobs' bookkeeping."""

    def __init__(self, executor: AnyPool, hook: Queue) -> None:
        self.hook = hook
        self.name = hook.name
        self.processes = isinstance(executor, ProcessPoolExecutor)
        self.executor = weakref.ref(executor, self._collected)
        self.active = True
        self.closed = False
        self.lock = threading.Lock()
        #: Jobs submitted and not yet started (or cancelled); jobs running now.
        self.pending = 0
        self.running = 0
        #: The instance attributes we replaced (``_MISSING``: there was none) and ours.
        self.previous: dict[str, Any] = {}
        self.installed: dict[str, Any] = {}
        #: The pool's size when workers were last reported.
        self.size_seen = -1
        #: The registry and ``queue.jobs.enqueued`` series submit() last counted on.
        self.enqueued: tuple[weakref.ref[Registry], Any] | None = None

    # Workers: the pool's threads/processes; active = those running a job of ours.
    def pool_size(self) -> int:
        executor = self.executor()
        if executor is None or self.closed or not self.active:
            return 0
        if self.processes:
            assert isinstance(executor, ProcessPoolExecutor)
            if executor._broken:
                return 0
            return len(executor._processes or ())
        assert isinstance(executor, ThreadPoolExecutor)
        return len(executor._threads)

    @contained("instrument_executor:workers")
    def report_workers(self) -> None:
        """Bring ``queue.workers`` of the current pipeline in line with the pool now."""
        pipeline = STATE.pipeline
        registry = None if pipeline is None or not pipeline.enabled else pipeline.registry
        if registry is None:
            return
        workers: _Workers = state_on(registry, (self, "workers"), lambda: _Workers(registry, self.name))
        with self.lock:
            size = self.size_seen = self.pool_size()
            if size:
                # A process pool marks running the jobs it queued for its processes too: no more
                # workers are active than there are.
                active = min(self.running, size)
                idle = size - active
            else:  # shut down (its workers finish their jobs and end), or no longer ours
                active, idle = (self.running if self.active else 0), 0
            idle_step, active_step = idle - workers.idle, active - workers.active
            workers.idle, workers.active = idle, active
        if idle_step or active_step:
            workers.idle_series.add(idle_step)
            workers.active_series.add(active_step)

    def add_pending(self, step: int) -> None:
        with self.lock:
            self.pending += step

    def add_running(self, step: int) -> None:
        with self.lock:
            self.running += step

    def _collected(self, reference: Any) -> None:
        # Called by the garbage collector, possibly while this very thread holds a lock we would
        # need (a registry's, a series'): only flag it here; _drain() does the rest later.
        self.active = False
        _COLLECTED.append(self)


# -- depth: the jobs of every executor instrumented under one name -------------------------------

_BY_NAME: dict[str, list[_Record]] = {}
_BY_NAME_LOCK = threading.Lock()
#: Records whose executor was garbage-collected, left for _drain() (list.append takes no lock).
_COLLECTED: list[_Record] = []


def _drain() -> None:
    """Forget the records of collected executors and report their workers gone."""
    while _COLLECTED:
        try:
            record = _COLLECTED.pop()
        except IndexError:  # another thread drained it first
            return
        _forget(record)
        record.report_workers()


def _depth_reader(name: str) -> Callable[[], float | None]:
    def depth() -> float | None:
        with _BY_NAME_LOCK:
            records = list(_BY_NAME.get(name, ()))
        return float(max(0, sum(record.pending for record in records if record.active))) if records else None

    return depth


#: One depth function per name (kept so that it can be told apart from a user's own).
_DEPTH_READERS: dict[str, Callable[[], float | None]] = {}


def _remember(record: _Record) -> None:
    with _BY_NAME_LOCK:
        _BY_NAME.setdefault(record.name, []).append(record)
        reader = _DEPTH_READERS.setdefault(record.name, _depth_reader(record.name))
    record.hook.observe_depth(reader)


def _forget(record: _Record) -> None:
    with _BY_NAME_LOCK:
        records = _BY_NAME.get(record.name, [])
        if record in records:
            records.remove(record)
        last = not records
        if last:
            _BY_NAME.pop(record.name, None)
        reader = _DEPTH_READERS.get(record.name)
    if last and reader is not None and record.hook._depth_function is reader:
        record.hook.observe_depth(None)


# -- thread pools --------------------------------------------------------------------------------


class _ThreadCall:
    """One submitted job, run in a worker thread inside ``processing()`` under the submitter's context."""

    __slots__ = ("context", "enqueued_at", "function", "record")

    def __init__(self, record: _Record, function: Callable[..., Any]) -> None:
        self.record = record
        self.function = function
        self.context = otel_context.get_current()
        self.enqueued_at = time()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        record = self.record
        token = otel_context.attach(self.context)
        try:
            _started(record)
            try:
                with record.hook.processing(enqueued_at=self.enqueued_at):
                    return self.function(*args, **kwargs)
            finally:
                _ended(record)
        finally:
            otel_context.detach(token)


@contained("instrument_executor:start")
def _started(record: _Record) -> None:
    with record.lock:
        record.pending -= 1
        record.running += 1
    record.report_workers()


@contained("instrument_executor:end")
def _ended(record: _Record) -> None:
    record.add_running(-1)
    record.report_workers()


@contained("instrument_executor:cancelled")
def _thread_job_done(record: _Record, future: Future[Any]) -> None:
    if future.cancelled():  # it never started: it leaves the queue uncounted
        record.add_pending(-1)


def _thread_submit(record: _Record, original: Callable[..., Future[Any]]) -> Callable[..., Future[Any]]:
    def submit(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if not record.active:
            return original(fn, *args, **kwargs)
        record.add_pending(1)
        try:
            future = original(_ThreadCall(record, fn), *args, **kwargs)
        except BaseException:
            record.add_pending(-1)
            raise
        _submitted(record)
        future.add_done_callback(functools.partial(_thread_job_done, record))
        return future

    return submit


@contained("instrument_executor:submit")
def _submitted(record: _Record) -> None:
    # Workers are reported again only if submit() started one (a thread can run its first job
    # before the pool lists it, so the job's own start may not have seen it).
    if _COLLECTED:
        _drain()
    if record.pool_size() != record.size_seen:
        record.report_workers()
    pipeline = STATE.pipeline
    registry = None if pipeline is None or not pipeline.enabled else pipeline.registry
    if registry is None:
        return
    cached = record.enqueued
    if cached is None or cached[0]() is not registry:
        # Bound here rather than through Queue.enqueued(): the pool's depth is read from the pool,
        # so the hook's own tracked depth is left untouched (it stays right once uninstrumented).
        attributes = {queue_hook.NAME: record.name}
        series = registry.instrument(queue_hook.ENQUEUED).bind(attributes)
        cached = record.enqueued = (weakref.ref(registry), series)  # weak: a shut-down pipeline is freed
    cached[1].add(1)


# -- process pools -------------------------------------------------------------------------------


class _Result:
    """What a job returns from a worker process: its value, when it started (Unix time), its duration."""

    __slots__ = ("duration", "started_at", "value")

    def __init__(self, value: Any, started_at: float, duration: float) -> None:
        self.value = value
        self.started_at = started_at
        self.duration = duration

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Result, (self.value, self.started_at, self.duration))


class _ProcessCall:
    """The picklable wrapper a job travels in to a worker process: the function, a trace carrier, a name."""

    __slots__ = ("carrier", "function", "name")

    def __init__(self, function: Callable[..., Any], name: str, carrier: dict[str, str]) -> None:
        self.function = function
        self.name = name
        self.carrier = carrier

    def __reduce__(self) -> tuple[Any, ...]:
        return (_ProcessCall, (self.function, self.name, self.carrier))

    def __call__(self, *args: Any, **kwargs: Any) -> _Result:
        started_at, start = time(), perf_counter()
        token = _attach_carrier(self.carrier)
        try:
            scope = _child_span(self.name)
            try:
                value = self.function(*args, **kwargs)
            except BaseException as error:
                duration = perf_counter() - start
                _end_span(scope, error)
                # Pickled with the exception (BaseException pickles its __dict__); an exception
                # class that refuses attributes comes back without it.
                with contextlib.suppress(Exception):
                    setattr(error, _TIMING, (started_at, duration))
                raise
            duration = perf_counter() - start
            _end_span(scope, None)
            return _Result(value, started_at, duration)
        finally:
            if token is not None:
                otel_context.detach(token)


@contained("instrument_executor:extract")
def _attach_carrier(carrier: dict[str, str]) -> Any:
    """In the worker process: make the submitter's trace context current (None: it could not be)."""
    return otel_context.attach(propagate.extract(carrier))


@contained("instrument_executor:child-span")
def _child_span(name: str) -> Any:
    """The job's span in the worker process (only the span: its metrics are recorded by the submitter)."""
    pipeline = STATE.pipeline
    if pipeline is None or not pipeline.enabled:
        return None
    return pipeline.tracer.start(f"queue.process {name}", {queue_hook.NAME: name})


@contained("instrument_executor:child-span-end")
def _end_span(scope: Any, error: BaseException | None) -> None:
    if scope is not None:
        scope.end(error)


class _ProcessSeries:
    """The series a process-pool job records into, in the submitting process, on one registry."""

    __slots__ = ("outcomes", "wait_time")

    def __init__(self, registry: Registry, name: str) -> None:
        attributes = {queue_hook.NAME: name}
        self.outcomes = OutcomeSeries(
            registry, queue_hook.PROCESSED, queue_hook.DURATION, queue_hook.IN_PROGRESS, attributes
        )
        self.wait_time: Any = registry.instrument(queue_hook.WAIT_TIME).bind(attributes)


def _process_series(name: str) -> _ProcessSeries | None:
    pipeline = STATE.pipeline
    registry = None if pipeline is None or not pipeline.enabled else pipeline.registry
    if registry is None:
        return None
    return state_on(registry, ("instrument_executor", name), lambda: _ProcessSeries(registry, name))


class _ProcessJob:
    """One process-pool job's bookkeeping in the submitting process."""

    __slots__ = ("context", "dispatched", "done", "enqueued_at", "record", "series", "started")

    def __init__(self, record: _Record, context: Any, enqueued_at: float) -> None:
        self.record = record
        self.context = context
        self.enqueued_at = enqueued_at
        #: The series it counted as in progress on (None: not handed to a worker process yet).
        self.series: _ProcessSeries | None = None
        self.started = perf_counter()
        #: Handed to a worker process (counted in progress); completed (recorded): each once.
        self.dispatched = False
        self.done = False


@contained("instrument_executor:dispatched")
def _dispatched(job: _ProcessJob) -> None:
    record = job.record
    with record.lock:
        if job.dispatched or job.done:
            return
        job.dispatched = True
        job.series = series = _process_series(record.name)
        record.pending -= 1
        record.running += 1
        job.started = perf_counter()
    if series is not None:
        series.outcomes.begin()
    record.report_workers()


@contained("instrument_executor:finished")
def _finished(job: _ProcessJob, future: Future[Any]) -> None:
    """The job's future completed (or was cancelled): record it once, in this process."""
    record = job.record
    with record.lock:
        if job.done:
            return
        job.done = True
        dispatched, series = job.dispatched, job.series
        if dispatched:
            record.running -= 1
        else:
            record.pending -= 1
    raw: Any = future
    if raw._state in (CANCELLED, CANCELLED_AND_NOTIFIED):  # never started: leaves the queue uncounted
        record.report_workers()
        return
    error: BaseException | None = raw._exception
    timing: tuple[float, float] | None = None
    if error is not None:
        found = error.__dict__.pop(_TIMING, None)
        if isinstance(found, tuple):
            timing = found
    else:
        result = raw._result
        if type(result) is _Result:
            timing = (result.started_at, result.duration)
            raw._result = result.value
    if not dispatched:  # failed before reaching a worker (a broken pool): count it as started now
        series = _process_series(record.name)
        if series is not None:
            series.outcomes.begin()
    if series is not None:
        token = otel_context.attach(job.context)  # exemplars link to the submitter's trace
        try:
            # Without timing (the worker process died, the result could not be pickled): the
            # time this process saw it run.
            duration = timing[1] if timing is not None else perf_counter() - job.started
            if timing is not None:
                series.wait_time.record(max(0.0, timing[0] - job.enqueued_at))
            series.outcomes.end(duration, None if error is None else failure_attributes(type(error)))
        finally:
            otel_context.detach(token)
    record.report_workers()


class _ProcessFuture(Future):  # type: ignore[type-arg]
    """A process-pool job's future: records its outcome once it completes; hands out the bare result.

    Its class is swapped in on the future the pool made (the layout is the same), so that the
    pool's own calls (``set_running_or_notify_cancel``, ``set_result``...) reach it.
    """

    _otel_pipeline_job: _ProcessJob

    def set_running_or_notify_cancel(self) -> bool:
        running = super().set_running_or_notify_cancel()
        if running:
            _dispatched(self._otel_pipeline_job)
        return running

    def _invoke_callbacks(self) -> None:  # runs once the state is final, before the user's callbacks
        _finished(self._otel_pipeline_job, self)
        super()._invoke_callbacks()  # type: ignore[misc]

    def result(self, timeout: float | None = None) -> Any:
        value = super().result(timeout)
        return value.value if type(value) is _Result else value


_ProcessFuture.__name__ = _ProcessFuture.__qualname__ = "Future"  # the same repr as before


def _process_submit(record: _Record, original: Callable[..., Future[Any]]) -> Callable[..., Future[Any]]:
    def submit(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if not record.active:
            return original(fn, *args, **kwargs)
        carrier: dict[str, str] = {}
        context = otel_context.get_current()
        try:
            propagate.inject(carrier, context)
        except Exception as exc:  # the job runs, without the submitter's trace context
            internal_error("instrument_executor:inject", exc)
        job = _ProcessJob(record, context, time())
        record.add_pending(1)
        try:
            future = original(_ProcessCall(fn, record.name, carrier), *args, **kwargs)
        except BaseException:
            record.add_pending(-1)
            raise
        _adopt(future, job)
        _submitted(record)
        return future

    return submit


@contained("instrument_executor:adopt")
def _adopt(future: Future[Any], job: _ProcessJob) -> None:
    """Make ``future`` a :class:`_ProcessFuture`; catch up with what the pool did to it meanwhile.

    The pool's manager thread may have handed the job to a worker, or even completed it, between
    the future's creation and now: then the calls made on the old class are made up for here
    (each at most once, see the job's flags).
    """
    raw: Any = future
    with raw._condition:
        raw._otel_pipeline_job = job
        raw.__class__ = _ProcessFuture
        state = raw._state
    if state in (RUNNING, FINISHED):
        _dispatched(job)
    if state not in (PENDING, RUNNING):
        _finished(job, future)


# -- public API ----------------------------------------------------------------------------------


def _check_executor(what: str, executor: object) -> None:
    if not isinstance(executor, (ThreadPoolExecutor, ProcessPoolExecutor)):
        raise TypeError(
            f"otel_pipeline: {what}() takes a concurrent.futures.ThreadPoolExecutor or "
            f"ProcessPoolExecutor (or a subclass), got {type(executor).__name__} {safe_repr(executor)}"
        )


def _shutdown(record: _Record, original: Callable[..., None]) -> Callable[..., None]:
    def shutdown(wait: bool = True, *, cancel_futures: bool = False) -> None:
        try:
            original(wait, cancel_futures=cancel_futures)
        finally:
            record.closed = True
            record.report_workers()

    return shutdown


def instrument_executor(executor: AnyPool, name: str) -> Queue:
    """Instrument ``executor`` as the queue hook ``name`` and return that hook.

    Undo with :func:`uninstrument_executor`. Instrumenting again under the same name changes
    nothing; under another name raises ``ValueError``. Several executors may share a name: their
    jobs add up.

    >>> from concurrent.futures import ThreadPoolExecutor
    >>> import otel_pipeline as op
    >>> with ThreadPoolExecutor(max_workers=2) as pool:
    ...     _ = op.instrument_executor(pool, "resize")
    ...     list(pool.map(abs, [-1, -2, 3]))
    [1, 2, 3]
    """
    _check_executor("instrument_executor", executor)
    check_name("queue name", name)
    _drain()
    existing: _Record | None = executor.__dict__.get(_ATTRIBUTE)
    if existing is not None:
        if existing.name == name:
            return existing.hook
        raise ValueError(
            f"otel_pipeline: this executor is already instrumented as {existing.name!r}, not {name!r}; "
            "call uninstrument_executor() on it first"
        )
    hook = get_hook(Queue, name)
    record = _Record(executor, hook)
    reference = weakref.ref(executor)
    for attribute in ("submit", "shutdown"):
        record.previous[attribute] = executor.__dict__.get(attribute, _MISSING)
    # The originals are called through a weak reference: no cycle keeps the executor alive (a
    # thread pool's threads end when it is garbage-collected).
    previous_submit = record.previous["submit"]
    previous_shutdown = record.previous["shutdown"]

    def original_submit(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        pool = reference()
        if pool is None:  # pragma: no cover - called on a collected executor
            raise RuntimeError("cannot schedule new futures after the executor was collected")
        if previous_submit is not _MISSING:
            return previous_submit(fn, *args, **kwargs)  # type: ignore[no-any-return]
        return type(pool).submit(pool, fn, *args, **kwargs)

    def original_shutdown(wait: bool = True, *, cancel_futures: bool = False) -> None:
        pool = reference()
        if pool is None:  # pragma: no cover
            return
        if previous_shutdown is not _MISSING:
            previous_shutdown(wait, cancel_futures=cancel_futures)
        else:
            type(pool).shutdown(pool, wait, cancel_futures=cancel_futures)

    wrap = _process_submit if record.processes else _thread_submit
    record.installed = {
        "submit": wrap(record, original_submit),
        "shutdown": _shutdown(record, original_shutdown),
    }
    for attribute, ours in record.installed.items():
        setattr(executor, attribute, ours)
    setattr(executor, _ATTRIBUTE, record)
    _remember(record)
    record.report_workers()
    return hook


def uninstrument_executor(executor: AnyPool) -> bool:
    """Undo :func:`instrument_executor` on ``executor``; False if it was not instrumented.

    ``submit`` and ``shutdown`` are the executor's own again. Jobs submitted before still record
    when they finish.

    >>> from concurrent.futures import ThreadPoolExecutor
    >>> import otel_pipeline as op
    >>> op.uninstrument_executor(ThreadPoolExecutor())
    False
    """
    _check_executor("uninstrument_executor", executor)
    _drain()
    record: _Record | None = executor.__dict__.pop(_ATTRIBUTE, None)
    if record is None:
        return False
    record.active = False  # a wrapper someone else holds on to now just passes through
    for attribute, ours in record.installed.items():
        if executor.__dict__.get(attribute) is ours:
            previous = record.previous[attribute]
            if previous is _MISSING:
                del executor.__dict__[attribute]
            else:
                executor.__dict__[attribute] = previous
    _forget(record)
    record.report_workers()
    return True
