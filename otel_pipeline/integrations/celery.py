"""Celery: every task published and run, recorded through the queue hook, with its trace.

``op.instrument_celery(app)`` connects receivers to Celery's signals, in producers and workers
alike (Celery's signals are process-wide: every app of the process is recorded; ``app`` gives the
broker and the declared queues whose depth is read). ``queue.name`` is the task's Celery queue
(its routing key) and ``job.type`` the task's name:

- producer (``before_task_publish``): the task is counted as enqueued; the trace context and the
  publish time go into the message's headers (a retry's republish carries them again without being
  counted: the retry itself is);
- worker (``task_prerun`` / ``task_postrun``, in the process that runs the task): a
  ``processing()`` scope (in progress, duration, the span continuing the producer's trace, the wait
  since the publish, or since the ETA of a scheduled task), ended by the task's state: ``success``,
  ``failure`` (``error.type``), ``retry`` (also ``queue.jobs.retried``), ``rejected``, ``ignored``;
  ``task_revoked``, ``task_rejected`` and ``task_unknown`` (in the worker's main process) count
  ``revoked`` and ``rejected`` jobs; a hard time limit or a lost pool process (the task's process
  gone) is a ``failure`` counted by the main process;
- workers (``worker_process_init`` / ``worker_process_shutdown`` / ``worker_shutdown``): each pool
  process (prefork), the worker itself (solo) or each pool thread (threads, from its first task)
  is one worker of each queue it consumes, idle or active;
- the broker (Redis): ``queue.depth`` and ``queue.oldest_job.age`` of the declared queues
  (``task_queues``, else the default queue), read at collection (see ``_redis.py``).
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from time import time
from typing import Any

from otel_pipeline._internal.boundary import contained
from otel_pipeline._internal.carrier import inject
from otel_pipeline._internal.errors import logger, warn_once
from otel_pipeline._internal.timed import TimedScope
from otel_pipeline.hooks.queue import Queue, finish_job, queue
from otel_pipeline.integrations import _redis

__all__ = ["PUBLISHED_AT", "instrument_celery", "uninstrument_celery"]

#: The message header holding the publish time (a ``time.time()`` value) the wait is measured from.
PUBLISHED_AT = "otel_pipeline_published_at"
_TRACE_HEADERS = ("traceparent", "tracestate", "baggage")
_DEFAULT_SEP = "\x06\x16"
_DEFAULT_STEPS = (0, 3, 6, 9)
#: messaging.system of the spans, by the broker URL's scheme.
_SYSTEMS = {
    "redis": "redis",
    "rediss": "redis",
    "amqp": "rabbitmq",
    "amqps": "rabbitmq",
    "pyamqp": "rabbitmq",
    "librabbitmq": "rabbitmq",
    "sqs": "aws_sqs",
}


def _celery() -> Any:
    try:
        import celery
    except ImportError:
        raise ImportError(
            "otel_pipeline: instrument_celery() needs Celery: pip install 'otel_pipeline[celery]'"
        ) from None
    return celery


class _Instrumentation:
    """What instrument_celery() connected and what this process has open (see module docs)."""

    def __init__(self, celery: Any) -> None:
        self.celery = celery
        self.apps: list[Any] = []
        self.receivers: list[tuple[Any, Callable[..., None], str]] = []
        self.lock = threading.Lock()
        #: Tasks running in this process: task id -> (scope, hook, task name).
        self.running: dict[str, tuple[TimedScope, Queue, str]] = {}
        #: Worker scopes open in this process, and the threads they were opened in.
        self.workers: list[TimedScope] = []
        self.worker_threads: set[int] = set()
        #: The worker (its WorkController) of this process, seen at worker_init (here or before a fork).
        self.controller: Any = None
        #: Hooks given their messaging.system; depth observers by hook.
        self.hooks: dict[str, Queue] = {}
        self.observed: list[tuple[Queue, list[Callable[[], float | None]]]] = []
        self.system: str | None = None

    def hook(self, name: str) -> Queue:
        found = self.hooks.get(name)
        if found is None:
            found = queue(name)
            if self.system is not None and found.system is None:
                found.set_system(self.system)
            self.hooks[name] = found
        return found

    def after_fork(self) -> None:
        """A forked child (a pool process): nothing of the parent's is open here."""
        self.lock = threading.Lock()
        self.running = {}
        self.workers = []
        self.worker_threads = set()


_STATE: _Instrumentation | None = None
_LOCK = threading.Lock()


