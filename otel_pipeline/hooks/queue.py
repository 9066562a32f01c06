"""Queues: jobs in and out, outcomes, retries, dead letters, duration, wait time, depth, workers.

Jobs enqueued, dequeued, processed by outcome, retried, dead-lettered and replayed; job duration
and wait time; depth, capacity utilization, workers active and idle, dead-letter depth.

>>> import time
>>> import otel_pipeline as op
>>> q = op.queue("emails", capacity=1000)
>>> q.enqueued()
>>> with q.worker(), q.processing(enqueued_at=time.time(), job_id="job-42"):
...     pass

Depth is tracked from the calls made in this process (jobs enqueued, retried and replayed, minus
jobs dequeued and started) unless :meth:`Queue.observe_depth` gives a function that reads it;
the dead-letter depth likewise (dead-lettered minus replayed, or
:meth:`Queue.observe_dead_letter_depth`). A tracked depth counts from the first job put on the
queue, and never goes below zero; when producers and consumers are other processes, observe it.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from contextvars import ContextVar
from time import time
from typing import Any

from opentelemetry.trace import SpanKind

from otel_pipeline._internal.boundary import internal_error
from otel_pipeline._internal.carrier import Batch, Continued, NoopContinued, publish, taken
from otel_pipeline._internal.catalogue import declare
from otel_pipeline._internal.errors import logger, warn_once
from otel_pipeline._internal.hook import Hook, Points, check_count, get_hook, observes
from otel_pipeline._internal.outcomes import OutcomeOperation, OutcomeSeries, failure_attributes
from otel_pipeline._internal.registry import Adds
from otel_pipeline._internal.runtime import STATE, Runtime
from otel_pipeline._internal.spans import HookTracer
from otel_pipeline._internal.spec import Kind
from otel_pipeline._internal.timed import Noop, Operation, Timed, TimedScope
from otel_pipeline._internal.validation import (
    MAX_AMOUNT,
    amount,
    check_name,
    countable,
    dropped,
    flag,
    identifier,
    label,
    safe_repr,
)

__all__ = ["Queue", "finish_job", "queue"]

HOOK = "queue"
NAME = "queue.name"
PRIORITY = "priority"
JOB_TYPE = "job.type"
_JOB = [NAME, PRIORITY, JOB_TYPE]
_OUTCOME = [NAME, PRIORITY, JOB_TYPE, "outcome", "error.type"]
ENQUEUED = declare("queue.jobs.enqueued", Kind.COUNTER, "{job}", "Jobs put on the queue.", _JOB, hook=HOOK)
DEQUEUED = declare(
    "queue.jobs.dequeued",
    Kind.COUNTER,
    "{job}",
    "Jobs taken off the queue other than by processing() (e.g. an instrumented queue's get).",
    _JOB,
    hook=HOOK,
)
PROCESSED = declare(
    "queue.jobs.processed",
    Kind.COUNTER,
    "{job}",
    "Jobs taken off the queue and finished, by outcome.",
    _OUTCOME,
    hook=HOOK,
)
DURATION = declare(
    "queue.job.duration", Kind.HISTOGRAM, "s", "Time spent processing one job.", _OUTCOME, hook=HOOK
)
IN_PROGRESS = declare(
    "queue.jobs.in_progress", Kind.UP_DOWN_COUNTER, "{job}", "Jobs being processed now.", _JOB, hook=HOOK
)
WAIT_TIME = declare(
    "queue.job.wait_time",
    Kind.HISTOGRAM,
    "s",
    "Time a job waited on the queue, from enqueue until it was taken.",
    _JOB,
    hook=HOOK,
)
RETRIED = declare(
    "queue.jobs.retried",
    Kind.COUNTER,
    "{job}",
    "Jobs given another attempt after a failed one.",
    [NAME],
    hook=HOOK,
)
DEAD_LETTERED = declare(
    "queue.jobs.dead_lettered",
    Kind.COUNTER,
    "{job}",
    "Jobs moved to the dead-letter queue, by reason.",
    [NAME, "reason", JOB_TYPE],
    hook=HOOK,
)
REPLAYED = declare(
    "queue.jobs.replayed",
    Kind.COUNTER,
    "{job}",
    "Jobs moved from the dead-letter queue back onto the queue.",
    [NAME],
    hook=HOOK,
)
DEPTH = declare(
    "queue.depth",
    Kind.OBSERVABLE_UP_DOWN_COUNTER,
    "{job}",
    "Jobs waiting on the queue now.",
    [NAME],
    hook=HOOK,
    merge="last",
)
DEAD_LETTER_DEPTH = declare(
    "queue.dead_letter.depth",
    Kind.OBSERVABLE_UP_DOWN_COUNTER,
    "{job}",
    "Jobs in the dead-letter queue now.",
    [NAME],
    hook=HOOK,
    merge="last",
)
OLDEST_AGE = declare(
    "queue.oldest_job.age",
    Kind.OBSERVABLE_GAUGE,
    "s",
    "Age of the job waiting longest on the queue now (0 when none waits), for instrumented queues "
    "and queues observed with observe_oldest_age().",
    [NAME],
    hook=HOOK,
)
UTILIZATION = declare(
    "queue.utilization",
    Kind.OBSERVABLE_GAUGE,
    "1",
    "Depth / capacity, for queues given a capacity.",
    [NAME],
    hook=HOOK,
    merge="last",
)
WORKERS = declare(
    "queue.workers",
    Kind.UP_DOWN_COUNTER,
    "{worker}",
    "Workers (q.worker() scopes) by state: active (processing a job) or idle.",
    [NAME, "state"],
    hook=HOOK,
)
#: Distinct priorities, job types and dead-letter reasons kept per queue; more fold into "_OTHER".
_MAX_VALUES = 64
_OTHER = "_OTHER"
_UNTRACED = HookTracer(None, 0.0, None)


class _Level:
    """A count kept in process (a depth), from the first time something is added to it.

    Removals before that are ignored (jobs put on the queue before we were counting), and it is
    reported only from then on.
    """

    __slots__ = ("_lock", "touched", "value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value: float = 0
        self.touched = False

    def add(self, amount: float) -> None:
        if amount < 0 and not self.touched:
            return
        with self._lock:
            self.value += amount
            if amount > 0:
                self.touched = True


class _Slot:
    """One open ``q.worker()`` scope: its queue, its series, and how many jobs it is processing."""

    __slots__ = ("busy", "closed", "hook", "lock", "state")

    def __init__(self, hook: Queue, state: _State) -> None:
        self.hook = hook
        self.state = state
        self.busy = 0
        self.closed = False
        self.lock = threading.Lock()


#: The worker scopes open in this thread or task.
_WORKERS: ContextVar[tuple[_Slot, ...]] = ContextVar("otel_pipeline_queue_workers", default=())


def _busy(hook: Queue, step: int) -> None:
    """A job of ``hook`` started (+1) or ended (-1) in the innermost worker of ``hook``, if any."""
    for slot in reversed(_WORKERS.get()):
        if slot.hook is hook:
            with slot.lock:
                if slot.closed:  # ended from another thread: this one no longer counts as a worker
                    return
                slot.busy += step
                changed = slot.busy == (1 if step > 0 else 0)
            if changed:  # idle -> active, or back
                slot.state.idle.add(-step)
                slot.state.active.add(step)
            return


class _Processing(OutcomeOperation):
    """One job: in progress while it runs, then counted and timed by outcome."""

    __slots__ = ("_depth", "_hook")

    def __init__(
        self, hook: Queue, state: _State, attributes: dict[str, Any], factory: Callable[[], Any]
    ) -> None:
        outcomes = OutcomeSeries(state.registry, PROCESSED, DURATION, IN_PROGRESS, attributes)
        span_attributes = {**attributes, **_messaging(hook, "process")}
        super().__init__(state.consumer, f"queue.process {hook.name}", span_attributes, factory, outcomes)
        self._hook = hook
        self._depth = state.depth

    # The hot path: the base class's methods are called directly (cheaper than super()).
    def begin(self) -> None:
        OutcomeOperation.begin(self)
        self._depth.add(-1)
        if self._hook._workers_open:
            _busy(self._hook, 1)

    def end(self, duration: float, exc_type: type[BaseException] | None, timed: Timed) -> None:
        OutcomeOperation.end(self, duration, exc_type, timed)
        if self._hook._workers_open:
            _busy(self._hook, -1)


class _Finished(Operation):
    """A job's end recorded by :func:`finish_job`: an outcome of its own, or a duration given."""

    __slots__ = ("_attributes", "_duration", "_processing")

    def __init__(
        self, processing: _Processing, attributes: dict[str, str] | None, duration: float | None
    ) -> None:
        # The timer's __exit__ uses only end() and span_name: no Operation.__init__ (no dict copy).
        self._processing = processing
        self._attributes = attributes
        self._duration = duration
        self.span_name = processing.span_name

    def end(self, duration: float, exc_type: type[BaseException] | None, timed: Timed) -> None:
        processing = self._processing
        processing.outcomes.end(duration if self._duration is None else self._duration, self._attributes)
        if processing._hook._workers_open:
            _busy(processing._hook, -1)


