"""op.instrument_rq(): real RQ queues and workers (in this process) on a real Redis.

``SimpleWorker`` runs jobs in this process; ``Worker`` forks a work horse per job from it, as
``rq worker`` does, and the counts are still this process's: the worker records around the horse.
The ``rq worker`` command itself is in tests/integration/test_rq_worker.py.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from redis import Redis as RedisClient
from rq import Queue, Retry, SimpleWorker, Worker

import otel_pipeline as op
from otel_pipeline.integrations import rq as rq_integration
from otel_pipeline.testing import Capture
from tests.support import rq_jobs
from tests.support.fixtures import redis_server
from tests.support.redis import Redis

__all__ = ["redis_server"]

pytestmark = pytest.mark.integration  # a real redis-server

DEFAULT = {"queue.name": "default"}


@pytest.fixture(params=["core", "sdk"])
def capture(request: pytest.FixtureRequest) -> Iterator[Capture]:
    with Capture(instrument_mode=request.param, trace_sample_rate=1.0) as captured:
        yield captured


@pytest.fixture
def connection(redis_server: Redis) -> Iterator[RedisClient]:
    client = RedisClient.from_url(redis_server.url)
    # A worker working in this process installs its own SIGINT and SIGTERM handlers for good;
    # left behind, later tests' forked children would inherit a SIGTERM that does not end them.
    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    yield client
    for number, handler in handlers.items():
        signal.signal(number, handler)
    client.close()


@pytest.fixture
def instrumented() -> Iterator[None]:
    op.instrument_rq()
    yield
    op.uninstrument_rq()


def processed(capture: Capture) -> dict[tuple[str, ...], float]:
    """queue.jobs.processed by (job.type, outcome, error.type)."""
    return {
        (p.attributes["job.type"], p.attributes["outcome"], p.attributes.get("error.type", "")): p.value
        for p in capture.points("queue.jobs.processed")
    }


def name(function: Any) -> str:
    return f"{function.__module__}.{function.__name__}"


def enqueue_mix(queue: Queue) -> None:
    for x in range(3):
        queue.enqueue(rq_jobs.ok, x)
    queue.enqueue(rq_jobs.boom, 1)
    queue.enqueue(rq_jobs.boom, 2, retry=Retry(max=1))  # fails twice: a retry, then a failure
    queue.enqueue(rq_jobs.retry_once, 3)  # returns Retry once, then succeeds


MIX = {
    (name(rq_jobs.ok), "success", ""): 3,
    (name(rq_jobs.boom), "failure", "ValueError"): 2,
    (name(rq_jobs.boom), "retry", ""): 1,
    (name(rq_jobs.retry_once), "retry", ""): 1,
    (name(rq_jobs.retry_once), "success", ""): 1,
}


def test_a_simple_worker_counts_a_mix_of_jobs_by_outcome_with_the_producers_trace(
    capture: Capture, connection: RedisClient, instrumented: None
) -> None:
    queue = Queue("default", connection=connection)
    assert capture.pipeline.tracer_provider is not None
    with capture.pipeline.tracer_provider.get_tracer("shop").start_as_current_span("request") as request:
        enqueue_mix(queue)
    assert capture.value("queue.jobs.enqueued", {**DEFAULT, "job.type": name(rq_jobs.ok)}) == 3
    assert capture.value("queue.depth", DEFAULT) == 6  # LLEN
    assert 0.0 <= capture.value("queue.oldest_job.age", DEFAULT) < 30.0

    SimpleWorker([queue], connection=connection).work(burst=True)
    assert processed(capture) == MIX
    assert capture.value("queue.jobs.retried", DEFAULT) == 2
    assert sum(p.count for p in capture.points("queue.job.wait_time")) == 8
    assert sum(p.count for p in capture.points("queue.job.duration")) == 8
    assert capture.value("queue.depth", DEFAULT) == 0
    assert capture.value("queue.oldest_job.age", DEFAULT) == 0.0
    assert capture.value("queue.workers", {**DEFAULT, "state": "idle"}) == 0  # the burst worker is gone

    trace_id = request.get_span_context().trace_id
    sends = {span.context.span_id for span in capture.spans("queue.send default") if span.context}
    processes = capture.spans("queue.process default")
    assert len(processes) == 8
    for span in processes:
        assert span.context is not None
        assert span.context.trace_id == trace_id
        assert span.parent is not None
        assert span.parent.span_id in sends
        assert span.attributes is not None
        assert span.attributes["messaging.system"] == "redis"


def test_a_forking_worker_records_every_job_in_its_own_process(
    capture: Capture, connection: RedisClient, instrumented: None
) -> None:
    queue = Queue("default", connection=connection)
    enqueue_mix(queue)
    queue.enqueue(rq_jobs.dies, 4)
    Worker([queue], connection=connection).work(burst=True)
    assert processed(capture) == {**MIX, (name(rq_jobs.dies), "failure", "WorkHorseTerminated"): 1}
    assert capture.value("queue.jobs.retried", DEFAULT) == 2
    assert capture.value("queue.jobs.in_progress", {**DEFAULT, "job.type": name(rq_jobs.ok)}) == 0


def test_a_job_returning_retry_past_its_max_fails_as_retries_exhausted(
    capture: Capture, connection: RedisClient, instrumented: None
) -> None:
    queue = Queue("default", connection=connection)
    queue.enqueue(rq_jobs.retry_forever, 1)
    SimpleWorker([queue], connection=connection).work(burst=True)
    assert processed(capture) == {
        (name(rq_jobs.retry_forever), "retry", ""): 1,
        (name(rq_jobs.retry_forever), "failure", "RetriesExhausted"): 1,
    }


def test_workers_are_idle_or_active_while_they_live(
    capture: Capture, connection: RedisClient, instrumented: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = Queue("default", connection=connection)
    seen: list[tuple[float, float]] = []

    def observe() -> None:
        seen.append(
            (
                capture.value("queue.workers", {**DEFAULT, "state": "idle"}),
                capture.value("queue.workers", {**DEFAULT, "state": "active"}),
            )
        )

    monkeypatch.setattr(rq_jobs, "OBSERVER", observe)
    queue.enqueue(rq_jobs.observed, 1)
    SimpleWorker([queue], connection=connection).work(burst=True)
    assert seen == [(0, 1)]
    assert capture.value("queue.workers", {**DEFAULT, "state": "idle"}) == 0
    assert capture.value("queue.workers", {**DEFAULT, "state": "active"}) == 0


def test_an_unworked_queue_reports_its_exact_depth_and_oldest_age(
    capture: Capture, connection: RedisClient, instrumented: None
) -> None:
    queue = Queue("reports", connection=connection)
    for x in range(4):
        queue.enqueue(rq_jobs.ok, x)
    assert capture.value("queue.depth", {"queue.name": "reports"}) == 4
    assert 0.0 <= capture.value("queue.oldest_job.age", {"queue.name": "reports"}) < 30.0
    connection.delete(queue.key)
    assert capture.value("queue.depth", {"queue.name": "reports"}) == 4  # read at most once a second
    assert rq_integration._parse_time(b"2024-05-01T10:00:00.5Z") == 1714557600.5
    assert rq_integration._parse_time("2024-05-01T10:00:00Z") == 1714557600.0
    assert rq_integration._parse_time("yesterday") is None
    assert rq_integration._parse_time(None) is None


def test_instrument_is_idempotent_and_uninstrument_restores_rq(
    capture: Capture, connection: RedisClient
) -> None:
    originals = (Queue.enqueue_job, Worker.execute_job, SimpleWorker.execute_job)
    op.instrument_rq()
    op.instrument_rq()
    patched = Queue.__dict__["enqueue_job"]
    assert getattr(patched, "__wrapped__", None) is originals[0]
    queue = Queue("default", connection=connection)
    queue.enqueue(rq_jobs.ok, 1)
    assert capture.value("queue.jobs.enqueued", {**DEFAULT, "job.type": name(rq_jobs.ok)}) == 1
    assert op.uninstrument_rq() is True
    assert op.uninstrument_rq() is False
    assert (Queue.enqueue_job, Worker.execute_job, SimpleWorker.execute_job) == originals
    queue.enqueue(rq_jobs.ok, 2)
    SimpleWorker([queue], connection=connection).work(burst=True)
    assert capture.value("queue.jobs.enqueued", {**DEFAULT, "job.type": name(rq_jobs.ok)}) == 1
    with pytest.raises(KeyError):
        capture.point("queue.jobs.processed", {**DEFAULT, "job.type": name(rq_jobs.ok), "outcome": "success"})


def test_missing_rq(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rq", None)
    with pytest.raises(ImportError, match=r"pip install 'otel_pipeline\[rq\]'"):
        op.instrument_rq()


def test_an_execution_that_raises_is_a_failure_and_the_error_reaches_rq(
    capture: Capture, connection: RedisClient, instrumented: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = Queue("default", connection=connection)
    queue.enqueue(rq_jobs.ok, 1)
    worker = SimpleWorker([queue], connection=connection)

    def broken(*_: Any) -> None:
        raise ConnectionError("redis went away")

    monkeypatch.setattr(worker, "prepare_execution", broken)
    job = queue.dequeue_any([queue], None, connection=connection)
    assert job is not None
    with pytest.raises(ConnectionError):
        worker.execute_job(job[0], queue)
    assert processed(capture) == {(name(rq_jobs.ok), "failure", "ConnectionError"): 1}


def test_uninstrument_ends_the_workers_still_open(capture: Capture, connection: RedisClient) -> None:
    op.instrument_rq()
    worker = SimpleWorker([Queue("default", connection=connection)], connection=connection)
    worker.register_birth()  # type: ignore[no-untyped-call]
    assert capture.value("queue.workers", {**DEFAULT, "state": "idle"}) == 1
    op.uninstrument_rq()
    assert capture.value("queue.workers", {**DEFAULT, "state": "idle"}) == 0
    worker.register_death()  # type: ignore[no-untyped-call]


def test_values_read_back_from_redis() -> None:
    assert rq_integration._int(b"3") == 3
    assert rq_integration._int(None) is None
    assert rq_integration._int(b"x") is None
    assert rq_integration._timestamp("2024") is None
    assert rq_integration._timestamp(datetime(2024, 5, 1, 10)) == 1714557600.0  # naive: UTC