def instrument_celery(app: Any = None) -> None:
    """Record Celery's tasks through the queue hook (``app=None``: the current app). Idempotent.

    Call it where the app is defined, so that producers and workers both run it. See
    docs/integrations/celery.md.

    >>> import otel_pipeline as op
    >>> from celery import Celery
    >>> op.instrument_celery(Celery("shop", broker="memory://"))
    >>> op.uninstrument_celery()
    True
    """
    global _STATE
    celery = _celery()
    if app is None:
        app = celery.current_app._get_current_object()
    if not isinstance(app, celery.Celery):
        raise TypeError(
            "otel_pipeline: instrument_celery() needs a celery.Celery app (or None), got "
            f"{type(app).__name__}"
        )
    with _LOCK:
        state = _STATE
        if state is None:
            state = _STATE = _Instrumentation(celery)
            _connect(state)
        if any(known is app for known in state.apps):
            return
        state.apps.append(app)
        if state.system is None:
            state.system = _SYSTEMS.get(_scheme(app))
        _observe_broker(state, app)


def uninstrument_celery() -> bool:
    """Disconnect every receiver and stop reading the broker; False when it was not instrumented.

    >>> import otel_pipeline as op
    >>> op.uninstrument_celery()
    False
    """
    global _STATE
    with _LOCK:
        state = _STATE
        if state is None:
            return False
        _STATE = None
    for signal, receiver, uid in state.receivers:
        signal.disconnect(receiver, dispatch_uid=uid)
    for hook, functions in state.observed:
        _redis.unobserve(hook, functions)
    _close_workers(state)
    return True


# -- wiring ----------------------------------------------------------------------------------------


def _connect(state: _Instrumentation) -> None:
    signals = state.celery.signals
    handlers: dict[str, Callable[..., None]] = {
        "before_task_publish": _published,
        "task_prerun": _started,
        "task_postrun": _ended,
        "task_failure": _failed,
        "task_revoked": _revoked,
        "task_rejected": _rejected,
        "task_unknown": _unknown,
        "worker_init": _worker_init,
        "worker_process_init": _worker_process_init,
        "worker_process_shutdown": _worker_shutdown,
        "worker_shutdown": _worker_shutdown,
    }
    for name, handler in handlers.items():
        signal = getattr(signals, name)
        uid = f"otel_pipeline.{name}"
        receiver = _bound(state, handler)
        signal.connect(receiver, weak=False, dispatch_uid=uid)
        state.receivers.append((signal, receiver, uid))


def _bound(state: _Instrumentation, handler: Callable[..., None]) -> Callable[..., None]:
    guarded = contained(f"celery.{handler.__name__.strip('_')}")(handler)

    def receiver(*args: Any, **kwargs: Any) -> None:
        guarded(state, *args, **kwargs)

    return receiver


def _after_fork() -> None:
    state = _STATE
    if state is not None:
        state.after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def _app_of(state: _Instrumentation, task: Any) -> Any:
    app = getattr(task, "app", None) if task is not None else None
    return app if app is not None else (state.apps[0] if state.apps else None)


def _default_queue(app: Any) -> str:
    name = getattr(getattr(app, "conf", None), "task_default_queue", None)
    return name if isinstance(name, str) and name else "celery"


def _queue_name(state: _Instrumentation, delivery_info: Any, task: Any = None) -> str:
    if isinstance(delivery_info, dict):
        key = delivery_info.get("routing_key")
        if isinstance(key, str) and key:
            return key
    return _default_queue(_app_of(state, task))


# -- producer --------------------------------------------------------------------------------------


def _published(
    ours: _Instrumentation,
    sender: Any = None,
    headers: Any = None,
    routing_key: Any = None,
    **_: Any,
) -> None:
    if not isinstance(headers, dict):  # task message protocol 1 (Celery 3): not supported
        return
    name = headers.get("task") or sender
    retries = headers.get("retries")
    if isinstance(retries, int) and retries > 0:
        # A retry republished by the task itself: counted as a retry when the attempt ends; the
        # next attempt continues the trace of this one.
        inject(headers)
    else:
        hook = ours.hook(
            routing_key
            if isinstance(routing_key, str) and routing_key
            else _default_queue(_app_of(ours, None))
        )
        hook.enqueued(job_type=str(name), carrier=headers)
    headers[PUBLISHED_AT] = time()


# -- worker: one task ------------------------------------------------------------------------------


def _started(ours: _Instrumentation, task_id: Any = None, task: Any = None, **_: Any) -> None:
    if task is None or not isinstance(task_id, str):
        return
    request = task.request
    hook = ours.hook(_queue_name(ours, getattr(request, "delivery_info", None), task))
    if _threads_pool(ours) and threading.get_ident() not in ours.worker_threads:
        _open_workers(ours, task)  # a threads pool's thread, at its first task
    carrier = {key: value for key in _TRACE_HEADERS if isinstance(value := getattr(request, key, None), str)}
    scope = hook.processing(
        enqueued_at=_waited_from(getattr(request, PUBLISHED_AT, None), getattr(request, "eta", None)),
        job_type=task.name,
        job_id=task_id,
        carrier=carrier or None,
    )
    scope.__enter__()
    ours.running[task_id] = (scope, hook, task.name)