def finish_job(
    scope: TimedScope,
    *,
    outcome: str | None = None,
    error: BaseException | None = None,
    duration: float | None = None,
) -> None:
    """End a :meth:`Queue.processing` scope entered by hand (``scope.__enter__()``).

    For integrations that see a job start and end in two callbacks (a framework's signals).
    Without ``outcome``: success, or failure with ``error.type`` when ``error`` is given; with it,
    ``outcome`` is the ``outcome`` attribute (``retry``, ``revoked``, ...; ``error.type`` too when
    ``error`` is given) and the span is not marked as an error. ``duration`` (seconds) is recorded
    instead of the time since the scope was entered: for a job whose start this process did not see.
    Never raises.
    """
    if not isinstance(scope, Timed):  # a Noop: instrumentation is off
        return
    try:
        op = scope._op
        if (outcome is not None or duration is not None) and isinstance(op, _Processing):
            attributes: dict[str, str] | None = None
            if outcome is not None:
                attributes = {"outcome": outcome}
                if error is not None:
                    attributes["error.type"] = type(error).__qualname__
            elif error is not None:
                attributes = failure_attributes(type(error))
            scope._op = _Finished(op, attributes, None if duration is None else max(0.0, float(duration)))
        if outcome is not None:
            scope.span_attributes = {**(scope.span_attributes or {}), "queue.job.outcome": outcome}
            error = None
    except Exception:
        warn_once("finish-job", "could not record the end of a job")
        logger.debug("finish_job failure", exc_info=True)
    scope.__exit__(
        None if error is None else type(error), error, None if error is None else error.__traceback__
    )


