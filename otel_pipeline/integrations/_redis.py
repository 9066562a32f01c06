"""Queue depths and oldest-job ages read from Redis lists at collection: one round trip, cached.

Celery's Redis transport and RQ keep each queue as a Redis list. At collection (a scrape, an
OTLP export) the lists' lengths and the items at their heads are read in one pipelined round
trip with a short timeout, and the result is kept for ``ttl`` seconds, so that the depth and the
age callbacks of one collection (and close collections from several readers) share one read and a
slow or unreachable Redis costs at most one timeout per ``ttl``. A failed read is logged once and
reports no value (never a stale one).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from time import monotonic, time
from typing import Any

from otel_pipeline._internal.errors import logger, warn_once
from otel_pipeline.hooks.queue import Queue

__all__ = ["TIMEOUT", "ListsReader", "observe", "unobserve"]

#: Seconds a read of the broker may take (connect and reply) before it is given up.
TIMEOUT = 0.5
#: Seconds a read is reused for.
TTL = 1.0

#: Turns the items at the heads of the lists (oldest first, None for an empty list) into their
#: enqueue times (``time.time()`` values, None when unknown), with the client for further reads.
HeadTimes = Callable[[Any, Sequence[bytes | None]], Sequence[float | None]]


class ListsReader:
    """Reads the lists of several queues (each queue one or more list keys) through ``client``.

    ``keys`` maps each queue name to its list keys; ``head`` is the index of the oldest item
    (``-1``: the right end, where Celery's Redis transport pops; ``0``: the left, RQ's).
    """

    def __init__(
        self,
        client: Any,
        keys: Mapping[str, Sequence[str]],
        *,
        head: int,
        head_times: HeadTimes | None = None,
        ttl: float = TTL,
        what: str = "redis",
    ) -> None:
        self.client = client
        self.keys = {name: list(found) for name, found in keys.items()}
        self.head = head
        self.head_times = head_times
        self.ttl = ttl
        self.what = what
        self._lock = threading.Lock()
        self._read_at = -float("inf")
        self._depths: dict[str, int] | None = None
        self._oldest: dict[str, float | None] = {}
        _READERS.add(self)

    def depth(self, queue: str) -> float | None:
        """Jobs waiting on ``queue`` now (None: the broker could not be read)."""
        self._refresh()
        depths = self._depths
        return None if depths is None else depths.get(queue)

    def oldest_age(self, queue: str) -> float | None:
        """Seconds the oldest job waiting on ``queue`` has waited (0 when none; None: unknown)."""
        self._refresh()
        if self._depths is None or queue not in self._depths:
            return None
        if self._depths[queue] == 0:
            return 0.0
        put = self._oldest.get(queue)
        return None if put is None else max(0.0, time() - put)

    def _refresh(self) -> None:
        with self._lock:
            if monotonic() - self._read_at < self.ttl:
                return
            self._read_at = monotonic()
            try:
                self._depths, self._oldest = self._read()
            except Exception:
                self._depths, self._oldest = None, {}
                warn_once(
                    f"redis-read:{self.what}",
                    "could not read the queue depths of %s from Redis; no value is reported until it answers",
                    self.what,
                )
                logger.debug("redis read failure", exc_info=True)

    def _read(self) -> tuple[dict[str, int], dict[str, float | None]]:
        order = [(name, key) for name, keys in self.keys.items() for key in keys]
        pipe = self.client.pipeline(transaction=False)
        for _, key in order:
            pipe.llen(key)
            if self.head_times is not None:
                pipe.lindex(key, self.head)
        replies = pipe.execute()
        step = 1 if self.head_times is None else 2
        depths: dict[str, int] = dict.fromkeys(self.keys, 0)
        for index, (name, _) in enumerate(order):
            depths[name] += int(replies[index * step])
        oldest: dict[str, float | None] = {}
        if self.head_times is not None:
            heads = [replies[index * step + 1] for index in range(len(order))]
            times = self.head_times(self.client, heads)
            unknown: set[str] = set()  # a job of unknown age waits: the queue's oldest age is unknown
            for (name, _), head, put in zip(order, heads, times, strict=True):
                if head is None:
                    continue
                if put is None:
                    unknown.add(name)
                    continue
                before = oldest.get(name)
                oldest[name] = put if before is None else min(before, put)
            for name in unknown:
                oldest[name] = None
        return depths, oldest


#: Every reader, for the at-fork handler.
_READERS: weakref.WeakSet[ListsReader] = weakref.WeakSet()


def _after_fork() -> None:
    """A forked child (a Celery prefork pool process) gets fresh locks.

    A scrape in the parent may be reading the broker at the moment of the fork: the child's copy
    of the lock would stay held forever, and its first collection (its worker group hand-over)
    would hang on it.
    """
    for reader in list(_READERS):
        reader._lock = threading.Lock()
        reader._read_at = -float("inf")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def observe(hook: Queue, reader: ListsReader, queue: str, ages: bool) -> list[Callable[[], float | None]]:
    """Give ``hook`` functions reading its depth (and oldest age) from ``reader``; returns them."""

    def depth() -> float | None:
        return reader.depth(queue)

    def oldest_age() -> float | None:
        return reader.oldest_age(queue)

    hook.observe_depth(depth)
    functions: list[Callable[[], float | None]] = [depth]
    if ages:
        hook.observe_oldest_age(oldest_age)
        functions.append(oldest_age)
    return functions


def unobserve(hook: Queue, functions: Sequence[Callable[[], float | None]]) -> None:
    """Undo :func:`observe`, unless something else has replaced those functions since."""
    if hook._depth_function in functions:
        hook.observe_depth(None)
    if hook._oldest_age_function in functions:
        hook.observe_oldest_age(None)
