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
from collections import Counter
from collections.abc import Callable, Collection
from time import perf_counter
from typing import Any

from otel_pipeline._internal.errors import never_raises
from otel_pipeline._internal.hook import check_name, get_hook
from otel_pipeline._internal.validation import safe_repr
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
    """When each item in the queue was put, by ``id(item)`` (a list for an item put several times).

    Called under the queue's lock (``queue.Queue``) or in its event loop (``asyncio.Queue``), right
    after the item went in or came out. Each put adds one time and each get takes one, so their
    number matches the queue's size; when it does not, items were added or removed behind our
    back (``q.queue.clear()``), and the times are brought back in line with what the queue holds,
    before a new item could inherit the time of a removed one whose ``id`` it reuses.
    """

    __slots__ = ("_count", "_items", "_times")

    def __init__(self, items: Collection[Any]) -> None:
        self._items = items
        self._times: dict[int, Any] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def put(self, item: Any) -> None:
        """``item`` was just put."""
        key, now = id(item), perf_counter()
        if self._count != len(self._items) - 1:
            self._resync(key, -1)
        times = self._times
        found = times.get(key)
        if found is None:
            times[key] = now
        elif isinstance(found, list):
            found.append(now)
        else:
            times[key] = [found, now]
        self._count += 1

    def waited(self, item: Any) -> float | None:
        """``item`` was just got: seconds since it was put (its earliest put, if several)."""
        key = id(item)
        if self._count != len(self._items) + 1:
            self._resync(key, +1)
        found = self._times.pop(key, None)
        if found is None:
            return None
        put_at: float = found
        if isinstance(found, list):
            put_at, rest = found[0], found[1:]
            self._times[key] = rest if len(rest) > 1 else rest[0]
        self._count -= 1
        return perf_counter() - put_at

    def _resync(self, key: int, adjust: int) -> None:
        """Keep only as many times per item as the queue holds it (the newest), ``key`` adjusted."""
        live = Counter(id(item) for item in self._items)
        live[key] += adjust
        kept: dict[int, Any] = {}
        for item_key, found in self._times.items():
            wanted = live.get(item_key, 0)
            if wanted > 0:
                stamps = found if isinstance(found, list) else [found]
                stamps = stamps[-wanted:]
                kept[item_key] = stamps if len(stamps) > 1 else stamps[0]
        self._times = kept
        self._count = sum(len(found) if isinstance(found, list) else 1 for found in kept.values())


def _check_queue(what: str, q: object) -> None:
    if not isinstance(q, (stdlib_queue.Queue, asyncio.Queue)):
        raise TypeError(
            f"otel_pipeline: {what}() takes a queue.Queue or an asyncio.Queue (or a subclass), "
            f"got {type(q).__name__} {safe_repr(q)}"
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
            f"otel_pipeline: this queue is already instrumented as {safe_repr(existing.hook.name)}, "
            f"not {safe_repr(name)}; "
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
