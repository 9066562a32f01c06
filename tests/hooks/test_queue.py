from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode

import otel_pipeline as op
from otel_pipeline._internal import errors, runtime
from otel_pipeline._internal.timed import Timed, TimedScope
from otel_pipeline._internal.validation import INVALID
from otel_pipeline.hooks import queue as queue_module
from otel_pipeline.testing import Capture
from tests.hooks import FakeClock, buckets
from tests.support.dropped import Key, assert_records, key, message, warnings

MODES = ["core", "sdk"]
EMAILS = {"queue.name": "emails"}
OK = {**EMAILS, "outcome": "success"}
#: The messaging semantic-convention attributes of every processing span of "emails".
PROCESS = {
    "messaging.destination.name": "emails",
    "messaging.operation.type": "process",
    "messaging.operation.name": "process",
}


@pytest.fixture
def wall(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The clock ``enqueued_at`` values are compared with (``time.time()`` in the queue hook)."""
    fake = FakeClock(1_700_000_000.0)
    monkeypatch.setattr(queue_module, "time", fake)
    return fake


@pytest.fixture
def emails() -> Iterator[queue_module.Queue]:
    """The "emails" queue, with no observer or capacity left behind for other tests."""
    hook = op.queue("emails")
    yield hook
    hook.observe_depth(None)
    hook.observe_dead_letter_depth(None)
    hook.set_capacity(None)


def work(scope: TimedScope, clock: FakeClock, seconds: float, error: Exception | None = None) -> None:
    with scope:
        clock.advance(seconds)
        if error is not None:
            raise error


def test_jobs_enqueued_processed_by_outcome_and_timed(
    capture: Capture, clock: FakeClock, emails: queue_module.Queue
) -> None:
    emails.enqueued(3)
    with emails.processing():
        clock.advance(0.0625)
        assert capture.value("queue.jobs.in_progress", EMAILS) == 1
    work(emails.processing(), clock, 0.5)
    with pytest.raises(KeyError):
        work(emails.processing(), clock, 2.0, KeyError("boom"))

    assert capture.value("queue.jobs.enqueued", EMAILS) == 3
    assert capture.value("queue.jobs.processed", OK) == 2
    failure = {**EMAILS, "outcome": "failure", "error.type": "KeyError"}
    assert capture.value("queue.jobs.processed", failure) == 1
    ok = capture.point("queue.job.duration", OK)
    assert (ok.count, ok.sum, ok.bucket_counts) == (2, 0.5625, buckets(0.0625, 0.5))
    bad = capture.point("queue.job.duration", failure)
    assert (bad.count, bad.sum, bad.bucket_counts) == (1, 2.0, buckets(2.0))
    assert capture.value("queue.jobs.in_progress", EMAILS) == 0
    assert capture.value("queue.depth", EMAILS) == 0


def test_every_metric_has_a_unit_and_description(capture: Capture, emails: queue_module.Queue) -> None:
    emails.set_capacity(10)
    emails.enqueued(priority="high")
    emails.dequeued(enqueued_at=0.0)
    emails.retried()
    emails.dead_lettered(reason="poison")
    emails.replayed()
    with emails.worker(), emails.processing():
        pass
    units = {name: metric.unit for name, metric in capture.metrics().items() if name.startswith("queue.")}
    assert units == {
        "queue.jobs.enqueued": "{job}",
        "queue.jobs.dequeued": "{job}",
        "queue.jobs.processed": "{job}",
        "queue.jobs.in_progress": "{job}",
        "queue.job.duration": "s",
        "queue.job.wait_time": "s",
        "queue.jobs.retried": "{job}",
        "queue.jobs.dead_lettered": "{job}",
        "queue.jobs.replayed": "{job}",
        "queue.depth": "{job}",
        "queue.dead_letter.depth": "{job}",
        "queue.utilization": "1",
        "queue.workers": "{worker}",
    }
    assert all(capture.metric(name).description for name in units)


def test_wait_time_from_the_enqueue_time(
    capture: Capture, wall: FakeClock, emails: queue_module.Queue
) -> None:
    with emails.processing(enqueued_at=wall.now - 0.25):
        pass
    emails.dequeued(enqueued_at=wall.now - 3.0)
    with emails.processing(enqueued_at=wall.now + 5.0):  # a producer's clock ahead of ours: 0, not < 0
        pass
    wait = capture.point("queue.job.wait_time", EMAILS)
    assert (wait.count, wait.sum, wait.min, wait.max) == (3, 3.25, 0.0, 3.0)
    assert wait.bucket_counts == buckets(0.25, 3.0, 0.0)


def test_priority_is_an_attribute_of_job_metrics(capture: Capture, clock: FakeClock, wall: FakeClock) -> None:
    q = op.queue("emails")
    q.enqueued(2, priority="high")
    q.enqueued(priority=1)
    work(q.processing(priority="high", enqueued_at=wall.now - 0.5), clock, 0.25)
    work(q.processing(priority=1), clock, 0.125)
    q.dequeued(priority="high")

    high, one = {**EMAILS, "priority": "high"}, {**EMAILS, "priority": "1"}
    assert capture.value("queue.jobs.enqueued", high) == 2
    assert capture.value("queue.jobs.enqueued", one) == 1
    assert capture.value("queue.jobs.processed", {**high, "outcome": "success"}) == 1
    assert capture.point("queue.job.duration", {**one, "outcome": "success"}).sum == 0.125
    assert capture.point("queue.job.wait_time", high).sum == 0.5
    assert capture.value("queue.jobs.in_progress", high) == 0
    assert capture.value("queue.jobs.dequeued", high) == 1
    (span, _) = capture.spans("queue.process emails")
    assert dict(span.attributes or {}) == {**high, **PROCESS}


def test_tracked_depth_follows_enqueue_retry_replay_dequeue_and_start(
    capture: Capture, emails: queue_module.Queue
) -> None:
    with emails.processing():  # before anything was enqueued: not counted, no depth reported
        pass
    emails.dequeued()
    emails.replayed(0)
    assert "queue.depth" not in capture.metrics()
    emails.enqueued(5)
    assert capture.value("queue.depth", EMAILS) == 5
    with emails.processing():
        pass
    emails.dequeued(3)
    assert capture.value("queue.depth", EMAILS) == 1
    emails.retried()  # requeued: +1
    emails.retried(2, requeued=False)  # retried in place: no change
    assert capture.value("queue.depth", EMAILS) == 2
    assert capture.value("queue.jobs.retried", EMAILS) == 3
    emails.dequeued(10)
    assert capture.value("queue.depth", EMAILS) == 0  # never below zero


def test_dead_letters_by_reason_depth_and_replays(capture: Capture, emails: queue_module.Queue) -> None:
    emails.dead_lettered(reason="max_attempts")
    emails.dead_lettered(2, reason="poison")
    emails.dead_lettered()
    assert capture.value("queue.dead_letter.depth", EMAILS) == 4
    emails.replayed(3)
    assert capture.value("queue.jobs.dead_lettered", {**EMAILS, "reason": "max_attempts"}) == 1
    assert capture.value("queue.jobs.dead_lettered", {**EMAILS, "reason": "poison"}) == 2
    assert capture.value("queue.jobs.dead_lettered", {**EMAILS, "reason": "unknown"}) == 1
    assert capture.value("queue.jobs.replayed", EMAILS) == 3
    assert capture.value("queue.dead_letter.depth", EMAILS) == 1
    assert capture.value("queue.depth", EMAILS) == 3  # replayed jobs are back on the queue


def test_too_many_reasons_or_priorities_fold_into_other(
    capture: Capture, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(queue_module, "_MAX_VALUES", 2)
    q = op.queue("noisy")
    with caplog.at_level(logging.WARNING, logger="otel_pipeline"):
        for reason in ["a", "b", "c", "d", "a"]:
            q.dead_lettered(reason=reason)
        for priority in ["p1", "p2", "p3", "p4"]:
            q.enqueued(priority=priority)
    reasons = {p.attributes["reason"]: p.value for p in capture.points("queue.jobs.dead_lettered")}
    assert reasons == {"a": 2, "b": 1, "_OTHER": 2}
    priorities = {p.attributes.get("priority"): p.value for p in capture.points("queue.jobs.enqueued")}
    assert priorities == {"p1": 1, "p2": 1, "_OTHER": 2}
    noisy = "queue 'noisy' has more than 2 "
    assert [r.getMessage() for r in caplog.records] == [
        noisy + "dead-letter reasons; the rest are recorded as _OTHER",
        noisy + "priorities; the rest are recorded as _OTHER",
    ]


def test_observed_depths_take_precedence(
    capture: Capture, emails: queue_module.Queue, caplog: pytest.LogCaptureFixture
) -> None:
    backlog = [1, 2, 3, 4, 5, 6, 7]
    emails.enqueued(2)
    emails.observe_depth(lambda: len(backlog))
    emails.observe_dead_letter_depth(lambda: 2)
    assert capture.value("queue.depth", EMAILS) == 7
    assert capture.value("queue.dead_letter.depth", EMAILS) == 2
    emails.observe_depth(lambda: None)  # no value now
    assert "queue.depth" not in capture.metrics()
    emails.observe_depth(None)  # tracked again
    assert capture.value("queue.depth", EMAILS) == 2

    def broken() -> int:
        raise OSError("broker unreachable")

    with caplog.at_level(logging.WARNING, logger="otel_pipeline"):
        emails.observe_depth(broken)
        capture.collect()
        capture.collect()
        emails.observe_dead_letter_depth(lambda: -1)
        capture.collect()
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "queue 'emails': the depth function raised; skipped",
        "queue 'emails': the dead-letter depth function returned -1, not a number >= 0; skipped",
    ]


def test_utilization_is_depth_over_capacity(capture: Capture, emails: queue_module.Queue) -> None:
    emails.enqueued(3)
    assert "queue.utilization" not in capture.metrics()  # no capacity given
    assert op.queue("emails", capacity=12) is emails
    assert emails.capacity == 12
    assert capture.value("queue.utilization", EMAILS) == 0.25
    emails.observe_depth(lambda: 6)
    assert capture.value("queue.utilization", EMAILS) == 0.5


def test_workers_active_and_idle(capture: Capture, emails: queue_module.Queue) -> None:
    idle, active = {**EMAILS, "state": "idle"}, {**EMAILS, "state": "active"}

    def workers() -> tuple[Any, Any]:
        return capture.value("queue.workers", idle), capture.value("queue.workers", active)

    with emails.worker():
        assert workers() == (1, 0)
        with emails.processing():
            assert workers() == (0, 1)
            with emails.processing():  # still one busy worker
                assert workers() == (0, 1)
            assert workers() == (0, 1)
        assert workers() == (1, 0)
        with emails.worker():
            assert workers() == (2, 0)
            with emails.processing():
                assert workers() == (1, 1)
        assert workers() == (1, 0)
    assert workers() == (0, 0)
    with emails.processing():  # outside a worker: workers untouched
        assert workers() == (0, 0)


async def test_async_workers_in_tasks(capture: Capture, emails: queue_module.Queue) -> None:
    jobs: asyncio.Queue[int] = asyncio.Queue()
    started = asyncio.Semaphore(0)
    release = asyncio.Event()

    def workers() -> tuple[Any, Any]:
        return tuple(
            capture.value("queue.workers", {**EMAILS, "state": state}) for state in ("idle", "active")
        )

    @emails.worker()
    async def consumer() -> None:
        while True:
            job = await jobs.get()
            if job < 0:
                return
            async with emails.processing(job_id=job):
                started.release()
                await release.wait()

    tasks = [asyncio.create_task(consumer()) for _ in range(3)]
    for job in (1, 2):
        await jobs.put(job)
    await started.acquire()
    await started.acquire()
    assert workers() == (1, 2)
    release.set()
    for _ in tasks:
        await jobs.put(-1)
    await asyncio.gather(*tasks)
    assert workers() == (0, 0)
    assert capture.value("queue.jobs.processed", OK) == 2
    job_ids = [str(dict(s.attributes or {})["queue.job.id"]) for s in capture.spans("queue.process emails")]
    assert sorted(job_ids) == ["1", "2"]


async def test_processing_decorates_and_async_with(capture: Capture, clock: FakeClock) -> None:
    q = op.queue("emails")

    @q.processing()
    def send(to: str) -> str:
        clock.advance(0.25)
        return to

    @q.processing()
    async def send_async(to: str) -> str:
        clock.advance(0.25)
        return to

    assert send("a") == "a"
    assert await send_async("b") == "b"
    async with q.processing():
        clock.advance(0.25)
    assert capture.point("queue.job.duration", OK).sum == 0.75


def test_spans_with_job_id_status_and_parent(capture: Capture) -> None:
    tracer = capture.pipeline.tracer_provider.get_tracer("test")  # type: ignore[union-attr]
    with tracer.start_as_current_span("poll") as parent:
        with op.queue("emails").processing(job_id="job-1"):
            pass
        with pytest.raises(ValueError, match="bad"), op.queue("emails").processing(job_id=2):
            raise ValueError("bad")
    ok, failed = capture.spans("queue.process emails")
    assert dict(ok.attributes or {}) == {**EMAILS, **PROCESS, "queue.job.id": "job-1"}
    assert dict(failed.attributes or {}) == {
        **EMAILS,
        **PROCESS,
        "queue.job.id": "2",
        "error.type": "ValueError",
    }
    assert ok.kind is failed.kind is SpanKind.CONSUMER
    assert ok.status.status_code is StatusCode.UNSET
    assert failed.status.status_code is StatusCode.ERROR
    assert [e.name for e in failed.events] == ["exception"]
    for span in (ok, failed):
        assert span.parent is not None
        assert span.parent.span_id == parent.get_span_context().span_id


def test_many_threads_count_exactly(capture: Capture, emails: queue_module.Queue) -> None:
    def producer_consumer() -> None:
        with emails.worker():
            for _ in range(300):
                emails.enqueued()
                with emails.processing():
                    pass

    threads = [threading.Thread(target=producer_consumer) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert capture.value("queue.jobs.enqueued", EMAILS) == 1800
    assert capture.value("queue.jobs.processed", OK) == 1800
    assert capture.value("queue.jobs.in_progress", EMAILS) == 0
    assert capture.value("queue.depth", EMAILS) == 0
    assert capture.value("queue.workers", {**EMAILS, "state": "idle"}) == 0
    assert capture.value("queue.workers", {**EMAILS, "state": "active"}) == 0


def test_tracked_state_survives_a_rebind_to_the_same_pipeline(
    capture: Capture, emails: queue_module.Queue
) -> None:
    emails.enqueued(4)
    runtime.install(capture.pipeline)  # a new generation, the same pipeline
    emails.enqueued(1)
    assert capture.value("queue.depth", EMAILS) == 5
    assert capture.value("queue.jobs.enqueued", EMAILS) == 5


def test_same_name_same_hook_and_series_bound_once(capture: Capture) -> None:
    assert op.queue("emails") is op.queue("emails")
    first, second = op.queue("emails").processing(), op.queue("emails").processing()
    high = op.queue("emails").processing(priority="high")
    assert isinstance(first, Timed)
    assert isinstance(second, Timed)
    assert isinstance(high, Timed)
    assert first._op is second._op
    assert high._op is not first._op


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: op.queue(""), ValueError, "queue name=''"),
        (lambda: op.queue("q").observe_depth(5), TypeError, "observe_depth\\(\\) needs a function"),  # type: ignore[arg-type]
        (lambda: op.queue("q").observe_dead_letter_depth("x"), TypeError, "needs a function"),  # type: ignore[arg-type]
        (lambda: op.queue("q", capacity=0), ValueError, "capacity=0 is not valid"),
        (lambda: op.queue("q").set_capacity(-3), ValueError, "capacity=-3"),
    ],
)
@pytest.mark.parametrize("configured", [True, False])
def test_bad_configuration_fails_at_the_call(
    call: Any, error: type[Exception], message: str, configured: bool
) -> None:
    if configured:
        with Capture(), pytest.raises(error, match=message):
            call()
    else:
        with pytest.raises(error, match=message):
            call()


def _process(q: queue_module.Queue, **options: Any) -> None:
    with q.processing(**options):
        pass


_DONE = {
    key("queue.jobs.processed", queue__name="q", outcome="success"): 1,
    key("queue.job.duration", queue__name="q", outcome="success"): 1,
}
_DONE_INVALID = {
    key("queue.jobs.processed", queue__name="q", priority=INVALID, outcome="success"): 1,
    key("queue.job.duration", queue__name="q", priority=INVALID, outcome="success"): 1,
}
_DEPTH = key("queue.depth", queue__name="q")
_NOTHING = "; nothing is recorded for this call"
_COUNT = "count must be a number >= 0 (an int or float, finite, at most 2**53 = 9007199254740992)"
#: Record-time calls with a bad argument: the call, what it records (per call), the warning.
DROPPED: dict[str, tuple[Callable[[queue_module.Queue], Any], dict[Key, float], str, str]] = {
    "enqueued(-1)": (lambda q: q.enqueued(-1), {}, "enqueued(count=-1)", "negative"),
    "enqueued('2')": (lambda q: q.enqueued("2"), {}, "enqueued(count='2')", "wrong type"),  # type: ignore[arg-type]
    "enqueued(10**400)": (
        lambda q: q.enqueued(10**400),
        {},
        "enqueued(count=<int of 1329 bits>)",
        "too large",
    ),
    "enqueued(True)": (lambda q: q.enqueued(True), {}, "enqueued(count=True)", "wrong type"),
    "dequeued(inf)": (lambda q: q.dequeued(float("inf")), {}, "dequeued(count=inf)", "not finite"),  # type: ignore[arg-type]
    "retried(-2)": (lambda q: q.retried(-2), {}, "retried(count=-2)", "negative"),
    "dead_lettered(2**53+1)": (
        lambda q: q.dead_lettered(2**53 + 1),
        {},
        "dead_lettered(count=9007199254740993)",
        "too large",
    ),
    "replayed(nan)": (lambda q: q.replayed(float("nan")), {}, "replayed(count=nan)", "not finite"),  # type: ignore[arg-type]
    "enqueued(priority=True)": (
        lambda q: q.enqueued(priority=True),
        {key("queue.jobs.enqueued", queue__name="q", priority=INVALID): 1, _DEPTH: 1},
        "enqueued(priority=True)",
        "wrong type",
    ),
    "enqueued(priority='')": (
        lambda q: q.enqueued(priority=""),
        {key("queue.jobs.enqueued", queue__name="q", priority=INVALID): 1, _DEPTH: 1},
        "enqueued(priority='')",
        "empty or too long",
    ),
    "dequeued(enqueued_at=-5)": (
        lambda q: q.dequeued(enqueued_at=-5),
        {key("queue.jobs.dequeued", queue__name="q"): 1, _DEPTH: -1},
        "dequeued(enqueued_at=-5)",
        "negative",
    ),
    "dequeued(enqueued_at=10**400)": (
        lambda q: q.dequeued(enqueued_at=10**400),
        {key("queue.jobs.dequeued", queue__name="q"): 1, _DEPTH: -1},
        "dequeued(enqueued_at=<int of 1329 bits>)",
        "too large",
    ),
    "processing(enqueued_at='now')": (
        lambda q: _process(q, enqueued_at="now"),
        {**_DONE, _DEPTH: -1},
        "processing(enqueued_at='now')",
        "wrong type",
    ),
    "processing(enqueued_at=nan)": (
        lambda q: _process(q, enqueued_at=float("nan")),
        {**_DONE, _DEPTH: -1},
        "processing(enqueued_at=nan)",
        "not finite",
    ),
    "processing(priority=1.5)": (
        lambda q: _process(q, priority=1.5),
        {**_DONE_INVALID, _DEPTH: -1},
        "processing(priority=1.5)",
        "wrong type",
    ),
    "processing(priority=10**400)": (
        lambda q: _process(q, priority=10**400),
        {**_DONE_INVALID, _DEPTH: -1},
        "processing(priority=<int of 1329 bits>)",
        "empty or too long",
    ),
    "processing(job_id=[1])": (
        lambda q: _process(q, job_id=[1]),
        {**_DONE, _DEPTH: -1},
        "processing(job_id=[1])",
        "wrong type",
    ),
    "retried(requeued=1)": (
        lambda q: q.retried(requeued=1),  # type: ignore[arg-type]
        {key("queue.jobs.retried", queue__name="q"): 1},
        "retried(requeued=1)",
        "wrong type",
    ),
    "dead_lettered(reason='')": (
        lambda q: q.dead_lettered(reason=""),
        {
            key("queue.jobs.dead_lettered", queue__name="q", reason=INVALID): 1,
            key("queue.dead_letter.depth", queue__name="q"): 1,
        },
        "dead_lettered(reason='')",
        "empty or too long",
    ),
    "dead_lettered(reason=5)": (
        lambda q: q.dead_lettered(reason=5),  # type: ignore[arg-type]
        {
            key("queue.jobs.dead_lettered", queue__name="q", reason=INVALID): 1,
            key("queue.dead_letter.depth", queue__name="q"): 1,
        },
        "dead_lettered(reason=5)",
        "wrong type",
    ),
}
#: What the warning says is done instead, by argument.
_OUTCOMES = {
    "count": _COUNT + _NOTHING,
    "priority": "recorded as '_INVALID'",
    "reason": "recorded as '_INVALID'",
    "enqueued_at": "; recorded without a wait time",
    "job_id": "job_id must be a str or an int; left off the span",
    "requeued": "requeued must be True or False; the retry is counted, the depth left as it is",
}


@pytest.mark.parametrize("row", DROPPED.values(), ids=DROPPED.keys())
def test_a_bad_argument_at_record_time_is_dropped_with_one_warning(
    capture: Capture, caplog: pytest.LogCaptureFixture, wall: FakeClock, row: Any
) -> None:
    call, changes, text, problem = row
    q = op.queue("q")
    q.enqueued(2)
    q.dead_lettered(reason="max_attempts")
    argument = text[text.index("(") + 1 : text.index("=")]
    assert_records(
        capture, caplog, lambda: call(q), changes, message("queue", "q", text, problem), _OUTCOMES[argument]
    )
    q.enqueued(3)  # and the queue goes on recording
    assert capture.value("queue.jobs.enqueued", {"queue.name": "q"}) == 5


@pytest.mark.parametrize("row", DROPPED.values(), ids=DROPPED.keys())
def test_a_bad_argument_never_raises_when_not_configured_either(
    caplog: pytest.LogCaptureFixture, row: Any
) -> None:
    call, _, text, problem = row
    assert_records(None, caplog, lambda: call(op.queue("q")), {}, message("queue", "q", text, problem))


def test_a_bad_job_id_is_left_off_the_span_and_the_job_still_runs(capture: Capture) -> None:
    ran = []
    with op.queue("emails").processing(job_id=1.5, enqueued_at=math.inf, priority=[]):  # type: ignore[arg-type]
        ran.append(True)
    assert ran == [True]
    (span,) = capture.spans("queue.process emails")
    messaging = {"messaging.destination.name": "emails", "messaging.operation.name": "process"}
    messaging["messaging.operation.type"] = "process"
    assert dict(span.attributes or {}) == {**EMAILS, "priority": INVALID, **messaging}
    assert capture.value("queue.jobs.processed", {**EMAILS, "priority": INVALID, "outcome": "success"}) == 1
    assert "queue.job.wait_time" not in capture.metrics()


def test_one_warning_per_method_and_problem_whatever_the_queue_and_value(
    capture: Capture, caplog: pytest.LogCaptureFixture
) -> None:
    seen = len(errors._seen)
    with caplog.at_level(logging.WARNING, logger="otel_pipeline"):
        for index in range(100_000):
            q = op.queue(f"q-{index % 400}")  # 400 names, each given 250 bad counts
            if index % 2:
                q.enqueued(-index)  # negative: one warning
            else:
                q.enqueued(float("nan"))  # type: ignore[arg-type]  # not finite: one more
            if index % 1_000 == 999:
                q.retried(-1)  # another method: one more
    assert len(errors._seen) - seen == 3  # what is remembered does not grow with names or values
    said = warnings(caplog)
    end = "; nothing is recorded for this call (said once per queue method and problem)"
    assert said == [
        "queue 'q-0': enqueued(count=nan) is not valid (not finite): " + _COUNT + end,
        "queue 'q-1': enqueued(count=-1) is not valid (negative): " + _COUNT + end,
        "queue 'q-199': retried(count=-1) is not valid (negative): " + _COUNT + end,
    ]
    assert "queue.jobs.enqueued" not in capture.metrics()


async def test_not_configured_is_a_noop_and_decorations_record_once_configured() -> None:
    q = op.queue("emails")

    @q.processing(priority="high")
    def send() -> str:
        return "sent"

    @q.worker()
    async def loop() -> str:
        return "done"

    q.enqueued(2, priority="high")
    q.dequeued(enqueued_at=0.0)
    q.retried()
    q.dead_lettered(reason="x")
    q.replayed()
    with q.processing(enqueued_at=0.0, job_id="j"):
        pass
    assert send() == "sent"
    assert await loop() == "done"
    with Capture() as capture:
        assert send() == "sent"
        assert (
            capture.value("queue.jobs.processed", {**EMAILS, "priority": "high", "outcome": "success"}) == 1
        )
        assert "queue.depth" not in capture.metrics()


@pytest.mark.parametrize("mode", MODES)
def test_a_depth_observed_before_configure_is_reported_once_configured(mode: str) -> None:
    early = op.queue("observed-early")
    early.observe_depth(lambda: 4)
    early.observe_dead_letter_depth(lambda: 1)
    try:
        with Capture(instrument_mode=mode) as capture:  # nothing else touches the queue
            assert capture.value("queue.depth", {"queue.name": "observed-early"}) == 4
            assert capture.value("queue.dead_letter.depth", {"queue.name": "observed-early"}) == 1
    finally:
        early.observe_depth(None)
        early.observe_dead_letter_depth(None)


def test_a_float_or_int_subclass_count_takes_the_slow_check_and_is_counted(capture: Capture) -> None:
    class Count(int):
        pass

    q = op.queue("q")
    q.enqueued(2.0)  # type: ignore[arg-type]
    q.enqueued(Count(3))
    q.dequeued(0.5)  # type: ignore[arg-type]
    q.retried(1.0)  # type: ignore[arg-type]
    q.dead_lettered(Count(2))
    q.replayed(1.0)  # type: ignore[arg-type]
    name = {"queue.name": "q"}
    assert capture.value("queue.jobs.enqueued", name) == 5
    assert capture.value("queue.jobs.dequeued", name) == 0.5
    assert capture.value("queue.jobs.retried", name) == 1
    assert capture.value("queue.jobs.replayed", name) == 1
    assert capture.value("queue.dead_letter.depth", name) == 1
    assert capture.value("queue.depth", name) == 5 - 0.5 + 1 + 1
