from __future__ import annotations

import asyncio
import gc
import logging
import queue
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import otel_pipeline as op
from otel_pipeline.hooks import stdlib_queue
from otel_pipeline.testing import Capture
from tests.hooks import FakeClock, buckets

JOBS = {"queue.name": "jobs"}


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(stdlib_queue, "perf_counter", fake)
    return fake


@pytest.fixture
def jobs() -> Iterator[queue.Queue[Any]]:
    """A bounded queue.Queue, uninstrumented again after the test."""
    q: queue.Queue[Any] = queue.Queue(maxsize=8)
    yield q
    op.uninstrument_queue(q)


def test_queue_puts_gets_wait_time_depth_and_utilization(
    capture: Capture, clock: FakeClock, jobs: queue.Queue[Any]
) -> None:
    hook = op.instrument_queue(jobs, "jobs")
    assert hook is op.queue("jobs")
    jobs.put("a")
    clock.advance(0.25)
    jobs.put_nowait("b")
    jobs.put("c", timeout=1)
    clock.advance(0.5)
    assert jobs.get() == "a"  # waited 0.75
    assert jobs.get_nowait() == "b"  # waited 0.5

    assert capture.value("queue.jobs.enqueued", JOBS) == 3
    assert capture.value("queue.jobs.dequeued", JOBS) == 2
    wait = capture.point("queue.job.wait_time", JOBS)
    assert (wait.count, wait.sum, wait.bucket_counts) == (2, 1.25, buckets(0.75, 0.5))
    assert capture.value("queue.depth", JOBS) == 1
    assert capture.value("queue.utilization", JOBS) == 0.125
    assert capture.spans() == []


async def test_asyncio_queue(capture: Capture, clock: FakeClock) -> None:
    q: asyncio.Queue[int] = asyncio.Queue()
    op.instrument_queue(q, "jobs")
    try:
        await q.put(1)
        q.put_nowait(2)
        clock.advance(0.125)
        assert await q.get() == 1
        assert capture.value("queue.depth", JOBS) == 1
        assert q.get_nowait() == 2
        q.task_done()
        q.task_done()
        await q.join()
    finally:
        op.uninstrument_queue(q)
    assert capture.value("queue.jobs.enqueued", JOBS) == 2
    assert capture.value("queue.jobs.dequeued", JOBS) == 2
    assert capture.point("queue.job.wait_time", JOBS).sum == 0.25
    assert "queue.utilization" not in capture.metrics()  # unbounded: no capacity


async def test_asyncio_producer_waits_for_room(capture: Capture) -> None:
    q: asyncio.Queue[str] = asyncio.Queue(maxsize=1)
    op.instrument_queue(q, "jobs")
    try:
        await q.put("first")
        blocked = asyncio.create_task(q.put("second"))
        await asyncio.sleep(0)
        assert capture.value("queue.utilization", JOBS) == 1.0
        assert await q.get() == "first"
        await blocked
        assert await q.get() == "second"
    finally:
        op.uninstrument_queue(q)
    assert capture.value("queue.jobs.enqueued", JOBS) == 2
    assert capture.value("queue.jobs.dequeued", JOBS) == 2


@pytest.mark.parametrize(
    ("make", "puts", "order"),
    [
        (queue.LifoQueue, ["a", "b", "c"], ["c", "b", "a"]),
        (queue.PriorityQueue, [(3, "low"), (1, "high"), (2, "mid")], [(1, "high"), (2, "mid"), (3, "low")]),
    ],
)
def test_each_item_has_its_own_wait_in_lifo_and_priority_queues(
    capture: Capture, clock: FakeClock, make: type[queue.Queue[Any]], puts: list[Any], order: list[Any]
) -> None:
    q = make()
    op.instrument_queue(q, "jobs")
    try:
        put_at = {}
        for item in puts:
            put_at[item] = clock.now
            q.put(item)
            clock.advance(1.0)
        waits = []
        for expected in order:
            assert q.get() == expected
            waits.append(clock.now - put_at[expected])
    finally:
        op.uninstrument_queue(q)
    wait = capture.point("queue.job.wait_time", JOBS)
    assert (wait.count, wait.sum, wait.bucket_counts) == (3, sum(waits), buckets(*waits))


def test_an_item_put_several_times_is_waited_for_first_in_first_out(
    capture: Capture, clock: FakeClock, jobs: queue.Queue[Any]
) -> None:
    op.instrument_queue(jobs, "jobs")
    for _ in range(3):
        jobs.put(None)  # e.g. one stop sentinel per worker
        clock.advance(0.25)
    for _ in range(3):
        assert jobs.get() is None
    wait = capture.point("queue.job.wait_time", JOBS)
    assert (wait.count, wait.min, wait.max, wait.sum) == (3, 0.25, 0.75, 1.5)


def test_items_removed_or_added_behind_our_back(capture: Capture, clock: FakeClock) -> None:
    q: queue.Queue[Any] = queue.Queue()
    op.instrument_queue(q, "jobs")
    record = q.__dict__["_otel_pipeline_instrumentation"]
    reused = object()  # put again after a clear(): what a new object reusing its id looks like
    try:
        q.put(reused)
        for _ in range(3):
            q.put(None)
        clock.advance(5.0)
        with q.mutex:
            q.queue.clear()  # drained without get(): their put times must not outlive them
        q.put(reused)
        clock.advance(0.25)
        assert q.get() is reused  # waited 0.25, not 5.25
        assert len(record.stamps) == 0
        for _ in range(40):
            q.put(object())
            with q.mutex:
                q.queue.clear()
        assert len(record.stamps) == 1  # only the last one, dropped at the next put or get
        with q.mutex:
            q.queue.append("smuggled")  # added behind our back: no put time
        q.put("regular")
        clock.advance(0.5)
        assert q.get() == "smuggled"
        assert q.get() == "regular"  # waited 0.5
    finally:
        op.uninstrument_queue(q)
    wait = capture.point("queue.job.wait_time", JOBS)
    assert (wait.count, wait.sum) == (2, 0.75)
    assert capture.value("queue.jobs.dequeued", JOBS) == 3