class _Worker(Operation):
    """A worker's lifetime: idle, or active while it processes a job of this queue."""

    __slots__ = ("_hook", "_state")

    def __init__(self, hook: Queue, state: _State) -> None:
        super().__init__(_UNTRACED, f"queue.worker {hook.name}", {}, hook.worker)
        self._hook = hook
        self._state = state

    def begin(self) -> None:
        self._hook._worker_opened(1)
        _WORKERS.set((*_WORKERS.get(), _Slot(self._hook, self._state)))
        self._state.idle.add(1)
        self._state.active.add(0)  # both states are reported once there is a worker

    def result(self, timed: Timed) -> Any:
        # The scope keeps its slot, so that it can be ended from another thread (a pool's threads
        # closed at shutdown by the main thread).
        slots = _WORKERS.get()
        if slots and slots[-1].hook is self._hook:
            timed.extra = slots[-1]
        return timed

    def end(self, duration: float, exc_type: type[BaseException] | None, timed: Timed) -> None:
        slots = _WORKERS.get()
        own: _Slot | None = timed.extra
        for index in range(len(slots) - 1, -1, -1):
            slot = slots[index]
            if slot is own or (own is None and slot.hook is self._hook):
                _WORKERS.set(slots[:index] + slots[index + 1 :])
                self._close(slot)
                return
        if own is not None:  # opened in another thread or task: that context still lists it
            self._close(own)

    def _close(self, slot: _Slot) -> None:
        with slot.lock:
            if slot.closed:
                return
            slot.closed = True
        (slot.state.active if slot.busy else slot.state.idle).add(-1)
        self._hook._worker_opened(-1)


class _Lane:
    """The series of one priority (or of none), and of one job type (or of none)."""

    __slots__ = (
        "dequeued",
        "enqueued",
        "job_type",
        "priority",
        "processing",
        "send_attributes",
        "send_name",
        "wait_time",
    )

    def __init__(self, hook: Queue, state: _State, priority: str | None, job_type: str | None = None) -> None:
        attributes = dict(state.attributes) if priority is None else {**state.attributes, PRIORITY: priority}
        if job_type is not None:
            attributes[JOB_TYPE] = job_type
        self.priority = priority
        self.job_type = job_type
        registry = state.registry
        self.enqueued = registry.instrument(ENQUEUED).bind(attributes)
        self.dequeued = registry.instrument(DEQUEUED).bind(attributes)
        self.wait_time = registry.instrument(WAIT_TIME).bind(attributes)
        factory = (
            functools.partial(hook.processing, priority=priority, job_type=job_type)
            if job_type is not None
            else hook.processing
            if priority is None
            else functools.partial(hook.processing, priority=priority)
        )
        self.processing = _Processing(hook, state, attributes, factory)
        self.send_name = f"queue.send {hook.name}"
        self.send_attributes = {**attributes, **_messaging(hook, "send")}


