"""RQ: every job enqueued and run, recorded through the queue hook, with its trace.

``op.instrument_rq()`` patches RQ's classes (so every queue and worker of the process, whatever
its connection), in producers and workers alike. ``queue.name`` is the RQ queue's name and
``job.type`` the job's function name:

- producer (``Queue.enqueue_job``, under ``enqueue``/``enqueue_call``): the job is counted as
  enqueued and its trace context written into ``job.meta`` (saved with the job);
- worker (``Worker.execute_job`` / ``SimpleWorker.execute_job``, in the worker's own process): a
  ``processing()`` scope around the whole execution (for ``Worker``, the work horse's fork, run and
  exit), waiting since ``job.enqueued_at``, continuing the producer's trace; the work horse forked
  inside it inherits its span, so the job's own spans are its children (the horse flushes them
  before it exits). When the execution is over, the outcome is read back from Redis (one
  ``HMGET``): ``success``, ``failure`` with ``error.type`` (written into the job's meta by the work
  horse, ``WorkHorseTerminated`` when the horse died without a word), ``retry`` (RQ's ``Retry``:
  the job's retry counters moved; also ``queue.jobs.retried``), ``stopped``, ``canceled``. So every
  count lands in the worker process itself, exact on its own ``/metrics``;
- workers (``register_birth`` / ``register_death``): a worker is one worker of each of its queues;
- Redis: ``queue.depth`` (``LLEN`` of the queue's list) and ``queue.oldest_job.age`` (the head
  job's ``enqueued_at``) of every queue seen, read at collection (see ``_redis.py``).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from opentelemetry import trace

from otel_pipeline._internal import runtime
from otel_pipeline._internal.boundary import application_error, contained
from otel_pipeline._internal.errors import logger, warn_once
from otel_pipeline._internal.timed import TimedScope
from otel_pipeline.hooks.queue import Queue, finish_job, queue
from otel_pipeline.integrations import _redis

__all__ = ["META_CARRIER", "META_ERROR", "instrument_rq", "uninstrument_rq"]

#: ``job.meta`` key of the trace context written by the producer (a dict of headers).
META_CARRIER = "otel_pipeline.carrier"
#: ``job.meta`` key where the work horse leaves the failed attempt's ``[attempt, error type]``.
META_ERROR = "otel_pipeline.error"
#: Seconds the work horse may spend flushing its spans before it exits.
_HORSE_FLUSH_MS = 2000


def _rq() -> Any:
    try:
        import rq
        import rq.worker
    except ImportError:
        raise ImportError(
            "otel_pipeline: instrument_rq() needs RQ: pip install 'otel_pipeline[rq]'"
        ) from None
    return rq


class WorkHorseTerminated(Exception):
    """The error.type of a job whose work horse died before it could report (killed, out of memory)."""


class _Instrumentation:
    def __init__(self, rq: Any) -> None:
        self.rq = rq
        self.patched: list[tuple[type, str, Any]] = []
        self.lock = threading.Lock()
        self.hooks: dict[str, Queue] = {}
        #: Depth readers by (connection identity, queue name), with the hook's functions.
        self.readers: dict[tuple[Any, str], tuple[Queue, list[Callable[[], float | None]]]] = {}
        #: Worker scopes by worker (its id()).
        self.workers: dict[int, list[TimedScope]] = {}

    def hook(self, name: str) -> Queue:
        found = self.hooks.get(name)
        if found is None:
            found = queue(name)
            if found.system is None:
                found.set_system("redis")
            self.hooks[name] = found
        return found


_STATE: _Instrumentation | None = None
_LOCK = threading.Lock()


def instrument_rq() -> None:
    """Record RQ's jobs through the queue hook, in this process's producers and workers. Idempotent.

    Call it before enqueueing (producers) and before ``Worker.work()`` (workers: in a module the
    worker imports, or with ``rq worker --worker-class``). See docs/integrations/rq.md.

    >>> import otel_pipeline as op
    >>> op.instrument_rq()
    >>> op.uninstrument_rq()
    True
    """
    global _STATE
    rq = _rq()
    with _LOCK:
        if _STATE is not None:
            return
        state = _STATE = _Instrumentation(rq)
        workers = rq.worker
        _patch(state, rq.queue.Queue, "enqueue_job", _enqueue_job)
        for cls in (workers.Worker, workers.SimpleWorker):
            _patch(state, cls, "execute_job", _execute_job)
        _patch(state, workers.BaseWorker, "handle_exception", _handle_exception)
        _patch(state, workers.BaseWorker, "handle_job_retry", _handle_job_retry)
        _patch(state, workers.BaseWorker, "perform_job", _perform_job)
        _patch(state, workers.BaseWorker, "register_birth", _register_birth)
        _patch(state, workers.BaseWorker, "register_death", _register_death)


def uninstrument_rq() -> bool:
    """Restore RQ's classes and stop reading queue depths; False when it was not instrumented.

    >>> import otel_pipeline as op
    >>> op.uninstrument_rq()
    False
    """
    global _STATE
    with _LOCK:
        state = _STATE
        if state is None:
            return False
        _STATE = None
    for cls, name, original in reversed(state.patched):
        setattr(cls, name, original)
    for hook, functions in state.readers.values():
        _redis.unobserve(hook, functions)
    for scopes in state.workers.values():
        for scope in scopes:
            scope.__exit__(None, None, None)
    return True


def _patch(state: _Instrumentation, cls: type, name: str, wrapper: Callable[..., Any]) -> None:
    original = cls.__dict__[name]
    guard = contained(f"rq.{name}")

    def patched(self: Any, *args: Any, **kwargs: Any) -> Any:
        return wrapper(state, guard, original, self, *args, **kwargs)

    patched.__wrapped__ = original  # type: ignore[attr-defined]
    patched.__name__ = name
    setattr(cls, name, patched)
    state.patched.append((cls, name, original))


def _job_type(job: Any) -> str:
    try:
        name = job.func_name
    except Exception:  # a job that cannot be deserialized
        return "unknown"
    return name if isinstance(name, str) and name else "unknown"


# -- producer --------------------------------------------------------------------------------------


def _enqueue_job(
    state: _Instrumentation, guard: Any, original: Any, rq_queue: Any, job: Any, *args: Any, **kwargs: Any
) -> Any:
    guard(_enqueuing)(state, rq_queue, job)
    return original(rq_queue, job, *args, **kwargs)


def _enqueuing(state: _Instrumentation, rq_queue: Any, job: Any) -> None:
    hook = state.hook(rq_queue.name)
    carrier: dict[str, str] = {}
    hook.enqueued(job_type=_job_type(job), carrier=carrier)
    job.meta[META_CARRIER] = carrier
    _observe(state, rq_queue)


# -- worker ----------------------------------------------------------------------------------------


def _attempt(job: Any) -> list[Any]:
    """What changes between two attempts of a job: its retry counters."""
    return [job.retries_left, job.number_of_retries]


def _execute_job(
    state: _Instrumentation, guard: Any, original: Any, worker: Any, job: Any, rq_queue: Any
) -> Any:
    started = guard(_starting)(state, job, rq_queue)
    try:
        result = original(worker, job, rq_queue)
    except BaseException as error:
        if started is not None:
            finish_job(started[0], error=error)
        raise
    if started is not None:
        guard(_finishing)(state, job, *started)
    return result


def _starting(state: _Instrumentation, job: Any, rq_queue: Any) -> tuple[TimedScope, Queue, list[Any]]:
    hook = state.hook(rq_queue.name)
    _observe(state, rq_queue)
    carrier = job.meta.get(META_CARRIER) if isinstance(job.meta, dict) else None
    scope = hook.processing(
        enqueued_at=_timestamp(job.enqueued_at),
        job_type=_job_type(job),
        job_id=job.id,
        carrier=carrier if isinstance(carrier, dict) else None,
    )
    scope.__enter__()
    return scope, hook, _attempt(job)


def _finishing(state: _Instrumentation, job: Any, scope: TimedScope, hook: Queue, before: list[Any]) -> None:
    try:
        status, retries_left, retries = job.connection.hmget(
            job.key, ["status", "retries_left", "number_of_retries"]
        )
    except Exception as exc:  # Redis did not answer: not a fault of ours
        finish_job(scope, outcome="unknown")
        application_error(
            "rq.job-status", exc, "could not read an RQ job's status from Redis: outcome unknown"
        )
        return
    after = [_int(retries_left), _int(retries)]
    status = status.decode() if isinstance(status, bytes) else status
    if after != [_int(before[0]), _int(before[1])] and status != "failed":
        hook.retried()
        finish_job(scope, outcome="retry")
    elif status == "failed":
        finish_job(scope, error=_error(job, before))
    elif status in ("stopped", "canceled"):
        finish_job(scope, outcome=status)
    else:
        # finished; or queued/scheduled again by a Repeat; or gone (result_ttl=0 deletes it at once)
        finish_job(scope)


def _int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


class _Named(Exception):
    """Stands for an exception known only by its type's name (the work horse's, read from Redis)."""


def _error(job: Any, attempt: list[Any]) -> BaseException:
    """The exception of this failed attempt, as the work horse left it in the job's meta."""
    try:
        meta = job.get_meta(refresh=True)
    except Exception:
        meta = {}
    found = meta.get(META_ERROR) if isinstance(meta, dict) else None
    if isinstance(found, list) and len(found) == 2 and found[0] == attempt and isinstance(found[1], str):
        named: BaseException = type(found[1], (_Named,), {"__qualname__": found[1]})()
        return named
    return WorkHorseTerminated()


