from __future__ import annotations

import asyncio
import multiprocessing
import os
import pickle
import threading
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.trace import StatusCode

import otel_pipeline as op
from otel_pipeline.integrations import executor as integration
from otel_pipeline.testing import Capture

IMAGES = {"queue.name": "images"}
OK = {**IMAGES, "outcome": "success"}


def failed(error: str) -> dict[str, str]:
    return {**IMAGES, "outcome": "failure", "error.type": error}


def work(x: int) -> int:
    """Succeeds, except for multiples of 3 (ValueError) and of 5 (KeyError)."""
    if x % 3 == 0:
        raise ValueError(x)
    if x % 5 == 0:
        raise KeyError(x)
    return x * 2


#: For x in range(N): 0,3,6,9,12,15,18 -> ValueError (15 too: 3 comes first); 5,10 -> KeyError.
N = 20
VALUE_ERRORS = sum(1 for x in range(N) if x % 3 == 0)
KEY_ERRORS = sum(1 for x in range(N) if x % 3 and x % 5 == 0)
SUCCESSES = N - VALUE_ERRORS - KEY_ERRORS


def outcomes(futures: list[Future[int]]) -> list[Any]:
    found: list[Any] = []
    for future in futures:
        try:
            found.append(future.result())
        except (ValueError, KeyError) as error:
            found.append(type(error).__name__)
    return found


def expected_outcomes() -> list[Any]:
    return ["ValueError" if x % 3 == 0 else "KeyError" if x % 5 == 0 else x * 2 for x in range(N)]


def assert_totals(capture: Capture, jobs: int = N) -> None:
    assert capture.value("queue.jobs.enqueued", IMAGES) == jobs
    assert capture.value("queue.jobs.processed", OK) == SUCCESSES + jobs - N
    assert capture.value("queue.jobs.processed", failed("ValueError")) == VALUE_ERRORS
    assert capture.value("queue.jobs.processed", failed("KeyError")) == KEY_ERRORS
    assert capture.point("queue.job.duration", OK).count == SUCCESSES + jobs - N
    assert capture.point("queue.job.duration", failed("ValueError")).count == VALUE_ERRORS
    assert capture.point("queue.job.duration", failed("KeyError")).count == KEY_ERRORS
    assert capture.point("queue.job.wait_time", IMAGES).count == jobs
    assert capture.value("queue.jobs.in_progress", IMAGES) == 0
    assert capture.value("queue.depth", IMAGES) == 0


@pytest.fixture
def threads() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=3)
    yield pool
    op.uninstrument_executor(pool)
    pool.shutdown()


# -- thread pools ------------------------------------------------------------------------------


def test_thread_pool_exact_totals_by_outcome(capture: Capture, threads: ThreadPoolExecutor) -> None:
    assert op.instrument_executor(threads, "images") is op.queue("images")
    futures = [threads.submit(work, x) for x in range(N)]
    assert outcomes(futures) == expected_outcomes()
    assert_totals(capture)
    assert capture.value("queue.workers", {**IMAGES, "state": "active"}) == 0
    assert capture.value("queue.workers", {**IMAGES, "state": "idle"}) == len(threads._threads)
    threads.shutdown()
    assert capture.value("queue.workers", {**IMAGES, "state": "idle"}) == 0


def test_thread_pool_map_and_keyword_arguments(capture: Capture, threads: ThreadPoolExecutor) -> None:
    op.instrument_executor(threads, "images")
    assert list(threads.map(pow, [2, 3], [3, 2])) == [8, 9]
    assert threads.submit(int, "ff", base=16).result() == 255
    assert capture.value("queue.jobs.processed", OK) == 3
    assert capture.value("queue.jobs.enqueued", IMAGES) == 3