class _State:
    """A queue's series and tracked depths on one pipeline's registry."""

    def __init__(self, hook: Queue, pipeline: Runtime) -> None:
        registry = pipeline.registry
        assert registry is not None
        self.pipeline = pipeline
        self.registry = registry
        #: The pipeline's tracer, starting the CONSUMER spans of jobs.
        self.consumer = pipeline.tracer.of_kind(SpanKind.CONSUMER)
        self.attributes = {NAME: hook.name}
        self.retried = registry.instrument(RETRIED).bind(self.attributes)
        self.replayed = registry.instrument(REPLAYED).bind(self.attributes)
        self.idle = registry.instrument(WORKERS).bind({**self.attributes, "state": "idle"})
        self.active = registry.instrument(WORKERS).bind({**self.attributes, "state": "active"})
        self.depth = _Level()
        self.dead_letter_depth = _Level()
        self.dead_lettered: dict[str | tuple[str, str], Adds] = {}
        #: The lane of jobs with no priority and no job type (processing()'s common case).
        self.plain = _Lane(hook, self, None)
        self.lanes: dict[str | None, _Lane] = {None: self.plain}
        #: Lanes of jobs given a job type, by (priority, job type); the job types seen.
        self.typed_lanes: dict[tuple[str | None, str], _Lane] = {}
        self.job_types: set[str] = set()
        self.worker = _Worker(hook, self)

    def lane(self, hook: Queue, priority: str | None) -> _Lane:
        lane = self.lanes.get(priority)
        if lane is None:
            if len(self.lanes) > _MAX_VALUES and priority != _OTHER:
                _too_many(hook, "priorities")
                return self.lane(hook, _OTHER)
            lane = self.lanes.setdefault(priority, _Lane(hook, self, priority))
        return lane

    def typed_lane(self, hook: Queue, priority: str | None, job_type: str) -> _Lane:
        """The lane of ``priority`` and ``job_type`` (each folded into _OTHER past its cap)."""
        lane = self.typed_lanes.get((priority, job_type))
        if lane is None:
            priority = self.lane(hook, priority).priority
            job_type = self.job_type(hook, job_type)
            key = (priority, job_type)
            lane = self.typed_lanes.get(key) or self.typed_lanes.setdefault(
                key, _Lane(hook, self, priority, job_type)
            )
        return lane

    def job_type(self, hook: Queue, job_type: str) -> str:
        if job_type not in self.job_types:
            if len(self.job_types) >= _MAX_VALUES:
                _too_many(hook, "job types")
                return _OTHER
            self.job_types.add(job_type)
        return job_type

    def dead_letter_series(self, hook: Queue, reason: str, job_type: str | None = None) -> Adds:
        key: str | tuple[str, str] = reason if job_type is None else (reason, job_type)
        series = self.dead_lettered.get(key)
        if series is None:
            reasons = {k if isinstance(k, str) else k[0] for k in self.dead_lettered}
            if reason not in reasons and len(reasons) >= _MAX_VALUES:
                _too_many(hook, "dead-letter reasons")
                reason = _OTHER
            attributes = {**self.attributes, "reason": reason}
            if job_type is not None:
                job_type = attributes[JOB_TYPE] = self.job_type(hook, job_type)
            key = reason if job_type is None else (reason, job_type)
            series = self.dead_lettered.get(key) or self.dead_lettered.setdefault(
                key, self.registry.instrument(DEAD_LETTERED).bind(attributes)
            )
        return series


