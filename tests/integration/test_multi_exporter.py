"""Several exporters at once: one MeterProvider, one instrument core, the same figures everywhere."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

import otel_pipeline as op
from tests.integration.batch_run import SERVICE, STAGES, run_batch, stage_figures, summary_figures
from tests.integration.test_remote_write import reader
from tests.support.fixtures import PrometheusFactory
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.pushgateway import Pushgateway, parse_samples

pytestmark = pytest.mark.integration


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def test_prometheus_and_otlp_at_once(otlp_receiver: OtlpReceiver) -> None:
    pipeline = op.configure(
        service_name="orders",
        exporter="prometheus,otlp",
        prometheus_port=0,
        otlp_endpoint=otlp_receiver.grpc_endpoint,
        export_interval=3600,
    )
    assert pipeline.meter_provider is not None
    assert pipeline.metrics_url is not None
    q = op.queue("emails")
    q.enqueued(7)
    with q.processing():
        pass
    scraped = parse_samples(scrape(pipeline.metrics_url))
    enqueued = [v for name, labels, v in scraped if name == "queue_jobs_enqueued_total"]
    assert enqueued == [7.0]
    assert op.summary()["queues"]["emails"]["enqueued"] == 7
    health = json.loads(scrape(pipeline.metrics_url.replace("/metrics", "/health")))
    assert health["components"]["exporter"]["exporter"] == "prometheus,otlp"
    assert op.shutdown() is True
    assert otlp_receiver.latest_point("queue.jobs.enqueued", {"queue.name": "emails"}).value == 7
    processed = {"queue.name": "emails", "outcome": "success"}
    assert otlp_receiver.latest_point("queue.jobs.processed", processed).value == 1
    # Spans go over OTLP too, as with exporter="otlp" alone.
    assert [s.name for s in otlp_receiver.spans()] == ["queue.process emails"]


def test_prometheus_and_pushgateway_at_once_from_the_environment(
    pushgateway: Pushgateway, tmp_path: Path
) -> None:
    env = {
        "OTEL_METRICS_EXPORTER": "prometheus,pushgateway",
        "OTEL_EXPORTER_PROMETHEUS_PORT": "0",
        "OTEL_PIPELINE_PUSHGATEWAY_URL": pushgateway.url,
    }
    run = run_batch(tmp_path, env=env)
    assert run.returncode == 0, run.stderr
    assert (run.stdout, run.stderr) == ("batch done\n", "")
    assert stage_figures(pushgateway.value, list(STAGES)) == summary_figures(run.summary)


def test_pushgateway_and_remote_write_at_once(
    pushgateway: Pushgateway, prometheus_factory: PrometheusFactory, tmp_path: Path
) -> None:
    prometheus = prometheus_factory([])
    run = run_batch(
        tmp_path,
        exporter=["pushgateway", "remote_write"],
        pushgateway_url=pushgateway.url,
        remote_write_url=f"{prometheus.url}/api/v1/write",
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    expected = summary_figures(run.summary)
    assert stage_figures(pushgateway.value, list(STAGES)) == expected
    assert stage_figures(reader(prometheus, SERVICE), list(STAGES)) == expected