def test_thread_pool_depth_workers_and_in_progress_while_busy(
    capture: Capture, threads: ThreadPoolExecutor
) -> None:
    op.instrument_executor(threads, "images")
    release = threading.Event()
    started = threading.Semaphore(0)

    def busy() -> None:
        started.release()
        assert release.wait(30)

    running = [threads.submit(busy) for _ in range(3)]
    for _ in range(3):
        assert started.acquire(timeout=30)
    waiting = [threads.submit(busy) for _ in range(2)]
    assert capture.value("queue.depth", IMAGES) == 2
    assert capture.value("queue.jobs.in_progress", IMAGES) == 3
    assert capture.value("queue.workers", {**IMAGES, "state": "active"}) == 3
    assert capture.value("queue.workers", {**IMAGES, "state": "idle"}) == 0
    assert waiting[1].cancel()  # never started: leaves the queue, not counted as processed
    assert capture.value("queue.depth", IMAGES) == 1
    release.set()
    wait(running + waiting[:1])
    assert capture.value("queue.jobs.processed", OK) == 4
    assert capture.value("queue.depth", IMAGES) == 0
    assert capture.value("queue.workers", {**IMAGES, "state": "idle"}) == 3
    assert capture.point("queue.job.wait_time", IMAGES).count == 4


def test_thread_pool_span_is_a_child_of_the_submitters_span(
    capture: Capture, threads: ThreadPoolExecutor
) -> None:
    op.instrument_executor(threads, "images")
    assert capture.pipeline.tracer_provider is not None
    tracer = capture.pipeline.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("request") as request:
        ok = threads.submit(lambda: trace.get_current_span().get_span_context().span_id)
        bad = threads.submit(work, 3)
    inner_span_id = ok.result()
    with pytest.raises(ValueError, match="3"):
        bad.result()
    parent = request.get_span_context()
    spans = capture.spans("queue.process images")
    assert len(spans) == 2
    for span in spans:
        assert span.parent is not None
        assert (span.context.trace_id, span.parent.span_id) == (parent.trace_id, parent.span_id)
    by_status = {span.status.status_code: span for span in spans}
    assert by_status[StatusCode.UNSET].context.span_id == inner_span_id  # user code runs inside it
    assert dict(by_status[StatusCode.ERROR].attributes or {})["error.type"] == "ValueError"


def test_run_in_executor_goes_through_submit(capture: Capture, threads: ThreadPoolExecutor) -> None:
    op.instrument_executor(threads, "images")

    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        return [await loop.run_in_executor(threads, work, x) for x in (1, 2)]

    assert asyncio.run(main()) == [2, 4]
    assert capture.value("queue.jobs.processed", OK) == 2


def test_uninstrument_restores_the_pool_exactly(capture: Capture, threads: ThreadPoolExecutor) -> None:
    before = dict(threads.__dict__)
    hook = op.instrument_executor(threads, "images")
    installed = threads.__dict__["submit"]
    assert op.instrument_executor(threads, "images") is hook  # idempotent
    assert threads.__dict__["submit"] is installed
    threads.submit(work, 1).result()
    assert op.uninstrument_executor(threads) is True
    assert threads.__dict__ == before
    assert threads.submit.__func__ is ThreadPoolExecutor.submit  # type: ignore[attr-defined]
    assert threads.shutdown.__func__ is ThreadPoolExecutor.shutdown  # type: ignore[attr-defined]
    assert op.uninstrument_executor(threads) is False
    threads.submit(work, 2).result()  # not counted any more
    installed(work, 4).result()  # nor through a wrapper someone kept
    assert capture.value("queue.jobs.enqueued", IMAGES) == 1
    assert capture.value("queue.jobs.processed", OK) == 1
    assert capture.value("queue.workers", {**IMAGES, "state": "idle"}) == 0
    assert hook._depth_function is None
    assert "queue.depth" not in capture.metrics()  # the depth function went with it


