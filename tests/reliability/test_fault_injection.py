"""Faults injected into the package's internals never reach user code (issue 13's error boundary).

Each entry point of :data:`FAULT_ENTRIES` (every record-time entry point of the shared table in
``entry_points.py``, called with a benign value, plus the context managers, decorators,
integrations and observable callbacks that run the application's own code) is called while one
piece of the core raises :class:`Injected`: the series' ``add``/``record``, the tracer's span
start, ``propagate.inject``, the outcome recorder, ``Hook._current``, the check of an observed
value. For each fault that the entry point reaches:

* by default nothing escapes, the application's code still runs exactly once, and the fault is
  logged once, with its traceback, through the boundary (the same call again logs at DEBUG);
* the application's own exception leaves a ``with`` block or decorated function unchanged;
* in strict mode the same fault raises :class:`InternalError` from it (or, when something between
  swallowed the raise, is recorded for the test to fail on).

Every entry point the faults reach meets all three, for every fault that reaches it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import queue as stdlib_queue
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

import otel_pipeline as op
from otel_pipeline._internal import boundary, carrier, hook, outcomes, registry, series, spans
from otel_pipeline._internal.boundary import InternalError
from otel_pipeline._internal.timed import TimedScope
from otel_pipeline.testing import Capture
from tests.reliability.entry_points import ENTRIES, RECORD_TIME, benign_value


class Injected(Exception):
    """The fault injected into otel_pipeline's internals."""


class Mine(Exception):
    """The application's own exception."""


#: What raises Injected under each fault: (owner, attribute) pairs.
FAULTS: dict[str, list[tuple[Any, str]]] = {
    "series": [
        (series.CounterSeries, "add"),
        (series.UpDownCounterSeries, "add"),
        (series.HistogramSeries, "record"),
        (series, "finish_fused"),
        (outcomes, "finish_fused"),
    ],
    "span start": [(spans.HookTracer, "start")],
    "propagate.inject": [(propagate, "inject"), (carrier, "inject")],
    "outcomes": [
        (outcomes.OutcomeSeries, "begin"),
        (outcomes.OutcomeSeries, "end"),
        (outcomes.OutcomeSeries, "abandon"),
        (outcomes.OutcomeOperation, "begin"),
        (outcomes.OutcomeOperation, "end"),
    ],
    "Hook._current": [(hook.Hook, "_current")],
    "observed value": [(registry, "exportable")],
}


@dataclass(frozen=True)
class Entry:
    """An entry point, and how to call it with ``body`` (the application's code) where it runs."""

    call: Callable[[Callable[[], None]], None]
    #: True when ``body`` runs inside the entry point (a with block, a decorated function, a job).
    user_code: bool = False
    #: What the application does once before (registering an observer): not under the faults.
    setup: Callable[[], None] | None = None


def _recording(name: str) -> Entry:
    def call(body: Callable[[], None]) -> None:
        ENTRIES[name](benign_value(name))
        body()

    return Entry(call)


def _with(make: Callable[[], Any]) -> Entry:
    def call(body: Callable[[], None]) -> None:
        with make():
            body()

    return Entry(call, user_code=True)


def _async_with(make: Callable[[], Any]) -> Entry:
    async def run(body: Callable[[], None]) -> None:
        async with make():
            body()

    return Entry(lambda body: asyncio.run(run(body)), user_code=True)


def _decorated(make: Callable[[], TimedScope]) -> Entry:
    def call(body: Callable[[], None]) -> None:
        def job() -> str:
            body()
            return "done"

        assert make()(job)() == "done"

    return Entry(call, user_code=True)


def _target_result(body: Callable[[], None], ok: bool) -> None:
    target = op.health_target("db")
    target.success() if ok else target.failure()
    body()


def _http_request(body: Callable[[], None]) -> None:
    with op.http_client("api").request("GET", "https://api.internal/x") as request:
        headers = dict(request.headers)  # what the application sends
        body()
        request.status_code = 200 if headers is not None else 500


def _pipeline_run(body: Callable[[], None]) -> None:
    with op.pipeline("nightly") as run, run.stage("load") as stage:
        body()
        stage.processed(3)


def _executor(body: Callable[[], None]) -> None:
    with ThreadPoolExecutor(max_workers=1) as pool:
        op.instrument_executor(pool, "resize")
        try:
            pool.submit(body).result()
        finally:
            op.uninstrument_executor(pool)


