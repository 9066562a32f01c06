from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.trace import StatusCode

import otel_pipeline as op
from otel_pipeline._internal.outcomes import OutcomeOperation
from otel_pipeline._internal.timed import Timed, TimedScope
from otel_pipeline._internal.validation import INVALID
from otel_pipeline.hooks import events as events_module
from otel_pipeline.testing import Capture
from tests.hooks import FakeClock, buckets
from tests.support.dropped import assert_records, key, message

ORDERS = {"event.source": "orders", "event.type": "order.created"}
OK = {**ORDERS, "outcome": "success"}


def fail(scope: TimedScope, clock: FakeClock, seconds: float, error: Exception) -> None:
    with scope:
        clock.advance(seconds)
        raise error


def test_counts_times_and_holds_in_flight_by_type_and_outcome(capture: Capture, clock: FakeClock) -> None:
    orders = op.events("orders")
    with orders.process("order.created"):
        clock.advance(0.0625)
        assert capture.value("events.in_flight", ORDERS) == 1
    with orders.process("order.created"):
        clock.advance(0.25)
    with pytest.raises(ValueError, match="bad order"):
        fail(orders.process("order.created"), clock, 3.0, ValueError("bad order"))
    with orders.process("order.paid"):
        clock.advance(0.5)

    assert capture.value("events.processed", OK) == 2
    failed = {**ORDERS, "outcome": "failure", "error.type": "ValueError"}
    assert capture.value("events.processed", failed) == 1
    paid = {"event.source": "orders", "event.type": "order.paid"}
    assert capture.value("events.processed", {**paid, "outcome": "success"}) == 1
    ok = capture.point("events.processing.duration", OK)
    assert (ok.count, ok.sum, ok.min, ok.max) == (2, 0.3125, 0.0625, 0.25)
    assert ok.bucket_counts == buckets(0.0625, 0.25)
    bad = capture.point("events.processing.duration", failed)
    assert (bad.count, bad.sum, bad.bucket_counts) == (1, 3.0, buckets(3.0))
    assert capture.value("events.in_flight", ORDERS) == 0
    assert capture.value("events.in_flight", paid) == 0
    assert len(capture.points("events.processed")) == 3


def test_metrics_are_described_with_units(capture: Capture) -> None:
    with op.events("orders").process("order.created"):
        pass
    units = {name: (m.unit, bool(m.description)) for name, m in capture.metrics().items()}
    assert units["events.processed"] == ("{event}", True)
    assert units["events.processing.duration"] == ("s", True)
    assert units["events.in_flight"] == ("{event}", True)


async def test_decorates_functions_and_coroutines_and_async_with(capture: Capture, clock: FakeClock) -> None:
    orders = op.events("orders")

    @orders.process("order.created")
    def handle(amount: int) -> int:
        clock.advance(0.125)
        return amount * 2

    @orders.process("order.created")
    async def handle_async(amount: int) -> int:
        clock.advance(0.125)
        return amount + 1

    @orders.process("order.created")
    async def broken() -> None:
        raise KeyError("missing")

    assert handle(21) == 42
    assert await handle_async(1) == 2
    with pytest.raises(KeyError):
        await broken()
    async with orders.process("order.created"):
        clock.advance(0.125)

    assert handle.__name__ == "handle"
    assert capture.value("events.processed", OK) == 3
    assert capture.point("events.processing.duration", OK).sum == 0.375
    failed = {**ORDERS, "outcome": "failure", "error.type": "KeyError"}
    assert capture.value("events.processed", failed) == 1


def test_a_span_per_event_with_id_status_and_parent(capture: Capture) -> None:
    tracer = capture.pipeline.tracer_provider.get_tracer("test")  # type: ignore[union-attr]
    with tracer.start_as_current_span("consume") as parent:
        with op.events("orders").process("order.created", event_id="o-17"):
            pass
        with pytest.raises(RuntimeError), op.events("orders").process("order.created", event_id=18):
            raise RuntimeError("boom")

    ok, failed = capture.spans("events.process orders order.created")
    assert dict(ok.attributes or {}) == {**ORDERS, "event.id": "o-17"}
    assert ok.parent is not None
    assert ok.parent.span_id == parent.get_span_context().span_id
    assert ok.status.status_code is StatusCode.UNSET
    assert dict(failed.attributes or {}) == {**ORDERS, "event.id": "18", "error.type": "RuntimeError"}
    assert failed.status.status_code is StatusCode.ERROR
    assert [event.name for event in failed.events] == ["exception"]
    assert failed.parent is not None
    assert failed.parent.span_id == parent.get_span_context().span_id


def test_spans_nest_user_spans_inside(capture: Capture) -> None:
    user_tracer = trace.get_tracer("user", tracer_provider=capture.pipeline.tracer_provider)
    with op.events("orders").process("order.created"), user_tracer.start_as_current_span("load"):
        pass
    (event_span,) = capture.spans("events.process orders order.created")
    (user_span,) = capture.spans("load")
    assert user_span.parent is not None
    assert user_span.parent.span_id == event_span.context.span_id


def test_same_source_same_hook_and_attributes_bound_once(capture: Capture) -> None:
    assert op.events("orders") is op.events("orders")
    first = op.events("orders").process("order.created")
    second = op.events("orders").process("order.created")
    other = op.events("orders").process("order.paid")
    assert isinstance(first, Timed)
    assert isinstance(second, Timed)
    assert isinstance(other, Timed)
    assert first._op is second._op
    assert other._op is not first._op


