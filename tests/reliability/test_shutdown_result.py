"""shutdown() says True only when the final export of every exporter got through, within its bound."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import (
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
    MetricReader,
)
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader as Periodic
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import otel_pipeline as op
from otel_pipeline._internal import runtime
from otel_pipeline.config import Config
from tests.support import free_port
from tests.support.fixtures import otlp_receiver
from tests.support.otlp_receiver import OtlpReceiver

__all__ = ["otlp_receiver"]  # the fixture, used by name

EXPORT_TIMEOUT = 1.0
#: The documented bound of shutdown(): export_timeout + 2 s.
BOUND = EXPORT_TIMEOUT + 2.0
#: Room for a loaded CI machine to schedule the threads; the bound itself is what is checked.
SLACK = 1.5


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A port that accepts TCP connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.mark.integration
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
@pytest.mark.parametrize(("receiver", "expected"), [("down", False), ("hanging", False), ("fine", True)])
def test_shutdown_result_follows_the_final_export(
    protocol: str, receiver: str, expected: bool, silent_endpoint: str, otlp_receiver: OtlpReceiver
) -> None:
    endpoint = {
        "down": f"http://127.0.0.1:{free_port()}",  # nothing listens
        "hanging": silent_endpoint,  # accepts, never answers
        "fine": otlp_receiver.endpoint(protocol),
    }[receiver]
    pipeline = op.configure(
        service_name="orders",
        exporter="otlp",
        otlp_endpoint=endpoint,
        otlp_protocol=protocol,
        export_interval=3600,  # only the final export can deliver
        export_timeout=EXPORT_TIMEOUT,
    )
    op.queue("emails").enqueued(3)
    with op.queue("emails").processing():  # a span too
        pass
    started = time.monotonic()
    result = op.shutdown()
    elapsed = time.monotonic() - started
    assert result is expected
    assert elapsed < BOUND + SLACK, f"shutdown took {elapsed:.2f} s, bound {BOUND} s"
    assert pipeline.shutdown() is True  # already shut down: nothing left to deliver
    if expected:
        assert otlp_receiver.latest_point("queue.jobs.enqueued", {"queue.name": "emails"}).value == 3
        assert [s.name for s in otlp_receiver.spans()] == ["queue.process emails"]


class _Metrics(MetricExporter):
    def __init__(self, result: Any) -> None:
        super().__init__()
        self.result = result
        self.calls = 0

    def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        self.calls += 1
        if isinstance(self.result, Exception):
            raise self.result
        result: MetricExportResult = self.result
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        return None


class _Spans(SpanExporter):
    def __init__(self, result: SpanExportResult) -> None:
        self.result = result
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return self.result


def _pipeline(metrics: _Metrics, spans: _Spans | None = None) -> runtime.Runtime:
    config = Config.resolve({}, service_name="result", exporter="none")
    processors: list[SpanProcessor] = []
    if spans is not None:
        processors.append(BatchSpanProcessor(spans, schedule_delay_millis=3_600_000))
    readers: list[MetricReader] = [
        Periodic(metrics, export_interval_millis=3_600_000),
        InMemoryMetricReader(),
    ]
    pipeline = runtime.build_pipeline(
        config,
        serve=False,
        extra_readers=readers,
        span_processors=processors,
    )
    pipeline.export_state.watch(metrics, "metrics")
    if spans is not None:
        pipeline.export_state.watch(spans, "spans")
    runtime.install(pipeline)
    op.queue("result").enqueued(2)
    with op.queue("result").processing():
        pass
    return pipeline


S, F = MetricExportResult.SUCCESS, MetricExportResult.FAILURE


@pytest.mark.parametrize(
    ("metrics", "spans", "expected"),
    [
        (S, SpanExportResult.SUCCESS, True),
        (F, SpanExportResult.SUCCESS, False),
        (S, SpanExportResult.FAILURE, False),
        (ConnectionError("down"), SpanExportResult.SUCCESS, False),
    ],
)
def test_every_exporter_counts(
    metrics: Any, spans: SpanExportResult, expected: bool, caplog: pytest.LogCaptureFixture
) -> None:
    metric_exporter, span_exporter = _Metrics(metrics), _Spans(spans)
    pipeline = _pipeline(metric_exporter, span_exporter)
    assert pipeline.shutdown(timeout=10) is expected
    assert (metric_exporter.calls, span_exporter.spans) == (1, 1)  # one final export each
    warnings = [r.getMessage() for r in caplog.records if r.getMessage().startswith("shutdown:")]
    assert len(warnings) == (0 if expected else 1)


def test_no_span_left_to_export_is_no_failure() -> None:
    metric_exporter, span_exporter = _Metrics(S), _Spans(SpanExportResult.FAILURE)
    pipeline = _pipeline(metric_exporter, None)
    pipeline.export_state.watch(span_exporter, "spans")  # watched, but nothing ever reaches it
    assert pipeline.shutdown(timeout=10) is True
    assert span_exporter.spans == 0


def test_a_metrics_exporter_that_never_exported_is_a_failure() -> None:
    pipeline = _pipeline(_Metrics(S))
    never = _Metrics(S)
    pipeline.export_state.watch(never, "metrics")  # a second metrics exporter no reader drives
    assert pipeline.shutdown(timeout=10) is False
    assert pipeline.export_state.final_result() == (False, ["metrics-2: no final export"], False)


@pytest.mark.parametrize(
    ("pushed", "expected"), [(True, (True, [], True)), (False, (False, ["pushgateway: HTTP 502"], False))]
)
def test_an_exporter_reporting_by_hand_plugs_in(pushed: bool, expected: tuple[bool, list[str], bool]) -> None:
    """A push that is not an OTel exporter (e.g. a Pushgateway push at shutdown) reports its result."""
    pipeline = _pipeline(_Metrics(S))
    key = pipeline.export_state.expect("pushgateway", final=True)
    pipeline.on_shutdown.append(lambda: pipeline.export_state.record(pushed, "pushgateway: HTTP 502", key))
    assert pipeline.shutdown(timeout=10) is expected[0]
    assert pipeline.export_state.final_result() == expected


def test_a_push_that_never_happened_is_a_failure() -> None:
    pipeline = _pipeline(_Metrics(S))
    pipeline.export_state.expect("pushgateway", final=True)
    assert pipeline.shutdown(timeout=10) is False
    assert pipeline.export_state.final_result() == (False, ["pushgateway: no final export"], False)


def test_a_prometheus_pipeline_has_nothing_to_deliver() -> None:
    pipeline = op.configure(service_name="scraped", prometheus_port=0)
    op.queue("emails").enqueued()
    assert pipeline.export_state.pushes is False
    assert op.shutdown() is True
