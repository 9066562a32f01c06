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
import weakref
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from time import time
from typing import Any

from otel_pipeline._internal.catalogue import declare
from otel_pipeline._internal.errors import logger, warn_once
from otel_pipeline._internal.hook import Hook, check_count, check_name, get_hook, hooks_of
from otel_pipeline._internal.outcomes import OutcomeOperation, OutcomeSeries
from otel_pipeline._internal.registry import Registry
from otel_pipeline._internal.runtime import ON_INSTALL, STATE, Pipeline
from otel_pipeline._internal.spans import HookTracer
from otel_pipeline._internal.spec import Kind
from otel_pipeline._internal.timed import Noop, Operation, Timed, TimedScope
from otel_pipeline.hooks.events import check_id

__all__ = ["Queue", "queue"]

HOOK = "queue"
NAME = "queue.name"
PRIORITY = "priority"
_JOB = [NAME, PRIORITY]
_OUTCOME = [NAME, PRIORITY, "outcome", "error.type"]
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
    [NAME, "reason"],
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
#: Distinct priorities and dead-letter reasons kept per queue; more fold into "_OTHER".
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

    __slots__ = ("busy", "hook", "lock", "state")

    def __init__(self, hook: Queue, state: _State) -> None:
        self.hook = hook
        self.state = state
        self.busy = 0
        self.lock = threading.Lock()


#: The worker scopes open in this thread or task.
_WORKERS: ContextVar[tuple[_Slot, ...]] = ContextVar("otel_pipeline_queue_workers", default=())


def _busy(hook: Queue, step: int) -> None:
    """A job of ``hook`` started (+1) or ended (-1) in the innermost worker of ``hook``, if any."""
    for slot in reversed(_WORKERS.get()):
        if slot.hook is hook:
            with slot.lock:
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
        super().__init__(state.pipeline.tracer, f"queue.process {hook.name}", attributes, factory, outcomes)
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

    def end(self, duration: float, exc_type: type[BaseException] | None, timed: Timed) -> None:
        slots = _WORKERS.get()
        for index in range(len(slots) - 1, -1, -1):
            slot = slots[index]
            if slot.hook is self._hook:
                _WORKERS.set(slots[:index] + slots[index + 1 :])
                (slot.state.active if slot.busy else slot.state.idle).add(-1)
                self._hook._worker_opened(-1)
                return


class _Lane:
    """The series of one priority (or of none)."""

    __slots__ = ("dequeued", "enqueued", "processing", "wait_time")

    def __init__(self, hook: Queue, state: _State, priority: str | None) -> None:
        attributes = dict(state.attributes) if priority is None else {**state.attributes, PRIORITY: priority}
        registry = state.registry
        self.enqueued = registry.instrument(ENQUEUED).bind(attributes)
        self.dequeued = registry.instrument(DEQUEUED).bind(attributes)
        self.wait_time = registry.instrument(WAIT_TIME).bind(attributes)
        factory = (
            hook.processing if priority is None else functools.partial(hook.processing, priority=priority)
        )
        self.processing = _Processing(hook, state, attributes, factory)


class _State:
    """A queue's series and tracked depths on one pipeline's registry."""

    def __init__(self, hook: Queue, pipeline: Pipeline) -> None:
        registry = pipeline.registry
        assert registry is not None
        self.pipeline = pipeline
        self.registry = registry
        self.attributes = {NAME: hook.name}
        self.retried = registry.instrument(RETRIED).bind(self.attributes)
        self.replayed = registry.instrument(REPLAYED).bind(self.attributes)
        self.idle = registry.instrument(WORKERS).bind({**self.attributes, "state": "idle"})
        self.active = registry.instrument(WORKERS).bind({**self.attributes, "state": "active"})
        self.depth = _Level()
        self.dead_letter_depth = _Level()
        self.dead_lettered: dict[str, Any] = {}
        self.lanes: dict[str | None, _Lane] = {None: _Lane(hook, self, None)}
        self.worker = _Worker(hook, self)

    def lane(self, hook: Queue, priority: str | None) -> _Lane:
        lane = self.lanes.get(priority)
        if lane is None:
            if len(self.lanes) > _MAX_VALUES and priority != _OTHER:
                _too_many(hook, "priorities")
                return self.lane(hook, _OTHER)
            lane = self.lanes.setdefault(priority, _Lane(hook, self, priority))
        return lane

    def dead_letter_series(self, hook: Queue, reason: str) -> Any:
        series = self.dead_lettered.get(reason)
        if series is None:
            if len(self.dead_lettered) >= _MAX_VALUES:
                _too_many(hook, "dead-letter reasons")
                reason = _OTHER
            attributes = {**self.attributes, "reason": reason}
            series = self.dead_lettered.setdefault(
                reason, self.registry.instrument(DEAD_LETTERED).bind(attributes)
            )
        return series


