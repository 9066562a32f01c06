"""A job's trace across a queue through an explicit carrier; job types; the oldest job's age."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

import otel_pipeline as op
from otel_pipeline._internal import carrier as carrier_module
from otel_pipeline._internal.errors import reset_warnings
from otel_pipeline._internal.validation import INVALID
from otel_pipeline.hooks import queue as queue_module
from otel_pipeline.testing import Capture

EMAILS = {"queue.name": "emails"}
OK = {**EMAILS, "outcome": "success"}
SEND = {
    **EMAILS,
    "messaging.destination.name": "emails",
    "messaging.operation.type": "send",
    "messaging.operation.name": "send",
}
PROCESS = {
    **EMAILS,
    "messaging.destination.name": "emails",
    "messaging.operation.type": "process",
    "messaging.operation.name": "process",
}
UNSAMPLED_PARENT = SpanContext(0xAB, 0xCD, is_remote=True, trace_flags=TraceFlags(TraceFlags.DEFAULT))


@pytest.fixture
def traced() -> Iterator[Capture]:
    """Every span sampled (a root too), core instruments."""
    with Capture(trace_sample_rate=1.0) as capture:
        yield capture


def user_tracer(capture: Capture) -> trace.Tracer:
    assert capture.pipeline.tracer_provider is not None
    return capture.pipeline.tracer_provider.get_tracer("shop")


def traceparent(context: SpanContext) -> str:
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def produce(capture: Capture, **options: Any) -> tuple[dict[str, str], ReadableSpan, ReadableSpan]:
    """Enqueue one job inside a request span: (its headers, the request span, the send span)."""
    headers: dict[str, str] = {}
    with user_tracer(capture).start_as_current_span("request"):
        op.queue("emails").enqueued(carrier=headers, **options)
    request, send = capture.spans("request")[-1], capture.spans("queue.send emails")[-1]
    return headers, request, send


def parent_of(span: ReadableSpan) -> tuple[int, int] | None:
    return None if span.parent is None else (span.parent.trace_id, span.parent.span_id)


def ids(span: ReadableSpan) -> tuple[int, int]:
    return span.context.trace_id, span.context.span_id


# -- producer ------------------------------------------------------------------------------------


def test_enqueued_writes_a_send_span_into_the_carrier(traced: Capture) -> None:
    headers, request, send = produce(traced)
    assert headers == {"traceparent": traceparent(send.context)}
    assert send.kind is SpanKind.PRODUCER
    assert parent_of(send) == ids(request)
    assert dict(send.attributes or {}) == SEND
    assert traced.value("queue.jobs.enqueued", EMAILS) == 1
    assert traced.value("queue.depth", EMAILS) == 1


def test_a_send_span_with_no_request_is_a_root(traced: Capture) -> None:
    headers: dict[str, str] = {}
    op.queue("emails").set_system("redis")
    op.queue("emails").enqueued(3, priority="high", job_type="welcome", carrier=headers)
    (send,) = traced.spans("queue.send emails")
    assert send.parent is None
    assert headers == {"traceparent": traceparent(send.context)}
    assert dict(send.attributes or {}) == {
        **SEND,
        "priority": "high",
        "job.type": "welcome",
        "messaging.system": "redis",
    }
    assert traced.value("queue.jobs.enqueued", {**EMAILS, "priority": "high", "job.type": "welcome"}) == 3


def test_an_unsampled_parent_is_written_without_a_span() -> None:
    with Capture(trace_sample_rate=1.0) as capture:
        headers: dict[str, str] = {}
        with trace.use_span(NonRecordingSpan(UNSAMPLED_PARENT)):
            op.queue("emails").enqueued(carrier=headers)
        assert headers == {"traceparent": traceparent(UNSAMPLED_PARENT)}
        assert headers["traceparent"].endswith("-00")
        assert capture.spans() == []


def test_an_unsampled_root_is_written_so_that_the_consumer_stays_unsampled() -> None:
    headers: dict[str, str] = {}
    with Capture(trace_sample_rate=1e-12) as producer:  # the producer's root is (all but) never sampled
        op.queue("emails").enqueued(carrier=headers)
        assert producer.spans() == []
    trace_id = int(headers["traceparent"].split("-")[1], 16)
    assert headers["traceparent"].endswith("-00")
    assert trace_id != 0
    with Capture(trace_sample_rate=1.0) as consumer:  # would sample every root of its own
        with op.queue("emails").processing(carrier=headers):
            inside = trace.get_current_span().get_span_context()
            with user_tracer(consumer).start_as_current_span("send email") as child:
                assert not child.get_span_context().trace_flags.sampled
        assert (inside.trace_id, inside.trace_flags.sampled) == (trace_id, False)
        assert consumer.spans() == []
        assert consumer.value("queue.jobs.processed", OK) == 1
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_no_tracing_at_all_writes_nothing() -> None:
    with Capture(trace_sample_rate=0.0) as capture:
        headers: dict[str, str] = {}
        op.queue("emails").enqueued(carrier=headers)
        assert headers == {}
        assert capture.value("queue.jobs.enqueued", EMAILS) == 1


def test_a_carrier_that_cannot_be_written_is_not_raised(
    traced: Capture, caplog: pytest.LogCaptureFixture
) -> None:
    class ReadOnly(dict[str, str]):
        def __setitem__(self, key: str, value: str) -> None:
            raise PermissionError("read-only")

    op.queue("emails").enqueued(carrier=ReadOnly())
    assert traced.value("queue.jobs.enqueued", EMAILS) == 1
    assert len(traced.spans("queue.send emails")) == 1  # ended, not left open
    assert "could not write the trace context of queue.send emails" in caplog.text
    assert trace.get_current_span() is trace.INVALID_SPAN


# -- consumer ------------------------------------------------------------------------------------


def test_processing_is_a_child_of_the_producer(traced: Capture) -> None:
    headers, request, send = produce(traced)
    with (
        op.queue("emails").processing(carrier=headers, job_id="j-1"),
        user_tracer(traced).start_as_current_span("send email"),
    ):
        pass
    (process,) = traced.spans("queue.process emails")
    (inner,) = traced.spans("send email")
    assert process.kind is SpanKind.CONSUMER
    assert parent_of(process) == ids(send)
    assert process.parent is not None
    assert process.parent.is_remote
    assert process.context.trace_id == request.context.trace_id
    assert parent_of(inner) == ids(process)
    assert dict(process.attributes or {}) == {**PROCESS, "queue.job.id": "j-1"}
    assert list(process.links) == []
    assert traced.value("queue.jobs.processed", OK) == 1
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_the_carrier_wins_over_the_current_span(traced: Capture) -> None:
    headers, _, send = produce(traced)
    with user_tracer(traced).start_as_current_span("poll") as poll:
        with op.queue("emails").processing(carrier=headers):
            pass
        assert trace.get_current_span() is poll  # restored
    (process,) = traced.spans("queue.process emails")
    assert parent_of(process) == ids(send)


async def test_async_with_continues_the_trace(traced: Capture) -> None:
    headers, _, send = produce(traced)
    async with op.queue("emails").processing(carrier=headers):
        await asyncio.sleep(0)
    (process,) = traced.spans("queue.process emails")
    assert parent_of(process) == ids(send)


async def test_decorators_read_the_carrier_of_each_call(traced: Capture) -> None:
    q = op.queue("emails")

    @q.processing(carrier=lambda job: job["headers"], job_type="welcome")
    def handle(job: dict[str, Any]) -> str:
        return str(job["to"])

    @q.processing(carrier=lambda job: job["headers"])
    async def handle_async(job: dict[str, Any]) -> str:
        await asyncio.sleep(0)
        return str(job["to"])

    first, _, send_1 = produce(traced)
    second, _, send_2 = produce(traced)
    assert handle({"to": "ada", "headers": first}) == "ada"
    assert await handle_async({"to": "bob", "headers": second}) == "bob"
    assert handle({"to": "eve"}) == "eve"  # the carrier function raises KeyError: no carrier
    one, two, three = traced.spans("queue.process emails")
    assert parent_of(one) == ids(send_1)
    assert parent_of(two) == ids(send_2)
    assert three.parent is None
    assert dict(one.attributes or {})["job.type"] == "welcome"
    assert "job.type" not in dict(two.attributes or {})
    assert traced.value("queue.jobs.processed", {**OK, "job.type": "welcome"}) == 2
    assert traced.value("queue.jobs.processed", OK) == 1


def test_a_decorator_given_a_fixed_carrier_continues_it_each_call(traced: Capture) -> None:
    headers, _, send = produce(traced)

    @op.queue("emails").processing(carrier=headers)
    def handle() -> None:
        pass

    handle()
    handle()
    assert [parent_of(s) for s in traced.spans("queue.process emails")] == [ids(send)] * 2


def test_link_instead_of_parent(traced: Capture) -> None:
    headers, _, send = produce(traced)
    with (
        user_tracer(traced).start_as_current_span("poll") as poll,
        op.queue("emails").processing(carriers=[headers]),  # one job, linked
    ):
        pass
    (process,) = traced.spans("queue.process emails")
    assert parent_of(process) == (poll.get_span_context().trace_id, poll.get_span_context().span_id)
    assert [(link.context.trace_id, link.context.span_id) for link in process.links] == [ids(send)]
    assert process.context.trace_id != send.context.trace_id


@pytest.mark.parametrize("mode", ["core", "sdk"])
def test_a_batch_is_one_span_with_a_link_per_job_and_counts_each_job(mode: str) -> None:
    with Capture(trace_sample_rate=1.0, instrument_mode=mode) as capture:
        sends = []
        batch: list[Any] = []
        for _ in range(3):
            headers, _, send = produce(capture)
            batch.append(headers)
            sends.append(ids(send))
        batch.append({"traceparent": "not a traceparent"})  # a job without a context: no link
        q = op.queue("emails")
        with q.worker(), q.processing(carriers=batch):
            assert capture.value("queue.jobs.in_progress", EMAILS) == 4
            assert capture.value("queue.workers", {**EMAILS, "state": "active"}) == 1
        with pytest.raises(KeyError), q.processing(carriers=batch[:2]):
            raise KeyError("x")
        spans = capture.spans("queue.process emails")
        assert [[(link.context.trace_id, link.context.span_id) for link in s.links] for s in spans] == [
            sends,
            sends[:2],
        ]
        assert [s.parent for s in spans] == [None, None]
        assert capture.value("queue.jobs.processed", OK) == 4
        failed = {**EMAILS, "outcome": "failure", "error.type": "KeyError"}
        assert capture.value("queue.jobs.processed", failed) == 2
        assert capture.point("queue.job.duration", OK).count == 4
        assert capture.value("queue.jobs.in_progress", EMAILS) == 0
        assert capture.value("queue.workers", {**EMAILS, "state": "active"}) == 0
        assert capture.value("queue.depth", EMAILS) == 0  # 3 enqueued, 6 taken: never below zero


def test_a_sampled_remote_parent_is_followed_at_rate_zero() -> None:
    with Capture(trace_sample_rate=0.0) as capture:
        sampled = SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
        with op.queue("emails").processing(carrier={"traceparent": traceparent(sampled)}):
            pass
        (process,) = capture.spans("queue.process emails")
        assert parent_of(process) == (0x1234, 0x5678)


def test_an_unsampled_carrier_makes_nothing_and_keeps_children_unsampled(traced: Capture) -> None:
    headers = {"traceparent": traceparent(UNSAMPLED_PARENT)}
    with op.queue("emails").processing(carrier=headers):
        current = trace.get_current_span().get_span_context()
        with user_tracer(traced).start_as_current_span("inner") as inner:
            assert not inner.get_span_context().trace_flags.sampled
    assert (current.trace_id, current.span_id, current.trace_flags.sampled) == (0xAB, 0xCD, False)
    assert traced.spans() == []
    assert trace.get_current_span() is trace.INVALID_SPAN


MALFORMED: list[Any] = [
    {},
    {"traceparent": "garbage"},
    {"traceparent": "00-" + "0" * 32 + "-00f067aa0ba902b7-01"},  # zero trace id
    {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01"},  # zero span id
    {"traceparent": "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},  # version ff
    {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"},
    {"traceparent": "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01"},  # upper case
    {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" + " " * 600},
    {"traceparent": 42},
    {"traceparent": b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
    {"traceparent": None, "baggage": "=;;"},
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    [("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")],
    42,
]


@pytest.mark.parametrize("carrier", MALFORMED, ids=range(len(MALFORMED)))
def test_a_malformed_carrier_is_ignored_a_fresh_root(traced: Capture, carrier: Any) -> None:
    with op.queue("emails").processing(carrier=carrier):
        pass
    with op.queue("emails").processing(carriers=[carrier]):
        pass
    child, batch = traced.spans("queue.process emails")
    assert child.parent is None
    assert (batch.parent, list(batch.links)) == (None, [])
    assert traced.value("queue.jobs.processed", OK) == 2
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_a_carrier_that_is_not_a_mapping_is_logged_once(
    traced: Capture, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(3):
        with op.queue("emails").processing(carrier="traceparent"):  # type: ignore[arg-type]
            pass
    assert caplog.text.count("a carrier that is not a mapping (str) was ignored") == 1


def test_a_carrier_that_raises_when_read_is_ignored(
    traced: Capture, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(dict[str, str]):
        def get(self, key: str, default: Any = None) -> Any:
            raise RuntimeError("broken")

    with op.queue("emails").processing(carrier=Broken(traceparent="x")):
        pass
    (process,) = traced.spans("queue.process emails")
    assert process.parent is None
    assert "a carrier could not be read; it was ignored" in caplog.text


def test_tracestate_and_baggage_travel_through_the_propagator(traced: Capture) -> None:
    state = TraceState([("vendor", "v1")])
    parent = SpanContext(
        0x77, 0x88, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED), trace_state=state
    )
    context = baggage.set_baggage("tenant", "acme", trace.set_span_in_context(NonRecordingSpan(parent)))
    headers: dict[str, str] = {}
    token = otel_context.attach(context)
    try:
        op.queue("emails").enqueued(carrier=headers)
    finally:
        otel_context.detach(token)
    (send,) = traced.spans("queue.send emails")
    assert headers == {
        "traceparent": traceparent(send.context),
        "tracestate": "vendor=v1",
        "baggage": "tenant=acme",
    }
    with op.queue("emails").processing(carrier=headers):
        assert baggage.get_baggage("tenant") == "acme"
    assert baggage.get_baggage("tenant") is None
    (process,) = traced.spans("queue.process emails")
    assert parent_of(process) == ids(send)
    assert process.parent is not None
    assert process.parent.trace_state == state


class _Header(TextMapPropagator):
    """A propagator of our own: one ``x-trace`` header, ``trace_id:span_id:flags`` in decimal."""

    def extract(
        self, carrier: CarrierT, context: Context | None = None, getter: Getter[CarrierT] = default_getter
    ) -> Context:
        found = getter.get(carrier, "x-trace")
        if not found:
            return context if context is not None else Context()
        trace_id, span_id, flags = (int(part) for part in found[0].split(":"))
        remote = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags))
        return trace.set_span_in_context(NonRecordingSpan(remote), context)

    def inject(
        self, carrier: CarrierT, context: Context | None = None, setter: Setter[CarrierT] = default_setter
    ) -> None:
        span_context = trace.get_current_span(context).get_span_context()
        if span_context.is_valid:
            value = f"{span_context.trace_id}:{span_context.span_id}:{int(span_context.trace_flags)}"
            setter.set(carrier, "x-trace", value)

    @property
    def fields(self) -> set[str]:
        return {"x-trace"}


def test_the_configured_propagator_is_used(traced: Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(propagate, "_HTTP_TEXT_FORMAT", CompositePropagator([_Header()]))
    headers, _, send = produce(traced)
    assert headers == {
        "x-trace": f"{send.context.trace_id}:{send.context.span_id}:{int(send.context.trace_flags)}"
    }
    with op.queue("emails").processing(carrier=headers):
        pass
    with op.queue("emails").processing(carriers=[headers]):
        pass
    child, batch = traced.spans("queue.process emails")
    assert parent_of(child) == ids(send)
    assert [(link.context.trace_id, link.context.span_id) for link in batch.links] == [ids(send)]


def _run(scope: Any) -> None:
    with scope:
        pass


def test_bad_carriers_and_job_types_are_left_out_with_one_warning(
    traced: Capture, caplog: pytest.LogCaptureFixture
) -> None:
    q = op.queue("emails")
    calls: list[tuple[Callable[[], Any], str]] = [
        (lambda: _run(q.processing(carrier={}, carriers=[{}])), "processing(carrier={}) is not valid"),
        (
            lambda: _run(q.processing(carriers={"traceparent": "x"})),  # type: ignore[arg-type]
            "processing(carriers={'traceparent': 'x'}) is not valid (wrong type)",
        ),
        (lambda: q.enqueued(carrier=()), "enqueued(carrier=()) is not valid (wrong type)"),  # type: ignore[arg-type]
        (lambda: q.enqueued(job_type=""), "enqueued(job_type='') is not valid (empty or too long)"),
        (lambda: q.dead_lettered(job_type=" "), "dead_lettered(job_type=' ') is not valid"),
    ]
    for call, said in calls:
        with caplog.at_level(logging.WARNING, logger="otel_pipeline"):
            caplog.clear()
            call()
            call()  # the same mistake again: no second warning
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warned) == 1, warned
        assert warned[0].startswith(f"queue 'emails': {said}"), warned[0]
    assert traced.value("queue.jobs.enqueued", {"queue.name": "emails"}) == 2  # the carrier=() calls
    assert traced.value("queue.jobs.enqueued", {"queue.name": "emails", "job.type": INVALID}) == 2
    dead = {"queue.name": "emails", "reason": "unknown", "job.type": INVALID}
    assert traced.value("queue.jobs.dead_lettered", dead) == 2
    with pytest.raises(ValueError, match="system='' is not valid"):
        q.set_system("")  # configuration still raises


# -- the fast path reads and writes what the SDK's propagator does -------------------------------

HEADERS = [
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
    "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-future",
    " \t00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff \t",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
    "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" + " " * 500,
    "",
    "garbage",
]


@pytest.mark.parametrize("header", HEADERS)
def test_reading_a_traceparent_matches_the_sdk(header: str) -> None:
    sdk = trace.get_current_span(TraceContextTextMapPropagator().extract({"traceparent": header}))
    expected = sdk.get_span_context() if sdk.get_span_context().is_valid else None
    assert carrier_module.span_context({"traceparent": header}) == expected


@pytest.mark.parametrize(
    "context",
    [
        SpanContext(1, 2, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED)),
        SpanContext((1 << 128) - 1, (1 << 64) - 1, is_remote=True, trace_flags=TraceFlags(0)),
        SpanContext(
            0xABC, 0xDEF, is_remote=False, trace_flags=TraceFlags(1), trace_state=TraceState([("a", "1")])
        ),
        trace.INVALID_SPAN_CONTEXT,
    ],
)
def test_writing_matches_the_sdk(context: SpanContext) -> None:
    ours: dict[str, str] = {}
    theirs: dict[str, str] = {}
    token = otel_context.attach(
        baggage.set_baggage("k", "v", trace.set_span_in_context(NonRecordingSpan(context)))
    )
    try:
        carrier_module.inject(ours)
        propagate.inject(theirs)
    finally:
        otel_context.detach(token)
    assert ours == theirs
    assert ours["baggage"] == "k=v"


# -- not configured ------------------------------------------------------------------------------


def test_not_configured_a_carrier_is_left_alone_and_decorations_continue_once_configured() -> None:
    q = op.queue("emails")
    headers: dict[str, str] = {}
    q.enqueued(carrier=headers, job_type="welcome")
    assert headers == {}

    @q.processing(carrier=lambda job: job, job_type="welcome")
    def handle(job: Mapping[str, str]) -> None:
        pass

    with q.processing(carrier={"traceparent": "x"}):  # a no-op
        pass
    handle({})
    with Capture(trace_sample_rate=1.0) as capture:
        carried, _, send = produce(capture, job_type="welcome")
        handle(carried)
        (process,) = capture.spans("queue.process emails")
        assert parent_of(process) == ids(send)
        assert capture.value("queue.jobs.processed", {**OK, "job.type": "welcome"}) == 1


# -- job types -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["core", "sdk"])
def test_job_type_on_jobs_results_and_dead_letters(mode: str) -> None:
    with Capture(instrument_mode=mode) as capture:
        q = op.queue("emails")
        q.enqueued(2, job_type="welcome")
        q.enqueued(job_type="reset", priority="high")
        q.enqueued()
        with q.processing(job_type="welcome"):
            pass
        with pytest.raises(ValueError, match="bad"), q.processing(job_type="reset", priority="high"):
            raise ValueError("bad")
        with q.processing():
            pass
        q.dead_lettered(reason="max_attempts", job_type="reset")
        q.dead_lettered(reason="max_attempts")
        welcome, reset = (
            {**EMAILS, "job.type": "welcome"},
            {**EMAILS, "job.type": "reset", "priority": "high"},
        )
        assert capture.value("queue.jobs.enqueued", welcome) == 2
        assert capture.value("queue.jobs.enqueued", reset) == 1
        assert capture.value("queue.jobs.enqueued", EMAILS) == 1
        assert capture.value("queue.jobs.processed", {**welcome, "outcome": "success"}) == 1
        failed = {**reset, "outcome": "failure", "error.type": "ValueError"}
        assert capture.value("queue.jobs.processed", failed) == 1
        assert capture.value("queue.jobs.processed", OK) == 1
        assert capture.value("queue.jobs.in_progress", welcome) == 0
        dead = {**EMAILS, "reason": "max_attempts"}
        assert capture.value("queue.jobs.dead_lettered", {**dead, "job.type": "reset"}) == 1
        assert capture.value("queue.jobs.dead_lettered", dead) == 1
        assert capture.value("queue.depth", EMAILS) == 1
        (_, failed_span, _) = capture.spans("queue.process emails")
        assert dict(failed_span.attributes or {}) == {**PROCESS, **reset, "error.type": "ValueError"}


def test_job_types_are_capped_per_queue(traced: Capture, caplog: pytest.LogCaptureFixture) -> None:
    q = op.queue("emails")
    limit = queue_module._MAX_VALUES
    for index in range(limit + 5):
        q.enqueued(job_type=f"type-{index}")
        with q.processing(job_type=f"type-{index}", priority="p"):
            pass
        q.dead_lettered(reason="r", job_type=f"type-{index}")
    assert traced.value("queue.jobs.enqueued", {**EMAILS, "job.type": "type-0"}) == 1
    assert traced.value("queue.jobs.enqueued", {**EMAILS, "job.type": f"type-{limit - 1}"}) == 1
    assert traced.value("queue.jobs.enqueued", {**EMAILS, "job.type": "_OTHER"}) == 5
    other = {**EMAILS, "job.type": "_OTHER", "priority": "p", "outcome": "success"}
    assert traced.value("queue.jobs.processed", other) == 5
    assert traced.value("queue.jobs.dead_lettered", {**EMAILS, "reason": "r", "job.type": "_OTHER"}) == 5
    assert caplog.text.count("has more than 64 job types") == 1
    assert len(traced.points("queue.jobs.enqueued")) == limit + 1


def test_dead_letter_reasons_stay_capped_with_job_types(traced: Capture) -> None:
    q = op.queue("emails")
    for index in range(queue_module._MAX_VALUES + 2):
        q.dead_lettered(reason=f"r{index}", job_type="a")
        q.dead_lettered(reason=f"r{index}", job_type="b")
    reasons = {dict(p.attributes)["reason"] for p in traced.points("queue.jobs.dead_lettered")}
    assert len(reasons) == queue_module._MAX_VALUES + 1
    assert traced.value("queue.jobs.dead_lettered", {**EMAILS, "reason": "_OTHER", "job.type": "a"}) == 2


def test_set_system_reaches_existing_and_new_lanes(traced: Capture) -> None:
    q = op.queue("emails")
    with q.processing():
        pass
    assert q.system is None
    q.set_system("sqs")
    assert q.system == "sqs"
    with q.processing(), q.processing(priority="high"):
        pass
    q.set_system(None)
    with q.processing():
        pass
    systems = [dict(s.attributes or {}).get("messaging.system") for s in traced.spans("queue.process emails")]
    assert systems == [None, "sqs", "sqs", None]


# -- the oldest job's age ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["core", "sdk"])
def test_oldest_age_from_a_function(mode: str, caplog: pytest.LogCaptureFixture) -> None:
    q = op.queue("emails")
    readings: list[Any] = [12.5, 0.0, None, -1.0, "old"]
    q.observe_oldest_age(lambda: readings[0])
    with Capture(instrument_mode=mode) as capture:
        assert capture.value("queue.oldest_job.age", EMAILS) == 12.5
        assert capture.metric("queue.oldest_job.age").unit == "s"
        readings.pop(0)
        assert capture.value("queue.oldest_job.age", EMAILS) == 0.0
        for _ in range(3):
            readings.pop(0)
            assert "queue.oldest_job.age" not in capture.metrics()
        reset_warnings()
        q.observe_oldest_age(lambda: 1 / 0)
        assert "queue.oldest_job.age" not in capture.metrics()
        q.observe_oldest_age(None)
        assert "queue.oldest_job.age" not in capture.metrics()
    assert "the oldest job age function returned -1.0, not a number >= 0; skipped" in caplog.text
    assert "the oldest job age function raised; skipped" in caplog.text
    with pytest.raises(TypeError, match=r"observe_oldest_age\(\) needs a function"):
        q.observe_oldest_age(5)  # type: ignore[arg-type]


def test_oldest_age_observed_before_configure_is_reported_once_configured() -> None:
    q = op.queue("emails")
    q.observe_oldest_age(lambda: 3.0)
    try:
        pipeline = op.configure(service_name="t", exporter="none")
        data = pipeline.collect()
        assert data is not None
        points = [
            point
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
            if metric.name == "queue.oldest_job.age"
            for point in metric.data.data_points
        ]
        assert [(dict(p.attributes or {}), getattr(p, "value", None)) for p in points] == [(EMAILS, 3.0)]
    finally:
        q.observe_oldest_age(None)
        op.shutdown()


def test_no_leftover_warnings(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="otel_pipeline")
    with Capture(trace_sample_rate=1.0) as capture:
        headers, _, _ = produce(capture)
        with op.queue("emails").processing(carrier=headers, job_type="t"):
            pass
    assert caplog.records == []


# -- the rest of the paths -----------------------------------------------------------------------


def test_the_timer_exposes_the_consumer_span(traced: Capture) -> None:
    headers, _, send = produce(traced)
    with op.queue("emails").processing(carrier=headers) as timed:
        assert timed.span.is_recording()
        assert timed.span.get_span_context().trace_id == send.context.trace_id


def test_a_carrier_without_context_and_no_tracing_makes_nothing() -> None:
    with Capture(trace_sample_rate=0.0) as capture:
        with op.queue("emails").processing(carrier={}, enqueued_at=None, job_type="t") as timed:
            assert timed.span is trace.INVALID_SPAN
        assert capture.spans() == []
        assert capture.value("queue.jobs.processed", {**OK, "job.type": "t"}) == 1


@pytest.mark.parametrize("mode", ["core", "sdk"])
def test_batch_functions_in_decorators(mode: str, caplog: pytest.LogCaptureFixture) -> None:
    with Capture(trace_sample_rate=1.0, instrument_mode=mode) as capture:
        q = op.queue("emails")

        @q.processing(carriers=lambda batch: [message["headers"] for message in batch])
        def handle(batch: list[dict[str, Any]]) -> int:
            return len(batch)

        @q.processing(carriers=lambda batch: {"not": "a list"})  # type: ignore[arg-type,return-value]
        def handle_badly(batch: list[dict[str, Any]]) -> None:
            pass

        first, _, send_1 = produce(capture)
        second, _, send_2 = produce(capture)
        assert handle([{"headers": first}, {"headers": second}]) == 2
        handle_badly([])
        with q.processing(carriers=lambda batch: batch):  # a function, outside a decorator: no links
            pass
        batch, bad, outside = capture.spans("queue.process emails")
        assert [(link.context.span_id) for link in batch.links] == [
            send_1.context.span_id,
            send_2.context.span_id,
        ]
        assert (list(bad.links), list(outside.links)) == ([], [])
        assert capture.value("queue.jobs.processed", OK) == 4  # a batch of 2, then 1 and 1
    assert "a carriers function returned no list or tuple; ignored" in caplog.text
    assert "a carrier that is not a mapping (function) was ignored" in caplog.text


@pytest.mark.contains_internal_errors
def test_a_fault_while_recording_is_logged_and_not_raised(
    traced: Capture, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    headers, _, _ = produce(traced)

    def broken(*args: Any) -> None:
        raise RuntimeError("internal")

    monkeypatch.setattr(queue_module._Processing, "begin", broken)
    with op.queue("emails").processing(carrier=headers):
        pass
    monkeypatch.undo()
    monkeypatch.setattr(queue_module._Processing, "end", broken)
    with op.queue("emails").processing(carriers=[headers, headers]):
        pass
    assert "queue.process emails failed to start recording" in caplog.text
    assert "queue.process emails failed to record" in caplog.text
    assert len(traced.spans("queue.process emails")) == 2  # both ended, not left open
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_wait_time_with_a_job_type(traced: Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queue_module, "time", lambda: 1000.0)
    with op.queue("emails").processing(job_type="t", enqueued_at=999.5):
        pass
    assert traced.point("queue.job.wait_time", {**EMAILS, "job.type": "t"}).sum == 0.5