def test_a_submit_patched_by_someone_else_is_kept(capture: Capture, threads: ThreadPoolExecutor) -> None:
    calls: list[Any] = []
    theirs = threads.submit

    def patched(fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        calls.append(fn)
        return theirs(fn, *args, **kwargs)

    threads.submit = patched  # type: ignore[method-assign]
    op.instrument_executor(threads, "images")
    assert threads.submit(work, 1).result() == 2
    assert len(calls) == 1
    op.uninstrument_executor(threads)
    assert threads.__dict__["submit"] is patched
    assert capture.value("queue.jobs.processed", OK) == 1


def test_two_pools_under_one_name_add_up(capture: Capture) -> None:
    release = threading.Event()
    with ThreadPoolExecutor(1) as first, ThreadPoolExecutor(1) as second:
        op.instrument_executor(first, "images")
        op.instrument_executor(second, "images")
        futures = [pool.submit(release.wait, 30) for pool in (first, second, first, second)]
        assert capture.value("queue.depth", IMAGES) in (2, 3, 4)  # the first two may have started
        release.set()
        wait(futures)
        assert capture.value("queue.depth", IMAGES) == 0
        assert capture.value("queue.jobs.processed", OK) == 4
        op.uninstrument_executor(first)
        assert capture.value("queue.depth", IMAGES) == 0  # still read, for the second pool
        op.uninstrument_executor(second)
        assert "queue.depth" not in capture.metrics()


def test_shutdown_works_as_before(capture: Capture) -> None:
    pool = ThreadPoolExecutor(2)
    op.instrument_executor(pool, "images")
    with pool:
        pool.submit(work, 1)
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        pool.submit(work, 1)
    assert capture.value("queue.jobs.enqueued", IMAGES) == 1
    assert capture.value("queue.depth", IMAGES) == 0
    assert capture.value("queue.workers", {**IMAGES, "state": "idle"}) == 0
    assert all(not thread.is_alive() for thread in pool._threads)
    op.uninstrument_executor(pool)


def test_shutdown_cancelling_pending_jobs(capture: Capture) -> None:
    pool = ThreadPoolExecutor(1)
    op.instrument_executor(pool, "images")
    release = threading.Event()
    started = threading.Event()

    def first() -> None:
        started.set()
        assert release.wait(30)

    running = pool.submit(first)
    assert started.wait(30)
    pending = [pool.submit(work, 1) for _ in range(3)]
    assert capture.value("queue.depth", IMAGES) == 3
    threading.Timer(0.05, release.set).start()
    pool.shutdown(wait=True, cancel_futures=True)
    assert running.done()
    assert all(future.cancelled() for future in pending)
    assert capture.value("queue.depth", IMAGES) == 0
    assert capture.value("queue.jobs.processed", OK) == 1
    op.uninstrument_executor(pool)


def test_unconfigured_the_pool_works_and_nothing_is_recorded(threads: ThreadPoolExecutor) -> None:
    op.instrument_executor(threads, "images")
    assert outcomes([threads.submit(work, x) for x in range(N)]) == expected_outcomes()
    with Capture() as capture:
        assert "queue.jobs.processed" not in capture.metrics()
        assert capture.value("queue.depth", IMAGES) == 0  # the depth function still reads the pool


def test_the_pool_is_not_kept_alive_by_its_instrumentation(capture: Capture) -> None:
    import gc
    import weakref

    pool = ThreadPoolExecutor(1)
    op.instrument_executor(pool, "images")
    pool.submit(work, 1).result()
    reference = weakref.ref(pool)
    assert capture.value("queue.workers", {**IMAGES, "state": "idle"}) == 1
    del pool
    assert reference() is None  # no cycle: collected by reference counting, before any gc run
    gc.collect()
    with ThreadPoolExecutor(1) as other:
        op.instrument_executor(other, "thumbs")  # the next call of the integration cleans up
        assert capture.value("queue.workers", {**IMAGES, "state": "idle"}) == 0
        assert "images" not in integration._BY_NAME
        op.uninstrument_executor(other)


def test_a_pool_collected_while_a_lock_is_held_does_not_deadlock(capture: Capture) -> None:
    """The garbage collector may call back at any allocation, e.g. inside the registry's lock."""
    pool = ThreadPoolExecutor(1)
    op.instrument_executor(pool, "images")
    pool.submit(work, 1).result()
    record = pool.__dict__[integration._ATTRIBUTE]
    registry = capture.pipeline.registry
    assert registry is not None
    with registry._lock:
        record._collected(None)  # as the GC would: returns without taking any lock
    assert record in integration._COLLECTED
    integration._drain()
    assert integration._COLLECTED == []
    assert capture.value("queue.workers", {**IMAGES, "state": "idle"}) == 0
    pool.shutdown()


# -- wrong arguments -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", [object(), "pool", None, asyncio.Queue()])
def test_not_an_executor_is_refused(value: Any) -> None:
    with pytest.raises(TypeError, match=r"instrument_executor\(\) takes a concurrent.futures.Thread"):
        op.instrument_executor(value, "images")
    with pytest.raises(TypeError, match=r"uninstrument_executor\(\) takes a concurrent.futures"):
        op.uninstrument_executor(value)


def test_a_generic_executor_subclass_is_refused() -> None:
    class Inline(Executor):
        pass

    with pytest.raises(TypeError, match="got Inline"):
        op.instrument_executor(Inline(), "images")  # type: ignore[arg-type]


def test_bad_names_and_renaming_are_refused(threads: ThreadPoolExecutor) -> None:
    with pytest.raises(TypeError, match="queue name must be a str, got int 3"):
        op.instrument_executor(threads, 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="queue name=''"):
        op.instrument_executor(threads, "")
    op.instrument_executor(threads, "images")
    with pytest.raises(ValueError, match="already instrumented as 'images', not 'thumbs'"):
        op.instrument_executor(threads, "thumbs")


# -- process pools -------------------------------------------------------------------------------

_CHILD: dict[str, Any] = {}


def _capture_in_child() -> None:
    """Pool initializer: a pipeline of the worker process's own, with its spans in memory."""
    capture = Capture(service_name="worker")
    capture.__enter__()
    _CHILD["capture"] = capture


def child_spans() -> list[tuple[str, int, int | None, str, Any]]:
    """The spans the worker process finished so far: name, trace id, parent span id, status, error."""
    capture: Capture = _CHILD["capture"]
    return [
        (
            span.name,
            span.context.trace_id,
            None if span.parent is None else span.parent.span_id,
            span.status.status_code.name,
            dict(span.attributes or {}).get("error.type"),
        )
        for span in capture.spans()
    ]


def child_pid() -> int:
    return os.getpid()


START_METHODS = ["fork", "spawn"]


@pytest.fixture(params=START_METHODS)
def processes(request: pytest.FixtureRequest) -> Iterator[ProcessPoolExecutor]:
    context = multiprocessing.get_context(request.param)
    pool = ProcessPoolExecutor(max_workers=2, mp_context=context, initializer=_capture_in_child)
    yield pool
    op.uninstrument_executor(pool)
    pool.shutdown()


def test_process_pool_exact_totals_in_the_submitting_process(
    capture: Capture, processes: ProcessPoolExecutor
) -> None:
    op.instrument_executor(processes, "images")
    futures = [processes.submit(work, x) for x in range(N)]
    assert outcomes(futures) == expected_outcomes()
    size = len(processes._processes or {})
    processes.shutdown()  # joins the pool's manager thread: every completion is recorded
    assert_totals(capture)
    waits = capture.point("queue.job.wait_time", IMAGES)
    assert waits.min >= 0
    assert size >= 1
    assert capture.value("queue.workers", {**IMAGES, "state": "idle"}) == 0
    assert capture.value("queue.workers", {**IMAGES, "state": "active"}) == 0


def test_process_pool_map_counts_one_job_per_chunk(capture: Capture, processes: ProcessPoolExecutor) -> None:
    op.instrument_executor(processes, "images")
    assert list(processes.map(abs, range(-6, 0), chunksize=3)) == [6, 5, 4, 3, 2, 1]
    assert list(processes.map(abs, [-1, -2])) == [1, 2]
    processes.shutdown()
    assert capture.value("queue.jobs.enqueued", IMAGES) == 4
    assert capture.value("queue.jobs.processed", OK) == 4


@pytest.mark.parametrize("start_method", START_METHODS)
def test_process_pool_span_continues_the_submitters_trace(capture: Capture, start_method: str) -> None:
    # One worker process runs everything, so that its spans can be asked for afterwards.
    context = multiprocessing.get_context(start_method)
    processes = ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=_capture_in_child)
    op.instrument_executor(processes, "images")
    assert capture.pipeline.tracer_provider is not None
    tracer = capture.pipeline.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("request") as request:
        ok, bad = processes.submit(work, 1), processes.submit(work, 3)
    assert ok.result() == 2
    with pytest.raises(ValueError, match="3"):
        bad.result()
    spans = processes.submit(child_spans).result()
    parent = request.get_span_context()
    assert spans[:2] == [
        ("queue.process images", parent.trace_id, parent.span_id, "UNSET", None),
        ("queue.process images", parent.trace_id, parent.span_id, "ERROR", "ValueError"),
    ]
    # The submitting process records metrics, no span: its exporter counts each job once.
    assert capture.spans("queue.process images") == []
    processes.shutdown()