def _stdlib_queue(body: Callable[[], None]) -> None:
    jobs: stdlib_queue.Queue[int] = stdlib_queue.Queue()
    op.instrument_queue(jobs, "jobs")
    try:
        jobs.put(1)
        assert jobs.get() == 1
        body()
    finally:
        op.uninstrument_queue(jobs)


def _celery(body: Callable[[], None]) -> None:
    celery = pytest.importorskip("celery")
    app = celery.Celery("shop", broker="memory://", set_as_current=False)

    def work() -> None:
        pass

    task = app.task(name="shop.work", shared=False)(work)
    op.instrument_celery(app)
    try:
        headers: dict[str, Any] = {"id": "t-1", "task": "shop.work"}
        celery.signals.before_task_publish.send(
            sender="shop.work", headers=headers, routing_key="celery", properties={}
        )
        celery.signals.task_prerun.send(sender=task, task_id="t-1", task=task, args=(), kwargs={})
        body()
        celery.signals.task_postrun.send(sender=task, task_id="t-1", task=task, state="SUCCESS")
    finally:
        op.uninstrument_celery()


def _observers() -> None:
    op.queue("observed").observe_depth(lambda: 3)
    op.cache("observed").observe_size(entries=lambda: 5)
    op.connection_pool("observed").observe(idle=lambda: 2)


def _collect(body: Callable[[], None]) -> None:
    op.configure().collect()
    body()


FAULT_ENTRIES: dict[str, Entry] = {
    **{name: _recording(name) for name in RECORD_TIME},
    "with queue.processing()": _with(lambda: op.queue("q").processing()),
    "with queue.processing(carrier)": _with(lambda: op.queue("q").processing(carrier={})),
    "with queue.processing(carriers)": _with(lambda: op.queue("q").processing(carriers=[{}, {}])),
    "async with queue.processing()": _async_with(lambda: op.queue("q").processing()),
    "@queue.processing()": _decorated(lambda: op.queue("q").processing()),
    "with queue.worker()": _with(lambda: op.queue("q").worker()),
    "with events.process()": _with(lambda: op.events("orders").process("order.created")),
    "@events.process()": _decorated(lambda: op.events("orders").process("order.created")),
    "with actions.track()": _with(lambda: op.actions("mailer").track("send")),
    "async with actions.track(timeout)": _async_with(lambda: op.actions("mailer").track("send", timeout=5)),
    "with checkpoint.save()": _with(lambda: op.checkpoint("offsets").save()),
    "with pool.waiting()": _with(lambda: op.connection_pool("db").waiting()),
    "with pool.connection()": _with(lambda: op.connection_pool("db").connection()),
    "@stage()": _decorated(lambda: op.stage("load")),
    "health_target.success()": Entry(functools.partial(_target_result, ok=True)),
    "health_target.failure()": Entry(functools.partial(_target_result, ok=False)),
    "with health_target.probe()": _with(lambda: op.health_target("db").probe()),
    "with refresh_job.running()": _with(lambda: op.refresh_job("prices").running()),
    "with pipeline() and run.stage()": Entry(_pipeline_run, user_code=True),
    "with http_client.request()": Entry(_http_request, user_code=True),
    "instrument_executor: a job": Entry(_executor, user_code=True),
    "instrument_queue: put and get": Entry(_stdlib_queue),
    "instrument_celery: signals": Entry(_celery),
    "observable callbacks at collection": Entry(_collect, setup=_observers),
}

#: Entry points that only hand a function of the application to otel_pipeline: no injected fault
#: is on their path when they are called (what calls the function later is not in the table yet).
NOT_REACHED = {
    "register_health_check(returns)",
    "register_collector(returns)",
    "monitor_resources(source returns)",
}


@contextmanager
def injected(fault: str) -> Iterator[list[int]]:
    """Every piece of ``fault`` raises :class:`Injected`; yields the count of raises."""
    raised = [0]

    def fail(*args: Any, **kwargs: Any) -> Any:
        raised[0] += 1
        raise Injected(fault)

    with pytest.MonkeyPatch.context() as patch:
        for owner, attribute in FAULTS[fault]:
            patch.setattr(owner, attribute, fail)
        yield raised


def _caused_by_injected(error: BaseException | None) -> bool:
    while error is not None:
        if isinstance(error, Injected):
            return True
        error = error.__cause__ or error.__context__
    return False


def _logged(records: list[logging.LogRecord], level: int) -> list[logging.LogRecord]:
    """The records of the boundary at ``level`` or above carrying the injected fault."""
    return [
        record
        for record in records
        if record.name == "otel_pipeline"
        and record.levelno >= level
        and record.exc_info is not None
        and _caused_by_injected(record.exc_info[1])
    ]


