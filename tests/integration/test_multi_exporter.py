"""Several exporters at once: one MeterProvider, one instrument core, the same figures everywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import otel_pipeline as op
from tests.integration.batch_run import SERVICE, STAGES, run_batch, stage_figures, summary_figures
from tests.integration.test_remote_write import reader
from tests.support import free_port, wait_until
from tests.support.docs import python_blocks
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


def test_health_shows_a_failing_push_next_to_metrics() -> None:
    pipeline = op.configure(
        service_name="orders",
        exporter="prometheus,pushgateway",
        prometheus_port=0,
        pushgateway_url=f"http://127.0.0.1:{free_port()}",
        export_interval=0.1,
    )
    assert pipeline.metrics_url is not None
    health_url = pipeline.metrics_url.replace("/metrics", "/health")
    op.queue("emails").enqueued()

    def degraded() -> dict[str, Any] | None:
        try:
            scrape(health_url)
        except urllib.error.HTTPError as error:  # 503 once unhealthy
            with error:
                body: dict[str, Any] = json.loads(error.read())
            return body
        return None

    body = wait_until(degraded, timeout=30, what="/health to report the failing pushes")
    exporter = body["components"]["exporter"]
    assert (exporter["status"], exporter["exporter"], exporter["last_failure"]) == (
        "unhealthy",
        "prometheus,pushgateway",
        "pushgateway: export FAILURE",
    )
    assert exporter["consecutive_failures"] >= 3


def test_the_batch_docs_examples_push_to_real_servers(
    pushgateway: Pushgateway, prometheus_factory: PrometheusFactory, tmp_path: Path
) -> None:
    prometheus = prometheus_factory([])
    blocks = python_blocks("batch.md")
    assert len(blocks) == 3
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["OTEL_EXPORTER_PROMETHEUS_PORT"] = "0"
    for code in blocks:
        code = code.replace("http://127.0.0.1:9091", pushgateway.url)
        code = code.replace("http://127.0.0.1:9090", prometheus.url)
        finished = subprocess.run(
            [sys.executable, "-W", "error", "-c", code],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (finished.returncode, finished.stderr) == (0, ""), code
    labels = {"job": "nightly-export", "pipeline_name": "nightly-export"}
    assert pushgateway.value("pipeline_stage_items_total", pipeline_stage="fetch", **labels) == 120
    assert pushgateway.value("pipeline_stage_items_total", pipeline_stage="write", **labels) == 118
    summary = json.loads((tmp_path / "nightly-export.summary.json").read_text())
    assert summary["pipelines"]["nightly-export"]["stages"]["write"]["items"] == 118
    fetched = 'pipeline_stage_items_total{job="nightly-export",pipeline_stage="fetch"}'
    assert prometheus.value(fetched) == 120
