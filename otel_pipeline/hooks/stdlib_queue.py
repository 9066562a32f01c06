"""Instrument a ``queue.Queue`` or ``asyncio.Queue`` in place, without touching its call sites.

Every item put is counted as enqueued and every item got as dequeued, with the time it waited;
the queue's ``qsize()`` is its depth, a ``maxsize`` its capacity, and the put time of the item
waiting longest its ``queue.oldest_job.age``. Each item carries the span that was current where
it was put (kept beside it: the item is not changed), and the hook's ``processing()`` that
follows a get() in the same thread or task continues that trace. Subclasses (``LifoQueue``,
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

from otel_pipeline._internal.carrier import took
from otel_pipeline._internal.errors import never_raises
from otel_pipeline._internal.hook import check_name, get_hook
from otel_pipeline._internal.spans import SPAN_KEY, current_context
from otel_pipeline._internal.validation import safe_repr
from otel_pipeline.hooks.queue import Queue

__all__ = ["instrument_queue", "uninstrument_queue"]

AnyQueue = stdlib_queue.Queue[Any] | asyncio.Queue[Any]
_ATTRIBUTE = "_otel_pipeline_instrumentation"


class _Instrumentation:
    """What :func:`instrument_queue` did to one queue, so that it can be undone."""

    __slots__ = ("active", "capacity_before", "depth", "get", "hook", "oldest_age", "put", "stamps")

    def __init__(self, hook: Queue, stamps: _Stamps) -> None:
        self.hook = hook
        self.stamps = stamps
        self.active = True
        self.capacity_before = hook.capacity
        self.depth: Callable[[], float | None] | None = None
        self.oldest_age: Callable[[], float | None] | None = None
        self.put: Callable[[Any], None] | None = None
        self.get: Callable[[], Any] | None = None


#: One put of an item: (its sequence number, when, the span current in the producer then).
_Entry = tuple[int, float, Any]


class _Stamps:
    """When each item in the queue was put, and the producer's span, by ``id(item)``.

    An item put several times has a list of entries, oldest first. Called under the queue's lock
    (``queue.Queue``) or in its event loop (``asyncio.Queue``), right after the item went in or
    came out. Each put adds one entry and each get takes one, so their number matches the queue's
    size; when it does not, items were added or removed behind our back (``q.queue.clear()``),
    and the entries are brought back in line with what the queue holds, before a new item could
    inherit the entry of a removed one whose ``id`` it reuses. So the entries never outnumber
    the items by more than the few removed since the last put or get.

    ``_order`` holds every entry's put time by sequence number, in put order: its first value is
    the put time of the job waiting longest, whatever order the queue hands items out in.
    """

    __slots__ = ("_count", "_items", "_next", "_order", "_times")

    def __init__(self, items: Collection[Any]) -> None:
        self._items = items
        self._times: dict[int, Any] = {}
        self._order: dict[int, float] = {}
        self._count = 0
        self._next = 0

    def __len__(self) -> int:
        return self._count

    def put(self, item: Any, span: Any) -> None:
        """``item`` was just put, while ``span`` (or None) was current."""
        key, now = id(item), perf_counter()
        if self._count != len(self._items) - 1:
            self._resync(key, -1)
        sequence = self._next
        self._next = sequence + 1
        entry = (sequence, now, span)
        times = self._times
        found = times.get(key)
        if found is None:
            times[key] = entry
        elif isinstance(found, list):
            found.append(entry)
        else:
            times[key] = [found, entry]
        self._order[sequence] = now
        self._count += 1

    def take(self, item: Any) -> tuple[float, Any] | None:
        """``item`` was just got: seconds since it was put (its earliest put, if several), its span."""
        key = id(item)
        if self._count != len(self._items) + 1:
            self._resync(key, +1)
        found = self._times.pop(key, None)
        if found is None:
            return None
        entry: _Entry = found
        if isinstance(found, list):
            entry, rest = found[0], found[1:]
            self._times[key] = rest if len(rest) > 1 else rest[0]
        self._order.pop(entry[0], None)
        self._count -= 1
        return perf_counter() - entry[1], entry[2]

    def oldest_age(self) -> float | None:
        """Seconds the job waiting longest has waited (0 when none waits); from any thread.

        For a ``queue.Queue`` the caller holds its lock; an ``asyncio.Queue`` may change in its
        loop's thread while this reads: a read that raced a change is tried again.
        """
        for _ in range(3):
            try:
                if self._count == len(self._items):
                    first = next(iter(self._order.values()), None)
                else:  # items added or removed behind our back since the last put or get
                    first = self._oldest_live()
            except RuntimeError:  # changed while we read
                continue
            return 0.0 if first is None else max(0.0, perf_counter() - first)
        return None

    def _oldest_live(self) -> float | None:
        """The earliest put time among the entries of items the queue still holds (read only)."""
        live = Counter(id(item) for item in list(self._items))
        oldest: float | None = None
        for key, found in list(self._times.items()):
            wanted = live.get(key, 0)
            if wanted > 0:
                entries = found if isinstance(found, list) else [found]
                put_at = entries[-wanted:][0][1]
                oldest = put_at if oldest is None else min(oldest, put_at)
        return oldest

    def _resync(self, key: int, adjust: int) -> None:
        """Keep only as many entries per item as the queue holds it (the newest), ``key`` adjusted."""
        live = Counter(id(item) for item in self._items)
        live[key] += adjust
        kept: dict[int, Any] = {}
        order: list[_Entry] = []
        for item_key, found in self._times.items():
            wanted = live.get(item_key, 0)
            if wanted > 0:
                entries = found if isinstance(found, list) else [found]
                entries = entries[-wanted:]
                order.extend(entries)
                kept[item_key] = entries if len(entries) > 1 else entries[0]
        self._times = kept
        self._order = {entry[0]: entry[1] for entry in sorted(order)}
        self._count = len(order)


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
        stamps.put(item, current_context().get(SPAN_KEY))
        hook.enqueued()

    @never_raises("instrument_queue:get")
    def after_get(item: Any) -> None:
        found = stamps.take(item)
        if found is None:
            hook._dequeued(1, None, None)
            took(hook, None)
        else:
            hook._dequeued(1, None, found[0])
            took(hook, found[1])  # for the processing() that follows in this thread or task

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

    def oldest_age() -> float | None:
        queue = reference()
        if queue is None:
            return None
        if isinstance(queue, stdlib_queue.Queue):
            with queue.mutex:
                return stamps.oldest_age()
        return stamps.oldest_age()

    record.put, record.get, record.depth, record.oldest_age = put, get, depth, oldest_age
    q._put = put  # type: ignore[method-assign]
    q._get = get  # type: ignore[method-assign]
    setattr(q, _ATTRIBUTE, record)
    hook._carries_items += 1
    hook.observe_depth(depth)
    hook.observe_oldest_age(oldest_age)
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
    hook._carries_items -= 1
    if hook._oldest_age_function is record.oldest_age:
        hook.observe_oldest_age(None)
    if hook._depth_function is record.depth:
        hook.observe_depth(None)
        if q.maxsize > 0 and hook.capacity == q.maxsize:
            hook.set_capacity(record.capacity_before)
    return True