def _ended(
    ours: _Instrumentation,
    task_id: Any = None,
    task: Any = None,
    retval: Any = None,
    state: Any = None,
    **_: Any,
) -> None:
    found = ours.running.pop(task_id, None) if isinstance(task_id, str) else None
    if found is None:
        return
    scope, hook, name = found
    outcome = state
    if outcome == "SUCCESS":
        finish_job(scope)
    elif outcome == "RETRY":
        hook.retried()
        finish_job(scope, outcome="retry")
    elif outcome == "REJECTED":
        finish_job(scope, outcome="rejected")
        if not getattr(retval, "requeue", False) and _dead_letters(_app_of(ours, task), hook.name):
            hook.dead_lettered(reason="rejected", job_type=name)
    elif outcome == "IGNORED":
        finish_job(scope, outcome="ignored")
    else:
        finish_job(scope, error=retval if isinstance(retval, BaseException) else _UnknownError())


class _UnknownError(Exception):
    """A task that failed without an exception Celery handed over."""


def _failed(
    ours: _Instrumentation, sender: Any = None, task_id: Any = None, exception: Any = None, **_: Any
) -> None:
    """A task whose own process could not report its end: a hard time limit, a lost pool process."""
    if not isinstance(task_id, str) or task_id in ours.running:
        return  # the task's postrun ends it here
    from billiard.exceptions import WorkerLostError  # Celery's own dependency

    exceptions = ours.celery.exceptions
    if not isinstance(exception, (exceptions.TimeLimitExceeded, WorkerLostError)):
        return
    request = getattr(sender, "request", None)
    hook = ours.hook(_queue_name(ours, getattr(request, "delivery_info", None), sender))
    limit = (
        exception.args[0] if isinstance(exception, exceptions.TimeLimitExceeded) and exception.args else None
    )
    duration = float(limit) if isinstance(limit, (int, float)) and math.isfinite(limit) else 0.0
    scope = hook.processing(job_type=getattr(sender, "name", None) or "unknown", job_id=task_id)
    scope.__enter__()
    finish_job(scope, error=exception, duration=duration)


def _revoked(ours: _Instrumentation, sender: Any = None, request: Any = None, **_: Any) -> None:
    task_id = getattr(request, "id", None)
    if not isinstance(task_id, str):
        return
    found = ours.running.pop(task_id, None)
    if found is not None:
        finish_job(found[0], outcome="revoked")
        return
    hook = ours.hook(_queue_name(ours, getattr(request, "delivery_info", None), sender))
    name = getattr(sender, "name", None) or getattr(request, "task", None) or "unknown"
    _record_unstarted(hook, str(name), task_id, "revoked", None)


def _rejected(
    ours: _Instrumentation, sender: Any = None, message: Any = None, exc: Any = None, **_: Any
) -> None:
    """A message the worker could not take as a task (unknown format, invalid)."""
    headers = getattr(message, "headers", None) or {}
    hook = ours.hook(_queue_name(ours, getattr(message, "delivery_info", None)))
    name = headers.get("task") if isinstance(headers, dict) else None
    _record_unstarted(
        hook, str(name or "unknown"), None, "rejected", exc if isinstance(exc, BaseException) else None
    )


def _unknown(
    ours: _Instrumentation,
    sender: Any = None,
    message: Any = None,
    exc: Any = None,
    name: Any = None,
    id: Any = None,
    **_: Any,
) -> None:
    """A task of a name this worker does not know."""
    hook = ours.hook(_queue_name(ours, getattr(message, "delivery_info", None)))
    error = exc if isinstance(exc, BaseException) else None
    _record_unstarted(hook, str(name or "unknown"), id if isinstance(id, str) else None, "rejected", error)


def _record_unstarted(
    hook: Queue, name: str, job_id: str | None, outcome: str, error: BaseException | None
) -> None:
    """A job that ended without running: counted with its outcome, a duration of 0."""
    scope = hook.processing(job_type=name, job_id=job_id)
    scope.__enter__()
    finish_job(scope, outcome=outcome, error=error, duration=0.0)


