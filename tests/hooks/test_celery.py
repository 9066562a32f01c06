"""op.instrument_celery(): a real Celery app and worker (in this process: solo, threads) on a real Redis.

The worker runs in a thread of the test process (``celery.contrib.testing.worker``), so that every
count is read from the test's own capture; the real ``celery worker`` processes (prefork, solo) are
in tests/integration/test_celery_worker.py.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from celery import Celery, signals
from celery.contrib.testing.worker import start_worker
from celery.exceptions import Ignore, Reject, TimeLimitExceeded
from kombu.entity import Queue as KombuQueue

import otel_pipeline as op
from otel_pipeline.integrations import celery as celery_integration
from otel_pipeline.testing import Capture
from tests.support import wait_until
from tests.support.fixtures import redis_server
from tests.support.redis import Redis

__all__ = ["redis_server"]

pytestmark = pytest.mark.integration  # a real redis-server

CELERY = {"queue.name": "celery"}
TASK = "shop.work"


@pytest.fixture(params=["core", "sdk"])
def capture(request: pytest.FixtureRequest) -> Iterator[Capture]:
    with Capture(instrument_mode=request.param, trace_sample_rate=1.0) as captured:
        yield captured


@pytest.fixture
def uninstrument() -> Iterator[None]:
    yield
    op.uninstrument_celery()


@pytest.fixture(autouse=True)
def root_log_level() -> Iterator[None]:
    """The testing worker sets the root logger's level (to ERROR); the next tests need it back."""
    root = logging.getLogger()
    level = root.level
    yield
    root.setLevel(level)


RELEASE = threading.Event()


def work(self: Any, what: str) -> str:
    """The test's task: what it is given says how it ends."""
    if what == "fail":
        raise KeyError(what)
    if what == "retry" and self.request.retries == 0:
        raise self.retry(countdown=0)
    if what == "reject":
        raise Reject("no", requeue=False)
    if what == "ignore":
        raise Ignore()
    if what == "wait":
        RELEASE.wait(10)
    return what


def make_app(redis: Redis, **conf: Any) -> Celery:
    app = Celery("shop", broker=redis.url, set_as_current=False)
    app.conf.update(worker_hijack_root_logger=False, broker_connection_retry_on_startup=True, **conf)

    app.task(name=TASK, bind=True, max_retries=1, default_retry_delay=0, shared=False)(work)
    return app


def processed(capture: Capture) -> dict[tuple[str, ...], float]:
    """queue.jobs.processed by (job.type, outcome, error.type)."""
    try:
        points = capture.points("queue.jobs.processed")
    except KeyError:
        return {}
    return {
        (p.attributes["job.type"], p.attributes["outcome"], p.attributes.get("error.type", "")): p.value
        for p in points
    }


def wait_processed(capture: Capture, total: int) -> dict[tuple[str, ...], float]:
    def done() -> dict[tuple[str, ...], float] | None:
        found = processed(capture)
        return found if sum(found.values()) >= total else None

    return wait_until(done, timeout=30, interval=0.05, what=f"{total} jobs processed")


def test_a_mix_of_tasks_is_counted_by_outcome_with_the_producers_trace(
    capture: Capture, redis_server: Redis, uninstrument: None
) -> None:
    app = make_app(redis_server)
    op.instrument_celery(app)
    work = app.tasks[TASK]
    assert capture.pipeline.tracer_provider is not None
    tracer = capture.pipeline.tracer_provider.get_tracer("shop")
    requests = {}
    for what in ("a", "b", "fail", "retry", "reject", "ignore"):
        with tracer.start_as_current_span(f"request {what}") as span:
            work.delay(what)
            requests[what] = span
    assert capture.value("queue.jobs.enqueued", {**CELERY, "job.type": TASK}) == 6
    assert capture.value("queue.depth", CELERY) == 6  # read from Redis
    assert capture.value("queue.oldest_job.age", CELERY) >= 0.0

    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        found = wait_processed(capture, 7)  # the retried task runs twice
    assert found == {
        (TASK, "success", ""): 3,  # a, b, and the retry's second attempt
        (TASK, "failure", "KeyError"): 1,
        (TASK, "retry", ""): 1,
        (TASK, "rejected", ""): 1,
        (TASK, "ignored", ""): 1,
    }
    assert capture.value("queue.jobs.retried", CELERY) == 1
    assert capture.value("queue.jobs.enqueued", {**CELERY, "job.type": TASK}) == 6  # the retry is not
    assert capture.point("queue.job.wait_time", {**CELERY, "job.type": TASK}).count == 7
    assert sum(p.count for p in capture.points("queue.job.duration")) == 7
    assert capture.value("queue.jobs.in_progress", {**CELERY, "job.type": TASK}) == 0
    assert capture.value("queue.depth", CELERY) == 0
    assert capture.value("queue.oldest_job.age", CELERY) == 0.0

    # Each task's span continues its producer's trace: the child of its send span.
    sends = {span.parent.span_id: span for span in capture.spans("queue.send celery") if span.parent}
    processes = capture.spans("queue.process celery")
    assert len(processes) == 7
    by_trace: dict[int, list[Any]] = {}
    for process in processes:
        assert process.context is not None
        by_trace.setdefault(process.context.trace_id, []).append(process)
    for what, request in requests.items():
        send = sends[request.get_span_context().span_id]
        spans = sorted(by_trace[request.get_span_context().trace_id], key=lambda s: s.start_time)
        assert spans[0].parent is not None
        assert spans[0].parent.span_id == send.context.span_id
        assert spans[0].attributes is not None
        assert spans[0].attributes["job.type"] == TASK
        assert spans[0].attributes["messaging.system"] == "redis"
        if what == "retry":  # the second attempt: the child of the first
            assert len(spans) == 2
            assert spans[1].parent is not None
            assert spans[1].parent.span_id == spans[0].context.span_id
            assert spans[0].attributes["queue.job.outcome"] == "retry"
        else:
            assert len(spans) == 1
    failed = [s for s in processes if s.attributes and s.attributes.get("error.type") == "KeyError"]
    assert len(failed) == 1
    assert failed[0].status.status_code.name == "ERROR"