class Queue(Hook[_State]):
    """A named work queue. Get it with :func:`otel_pipeline.queue`.

    >>> import otel_pipeline as op
    >>> q = op.queue("emails")
    >>> q.enqueued(3, priority="high")
    >>> q.retried()
    >>> q.dead_lettered(reason="max_attempts")
    """

    kind = "queue"

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._states_lock = threading.Lock()
        self._depth_function: Callable[[], float | None] | None = None
        self._dead_letter_function: Callable[[], float | None] | None = None
        self._oldest_age_function: Callable[[], float | None] | None = None
        self._capacity: float | None = None
        #: The messaging.system of the queue's spans (None: not set).
        self._system: str | None = None
        #: Instrumented queues of this hook: processing() then looks for the item just taken.
        self._carries_items = 0
        #: Worker scopes open now, in any thread: processing() looks for its worker only if > 0.
        self._workers_open = 0

    def _bind(self, pipeline: Runtime) -> _State:
        # The base keeps it on the registry: tracked depths survive the queue binding there again.
        return _State(self, pipeline)

    def _binds_at_install(self) -> bool:
        return (
            self._depth_function is not None
            or self._dead_letter_function is not None
            or self._oldest_age_function is not None
        )

    def _worker_opened(self, step: int) -> None:
        with self._states_lock:
            self._workers_open += step

    # -- jobs ---------------------------------------------------------------------------------

    def enqueued(
        self,
        count: int = 1,
        *,
        priority: str | int | None = None,
        job_type: str | None = None,
        carrier: MutableMapping[str, str] | None = None,
    ) -> None:
        """Count ``count`` jobs put on the queue (depth +count).

        ``job_type`` is the ``job.type`` attribute. ``carrier`` (the job's headers, a dict) gets
        the trace context written into it, for :meth:`processing` to continue; a span
        ``queue.send <name>`` (PRODUCER) is its parent when sampled.

        >>> import otel_pipeline as op
        >>> headers: dict[str, str] = {}
        >>> op.queue("emails").enqueued(job_type="welcome", carrier=headers)
        """
        # The usual int passes without a call; anything else is amount()'s to check (or drop).
        if type(count) is not int or not 0 <= count <= MAX_AMOUNT:  # noqa: SIM102
            if amount(self, "enqueued", "count", count) is None:
                return
        key = None if priority is None else _priority(self, "enqueued", priority)
        if job_type is not None or carrier is not None:
            self._enqueued(count, key, job_type, carrier)
            return
        try:
            # _current(), inline: this runs once per job.
            if self._generation != STATE.generation:
                self._refresh()
            state = self._bound
            if state is not None:
                # The lane made before is the usual case: no call.
                lane = state.plain if key is None else state.lanes.get(key) or state.lane(self, key)
                lane.enqueued.add(count)
                state.depth.add(count)
        except Exception as exc:
            internal_error("queue.enqueued", exc)

    def _enqueued(
        self, count: int, priority: str | None, job_type: str | None, carrier: MutableMapping[str, str] | None
    ) -> None:
        """enqueued() given a job type or a carrier (kept off the plain call's path)."""
        if job_type is not None:
            job_type = label(self, "enqueued", "job_type", job_type)
        if carrier is not None and not isinstance(carrier, MutableMapping):
            dropped(
                self,
                "enqueued",
                "carrier",
                carrier,
                "wrong type",
                "a mutable mapping (a dict of message headers)",
                "the job is counted, no trace context is written",
            )
            carrier = None
        try:
            state = self._current()
            if state is None:
                return
            lane = (
                state.lane(self, priority) if job_type is None else state.typed_lane(self, priority, job_type)
            )
            lane.enqueued.add(count)
            state.depth.add(count)
            if carrier is not None:
                publish(state.pipeline.tracer, lane.send_name, lane.send_attributes, carrier)
        except Exception as exc:
            internal_error("queue.enqueued", exc)

    def dequeued(
        self, count: int = 1, *, enqueued_at: float | None = None, priority: str | int | None = None
    ) -> None:
        """Count ``count`` jobs taken off the queue without :meth:`processing` (depth -count).

        ``enqueued_at`` (a ``time.time()`` value) records the job's wait time, once per call.

        >>> import time
        >>> import otel_pipeline as op
        >>> op.queue("emails").dequeued(enqueued_at=time.time() - 0.5)
        """
        # The usual int passes without a call; anything else is amount()'s to check (or drop).
        if type(count) is not int or not 0 <= count <= MAX_AMOUNT:  # noqa: SIM102
            if amount(self, "dequeued", "count", count) is None:
                return
        self._dequeued(count, _priority(self, "dequeued", priority), _waited(self, "dequeued", enqueued_at))

    def _dequeued(self, count: float, priority: str | None, wait: float | None) -> None:
        try:
            state = self._current()
            if state is None:
                return
            lane = state.lane(self, priority)
            lane.dequeued.add(count)
            state.depth.add(-count)
            if wait is not None:
                lane.wait_time.record(wait)
        except Exception as exc:
            internal_error("queue.dequeued", exc)

    def processing(
        self,
        *,
        enqueued_at: float | None = None,
        priority: str | int | None = None,
        job_id: str | int | None = None,
        job_type: str | None = None,
        carrier: Mapping[str, str] | Callable[..., Mapping[str, str] | None] | None = None,
        carriers: Sequence[Mapping[str, str]] | Callable[..., Sequence[Mapping[str, str]]] | None = None,
    ) -> TimedScope:
        """Process one job: ``with``, ``async with`` or a decorator; a span ``queue.process <name>``.

        Takes it off the queue (depth -1), holds it in progress, then counts and times it by
        outcome. ``enqueued_at`` (a ``time.time()`` value) records how long it waited;
        ``job_id`` goes on the span only; ``job_type`` is the ``job.type`` attribute.

        ``carrier`` (the headers :meth:`enqueued` wrote into) continues the producer's trace: the
        span (CONSUMER) is the child of the producer's. ``carriers=[...]`` (a batch) is
        ``len(carriers)`` jobs processed together under one span with a link to each job's
        producer instead (``carriers=[headers]``: one job, linked rather than a child). As a
        decorator, ``carrier``/``carriers`` may be a function of the decorated function's
        arguments that returns them. After a get() of a queue instrumented
        with :func:`otel_pipeline.instrument_queue`, the item's trace is continued without one.

        >>> import otel_pipeline as op
        >>> @op.queue("emails").processing()
        ... def send(to: str) -> str:
        ...     return to
        >>> send("ada@example.com")
        'ada@example.com'
        """
        try:
            # _current(), inline: this runs once per job.
            if self._generation != STATE.generation:
                self._refresh()
            state = self._bound
            if job_type is not None or carrier is not None or carriers is not None:
                return self._processing(state, enqueued_at, priority, job_id, job_type, carrier, carriers)
            if state is None:
                if job_id is not None:
                    identifier(self, "processing", "job_id", job_id)
                if enqueued_at is not None:
                    _waited(self, "processing", enqueued_at)
                if priority is None:
                    return Noop(self.processing)
                key = _priority(self, "processing", priority)
                return Noop(
                    self.processing if key is None else functools.partial(self.processing, priority=key)
                )
            if priority is None:
                lane = state.plain
            else:
                found = state.lanes.get(priority) if type(priority) is str else None
                lane = (
                    found if found is not None else state.lane(self, _priority(self, "processing", priority))
                )
            if enqueued_at is not None:
                wait = _waited(self, "processing", enqueued_at)
                if wait is not None:
                    lane.wait_time.record(wait)
            if self._carries_items and (item := taken(self)) is not None:
                timed: Timed = Continued(lane.processing, (item,))
            else:
                timed = Timed(lane.processing)
            if job_id is not None:
                job = identifier(self, "processing", "job_id", job_id)
                if job is not None:
                    timed.span_attributes = {"queue.job.id": job}
            return timed
        except Exception as exc:
            internal_error("queue.processing", exc)
            return Noop(self.processing)

    def _processing(
        self,
        state: _State | None,
        enqueued_at: float | None,
        priority: str | int | None,
        job_id: str | int | None,
        job_type: str | None,
        carrier: Any,
        carriers: Any,
    ) -> TimedScope:
        """processing() given a job type or carriers (kept off the plain call's path)."""
        if job_type is not None:
            job_type = label(self, "processing", "job_type", job_type)
        if carriers is not None:
            carrier, carriers = _checked_carriers(self, carrier, carriers)
        key = _priority(self, "processing", priority)
        job = None if job_id is None else identifier(self, "processing", "job_id", job_id)
        wait = None if enqueued_at is None else _waited(self, "processing", enqueued_at)
        if state is None:
            return NoopContinued(_factory(self, key, job_type, carrier, carriers))
        if job_type is None:
            lane = state.lanes.get(key) or state.lane(self, key)
        else:
            lane = state.typed_lane(self, key, job_type)
        if wait is not None:
            lane.wait_time.record(wait)
        item = taken(self) if self._carries_items else None
        timed: Timed
        if carrier is not None or carriers is not None:  # an explicit carrier wins over the item's
            timed = _continued(self, lane, carrier, carriers)
        elif item is not None:
            timed = Continued(lane.processing, (item,))
        else:
            timed = Timed(lane.processing)
        if job is not None:
            timed.span_attributes = {"queue.job.id": job}
        return timed

    def retried(self, count: int = 1, *, requeued: bool = True) -> None:
        """Count ``count`` jobs given another attempt; ``requeued``: put back on the queue (depth +count)."""
        # The usual int passes without a call; anything else is amount()'s to check (or drop).
        if type(count) is not int or not 0 <= count <= MAX_AMOUNT:  # noqa: SIM102
            if amount(self, "retried", "count", count) is None:
                return
        back = requeued is True or flag(
            self, "retried", "requeued", requeued, "the retry is counted, the depth left as it is"
        )
        try:
            state = self._current()
            if state is not None:
                state.retried.add(count)
                if back:
                    state.depth.add(count)
        except Exception as exc:
            internal_error("queue.retried", exc)

    def dead_lettered(self, count: int = 1, *, reason: str = "unknown", job_type: str | None = None) -> None:
        """Count ``count`` jobs moved to the dead-letter queue for ``reason`` (low-cardinality).

        ``job_type`` is the ``job.type`` attribute, as for :meth:`enqueued`.
        """
        # The usual int passes without a call; anything else is amount()'s to check (or drop).
        if type(count) is not int or not 0 <= count <= MAX_AMOUNT:  # noqa: SIM102
            if amount(self, "dead_lettered", "count", count) is None:
                return
        reason = label(self, "dead_lettered", "reason", reason)
        if job_type is not None:
            job_type = label(self, "dead_lettered", "job_type", job_type)
        try:
            state = self._current()
            if state is not None:
                state.dead_letter_series(self, reason, job_type).add(count)
                state.dead_letter_depth.add(count)
        except Exception as exc:
            internal_error("queue.dead_lettered", exc)

    def replayed(self, count: int = 1) -> None:
        """Count ``count`` jobs moved from the dead-letter queue back onto the queue."""
        # The usual int passes without a call; anything else is amount()'s to check (or drop).
        if type(count) is not int or not 0 <= count <= MAX_AMOUNT:  # noqa: SIM102
            if amount(self, "replayed", "count", count) is None:
                return
        try:
            state = self._current()
            if state is not None:
                state.replayed.add(count)
                state.dead_letter_depth.add(-count)
                state.depth.add(count)
        except Exception as exc:
            internal_error("queue.replayed", exc)

    def worker(self) -> TimedScope:
        """A worker's lifetime (``with``, ``async with`` or a decorator): idle, active while processing.

        A :meth:`processing` call in the same thread or task makes the worker active.

        >>> import otel_pipeline as op
        >>> q = op.queue("emails")
        >>> with q.worker():
        ...     with q.processing():
        ...         pass
        """
        try:
            state = self._current()
            return Noop(self.worker) if state is None else Timed(state.worker)
        except Exception as exc:
            internal_error("queue.worker", exc)
            return Noop(self.worker)

    # -- observed values ----------------------------------------------------------------------

    @observes(DEPTH)
    def _observed_depth(self, state: _State) -> Points:
        value = _depth(self, state)
        if value is not None:
            yield value, state.attributes

    @observes(DEAD_LETTER_DEPTH)
    def _observed_dead_letter_depth(self, state: _State) -> Points:
        value = _read(self, "dead-letter depth", self._dead_letter_function, state.dead_letter_depth)
        if value is not None:
            yield value, state.attributes

    @observes(UTILIZATION)
    def _observed_utilization(self, state: _State) -> Points:
        capacity = self._capacity
        depth = None if capacity is None else _depth(self, state)
        if capacity is not None and depth is not None:
            yield depth / capacity, state.attributes

    @observes(OLDEST_AGE)
    def _observed_oldest_age(self, state: _State) -> Points:
        value = _read(self, "oldest job age", self._oldest_age_function, None)
        if value is not None:
            yield value, state.attributes

    def observe_depth(self, function: Callable[[], float | None] | None) -> None:
        """Read the depth with ``function`` at each collection (None: track it again).

        The function returns a number >= 0, or None for "no value now"; one that raises is
        logged once and skipped.

        >>> import otel_pipeline as op
        >>> backlog = ["a", "b"]
        >>> op.queue("emails").observe_depth(lambda: len(backlog))
        """
        self._depth_function = _observer("observe_depth", function)
        self._bind_now()  # so that the configured pipeline reports it

    def observe_dead_letter_depth(self, function: Callable[[], float | None] | None) -> None:
        """Read the dead-letter depth with ``function`` at each collection (None: track it again).

        >>> import otel_pipeline as op
        >>> op.queue("emails").observe_dead_letter_depth(lambda: 0)
        """
        self._dead_letter_function = _observer("observe_dead_letter_depth", function)
        self._bind_now()

    def observe_oldest_age(self, function: Callable[[], float | None] | None) -> None:
        """Read ``queue.oldest_job.age`` with ``function`` at each collection (None: stop).

        The function returns the age in seconds of the job waiting longest (0 when none waits),
        or None for "no value now"; a queue instrumented with
        :func:`otel_pipeline.instrument_queue` reports it without one.

        >>> import time
        >>> import otel_pipeline as op
        >>> waiting = [time.time() - 30.0]  # enqueue times of the jobs waiting
        >>> op.queue("emails").observe_oldest_age(lambda: time.time() - min(waiting) if waiting else 0.0)
        """
        self._oldest_age_function = _observer("observe_oldest_age", function)
        self._bind_now()

    @property
    def system(self) -> str | None:
        """The ``messaging.system`` attribute of the queue's spans (e.g. ``"redis"``), or None."""
        return self._system

    def set_system(self, system: str | None) -> None:
        """Set the ``messaging.system`` of the queue's spans (None: leave it out).

        >>> import otel_pipeline as op
        >>> op.queue("emails").set_system("redis")
        """
        if system is not None:
            check_name("system", system)
        with self._states_lock:
            self._system = system
            # States made later read self._system; the one of the current pipeline is updated here.
            try:
                state = self._current()
                for lane in [] if state is None else [*state.lanes.values(), *state.typed_lanes.values()]:
                    for attributes in (lane.processing.span_attributes, lane.send_attributes):
                        attributes.pop(SYSTEM, None)
                        if system is not None:
                            attributes[SYSTEM] = system
            except Exception as exc:
                internal_error("queue.set_system", exc)

    @property
    def capacity(self) -> float | None:
        """The most jobs the queue holds (for ``queue.utilization``), or None."""
        return self._capacity

    def set_capacity(self, capacity: float | None) -> None:
        """Set the capacity (a number > 0), or None for an unbounded queue.

        >>> import otel_pipeline as op
        >>> op.queue("emails").set_capacity(500)
        """
        if capacity is not None:
            check_count("capacity", capacity)
            if capacity == 0:
                raise ValueError("otel_pipeline: capacity=0 is not valid; use a number > 0, or None")
        self._capacity = capacity
        self._bind_now()