def test_many_threads_count_exactly(capture: Capture) -> None:
    orders = op.events("orders")

    def work() -> None:
        for _ in range(500):
            with orders.process("order.created"):
                pass

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert capture.value("events.processed", OK) == 4000
    assert capture.point("events.processing.duration", OK).count == 4000
    assert capture.value("events.in_flight", ORDERS) == 0


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: op.events(""), ValueError, "events name=''"),
        (lambda: op.events(7), TypeError, "events name must be a str, got int 7"),  # type: ignore[arg-type]
    ],
)
@pytest.mark.parametrize("configured", [True, False])
def test_bad_arguments_fail_at_the_call(
    call: object, error: type[Exception], message: str, configured: bool
) -> None:
    assert callable(call)
    if configured:
        with Capture(), pytest.raises(error, match=message):
            call()
    else:
        with pytest.raises(error, match=message):
            call()


async def test_not_configured_is_a_noop_and_decorations_record_once_configured() -> None:
    orders = op.events("orders")

    @orders.process("order.created")
    def handle() -> str:
        return "handled"

    @orders.process("order.created")
    async def handle_async() -> str:
        return "handled"

    with orders.process("order.created") as nothing:
        pass
    async with orders.process("order.created"):
        pass
    assert nothing.span_attributes is None
    assert handle() == "handled"
    with pytest.raises(ZeroDivisionError), orders.process("order.created"):
        _ = 1 / 0
    with Capture() as capture:
        assert handle() == "handled"
        assert await handle_async() == "handled"
        assert capture.value("events.processed", OK) == 2


@pytest.mark.contains_internal_errors
def test_a_recording_fault_never_reaches_the_caller(
    capture: Capture, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("internal")

    monkeypatch.setattr(OutcomeOperation, "end", broken)
    with caplog.at_level(logging.WARNING, logger="otel_pipeline"):
        with op.events("orders").process("order.created"):
            pass
        with pytest.raises(KeyError), op.events("orders").process("order.created"):
            raise KeyError("the caller's own")
    assert [r.getMessage() for r in caplog.records].count(
        "events.process orders order.created failed to record"
    ) == 1
    assert len(capture.spans("events.process orders order.created")) == 2  # ended all the same
    assert not trace.get_current_span().get_span_context().is_valid  # and no longer current


def test_too_many_types_warns_once_and_still_records(
    capture: Capture, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(events_module, "_MAX_TYPES", 2)
    source = op.events("many-types")
    with caplog.at_level(logging.WARNING, logger="otel_pipeline"):
        for event_type in ["a", "b", "c", "c", "d"]:
            with source.process(event_type):
                pass
    warnings = [r.getMessage() for r in caplog.records if "more than 2 event types" in r.getMessage()]
    assert len(warnings) == 1
    for event_type, count in [("a", 1), ("b", 1), ("c", 2), ("d", 1)]:
        attributes = {"event.source": "many-types", "event.type": event_type, "outcome": "success"}
        assert capture.value("events.processed", attributes) == count


_TYPE = "event_type must be a non-empty str of at most 255 characters; recorded as '_INVALID'"
#: process() given a bad argument: the event type it is recorded under, the warning.
DROPPED = {
    "event_type=''": (("",), {}, INVALID, "process(event_type='')", "empty or too long", _TYPE),
    "event_type=None": ((None,), {}, INVALID, "process(event_type=None)", "wrong type", _TYPE),
    "event_type=['x']": ((["x"],), {}, INVALID, "process(event_type=['x'])", "wrong type", _TYPE),
    "event_id=1.5": (
        ("order.created",),
        {"event_id": 1.5},
        "order.created",
        "process(event_id=1.5)",
        "wrong type",
        "event_id must be a str or an int; left off the span",
    ),
    "event_id=10**5000": (
        ("order.created",),
        {"event_id": 10**5000},
        "order.created",
        "process(event_id=<int of 16610 bits>)",
        "too large",
        "left off the span",
    ),
}


@pytest.mark.parametrize("row", DROPPED.values(), ids=DROPPED.keys())
def test_a_bad_argument_is_dropped_with_one_warning_and_the_event_still_runs(
    capture: Capture, caplog: pytest.LogCaptureFixture, row: Any
) -> None:
    args, options, recorded, text, problem, said = row
    ran: list[int] = []

    def handle() -> None:
        with op.events("orders").process(*args, **options):
            ran.append(1)

    with op.events("orders").process("order.created", event_id="o-0"):
        pass
    done = {"event.source": "orders", "event.type": recorded, "outcome": "success"}
    changes = {
        key("events.processed", **{k.replace(".", "__"): v for k, v in done.items()}): 1,
        key("events.processing.duration", **{k.replace(".", "__"): v for k, v in done.items()}): 1,
    }
    assert_records(capture, caplog, handle, changes, message("events", "orders", text, problem), said)
    assert ran == [1, 1]
    spans = capture.spans(f"events.process orders {recorded}")
    assert [dict(s.attributes or {}).get("event.id") for s in spans] == (
        ["o-0", None, None] if recorded == "order.created" else [None, None]
    )


@pytest.mark.parametrize("row", DROPPED.values(), ids=DROPPED.keys())
def test_a_bad_argument_never_raises_when_not_configured_either(
    caplog: pytest.LogCaptureFixture, row: Any
) -> None:
    args, options, _, text, problem, said = row
    ran: list[int] = []

    def handle() -> None:
        with op.events("orders").process(*args, **options):
            ran.append(1)

    assert_records(None, caplog, handle, {}, message("events", "orders", text, problem), said)
    assert ran == [1, 1]
