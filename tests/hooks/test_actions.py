from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import threading
from typing import Any

import pytest
from opentelemetry.trace import StatusCode

import otel_pipeline as op
from otel_pipeline._internal import timed as timed_module
from otel_pipeline._internal.timed import TimedScope
from otel_pipeline._internal.validation import INVALID
from otel_pipeline.hooks import actions as actions_module
from otel_pipeline.hooks.actions import InstrumentedExecutor
from otel_pipeline.testing import Capture
from tests.hooks import FakeClock, buckets
from tests.support.dropped import assert_records, key, message

SEND = {"action.executor": "notifier", "action.name": "send_email"}
OK = {**SEND, "outcome": "success"}
TIMEOUT = {**SEND, "outcome": "timeout"}
SPAN = "actions.execute notifier send_email"


def failed(error: str) -> dict[str, str]:
    return {**SEND, "outcome": "failure", "error.type": error}


def run_for(clock: FakeClock, seconds: float, error: Exception | None = None) -> str:
    clock.advance(seconds)
    if error is not None:
        raise error
    return "sent"


async def hang(
    scope: TimedScope, clock: FakeClock | None = None, seconds: float = 0.0, inner: TimedScope | None = None
) -> None:
    """Wait (for long) inside ``scope`` (and ``inner``), moving ``clock`` on by ``seconds`` first."""
    async with scope:
        if clock is not None:
            clock.advance(seconds)
        if inner is None:
            await asyncio.sleep(30)
        else:
            async with inner:
                await asyncio.sleep(30)


def test_sync_outcomes_success_failure_and_timeout(capture: Capture, clock: FakeClock) -> None:
    notifier = op.actions("notifier")
    with notifier.track("send_email", timeout=1.0):
        run_for(clock, 0.25)
    with notifier.track("send_email", timeout=1.0):
        run_for(clock, 1.0)  # exactly at the timeout: still in time
    with pytest.raises(ConnectionError), notifier.track("send_email", timeout=1.0):
        run_for(clock, 0.5, ConnectionError("smtp down"))
    with notifier.track("send_email", timeout=1.0):
        run_for(clock, 3.0)  # ran past its timeout: a timeout, even though it returned
    with pytest.raises(ValueError, match="late"), notifier.track("send_email", timeout=1.0):
        run_for(clock, 5.0, ValueError("late and broken"))

    assert capture.value("actions.executed", OK) == 2
    assert capture.value("actions.executed", failed("ConnectionError")) == 1
    assert capture.value("actions.executed", TIMEOUT) == 2
    assert len(capture.points("actions.executed")) == 3
    ok = capture.point("actions.duration", OK)
    assert (ok.count, ok.sum, ok.bucket_counts) == (2, 1.25, buckets(0.25, 1.0))
    late = capture.point("actions.duration", TIMEOUT)
    assert (late.count, late.sum, late.min, late.max, late.bucket_counts) == (
        2,
        8.0,
        3.0,
        5.0,
        buckets(3.0, 5.0),
    )
    assert capture.point("actions.duration", failed("ConnectionError")).sum == 0.5


def test_metrics_are_described_with_units(capture: Capture) -> None:
    with op.actions("notifier").track("send_email"):
        pass
    metrics = capture.metrics()
    assert (metrics["actions.executed"].unit, metrics["actions.duration"].unit) == ("{action}", "s")
    assert metrics["actions.executed"].description
    assert metrics["actions.duration"].description


def test_without_timeout_a_long_action_is_a_success(capture: Capture, clock: FakeClock) -> None:
    with op.actions("notifier").track("send_email"):
        run_for(clock, 60.0)
    assert capture.value("actions.executed", OK) == 1


def test_spans_name_parent_status_and_timeout_attribute(capture: Capture, clock: FakeClock) -> None:
    tracer = capture.pipeline.tracer_provider.get_tracer("test")  # type: ignore[union-attr]
    with tracer.start_as_current_span("request") as parent:
        with op.actions("notifier").track("send_email", timeout=2):
            run_for(clock, 0.5)
        with op.actions("notifier").track("send_email", timeout=2):
            run_for(clock, 2.5)
        with pytest.raises(OSError, match="disk"), op.actions("notifier").track("send_email"):
            run_for(clock, 0.5, OSError("disk"))

    in_time, late, broken = capture.spans(SPAN)
    assert dict(in_time.attributes or {}) == {**SEND, "action.timeout": 2.0}
    assert in_time.status.status_code is StatusCode.UNSET
    assert late.status.status_code is StatusCode.ERROR
    assert late.status.description == "ran past its timeout of 2.0 s"
    assert list(late.events) == []
    assert dict(broken.attributes or {}) == {**SEND, "error.type": "OSError"}
    assert broken.status.status_code is StatusCode.ERROR
    assert [event.name for event in broken.events] == ["exception"]
    for span in (in_time, late, broken):
        assert span.parent is not None
        assert span.parent.span_id == parent.get_span_context().span_id


