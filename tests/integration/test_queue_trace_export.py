"""A job's trace across the queue arrives whole at a real collector (rotel) and our receiver.

Explicit carriers (the headers serialised to JSON and back, as a broker would carry them), a
batch linked to its jobs, and an instrumented ``queue.Queue`` between a producer and a consumer
thread: the spans exported over OTLP keep their parents and links.
"""

from __future__ import annotations

import json
import queue
import threading

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

import otel_pipeline as op
from tests.support.fixtures import RotelFactory
from tests.support.otlp_receiver import OtlpReceiver, ReceivedSpan

pytestmark = pytest.mark.integration


def by_name(spans: list[ReceivedSpan]) -> dict[str, list[Span]]:
    found: dict[str, list[Span]] = {}
    for received in spans:
        found.setdefault(received.name, []).append(received.span)
    return found


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_queue_traces_arrive_with_parents_and_links_through_rotel(
    protocol: str, otlp_receiver: OtlpReceiver, rotel_factory: RotelFactory
) -> None:
    agent = rotel_factory(otlp_receiver.grpc_endpoint)
    pipeline = op.configure(
        service_name="shop",
        exporter="otlp",
        otlp_endpoint=agent.endpoint(protocol),
        otlp_protocol=protocol,
        export_interval=0.5,
        export_timeout=5.0,
    )
    assert pipeline.tracer_provider is not None
    tracer = pipeline.tracer_provider.get_tracer("shop")
    emails = op.queue("emails")

    # Explicit carriers: the producer's request, the consumer elsewhere (no span current there).
    wire = []
    for order in ("o-1", "o-2", "o-3"):
        with tracer.start_as_current_span(f"request {order}"):
            headers: dict[str, str] = {}
            emails.enqueued(job_type="welcome", carrier=headers)
            wire.append(json.dumps({"order": order, "headers": headers}))
    first, *rest = (json.loads(message) for message in wire)
    with emails.processing(carrier=first["headers"], job_type="welcome", job_id=first["order"]):
        pass
    with emails.processing(carriers=[message["headers"] for message in rest], job_type="welcome"):
        pass

    # An instrumented queue between two threads.
    jobs: queue.Queue[str] = queue.Queue()
    hook = op.instrument_queue(jobs, "jobs")

    def produce() -> None:
        for job in ("j-1", "j-2"):
            with tracer.start_as_current_span(f"request {job}"):
                jobs.put(job)

    def consume() -> None:
        for _ in range(2):
            job = jobs.get()
            with hook.processing(job_id=job):
                pass

    threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    op.uninstrument_queue(jobs)
    assert op.shutdown() is True

    spans = by_name(otlp_receiver.wait_for_spans(count=12))
    assert sorted((name, len(found)) for name, found in spans.items()) == [
        ("queue.process emails", 2),
        ("queue.process jobs", 2),
        ("queue.send emails", 3),
        ("request j-1", 1),
        ("request j-2", 1),
        ("request o-1", 1),
        ("request o-2", 1),
        ("request o-3", 1),
    ]
    sends = {span.parent_span_id: span for span in spans["queue.send emails"]}
    requests = {name: found[0] for name, found in spans.items() if name.startswith("request ")}
    send = {order: sends[requests[f"request {order}"].span_id] for order in ("o-1", "o-2", "o-3")}
    for order, span in send.items():
        assert span.kind == Span.SPAN_KIND_PRODUCER
        assert span.trace_id == requests[f"request {order}"].trace_id

    child, batch = sorted(spans["queue.process emails"], key=lambda span: len(span.links))
    assert child.kind == batch.kind == Span.SPAN_KIND_CONSUMER
    # One job: the child of its send span, in the request's trace.
    assert (child.trace_id, child.parent_span_id) == (send["o-1"].trace_id, send["o-1"].span_id)
    assert {kv.key: kv.value.string_value for kv in child.attributes}["job.type"] == "welcome"
    # A batch: a trace of its own, a link to each job's send span.
    assert batch.parent_span_id == b""
    assert [(link.trace_id, link.span_id) for link in batch.links] == [
        (send[order].trace_id, send[order].span_id) for order in ("o-2", "o-3")
    ]

    for span in spans["queue.process jobs"]:
        job = {kv.key: kv.value.string_value for kv in span.attributes}["queue.job.id"]
        request = requests[f"request {job}"]
        assert (span.trace_id, span.parent_span_id) == (request.trace_id, request.span_id)
        assert span.kind == Span.SPAN_KIND_CONSUMER
