"""configure() sets the OpenTelemetry global providers, so the user's own instruments and library
instrumentation export through the same pipeline. Globals are once per process: each test runs a
fresh Python process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.support.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.integration


def run(code: str) -> list[str]:
    """Run ``code`` in a fresh interpreter; its stdout lines (it must exit 0, without a traceback)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return done.stdout.splitlines()


def test_global_instruments_are_scraped_from_the_endpoint() -> None:
    lines = run(
        """
        import urllib.request
        from opentelemetry import metrics
        import otel_pipeline as op

        # Library code takes its meter at import time, before configure(): the API's proxy follows.
        early = metrics.get_meter("library").create_counter("library.calls", "{call}", "Calls made.")
        pipeline = op.configure(service_name="orders", prometheus_port=0)
        assert metrics.get_meter_provider() is pipeline.meter_provider
        early.add(2, {"op": "get"})
        metrics.get_meter("app").create_counter("app.orders", "{order}", "Orders placed.").add(5)
        op.queue("emails").enqueued(3)
        print(urllib.request.urlopen(pipeline.metrics_url).read().decode())
        """
    )
    samples = [line for line in lines if line and not line.startswith("#")]
    values = {line.split("{")[0]: line for line in samples}
    assert values["library_calls_total"].endswith(" 2.0")
    assert 'op="get"' in values["library_calls_total"]
    assert 'otel_scope_name="library"' in values["library_calls_total"]
    assert values["app_orders_total"].endswith(" 5.0")
    assert values["queue_jobs_enqueued_total"].endswith(" 3.0")
    assert 'service_name="orders"' in values["target_info"]


def test_global_tracer_spans_share_the_pipeline_and_the_trace(otlp_receiver: OtlpReceiver) -> None:
    run(
        f"""
        from opentelemetry import trace
        import otel_pipeline as op

        op.configure(service_name="orders", exporter="otlp", otlp_endpoint={otlp_receiver.grpc_endpoint!r})
        tracer = trace.get_tracer("library")
        with tracer.start_as_current_span("library.request"):
            with op.queue("emails").processing():
                with tracer.start_as_current_span("library.inner"):
                    pass
        assert op.shutdown() is True
        """
    )
    spans = {s.name: s for s in otlp_receiver.wait_for_spans(count=3)}
    assert sorted(spans) == ["library.inner", "library.request", "queue.process emails"]
    outer, hook, inner = spans["library.request"], spans["queue.process emails"], spans["library.inner"]
    assert hook.span.parent_span_id == outer.span.span_id
    assert inner.span.parent_span_id == hook.span.span_id
    assert {outer.span.trace_id, hook.span.trace_id, inner.span.trace_id} == {outer.span.trace_id}
    assert (outer.scope, hook.scope) == ("library", "otel_pipeline")
    assert {s.resource["service.name"] for s in spans.values()} == {"orders"}


def test_globals_are_set_once_per_process() -> None:
    lines = run(
        """
        import json, logging
        from opentelemetry import metrics, trace
        import otel_pipeline as op

        logging.basicConfig(level=logging.WARNING, format="%(message)s")
        first = op.configure(service_name="orders", exporter="none")
        op.shutdown()
        second = op.configure(service_name="orders", exporter="none")
        print(json.dumps({
            "meter_is_first": metrics.get_meter_provider() is first.meter_provider,
            "tracer_is_first": trace.get_tracer_provider() is first.tracer_provider,
            "second_is_current": op.configure(service_name="orders", exporter="none") is second,
        }))
        """
    )
    assert json.loads(lines[-1]) == {
        "meter_is_first": True,
        "tracer_is_first": True,
        "second_is_current": True,
    }


def test_disabled_leaves_the_globals_alone() -> None:
    lines = run(
        """
        import os, threading
        os.environ["OTEL_SDK_DISABLED"] = "true"
        from opentelemetry import metrics, trace
        import otel_pipeline as op

        before = threading.active_count()
        op.configure(service_name="orders")
        print(type(metrics.get_meter_provider()).__name__, type(trace.get_tracer_provider()).__name__)
        print(threading.active_count() - before)
        """
    )
    assert lines == ["_ProxyMeterProvider ProxyTracerProvider", "0"]