async def test_async_call_is_cancelled_at_its_timeout(capture: Capture) -> None:
    cancelled = []

    @op.actions("notifier").track("send_email", timeout=0.05)
    async def send() -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return "sent"

    with pytest.raises(
        TimeoutError, match=r"actions.execute notifier send_email: no result within its timeout"
    ):
        await send()
    assert cancelled == [True]
    assert capture.value("actions.executed", TIMEOUT) == 1
    assert capture.point("actions.duration", TIMEOUT).count == 1
    (span,) = capture.spans(SPAN)
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})["error.type"] == "TimeoutError"
    assert [event.name for event in span.events] == ["exception"]


async def test_async_with_is_cancelled_at_its_timeout_and_in_time_is_a_success(
    capture: Capture, clock: FakeClock
) -> None:
    with pytest.raises(TimeoutError):
        await hang(op.actions("notifier").track("send_email", timeout=0.05), clock, 0.0625)
    async with op.actions("notifier").track("send_email", timeout=10):
        clock.advance(0.125)
        await asyncio.sleep(0)
    late = capture.point("actions.duration", TIMEOUT)
    assert (late.count, late.sum) == (1, 0.0625)
    ok = capture.point("actions.duration", OK)
    assert (ok.count, ok.sum) == (1, 0.125)


async def test_the_callers_own_timeout_error_is_a_failure(capture: Capture) -> None:
    @op.actions("notifier").track("send_email", timeout=10)
    async def send() -> None:
        raise TimeoutError("the smtp client gave up")

    with pytest.raises(TimeoutError, match="smtp client"):
        await send()
    assert capture.value("actions.executed", failed("TimeoutError")) == 1


async def test_cancellation_from_outside_is_not_turned_into_a_timeout(capture: Capture) -> None:
    started = asyncio.Event()

    @op.actions("notifier").track("send_email", timeout=10)
    async def send() -> None:
        started.set()
        await asyncio.sleep(30)

    task = asyncio.create_task(send())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert capture.value("actions.executed", failed("CancelledError")) == 1


async def test_nested_timeouts_each_report_their_own(capture: Capture) -> None:
    notifier = op.actions("notifier")
    with pytest.raises(TimeoutError):
        await hang(notifier.track("outer", timeout=10), inner=notifier.track("inner", timeout=0.02))
    with pytest.raises(TimeoutError):
        await hang(notifier.track("outer", timeout=0.02), inner=notifier.track("inner"))

    def executed(action: str, outcome: dict[str, str]) -> Any:
        return capture.value(
            "actions.executed", {"action.executor": "notifier", "action.name": action, **outcome}
        )

    assert executed("inner", {"outcome": "timeout"}) == 1
    assert executed("outer", {"outcome": "failure", "error.type": "TimeoutError"}) == 1
    assert executed("inner", {"outcome": "failure", "error.type": "CancelledError"}) == 1
    assert executed("outer", {"outcome": "timeout"}) == 1


async def test_timeout_is_enforced_when_not_configured() -> None:
    @op.actions("notifier").track("send_email", timeout=0.02)
    async def send() -> None:
        await asyncio.sleep(30)

    @op.actions("notifier").track("send_email", timeout=5)
    async def quick() -> str:
        return "sent"

    with pytest.raises(TimeoutError):
        await send()
    with pytest.raises(TimeoutError):
        await hang(op.actions("notifier").track("send_email", timeout=0.02))
    assert await quick() == "sent"
    with Capture() as capture:
        with pytest.raises(TimeoutError):
            await send()
        assert capture.value("actions.executed", TIMEOUT) == 1


def test_a_sync_with_timeout_outside_asyncio_is_only_counted(capture: Capture, clock: FakeClock) -> None:
    @op.actions("notifier").track("send_email", timeout=0.5)
    def send() -> str:
        return run_for(clock, 0.75)

    assert send() == "sent"
    assert capture.value("actions.executed", TIMEOUT) == 1