def _handle_exception(
    state: _Instrumentation, guard: Any, original: Any, worker: Any, job: Any, *exc_info: Any
) -> Any:
    guard(_stash_error)(job, exc_info)
    return original(worker, job, *exc_info)


def _stash_error(job: Any, exc_info: tuple[Any, ...]) -> None:
    """In the work horse: leave the error's type where the worker reads it (one HSET)."""
    if exc_info and isinstance(exc_info[0], type):
        job.meta[META_ERROR] = [_attempt(job), exc_info[0].__qualname__]
        job.save_meta()


def _handle_job_retry(
    state: _Instrumentation, guard: Any, original: Any, worker: Any, job: Any, *args: Any, **kwargs: Any
) -> Any:
    guard(_stash_exhausted)(job, kwargs.get("retry", args[1] if len(args) > 1 else None))
    return original(worker, job, *args, **kwargs)


class RetriesExhausted(Exception):
    """The error.type of a job that returned ``Retry`` once more than its ``max`` allows."""


def _stash_exhausted(job: Any, retry: Any) -> None:
    """In the work horse: a returned Retry past its max fails the job without an exception."""
    limit = getattr(retry, "max", None)
    if isinstance(limit, int) and job.number_of_retries and job.number_of_retries >= limit:
        job.meta[META_ERROR] = [_attempt(job), RetriesExhausted.__qualname__]
        job.save_meta()


