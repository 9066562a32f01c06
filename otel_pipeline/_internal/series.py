"""Pre-bound series: the in-process aggregates the hooks record into.

A series is one metric stream with its attributes resolved once, at bind time. Recording is a
lock, an addition and (only while a sampled span is open somewhere) an exemplar offer. The
registry turns series into OpenTelemetry points at collection time.

Exemplar reservoirs follow the SDK's defaults exactly: one exemplar per histogram bucket (the
last measurement in it), and for sums and gauges a size-1 reservoir sample drawn with the same
``random.randrange`` calls. As in the SDK, each reader has reservoirs of its own, offered to in
reader order and reset when that reader collects: a summary or /stats collection never takes
the exemplars a Prometheus scrape would have shown (and the /metrics reader keeps the latest
ones from one scrape to the next: ``exposition.ScrapeReader``). They are allocated on the first
offer.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from random import randrange
from threading import Lock
from time import time_ns
from typing import Any

from otel_pipeline._internal.errors import warn_once
from otel_pipeline._internal.exemplars import TRACKER, current_sampled_ids

__all__ = [
    "CounterSeries",
    "GaugeSeries",
    "HistogramSeries",
    "SumSeries",
    "UpDownCounterSeries",
    "finish_fused",
]

Attributes = dict[str, Any]
#: A captured exemplar: (value, time_unix_nano, span_id, trace_id).
RawExemplar = tuple[float, int, int, int]


class SumSeries:
    """Shared storage of counters and up-down counters."""

    __slots__ = ("_ex", "_lock", "_readers", "_touched", "_value", "attributes", "name", "start_time")

    def __init__(self, name: str, attributes: Attributes, lock: Lock | None = None, readers: int = 1) -> None:
        self.name = name
        self.attributes = attributes
        self.start_time = time_ns()
        self._lock = lock or threading.Lock()
        self._value: float = 0
        self._touched = False
        self._readers = readers
        #: Per reader: [measurements offered since its last collection, the sampled exemplar].
        self._ex: list[list[Any]] | None = None

    def _offer(self, value: float) -> None:
        ids = current_sampled_ids()
        if ids is None:
            return
        exemplar = (value, time_ns(), ids[0], ids[1])
        with self._lock:
            slots = self._ex
            if slots is None:
                slots = self._ex = [[0, None] for _ in range(self._readers)]
            for slot in slots:  # the SDK's SimpleFixedSizeExemplarReservoir(size=1), per reader
                slot[0] += 1
                if slot[0] == 1 or randrange(0, slot[0]) == 0:
                    slot[1] = exemplar

    def _add(self, amount: float = 1) -> None:
        """Add ``amount`` (the locked body shared by counters and up-down counters)."""
        lock = self._lock
        lock.acquire()
        try:
            self._value += amount
            self._touched = True
        finally:
            lock.release()
        if TRACKER.active:
            self._offer(amount)

    def snapshot(self, reader: int = 0) -> tuple[bool, float, RawExemplar | None]:
        """(touched, value, exemplar) under the lock; ``reader``'s exemplar reservoir is reset."""
        with self._lock:
            exemplar = None
            slots = self._ex
            if slots is not None and reader < len(slots):
                slot = slots[reader]
                exemplar, slot[0], slot[1] = slot[1], 0, None
            return self._touched, self._value, exemplar


class CounterSeries(SumSeries):
    """A monotonic sum: negative increments are dropped (logged once), as the SDK does."""

    __slots__ = ()

    def add(self, amount: float = 1) -> None:
        """Add a non-negative amount."""
        if amount < 0:
            warn_once(f"negative:{self.name}", "counter %s: negative increment %r dropped", self.name, amount)
            return
        # SumSeries._add's body, inline: this is every hook counter's hot path, and a call costs
        # about a quarter of it.
        lock = self._lock
        lock.acquire()
        try:
            self._value += amount
            self._touched = True
        finally:
            lock.release()
        if TRACKER.active:
            self._offer(amount)