def test_process_pool_busy_workers_and_depth(capture: Capture) -> None:
    context = multiprocessing.get_context("fork")
    manager = context.Manager()
    release = manager.Event()
    try:
        with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
            op.instrument_executor(pool, "images")
            assert pool.submit(child_pid).result() > 0  # the processes are up
            futures = [pool.submit(release.wait, 30) for _ in range(5)]
            # Two run; the pool marks more running as it queues them for its processes (at least
            # one, at most max_workers + 1); the others wait.
            wait_until(lambda: capture.value("queue.jobs.in_progress", IMAGES) >= 3)
            in_progress = capture.value("queue.jobs.in_progress", IMAGES)
            assert in_progress <= 5
            assert capture.value("queue.depth", IMAGES) == 5 - in_progress
            assert capture.value("queue.workers", {**IMAGES, "state": "active"}) == 2
            assert capture.value("queue.workers", {**IMAGES, "state": "idle"}) == 0
            release.set()
            wait(futures)
        assert capture.value("queue.jobs.processed", OK) == 6
        assert capture.value("queue.depth", IMAGES) == 0
        assert capture.value("queue.workers", {**IMAGES, "state": "active"}) == 0
    finally:
        manager.shutdown()


def test_process_pool_cancelled_jobs_leave_the_depth_uncounted(capture: Capture) -> None:
    context = multiprocessing.get_context("fork")
    manager = context.Manager()
    release = manager.Event()
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            op.instrument_executor(pool, "images")
            futures = [pool.submit(release.wait, 30) for _ in range(6)]
            wait_until(lambda: capture.value("queue.jobs.in_progress", IMAGES) >= 1)
            cancelled = [future for future in futures if future.cancel()]
            assert len(cancelled) >= 3  # the pool queues at most two for its one process
            assert capture.value("queue.depth", IMAGES) == 0
            release.set()
        assert capture.value("queue.jobs.enqueued", IMAGES) == 6
        assert capture.value("queue.jobs.processed", OK) == 6 - len(cancelled)
        assert capture.value("queue.jobs.in_progress", IMAGES) == 0
    finally:
        manager.shutdown()