def queue(name: str, *, capacity: float | None = None) -> Queue:
    """The queue hook named ``name`` (same name, same object); ``capacity`` sets its capacity.

    >>> import otel_pipeline as op
    >>> op.queue("emails") is op.queue("emails", capacity=1000)
    True
    """
    try:
        hook = Queue._instances.get(name) or get_hook(Queue, name)  # the hit path inline: called per job
    except Exception:  # an unhashable name: get_hook raises the TypeError that names it
        hook = get_hook(Queue, name)
    if capacity is not None:
        hook.set_capacity(capacity)
    return hook


# -- validation --------------------------------------------------------------------------------


def _priority(hook: Queue, method: str, priority: object) -> str | None:
    """A priority attribute value: None, or a str or int (kept as its str, as Prometheus would).

    A bad one is recorded as ``_INVALID`` (one warning).
    """
    if priority is None:
        return None
    return label(hook, method, "priority", priority, ints=True)


def _waited(hook: Queue, method: str, enqueued_at: object) -> float | None:
    """Seconds since ``enqueued_at`` (a ``time.time()`` value), never negative (clock skew).

    None when not given, or when it is not valid (then recorded without a wait time, one warning).
    """
    if enqueued_at is None:
        return None
    at = amount(hook, method, "enqueued_at", enqueued_at, "recorded without a wait time")
    return None if at is None else max(0.0, time() - at)


