"""The push exporters' mechanics against an in-test HTTP server: requests, retries, one warning, encoding."""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import sys
import threading
import urllib.error
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cramjam
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    InMemoryMetricReader,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource

import otel_pipeline as op
from otel_pipeline._internal import providers, push, runtime
from otel_pipeline._internal.exposition import ScrapeReader, render
from otel_pipeline._internal.push import PushgatewayExporter, retryable
from otel_pipeline._internal.remote_write import RemoteWriteExporter, encode_write_request
from otel_pipeline.config import Config


class Recorder(BaseHTTPRequestHandler):
    """Answers each request with the next status of ``server.statuses`` (200 when none are left)."""

    server: Gateway

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.requests.append((self.command, self.path, dict(self.headers.items()), body))
        status = self.server.statuses.pop(0) if self.server.statuses else 200
        reply = f"reply {status}".encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    do_PUT = do_POST = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


class Gateway(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Recorder)
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.statuses: list[int] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    server = Gateway()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def metrics(count: int = 3) -> MetricsData:
    reader = InMemoryMetricReader()
    provider = MeterProvider(resource=Resource({"service.name": "orders"}), metric_readers=[reader])
    provider.get_meter("app").create_counter("jobs", "{job}", "Jobs done.").add(count, {"queue": "emails"})
    data = reader.get_metrics_data()
    provider.shutdown()
    assert data is not None
    return data


def test_pushgateway_puts_the_exposition_of_metrics_to_its_group(gateway: Gateway) -> None:
    exporter = PushgatewayExporter(gateway.url, "nightly", grouping={"instance": "h1", "shard": "eu/1"})
    data = metrics()
    assert exporter.export(data) is MetricExportResult.SUCCESS
    ((method, path, headers, body),) = gateway.requests
    shard = base64.urlsafe_b64encode(b"eu/1").decode()
    assert (method, path) == ("PUT", f"/metrics/job/nightly/instance/h1/shard@base64/{shard}")
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert body == render(data)
    assert b'jobs_total{otel_scope_name="app"' in body


def test_retries_what_may_pass_then_succeeds(gateway: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    gateway.statuses = [503, 429]
    exporter = PushgatewayExporter(gateway.url, "nightly")
    with caplog.at_level(logging.DEBUG, logger="otel_pipeline"):
        assert exporter.export(metrics()) is MetricExportResult.SUCCESS
    assert len(gateway.requests) == 3
    assert caplog.records == []


def test_gives_up_after_three_tries_with_one_warning(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    gateway.statuses = [500] * 6 + [200, 502]
    exporter = PushgatewayExporter(gateway.url, "nightly")
    with caplog.at_level(logging.DEBUG, logger="otel_pipeline"):
        assert exporter.export(metrics()) is MetricExportResult.FAILURE
        assert exporter.export(metrics()) is MetricExportResult.FAILURE
        assert exporter.export(metrics()) is MetricExportResult.SUCCESS  # the 200
        gateway.statuses = [400]
        assert exporter.export(metrics()) is MetricExportResult.FAILURE
    assert len(gateway.requests) == 3 + 3 + 1 + 1  # a 4xx is not retried
    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert messages == [
        (
            "WARNING",
            f"pushing metrics to the Pushgateway at {gateway.url} failed (HTTP 500 Internal Server Error: "
            "reply 500); the run goes on, and this is the only warning (later failures are logged at "
            "debug level)",
        ),
        (
            "DEBUG",
            f"pushing metrics to the Pushgateway at {gateway.url} failed: HTTP 500 Internal Server Error: "
            "reply 500",
        ),
        ("INFO", f"the Pushgateway at {gateway.url} takes metrics again"),
        (
            "DEBUG",
            f"pushing metrics to the Pushgateway at {gateway.url} failed: HTTP 400 Bad Request: reply 400",
        ),
    ]


def test_no_time_left_is_a_failure_without_a_request(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = PushgatewayExporter(gateway.url, "nightly", timeout=5.0)
    assert exporter.export(metrics(), timeout_millis=0) is MetricExportResult.FAILURE
    assert gateway.requests == []
    assert "failed (no time left (export_timeout 5.0 s))" in caplog.text


def test_delete_on_shutdown_deletes_the_group_once(gateway: Gateway) -> None:
    exporter = PushgatewayExporter(gateway.url, "nightly", grouping={"instance": ""}, delete_on_shutdown=True)
    assert exporter.export(metrics()) is MetricExportResult.SUCCESS
    exporter.shutdown()
    exporter.shutdown()
    assert [(m, p) for m, p, _, _ in gateway.requests] == [
        ("PUT", "/metrics/job/nightly/instance@base64/="),
        ("DELETE", "/metrics/job/nightly/instance@base64/="),
    ]
    # Shut down, it sends nothing more.
    assert exporter.export(metrics()) is MetricExportResult.FAILURE
    assert len(gateway.requests) == 2
    assert exporter.force_flush() is True


def test_an_encoding_fault_is_logged_and_fails_the_export(caplog: pytest.LogCaptureFixture) -> None:
    exporter = PushgatewayExporter("http://127.0.0.1:9", "nightly")
    broken: Any = object()  # not MetricsData
    assert exporter.export(broken) is MetricExportResult.FAILURE
    assert "could not encode the metrics for the Pushgateway at http://127.0.0.1:9" in caplog.text


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (urllib.error.HTTPError("u", 503, "Unavailable", {}, None), True),  # type: ignore[arg-type]
        (urllib.error.HTTPError("u", 429, "Too Many", {}, None), True),  # type: ignore[arg-type]
        (urllib.error.HTTPError("u", 404, "Not Found", {}, None), False),  # type: ignore[arg-type]
        (urllib.error.URLError(ConnectionRefusedError(111, "refused")), True),
        (urllib.error.URLError(TimeoutError("timed out")), False),
        (ConnectionResetError(104, "reset"), True),
        (TimeoutError("timed out"), False),
        (ValueError("bad"), False),
    ],
)
def test_what_is_retried(error: BaseException, expected: bool) -> None:
    assert retryable(error) is expected


# -- remote write ---------------------------------------------------------------------------------


def _write_request_class() -> Any:
    """The remote-write WriteRequest message, built from its .proto definition (an independent decoder)."""
    file = descriptor_pb2.FileDescriptorProto(name="remote_test.proto", package="prometheus_test")
    t = descriptor_pb2.FieldDescriptorProto

    def message(name: str, *fields: tuple[str, int, int, str | None]) -> None:
        proto = file.message_type.add(name=name)
        for field_name, number, kind, type_name in fields:
            added = proto.field.add(name=field_name, number=number, type=kind, label=t.LABEL_OPTIONAL)
            if type_name:
                added.type_name = type_name
                added.label = t.LABEL_REPEATED

    message("Label", ("name", 1, t.TYPE_STRING, None), ("value", 2, t.TYPE_STRING, None))
    message("Sample", ("value", 1, t.TYPE_DOUBLE, None), ("timestamp", 2, t.TYPE_INT64, None))
    message(
        "TimeSeries",
        ("labels", 1, t.TYPE_MESSAGE, ".prometheus_test.Label"),
        ("samples", 2, t.TYPE_MESSAGE, ".prometheus_test.Sample"),
    )
    message("WriteRequest", ("timeseries", 1, t.TYPE_MESSAGE, ".prometheus_test.TimeSeries"))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("prometheus_test.WriteRequest"))