class UpDownCounterSeries(SumSeries):
    """A non-monotonic sum: ``add`` takes positive and negative amounts."""

    __slots__ = ()

    add = SumSeries._add


class GaugeSeries(SumSeries):
    """A synchronous gauge: the last value set."""

    __slots__ = ()

    def set(self, value: float) -> None:
        """Set the current value."""
        lock = self._lock
        lock.acquire()
        try:
            self._value = value
            self._touched = True
        finally:
            lock.release()
        if TRACKER.active:
            self._offer(value)


class HistogramSeries:
    """An explicit-bucket histogram with sum, count, min and max."""

    __slots__ = (
        "_bounds",
        "_counts",
        "_ex",
        "_lock",
        "_max",
        "_min",
        "_readers",
        "_sum",
        "attributes",
        "name",
        "start_time",
    )

    def __init__(
        self,
        name: str,
        attributes: Attributes,
        bounds: tuple[float, ...],
        lock: Lock | None = None,
        readers: int = 1,
    ) -> None:
        self.name = name
        self.attributes = attributes
        self.start_time = time_ns()
        self._bounds = bounds
        self._lock = lock or threading.Lock()
        self._counts = [0] * (len(bounds) + 1)
        self._sum: float = 0
        self._min: float = math.inf
        self._max: float = -math.inf
        self._readers = readers
        #: Per reader: the last exemplar of each bucket since that reader's last collection.
        self._ex: list[dict[int, RawExemplar]] | None = None

    def record(self, value: float) -> None:
        """Record one non-negative measurement (negative ones are dropped, as the SDK does)."""
        if value < 0:
            warn_once(f"negative:{self.name}", "histogram %s: negative value %r dropped", self.name, value)
            return
        index = bisect_left(self._bounds, value)
        lock = self._lock
        lock.acquire()
        try:
            self._counts[index] += 1
            self._sum += value
            if value < self._min:
                self._min = value
            if value > self._max:
                self._max = value
        finally:
            lock.release()
        if TRACKER.active:
            self._offer(value, index)

    def _offer(self, value: float, index: int) -> None:
        ids = current_sampled_ids()
        if ids is not None:
            exemplar = (value, time_ns(), ids[0], ids[1])
            with self._lock:
                slots = self._ex
                if slots is None:
                    slots = self._ex = [{} for _ in range(self._readers)]
                for buckets in slots:  # the SDK's AlignedHistogramBucketExemplarReservoir, per reader
                    buckets[index] = exemplar

    @property
    def bounds(self) -> tuple[float, ...]:
        return self._bounds

    def snapshot(self, reader: int = 0) -> tuple[list[int], float, float, float, list[RawExemplar]]:
        """(bucket counts, sum, min, max, exemplars by bucket) under the lock; ``reader``'s reset."""
        with self._lock:
            exemplars: dict[int, RawExemplar] = {}
            slots = self._ex
            if slots is not None and reader < len(slots):
                exemplars, slots[reader] = slots[reader], {}
            return (
                list(self._counts),
                self._sum,
                self._min,
                self._max,
                [exemplars[i] for i in sorted(exemplars)],
            )


def finish_fused(
    lock: Lock,
    in_progress: UpDownCounterSeries | None,
    counter: CounterSeries,
    histogram: HistogramSeries,
    duration: float,
) -> None:
    """One operation ended: in-progress -1, count +1, duration recorded, under one shared lock.

    The three series must have been created with ``lock``; this is the hot path of every timed
    hook, and taking one lock instead of three is most of what makes it cheap.
    """
    index = bisect_left(histogram._bounds, duration)
    lock.acquire()
    try:
        if in_progress is not None:
            in_progress._value -= 1
        counter._value += 1
        counter._touched = True
        histogram._counts[index] += 1
        histogram._sum += duration
        if duration < histogram._min:
            histogram._min = duration
        if duration > histogram._max:
            histogram._max = duration
    finally:
        lock.release()
    if TRACKER.active:
        if in_progress is not None:
            in_progress._offer(-1)
        counter._offer(1)
        histogram._offer(duration, index)