def test_a_dead_letter_queue_declared_counts_rejected_tasks(
    capture: Capture, redis_server: Redis, uninstrument: None
) -> None:
    dead_lettering = {"x-dead-letter-exchange": "dead"}
    queues = [KombuQueue("celery", queue_arguments=dead_lettering)]  # type: ignore[no-untyped-call]
    app = make_app(redis_server, task_queues=queues)
    op.instrument_celery(app)
    app.tasks[TASK].delay("reject")
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        wait_processed(capture, 1)
    assert capture.value("queue.jobs.dead_lettered", {**CELERY, "reason": "rejected", "job.type": TASK}) == 1


def test_expired_and_unknown_tasks_are_revoked_and_rejected(
    capture: Capture, redis_server: Redis, uninstrument: None
) -> None:
    app = make_app(redis_server)
    op.instrument_celery(app)
    app.tasks[TASK].apply_async(("a",), expires=0.05)
    app.send_task("shop.nobody_knows")
    time.sleep(0.1)  # the first has expired before the worker takes it
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        found = wait_processed(capture, 2)
    assert found == {(TASK, "revoked", ""): 1, ("shop.nobody_knows", "rejected", "KeyError"): 1}
    revoked = capture.point("queue.job.duration", {**CELERY, "job.type": TASK, "outcome": "revoked"})
    assert (revoked.count, revoked.sum) == (1, 0.0)


def test_a_task_whose_process_was_lost_is_counted_by_the_main_process(
    capture: Capture, redis_server: Redis, uninstrument: None
) -> None:
    app = make_app(redis_server)
    op.instrument_celery(app)
    task = app.tasks[TASK]
    # What a prefork worker's main process sends when a child passed its hard time limit.
    signals.task_failure.send(sender=task, task_id="t-1", exception=TimeLimitExceeded(5.0))
    signals.task_failure.send(sender=task, task_id="t-2", exception=ValueError("handled by postrun"))
    assert processed(capture) == {(TASK, "failure", "TimeLimitExceeded"): 1}
    point = capture.point(
        "queue.job.duration",
        {**CELERY, "job.type": TASK, "outcome": "failure", "error.type": "TimeLimitExceeded"},
    )
    assert (point.count, point.sum) == (1, 5.0)


def test_threads_pool_workers_are_active_while_they_run_a_task(
    capture: Capture, redis_server: Redis, uninstrument: None
) -> None:
    app = make_app(redis_server)
    op.instrument_celery(app)
    RELEASE.clear()
    with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False, shutdown_timeout=10):
        app.tasks[TASK].delay("wait")
        wait_until(
            lambda: capture.value("queue.jobs.in_progress", {**CELERY, "job.type": TASK}) == 1,
            timeout=30,
            what="the task to start",
        )
        assert capture.value("queue.workers", {**CELERY, "state": "active"}) == 1
        assert capture.value("queue.workers", {**CELERY, "state": "idle"}) == 0
        RELEASE.set()
        wait_processed(capture, 1)
        assert capture.value("queue.workers", {**CELERY, "state": "active"}) == 0
        assert capture.value("queue.workers", {**CELERY, "state": "idle"}) == 1
    signals.worker_shutdown.send(sender=None)  # the testing worker does not send it
    assert capture.value("queue.workers", {**CELERY, "state": "idle"}) == 0