def _perform_job(
    state: _Instrumentation, guard: Any, original: Any, worker: Any, job: Any, rq_queue: Any
) -> Any:
    try:
        return original(worker, job, rq_queue)
    finally:
        if os.getpid() != getattr(worker, "pid", os.getpid()):
            guard(_flush_horse)()


def _flush_horse() -> None:
    """In a work horse: export the job's spans now (it leaves with os._exit(), flushing nothing)."""
    pipeline = runtime.STATE.pipeline
    providers: list[Any] = (
        [] if pipeline is None or pipeline.tracer_provider is None else [pipeline.tracer_provider]
    )
    # The job's own spans go through the global provider: the one this process inherited.
    global_provider = trace.get_tracer_provider()
    if global_provider not in providers:
        providers.append(global_provider)
    for provider in providers:
        flush = getattr(provider, "force_flush", None)
        if callable(flush):
            flush(_HORSE_FLUSH_MS)


def _register_birth(state: _Instrumentation, guard: Any, original: Any, worker: Any) -> Any:
    result = original(worker)
    guard(_opening)(state, worker)
    return result


def _opening(state: _Instrumentation, worker: Any) -> None:
    scopes: list[TimedScope] = []
    for rq_queue in worker.queues:
        _observe(state, rq_queue)
        scope = state.hook(rq_queue.name).worker()
        scope.__enter__()
        scopes.append(scope)
    with state.lock:
        state.workers[id(worker)] = scopes