class Queue(Hook):
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
        self._states: weakref.WeakKeyDictionary[Registry, _State] = weakref.WeakKeyDictionary()
        self._states_lock = threading.Lock()
        self._depth_function: Callable[[], float | None] | None = None
        self._dead_letter_function: Callable[[], float | None] | None = None
        self._capacity: float | None = None
        #: Worker scopes open now, in any thread: processing() looks for its worker only if > 0.
        self._workers_open = 0

    def _bind(self, pipeline: Pipeline) -> _State:
        registry = pipeline.registry
        assert registry is not None
        for spec, read in (
            (DEPTH, _depth),
            (DEAD_LETTER_DEPTH, _dead_letter_depth),
            (UTILIZATION, _utilization),
        ):
            registry.observe(spec, functools.partial(_observe_all, registry, read))
        # The same state each time the queue binds to this registry: tracked depths survive.
        state = self._states.get(registry)
        if state is None:
            with self._states_lock:
                state = self._states.get(registry)
                if state is None:
                    state = self._states[registry] = _State(self, pipeline)
        return state

    def _worker_opened(self, step: int) -> None:
        with self._states_lock:
            self._workers_open += step

    # -- jobs ---------------------------------------------------------------------------------

    def enqueued(self, count: int = 1, *, priority: str | int | None = None) -> None:
        """Count ``count`` jobs put on the queue (depth +count)."""
        check_count("count", count)
        key = _priority(priority)
        state = self._current()
        if state is not None:
            state.lane(self, key).enqueued.add(count)
            state.depth.add(count)

    def dequeued(
        self, count: int = 1, *, enqueued_at: float | None = None, priority: str | int | None = None
    ) -> None:
        """Count ``count`` jobs taken off the queue without :meth:`processing` (depth -count).

        ``enqueued_at`` (a ``time.time()`` value) records the job's wait time, once per call.

        >>> import time
        >>> import otel_pipeline as op
        >>> op.queue("emails").dequeued(enqueued_at=time.time() - 0.5)
        """
        check_count("count", count)
        self._dequeued(count, _priority(priority), _waited(enqueued_at))

    def _dequeued(self, count: float, priority: str | None, wait: float | None) -> None:
        state = self._current()
        if state is not None:
            lane = state.lane(self, priority)
            lane.dequeued.add(count)
            state.depth.add(-count)
            if wait is not None:
                lane.wait_time.record(wait)

    def processing(
        self,
        *,
        enqueued_at: float | None = None,
        priority: str | int | None = None,
        job_id: str | int | None = None,
    ) -> TimedScope:
        """Process one job: ``with``, ``async with`` or a decorator; a span ``queue.process <name>``.

        Takes it off the queue (depth -1), holds it in progress, then counts and times it by
        outcome. ``enqueued_at`` (a ``time.time()`` value) records how long it waited;
        ``job_id`` goes on the span only.

        >>> import otel_pipeline as op
        >>> @op.queue("emails").processing()
        ... def send(to: str) -> str:
        ...     return to
        >>> send("ada@example.com")
        'ada@example.com'
        """
        # _current(), inline: this runs once per job.
        if self._generation != STATE.generation:
            self._refresh()
        state = self._bound
        if state is None:
            if job_id is not None:
                check_id("job_id", job_id)
            _waited(enqueued_at)
            key = _priority(priority)
            return Noop(self.processing if key is None else functools.partial(self.processing, priority=key))
        lane = state.lanes.get(priority) if priority is None or type(priority) is str else None
        if lane is None:
            lane = state.lane(self, _priority(priority))
        if enqueued_at is not None:
            lane.wait_time.record(_waited(enqueued_at))
        timed = Timed(lane.processing)
        if job_id is not None:
            timed.span_attributes = {"queue.job.id": check_id("job_id", job_id)}
        return timed

    def retried(self, count: int = 1, *, requeued: bool = True) -> None:
        """Count ``count`` jobs given another attempt; ``requeued``: put back on the queue (depth +count)."""
        check_count("count", count)
        state = self._current()
        if state is not None:
            state.retried.add(count)
            if requeued:
                state.depth.add(count)

    def dead_lettered(self, count: int = 1, *, reason: str = "unknown") -> None:
        """Count ``count`` jobs moved to the dead-letter queue for ``reason`` (low-cardinality)."""
        check_count("count", count)
        check_name("reason", reason)
        state = self._current()
        if state is not None:
            state.dead_letter_series(self, reason).add(count)
            state.dead_letter_depth.add(count)

    def replayed(self, count: int = 1) -> None:
        """Count ``count`` jobs moved from the dead-letter queue back onto the queue."""
        check_count("count", count)
        state = self._current()
        if state is not None:
            state.replayed.add(count)
            state.dead_letter_depth.add(-count)
            state.depth.add(count)

    def worker(self) -> TimedScope:
        """A worker's lifetime (``with``, ``async with`` or a decorator): idle, active while processing.

        A :meth:`processing` call in the same thread or task makes the worker active.

        >>> import otel_pipeline as op
        >>> q = op.queue("emails")
        >>> with q.worker():
        ...     with q.processing():
        ...         pass
        """
        state = self._current()
        return Noop(self.worker) if state is None else Timed(state.worker)

    # -- observed values ----------------------------------------------------------------------

    def observe_depth(self, function: Callable[[], float | None] | None) -> None:
        """Read the depth with ``function`` at each collection (None: track it again).

        The function returns a number >= 0, or None for "no value now"; one that raises is
        logged once and skipped.

        >>> import otel_pipeline as op
        >>> backlog = ["a", "b"]
        >>> op.queue("emails").observe_depth(lambda: len(backlog))
        """
        self._depth_function = _observer("observe_depth", function)
        self._current()  # bind now, so the configured pipeline reports it

    def observe_dead_letter_depth(self, function: Callable[[], float | None] | None) -> None:
        """Read the dead-letter depth with ``function`` at each collection (None: track it again).

        >>> import otel_pipeline as op
        >>> op.queue("emails").observe_dead_letter_depth(lambda: 0)
        """
        self._dead_letter_function = _observer("observe_dead_letter_depth", function)
        self._current()

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
        self._current()


