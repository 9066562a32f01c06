"""OTLP export over gRPC and HTTP: straight into an in-test receiver, and through a real collector (rotel)."""

from __future__ import annotations

import logging

import pytest
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

import otel_pipeline as op
from otel_pipeline.config import DEFAULT_DURATION_BUCKETS
from tests.support.fixtures import RotelFactory
from tests.support.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.integration

PROTOCOLS = ["grpc", "http/protobuf"]
EMAILS = {"queue.name": "emails"}
CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE


def record_workload(pipeline: op.Pipeline) -> None:
    """3 enqueued, 2 processed (one inside a user span), 1 failed; plus a user counter."""
    q = op.queue("emails")
    q.enqueued(3)
    assert pipeline.tracer_provider is not None
    assert pipeline.meter_provider is not None
    with pipeline.tracer_provider.get_tracer("shop").start_as_current_span("handle order"), q.processing():
        pass
    with q.processing():
        pass
    with pytest.raises(KeyError), q.processing():
        raise KeyError("missing")
    pipeline.meter_provider.get_meter("shop").create_counter("shop.orders", "{order}", "Orders placed.").add(
        4, {"region": "eu"}
    )


def assert_arrived(receiver: OtlpReceiver, protocol_seen: str) -> None:
    """The exact points and spans of record_workload, with the service's resource."""
    enqueued = receiver.latest_point("queue.jobs.enqueued", EMAILS)
    assert (enqueued.kind, enqueued.value, enqueued.metric.unit) == ("sum", 3, "{job}")
    assert enqueued.metric.description == "Jobs put on the queue."
    assert enqueued.metric.sum.is_monotonic is True
    assert enqueued.metric.sum.aggregation_temporality == CUMULATIVE
    assert enqueued.scope == "otel_pipeline"
    assert enqueued.protocol == protocol_seen
    assert enqueued.resource["service.name"] == "orders"
    assert enqueued.resource["service.version"] == "3.1.0"
    assert enqueued.resource["deployment.environment"] == "ci"

    processed = receiver.latest_point("queue.jobs.processed", {**EMAILS, "outcome": "success"})
    assert processed.value == 2
    failed = receiver.latest_point(
        "queue.jobs.processed", {**EMAILS, "outcome": "failure", "error.type": "KeyError"}
    )
    assert failed.value == 1

    duration = receiver.latest_point("queue.job.duration", {**EMAILS, "outcome": "success"})
    assert duration.kind == "histogram"
    assert duration.metric.unit == "s"
    assert duration.metric.histogram.aggregation_temporality == CUMULATIVE
    assert duration.point.count == 2
    assert sum(duration.point.bucket_counts) == 2
    assert tuple(duration.point.explicit_bounds) == DEFAULT_DURATION_BUCKETS
    assert duration.point.sum >= 0

    user = receiver.latest_point("shop.orders", {"region": "eu"})
    assert (user.value, user.scope, user.resource["service.name"]) == (4, "shop", "orders")

    spans = receiver.spans()
    assert sorted(s.name for s in spans) == ["handle order", *["queue.process emails"] * 3]
    assert {s.resource["service.name"] for s in spans} == {"orders"}
    by_name = {s.name: s for s in spans}
    parent = by_name["handle order"].span
    hooks = [s.span for s in spans if s.name == "queue.process emails"]
    children = [h for h in hooks if h.parent_span_id == parent.span_id]
    assert len(children) == 1
    assert children[0].trace_id == parent.trace_id
    assert [h.parent_span_id for h in hooks if h is not children[0]] == [b"", b""]
    errors = [h for h in hooks if h.status.code == Status.STATUS_CODE_ERROR]
    assert len(errors) == 1
    assert {kv.key: kv.value.string_value for kv in errors[0].attributes}["error.type"] == "KeyError"
    assert {h.kind for h in hooks} == {Span.SPAN_KIND_CONSUMER}


def configure_otlp(endpoint: str, protocol: str) -> op.Pipeline:
    return op.configure(
        service_name="orders",
        service_version="3.1.0",
        exporter="otlp",
        otlp_endpoint=endpoint,
        otlp_protocol=protocol,
        export_interval=0.5,
        export_timeout=5.0,
        resource_attributes={"deployment.environment": "ci"},
    )


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_export_into_the_receiver(
    protocol: str, otlp_receiver: OtlpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        pipeline = configure_otlp(otlp_receiver.endpoint(protocol), protocol)
        record_workload(pipeline)
        # A periodic export arrives while the program runs...
        otlp_receiver.wait_for_point("queue.jobs.enqueued", EMAILS, lambda p: p.value == 3)
        # ...and shutdown flushes the rest (spans are batched).
        assert op.shutdown() is True
    assert_arrived(otlp_receiver, protocol)
    assert [r.getMessage() for r in caplog.records] == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_export_through_rotel(
    protocol: str, otlp_receiver: OtlpReceiver, rotel_factory: RotelFactory
) -> None:
    agent = rotel_factory(otlp_receiver.grpc_endpoint)
    pipeline = configure_otlp(agent.endpoint(protocol), protocol)
    record_workload(pipeline)
    assert op.shutdown() is True
    # rotel batches and forwards over gRPC: wait until everything has come through.
    otlp_receiver.wait_for_point("queue.jobs.enqueued", EMAILS, lambda p: p.value == 3)
    otlp_receiver.wait_for_point("shop.orders", {"region": "eu"})
    otlp_receiver.wait_for_spans(count=4)
    assert_arrived(otlp_receiver, "grpc")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_rotel_accepts_the_export_into_its_blackhole(
    protocol: str, rotel_factory: RotelFactory, caplog: pytest.LogCaptureFixture
) -> None:
    agent = rotel_factory()  # no forwarding: rotel itself must accept every export
    with caplog.at_level(logging.WARNING):
        pipeline = configure_otlp(agent.endpoint(protocol), protocol)
        record_workload(pipeline)
        assert op.shutdown() is True
    # A refused or failed export is logged by the OTLP exporters; there is none.
    assert [r.getMessage() for r in caplog.records] == []