def test_uninstrument_restores_the_queue_and_stops_recording(
    capture: Capture, jobs: queue.Queue[Any]
) -> None:
    hook = op.instrument_queue(jobs, "jobs")
    assert hook.capacity == 8
    jobs.put(1)
    assert op.uninstrument_queue(jobs) is True
    assert op.uninstrument_queue(jobs) is False
    assert "_put" not in jobs.__dict__
    assert "_get" not in jobs.__dict__
    assert type(jobs)._put is queue.Queue._put
    assert hook.capacity is None
    assert hook._depth_function is None
    jobs.put(2)
    assert jobs.get() == 1
    assert jobs.get() == 2
    assert capture.value("queue.jobs.enqueued", JOBS) == 1
    assert "queue.jobs.dequeued" not in capture.metrics()
    assert capture.value("queue.depth", JOBS) == 1  # tracked again: the one put we saw


def test_a_wrapper_kept_by_someone_else_passes_through_once_undone(
    capture: Capture, jobs: queue.Queue[Any]
) -> None:
    op.instrument_queue(jobs, "jobs")
    ours = jobs.__dict__["_put"]

    def theirs(item: Any) -> None:  # someone wrapped our wrapper after us
        ours(item)

    jobs._put = theirs  # type: ignore[method-assign]
    assert op.uninstrument_queue(jobs)
    assert jobs.__dict__["_put"] is theirs  # not ours to remove
    jobs.put("x")
    assert jobs.get() == "x"
    assert "queue.jobs.enqueued" not in capture.metrics()


def test_instrumenting_twice(capture: Capture, jobs: queue.Queue[Any]) -> None:
    hook = op.instrument_queue(jobs, "jobs")
    assert op.instrument_queue(jobs, "jobs") is hook
    with pytest.raises(
        ValueError, match="already instrumented as 'jobs', not 'other'; call uninstrument_queue"
    ):
        op.instrument_queue(jobs, "other")
    jobs.put(1)
    assert capture.value("queue.jobs.enqueued", JOBS) == 1


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: op.instrument_queue([], "jobs"), TypeError, "takes a queue.Queue or an asyncio.Queue"),  # type: ignore[arg-type]
        (lambda: op.instrument_queue(queue.SimpleQueue(), "jobs"), TypeError, "got SimpleQueue"),  # type: ignore[arg-type]
        (lambda: op.instrument_queue(queue.Queue(), ""), ValueError, "queue name=''"),
        (lambda: op.instrument_queue(queue.Queue(), 3), TypeError, "queue name must be a str"),  # type: ignore[arg-type]
        (lambda: op.uninstrument_queue("q"), TypeError, "uninstrument_queue\\(\\) takes a queue.Queue"),  # type: ignore[arg-type]
    ],
)
def test_bad_arguments(call: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call()


def test_threads_producing_and_consuming(capture: Capture) -> None:
    q: queue.Queue[int] = queue.Queue(maxsize=16)
    op.instrument_queue(q, "jobs")
    try:

        def produce() -> None:
            for index in range(500):
                q.put(index)

        def consume() -> None:
            for _ in range(500):
                q.get()
                q.task_done()

        threads = [threading.Thread(target=f) for f in (produce, produce, produce, consume, consume, consume)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        q.join()
    finally:
        op.uninstrument_queue(q)
    assert capture.value("queue.jobs.enqueued", JOBS) == 1500
    assert capture.value("queue.jobs.dequeued", JOBS) == 1500
    assert capture.point("queue.job.wait_time", JOBS).count == 1500
    assert capture.value("queue.depth", JOBS) == 0


@pytest.mark.contains_internal_errors
def test_a_recording_fault_never_breaks_the_queue(
    capture: Capture,
    jobs: queue.Queue[Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    hook = op.instrument_queue(jobs, "jobs")

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("internal")

    monkeypatch.setattr(hook, "enqueued", broken)
    monkeypatch.setattr(hook, "_dequeued", broken)
    with caplog.at_level(logging.ERROR, logger="otel_pipeline"):
        jobs.put(1)
        jobs.put(2)
        assert jobs.get() == 1
        assert jobs.get() == 2
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "internal error in instrument_queue:put; it is ignored",
        "internal error in instrument_queue:get; it is ignored",
    ]


def test_a_collected_queue_is_no_longer_observed(capture: Capture) -> None:
    q: queue.Queue[int] = queue.Queue()
    hook = op.instrument_queue(q, "gone")
    q.put(1)
    assert capture.value("queue.depth", {"queue.name": "gone"}) == 1
    del q
    gc.collect()
    try:
        assert "queue.depth" not in capture.metrics()
    finally:
        hook.observe_depth(None)


def test_not_configured_the_queue_still_works() -> None:
    q: queue.Queue[str] = queue.Queue()
    op.instrument_queue(q, "jobs")
    q.put("a")
    assert q.get() == "a"
    with Capture() as capture:
        q.put("b")
        assert capture.value("queue.jobs.enqueued", JOBS) == 1
        assert capture.value("queue.depth", JOBS) == 1
    assert op.uninstrument_queue(q)
