"""Instrument a ``queue.Queue`` or ``asyncio.Queue`` in place, without touching its call sites.

Every item put is counted as enqueued and every item got as dequeued, with the time it waited;
the queue's ``qsize()`` is its depth and a ``maxsize`` its capacity. Subclasses (``LifoQueue``,
``PriorityQueue``...) work too: the hooks sit on the ``_put``/``_get`` methods all of them call
once per item (under the queue's lock, for ``queue.Queue``).

>>> import queue
>>> import otel_pipeline as op
>>> jobs: queue.Queue[str] = queue.Queue(maxsize=100)
>>> hook = op.instrument_queue(jobs, "jobs")
>>> jobs.put("a")
>>> jobs.get()
'a'
>>> op.uninstrument_queue(jobs)
True
"""

from __future__ import annotations

import asyncio
import queue as stdlib_queue
import weakref
from collections.abc import Callable, Collection
from time import perf_counter
from typing import Any

from otel_pipeline._internal.errors import never_raises
from otel_pipeline._internal.hook import check_name, get_hook
from otel_pipeline.hooks.queue import Queue

__all__ = ["instrument_queue", "uninstrument_queue"]

AnyQueue = stdlib_queue.Queue[Any] | asyncio.Queue[Any]
_ATTRIBUTE = "_otel_pipeline_instrumentation"


class _Instrumentation:
    """What :func:`instrument_queue` did to one queue, so that it can be undone."""

    __slots__ = ("active", "capacity_before", "depth", "get", "hook", "put", "stamps")

    def __init__(self, hook: Queue, stamps: _Stamps) -> None:
        self.hook = hook
        self.stamps = stamps
        self.active = True
        self.capacity_before = hook.capacity
        self.depth: Callable[[], float | None] | None = None
        self.put: Callable[[Any], None] | None = None
        self.get: Callable[[], Any] | None = None


class _Stamps:
    """When each item still in the queue was put, by ``id(item)`` (a list for repeated items)."""

    __slots__ = ("_items", "_times")

    def __init__(self, items: Collection[Any]) -> None:
        self._items = items
        self._times: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self._times)

    def put(self, item: Any) -> None:
        key, now = id(item), perf_counter()
        times = self._times
        found = times.get(key)
        if found is None:
            times[key] = now
            if len(times) > 2 * len(self._items) + 64:
                self._prune()
        elif isinstance(found, list):
            found.append(now)
        else:
            times[key] = [found, now]

    def waited(self, item: Any) -> float | None:
        """Seconds since ``item`` was put (the earliest put, for an item put several times)."""
        found = self._times.pop(id(item), None)
        if isinstance(found, list):
            found, rest = found[0], found[1:]
            self._times[id(item)] = rest if len(rest) > 1 else rest[0]
        return None if found is None else perf_counter() - found

    def _prune(self) -> None:
        """Forget items no longer in the queue (taken out behind our back, e.g. ``q.queue.clear()``)."""
        live = {id(item) for item in self._items}
        for key in [key for key in self._times if key not in live]:
            del self._times[key]


def _check_queue(what: str, q: object) -> None:
    if not isinstance(q, (stdlib_queue.Queue, asyncio.Queue)):
        raise TypeError(
            f"otel_pipeline: {what}() takes a queue.Queue or an asyncio.Queue (or a subclass), "
            f"got {type(q).__name__} {q!r}"
        )


def instrument_queue(q: AnyQueue, name: str) -> Queue:
    """Instrument ``q`` as the queue hook ``name`` and return that hook; undo with :func:`uninstrument_queue`.

    Records ``queue.jobs.enqueued`` per put, ``queue.jobs.dequeued`` and ``queue.job.wait_time``
    per get, ``queue.depth`` from ``qsize()`` and ``queue.utilization`` when ``maxsize`` > 0.

    >>> import asyncio
    >>> import otel_pipeline as op
    >>> async def main() -> int:
    ...     jobs: asyncio.Queue[int] = asyncio.Queue()
    ...     op.instrument_queue(jobs, "async-jobs")
    ...     await jobs.put(1)
    ...     item = await jobs.get()
    ...     op.uninstrument_queue(jobs)
    ...     return item
    >>> asyncio.run(main())
    1
    """
    _check_queue("instrument_queue", q)
    check_name("queue name", name)
    existing: _Instrumentation | None = q.__dict__.get(_ATTRIBUTE)
    if existing is not None:
        if existing.hook.name == name:
            return existing.hook
        raise ValueError(
            f"otel_pipeline: this queue is already instrumented as {existing.hook.name!r}, not {name!r}; "
            "call uninstrument_queue() on it first"
        )
    hook = get_hook(Queue, name)
    items: Collection[Any] = q.queue if isinstance(q, stdlib_queue.Queue) else q._queue  # type: ignore[attr-defined]
    stamps = _Stamps(items)
    record = _Instrumentation(hook, stamps)
    original_put: Callable[[Any], None] = q._put
    original_get: Callable[[], Any] = q._get

    @never_raises("instrument_queue:put")
    def after_put(item: Any) -> None:
        stamps.put(item)
        hook.enqueued()

    @never_raises("instrument_queue:get")
    def after_get(item: Any) -> None:
        hook._dequeued(1, None, stamps.waited(item))

    def put(item: Any) -> None:
        original_put(item)
        if record.active:
            after_put(item)

    def get() -> Any:
        item = original_get()
        if record.active:
            after_get(item)
        return item

    reference = weakref.ref(q)

    def depth() -> int | None:
        queue = reference()
        return None if queue is None else queue.qsize()

    record.put, record.get, record.depth = put, get, depth
    q._put = put  # type: ignore[method-assign]
    q._get = get  # type: ignore[method-assign]
    setattr(q, _ATTRIBUTE, record)
    hook.observe_depth(depth)
    if q.maxsize > 0:
        hook.set_capacity(q.maxsize)
    return hook


def uninstrument_queue(q: AnyQueue) -> bool:
    """Undo :func:`instrument_queue` on ``q``; False if it was not instrumented.

    >>> import queue
    >>> import otel_pipeline as op
    >>> op.uninstrument_queue(queue.Queue())
    False
    """
    _check_queue("uninstrument_queue", q)
    record: _Instrumentation | None = q.__dict__.pop(_ATTRIBUTE, None)
    if record is None:
        return False
    record.active = False  # a wrapper someone else holds on to now just passes through
    for attribute, ours in (("_put", record.put), ("_get", record.get)):
        if q.__dict__.get(attribute) is ours:
            del q.__dict__[attribute]
    hook = record.hook
    if hook._depth_function is record.depth:
        hook.observe_depth(None)
        if q.maxsize > 0 and hook.capacity == q.maxsize:
            hook.set_capacity(record.capacity_before)
    return True
