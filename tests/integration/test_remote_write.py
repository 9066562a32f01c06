"""exporter="remote_write" against a real Prometheus with ``--web.enable-remote-write-receiver``."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

import otel_pipeline as op
from tests.integration.batch_run import SERVICE, STAGES, run_batch, stage_figures, summary_figures
from tests.support.fixtures import PrometheusFactory
from tests.support.prometheus import Prometheus
from tests.support.pushgateway import Sample, parse_samples

pytestmark = pytest.mark.integration


def reader(prometheus: Prometheus, job: str) -> Callable[..., float]:
    """``value(name, **labels)``: the one sample of ``name{job=..., labels}`` now; KeyError if none."""

    def value(name: str, **labels: str) -> float:
        selector = ",".join(f'{key}="{label}"' for key, label in {"job": job, **labels}.items())
        result = prometheus.query(f"{name}{{{selector}}}")
        if not result:
            raise KeyError(f"{name}{labels}")
        (only,) = result
        return float(only["value"][1])

    return value


def test_a_batch_run_without_shutdown_is_queryable_with_exact_figures(
    prometheus_factory: PrometheusFactory, tmp_path: Path
) -> None:
    prometheus = prometheus_factory([])  # scrapes nothing: everything arrives by remote write
    run = run_batch(tmp_path, exporter="remote_write", remote_write_url=f"{prometheus.url}/api/v1/write")
    assert run.returncode == 0, run.stderr
    assert (run.stdout, run.stderr) == ("batch done\n", "")
    value = reader(prometheus, SERVICE)
    for stage, items in STAGES.items():
        assert value("pipeline_stage_items_total", pipeline_stage=stage) == items
    assert stage_figures(value, list(STAGES)) == summary_figures(run.summary)
    # Buckets are cumulative, as Prometheus wants them: +Inf is the count, and never decreasing.
    fetch = {"pipeline_stage": "fetch", "outcome": "success"}
    buckets = prometheus.query('pipeline_stage_duration_seconds_bucket{pipeline_stage="fetch"}')
    counts = sorted((float(b["metric"]["le"]), float(b["value"][1])) for b in buckets)
    assert [count for _, count in counts] == sorted(count for _, count in counts)
    assert (
        counts[-1]
        == (float("inf"), value("pipeline_stage_duration_seconds_count", **fetch))
        == (
            float("inf"),
            1.0,
        )
    )
    # job and instance as OpenTelemetry maps them; target_info carries the resource.
    (target,) = prometheus.query(f'target_info{{job="{SERVICE}"}}')
    (fetched,) = prometheus.query('pipeline_stage_items_total{pipeline_stage="fetch"}')
    instance = target["metric"]["service_instance_id"]
    assert fetched["metric"]["instance"] == target["metric"]["instance"] == instance
    assert target["metric"]["service_name"] == SERVICE


def test_the_written_series_are_those_of_metrics_exactly(prometheus_factory: PrometheusFactory) -> None:
    prometheus = prometheus_factory([])
    pipeline = op.configure(
        service_name="orders",
        exporter="prometheus,remote_write",
        prometheus_port=0,
        remote_write_url=f"{prometheus.url}/api/v1/write",
        export_interval=3600,
    )
    assert pipeline.metrics_url is not None
    q = op.queue("emails")
    q.enqueued(5)
    for _ in range(3):
        with q.processing():
            pass
    op.cache("users").miss()
    with urllib.request.urlopen(pipeline.metrics_url, timeout=10) as response:
        scraped = parse_samples(response.read().decode())
    assert op.shutdown() is True
    written: set[Sample] = set()
    for series in prometheus.query('{job="orders"}'):
        labels = dict(series["metric"])
        name = labels.pop("__name__")
        labels.pop("job")
        labels.pop("instance")
        written.add((name, tuple(sorted(labels.items())), float(series["value"][1])))
    # A scrape stores no empty label values; neither does remote write.
    expected = {(n, tuple((k, v) for k, v in labels if v != ""), value) for n, labels, value in scraped}
    assert written == expected