def _waited_from(published: Any, eta: Any) -> float | None:
    """When the task's wait started: its publish time, or its ETA when that is later."""
    start = float(published) if isinstance(published, (int, float)) and math.isfinite(published) else None
    if start is not None and start < 0:
        start = None
    if isinstance(eta, str):
        try:
            at = datetime.fromisoformat(eta)
        except ValueError:
            at = None
        if at is not None:
            due = (at if at.tzinfo is not None else at.replace(tzinfo=timezone.utc)).timestamp()
            start = due if start is None else max(start, due)
    return start


def _dead_letters(app: Any, name: str) -> bool:
    """Whether the app declares ``name`` with a dead-letter exchange (RabbitMQ's x-dead-letter-exchange)."""
    try:
        declared = app.amqp.queues.get(name) if app is not None else None
    except Exception:
        return False
    arguments = getattr(declared, "queue_arguments", None) or {}
    return "x-dead-letter-exchange" in arguments


# -- worker: its processes and threads -------------------------------------------------------------


def _worker_init(ours: _Instrumentation, sender: Any = None, **_: Any) -> None:
    ours.controller = sender


def _threads_pool(ours: _Instrumentation) -> bool:
    """Whether this process's worker runs its tasks in threads (the pool is known after worker_init)."""
    pool = getattr(ours.controller, "pool_cls", None)
    if pool is None:
        return False
    name = pool if isinstance(pool, str) else getattr(pool, "__module__", "")
    return "thread" in name


def _worker_process_init(ours: _Instrumentation, **_: Any) -> None:
    _open_workers(ours, None)


def _open_workers(state: _Instrumentation, task: Any) -> None:
    """Count the current thread as one worker of each queue the worker consumes."""
    with state.lock:
        ident = threading.get_ident()
        if ident in state.worker_threads:
            return
        state.worker_threads.add(ident)
    for name in _consumed(state, task):
        scope = state.hook(name).worker()
        scope.__enter__()
        state.workers.append(scope)


def _consumed(state: _Instrumentation, task: Any) -> list[str]:
    app = _app_of(state, task)
    try:
        return sorted(app.amqp.queues.consume_from) or [_default_queue(app)]
    except Exception:
        return [_default_queue(app)]


def _worker_shutdown(ours: _Instrumentation, **_: Any) -> None:
    _close_workers(ours)


def _close_workers(state: _Instrumentation) -> None:
    with state.lock:
        workers, state.workers = state.workers, []
        state.worker_threads = set()
    for scope in workers:
        scope.__exit__(None, None, None)


# -- the broker ------------------------------------------------------------------------------------


def _scheme(app: Any) -> str:
    url = app.conf.broker_url or app.conf.broker_read_url or ""
    if not isinstance(url, str):
        return ""
    return url.split("://", 1)[0].split("+", 1)[0].lower() if "://" in url else ""


def _declared(app: Any) -> list[str]:
    queues = app.conf.task_queues
    names = [getattr(found, "name", None) for found in (queues or [])]
    return [name for name in names if isinstance(name, str) and name] or [_default_queue(app)]


def _observe_broker(state: _Instrumentation, app: Any) -> None:
    """Read the declared queues' depth and oldest age from a Redis broker at collection."""
    if _scheme(app) not in ("redis", "rediss"):
        return
    try:
        import redis
    except ImportError:  # kombu's Redis transport needs it: without it the app cannot use Redis
        return
    options = app.conf.broker_transport_options or {}
    prefix = str(options.get("global_keyprefix", "") or "")
    sep = str(options.get("sep", _DEFAULT_SEP))
    steps = sorted({int(step) for step in options.get("priority_steps", _DEFAULT_STEPS)})
    url = app.conf.broker_url
    try:
        client = redis.Redis.from_url(
            url, socket_timeout=_redis.TIMEOUT, socket_connect_timeout=_redis.TIMEOUT
        )
    except Exception:
        warn_once(
            "celery-broker", "cannot read Celery's Redis broker %r: its queue depths are not reported", url
        )
        logger.debug("redis client failure", exc_info=True)
        return
    keys = {
        name: [f"{prefix}{name}" if not step else f"{prefix}{name}{sep}{step}" for step in steps]
        for name in _declared(app)
    }
    reader = _redis.ListsReader(client, keys, head=-1, head_times=_published_times, what="Celery's broker")
    for name in keys:
        hook = state.hook(name)
        state.observed.append((hook, _redis.observe(hook, reader, name, ages=True)))


def _published_times(client: Any, heads: Any) -> list[float | None]:
    """The publish times in the headers of Celery messages (JSON, as kombu's Redis transport keeps them)."""
    times: list[float | None] = []
    for head in heads:
        put = None
        if head is not None:
            try:
                headers = json.loads(head).get("headers") or {}
                value = headers.get(PUBLISHED_AT)
                put = float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None
            except (ValueError, AttributeError):
                put = None
        times.append(put)
    return times