def decode(body: bytes) -> list[tuple[list[tuple[str, str]], list[tuple[float, int]]]]:
    request = _write_request_class()()
    request.ParseFromString(body)
    return [
        (
            [(label.name, label.value) for label in series.labels],
            [(s.value, s.timestamp) for s in series.samples],
        )
        for series in request.timeseries
    ]


def test_write_request_encoding_decodes_with_protobuf() -> None:
    series = [
        ([("__name__", "jobs_total"), ("queue", "é-mails")], 3.0),
        ([("__name__", "lag"), ("job", "x")], -0.25),
        ([("__name__", "big")], 1e300),
    ]
    body = encode_write_request(series, 1_700_000_000_123)
    assert decode(body) == [
        ([("__name__", "jobs_total"), ("queue", "é-mails")], [(3.0, 1_700_000_000_123)]),
        ([("__name__", "lag"), ("job", "x")], [(-0.25, 1_700_000_000_123)]),
        ([("__name__", "big")], [(1e300, 1_700_000_000_123)]),
    ]
    assert decode(encode_write_request([([("__name__", "x")], 1.0)], -5)) == [
        ([("__name__", "x")], [(1.0, -5)])
    ]


def test_remote_write_posts_snappy_protobuf_with_job_and_instance(gateway: Gateway) -> None:
    reader = InMemoryMetricReader()
    resource = Resource(
        {"service.name": "orders", "service.namespace": "shop", "service.instance.id": "i-1", "job": "x"}
    )
    provider = MeterProvider(resource=resource, metric_readers=[reader])
    counter = provider.get_meter("app").create_counter("jobs", "{job}", "Jobs done.")
    counter.add(3, {"queue": "emails", "job": "mine"})
    data = reader.get_metrics_data()
    provider.shutdown()
    assert data is not None
    exporter = RemoteWriteExporter(f"{gateway.url}/api/v1/write")
    assert exporter.export(data) is MetricExportResult.SUCCESS
    ((method, path, headers, body),) = gateway.requests
    assert (method, path) == ("POST", "/api/v1/write")
    assert (
        headers["Content-Encoding"],
        headers["Content-Type"],
        headers["X-Prometheus-Remote-Write-Version"],
    ) == (
        "snappy",
        "application/x-protobuf",
        "0.1.0",
    )
    decoded = decode(bytes(cramjam.snappy.decompress_raw(body)))
    # A second push in the same millisecond still moves the timestamp forward.
    assert exporter.export(data) is MetricExportResult.SUCCESS
    again = decode(bytes(cramjam.snappy.decompress_raw(gateway.requests[1][3])))
    assert again[0][1][0][1] > decoded[0][1][0][1]
    by_name = {dict(labels)["__name__"]: (labels, samples) for labels, samples in decoded}
    labels, samples = by_name["jobs_total"]
    assert labels == [
        ("__name__", "jobs_total"),
        ("exported_job", "mine"),  # the point's own "job" makes way, as in a scrape
        ("instance", "i-1"),
        ("job", "shop/orders"),
        ("otel_scope_name", "app"),
        ("queue", "emails"),
    ]
    assert [value for value, _ in samples] == [3.0]
    target_labels = dict(by_name["target_info"][0])
    assert (target_labels["job"], target_labels["instance"], target_labels["service_name"]) == (
        "shop/orders",
        "i-1",
        "orders",
    )


