"""A real ``rq worker`` (forking a work horse per job) on a real Redis, instrumented by its worker class.

Every count is recorded in the worker's own process, around the work horse: its /metrics is exact.
Its spans (and the job code's own, made in the work horse) go over OTLP through rotel into the
in-test receiver.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis as RedisClient
from rq import Queue, Retry

import otel_pipeline as op
from otel_pipeline.testing import Capture
from tests.support import free_port, rq_jobs
from tests.support.fixtures import RotelFactory
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.redis import Redis
from tests.support.workers import WorkerProcess, scrape_until

pytestmark = pytest.mark.integration


def name(function: object) -> str:
    return f"{function.__module__}.{function.__qualname__}"  # type: ignore[attr-defined]


EXPECTED: dict[tuple[str, ...], float] = {
    (name(rq_jobs.ok), "success", ""): 3,
    (name(rq_jobs.boom), "failure", "ValueError"): 2,
    (name(rq_jobs.boom), "retry", ""): 1,
    (name(rq_jobs.retry_once), "retry", ""): 1,
    (name(rq_jobs.retry_once), "success", ""): 1,
    (name(rq_jobs.dies), "failure", "WorkHorseTerminated"): 1,
    (name(rq_jobs.traced), "success", ""): 1,
}


@pytest.fixture
def producer(redis_server: Redis) -> Iterator[tuple[Queue, Capture]]:
    connection = RedisClient.from_url(redis_server.url)
    with Capture(trace_sample_rate=1.0) as capture:
        op.instrument_rq()
        yield Queue("default", connection=connection), capture
        op.uninstrument_rq()
    connection.close()


def test_rq_worker_counts_exactly_on_its_metrics_and_continues_the_producers_traces(
    redis_server: Redis,
    producer: tuple[Queue, Capture],
    otlp_receiver: OtlpReceiver,
    rotel_factory: RotelFactory,
) -> None:
    agent = rotel_factory(otlp_receiver.grpc_endpoint)
    queue, capture = producer
    assert capture.pipeline.tracer_provider is not None
    with capture.pipeline.tracer_provider.get_tracer("shop").start_as_current_span("request") as request:
        for x in range(3):
            queue.enqueue(rq_jobs.ok, x)
        queue.enqueue(rq_jobs.boom, 1)
        queue.enqueue(rq_jobs.boom, 2, retry=Retry(max=1))
        queue.enqueue(rq_jobs.retry_once, 3)
        queue.enqueue(rq_jobs.dies, 4)
        queue.enqueue(rq_jobs.traced, 5)
    trace_id = f"{request.get_span_context().trace_id:032x}"
    port = free_port()
    argv = [
        str(Path(sys.executable).parent / "rq"),
        "worker",
        "--url",
        redis_server.url,
        "--worker-class",
        "tests.integration.rq_worker_app.Worker",
    ]
    argv += ["--logging_level", "WARNING", "default"]
    process = WorkerProcess(
        argv,
        {"OTEL_PIPELINE_TEST_PORT": str(port), "OTEL_PIPELINE_TEST_OTLP": agent.grpc_endpoint},
        "rq-worker",
    )
    labels = ("job_type", "outcome", "error_type")
    try:
        process.wait_port(port)
        scrape = scrape_until(
            port,
            lambda s: s.values("queue_jobs_processed_total", labels) == EXPECTED,
            what="the worker's counts on /metrics",
        )
        assert scrape.value("queue_jobs_retried_total", {"queue_name": "default"}) == 2
        assert scrape.value("queue_workers", {"queue_name": "default", "state": "idle"}) == 1
        assert scrape.value("queue_workers", {"queue_name": "default", "state": "active"}) == 0
        scrape_until(
            port,
            lambda s: s.value("queue_depth", {"queue_name": "default"}) == 0,
            what="the queue's depth to reach 0",
            timeout=10,
        )
        spans = otlp_receiver.wait_for_spans(count=11, timeout=30)
    except Exception:
        print(process.log(), file=sys.stderr)
        raise
    finally:
        process.stop()
    processes = [s for s in spans if s.name == "queue.process default"]
    assert len(processes) == 10
    assert {s.span.trace_id.hex() for s in processes} == {trace_id}
    sends = {
        f"{s.context.span_id:016x}" for s in capture.spans("queue.send default") if s.context is not None
    }
    assert {s.span.parent_span_id.hex() for s in processes} <= sends
    # The job's own span, made in the work horse (a forked process), is the child of the job's.
    (code,) = [s for s in spans if s.name == "job code 5"]
    (traced,) = [s for s in processes if s.attributes.get("job.type") == name(rq_jobs.traced)]
    assert code.span.trace_id == traced.span.trace_id
    assert code.span.parent_span_id == traced.span.span_id
