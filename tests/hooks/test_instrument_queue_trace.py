"""Instrumented queues carry the producer's trace with each item, and know their oldest job's age."""

from __future__ import annotations

import asyncio
import queue
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

import otel_pipeline as op
from otel_pipeline.hooks import stdlib_queue
from otel_pipeline.testing import Capture
from tests.hooks import FakeClock

JOBS = {"queue.name": "jobs"}
OK = {**JOBS, "outcome": "success"}


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(stdlib_queue, "perf_counter", fake)
    return fake


@pytest.fixture
def traced() -> Iterator[Capture]:
    with Capture(trace_sample_rate=1.0) as capture:
        yield capture


def tracer(capture: Capture) -> trace.Tracer:
    assert capture.pipeline.tracer_provider is not None
    return capture.pipeline.tracer_provider.get_tracer("shop")


def parent_of(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def job_of(span: ReadableSpan) -> str:
    return str(dict(span.attributes or {})["queue.job.id"])


def requests_by_job(capture: Capture) -> dict[str, int]:
    """The span id of each "request <job>" span (the producer of that job)."""
    return {s.name.split()[1]: s.context.span_id for s in capture.spans() if s.name.startswith("request ")}


def test_threads_each_processing_is_a_child_of_its_items_producer(traced: Capture) -> None:
    q: queue.Queue[str] = queue.Queue()
    hook = op.instrument_queue(q, "jobs")
    jobs = [f"j{index}" for index in range(40)]
    try:

        def produce(mine: list[str]) -> None:
            for job in mine:
                with tracer(traced).start_as_current_span(f"request {job}"):
                    q.put(job)

        def consume(count: int) -> None:
            for _ in range(count):
                job = q.get()
                with hook.processing(job_id=job):
                    pass
                q.task_done()

        threads = [
            threading.Thread(target=produce, args=(jobs[:20],)),
            threading.Thread(target=produce, args=(jobs[20:],)),
            threading.Thread(target=consume, args=(25,)),
            threading.Thread(target=consume, args=(15,)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert traced.value("queue.oldest_job.age", JOBS) == 0.0
    finally:
        op.uninstrument_queue(q)
    requests = requests_by_job(traced)
    processed = traced.spans("queue.process jobs")
    assert sorted(job_of(s) for s in processed) == sorted(jobs)
    assert {job_of(s): parent_of(s) for s in processed} == requests
    assert traced.value("queue.jobs.processed", OK) == 40


async def test_asyncio_tasks_get_and_get_nowait(traced: Capture) -> None:
    q: asyncio.Queue[str] = asyncio.Queue()
    hook = op.instrument_queue(q, "jobs")
    try:

        async def produce(job: str) -> None:
            with tracer(traced).start_as_current_span(f"request {job}"):
                await asyncio.sleep(0)
                await q.put(job)

        async def consume(count: int, nowait: bool) -> None:
            for _ in range(count):
                if nowait:
                    while q.empty():
                        await asyncio.sleep(0)
                    job = q.get_nowait()
                else:
                    job = await q.get()
                await asyncio.sleep(0)  # other tasks get items meanwhile: each task keeps its own
                async with hook.processing(job_id=job):
                    await asyncio.sleep(0)

        consumers = [asyncio.create_task(consume(5, nowait)) for nowait in (False, True)]
        await asyncio.sleep(0)  # the consumers wait first
        await asyncio.gather(*(produce(f"j{index}") for index in range(10)))
        await asyncio.gather(*consumers)
    finally:
        op.uninstrument_queue(q)
    requests = requests_by_job(traced)
    processed = traced.spans("queue.process jobs")
    assert len(processed) == 10
    assert {job_of(s): parent_of(s) for s in processed} == requests


@pytest.mark.parametrize(
    ("make", "puts", "order"),
    [
        (queue.LifoQueue, ["a", "b", "c"], ["c", "b", "a"]),
        (queue.PriorityQueue, [(2, "mid"), (3, "low"), (1, "high")], [(1, "high"), (2, "mid"), (3, "low")]),
    ],
)
def test_lifo_and_priority_queues_keep_each_items_trace(
    traced: Capture, clock: FakeClock, make: type[queue.Queue[Any]], puts: list[Any], order: list[Any]
) -> None:
    q = make()
    hook = op.instrument_queue(q, "jobs")
    try:
        for item in puts:
            with tracer(traced).start_as_current_span(
                f"request {item[1] if isinstance(item, tuple) else item}"
            ):
                q.put(item)
            clock.advance(1.0)
        assert traced.value("queue.oldest_job.age", JOBS) == 3.0  # the first put, whatever the order
        ages = []
        for expected in order:
            assert q.get() == expected
            ages.append(traced.value("queue.oldest_job.age", JOBS))
            name = expected[1] if isinstance(expected, tuple) else expected
            with hook.processing(job_id=name):
                pass
    finally:
        op.uninstrument_queue(q)
    first_put_left = {queue.LifoQueue: [3.0, 3.0, 0.0], queue.PriorityQueue: [3.0, 2.0, 0.0]}
    assert ages == first_put_left[make]
    processed = traced.spans("queue.process jobs")
    assert {job_of(s): parent_of(s) for s in processed} == requests_by_job(traced)


def test_only_the_next_processing_of_that_queue_continues_the_item(traced: Capture) -> None:
    q: queue.Queue[str] = queue.Queue()
    hook = op.instrument_queue(q, "jobs")
    try:
        with tracer(traced).start_as_current_span("request a") as request:
            q.put("a")
            q.put("b")
        q.get()
        with op.queue("other").processing():  # another queue's job: a root of its own
            pass
        with hook.processing(job_id="a"):
            pass
        with hook.processing(job_id="again"):  # nothing was taken since: a root
            pass
        q.get()
        with hook.processing(job_id="b"):
            pass
        q.put("c")  # put with no span current
        q.get()
        with hook.processing(job_id="c"):
            pass
    finally:
        op.uninstrument_queue(q)
    other = traced.spans("queue.process other")[0]
    a, again, b, c = traced.spans("queue.process jobs")
    request_id = request.get_span_context().span_id
    assert other.parent is None
    assert parent_of(a) == request_id
    assert again.parent is None
    assert parent_of(b) == request_id
    assert c.parent is None


def test_an_explicit_carrier_wins_over_the_item(traced: Capture) -> None:
    q: queue.Queue[str] = queue.Queue()
    hook = op.instrument_queue(q, "jobs")
    try:
        with tracer(traced).start_as_current_span("request a"):
            q.put("a")
        headers: dict[str, str] = {}
        with tracer(traced).start_as_current_span("elsewhere") as elsewhere:
            hook.enqueued(carrier=headers)
        q.get()
        with hook.processing(carrier=headers):
            pass
        with hook.processing():  # the item was used up by the explicit one
            pass
    finally:
        op.uninstrument_queue(q)
    (send,) = traced.spans("queue.send jobs")
    assert send.parent is not None
    assert send.parent.span_id == elsewhere.get_span_context().span_id
    explicit, after = traced.spans("queue.process jobs")
    assert parent_of(explicit) == send.context.span_id
    assert after.parent is None


def test_an_unsampled_producer_keeps_the_consumer_unsampled(traced: Capture) -> None:
    q: queue.Queue[str] = queue.Queue()
    hook = op.instrument_queue(q, "jobs")
    unsampled = SpanContext(0x99, 0x42, is_remote=True, trace_flags=TraceFlags(TraceFlags.DEFAULT))
    try:
        with trace.use_span(NonRecordingSpan(unsampled)):
            q.put("a")
        q.get()
        with hook.processing():
            current = trace.get_current_span().get_span_context()
            with tracer(traced).start_as_current_span("inner") as inner:
                assert not inner.get_span_context().trace_flags.sampled
    finally:
        op.uninstrument_queue(q)
    assert (current.trace_id, current.span_id) == (0x99, 0x42)
    assert traced.spans() == []
    assert traced.value("queue.jobs.processed", OK) == 1


def test_items_cleared_behind_our_back_lose_their_trace_and_age(traced: Capture, clock: FakeClock) -> None:
    q: queue.Queue[Any] = queue.Queue()
    hook = op.instrument_queue(q, "jobs")
    record = q.__dict__["_otel_pipeline_instrumentation"]
    reused = object()
    try:
        with tracer(traced).start_as_current_span("request old"):
            q.put(reused)
            for _ in range(100):
                q.put(object())
        clock.advance(60.0)
        assert traced.value("queue.oldest_job.age", JOBS) == 60.0
        with q.mutex:
            q.queue.clear()
        # No put or get since: the age is read from what the queue still holds.
        assert traced.value("queue.oldest_job.age", JOBS) == 0.0
        with q.mutex:
            q.queue.append(reused)  # back behind our back: its old entry counts again
        assert traced.value("queue.oldest_job.age", JOBS) == 60.0
        with q.mutex:
            q.queue.clear()
        clock.advance(1.0)
        with tracer(traced).start_as_current_span("request new") as new:
            q.put(reused)  # same id: must not inherit the cleared entry's time or trace
        assert len(record.stamps) == 1
        clock.advance(0.5)
        assert traced.value("queue.oldest_job.age", JOBS) == 0.5
        assert q.get() is reused
        with hook.processing():
            pass
    finally:
        op.uninstrument_queue(q)
    (process,) = traced.spans("queue.process jobs")
    assert parent_of(process) == new.get_span_context().span_id
    assert traced.point("queue.job.wait_time", JOBS).sum == 0.5
    assert len(record.stamps) == 0
    assert record.stamps._order == {}


@pytest.mark.parametrize("mode", ["core", "sdk"])
def test_oldest_age_exact_with_a_patched_clock(mode: str, clock: FakeClock) -> None:
    with Capture(instrument_mode=mode) as capture:
        q: queue.Queue[str] = queue.Queue()
        op.instrument_queue(q, "jobs")
        try:
            assert capture.value("queue.oldest_job.age", JOBS) == 0.0
            q.put("a")
            clock.advance(2.0)
            q.put("b")
            q.put("a")  # the same item again
            clock.advance(0.5)
            assert capture.value("queue.oldest_job.age", JOBS) == 2.5
            assert q.get() == "a"
            assert capture.value("queue.oldest_job.age", JOBS) == 0.5
            clock.advance(10.0)
            assert q.get() == "b"
            assert capture.value("queue.oldest_job.age", JOBS) == 10.5
            assert q.get() == "a"
            assert capture.value("queue.oldest_job.age", JOBS) == 0.0
        finally:
            op.uninstrument_queue(q)
        assert "queue.oldest_job.age" not in capture.metrics()
        assert op.queue("jobs")._oldest_age_function is None


async def test_asyncio_oldest_age(traced: Capture, clock: FakeClock) -> None:
    q: asyncio.Queue[int] = asyncio.Queue()
    op.instrument_queue(q, "jobs")
    try:
        await q.put(1)
        clock.advance(4.0)
        q.put_nowait(2)
        clock.advance(1.0)
        assert traced.value("queue.oldest_job.age", JOBS) == 5.0
        q._queue.clear()  # type: ignore[attr-defined]  # behind our back
        assert traced.value("queue.oldest_job.age", JOBS) == 0.0
    finally:
        op.uninstrument_queue(q)


def test_oldest_age_of_a_collected_queue_is_not_reported(traced: Capture) -> None:
    q: queue.Queue[int] = queue.Queue()
    op.instrument_queue(q, "jobs")
    q.put(1)
    function = op.queue("jobs")._oldest_age_function
    assert function is not None
    del q
    import gc

    gc.collect()
    assert function() is None
    assert "queue.oldest_job.age" not in traced.metrics()


def test_a_read_that_races_a_change_is_tried_again() -> None:
    class Racing(dict[int, float]):
        """Raises as a dict changed during iteration does, the first ``times`` reads."""

        def __init__(self, times: int) -> None:
            super().__init__({0: 1.0})
            self.times = times

        def values(self) -> Any:
            if self.times > 0:
                self.times -= 1
                raise RuntimeError("dictionary changed size during iteration")
            return super().values()

    stamps = stdlib_queue._Stamps(["item"])
    stamps._count = 1
    stamps._order = Racing(2)
    assert stamps.oldest_age() is not None
    stamps._order = Racing(3)
    assert stamps.oldest_age() is None


async def test_a_get_in_wait_for_keeps_the_context_in_its_own_task_before_python_3_12(
    traced: Capture,
) -> None:
    q: asyncio.Queue[str] = asyncio.Queue()
    hook = op.instrument_queue(q, "jobs")
    try:
        with tracer(traced).start_as_current_span("request a") as request:
            await q.put("a")
        assert await asyncio.wait_for(q.get(), timeout=5) == "a"
        with hook.processing():
            pass
    finally:
        op.uninstrument_queue(q)
    (process,) = traced.spans("queue.process jobs")
    if sys.version_info >= (3, 12):  # wait_for awaits in the caller's task
        assert parent_of(process) == request.get_span_context().span_id
    else:  # wait_for ran the get in a task of its own: the item's context stayed there
        assert process.parent is None


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout() is new in Python 3.11")
async def test_a_get_under_asyncio_timeout_continues_the_items_trace(traced: Capture) -> None:
    q: asyncio.Queue[str] = asyncio.Queue()
    hook = op.instrument_queue(q, "jobs")
    try:
        with tracer(traced).start_as_current_span("request a") as request:
            await q.put("a")
        async with asyncio.timeout(5):  # type: ignore[attr-defined,unused-ignore]
            assert await q.get() == "a"
        with hook.processing():
            pass
    finally:
        op.uninstrument_queue(q)
    (process,) = traced.spans("queue.process jobs")
    assert parent_of(process) == request.get_span_context().span_id


def test_the_item_is_continued_with_a_job_type_and_by_a_decorator(traced: Capture) -> None:
    q: queue.Queue[str] = queue.Queue()
    hook = op.instrument_queue(q, "jobs")
    try:
        with tracer(traced).start_as_current_span("request a") as first:
            q.put("a")
            q.put("b")
        q.get()
        with hook.processing(job_type="welcome"):
            pass
        q.get()
        decorate = hook.processing()  # takes the item: its decorations run without it

        @decorate
        def handle() -> None:
            pass

        handle()
    finally:
        op.uninstrument_queue(q)
    typed, decorated = traced.spans("queue.process jobs")
    assert parent_of(typed) == first.get_span_context().span_id
    assert dict(typed.attributes or {})["job.type"] == "welcome"
    assert decorated.parent is None