SYSTEM = "messaging.system"


def _messaging(hook: Queue, operation: str) -> dict[str, Any]:
    """The messaging semantic-convention attributes of the queue's ``operation`` spans."""
    attributes: dict[str, Any] = {
        "messaging.destination.name": hook.name,
        "messaging.operation.type": operation,
        "messaging.operation.name": operation,
    }
    if hook._system is not None:
        attributes[SYSTEM] = hook._system
    return attributes


def _checked_carriers(hook: Queue, carrier: Any, carriers: Any) -> tuple[Any, Any]:
    """processing()'s (carrier, carriers) when carriers is given: a list or tuple, or a function.

    Both given, the batch's carriers win; carriers of another type are dropped: one warning each.
    """
    if carrier is not None:
        dropped(
            hook,
            "processing",
            "carrier",
            carrier,
            "given with carriers",
            "left out when carriers= (a batch) is given",
            "the batch's carriers are used",
        )
    if callable(carriers) or isinstance(carriers, (list, tuple)):
        return None, carriers
    dropped(
        hook,
        "processing",
        "carriers",
        carriers,
        "wrong type",
        "a list or tuple of the batch's carriers, or a function of the call's arguments",
        "the job is processed without them",
    )
    return None, None


def _picked(function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """What a carrier function returns for one decorated call (None, logged once, if it raises)."""
    try:
        return function(*args, **kwargs)
    except Exception:
        warn_once(f"carrier-function:{function!r}", "a carrier function raised; the call has no carrier")
        logger.debug("carrier function failure", exc_info=True)
        return None


def _factory(
    hook: Queue,
    priority: str | None,
    job_type: str | None,
    carrier: Any,
    carriers: Any,
) -> Callable[..., TimedScope]:
    """What a decorated function's calls run in: processing() with these options, carriers read per call."""

    def make(*args: Any, **kwargs: Any) -> TimedScope:
        one = _picked(carrier, args, kwargs) if callable(carrier) else carrier
        many = _picked(carriers, args, kwargs) if callable(carriers) else carriers
        if many is not None and not isinstance(many, (list, tuple)):
            warn_once("carriers-function", "a carriers function returned no list or tuple; ignored")
            many = None
        return hook.processing(priority=priority, job_type=job_type, carrier=one, carriers=many)

    return make


def _continued(hook: Queue, lane: _Lane, carrier: Any, carriers: Any) -> Continued:
    """The timer of a job (or batch) whose producer's trace the carrier(s) continue."""
    decorating = (_factory, (hook, lane.priority, lane.job_type, carrier, carriers))
    if carriers is None:
        return Continued(lane.processing, (carrier,), False, decorating)
    if callable(carriers):  # read only in decorator form
        return Continued(lane.processing, (carriers,), True, decorating)
    return Batch(lane.processing, carriers, len(carriers), decorating)


def _observer(what: str, function: object) -> Callable[[], float | None] | None:
    if function is not None and not callable(function):
        raise TypeError(
            f"otel_pipeline: {what}() needs a function returning a number (or None), got "
            f"{type(function).__name__} {safe_repr(function)}"
        )
    return function


def _too_many(hook: Queue, what: str) -> None:
    warn_once(
        f"queue-values:{hook.name}:{what}",
        "queue %r has more than %d %s; the rest are recorded as %s",
        hook.name,
        _MAX_VALUES,
        what,
        _OTHER,
    )


# -- observable callbacks ----------------------------------------------------------------------


def _read(
    hook: Queue, what: str, function: Callable[[], float | None] | None, level: _Level | None
) -> float | None:
    """The value of ``function`` if there is one, else the tracked ``level`` (once touched, >= 0)."""
    if function is None:
        return max(level.value, 0) if level is not None and level.touched else None
    try:
        value = function()
    except Exception:
        warn_once(
            f"queue-observe:{hook.name}:{what}",
            "queue %r: the %s function raised; skipped",
            hook.name,
            what,
        )
        logger.debug("observer failure", exc_info=True)
        return None
    if value is None:
        return None
    if not countable(value):  # finite, >= 0, within int64
        warn_once(
            f"queue-observe:{hook.name}:{what}",
            "queue %r: the %s function returned %s, not a number >= 0; skipped",
            hook.name,
            what,
            safe_repr(value),
        )
        return None
    return value


def _depth(hook: Queue, state: _State) -> float | None:
    return _read(hook, "depth", hook._depth_function, state.depth)