def _call(entry: Entry, body: Callable[[], None], left: list[str]) -> None:
    """``entry.call(body)``; a span it leaves current is noted in ``left``, and the context restored."""
    token = otel_context.attach(otel_context.get_current())
    try:
        entry.call(body)
    finally:
        span = trace.get_current_span()
        if span.get_span_context().is_valid:
            left.append(getattr(span, "name", repr(span)))
        otel_context.detach(token)


@dataclass
class Verdict:
    reached: bool = False
    problem: str = ""


def _check(name: str, entry: Entry, fault: str, caplog: pytest.LogCaptureFixture) -> Verdict:
    """Call ``entry`` under ``fault``: by default, with the application's exception, in strict mode."""
    verdict = Verdict()
    runs = [0]
    left: list[str] = []

    def body() -> None:
        runs[0] += 1

    boundary.reset()
    previous = boundary.set_strict(False)
    if entry.setup is not None:
        entry.setup()
    try:
        caplog.clear()
        with injected(fault) as raised:
            try:
                _call(entry, body, left)
                first = list(caplog.records)
                caplog.clear()
                _call(entry, body, left)
                _call(entry, body, left)
            except Exception as error:
                verdict.reached = raised[0] > 0
                verdict.problem = f"{type(error).__name__} escaped: {error!r}"
                return verdict
        verdict.reached = raised[0] > 0
        if not verdict.reached:
            return verdict
        assert runs[0] == 3, f"{name}: the application's code ran {runs[0]} times, not 3"
        logged_first = _logged(first, logging.ERROR)
        if not logged_first:
            verdict.problem = "contained out of the boundary (not logged with the fault)"
            return verdict
        assert _logged(caplog.records, logging.WARNING) == [], f"{name}/{fault}: logged more than once"
        if entry.user_code:
            mine = Mine("the application's own")

            def failing() -> None:
                raise mine

            with injected(fault), pytest.raises(Mine) as caught:
                _call(entry, failing, left)
            assert caught.value is mine, f"{name}/{fault}: the application's exception was replaced"
        # Fresh hooks, so that a call that records only on a change (record_state) records again.
        hook.forget_hooks()
        if entry.setup is not None:
            entry.setup()
        boundary.set_strict(True)
        boundary.take_faults()
        with injected(fault):
            try:
                _call(entry, body, left)
                escaped: BaseException | None = None
            except InternalError as error:
                escaped = error
        faults = boundary.take_faults()
        if escaped is None and not faults:
            verdict.problem = "strict mode did not see the fault"
            return verdict
        assert escaped is None or _caused_by_injected(escaped), f"{name}/{fault}: {escaped!r}"
        assert all(_caused_by_injected(found) for _, found in faults), faults
        if left:
            verdict.problem = f"left spans current: {sorted(set(left))}"
        return verdict
    finally:
        boundary.set_strict(previous)
        boundary.take_faults()


@pytest.fixture
def capture() -> Iterator[Capture]:
    with Capture(instrument_mode="core", trace_sample_rate=1.0) as captured:
        yield captured
    # What the table's entries register lives past the capture: later tests must not see it.
    for name in ("fuzz", "fuzz-t", "fuzz-c"):
        op.unregister_health_check(name)
    for name in ("fuzz", "fuzz-a"):
        op.unregister_collector(name)


@pytest.mark.contains_internal_errors
@pytest.mark.parametrize("name", FAULT_ENTRIES)
def test_no_injected_fault_reaches_user_code(
    capture: Capture, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    caplog.set_level(logging.DEBUG, logger="otel_pipeline")
    entry = FAULT_ENTRIES[name]
    verdicts = {fault: _check(name, entry, fault, caplog) for fault in FAULTS}
    reached = [fault for fault, verdict in verdicts.items() if verdict.reached]
    if name in NOT_REACHED:
        assert reached == [], f"{name} is reached by a fault now: remove it from NOT_REACHED"
        return
    assert reached, f"{name}: no injected fault is on its path; inject one that is"
    problems = {fault: v.problem for fault, v in verdicts.items() if v.reached and v.problem}
    assert problems == {}, f"{name}: {problems}"


def test_the_table_covers_every_record_time_entry_point() -> None:
    assert set(RECORD_TIME) <= set(FAULT_ENTRIES)
    assert set(FAULT_ENTRIES) >= NOT_REACHED
    assert len(FAULT_ENTRIES) == len(RECORD_TIME) + 24