def test_remote_write_without_the_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cramjam", None)
    with pytest.raises(ImportError, match=r"pip install 'otel_pipeline\[remote-write\]'"):
        op.configure(exporter="remote_write", remote_write_url="http://127.0.0.1:9/api/v1/write")


# -- readers and spans for several exporters -----------------------------------------------------


def test_every_exporter_gets_a_reader_of_one_provider() -> None:
    config = Config.resolve(
        {},
        exporter="prometheus,otlp,pushgateway,remote_write,console",
        pushgateway_url="http://127.0.0.1:9",
        remote_write_url="http://127.0.0.1:9/api/v1/write",
    )
    built = providers.metric_readers(config)
    kinds = [type(reader) for reader in built.readers]
    assert kinds == [ScrapeReader, *[PeriodicExportingMetricReader] * 4, InMemoryMetricReader]
    exporters = [
        reader._exporter for reader in built.readers if isinstance(reader, PeriodicExportingMetricReader)
    ]
    assert [type(e).__name__ for e in exporters] == [
        "OTLPMetricExporter",
        "PushgatewayExporter",
        "RemoteWriteExporter",
        "ConsoleMetricExporter",
    ]
    assert isinstance(exporters[-1], ConsoleMetricExporter)
    pushgateway = exporters[1]
    assert isinstance(pushgateway, PushgatewayExporter)
    assert (pushgateway.job, pushgateway.timeout, pushgateway.delete_on_shutdown) == (
        "unknown_service",
        5.0,
        False,
    )
    forked = providers.metric_readers(config, forked=True)
    assert len(forked.readers) == len(built.readers) - 1
    for reader in built.readers + forked.readers:
        reader.shutdown()


@pytest.mark.parametrize(
    ("exporter", "endpoint", "processors"),
    [
        ("otlp", None, ["BatchSpanProcessor"]),
        ("prometheus", None, []),
        ("prometheus", "http://127.0.0.1:9", ["BatchSpanProcessor"]),
        ("pushgateway", "http://127.0.0.1:9", ["BatchSpanProcessor"]),
        ("none", "http://127.0.0.1:9", []),
        ("console", None, ["BatchSpanProcessor"]),
        ("otlp,console", None, ["BatchSpanProcessor", "BatchSpanProcessor"]),
    ],
)
def test_where_spans_go(exporter: str, endpoint: str | None, processors: list[str]) -> None:
    config = Config.resolve(
        {}, exporter=exporter, otlp_endpoint=endpoint, pushgateway_url="http://127.0.0.1:9"
    )
    provider, _ = providers.build_tracer_provider(config, Resource({}))
    added = provider._active_span_processor._span_processors[1:]  # after the exemplar tracker
    assert [type(p).__name__ for p in added] == processors
    provider.shutdown()


def test_a_forked_child_does_not_push_to_the_parents_group(gateway: Gateway) -> None:
    pipeline = op.configure(
        service_name="orders", exporter="pushgateway", pushgateway_url=gateway.url, export_interval=3600
    )
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its pipeline is rebuilt without the Pushgateway
        try:
            child = runtime.current()
            os.write(write_end, json.dumps(child is not None and child is not pipeline).encode())
            op.queue("emails").enqueued()
            runtime.shutdown(timeout=2)
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as reader:
        rebuilt = json.loads(reader.read())
    _, status = os.waitpid(pid, 0)
    assert (os.waitstatus_to_exitcode(status), rebuilt) == (0, True)
    assert gateway.requests == []  # the child's shutdown pushed nothing
    op.queue("emails").enqueued(2)
    assert op.shutdown() is True
    assert [m for m, _, _, _ in gateway.requests] == ["PUT"]


def test_a_silent_target_is_bounded_by_the_timeout(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        exporter = PushgatewayExporter(url, "nightly", timeout=0.3)
        assert exporter.export(metrics(), timeout_millis=60_000) is MetricExportResult.FAILURE
    assert "timed out" in caplog.text
    assert push.ATTEMPTS == 3
