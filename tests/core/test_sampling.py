"""Hook spans: the sampling decision made before the SDK keeps parent-based ratio semantics."""

from __future__ import annotations

import asyncio
import random

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

import otel_pipeline as op
from otel_pipeline.testing import Capture

LIMIT = (1 << 64) - 1


def test_root_at_rate_zero_records_no_span_and_children_stay_unsampled() -> None:
    with Capture(trace_sample_rate=0.0) as capture:
        user_tracer = capture.pipeline.tracer_provider.get_tracer("user")  # type: ignore[union-attr]
        with op.queue("s").processing(), user_tracer.start_as_current_span("child") as child:
            assert not child.get_span_context().trace_flags.sampled
        assert capture.spans() == []


def test_unsampled_root_makes_an_unsampled_parent_current_for_user_spans() -> None:
    random.seed(7)
    with Capture(trace_sample_rate=0.01) as capture:
        user_tracer = capture.pipeline.tracer_provider.get_tracer("user")  # type: ignore[union-attr]
        seen = []
        for _ in range(200):
            with op.queue("s").processing():
                current = trace.get_current_span().get_span_context()
                with user_tracer.start_as_current_span("child") as child:
                    seen.append((current, child.get_span_context()))
        finished = capture.spans()
    sampled_roots = {s.context.trace_id for s in finished if s.name == "queue.process s"}
    for parent, child in seen:
        assert parent.is_valid
        assert child.trace_id == parent.trace_id
        # A child is sampled exactly when its hook span was: parent-based, never re-decided.
        assert child.trace_flags.sampled == parent.trace_flags.sampled
        assert parent.trace_flags.sampled == (parent.trace_id in sampled_roots)
    assert len(finished) == 2 * len(sampled_roots)
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_root_decisions_agree_with_the_sdk_ratio_sampler() -> None:
    random.seed(11)
    bound = TraceIdRatioBased.get_bound_for_rate(0.5)
    with Capture(trace_sample_rate=0.5) as capture:
        decisions = []
        for _ in range(300):
            with op.queue("r").processing():
                context = trace.get_current_span().get_span_context()
                decisions.append((context.trace_id, context.trace_flags.sampled))
        exported = {s.context.trace_id for s in capture.spans()}
    for trace_id, sampled in decisions:
        assert sampled == ((trace_id & LIMIT) < bound)
        assert (trace_id in exported) == sampled
    assert 0 < len(exported) < 300


def test_a_sampled_parent_gets_a_recorded_child() -> None:
    with Capture(trace_sample_rate=0.0) as capture:
        user_tracer = capture.pipeline.tracer_provider.get_tracer("user")  # type: ignore[union-attr]
        # The root sampler says no for roots, but a sampled *remote* parent is followed.
        remote = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
        with (
            trace.use_span(NonRecordingSpan(remote)),
            op.queue("p").processing(),
            user_tracer.start_as_current_span("inner"),
        ):
            pass
        spans = {s.name: s for s in capture.spans()}
    hook = spans["queue.process p"]
    assert hook.context.trace_id == 0xABC
    assert hook.parent is not None
    assert hook.parent.span_id == 0xDEF
    inner = spans["inner"]
    assert inner.parent is not None
    assert inner.parent.span_id == hook.context.span_id


def test_an_unsampled_parent_is_followed_without_a_span() -> None:
    with Capture(trace_sample_rate=1.0) as capture:
        remote = SpanContext(0x123, 0x456, is_remote=True, trace_flags=TraceFlags(TraceFlags.DEFAULT))
        with trace.use_span(NonRecordingSpan(remote)), op.queue("u").processing():
            assert trace.get_current_span().get_span_context().span_id == 0x456
        assert capture.spans() == []


def test_failure_is_recorded_on_the_span_and_reraised() -> None:
    with Capture(trace_sample_rate=1.0) as capture:
        with pytest.raises(TimeoutError, match=r"^slow$"), op.queue("f").processing():
            raise TimeoutError("slow")
        (span,) = capture.spans()
    assert span.status.status_code is trace.StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["error.type"] == "TimeoutError"
    assert [event.name for event in span.events] == ["exception"]


def test_context_is_restored_across_awaits_and_tasks() -> None:
    async def job(name: str) -> int:
        async with op.queue(name).processing():
            inside = trace.get_current_span().get_span_context().span_id
            await asyncio.sleep(0)
            assert trace.get_current_span().get_span_context().span_id == inside
        return inside

    async def main() -> list[int]:
        return list(await asyncio.gather(job("a1"), job("a2"), job("a3")))

    with Capture(trace_sample_rate=1.0) as capture:
        ids = asyncio.run(main())
        assert trace.get_current_span() is trace.INVALID_SPAN
        exported = sorted(s.context.span_id for s in capture.spans())
    assert sorted(ids) == exported
    assert len(set(ids)) == 3