class Mailer:
    """An executor: execute() plus state the wrapper must not hide."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.error = ConnectionError("smtp down")

    def execute(self, to: str, *, fail: bool = False) -> str:
        if fail:
            raise self.error
        self.sent.append(to)
        return f"mailed {to}"

    def pending(self) -> int:
        return 0


class AsyncMailer:
    async def execute(self, to: str) -> str:
        await asyncio.sleep(0)
        return f"mailed {to}"


def test_wrap_is_transparent_for_an_executor_object(capture: Capture) -> None:
    mailer = Mailer()
    wrapped = op.actions("notifier").wrap(mailer, action="send_email")
    assert isinstance(wrapped, InstrumentedExecutor)
    assert wrapped.execute("ada@example.com") == "mailed ada@example.com"
    with pytest.raises(ConnectionError) as raised:
        wrapped.execute("bob@example.com", fail=True)
    assert raised.value is mailer.error
    assert wrapped.sent == ["ada@example.com"]
    assert wrapped.pending() == 0
    assert wrapped.__wrapped__ is mailer
    assert repr(wrapped) == f"<InstrumentedExecutor {mailer!r}>"
    assert copy.copy(wrapped).execute("cy@example.com") == "mailed cy@example.com"
    with pytest.raises(AttributeError):
        _ = wrapped.missing
    assert capture.value("actions.executed", OK) == 2
    assert capture.value("actions.executed", failed("ConnectionError")) == 1
    assert len(capture.spans(SPAN)) == 3


async def test_wrap_awaits_an_async_execute_and_applies_the_timeout(capture: Capture) -> None:
    wrapped = op.actions("notifier").wrap(AsyncMailer(), timeout=5)
    assert await wrapped.execute("ada@example.com") == "mailed ada@example.com"
    attributes = {"action.executor": "notifier", "action.name": "AsyncMailer", "outcome": "success"}
    assert capture.value("actions.executed", attributes) == 1

    class Slow:
        async def execute(self) -> None:
            await asyncio.sleep(30)

    slow = op.actions("notifier").wrap(Slow(), action="slow", timeout=0.02)
    with pytest.raises(TimeoutError):
        await slow.execute()
    attributes = {"action.executor": "notifier", "action.name": "slow", "outcome": "timeout"}
    assert capture.value("actions.executed", attributes) == 1


async def test_wrap_a_callable(capture: Capture) -> None:
    def send_email(to: str) -> str:
        return f"sent to {to}"

    async def send_sms(to: str) -> str:
        return f"texted {to}"

    wrapped = op.actions("notifier").wrap(send_email)
    wrapped_async = op.actions("notifier").wrap(send_sms)
    assert wrapped("ada") == "sent to ada"
    assert wrapped.__name__ == "send_email"
    assert wrapped.__wrapped__ is send_email  # type: ignore[attr-defined]
    assert await wrapped_async("ada") == "texted ada"
    assert capture.value("actions.executed", OK) == 1
    sms = {"action.executor": "notifier", "action.name": "send_sms", "outcome": "success"}
    assert capture.value("actions.executed", sms) == 1


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: op.actions(""), ValueError, "actions name=''"),
        (lambda: op.actions("n").track("a", timeout=0), ValueError, "timeout=0 is not valid"),
        (lambda: op.actions("n").track("a", timeout=-1.5), ValueError, r"timeout=-1.5 is not valid"),
        (lambda: op.actions("n").track("a", timeout=float("nan")), ValueError, "timeout=nan"),
        (lambda: op.actions("n").track("a", timeout=float("inf")), ValueError, "timeout=inf"),
        (lambda: op.actions("n").track("a", timeout=True), TypeError, "got bool True"),
        (lambda: op.actions("n").track("a", timeout="5"), TypeError, "got str '5'"),  # type: ignore[arg-type]
        (lambda: op.actions("n").track("a", timeout=[1]), TypeError, r"got list \[1\]"),  # type: ignore[arg-type]
        (lambda: op.actions("n").wrap(42), TypeError, "execute\\(\\) method or a callable, got int 42"),
        (lambda: op.actions("n").wrap(Mailer(), timeout=0), ValueError, "timeout=0"),
        (lambda: op.actions("n").wrap(Mailer(), action=""), ValueError, "action=''"),
    ],
)
@pytest.mark.parametrize("configured", [True, False])
def test_bad_arguments_fail_at_the_call(
    call: Any, error: type[Exception], message: str, configured: bool
) -> None:
    if configured:
        with Capture(), pytest.raises(error, match=message):
            call()
    else:
        with pytest.raises(error, match=message):
            call()


def test_same_name_same_hook_and_operations_reused(capture: Capture) -> None:
    notifier = op.actions("notifier")
    assert notifier is op.actions("notifier")
    first, again = notifier.track("send_email", timeout=5), notifier.track("send_email", timeout=5.0)
    other = notifier.track("send_email", timeout=1)
    assert isinstance(first, timed_module.Timed)
    assert isinstance(again, timed_module.Timed)
    assert isinstance(other, timed_module.Timed)
    assert first._op is again._op
    assert other._op is not first._op


def test_many_threads_count_exactly(capture: Capture) -> None:
    @op.actions("notifier").track("send_email")
    def send(index: int) -> int:
        if index % 4 == 0:
            raise LookupError(index)
        return index

    def work() -> None:
        for index in range(400):
            with contextlib.suppress(LookupError):
                send(index)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert capture.value("actions.executed", OK) == 6 * 300
    assert capture.value("actions.executed", failed("LookupError")) == 6 * 100
    assert capture.point("actions.duration", OK).count == 6 * 300


async def _send_with_timeout() -> str:
    async with op.actions("notifier").track("send_email", timeout=1):
        return "sent"


def _drive(coroutine: Any) -> Any:
    """Run a coroutine that never waits by hand: no event loop, no task."""
    with pytest.raises(StopIteration) as stopped:
        coroutine.send(None)
    return stopped.value.value


def test_a_timeout_without_an_event_loop_is_not_enforced_and_logged_once(
    capture: Capture, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="otel_pipeline"):
        assert _drive(_send_with_timeout()) == "sent"
        assert _drive(_send_with_timeout()) == "sent"
    assert [r.getMessage() for r in caplog.records] == ["a timeout is only enforced inside an asyncio task"]
    assert capture.value("actions.executed", OK) == 2


async def test_a_timeout_in_a_loop_callback_is_not_enforced_and_logged(
    capture: Capture, caplog: pytest.LogCaptureFixture
) -> None:
    loop = asyncio.get_running_loop()
    in_callback: asyncio.Future[Any] = loop.create_future()
    with caplog.at_level(logging.WARNING, logger="otel_pipeline"):
        loop.call_soon(lambda: in_callback.set_result(_drive(_send_with_timeout())))  # a loop, no task
        assert await in_callback == "sent"
    assert [r.getMessage() for r in caplog.records] == ["a timeout is only enforced inside an asyncio task"]
    assert capture.value("actions.executed", OK) == 1


async def test_too_many_actions_warns_once_and_still_records(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(actions_module, "_MAX_ACTIONS", 1)
    many = op.actions("many")

    async def run(action: str) -> None:
        async with many.track(action, timeout=5):
            pass

    for action in ["a", "b", "b"]:  # not configured: timeout-only operations, past the cap unkept
        await run(action)
    with Capture() as capture, caplog.at_level(logging.WARNING, logger="otel_pipeline"):
        for action in ["a", "b", "c", "c"]:
            await run(action)
        executed = {p.attributes["action.name"]: p.value for p in capture.points("actions.executed")}
    assert executed == {"a": 1, "b": 1, "c": 2}
    assert [r.getMessage() for r in caplog.records] == [
        "actions 'many' has more than 1 actions; is an id used as action name?"
    ]


BAD_ACTIONS = {
    "empty": ("", "''", "empty or too long"),
    "int": (3, "3", "wrong type"),
    "too long": ("x" * 256, "'" + "x" * 196 + "...", "empty or too long"),
}
_SAID = "action must be a non-empty str of at most 255 characters; recorded as '_INVALID'"


def _act(action: Any, timeout: float | None, ran: list[int]) -> Any:
    def act() -> None:
        with op.actions("n").track(action, timeout=timeout):
            ran.append(1)

    return act


@pytest.mark.parametrize("timeout", [None, 5.0])
@pytest.mark.parametrize(("action", "text", "problem"), BAD_ACTIONS.values(), ids=BAD_ACTIONS.keys())
def test_a_bad_action_name_is_recorded_as_invalid_with_one_warning(
    capture: Capture,
    caplog: pytest.LogCaptureFixture,
    action: Any,
    text: str,
    problem: str,
    timeout: float | None,
) -> None:
    ran: list[int] = []
    done = {"action__executor": "n", "action__name": INVALID, "outcome": "success"}
    changes = {key("actions.executed", **done): 1, key("actions.duration", **done): 1}
    starts = message("actions", "n", f"track(action={text})", problem)
    assert_records(capture, caplog, _act(action, timeout, ran), changes, starts, _SAID)
    assert ran == [1, 1]
    (span, _) = capture.spans(f"actions.execute n {INVALID}")
    assert dict(span.attributes or {}).get("action.timeout") == timeout


@pytest.mark.parametrize("timeout", [None, 5.0])
@pytest.mark.parametrize(("action", "text", "problem"), BAD_ACTIONS.values(), ids=BAD_ACTIONS.keys())
def test_a_bad_action_name_never_raises_when_not_configured_either(
    caplog: pytest.LogCaptureFixture, action: Any, text: str, problem: str, timeout: float | None
) -> None:
    ran: list[int] = []
    starts = message("actions", "n", f"track(action={text})", problem)
    assert_records(None, caplog, _act(action, timeout, ran), {}, starts, _SAID)
    assert ran == [1, 1]
