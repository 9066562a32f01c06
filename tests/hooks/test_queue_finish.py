"""finish_job(): a processing() scope entered by hand and ended with an outcome of its own."""

from __future__ import annotations

import threading

import otel_pipeline as op
from otel_pipeline.hooks.queue import finish_job
from otel_pipeline.testing import Capture
from tests.hooks import FakeClock

EMAILS = {"queue.name": "emails", "job.type": "welcome"}


def test_outcomes_errors_and_durations(capture: Capture, clock: FakeClock) -> None:
    q = op.queue("emails")
    ends = [
        ({}, {"outcome": "success"}),
        ({"error": KeyError("x")}, {"outcome": "failure", "error.type": "KeyError"}),
        ({"outcome": "retry"}, {"outcome": "retry"}),
        (
            {"outcome": "rejected", "error": ValueError("bad")},
            {"outcome": "rejected", "error.type": "ValueError"},
        ),
    ]
    for options, _ in ends:
        scope = q.processing(job_type="welcome")
        scope.__enter__()
        assert capture.value("queue.jobs.in_progress", EMAILS) == 1
        clock.advance(0.5)
        finish_job(scope, **options)  # type: ignore[arg-type]
    for _, attributes in ends:
        assert capture.value("queue.jobs.processed", {**EMAILS, **attributes}) == 1
        assert capture.point("queue.job.duration", {**EMAILS, **attributes}).sum == 0.5
    assert capture.value("queue.jobs.in_progress", EMAILS) == 0

    scope = q.processing(job_type="welcome")
    scope.__enter__()
    clock.advance(3.0)
    finish_job(scope, outcome="revoked", duration=0.0)  # a duration given is recorded as it is
    point = capture.point("queue.job.duration", {**EMAILS, "outcome": "revoked"})
    assert (point.count, point.sum) == (1, 0.0)


def test_spans_carry_the_outcome_and_only_failures_are_errors() -> None:
    with Capture(trace_sample_rate=1.0) as capture:
        q = op.queue("emails")
        for options in ({"outcome": "retry"}, {"error": KeyError("x")}):
            scope = q.processing(job_id="j-1")
            scope.__enter__()
            finish_job(scope, **options)
        retry, failure = capture.spans("queue.process emails")
    assert retry.attributes is not None
    assert retry.attributes["queue.job.outcome"] == "retry"
    assert retry.attributes["queue.job.id"] == "j-1"
    assert retry.status.status_code.name == "UNSET"
    assert failure.status.status_code.name == "ERROR"


def test_not_configured_it_does_nothing() -> None:
    scope = op.queue("emails").processing()
    scope.__enter__()
    finish_job(scope, outcome="retry")


def test_a_worker_scope_ends_from_another_thread(capture: Capture) -> None:
    q = op.queue("emails")
    opened: list[object] = []
    started, release = threading.Event(), threading.Event()

    def work() -> None:
        scope = q.worker()
        scope.__enter__()
        opened.append(scope)
        started.set()
        release.wait(10)
        with q.processing():  # after its worker scope was ended elsewhere: not counted as active
            pass

    thread = threading.Thread(target=work)
    thread.start()
    started.wait(10)
    workers = {"queue.name": "emails", "state": "idle"}
    assert capture.value("queue.workers", workers) == 1
    opened[0].__exit__(None, None, None)  # type: ignore[attr-defined]
    opened[0].__exit__(None, None, None)  # type: ignore[attr-defined]  # twice: once only
    assert capture.value("queue.workers", workers) == 0
    release.set()
    thread.join(10)
    assert capture.value("queue.workers", workers) == 0
    assert capture.value("queue.workers", {"queue.name": "emails", "state": "active"}) == 0