def wait_until(condition: Any, timeout: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def die() -> None:
    os._exit(3)


def test_a_broken_process_pool_counts_its_jobs_as_failed(capture: Capture) -> None:
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork")) as pool:
        op.instrument_executor(pool, "images")
        # The pool queues at most two jobs for its one process: the others fail without reaching it.
        futures: list[Future[Any]] = [pool.submit(die)] + [pool.submit(work, 1) for _ in range(5)]
        wait(futures)
        for future in futures:
            with pytest.raises(BrokenProcessPool):
                future.result()
    broken = capture.value("queue.jobs.processed", failed("BrokenProcessPool"))
    assert broken == 6
    assert capture.point("queue.job.duration", failed("BrokenProcessPool")).count == 6
    assert capture.value("queue.jobs.in_progress", IMAGES) == 0
    assert capture.value("queue.depth", IMAGES) == 0


@pytest.mark.parametrize("mode", ["core", "sdk"])
def test_both_instrument_modes_give_the_same_totals(mode: str) -> None:
    with Capture(instrument_mode=mode) as capture:
        with ThreadPoolExecutor(2) as threads:
            op.instrument_executor(threads, "images")
            outcomes([threads.submit(work, x) for x in range(N)])
        assert_totals(capture)
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(2, mp_context=context) as pool:
            op.instrument_executor(pool, "images")
            outcomes([pool.submit(work, x) for x in range(N)])
        assert capture.value("queue.jobs.enqueued", IMAGES) == 2 * N
        assert capture.value("queue.jobs.processed", failed("ValueError")) == 2 * VALUE_ERRORS
        assert capture.value("queue.jobs.processed", failed("KeyError")) == 2 * KEY_ERRORS
        assert capture.value("queue.jobs.processed", OK) == 2 * SUCCESSES
        assert capture.point("queue.job.wait_time", IMAGES).count == 2 * N


# -- the wrapper a job travels in --------------------------------------------------------------


def test_the_process_call_pickles_and_reports_its_timing() -> None:
    call = pickle.loads(pickle.dumps(integration._ProcessCall(work, "images", {"traceparent": "x"})))
    result = pickle.loads(pickle.dumps(call(4)))
    assert type(result) is integration._Result
    assert result.value == 8
    assert result.duration >= 0
    with pytest.raises(ValueError, match="3") as raised:
        call(3)
    error = pickle.loads(pickle.dumps(raised.value))
    started_at, duration = getattr(error, integration._TIMING)
    assert started_at > 0
    assert duration >= 0