def _register_death(state: _Instrumentation, guard: Any, original: Any, worker: Any) -> Any:
    guard(_closing)(state, worker)
    return original(worker)


def _closing(state: _Instrumentation, worker: Any) -> None:
    with state.lock:
        scopes = state.workers.pop(id(worker), [])
    for scope in scopes:
        scope.__exit__(None, None, None)


def _timestamp(value: Any) -> float | None:
    if not isinstance(value, datetime):
        return None
    return (value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)).timestamp()


# -- Redis -----------------------------------------------------------------------------------------


def _observe(state: _Instrumentation, rq_queue: Any) -> None:
    """Read ``rq_queue``'s depth and oldest age at collection (once per connection and queue)."""
    connection = rq_queue.connection
    pool = getattr(connection, "connection_pool", None)
    kwargs = dict(getattr(pool, "connection_kwargs", None) or {})
    identity = (
        getattr(pool, "connection_class", None),
        tuple(sorted((k, repr(v)) for k, v in kwargs.items())),
    )
    key = (identity, rq_queue.name)
    if key in state.readers:
        return
    with state.lock:
        if key in state.readers:
            return
        try:
            client = _client(connection, pool, kwargs)
        except Exception:
            warn_once(
                f"rq-redis:{rq_queue.name}",
                "cannot read RQ queue %r from Redis: its depth is not reported",
                rq_queue.name,
            )
            logger.debug("rq redis client failure", exc_info=True)
            state.readers[key] = (state.hook(rq_queue.name), [])
            return
        job_prefix = getattr(rq_queue.job_class, "redis_job_namespace_prefix", "rq:job:")
        reader = _redis.ListsReader(
            client,
            {rq_queue.name: [rq_queue.key]},
            head=0,
            head_times=_enqueue_times(job_prefix),
            what=f"RQ queue {rq_queue.name!r}",
        )
        hook = state.hook(rq_queue.name)
        state.readers[key] = (hook, _redis.observe(hook, reader, rq_queue.name, ages=True))


def _client(connection: Any, pool: Any, kwargs: dict[str, Any]) -> Any:
    """A client of the same server with short timeouts (the queue's own may have none)."""
    import redis

    kwargs.update(socket_timeout=_redis.TIMEOUT, socket_connect_timeout=_redis.TIMEOUT)
    cls = getattr(pool, "connection_class", None) or redis.Connection
    if cls.__name__ == "UnixDomainSocketConnection":
        kwargs.pop("socket_connect_timeout", None)
    return redis.Redis(connection_pool=redis.ConnectionPool(connection_class=cls, **kwargs))


def _enqueue_times(prefix: str) -> Callable[[Any, Any], list[float | None]]:
    def read(client: Any, heads: Any) -> list[float | None]:
        ids = [head.decode() if isinstance(head, bytes) else head for head in heads]
        pipe = client.pipeline(transaction=False)
        for job_id in ids:
            if job_id is not None:
                pipe.hget(f"{prefix}{job_id}", "enqueued_at")
        replies = iter(pipe.execute())
        times: list[float | None] = []
        for job_id in ids:
            times.append(None if job_id is None else _parse_time(next(replies)))
        return times

    return read


def _parse_time(value: Any) -> float | None:
    """An RQ timestamp (``2024-05-01T10:00:00.123456Z``, UTC) as a ``time.time()`` value."""
    if isinstance(value, bytes):
        value = value.decode()
    if not isinstance(value, str) or not value:
        return None
    for pattern in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            parsed = datetime.strptime(value, pattern).replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            continue
        return parsed if math.isfinite(parsed) else None
    return None
