"""configure() and shutdown(): the pipeline, reconfiguration, disabled mode, resource, exit handling."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    ConsoleMetricExporter,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

import otel_pipeline as op
from otel_pipeline._internal import runtime
from otel_pipeline.testing import Capture
from tests.support import free_port
from tests.support.http import request
from tests.support.points import find_metric, find_point, metric_names

EMAILS = {"queue.name": "emails"}


def thread_names() -> set[str]:
    return {thread.name for thread in threading.enumerate()}


def test_configure_returns_a_running_pipeline(global_providers: list[tuple[Any, Any]]) -> None:
    pipeline = op.configure(service_name="orders", exporter="none")
    assert isinstance(pipeline, op.Pipeline)
    assert runtime.current() is pipeline
    assert pipeline.enabled is True
    assert (pipeline.server, pipeline.prometheus_port, pipeline.metrics_url) == (None, None, None)
    assert pipeline.config.service_name == "orders"
    assert global_providers == [(pipeline.meter_provider, pipeline.tracer_provider)]


def test_same_options_return_the_same_pipeline(global_providers: list[tuple[Any, Any]]) -> None:
    first = op.configure(service_name="orders", exporter="none")
    assert op.configure(service_name="orders", exporter="none") is first
    assert len(global_providers) == 1


def test_other_options_raise_and_name_what_changed() -> None:
    first = op.configure(service_name="orders", exporter="none")
    with pytest.raises(
        RuntimeError,
        match=r"other options \(exporter, prometheus_port, service_name\); call otel_pipeline.shutdown",
    ):
        op.configure(service_name="billing", exporter="prometheus", prometheus_port=0)
    assert runtime.current() is first
    assert first.enabled is True


def test_configure_after_shutdown_builds_a_new_pipeline(
    global_providers: list[tuple[Any, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    first = op.configure(service_name="orders", exporter="none")
    assert op.shutdown() is True
    with caplog.at_level(logging.WARNING, logger="otel_pipeline"):
        second = op.configure(service_name="billing", exporter="none")
    assert second is not first
    assert runtime.current() is second
    assert first.enabled is False
    # Globals are set once per process: the second pipeline does not replace them, and says so once.
    assert global_providers == [(first.meter_provider, first.tracer_provider)]
    assert [r.getMessage() for r in caplog.records] == [
        "configured again after shutdown(); the hooks record into the new pipeline, but the "
        "OpenTelemetry global providers can be set once per process and stay those of the first configure()"
    ]


def test_bad_option_raises_before_anything_starts() -> None:
    before = thread_names()
    with pytest.raises(ValueError, match=r"prometheus_port=70000 is not valid"):
        op.configure(prometheus_port=70000)
    with pytest.raises(TypeError, match=r"resource_attributes"):
        runtime.configure(environ={}, resource_atributes={})
    assert runtime.current() is None
    assert thread_names() == before


def test_hooks_before_configure_are_noops_then_record() -> None:
    q = op.queue("emails")
    q.enqueued(5)  # not configured: nothing happens, nothing raises
    with q.processing():
        pass
    pipeline = op.configure(service_name="orders", exporter="none")
    q.enqueued(2)
    data = pipeline.collect()
    assert find_point(data, "queue.jobs.enqueued", EMAILS).value == 2
    assert "queue.job.duration" not in metric_names(data)


def test_hooks_after_shutdown_are_noops() -> None:
    pipeline = op.configure(service_name="orders", exporter="none")
    q = op.queue("emails")
    q.enqueued()
    op.shutdown()
    q.enqueued(10)
    assert pipeline.collect() is None
    assert runtime.current() is None


@pytest.mark.parametrize(
    ("options", "environ"),
    [
        ({"enabled": False}, {}),
        ({}, {"OTEL_SDK_DISABLED": "true"}),
        ({"exporter": "otlp", "otlp_endpoint": "http://127.0.0.1:9"}, {"OTEL_SDK_DISABLED": "1"}),
    ],
)
def test_disabled_starts_nothing_and_hooks_are_noops(
    options: dict[str, Any],
    environ: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    global_providers: list[tuple[Any, Any]],
) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    before = set(threading.enumerate())
    pipeline = op.configure(service_name="orders", **options)
    q = op.queue("emails")
    q.enqueued(3)
    with q.processing():
        pass
    assert set(threading.enumerate()) == before
    assert pipeline.enabled is False
    assert (pipeline.server, pipeline.meter_provider, pipeline.tracer_provider, pipeline.registry) == (
        None,
        None,
        None,
        None,
    )
    assert pipeline.collect() is None
    assert global_providers == []
    assert op.configure(service_name="orders", **options) is pipeline
    assert op.shutdown() is True


def test_not_configured_starts_nothing() -> None:
    before = set(threading.enumerate())
    with op.queue("emails").processing():
        op.queue("emails").enqueued()
    assert set(threading.enumerate()) == before
    assert runtime.current() is None
    assert op.shutdown() is True


def test_exporter_none_aggregates_in_process_without_threads() -> None:
    before = set(threading.enumerate())
    pipeline = op.configure(service_name="orders", exporter="none")
    q = op.queue("emails")
    q.enqueued(4)
    with q.processing():
        pass
    assert set(threading.enumerate()) == before
    data = pipeline.collect()
    assert find_point(data, "queue.jobs.enqueued", EMAILS).value == 4
    assert find_point(data, "queue.job.duration", {**EMAILS, "outcome": "success"}).count == 1


def test_prometheus_exporter_serves_on_the_reported_port() -> None:
    pipeline = op.configure(service_name="orders", prometheus_port=0)
    assert pipeline.server is not None
    assert pipeline.server.host == "127.0.0.1"
    port = pipeline.prometheus_port
    assert port is not None
    assert port > 0
    assert pipeline.metrics_url == f"http://127.0.0.1:{port}/metrics"
    assert "otel-pipeline-http" in thread_names()
    op.queue("emails").enqueued(7)
    reply = request(pipeline.metrics_url)
    assert reply.status == 200
    assert 'queue_jobs_enqueued_total{otel_scope_name="otel_pipeline"' in reply.text
    op.shutdown()
    assert "otel-pipeline-http" not in thread_names()
    with pytest.raises(OSError, match="Connection refused"):
        request(f"http://127.0.0.1:{port}/metrics")


def test_prometheus_port_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_PORT", str(port))
    pipeline = op.configure(service_name="orders")
    assert pipeline.prometheus_port == port
    assert request(f"http://127.0.0.1:{port}/health").status == 200


def test_busy_port_raises_a_clear_error_and_leaves_nothing_running() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        before = set(threading.enumerate())
        with pytest.raises(OSError, match=rf"cannot serve /metrics on 127.0.0.1:{port} .*0 picks a free one"):
            op.configure(service_name="orders", prometheus_port=port)
    assert runtime.current() is None
    assert set(threading.enumerate()) == before


def test_shutdown_is_idempotent_and_releases_the_port() -> None:
    pipeline = op.configure(service_name="orders", prometheus_port=0)
    port = pipeline.prometheus_port
    assert op.shutdown() is True
    assert op.shutdown() is True
    assert pipeline.shutdown() is True
    assert pipeline.enabled is False
    with socket.socket() as again:  # the port is free again
        again.bind(("127.0.0.1", port or 0))


def test_pipeline_shutdown_uninstalls_itself() -> None:
    pipeline = op.configure(service_name="orders", exporter="none")
    assert pipeline.shutdown(timeout=5) is True
    assert runtime.current() is None
    assert op.configure(service_name="orders", exporter="none") is not pipeline


def test_shutdown_runs_registered_steps_even_when_one_fails(caplog: pytest.LogCaptureFixture) -> None:
    pipeline = op.configure(service_name="orders", exporter="none")
    ran: list[str] = []

    def broken() -> None:
        raise RuntimeError("step failed")

    pipeline.on_shutdown.extend([broken, lambda: ran.append("second")])
    with caplog.at_level(logging.ERROR, logger="otel_pipeline"):
        assert op.shutdown() is True
    assert ran == ["second"]
    assert [r.getMessage() for r in caplog.records] == ["a shutdown step failed"]


def test_shutdown_flush_failure_is_logged_not_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pipeline = op.configure(service_name="orders", exporter="none")

    def fail(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("flush failed")

    assert pipeline.meter_provider is not None
    assert pipeline.tracer_provider is not None
    monkeypatch.setattr(pipeline.meter_provider, "shutdown", fail)
    monkeypatch.setattr(pipeline.tracer_provider, "shutdown", fail)
    with caplog.at_level(logging.WARNING, logger="otel_pipeline"):
        assert op.shutdown() is True
    assert sorted(r.getMessage() for r in caplog.records) == [
        "flushing metrics at shutdown failed: flush failed",
        "flushing spans at shutdown failed: flush failed",
    ]
    assert pipeline.registry is not None
    assert pipeline.registry.enabled is False


def test_shutdown_gives_up_after_its_bound(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pipeline = op.configure(service_name="orders", exporter="none")
    release = threading.Event()
    assert pipeline.meter_provider is not None
    monkeypatch.setattr(pipeline.meter_provider, "shutdown", lambda **kwargs: release.wait(30))
    with caplog.at_level(logging.WARNING, logger="otel_pipeline"):
        assert op.shutdown(timeout=0.2) is False
    release.set()
    assert [r.getMessage() for r in caplog.records] == [
        "shutdown gave up flushing after 0.2 s (receiver down?)"
    ]


def test_configure_under_capture_returns_the_capture_and_starts_nothing() -> None:
    with Capture() as capture:
        before = set(threading.enumerate())
        assert op.configure(service_name="orders", prometheus_port=0) is capture.pipeline
        assert set(threading.enumerate()) == before
        op.queue("emails").enqueued(2)
        assert capture.value("queue.jobs.enqueued", EMAILS) == 2


def test_resource_attributes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test,service.namespace=shop")
    pipeline = op.configure(service_name="orders", service_version="1.2.3", exporter="none")
    assert pipeline.resource is not None
    attributes = dict(pipeline.resource.attributes)
    instance_id = attributes.pop("service.instance.id")
    assert isinstance(instance_id, str)
    assert len(instance_id) == 36
    assert attributes == {
        "service.name": "orders",
        "service.version": "1.2.3",
        "service.namespace": "shop",
        "deployment.environment": "test",
        "host.name": socket.gethostname(),
        "process.pid": os.getpid(),
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.version": attributes["telemetry.sdk.version"],
    }
    # One instance id per process: a second pipeline in this process keeps it.
    op.shutdown()
    again = op.configure(service_name="orders", exporter="none")
    assert again.resource is not None
    assert again.resource.attributes["service.instance.id"] == instance_id


def test_service_instance_id_from_resource_attributes_wins() -> None:
    pipeline = op.configure(
        service_name="orders", exporter="none", resource_attributes={"service.instance.id": "pod-7"}
    )
    assert pipeline.resource is not None
    assert pipeline.resource.attributes["service.instance.id"] == "pod-7"


def test_users_own_instruments_share_the_pipeline() -> None:
    pipeline = op.configure(service_name="orders", exporter="none")
    assert pipeline.meter_provider is not None
    pipeline.meter_provider.get_meter("user.app").create_counter("user.orders", "{order}", "Orders").add(5)
    op.queue("emails").enqueued(1)
    data = pipeline.collect()
    assert find_point(data, "user.orders").value == 5
    assert find_point(data, "queue.jobs.enqueued", EMAILS).value == 1
    assert data is not None
    assert len(data.resource_metrics) == 1  # one resource: same provider


def test_histogram_buckets_apply_to_the_hooks() -> None:
    pipeline = op.configure(service_name="orders", exporter="none", histogram_buckets=[0.5, 1.0])
    with op.queue("emails").processing():
        pass
    point = find_point(pipeline.collect(), "queue.job.duration", {**EMAILS, "outcome": "success"})
    assert tuple(point.explicit_bounds) == (0.5, 1.0)
    assert tuple(point.bucket_counts) == (1, 0, 0)


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_otlp_is_cumulative_with_batched_spans(protocol: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Even when the environment asks the exporter for delta, the pipeline stays cumulative.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta")
    pipeline = op.configure(
        service_name="orders",
        exporter="otlp",
        otlp_protocol=protocol,
        otlp_endpoint=f"http://127.0.0.1:{free_port()}",
        export_interval=60,
        export_timeout=0.5,
    )
    assert pipeline.meter_provider is not None
    readers = pipeline.meter_provider._metric_readers
    periodic = [r for r in readers if isinstance(r, PeriodicExportingMetricReader)]
    assert len(periodic) == 1
    assert set(periodic[0]._instrument_class_temporality.values()) == {AggregationTemporality.CUMULATIVE}
    assert pipeline.tracer_provider is not None
    processors = pipeline.tracer_provider._active_span_processor._span_processors
    assert [type(p) for p in processors if isinstance(p, BatchSpanProcessor)] == [BatchSpanProcessor]
    op.queue("emails").enqueued()
    assert find_metric(pipeline.collect(), "queue.jobs.enqueued").unit == "{job}"


def test_prometheus_exporter_sends_spans_only_with_an_otlp_endpoint() -> None:
    pipeline = op.configure(service_name="orders", prometheus_port=0)
    assert pipeline.tracer_provider is not None
    batch = [
        p
        for p in pipeline.tracer_provider._active_span_processor._span_processors
        if isinstance(p, BatchSpanProcessor)
    ]
    assert batch == []
    op.shutdown()
    pipeline = op.configure(
        service_name="orders", prometheus_port=0, otlp_endpoint=f"http://127.0.0.1:{free_port()}"
    )
    assert pipeline.tracer_provider is not None
    batch = [
        p
        for p in pipeline.tracer_provider._active_span_processor._span_processors
        if isinstance(p, BatchSpanProcessor)
    ]
    assert len(batch) == 1


def run_python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
        check=False,
    )


def test_interpreter_exit_flushes_through_the_exit_handler() -> None:
    done = run_python(
        """
        import otel_pipeline as op
        op.configure(service_name="exit-test", exporter="console", export_interval=3600)
        op.queue("emails").enqueued(3)
        print("recorded", flush=True)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("recorded\n")
    assert '"name": "queue.jobs.enqueued"' in done.stdout
    assert '"queue.name": "emails"' in done.stdout
    assert '"value": 3' in done.stdout
    assert '"service.name": "exit-test"' in done.stdout


def test_console_exporter_batches_to_stdout() -> None:
    pipeline = op.configure(service_name="orders", exporter="console", export_interval=3600)
    assert pipeline.meter_provider is not None
    assert pipeline.tracer_provider is not None
    readers = [
        r for r in pipeline.meter_provider._metric_readers if isinstance(r, PeriodicExportingMetricReader)
    ]
    assert [type(r._exporter) for r in readers] == [ConsoleMetricExporter]
    batch = [
        p
        for p in pipeline.tracer_provider._active_span_processor._span_processors
        if isinstance(p, BatchSpanProcessor)
    ]
    assert [type(p.span_exporter) for p in batch] == [ConsoleSpanExporter]
