"""A real ``celery worker`` (prefork -c 2, solo) on a real Redis, instrumented by its app module.

The producer is this test (an instrumented app of the same broker, its spans in memory); the worker
exports over OTLP through rotel into the in-test receiver (prefork: each pool process is a
process of its own, so its counts are summed over the processes), or serves /metrics (solo).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery

import otel_pipeline as op
from otel_pipeline.testing import Capture
from tests.support import free_port, wait_until
from tests.support.fixtures import RotelFactory
from tests.support.http import request
from tests.support.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.support.redis import Redis
from tests.support.workers import Scrape, WorkerProcess, scrape_until, summed_over_processes, sums_until

pytestmark = pytest.mark.integration

TASK = "shop.work"
MIX = ("a", "b", "fail", "retry", "reject", "ignore")
#: What the mix ends as, by (job.type, outcome, error.type): the retried task runs twice.
EXPECTED: dict[tuple[str, ...], float] = {
    (TASK, "success", ""): 3,
    (TASK, "failure", "KeyError"): 1,
    (TASK, "retry", ""): 1,
    (TASK, "rejected", ""): 1,
    (TASK, "ignored", ""): 1,
}
OUTCOME = ("job.type", "outcome", "error.type")


@pytest.fixture
def redis(redis_server: Redis) -> Redis:
    return redis_server


@pytest.fixture
def producer(redis: Redis) -> Iterator[tuple[Celery, Capture]]:
    app = Celery("producer", broker=redis.url, set_as_current=False)
    app.conf.update(broker_connection_retry_on_startup=True)
    with Capture(trace_sample_rate=1.0) as capture:
        op.instrument_celery(app)
        yield app, capture
        op.uninstrument_celery()
    app.close()


def publish_mix(app: Celery, capture: Capture) -> dict[str, str]:
    """Publish the mix, each task from a request span of its own; their trace ids by task."""
    assert capture.pipeline.tracer_provider is not None
    tracer = capture.pipeline.tracer_provider.get_tracer("shop")
    traces = {}
    for what in MIX:
        with tracer.start_as_current_span(f"request {what}") as span:
            app.send_task(TASK, args=(what,))
        traces[what] = f"{span.get_span_context().trace_id:032x}"
    return traces


def worker(redis: Redis, pool: str, env: dict[str, str], *queues: str) -> WorkerProcess:
    argv = ["-m", "celery", "-A", "tests.integration.celery_worker_app", "worker", "-P", pool]
    argv += ["-c", "2", "-Q", ",".join(queues or ("celery",)), "--loglevel=warning"]
    argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    return WorkerProcess(argv, {"BROKER_URL": redis.url, **env}, f"celery-{pool}")


def test_prefork_worker_counts_exactly_and_continues_the_producers_traces(
    redis: Redis, producer: tuple[Celery, Capture], otlp_receiver: OtlpReceiver, rotel_factory: RotelFactory
) -> None:
    agent = rotel_factory(otlp_receiver.grpc_endpoint)
    app, capture = producer
    traces = publish_mix(app, capture)
    process = worker(
        redis,
        "prefork",
        {"OTEL_PIPELINE_TEST_EXPORTER": "otlp", "OTEL_PIPELINE_TEST_OTLP": agent.grpc_endpoint},
    )
    try:
        sums_until(otlp_receiver, "queue.jobs.processed", OUTCOME, EXPECTED)
        assert summed_over_processes(otlp_receiver, "queue.jobs.retried", ("queue.name",)) == {("celery",): 1}
        # Each pool process is one worker of the queue, idle now.
        workers = summed_over_processes(otlp_receiver, "queue.workers", ("queue.name", "state"))
        assert workers == {("celery", "idle"): 2}
        spans = otlp_receiver.wait_for_spans(count=7, timeout=30)
    except Exception:
        print(process.log(), file=sys.stderr)
        raise
    finally:
        process.stop()
    processes = [s for s in spans if s.name == "queue.process celery"]
    assert len(processes) == 7
    assert {s.resource["service.name"] for s in processes} == {"celery-worker"}
    assert len({s.resource["service.instance.id"] for s in processes}) in (1, 2)  # the pool's processes
    seen: dict[str, list[ReceivedSpan]] = {}
    for span in processes:
        seen.setdefault(span.span.trace_id.hex(), []).append(span)
    assert sorted(seen) == sorted(traces.values())
    assert len(seen[traces["retry"]]) == 2
    sends = {
        f"{s.context.span_id:016x}": s for s in capture.spans("queue.send celery") if s.context is not None
    }
    for what, trace_id in traces.items():
        first = min(seen[trace_id], key=lambda s: s.span.start_time_unix_nano)
        assert first.span.parent_span_id.hex() in sends, what


def test_solo_worker_serves_exact_counts_exemplars_and_broker_depth_on_its_metrics(
    redis: Redis, producer: tuple[Celery, Capture]
) -> None:
    app, capture = producer
    traces = publish_mix(app, capture)
    for _ in range(3):  # a declared queue no worker consumes
        app.send_task(TASK, args=("a",), queue="reports")
    port = free_port()
    process = worker(
        redis, "solo", {"OTEL_PIPELINE_TEST_EXPORTER": "prometheus", "OTEL_PIPELINE_TEST_PORT": str(port)}
    )
    try:
        process.wait_port(port)
        labels = ("job_type", "outcome", "error_type")
        scrape = scrape_until(
            port,
            lambda s: s.values("queue_jobs_processed_total", labels) == EXPECTED,
            what="the worker's counts on /metrics",
        )
        # The broker is read at most once a second: the next reads see the consumed queue empty.
        wait_until(
            lambda: Scrape(port).value("queue_depth", {"queue_name": "celery"}) == 0,
            timeout=10,
            what="the consumed queue's depth to reach 0",
        )
    except Exception:
        print(process.log(), file=sys.stderr)
        raise
    finally:
        process.stop()
    assert scrape.value("queue_jobs_retried_total", {"queue_name": "celery"}) == 1
    assert scrape.value("queue_depth", {"queue_name": "reports"}) == 3
    assert scrape.value("queue_workers", {"queue_name": "celery", "state": "idle"}) == 1
    assert scrape.value("queue_jobs_in_progress", {"queue_name": "celery", "job_type": TASK}) == 0
    exemplars = scrape.exemplar_trace_ids("queue_job_duration_seconds_bucket")
    assert exemplars
    assert exemplars <= set(traces.values())  # the producer's trace ids


def test_prefork_worker_serves_its_pool_processes_counts_on_one_metrics(
    redis: Redis, producer: tuple[Celery, Capture]
) -> None:
    app, capture = producer
    publish_mix(app, capture)
    port = free_port()
    process = worker(
        redis, "prefork", {"OTEL_PIPELINE_TEST_EXPORTER": "prometheus", "OTEL_PIPELINE_TEST_PORT": str(port)}
    )
    try:
        process.wait_port(port)
        labels = ("job_type", "outcome", "error_type")
        scrape = scrape_until(
            port,
            lambda s: s.values("queue_jobs_processed_total", labels) == EXPECTED,
            what="the pool's counts on the worker's /metrics",
            timeout=20,
        )

        # The main process serves; its two pool processes are members (a scrape in the main
        # process while it forks them must not leave them a lock held forever: they would hang).
        def whole() -> dict[str, Any] | None:
            found: dict[str, Any] = json.loads(request(f"http://127.0.0.1:{port}/health").body)["group"]
            return found if len(found["processes"]) == 3 else None

        group = wait_until(whole, timeout=10, what="the pool processes in the group")
        assert group["hub"] == process.process.pid
    except Exception:
        print(process.log(), file=sys.stderr)
        raise
    finally:
        process.stop()
    assert scrape.value("queue_workers", {"queue_name": "celery", "state": "idle"}) == 2