def queue(name: str, *, capacity: float | None = None) -> Queue:
    """The queue hook named ``name`` (same name, same object); ``capacity`` sets its capacity.

    >>> import otel_pipeline as op
    >>> op.queue("emails") is op.queue("emails", capacity=1000)
    True
    """
    hook = Queue._instances.get(name) or get_hook(Queue, name)  # the hit path inline: called per job
    if capacity is not None:
        hook.set_capacity(capacity)
    return hook


# -- validation --------------------------------------------------------------------------------


def _priority(priority: object) -> str | None:
    """A priority attribute value: None, or a str or int (kept as its str, as Prometheus would)."""
    if priority is None:
        return None
    if isinstance(priority, bool) or not isinstance(priority, (str, int)):
        raise TypeError(
            f"otel_pipeline: priority must be a str or an int, got {type(priority).__name__} {priority!r}"
        )
    return check_name("priority", str(priority))


def _waited(enqueued_at: object) -> float | None:
    """Seconds since ``enqueued_at`` (a ``time.time()`` value), never negative (clock skew)."""
    if enqueued_at is None:
        return None
    check_count("enqueued_at", enqueued_at)
    assert isinstance(enqueued_at, (int, float))
    return max(0.0, time() - enqueued_at)


def _observer(what: str, function: object) -> Callable[[], float | None] | None:
    if function is not None and not callable(function):
        raise TypeError(
            f"otel_pipeline: {what}() needs a function returning a number (or None), got "
            f"{type(function).__name__} {function!r}"
        )
    return function


def _too_many(hook: Queue, what: str) -> None:
    warn_once(
        f"queue-values:{hook.name}:{what}",
        "otel_pipeline: queue %r has more than %d %s; the rest are recorded as %s",
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
            "otel_pipeline: queue %r: the %s function raised; skipped",
            hook.name,
            what,
        )
        logger.debug("observer failure", exc_info=True)
        return None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        warn_once(
            f"queue-observe:{hook.name}:{what}",
            "otel_pipeline: queue %r: the %s function returned %r, not a number >= 0; skipped",
            hook.name,
            what,
            value,
        )
        return None
    return value


def _depth(hook: Queue, state: _State | None) -> float | None:
    return _read(hook, "depth", hook._depth_function, None if state is None else state.depth)


def _dead_letter_depth(hook: Queue, state: _State | None) -> float | None:
    level = None if state is None else state.dead_letter_depth
    return _read(hook, "dead-letter depth", hook._dead_letter_function, level)


def _utilization(hook: Queue, state: _State | None) -> float | None:
    capacity = hook._capacity
    if capacity is None:
        return None
    depth = _depth(hook, state)
    return None if depth is None else depth / capacity


def _observe_all(
    registry: Registry, read: Callable[[Queue, _State | None], float | None]
) -> Iterator[tuple[float, dict[str, Any]]]:
    """At collection: ``read`` every queue bound to ``registry`` or observed by a function."""
    for hook in hooks_of(Queue):
        state = hook._states.get(registry)
        if state is None and hook._depth_function is None and hook._dead_letter_function is None:
            continue
        value = read(hook, state)
        if value is not None:
            yield value, {NAME: hook.name}


def _bind_observed(pipeline: Pipeline) -> None:
    """Bind the queues whose depths functions read to a new pipeline, so that it reports them."""
    for hook in hooks_of(Queue):
        if hook._depth_function is not None or hook._dead_letter_function is not None:
            hook._current()


ON_INSTALL.append(_bind_observed)