def test_an_unconsumed_declared_queue_reports_its_exact_depth(
    capture: Capture, redis_server: Redis, uninstrument: None
) -> None:
    queues = [KombuQueue(name) for name in ("celery", "reports")]  # type: ignore[no-untyped-call]
    app = make_app(redis_server, task_queues=queues)
    op.instrument_celery(app)
    for priority in (0, 0, 5, 9):
        app.tasks[TASK].apply_async(("a",), queue="reports", priority=priority)
    assert capture.value("queue.depth", {"queue.name": "reports"}) == 4  # over its priority lists
    assert capture.value("queue.depth", CELERY) == 0
    assert 0.0 <= capture.value("queue.oldest_job.age", {"queue.name": "reports"}) < 30.0
    assert capture.value("queue.jobs.enqueued", {"queue.name": "reports", "job.type": TASK}) == 4


def test_an_unreachable_broker_reports_no_depth_and_says_so_once(
    capture: Capture, redis_server: Redis, uninstrument: None, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(redis_server)
    op.instrument_celery(app)
    redis_server.stop()
    with caplog.at_level(logging.WARNING, logger="otel_pipeline"):
        capture.collect()
        capture.collect()
    with pytest.raises(KeyError):
        capture.point("queue.depth", CELERY)
    messages = [r.getMessage() for r in caplog.records if "queue depths" in r.getMessage()]
    assert messages == [
        "could not read the queue depths of Celery's broker from Redis; no value is reported until it answers"
    ]


def test_instrument_is_idempotent_and_uninstrument_disconnects(capture: Capture, redis_server: Redis) -> None:
    app = make_app(redis_server)
    before = {name: len(getattr(signals, name).receivers) for name in ("before_task_publish", "task_prerun")}
    op.instrument_celery(app)
    op.instrument_celery(app)
    after = {name: len(getattr(signals, name).receivers) for name in before}
    assert after == {name: count + 1 for name, count in before.items()}
    app.tasks[TASK].delay("a")
    assert capture.value("queue.jobs.enqueued", {**CELERY, "job.type": TASK}) == 1
    assert op.uninstrument_celery() is True
    assert op.uninstrument_celery() is False
    assert {name: len(getattr(signals, name).receivers) for name in before} == before
    app.tasks[TASK].delay("a")
    assert capture.value("queue.jobs.enqueued", {**CELERY, "job.type": TASK}) == 1
    assert redis_server.command("LLEN", "celery") == b":2"
    assert capture.value("queue.depth", CELERY) == 1  # tracked again (enqueued here), not read from Redis


def test_app_none_is_the_current_app(capture: Capture, redis_server: Redis, uninstrument: None) -> None:
    app = make_app(redis_server)
    app.set_current()
    op.instrument_celery()
    assert celery_integration._STATE is not None
    assert celery_integration._STATE.apps == [app]


def test_bad_app_and_missing_celery(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TypeError, match=r"needs a celery.Celery app \(or None\), got str"):
        op.instrument_celery("shop")
    monkeypatch.setitem(sys.modules, "celery", None)
    with pytest.raises(ImportError, match=r"pip install 'otel_pipeline\[celery\]'"):
        op.instrument_celery()


@pytest.mark.parametrize(
    ("published", "eta", "expected"),
    [
        (100.0, None, 100.0),
        (None, None, None),
        (float("nan"), None, None),
        (-1.0, None, None),
        ("100", None, None),
        (100.0, "1970-01-01T00:03:20+00:00", 200.0),  # a scheduled task waits from its ETA
        (300.0, "1970-01-01T00:03:20", 300.0),  # naive: UTC
        (None, "1970-01-01T00:03:20+00:00", 200.0),
        (100.0, "not a date", 100.0),
    ],
)
def test_the_wait_starts_at_the_publish_or_the_eta(published: Any, eta: Any, expected: float | None) -> None:
    assert celery_integration._waited_from(published, eta) == expected


def test_signals_with_unexpected_arguments_record_nothing_and_raise_nothing(
    capture: Capture, redis_server: Redis, uninstrument: None
) -> None:
    app = make_app(redis_server)
    op.instrument_celery(app)
    calls: list[Callable[[], Any]] = [
        lambda: signals.before_task_publish.send(sender="x", headers=None),
        lambda: signals.task_prerun.send(sender=None, task_id=None, task=None),
        lambda: signals.task_postrun.send(sender=None, task_id="never-started", task=None, state="SUCCESS"),
        lambda: signals.task_revoked.send(sender=None, request=None),
        lambda: signals.task_failure.send(sender=None, task_id=None, exception=None),
    ]
    for call in calls:
        call()
    assert processed(capture) == {}
